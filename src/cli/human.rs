//! Human output of the read commands (`status`, `alerts`, `report`, `query`, `silence list`,
//! `reload`): local times with "3 min ago", sizes in KiB/MiB/GiB, ratios in %, rates with
//! their window, states as words, and tables whose columns are as wide as their content.
//! Every render function returns the text and takes the clock as a parameter, so golden tests
//! pin the output with a fixed `now` and time zone; `--json` bypasses this module entirely.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The window of the CPU average `status` shows.
pub const CPU_WINDOW_MS: i64 = 60_000;

/// How times are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// The local time zone (`TZ`, else `/etc/localtime`), with its abbreviation.
    Local,
    /// UTC, written with a `UTC` suffix (golden tests use it).
    #[cfg_attr(not(test), allow(dead_code))]
    Utc,
}

/// The moment output is rendered at and the zone times are written in.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// The zone of written times.
    pub zone: Zone,
}

impl Clock {
    /// Now, in the local time zone.
    pub fn local() -> Self {
        Clock {
            now_ms: super::now_ms(),
            zone: Zone::Local,
        }
    }

    /// A fixed moment, written in UTC.
    #[cfg(test)]
    pub fn utc(now_ms: i64) -> Self {
        Clock {
            now_ms,
            zone: Zone::Utc,
        }
    }

    /// `2026-12-06 20:18:51 CET`.
    pub fn time(&self, ms: i64) -> String {
        if self.zone == Zone::Local {
            if let Some(text) = local_time(ms) {
                return text;
            }
        }
        let iso = perfvisor_actors::alerts::rfc3339(ms);
        format!("{} {} UTC", &iso[..10], &iso[11..19])
    }

    /// `2026-12-06 20:18:51 CET (3 min ago)`.
    pub fn time_ago(&self, ms: i64) -> String {
        format!("{} ({})", self.time(ms), self.ago(ms))
    }

    /// `3 min ago`, `in 2 h`, `just now`.
    pub fn ago(&self, ms: i64) -> String {
        let d = self.now_ms.saturating_sub(ms);
        if d.abs() < 5_000 {
            "just now".into()
        } else if d > 0 {
            format!("{} ago", span(d))
        } else {
            format!("in {}", span(d.saturating_neg()))
        }
    }
}

/// The local time of `ms` and the zone's abbreviation, from the C library (which reads `TZ`).
fn local_time(ms: i64) -> Option<String> {
    let secs = libc::time_t::try_from(ms.div_euclid(1000)).ok()?;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; `localtime_r` writes only into `tm`.
    let done = unsafe { libc::localtime_r(&secs, &mut tm) };
    if done.is_null() {
        return None;
    }
    let zone = if tm.tm_zone.is_null() {
        let off = tm.tm_gmtoff / 60;
        format!("UTC{:+03}:{:02}", off / 60, (off % 60).abs())
    } else {
        // SAFETY: a non-null `tm_zone` points at a NUL-terminated string the C library keeps.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

/// A length of time in the largest sensible units, rounded to the nearest of the smallest
/// unit shown: `450 ms`, `31 s`, `3 min`, `2 h 5 min`, `3 d 4 h`.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = (ms + 500) / 1000;
    if s < 60 {
        return format!("{s} s");
    }
    let min = (s + 30) / 60;
    if min < 60 {
        return format!("{min} min");
    }
    if min < 24 * 60 {
        return match min % 60 {
            0 => format!("{} h", min / 60),
            m => format!("{} h {m} min", min / 60),
        };
    }
    let h = (min + 30) / 60;
    match h % 24 {
        0 => format!("{} d", h / 24),
        h2 => format!("{} d {h2} h", h / 24),
    }
}

/// Bytes in B, KiB, MiB, GiB or TiB with one decimal.
pub fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A plain number: integers as integers, others with up to one decimal from 100, two from
/// 1, three below, without trailing zeros.
pub fn number(v: f64) -> String {
    let text = if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A ratio (1.0 = 100 %) as a percentage.
pub fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p.abs() < 10.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.0} %")
    }
}

