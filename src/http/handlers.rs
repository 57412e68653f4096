//! The JSON handlers: status, the daemon list, registering and unregistering daemons,
//! reports, alerts, rules, silences, pushed metrics, the managed daemons and reload; and
//! [`check_body`], which reads a body as its handler would (for the fuzz targets).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::guard::{authorize, Scope};
use super::push::{self, check_pushed, Pushed};
use super::{Answer, Problem, State, MAX_BODY_BYTES};
use crate::{DaemonId, DaemonSpec};

/// What every handler reads.
type Data = web::Data<State>;
/// An `{id}` in the path.
type Id = web::Path<String>;
use perfvisor_actors::types::Source;

pub(super) async fn not_found(req: HttpRequest) -> Answer {
    Err(Problem::not_found(format!(
        "no endpoint {} {}",
        req.method(),
        req.path()
    )))
}

pub(super) async fn status(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.status().await?))
}

/// One line of the daemon list.
#[derive(Debug, Serialize, Deserialize)]
pub struct DaemonLine {
    /// Its id.
    pub daemon: DaemonId,
    /// Its pid.
    pub pid: u32,
    /// Probes so far.
    pub probes: u64,
    /// Restarts of perfvisor's watcher actor for it (a panic in perfvisor, not the
    /// daemon's process restarting: that is [`DaemonLine::process_restarts`]).
    pub restarts: u64,
    /// Score, when judged.
    pub score: Option<f64>,
    /// Level, when judged.
    pub level: Option<crate::Level>,
    /// Latest CPU (fraction of one core).
    pub cpu: Option<f64>,
    /// Latest resident memory, bytes.
    pub rss_bytes: Option<f64>,
    /// Firing alerts about it.
    pub firing_alerts: usize,
    /// Its life-cycle state when this perfvisor manages it (`running`, `starting`,
    /// `backoff`, `stopping`, `stopped`, `exited`, `fatal`, `waiting`); `null` for a daemon
    /// perfvisor only watches.
    #[serde(default)]
    pub managed_state: Option<String>,
    /// Restarts of the daemon's process performed by this perfvisor (automatic, slow retries
    /// and manual): the manager's count, the same number as `restarts` in
    /// `GET /api/v1/managed`. `null` for a daemon perfvisor does not manage.
    #[serde(default)]
    pub process_restarts: Option<u32>,
    /// Seconds its current process has been running: from the manager's start time when
    /// managed, else from the latest `process.uptime_seconds` probe.
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
}

/// The name of a managed daemon's state, as `managed_state` in `GET /api/v1/daemons` and
/// `state.state` in `GET /api/v1/managed` give it.
pub fn managed_state_name(state: &crate::manager::DaemonState) -> &'static str {
    use crate::manager::DaemonState as S;
    match state {
        S::Waiting { .. } => "waiting",
        S::Starting => "starting",
        S::Running => "running",
        S::Backoff { .. } => "backoff",
        S::Stopping => "stopping",
        S::Stopped => "stopped",
        S::Exited { .. } => "exited",
        S::Fatal { .. } => "fatal",
    }
}

