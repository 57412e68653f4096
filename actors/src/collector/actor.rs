//! The collector actor: thin handlers over [`HostSampler`], [`AppSampleResolver`] and
//! [`Histograms`], and the fan-out of every sample to the analyzer and the storage writer.
//!
//! Watchers probe together (their timers tick at the same moments), so their batches reach
//! the collector as a burst: 1,000 daemons send 1,000 batches of a dozen samples within a
//! few milliseconds. Each batch used to be fanned out alone, as one analyzer message, one
//! alert-engine message and one storage command. Now the collector holds what it takes
//! while more counted messages wait in its mailbox and sends everything on in one batch
//! when the mailbox is empty ([`Collector::hold`]). Nothing waits for a timer: the last
//! batch of a burst releases the whole burst. A backstop ([`RELEASE_AFTER`]) releases what
//! is held if the mailbox count ever disagrees, and [`HOLD_MAX`] bounds a batch (a burst of
//! 1,000 daemons goes on as five).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use crossbeam_channel::Receiver;

use super::histogram::Closed;
use super::{AppSampleResolver, Histograms, HostSampler, Resolved};
use crate::analyzer::Analyzer;
use crate::messages::*;
use crate::recorder::RawSample;
use crate::storage::StorageHandle;
use crate::supervisor::{supervised_handlers, tick, ChildHandle, Restartable};
use crate::telemetry::{ActorStats, EngineStats, RecorderStats};
use crate::types::{MetricBatch, Sample, SharedClock};

/// Most samples sent on in one batch (a quarter of a 1,000-daemon burst): each batch's
/// buffer is made this big at once, so a burst is not copied while it grows, and what
/// waits in flight stays a few hundred kilobytes.
pub const HOLD_MAX: usize = 4_096;

/// What is held is sent on at the latest this long after it was first held.
pub const RELEASE_AFTER: Duration = Duration::from_millis(100);

/// What a collector is built from: where batches go, what it counts, how often it samples
/// the host. The supervisor builds it once; a restart keeps it.
#[derive(Clone)]
pub struct CollectorSetup {
    /// The storage writer (every batch).
    pub storage: StorageHandle,
    /// The analyzer (every batch, and closed histogram intervals).
    pub analyzer: Addr<Analyzer>,
    /// The analyzer's counters (each message sent is counted into its mailbox).
    pub analyzer_stats: Arc<ActorStats>,
    /// Source of time.
    pub clock: SharedClock,
    /// How often host metrics are sampled.
    pub host_interval: Duration,
    /// How long each histogram interval lasts.
    pub histogram_interval: Duration,
    /// Engine-wide counters (samples collected).
    pub engine: Arc<EngineStats>,
    /// The recorder channel, drained on `DrainRecorder`.
    pub recorder_rx: Receiver<RawSample>,
    /// The recorder's counters.
    pub recorder_stats: Arc<RecorderStats>,
}

/// Collects host metrics, resolves app samples, and fans batches out.
pub struct Collector {
    restart: Restartable,
    setup: CollectorSetup,
    host: Option<HostSampler>,
    resolver: AppSampleResolver,
    histograms: Histograms,
    /// Refused observations already logged.
    refused_logged: u64,
    known: Vec<crate::types::DaemonSpec>,
    /// Samples taken and not yet sent on (see the module documentation).
    held: Vec<Sample>,
    /// The backstop that releases `held`, while one is pending.
    release_timer: Option<SpawnHandle>,
}

impl Collector {
    /// A collector; host sampling starts when the actor starts.
    pub fn new(child: Arc<ChildHandle>, setup: CollectorSetup) -> Self {
        let interval_ms = i64::try_from(setup.histogram_interval.as_millis()).unwrap_or(i64::MAX);
        Collector {
            restart: Restartable::new(child),
            setup,
            host: None,
            resolver: AppSampleResolver::default(),
            histograms: Histograms::new(interval_ms),
            refused_logged: 0,
            known: Vec::new(),
            held: Vec::new(),
            release_timer: None,
        }
    }

    /// Takes samples to send on: at once when no counted message waits in the mailbox (or
    /// enough are held), else with the batches still waiting, when the last is taken.
    fn hold(&mut self, samples: Vec<Sample>, ctx: &mut Context<Self>) {
        let waiting = self.restart.child.stats.queued.load(Ordering::Relaxed) > 0;
        if !self.held.is_empty() && self.held.len() + samples.len() > HOLD_MAX {
            self.release(ctx);
        }
        if self.held.is_empty() {
            if !waiting {
                // A lone batch goes on as it came, not copied.
                self.fan_out(samples);
                return;
            }
            if samples.is_empty() {
                return;
            }
            // Room for a whole batch at once: growing by doubling would copy what is held
            // again and again, and keep the old and the new buffer at each step.
            self.held.reserve_exact(HOLD_MAX.max(samples.len()));
        }
        self.held.extend(samples);
        if !waiting {
            self.release(ctx);
        } else if self.release_timer.is_none() {
            self.release_timer = Some(ctx.run_later(RELEASE_AFTER, |act, ctx| {
                act.release_timer = None;
                tick(act, ctx, |act, ctx| act.release(ctx))
            }));
        }
    }