/// Seconds as a span (`12 ms`, `1.5 s`, `3 min`).
fn seconds(v: f64) -> String {
    if v == 0.0 {
        "0 s".into()
    } else if v.abs() < 1.0 {
        let ms = v * 1000.0;
        if ms.abs() < 10.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else if v.abs() < 60.0 {
        format!("{v:.1} s")
    } else {
        span((v * 1000.0) as i64)
    }
}

/// A value of `metric` in its unit, read from the name's suffix (`_bytes`, `_ratio`,
/// `_seconds`, `_bytes_per_second`); other metrics as plain numbers.
pub fn metric_value(metric: &str, v: f64) -> String {
    if metric.ends_with("bytes_per_second") {
        format!("{}/s", size(v))
    } else if metric.ends_with("_bytes") {
        size(v)
    } else if metric.ends_with("_ratio") {
        percent(v)
    } else if metric.ends_with("_seconds") {
        seconds(v)
    } else {
        number(v)
    }
}

/// The value of an aggregation of `metric`: counts are plain, rates per second, the others
/// in the metric's unit.
fn aggregate_value(metric: &str, agg: &str, v: f64) -> String {
    match agg {
        "count" => number(v),
        "rate" if metric.ends_with("_bytes") => format!("{}/s", size(v)),
        "rate" => format!("{}/s", number(v)),
        _ => metric_value(metric, v),
    }
}

/// A table whose columns are as wide as their widest cell (in characters), two spaces
/// apart, left-aligned, without trailing spaces.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A `SystemTime` as serde writes it (`{"secs_since_epoch", "nanos_since_epoch"}`), in ms.
fn system_time_ms(v: &Value) -> Option<i64> {
    let secs = v["secs_since_epoch"].as_i64()?;
    let nanos = v["nanos_since_epoch"].as_i64().unwrap_or(0);
    Some(secs.saturating_mul(1000).saturating_add(nanos / 1_000_000))
}

/// How a process ended, in words (`exit code 1`, `killed by signal 9 (SIGKILL)`), from the
/// JSON numbers of an exit.
pub fn describe_exit(code: Option<i64>, signal: Option<i64>) -> String {
    let narrow = |v: Option<i64>| v.and_then(|x| i32::try_from(x).ok());
    perfvisor::manager::describe_exit(narrow(code), narrow(signal))
}

/// A managed daemon's state as one word, and the longer story for the notes under the table.
fn managed_state(d: &Value, clock: &Clock) -> (String, Option<String>) {
    let state = &d["state"];
    let word = state["state"].as_str().unwrap_or("unknown").to_string();
    let note = match word.as_str() {
        "waiting" => Some(format!(
            "waiting for {}",
            state["on"]
                .as_array()
                .map(|on| on.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )),
        "backoff" => system_time_ms(&state["until"]).map(|t| format!("restarts {}", clock.ago(t))),
        // How it ended is in the last-exit note.
        "exited" => Some("exited; its restart policy does not restart it".to_string()),
        "fatal" => Some(format!(
            "gave up: {}{}",
            state["reason"].as_str().unwrap_or("?"),
            system_time_ms(&state["retry_at"])
                .map(|t| format!("; tries again {}", clock.ago(t)))
                .unwrap_or_default()
        )),
        _ => None,
    };
    (word, note)
}

/// The `status` text. `all` holds the API's answers: `status` (`/api/v1/status`), `daemons`
/// (`/api/v1/daemons`), `managed` (`/api/v1/managed`, null when nothing is managed),
/// `alerts` (`/api/v1/alerts`), `cpu` (a query of `process.cpu.utilization_ratio` over the
/// last [`CPU_WINDOW_MS`] with `agg=avg`) and `uptime` (a query of `process.uptime_seconds`
/// with `agg=last`).
pub fn render_status(all: &Value, clock: &Clock) -> String {
    let status = &all["status"];
    let daemons = all["daemons"].as_array().cloned().unwrap_or_default();
    let managed = all["managed"].as_array().cloned().unwrap_or_default();
    let alerts = all["alerts"].as_array().cloned().unwrap_or_default();
    let per_daemon = |query: &Value| -> BTreeMap<String, f64> {
        query
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let id = s["key"]["source"]["id"].as_str()?;
                let v = s["buckets"]
                    .as_array()?
                    .iter()
                    .rev()
                    .find_map(|b| b["values"][0].as_f64())?;
                Some((id.to_string(), v))
            })
            .collect()
    };
    let cpu = per_daemon(&all["cpu"]);
    let uptime = per_daemon(&all["uptime"]);

    let mut out = String::new();
    let started = status["started_at_ms"]
        .as_i64()
        .map(|t| format!(", up {}", span(clock.now_ms - t)))
        .unwrap_or_default();
    let mut names: Vec<String> = daemons
        .iter()
        .chain(&managed)
        .filter_map(|d| d["daemon"].as_str().or(d["name"].as_str()))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    let _ = writeln!(
        out,
        "perfvisor {}{started}: {} ({} watched), {} samples collected, {} alerts sent; storage: {} samples stored, {} dropped{}",
        status["health"].as_str().unwrap_or("?"),
        match names.len() {
            1 => "1 daemon".to_string(),
            n => format!("{n} daemons"),
        },
        daemons.len(),
        text(&status["samples_collected"]),
        text(&status["alerts_sent"]),
        text(&status["storage"]["stored_samples"]),
        text(&status["storage"]["dropped_samples"]),
        status["storage"]["write_blocked"]
            .as_str()
            .map(|r| format!(", WRITES FAILING: {r}"))
            .unwrap_or_default()
    );
    for reason in status["health_reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  degraded: {}", text(reason));
    }
    for r in status["remote_write"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  remote write {}: lag {}s, {} pending, {} sent, {} retries, {} dropped{}",
            text(&r["name"]),
            r["lag_seconds"]
                .as_f64()
                .map_or("?".into(), |l| format!("{l:.0}")),
            text(&r["pending_samples"]),
            text(&r["sent_samples"]),
            text(&r["retries"]),
            text(&r["dropped_samples"]),
            r["last_error"]
                .as_str()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }

    // One row per daemon, managed or attached, by name.
    if names.is_empty() {
        out.push_str("No daemon is watched or managed.\n");
        return out;
    }
    let mut table = Table::new(&[
        "DAEMON",
        "KIND",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "CPU (avg 1 min)",
        "MEMORY",
        "SCORE",
        "LEVEL",
        "ALERTS",
        "FIGURES FROM",
    ]);
    let mut notes = Vec::new();
    // Daemons whose MEMORY is what their cgroup is charged, for one note under the table.
    let mut charged = Vec::new();
    for name in &names {
        let watched = daemons.iter().find(|d| d["daemon"] == name.as_str());
        let sources = status["watchers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["daemon"] == name.as_str())
            .map_or(&Value::Null, |w| &w["sources"]);
        let managed = managed.iter().find(|d| d["name"] == name.as_str());
        let (state, note) = match managed {
            Some(m) => managed_state(m, clock),
            None => ("running".to_string(), None),
        };
        if let Some(note) = note {
            notes.push(format!("{name}: {note}"));
        }
        if let Some(exit) = managed.map(|m| &m["last_exit"]).filter(|e| e.is_object()) {
            if let Some(at) = system_time_ms(&exit["at"]) {
                notes.push(format!(
                    "{name}: last exit {}: {}, after running {}",
                    clock.ago(at),
                    describe_exit(exit["code"].as_i64(), exit["signal"].as_i64()),
                    span(
                        exit["uptime"]["secs"].as_i64().unwrap_or(0) * 1000
                            + exit["uptime"]["nanos"].as_i64().unwrap_or(0) / 1_000_000
                    )
                ));
            }
        }
        let pid = managed
            .and_then(|m| m["pid"].as_u64())
            .or_else(|| watched.and_then(|w| w["pid"].as_u64()));
        // A managed daemon's uptime is its process's; an attached one's is what was measured.
        let up = match managed {
            Some(m) if m["pid"].is_u64() => {
                system_time_ms(&m["started_at"]).map(|t| span(clock.now_ms - t))
            }
            Some(_) => None,
            None => uptime.get(name).map(|s| span((s * 1000.0) as i64)),
        };
        let firing = alerts
            .iter()
            .filter(|a| a["daemon"] == name.as_str())
            .count();
        let w = |key: &str| watched.map_or(&Value::Null, |w| &w[key]);
        table.row(vec![
            name.clone(),
            if managed.is_some() {
                "managed"
            } else {
                "attached"
            }
            .into(),
            state,
            pid.map_or_else(|| "-".into(), |p| p.to_string()),
            up.unwrap_or_else(|| "-".into()),
            // Restarts perfvisor performed; an attached daemon is restarted by someone else.
            managed
                .and_then(|m| m["restarts"].as_u64())
                .map_or_else(|| "-".into(), |r| r.to_string()),
            match cpu.get(name) {
                Some(c) if watched.is_some() => percent(*c),
                _ => "-".into(),
            },
            match w("rss_bytes").as_f64() {
                None => "-".into(),
                Some(b) if text(&sources["memory"]).starts_with("cgroup") => {
                    charged.push(name.as_str());
                    format!("{} charged", size(b))
                }
                Some(b) => size(b),
            },
            w("score")
                .as_f64()
                .map_or_else(|| "-".into(), |s| format!("{s:.0}")),
            w("level").as_str().unwrap_or("-").to_string(),
            firing.to_string(),
            {
                let (cell, note) = sources_cell(sources);
                if let Some(note) = note {
                    notes.push(format!("{name}: {note}"));
                }
                cell
            },
        ]);
    }
    if !charged.is_empty() {
        notes.push(format!(
            "memory charged: what the daemon's cgroup is charged (page cache and kernel memory \
             included, pages first charged to another cgroup left out), not its resident set: {}",
            charged.join(", ")
        ));
    }
    out.push('\n');
    out.push_str(&table.render());
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    out
}