/// Seconds from `started` to `now` while the managed process runs (`None` without one).
fn managed_uptime(
    status: &crate::manager::DaemonStatus,
    now: std::time::SystemTime,
) -> Option<f64> {
    use crate::manager::DaemonState as S;
    if !matches!(status.state, S::Starting | S::Running | S::Stopping) || status.pid.is_none() {
        return None;
    }
    let started = status.started_at?;
    Some(
        now.duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

pub(super) async fn daemons(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    // One judgement of all daemons (the host report), not one report per daemon: the list
    // stays O(daemons) however many there are.
    let status = s.pv.status().await?;
    let firing = s.pv.firing_alerts().await?;
    let scores =
        s.pv.host_report()
            .await?
            .map(|h| h.daemon_scores)
            .unwrap_or_default();
    let latest = s.pv.latest().await?;
    let last = |daemon: &DaemonId, metric: &str| {
        latest
            .iter()
            .find(|x| {
                x.series.metric.as_str() == metric
                    && matches!(&x.series.source, Source::Daemon(d) if d == daemon)
            })
            .map(|x| x.value)
    };
    let managed = s.manager.as_ref().map(|m| m.status()).unwrap_or_default();
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for w in status.watchers {
        let score = scores.get(&w.daemon).copied();
        let m = managed.iter().find(|m| m.name == w.daemon.as_str());
        out.push(DaemonLine {
            firing_alerts: firing
                .iter()
                .filter(|a| a.daemon.as_ref() == Some(&w.daemon))
                .count(),
            score,
            level: score.map(crate::Level::of),
            cpu: last(&w.daemon, crate::metric_names::PROCESS_CPU_UTILIZATION),
            rss_bytes: last(&w.daemon, crate::metric_names::PROCESS_MEMORY_RSS),
            managed_state: m.map(|m| managed_state_name(&m.state).to_string()),
            process_restarts: m.map(|m| m.restarts),
            uptime_seconds: match m {
                Some(m) => managed_uptime(m, now),
                None => last(&w.daemon, crate::metric_names::PROCESS_UPTIME),
            },
            daemon: w.daemon,
            pid: w.pid,
            probes: w.probes,
            restarts: w.restarts,
        });
    }
    Ok(HttpResponse::Ok().json(out))
}

/// Body of `POST /api/v1/daemons`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Register {
    id: String,
    pid: u32,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

impl Register {
    /// The spec the body asks for ([`Perfvisor::daemon_started`] checks it).
    fn spec(self) -> DaemonSpec {
        let mut spec = DaemonSpec::new(self.id.as_str(), self.pid);
        spec.project = self.project;
        spec.labels = self.labels;
        spec
    }
}

pub(super) async fn register(req: HttpRequest, s: Data, body: web::Json<Register>) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let spec = body.into_inner().spec();
    let id = spec.id.to_string();
    s.pv.daemon_started(spec).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({"registered": id})))
}

pub(super) async fn unregister(req: HttpRequest, s: Data, id: Id) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let id = id.into_inner();
    let known =
        s.pv.status()
            .await?
            .watchers
            .iter()
            .any(|w| w.daemon.as_str() == id);
    if !known {
        return Err(Problem::not_found(format!("no daemon {id:?} is watched")));
    }
    s.pv.daemon_stopped(id.as_str()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"unregistered": id})))
}

pub(super) async fn report(req: HttpRequest, s: Data, id: Id) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let id = id.into_inner();
    match s.pv.report(id.as_str()).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(Problem::not_found(format!(
            "nothing is known about daemon {id:?}"
        ))),
    }
}

pub(super) async fn host(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.host_report().await?))
}

pub(super) async fn alerts(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.firing_alerts().await?))
}

pub(super) async fn rules(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.rules().await?))
}

pub(super) async fn silences(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.silences().await?))
}

pub(super) async fn add_silence(
    req: HttpRequest,
    s: Data,
    body: web::Json<crate::Silence>,
) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    s.pv.add_silence(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({"ok": true})))
}

pub(super) async fn remove_silence(req: HttpRequest, s: Data, id: Id) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let id = id.into_inner();
    if s.pv.remove_silence(id.as_str()).await? {
        Ok(HttpResponse::Ok().json(serde_json::json!({"removed": id})))
    } else {
        Err(Problem::not_found(format!("no silence {id:?}")))
    }
}

pub(super) async fn push_metrics(
    req: HttpRequest,
    s: Data,
    body: web::Json<Vec<Pushed>>,
) -> Answer {
    authorize(&req, &s, Scope::Push)?;
    let samples = body.into_inner();
    check_pushed(&samples)?;
    s.pushed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&samples)?;
    let base = s.pv.recorder();
    let mut accepted = 0;
    for p in samples {
        let rec = match &p.daemon {
            Some(d) => base.for_daemon(d.as_str()),
            None => base.clone(),
        };
        let ok = match p.kind.as_deref() {
            Some("counter") => rec.increment(p.metric, p.value),
            Some("observation") => rec.observe(p.metric, p.value),
            _ => rec.record(p.metric, p.value),
        };
        accepted += usize::from(ok);
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({"accepted": accepted})))
}

