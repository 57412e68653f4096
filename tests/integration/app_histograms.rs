//! The host's own app metrics as histograms, judged like a daemon's: a latency the host
//! records about itself that steps from 5 to 50 ms raises `bottleneck.latency_regression`
//! on `pv.alerts()`, while the same latency held steady raises nothing; reports cover the
//! last minutes with the histogram's count and quantiles, and the history holds a few
//! points per interval, not one per observation. Time is a manual clock, so 20 minutes
//! take a second or two.

use std::time::Duration;

use perfvisor::{AlertState, ManualClock, Perfvisor};

use crate::support;

const T0: i64 = 1_767_225_600_000;
/// Observations a second.
const RATE: i64 = 20;

/// Records `minutes` of the host's search latency at `RATE` a second, the level from
/// `level(minute)` ± 10 %, moving the clock a second at a time and letting the intake
/// drain every 10 s of it.
async fn record_minutes(
    pv: &Perfvisor,
    clock: &ManualClock,
    from_minute: i64,
    minutes: i64,
    level: impl Fn(i64) -> f64,
) {
    let rec = pv.recorder();
    let mut rng = fastrand::Rng::with_seed(5);
    for second in from_minute * 60..(from_minute + minutes) * 60 {
        for _ in 0..RATE {
            rec.observe(
                "search.latency_seconds",
                level(second / 60) * (0.9 + 0.2 * rng.f64()),
            );
        }
        clock.advance_ms(1_000);
        if second % 10 == 9 {
            // Real time for the intake and collector to take the 10 s just recorded.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while rec.backlog() > 0 {
                assert!(std::time::Instant::now() < deadline, "the intake is stuck");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn start(clock: &ManualClock) -> support::TestPv {
    let clock = clock.clone();
    support::start(move |b| {
        b.clock(clock)
            .judge_interval(Duration::from_millis(200))
            .judge_config(perfvisor::JudgeConfig::default())
    })
}

/// A steady host latency raises nothing; a step from 5 to 50 ms raises a latency
/// regression of the host (no daemon) through the default rule, on the alert stream; the
/// host report shows the histogram of the last 10 minutes, and storage holds 5 points per
/// 10 s interval.
#[tokio::test]
async fn host_latency_step_alerts_through_the_stream() {
    let clock = ManualClock::new(T0);
    let t = start(&clock);
    let mut alerts = t.pv.alerts().await.expect("subscribed");
    record_minutes(&t.pv, &clock, 0, 15, |_| 0.005).await;
    // Steady for 15 minutes: the judgement of now finds nothing, and nothing was raised.
    let report = t.pv.host_report().await.unwrap().expect("host report");
    assert!(
        report.judgement.app_bottlenecks.is_empty(),
        "{:#?}",
        report.judgement
    );
    while let Some(a) = alerts.try_recv() {
        assert_ne!(a.rule, "bottleneck.latency_regression", "{a:?}");
    }
    let hist = report
        .histograms
        .iter()
        .find(|h| h.metric.as_str() == "search.latency_seconds")
        .unwrap_or_else(|| panic!("the histogram in {:#?}", report.histograms));
    // The last 10 minutes (to one minute) of 20 a second, the open interval aside.
    assert!(
        (hist.count as i64 - 10 * 60 * RATE).abs() <= 70 * RATE,
        "{hist:?}"
    );
    assert!(hist.p50 > 0.0045 && hist.p50 < 0.0056, "{hist:?}");
    assert_eq!(hist.relative_accuracy, 0.005);

    record_minutes(&t.pv, &clock, 15, 5, |_| 0.050).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let a = tokio::time::timeout_at(deadline, alerts.recv())
            .await
            .expect("a latency regression alert within 30 s")
            .expect("the stream is open");
        if a.rule == "bottleneck.latency_regression" {
            break a;
        }
    };
    assert_eq!(alert.state, AlertState::Firing);
    assert_eq!(alert.daemon, None, "{alert:?}");
    assert_eq!(alert.series.source.as_text(), "host");
    assert_eq!(alert.series.metric.as_str(), "search.latency_seconds");
    assert!(alert.message.contains("got slower"), "{}", alert.message);

    t.pv.shutdown().await.unwrap();
    // 20 minutes at 20 a second are 24 000 observations; the history holds five points per
    // 10 s interval (p50, p90, p99, count, sum), not one per observation.
    let stored: u64 = ["search.latency_seconds", "search.latency_seconds.count"]
        .iter()
        .map(|m| support::stored_count(&t.db(), m))
        .sum();
    let intervals = 20 * 6;
    assert!(
        stored >= 4 * (intervals - 1) && stored <= 4 * (intervals + 5),
        "{stored} points for {intervals} intervals"
    );
}

/// History of one latency recorded 50 times a second for an hour: as raw gauges (`record`)
/// and as a histogram (`observe`). Compacted, the histogram's chunks are a small fraction
/// of the raw ones (five points per 10 s instead of 500). Prints the figures
/// (`-- --nocapture`), which BENCHMARKS.md quotes.
#[tokio::test]
async fn histogram_history_costs_per_interval_not_per_observation() {
    async fn chunk_bytes(observe: bool) -> (u64, u64) {
        let clock = ManualClock::new(T0);
        let c = clock.clone();
        // No host sampling: only the latency is stored.
        let t = support::start(move |b| b.clock(c).host_interval(Duration::from_secs(3_600)));
        let rec = t.pv.recorder();
        for second in 0..3_600 {
            for i in 0..50 {
                let v = 0.005 + (second * 50 + i) as f64 % 7.0 * 1e-4;
                if observe {
                    rec.observe("search.latency_seconds", v);
                } else {
                    rec.record("search.latency_seconds", v);
                }
            }
            clock.advance_ms(1_000);
            {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while rec.backlog() > 0 {
                    assert!(std::time::Instant::now() < deadline, "the intake is stuck");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        t.pv.flush().await.unwrap();
        // Two hours on: the hour is closed and compacts into chunks.
        clock.advance_ms(2 * 3_600_000);
        t.pv.compact_now().await.unwrap();
        t.pv.shutdown().await.unwrap();
        let summary = perfvisor::StorageReader::open(t.db())
            .unwrap()
            .summary()
            .unwrap();
        assert_eq!(summary.head_samples, 0, "{summary:?}");
        // The latency's series only: the judgement stores a few perfvisor.judgement.* host
        // samples beside them.
        let conn = rusqlite::Connection::open(t.db()).unwrap();
        conn.query_row(
            "SELECT coalesce(sum(length(c.data)), 0), coalesce(sum(c.count), 0) FROM chunks c \
             JOIN series s ON s.id = c.series_id WHERE s.metric LIKE 'search.latency_seconds%'",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .unwrap()
    }
    let (raw_bytes, raw_samples) = chunk_bytes(false).await;
    let (hist_bytes, hist_samples) = chunk_bytes(true).await;
    println!(
        "one hour at 50 observations/s: record() {raw_samples} samples in {raw_bytes} chunk \
         bytes ({:.1} B/s); observe() {hist_samples} samples in {hist_bytes} chunk bytes \
         ({:.2} B/s)",
        raw_bytes as f64 / 3_600.0,
        hist_bytes as f64 / 3_600.0
    );
    assert_eq!(raw_samples, 180_000);
    // 360 intervals of five samples. The manual clock may run ahead of the collector on a
    // loaded machine: an interval closed by the clock and then reached by a late
    // observation is stored again (a few percent more), never per observation.
    assert!(
        (360 * 5..=400 * 5).contains(&hist_samples),
        "{hist_samples} samples for 360 intervals"
    );
    assert!(
        hist_bytes * 20 < raw_bytes,
        "histogram {hist_bytes} B against raw {raw_bytes} B"
    );
}