    /// Sends on everything held.
    fn release(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.release_timer.take() {
            ctx.cancel_future(timer);
        }
        let samples = std::mem::take(&mut self.held);
        self.fan_out(samples);
    }

    /// Sends one batch to the analyzer and the storage writer, sharing it.
    fn fan_out(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        self.setup
            .engine
            .samples_collected
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        let batch = Arc::new(MetricBatch { samples });
        self.setup.storage.store(batch.clone());
        self.setup.analyzer_stats.enqueued();
        self.setup.analyzer.do_send(AnalyzeBatch { batch });
    }

    fn sample_host(&mut self, ctx: &mut Context<Self>) {
        let now = self.setup.clock.now_ms();
        let host = self.host.get_or_insert_with(HostSampler::new);
        let samples = host.sample(now);
        self.hold(samples, ctx);
        let mut closed = Closed::default();
        self.histograms.close_due(now, &mut closed);
        // Series idle for an hour are forgotten, as the analyzer forgets them.
        self.histograms
            .expire(now - crate::analyzer::signals::EXPIRE_AFTER_MS);
        self.fan_out_closed(closed);
        let refused = self.histograms.refused();
        if refused > self.refused_logged {
            tracing::warn!(
                refused = refused - self.refused_logged,
                open = self.histograms.len(),
                "Observations of new histogram series were dropped: too many series are open \
                 (keep label values few)."
            );
            self.refused_logged = refused;
        }
    }

    /// Sends the samples of closed histogram intervals on, and their sketches to the
    /// analyzer's windows.
    fn fan_out_closed(&self, closed: Closed) {
        self.fan_out(closed.samples);
        if !closed.intervals.is_empty() {
            self.setup.analyzer_stats.enqueued();
            self.setup.analyzer.do_send(AnalyzeHistograms {
                intervals: closed.intervals,
            });
        }
    }

    /// Resolves raw samples and sends them on with the histogram intervals they (or the
    /// clock) closed; with `close_all`, every open interval is closed too.
    fn take_raw(
        &mut self,
        raw: impl IntoIterator<Item = RawSample>,
        close_all: bool,
        ctx: &mut Context<Self>,
    ) {
        let (samples, mut closed) = self.resolve_all(raw);
        self.hold(samples, ctx);
        if close_all {
            // A flush: everything taken before it goes on now.
            self.release(ctx);
            self.histograms
                .close_all(self.setup.clock.now_ms(), &mut closed);
        }
        self.fan_out_closed(closed);
    }

    /// Resolves raw samples: the samples to send on, and histogram intervals that closed
    /// (by a later observation, or because the clock passed their end).
    fn resolve_all(&mut self, raw: impl IntoIterator<Item = RawSample>) -> (Vec<Sample>, Closed) {
        let mut samples = Vec::new();
        let mut closed = Closed::default();
        self.resolver.begin_batch();
        for r in raw {
            match self.resolver.resolve(r) {
                Some(Resolved::Sample(s)) => samples.push(s),
                Some(Resolved::Observation {
                    series,
                    ts_ms,
                    value,
                }) => self.histograms.observe(series, ts_ms, value, &mut closed),
                None => {}
            }
        }
        self.histograms
            .close_due(self.setup.clock.now_ms(), &mut closed);
        (samples, closed)
    }
}

impl Actor for Collector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        ctx.run_interval(self.setup.host_interval, |act, ctx| {
            tick(act, ctx, |act, ctx| act.sample_host(ctx))
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Held samples still go to storage when the collector stops.
        let samples = std::mem::take(&mut self.held);
        self.fan_out(samples);
    }
}

impl actix::Supervised for Collector {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Rebuild from the spec: a fresh host sampler, resolver and histograms. Counter
        // totals of app metrics (and histogram counts and sums) restart from zero, which
        // readers treat as a counter reset; open histogram intervals are lost.
        self.host = None;
        // A restart cancels the context's timers; what is held goes with the next batch.
        self.release_timer = None;
        self.resolver = AppSampleResolver::default();
        self.histograms = Histograms::new(self.histograms.interval_ms());
        self.refused_logged = 0;
        for spec in &self.known {
            self.resolver.register(spec);
        }
    }
}

supervised_handlers! {
    Collector.restart;

    SamplesCollected[counted](act, msg, ctx) {
        act.hold(msg.batch.samples, ctx)
    }

    AppSamplesReceived[counted](act, msg, ctx) {
        act.take_raw(msg.samples, false, ctx)
    }

    RegisterDaemon(act, msg, _ctx) {
        act.resolver.register(&msg.spec);
        act.known.retain(|s| s.id != msg.spec.id);
        act.known.push(msg.spec);
    }

    /// A flush or shutdown: what the recorder holds, and what was observed before, is
    /// stored now.
    DrainRecorder(act, _msg, ctx) {
        let raw: Vec<RawSample> = act.setup.recorder_rx.try_iter().collect();
        act.setup.recorder_stats
            .drained
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        act.take_raw(raw, true, ctx)
    }

    InjectPanic(_act, _msg, _ctx) {
        panic!("injected panic in collector")
    }
}
