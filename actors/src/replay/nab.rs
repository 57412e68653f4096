//! The precision of anomaly *alerts* on the eight vendored NAB series: each file replayed
//! through [`replay`] as a daemon's app metric with a signal rule following its anomaly
//! candidates, and the firing notifications scored with NAB's standard profile. This
//! measures what a user receives, not the detector's verdicts.
//!
//! Scoring, as NAB's `Sweeper` does it for one threshold:
//! - weights of the standard profile: true positive 1.0, false positive 0.11, false
//!   negative 1.0;
//! - a detection (a firing notification, placed on the row of its sample) inside a window
//!   (both ends inclusive) scores `A_TP · σ(position)` for the first one, where position
//!   runs from −1 at the window's start to 0 at its end and σ(x) = 2/(1 + e^(5x)) − 1;
//!   later ones in that window are ignored;
//! - a detection outside every window is a false positive scoring `A_FP · σ(p)` with p the
//!   distance past the previous window's end in window lengths (−1, the full penalty, before
//!   the first window), so one just after a window costs less;
//! - a window without a detection costs `A_FN`;
//! - detections within the probationary period (`min(floor(0.15 · rows), 750)` rows) are
//!   not scored;
//! - normalized score = 100 · (raw − null) / (perfect − null), the null detector detecting
//!   nothing (−A_FN per window) and the perfect one detecting at every window's start.
//!
//! Run: `cargo test --release -p perfvisor-actors --lib nab_alert -- --ignored --nocapture`.

use std::collections::HashMap;
use std::time::Duration;

use super::parse_csv;
use super::{replay, ReplayConfig, ReplaySeries};
use crate::alerts::{effective_rules, ThresholdRule};
use crate::analyzer::signals::AlertPolicy;
use crate::testdata::{nab_dir, parse_nab_ts};
use crate::types::{AlertState, DaemonId, Labels, MetricKind, SeriesKey, Source, TimestampMs};

const A_TP: f64 = 1.0;
const A_FP: f64 = 0.11;
const A_FN: f64 = 1.0;

/// NAB's scaled sigmoid.
fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// One labelled file.
struct NabFile {
    name: String,
    rows: Vec<(i64, f64)>,
    windows: Vec<(i64, i64)>,
}

/// The score of one file.
#[derive(Debug, Default, Clone)]
struct FileScore {
    windows: usize,
    found: usize,
    false_positives: usize,
    /// Days of data scored (after probation).
    days: f64,
    raw: f64,
    null: f64,
    perfect: f64,
}

fn load() -> Vec<NabFile> {
    let dir = nab_dir();
    let text = std::fs::read_to_string(dir.join("labels.json")).expect("labels.json");
    let labels: HashMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).expect("labels.json parses");
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            // The parser `perfvisor replay` uses.
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).expect("NAB csv");
            let mut rows = parse_csv(name, &text).expect("NAB csv parses");
            rows.sort_by_key(|r| r.0);
            let windows = labels[name]
                .iter()
                .map(|[a, b]| (parse_nab_ts(a).expect("ts"), parse_nab_ts(b).expect("ts")))
                .collect();
            NabFile {
                name: name.clone(),
                rows,
                windows,
            }
        })
        .collect()
}

fn probation_rows(rows: usize) -> usize {
    ((rows as f64 * 0.15).floor() as usize).min(750)
}

/// Scores detections (sample times) on a file, as the module documentation says.
fn score(file: &NabFile, detections: &[TimestampMs]) -> FileScore {
    let ts: Vec<i64> = file.rows.iter().map(|r| r.0).collect();
    let row_of = |t: i64| {
        ts.partition_point(|&x| x < t)
            .min(ts.len().saturating_sub(1))
    };
    let windows: Vec<(usize, usize)> = file
        .windows
        .iter()
        .map(|&(a, b)| (row_of(a), ts.partition_point(|&x| x <= b).saturating_sub(1)))
        .collect();
    let probation = probation_rows(ts.len());
    let mut s = FileScore {
        windows: windows.len(),
        days: (ts.len() - probation) as f64 * 5.0 / 1440.0,
        null: -A_FN * windows.len() as f64,
        perfect: A_TP * scaled_sigmoid(-1.0) * windows.len() as f64,
        ..FileScore::default()
    };
    if let (Some(first), Some(last)) = (ts.get(probation), ts.last()) {
        s.days = (last - first) as f64 / 86_400_000.0;
    }
    let mut first_in: Vec<Option<f64>> = vec![None; windows.len()];
    let mut sorted = detections.to_vec();
    sorted.sort_unstable();
    for t in sorted {
        let i = row_of(t);
        if i < probation {
            continue;
        }
        if let Some(w) = windows.iter().position(|&(a, b)| a <= i && i <= b) {
            let (a, b) = windows[w];
            let width = (b - a + 1) as f64;
            let position = -((b - i + 1) as f64) / width;
            first_in[w].get_or_insert(A_TP * scaled_sigmoid(position));
            continue;
        }
        s.false_positives += 1;
        let previous = windows.iter().filter(|&&(_, b)| b < i).max_by_key(|w| w.1);
        let weight = match previous {
            None => -1.0,
            Some(&(a, b)) => {
                let past = (i - b) as f64 / ((b - a) as f64).max(1.0);
                scaled_sigmoid(past)
            }
        };
        s.raw += A_FP * weight;
    }
    for found in &first_in {
        match found {
            Some(v) => {
                s.found += 1;
                s.raw += v;
            }
            None => s.raw -= A_FN,
        }
    }
    s
}