/// A JSON body [`check_body`] reads.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `POST /api/v1/daemons`.
    Register,
    /// `POST /api/v1/silences`.
    Silence,
    /// `POST /api/v1/metrics`.
    Metrics,
}

/// Reads a body as its handler does, without a running perfvisor: the size limit and
/// `serde_json` (what `web::Json` runs), then the handler's and the engine's checks (the
/// daemon spec's, [`crate::Silence::validate`], the pushed samples' checks and series
/// limit, from no series yet). `Ok` when the handler would act
/// on it; the error is the message the client would get. For the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn check_body(kind: Body, bytes: &[u8]) -> Result<(), String> {
    fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON body: {e}"))
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(format!("body over {MAX_BODY_BYTES} bytes"));
    }
    let checked = match kind {
        Body::Register => {
            crate::handle::check_spec(&json::<Register>(bytes)?.spec()).map_err(Problem::from)
        }
        Body::Silence => json::<crate::Silence>(bytes)?
            .validate()
            .map_err(|e| Problem::from(crate::Error::Silence(e))),
        Body::Metrics => {
            let samples = json::<Vec<Pushed>>(bytes)?;
            check_pushed(&samples).and_then(|()| push::PushedSeries::default().admit(&samples))
        }
    };
    checked.map_err(|p| p.error)
}

pub(super) async fn managed(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let m = s.manager.as_ref().ok_or_else(no_manager)?;
    Ok(HttpResponse::Ok().json(m.status()))
}

fn no_manager() -> Problem {
    Problem::not_found("this perfvisor manages no daemons (embedded, or started without a config)")
}

pub(super) async fn managed_action(
    req: HttpRequest,
    s: Data,
    path: web::Path<(String, String)>,
) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let (name, action) = path.into_inner();
    let m = s.manager.clone().ok_or_else(no_manager)?;
    if !m.status().iter().any(|d| d.name == name) {
        return Err(Problem::not_found(format!("no managed daemon {name:?}")));
    }
    let run = {
        let name = name.clone();
        move || match action.as_str() {
            "start" => m.start(&name).map_err(|e| e.to_string()),
            "stop" => m.stop(&name).map_err(|e| e.to_string()),
            "restart" => m.restart(&name).map_err(|e| e.to_string()),
            other => Err(format!("unknown action {other:?}")),
        }
    };
    // Stopping waits for the process group: off the server's thread.
    match web::block(run).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({"daemon": name, "ok": true}))),
        Ok(Err(e)) if e.starts_with("unknown action") => {
            Err(Problem::bad(e, "start, stop or restart"))
        }
        Ok(Err(e)) => Err(Problem::new(
            StatusCode::CONFLICT,
            e,
            "a daemon in a state that allows it",
        )),
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "a working perfvisor",
        )),
    }
}

pub(super) async fn reload(req: HttpRequest, s: Data) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let hook = s
        .reload
        .clone()
        .ok_or_else(|| Problem::not_found("this perfvisor was not started from a config file"))?;
    match web::block(move || hook()).await {
        Ok(Ok(summary)) => Ok(HttpResponse::Ok().json(serde_json::json!({"reloaded": summary}))),
        Ok(Err(problems)) => Err(Problem::bad(
            problems,
            "a valid config file (see perfvisor check-config)",
        )),
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "a working perfvisor",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MANAGED_STATES;

    /// Each managed state has the lower-case name `GET /api/v1/managed` serialises it as.
    #[test]
    fn managed_state_names_match_the_managed_json() {
        use crate::manager::DaemonState as S;
        let now = std::time::SystemTime::now();
        for state in [
            S::Waiting {
                on: vec!["db".into()],
            },
            S::Starting,
            S::Running,
            S::Backoff { until: now },
            S::Stopping,
            S::Stopped,
            S::Exited {
                code: Some(1),
                signal: None,
            },
            S::Fatal {
                reason: "r".into(),
                retry_at: None,
            },
        ] {
            let json = serde_json::to_value(&state).unwrap();
            assert_eq!(json["state"], managed_state_name(&state), "{json}");
            assert!(MANAGED_STATES.contains(&managed_state_name(&state)));
        }
    }
}