/// Where a daemon's figures come from, for the `FIGURES FROM` column (`process tree`,
/// `cgroup v2`, `cgroup v2, memory: cgroup v1 memory`), and a note with the reason when a
/// daemon perfvisor started could not get a cgroup of its own.
fn sources_cell(sources: &Value) -> (String, Option<String>) {
    if !sources.is_object() {
        return ("-".into(), None);
    }
    if let Some(reason) = sources["no_cgroup"].as_str() {
        return (
            "process tree (no cgroup)".into(),
            Some(format!("no cgroup of its own: {reason}")),
        );
    }
    let (cpu, memory, pids) = (
        text(&sources["cpu"]),
        text(&sources["memory"]),
        text(&sources["pids"]),
    );
    let cell = if cpu == memory && memory == pids {
        cpu
    } else if cpu == pids {
        format!("{cpu}, memory: {memory}")
    } else {
        format!("cpu: {cpu}, memory: {memory}, pids: {pids}")
    };
    (cell, None)
}

/// The top children of a daemon's report (`children`), two small tables; nothing when it has
/// no descendant.
fn render_children(children: &Value, out: &mut String) {
    let Some(descendants) = children["descendants"].as_u64() else {
        return;
    };
    for (key, what) in [("by_cpu", "CPU"), ("by_memory", "memory")] {
        let list = children[key].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\nTop children by {what} ({} of {descendants} descendant{}):",
            list.len(),
            if descendants == 1 { "" } else { "s" }
        );
        let mut table = Table::new(&["PID", "PARENT", "COMMAND", "CPU", "MEMORY"]);
        for c in &list {
            table.row(vec![
                text(&c["pid"]),
                text(&c["ppid"]),
                text(&c["command"]),
                c["cpu_ratio"].as_f64().map_or_else(|| "-".into(), percent),
                c["rss_bytes"].as_f64().map_or_else(|| "-".into(), size),
            ]);
        }
        out.push_str(&table.render());
    }
}