/// Replays one file as `app.<stem>` of daemon `replay`, with the default rules and a
/// signal rule following its anomaly candidates; returns the firing times.
fn alerts(file: &NabFile, policy: &AlertPolicy) -> Vec<TimestampMs> {
    let stem = std::path::Path::new(&file.name)
        .file_stem()
        .map_or("series".into(), |s| s.to_string_lossy().to_string());
    let metric = format!("app.{stem}");
    let signal = format!("anomaly.{metric}");
    let series = [ReplaySeries {
        key: SeriesKey::new(
            Source::Daemon(DaemonId::new("replay")),
            metric,
            Labels::empty(),
        ),
        kind: MetricKind::Gauge,
        samples: file.rows.clone(),
    }];
    let mut config = ReplayConfig::new(effective_rules(
        &[ThresholdRule::signal(signal.clone(), signal.clone())],
        true,
    ));
    config.policy = policy.clone();
    config.judge_interval = Duration::from_secs(5);
    replay(&series, &config)
        .notifications
        .iter()
        .filter(|a| a.rule == signal && a.state == AlertState::Firing)
        .map(|a| a.at_ms)
        .collect()
}

/// Totals over the files: (found, windows, false positives, FP per day, normalized score).
fn totals(scores: &[FileScore]) -> (usize, usize, usize, f64, f64) {
    let sum = |f: fn(&FileScore) -> f64| scores.iter().map(f).sum::<f64>();
    let found = scores.iter().map(|s| s.found).sum();
    let windows = scores.iter().map(|s| s.windows).sum();
    let fps = scores.iter().map(|s| s.false_positives).sum::<usize>();
    let per_day = fps as f64 / sum(|s| s.days);
    let (raw, null, perfect) = (sum(|s| s.raw), sum(|s| s.null), sum(|s| s.perfect));
    (
        found,
        windows,
        fps,
        per_day,
        100.0 * (raw - null) / (perfect - null),
    )
}

fn run(policy: &AlertPolicy, files: &[NabFile]) -> Vec<FileScore> {
    files.iter().map(|f| score(f, &alerts(f, policy))).collect()
}

/// Prints the per-file table of the default policy (docs/ANOMALIES.md).
#[test]
#[ignore = "a measurement; run in release with --nocapture"]
fn nab_alert_score() {
    let files = load();
    let policy = AlertPolicy::default();
    let scores = run(&policy, &files);
    println!("| file | windows found | false alerts | false alerts per day | score |");
    println!("|---|---:|---:|---:|---:|");
    for (f, s) in files.iter().zip(&scores) {
        println!(
            "| {} | {} of {} | {} | {:.2} | {:.1} |",
            f.name,
            s.found,
            s.windows,
            s.false_positives,
            s.false_positives as f64 / s.days,
            100.0 * (s.raw - s.null) / (s.perfect - s.null)
        );
    }
    let (found, windows, fps, per_day, normalized) = totals(&scores);
    println!(
        "| **total** | **{found} of {windows}** | **{fps}** | **{per_day:.2}** | **{normalized:.1}** |"
    );
}

/// Prints totals for a grid of policies around the default (docs/ANOMALIES.md).
#[test]
#[ignore = "a measurement; run in release with --nocapture"]
fn nab_alert_policy_grid() {
    let files = load();
    println!(
        "| spike floor | budget/day | quiet samples | found | false alerts | per day | score |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for floor in [3.5, 3.75, 4.0, 5.0, 12.0] {
        for budget in [None, Some(0.05), Some(0.1), Some(0.2)] {
            for quiet in [0, 12] {
                let policy = AlertPolicy {
                    spike_score_floor: floor,
                    false_alerts_per_day: budget,
                    quiet_samples: quiet,
                    ..AlertPolicy::default()
                };
                let (found, windows, fps, per_day, normalized) = totals(&run(&policy, &files));
                println!(
                    "| {floor} | {} | {quiet} | {found} of {windows} | {fps} | {per_day:.2} | {normalized:.1} |",
                    budget.map_or("-".into(), |b| b.to_string())
                );
            }
        }
    }
}

/// The scorer gives NAB's reference values: the null detector 0, a detection at every
/// window's start 100, a false positive before any window −0.11.
#[test]
fn scorer_matches_nab_definitions() {
    let rows: Vec<(i64, f64)> = (0..1000).map(|i| (i * 300_000, 0.0)).collect();
    let file = NabFile {
        name: "synthetic.csv".into(),
        windows: vec![(500 * 300_000, 599 * 300_000)],
        rows,
    };
    let null = score(&file, &[]);
    assert_eq!(null.found, 0);
    assert!((null.raw - null.null).abs() < 1e-12);
    let perfect = score(&file, &[500 * 300_000]);
    assert!((perfect.raw - perfect.perfect).abs() < 1e-12);
    let fp = score(&file, &[200 * 300_000, 500 * 300_000]);
    assert_eq!(fp.false_positives, 1);
    assert!((perfect.raw - fp.raw - 0.11).abs() < 1e-9);
    // In probation (the first 150 rows): not scored.
    assert_eq!(score(&file, &[10 * 300_000]).false_positives, 0);
}

/// The default policy keeps its measured figures on NAB (docs/ANOMALIES.md): at least this
/// many windows found, at most this many false alerts per day.
#[test]
fn nab_alert_floor() {
    let (found, windows, _, per_day, _) = totals(&run(&AlertPolicy::default(), &load()));
    assert_eq!(windows, 16);
    assert!(found >= NAB_MIN_FOUND, "{found} of 16 windows");
    assert!(
        per_day <= NAB_MAX_PER_DAY,
        "{per_day:.2} false alerts a day"
    );
}

const NAB_MIN_FOUND: usize = 11;
const NAB_MAX_PER_DAY: f64 = 0.05;
