//! `GET /api/v1/query`: its parameters, the query they ask for, and the handler that runs it
//! within the budget on the query thread; [`query_from_string`] for the fuzz targets.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::guard::{authorize, Scope};
use super::{budget, Answer, Problem, State};
use crate::{Aggregation, DaemonId, Query, SeriesSelector};
use perfvisor_actors::types::Source;

/// Parameters of `GET /api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryParams {
    metric: Option<String>,
    daemon: Option<String>,
    /// `host`, `perfvisor` or `daemon:<id>` (as [`Source::as_text`] writes it).
    source: Option<String>,
    from: i64,
    to: i64,
    step: Option<i64>,
    agg: Option<String>,
}

/// Runs the query within the budget ([`QueryBudget`]) on the query thread, never on the
/// thread that serves requests, and at most [`QueryBudget::concurrent`] at once: `/status`
/// and `/metrics` answer while a query reads.
pub(super) async fn query(
    req: HttpRequest,
    s: web::Data<State>,
    q: web::Query<QueryParams>,
) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let query = build_query(q.into_inner())?;
    query.validate().map_err(budget::storage_problem)?;
    let budget = s.budget;
    budget.check_shape(&query)?;
    let _turn = s.queries.acquire().await.map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "perfvisor is shutting down",
            "a running perfvisor",
        )
    })?;
    let pv = s.pv.clone();
    let body = s
        .query_thread
        .run(move || {
            let reader = pv.reader()?;
            budget.run(&reader, &query)
        })
        .await??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The query the parameters ask for (the reader validates it: [`Query::validate`]).
fn build_query(q: QueryParams) -> Result<Query, Problem> {
    let mut selector = SeriesSelector::all();
    if let Some(m) = q.metric {
        selector = selector.metric(m);
    }
    match (q.daemon, q.source) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad(
                "both daemon and source given",
                "daemon=<id> or source=host|perfvisor|daemon:<id>, not both",
            ))
        }
        (Some(d), None) => selector = selector.source(Source::Daemon(DaemonId::new(d))),
        (None, Some(text)) => {
            let source = Source::from_text(&text).ok_or_else(|| {
                Problem::bad(format!("source {text:?}"), "host, perfvisor or daemon:<id>")
            })?;
            selector = selector.source(source);
        }
        (None, None) => {}
    }
    let mut query = Query::new(selector, q.from, q.to);
    if let Some(aggs) = q.agg {
        for a in aggs.split(',') {
            query = query.aggregate(
                Aggregation::parse(a)
                    .map_err(|e| Problem::bad(e.to_string(), "see the message"))?,
            );
        }
    }
    if let Some(step) = q.step {
        query = query.step_ms(step);
    }
    Ok(query)
}

/// Reads a `GET /api/v1/query` query string as its handler does (what `web::Query` runs,
/// then the handler's own parsing); the storage reader then runs [`Query::validate`]. For
/// the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn query_from_string(query_string: &str) -> Result<Query, String> {
    let params = web::Query::<QueryParams>::from_query(query_string)
        .map_err(|e| format!("bad query string: {e}"))?;
    build_query(params.into_inner()).map_err(|p| p.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{check_body, Body};

    /// `check_body` and `query_from_string` (the fuzz targets' entries) accept and refuse
    /// what the handlers do, with the handlers' messages.
    #[test]
    fn body_and_query_checks_are_the_handlers() {
        assert_eq!(
            check_body(Body::Register, br#"{"id": "x", "pid": 1}"#),
            Ok(())
        );
        let silence = br#"{"id":"s","matchers":[{"name":"daemon","value":"x"}],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#;
        assert_eq!(check_body(Body::Silence, silence), Ok(()));
        assert_eq!(
            check_body(Body::Metrics, br#"[{"metric": "m", "value": 1}]"#),
            Ok(())
        );
        for (kind, body, message) in [
            (Body::Register, &br#"{"id": "x", "pid": 0}"#[..], "pid 0"),
            (Body::Register, br#"{"id": " ", "pid": 1}"#, "the id is empty"),
            (Body::Register, b"{not json", "malformed JSON body"),
            (Body::Silence, br#"{"id":"s","matchers":[],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#, "no matcher"),
            (Body::Metrics, br#"[{"metric": "m", "value": 1, "kind": "histogram"}]"#, "kind"),
            (Body::Metrics, br#"[{"metric": " ", "value": 1}]"#, "empty metric name"),
        ] {
            let err = check_body(kind, body).unwrap_err();
            assert!(err.contains(message), "{kind:?}: {err}");
        }
        let q = query_from_string("metric=m&from=0&to=7200000&step=3600000&agg=avg,p99").unwrap();
        assert_eq!(
            q.aggregations,
            [Aggregation::Avg, Aggregation::Quantile(0.99)]
        );
        assert_eq!(
            (q.from_ms, q.to_ms, q.step_ms),
            (0, 7_200_000, Some(3_600_000))
        );
        assert!(query_from_string("from=x&to=2")
            .unwrap_err()
            .contains("bad query string"));
        assert!(query_from_string("from=0&to=2&agg=p200")
            .unwrap_err()
            .contains("p200"));
    }

    /// `source=` selects the host's (or perfvisor's, or a daemon's) series; an unknown
    /// source, or one given together with `daemon=`, is refused with what is accepted.
    #[test]
    fn query_source_parameter() {
        let q = query_from_string("source=host&from=0&to=10").unwrap();
        assert_eq!(q.selector.source, Some(Source::Host));
        let q = query_from_string("source=daemon:web&from=0&to=10&step=5&agg=avg,rate").unwrap();
        assert_eq!(
            q.selector.source,
            Some(Source::Daemon(DaemonId::new("web")))
        );
        assert_eq!(q.aggregations, [Aggregation::Avg, Aggregation::Rate]);
        let q = query_from_string("daemon=web&from=0&to=10").unwrap();
        assert_eq!(
            q.selector.source,
            Some(Source::Daemon(DaemonId::new("web")))
        );
        let err = query_from_string("source=disk&from=0&to=10").unwrap_err();
        assert!(err.contains("\"disk\""), "{err}");
        let err = query_from_string("source=host&daemon=web&from=0&to=10").unwrap_err();
        assert!(err.contains("both"), "{err}");
    }
}