/// The `alerts` text: one row per firing alert, its message last.
pub fn render_alerts(alerts: &Value, clock: &Clock) -> String {
    let list = alerts.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "No alert is firing.\n".into();
    }
    let mut table = Table::new(&["SEVERITY", "RULE", "DAEMON", "SINCE", "MESSAGE"]);
    for a in &list {
        table.row(vec![
            text(&a["severity"]),
            text(&a["rule"]),
            text(&a["daemon"]),
            a["since_ms"]
                .as_i64()
                .map_or_else(|| "-".into(), |t| clock.time_ago(t)),
            text(&a["message"]),
        ]);
    }
    table.render()
}

/// The `report` text: score and why, bottlenecks, recommendations, predictions, statistics.
pub fn render_report(r: &Value, clock: &Clock) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: score {} ({}), {} in the last 10 minutes{}",
        text(&r["daemon"]),
        r["score"]["value"]
            .as_f64()
            .map_or_else(|| "-".into(), |s| format!("{s:.0}")),
        text(&r["score"]["level"]),
        match r["restarts_recent"].as_u64() {
            Some(1) => "1 restart".to_string(),
            Some(n) => format!("{n} restarts"),
            None => "? restarts".to_string(),
        },
        r["generated_at_ms"]
            .as_i64()
            .map(|t| format!("; judged {}", clock.ago(t)))
            .unwrap_or_default()
    );
    for d in r["score"]["breakdown"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  −{} {}: {}",
            d["points"].as_f64().map_or_else(|| "?".into(), number),
            text(&d["category"]),
            text(&d["reason"])
        );
    }
    let bottlenecks = r["bottlenecks"].as_array().cloned().unwrap_or_default();
    if bottlenecks.is_empty() {
        out.push_str("No bottleneck.\n");
    }
    for b in &bottlenecks {
        let _ = writeln!(
            out,
            "Bottleneck {} (severity {}): {}",
            text(&b["kind"]).replace('_', " "),
            b["severity"]
                .as_f64()
                .map_or_else(|| "?".into(), |s| format!("{s:.2}")),
            text(&b["summary"])
        );
        for e in b["evidence"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    {}", text(&e["detail"]));
        }
    }
    for (i, rec) in r["recommendations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "{}. {} — expected: {}{}",
            i + 1,
            text(&rec["action"]),
            text(&rec["expected_effect"]),
            if rec["auto_action"].is_null() {
                ""
            } else {
                " [perfvisor can do this]"
            }
        );
    }
    for p in r["predictions"].as_array().into_iter().flatten() {
        let metric = p["metric"].as_str().unwrap_or("");
        let when = &p["when"];
        let window = match (when["earliest_ms"].as_i64(), when["latest_ms"].as_i64()) {
            (Some(e), Some(l)) => format!(", between {} and {}", clock.time(e), clock.time(l)),
            (Some(e), None) => format!(", at the earliest {}", clock.time(e)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "Prediction: {metric} reaches {} ({}) around {}{window}{}",
            text(&p["limit"]),
            when["threshold"]
                .as_f64()
                .map_or_else(|| "?".into(), |t| metric_value(metric, t)),
            when["eta_ms"]
                .as_i64()
                .map_or_else(|| "?".into(), |t| clock.time_ago(t)),
            when["confidence"]
                .as_f64()
                .map(|c| format!(" ({:.0} % confidence)", c * 100.0))
                .unwrap_or_default()
        );
    }
    render_children(&r["children"], &mut out);
    let mut table = Table::new(&["SERIES", "LAST", "MEAN", "P95", "MAX", "TREND"]);
    for s in r["series"].as_array().into_iter().flatten() {
        let metric = s["metric"].as_str().unwrap_or("?");
        let stat = |k: &str| {
            s["stats"][k]
                .as_f64()
                .map_or_else(|| "-".into(), |v| metric_value(metric, v))
        };
        let labels = labels_text(&s["labels"]);
        table.row(vec![
            format!("{metric}{labels}"),
            stat("last"),
            stat("mean"),
            stat("p95"),
            stat("max"),
            s["trend"]["class"]
                .as_str()
                .map_or_else(|| "-".into(), str::to_lowercase),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(map) if !map.is_empty() => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => String::new(),
    }
}

/// A series' source in words: `daemon worker`, `host`, `perfvisor`.
fn source_text(source: &Value) -> String {
    match (source["kind"].as_str(), source["id"].as_str()) {
        (Some(kind), Some(id)) => format!("{kind} {id}"),
        (Some(kind), None) => kind.to_string(),
        _ => text(source),
    }
}

/// The `query` text: per series its source, metric and tier, then a table of samples (TIME,
/// VALUE) or of buckets (FROM and one column per aggregation in `aggs`).
pub fn render_query(result: &Value, aggs: &[String], clock: &Clock) -> String {
    let list = result.as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    for (i, series) in list.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let metric = series["key"]["metric"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{} · {metric}{} ({} tier{})",
            source_text(&series["key"]["source"]),
            labels_text(&series["key"]["labels"]),
            text(&series["tier"]),
            if series["partial"].as_bool() == Some(true) {
                "; partial: older data is no longer kept"
            } else {
                ""
            }
        );
        if aggs.is_empty() {
            let mut table = Table::new(&["TIME", "VALUE"]);
            for s in series["samples"].as_array().into_iter().flatten() {
                table.row(vec![
                    s[0].as_i64().map_or_else(|| "?".into(), |t| clock.time(t)),
                    s[1].as_f64()
                        .map_or_else(|| "-".into(), |v| metric_value(metric, v)),
                ]);
            }
            out.push_str(&table.render());
        } else {
            let mut headers = vec!["FROM".to_string()];
            headers.extend(aggs.iter().map(|a| a.to_uppercase()));
            let mut table = Table::new(&headers.iter().map(String::as_str).collect::<Vec<_>>());
            for b in series["buckets"].as_array().into_iter().flatten() {
                let mut row = vec![b["start_ms"]
                    .as_i64()
                    .map_or_else(|| "?".into(), |t| clock.time(t))];
                for (j, agg) in aggs.iter().enumerate() {
                    row.push(
                        b["values"][j]
                            .as_f64()
                            .map_or_else(|| "-".into(), |v| aggregate_value(metric, agg, v)),
                    );
                }
                table.row(row);
            }
            out.push_str(&table.render());
        }
    }
    out
}

/// The `silence list` text.
pub fn render_silences(list: &Value, clock: &Clock) -> String {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "No silence.\n".into();
    }
    let mut table = Table::new(&["ID", "MATCHES", "FROM", "UNTIL", "BY", "COMMENT"]);
    for s in &list {
        let matchers = s["matchers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{}={}", text(&m["name"]), text(&m["value"])))
            .collect::<Vec<_>>()
            .join(" ");
        let from = match s["starts_ms"].as_i64() {
            Some(t) if t > clock.now_ms => clock.time_ago(t),
            Some(_) => "now".into(),
            None => "-".into(),
        };
        table.row(vec![
            text(&s["id"]),
            matchers,
            from,
            s["ends_ms"]
                .as_i64()
                .map_or_else(|| "-".into(), |t| clock.time_ago(t)),
            text(&s["created_by"]),
            s["comment"].as_str().unwrap_or("").to_string(),
        ]);
    }
    table.render()
}

