//! perfvisor's integration tests: the whole system, real child processes, real SQLite files.
//! One test binary; each module covers one promise of the engine.

#[path = "../support/mod.rs"]
mod support;

// A real panic in each actor kind: restart, nothing queued lost, degraded past the budget.
mod supervision;
// Watchers follow real processes: spawn, retire on kill, fresh watcher for a new pid.
mod watchers;
// CPU and memory of a real process reported within the promised tolerance.
mod accuracy;
// The hot path never blocks and counts what it drops; shutdown loses nothing accepted.
mod recording;
// Alerts reach host actors and closures; a dead subscriber does not stop the others.
mod alerting;
// History survives SIGKILL of the writing process at random moments.
mod crash;
// SIGKILL of the perfvisor binary under load: history, alerts and managed daemons survive.
mod binary_crash;
// Random panics in random actors for a minute under load: serving, restarts, accounting.
mod chaos;
// A real full disk (tmpfs) and a slow one under load: bounded, counted, alerted, recovered.
mod disk;
// No fork without a record: a full state disk or EMFILE starts nothing, a restart starts one.
mod durable_start;
// A tokio host without actix: alerts as a stream, an async control, refused calls.
mod tokio_host;
// Alert state across restarts, Alertmanager, dead webhooks, restart actions.
mod delivery;
// The HTTP API: tokens, 400s, external daemons, Prometheus.
mod http;
// The API under attack from this machine: query budget, Host check, idle connections,
// forged pushes, token scopes.
mod hardening;
// The perfvisor binary: check-config fixtures, run with managed and attached daemons.
mod cli;
// check-config and run on configs that cannot work: wrong metric units, what the machine lacks.
mod check_config;
// Operator stops, restarts and reloads through the binary page nobody; a crash still counts.
mod intent;
// One perfvisor per database: a second engine or binary is refused, the first untouched.
mod single_instance;
// Rules users see (`perfvisor rules`) and a reload that removes rules.
mod reload_rules;
// Bottlenecks, scores and recommendations from real misbehaving processes.
mod judgement;
// The host's own histograms: window statistics, bounded history, a latency step alerts.
mod app_histograms;
// The dashboard of a real `perfvisor run` in headless Chromium: deep link, state, charts above the fold.
mod dashboard;
// `perfvisor replay`: CSV and database ranges through the analyzer and rules, offline.
mod replay;
// Whole daemons: process trees measured whole, a worker's exit keeps its CPU time.
mod trees;
// Remote write to real Prometheus and VictoriaMetrics: an outage filled from history,
// nothing lost or repeated; retries, drops and a restart resuming from the cursor.
mod remote_write;
// OTLP/HTTP intake: protobuf and JSON exports, 400s, the OpenTelemetry Python SDK.
mod otlp;
// perfvisor's judgement as perfvisor.judgement.* series on /metrics and in history.
mod judgement_metrics;