/// The `reload` text, from `POST /api/v1/reload`'s answer.
pub fn render_reload(answer: &Value) -> String {
    match answer["reloaded"].as_str() {
        Some(summary) => format!("Reloaded: {summary}.\n"),
        None => "Reloaded.\n".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The moment the golden outputs are rendered at: 2026-12-06 20:20:00 UTC.
    pub(crate) const NOW_MS: i64 = 1_796_588_400_000;

    /// Human output holds no 13-digit epoch number, no Rust `Debug` rendering (`Some(`,
    /// `None`, struct dumps) and no ANSI escape.
    pub(crate) fn assert_human(name: &str, text: &str) {
        let bytes = text.as_bytes();
        let mut run = 0;
        for (i, b) in bytes.iter().enumerate() {
            if b.is_ascii_digit() {
                run += 1;
            } else {
                run = 0;
            }
            let ends = bytes.get(i + 1).is_none_or(|n| !n.is_ascii_digit());
            assert!(
                !(run >= 13 && ends),
                "{name}: an epoch-like number in\n{text}"
            );
        }
        for needle in ["Some(", "None", " { ", "\u{1b}[", "{\"", "\":"] {
            assert!(!text.contains(needle), "{name}: {needle:?} in\n{text}");
        }
    }

    /// Renders `name` from `tests/golden/<name>.input.json` and compares it with
    /// `tests/golden/<name>.txt` (rewritten with UPDATE_GOLDEN=1).
    fn golden(name: &str, render: impl FnOnce(&Value) -> String) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let input = std::fs::read_to_string(dir.join(format!("{name}.input.json")))
            .unwrap_or_else(|e| panic!("{name}.input.json: {e}"));
        let input: Value = serde_json::from_str(&input).unwrap();
        let text = render(&input);
        assert_human(name, &text);
        let path = dir.join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            text, expected,
            "{name}: rerun with UPDATE_GOLDEN=1 if the change is intended"
        );
    }

    /// `status` of a running managed daemon, a fatal one and an attached one: states as
    /// words, one restart figure (the manager's), uptime, CPU averaged over a named window,
    /// memory in MiB, aligned columns (`tests/golden/status.txt`).
    #[test]
    fn status_is_pinned() {
        golden("status", |v| render_status(v, &Clock::utc(NOW_MS)));
    }

    /// `alerts` with local times and "ago" (`tests/golden/alerts.txt`).
    #[test]
    fn alerts_are_pinned() {
        golden("alerts", |v| render_alerts(v, &Clock::utc(NOW_MS)));
        assert_eq!(
            render_alerts(&Value::Array(vec![]), &Clock::utc(NOW_MS)),
            "No alert is firing.\n"
        );
    }

    /// `report` with a bottleneck, a recommendation and a prediction: times, sizes and
    /// percentages instead of epoch ms and raw floats (`tests/golden/report.txt`).
    #[test]
    fn report_is_pinned() {
        golden("report", |v| render_report(v, &Clock::utc(NOW_MS)));
    }

    /// `query` of raw samples and of aggregated buckets: labelled sources, times, units,
    /// `-` for an empty bucket (`tests/golden/query.txt`).
    #[test]
    fn query_is_pinned() {
        golden("query", |v| {
            let mut out = render_query(&v["raw"], &[], &Clock::utc(NOW_MS));
            out.push_str("---\n");
            let aggs = ["avg".to_string(), "max".to_string(), "count".to_string()];
            out.push_str(&render_query(&v["buckets"], &aggs, &Clock::utc(NOW_MS)));
            out
        });
    }

    /// `silence list`: matchers as `name=value`, end times with "in 2 h"
    /// (`tests/golden/silences.txt`).
    #[test]
    fn silences_are_pinned() {
        golden("silences", |v| render_silences(v, &Clock::utc(NOW_MS)));
    }

    /// `reload`: the instance's summary in a sentence (`tests/golden/reload.txt`).
    #[test]
    fn reload_is_pinned() {
        golden("reload", |v| {
            let mut out = String::new();
            for answer in v.as_array().into_iter().flatten() {
                out.push_str(&render_reload(answer));
            }
            out
        });
    }

    /// The helpers: spans, sizes, exits in words.
    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(span(450), "450 ms");
        assert_eq!(span(31_000), "31 s");
        assert_eq!(span(180_000), "3 min");
        assert_eq!(span(7_500_000), "2 h 5 min");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
        assert_eq!(span(3_600_000 - 2_000), "1 h", "rounded, not cut");
        assert_eq!(span(59_600), "1 min");
        assert_eq!(size(14_446_592.0), "13.8 MiB");
        assert_eq!(size(512.0), "512 B");
        assert_eq!(size(3.5 * 1_073_741_824.0), "3.5 GiB");
        assert_eq!(percent(0.25), "25 %");
        assert_eq!(describe_exit(Some(1), None), "exit code 1");
        assert_eq!(describe_exit(None, Some(9)), "killed by signal 9 (SIGKILL)");
        let clock = Clock::utc(NOW_MS);
        assert_eq!(clock.time(NOW_MS), "2026-12-06 20:20:00 UTC");
        assert_eq!(clock.ago(NOW_MS - 180_000), "3 min ago");
        assert_eq!(clock.ago(NOW_MS + 7_200_000), "in 2 h");
        assert_eq!(clock.ago(NOW_MS), "just now");
    }

    /// Columns are as wide as their widest cell, whatever the content.
    #[test]
    fn tables_align_whatever_the_content() {
        let mut t = Table::new(&["A", "B", "C"]);
        t.row(vec!["a-long-name".into(), "x".into(), "1".into()]);
        t.row(vec!["b".into(), "a much longer cell".into(), "22".into()]);
        assert_eq!(
            t.render(),
            "A            B                   C\n\
             a-long-name  x                   1\n\
             b            a much longer cell  22\n"
        );
    }
}
