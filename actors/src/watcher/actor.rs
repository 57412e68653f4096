//! The watcher actor: probes one daemon's pid each interval and forwards its samples.
//!
//! It probes only its own daemon's process tree (never the whole process table, except on
//! kernels that cannot list a process's children; see `tree.rs`); a daemon whose own cgroup
//! gives its totals has only its main process and the cgroup's files read at each probe, and
//! its tree walked every `CGROUP_WALK_EVERY`th (see `logic.rs`). Identity is checked at every
//! probe; a vanished or reused pid means the daemon stopped, which the watcher reports to
//! the supervisor, which retires it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::logic::{RateTracker, CGROUP_SLOW_EVERY, CGROUP_WALK_EVERY};
use super::probe::{ProbeError, ProcState};
use super::tree::TreeProbe;
use super::view::{FigureSources, SharedView};
use crate::counters::{ActorStats, EngineStats};
use crate::messages::tree::{DaemonExeced, InjectPanic, Retire, SamplesCollected, WatcherRetired};
use crate::panic_guard::guard;
use crate::supervisor::{supervised_handlers, tick, ChildHandle, Restartable};
use crate::types::{DaemonSpec, Labels, MetricBatch, SharedClock};

/// What a watcher is wired to besides its daemon: where its samples and reports go, what it
/// counts, and how often it probes. The supervisor builds one per watcher; a restart keeps it.
#[derive(Clone)]
pub struct WatcherLinks {
    /// Where samples go (the collector).
    pub samples: Recipient<SamplesCollected>,
    /// The collector's counters (each batch sent is counted into its mailbox).
    pub samples_stats: Arc<ActorStats>,
    /// Told when the daemon is gone (the supervisor).
    pub retired: Recipient<WatcherRetired>,
    /// Told when the daemon exec'd another program (the supervisor).
    pub execed: Recipient<DaemonExeced>,
    /// Source of time.
    pub clock: SharedClock,
    /// How often to probe.
    pub interval: Duration,
    /// Probes made, shown in `status()`.
    pub probes: Arc<AtomicU64>,
    /// Engine-wide counters (probe errors).
    pub engine: Arc<EngineStats>,
    /// Sources and top children, shared with the supervisor.
    pub view: SharedView,
}

/// Watches one daemon.
pub struct Watcher {
    spec: DaemonSpec,
    labels: Labels,
    restart: Restartable,
    links: WatcherLinks,
    probe: Option<TreeProbe>,
    rates: RateTracker,
    /// The daemon's own cgroup, looked up once the tree probe is open; `None` when it has
    /// none to itself.
    #[cfg(unix)]
    cgroup: Option<(super::cgroup::CgroupProbe, super::logic::CgroupTracker)>,
    tick: Option<SpawnHandle>,
    /// Probes made since the probe was opened (to walk a cgroup-read daemon's tree every
    /// [`CGROUP_WALK_EVERY`]th).
    probe_count: u64,
    gone: bool,
    /// Whether the warning that the tree is capped was given.
    capped_said: bool,
    /// Whether the view holds top children (to clear them once the children are gone).
    had_children_view: bool,
}

impl Watcher {
    /// A watcher for `spec`; it opens its probe when started.
    pub fn new(spec: DaemonSpec, child: Arc<ChildHandle>, links: WatcherLinks) -> Self {
        Watcher {
            labels: spec.series_labels(),
            spec,
            restart: Restartable::new(child),
            links,
            probe: None,
            rates: RateTracker::default(),
            #[cfg(unix)]
            cgroup: None,
            tick: None,
            probe_count: 0,
            gone: false,
            capped_said: false,
            had_children_view: false,
        }
    }

    /// Opens the tree probe and looks up the daemon's cgroup (first probe, or after a
    /// restart), and says in the view where the figures come from.
    fn open(&mut self) -> Result<&mut TreeProbe, ProbeError> {
        if self.probe.is_none() {
            let probe = TreeProbe::open(self.spec.pid)?;
            #[cfg(unix)]
            let sources = {
                self.cgroup = super::cgroup::CgroupProbe::of_pid(self.spec.pid).map(|c| {
                    tracing::info!(daemon = %self.spec.id, cgroup = ?c.cgroup(), totals = c.reads_totals(), "Daemon has its own cgroup; reading it.");
                    (c, super::logic::CgroupTracker::default())
                });
                match &self.cgroup {
                    Some((c, _)) => c.sources().clone(),
                    None => FigureSources::tree(super::cgroup::unplaced_reason(self.spec.pid)),
                }
            };
            #[cfg(not(unix))]
            let sources = FigureSources::tree(None);
            if let Ok(mut view) = self.links.view.lock() {
                view.sources = Some(sources);
            }
            self.probe = Some(probe);
            self.probe_count = 0;
        }
        self.probe
            .as_mut()
            .ok_or(ProbeError::Gone { pid: self.spec.pid })
    }

    /// Whether the daemon's totals come from its cgroup rather than the tree walk.
    fn reads_cgroup(&self) -> bool {
        #[cfg(unix)]
        {
            self.cgroup.as_ref().is_some_and(|(c, _)| c.reads_totals())
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// One probe: forwards samples, or reports the daemon gone.
    ///
    /// A daemon read through its process tree has the tree walked at every probe. One whose
    /// totals come from its cgroup has only its main process read at each probe, and the
    /// tree walked every [`CGROUP_WALK_EVERY`]th (top children, and the figures a cgroup has
    /// no file for). A cgroup's pressure, OOM and `cgroup.procs` files are read every
    /// [`CGROUP_SLOW_EVERY`]th probe.
    fn probe_once(&mut self, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        let opened = self.open().map(|_| ());
        let reads_cgroup = self.reads_cgroup();
        let walk = !reads_cgroup || self.probe_count.is_multiple_of(CGROUP_WALK_EVERY);
        let slow = self.probe_count.is_multiple_of(CGROUP_SLOW_EVERY);
        let result = opened.and_then(|()| {
            let p = self
                .probe
                .as_mut()
                .ok_or(ProbeError::Gone { pid: self.spec.pid })?;
            if walk {
                p.probe().map(|s| (s.main, Some(s.total)))
            } else {
                p.probe_main().map(|main| (main, None))
            }
        });
        // A zombie has exited; only its parent has not reaped it yet. The daemon is gone.
        let result = match result {
            Ok((main, _)) if main.state == ProcState::Zombie => {
                Err(ProbeError::Gone { pid: self.spec.pid })
            }
            other => other,
        };
        match result {
            Ok((main, total)) => {
                self.probe_count += 1;
                if let Some(exec) = self.probe.as_mut().and_then(TreeProbe::take_exec) {
                    tracing::info!(daemon = %self.spec.id, pid = self.spec.pid, to = %exec.to.display(), "Daemon exec'd another program; still watching it.");
                    self.links.execed.do_send(DaemonExeced {
                        id: self.spec.id.clone(),
                        pid: self.spec.pid,
                        from: exec.from,
                        to: exec.to,
                    });
                }
                if total.as_ref().is_some_and(|t| t.capped) && !self.capped_said {
                    self.capped_said = true;
                    tracing::warn!(daemon = %self.spec.id, pid = self.spec.pid, limit = super::tree::MAX_DESCENDANTS, "Daemon has more descendants than are followed; its figures leave the rest out.");
                }
                self.links.probes.fetch_add(1, Ordering::Relaxed);
                // A daemon of one process costs nothing here; a tree, one short sort at each
                // probe that walked it.
                if total
                    .as_ref()
                    .is_some_and(|t| t.processes > 1 || self.had_children_view)
                {
                    let top = self
                        .probe
                        .as_ref()
                        .and_then(|p| p.top_children(super::tree::TOP_CHILDREN));
                    self.had_children_view = top.is_some();
                    if let Ok(mut view) = self.links.view.lock() {
                        view.children = top;
                    }
                }
                let now = self.links.clock.now_ms();
                let samples = self.samples(main, total, slow, now);
                self.links.samples_stats.enqueued();
                self.links.samples.do_send(SamplesCollected {
                    batch: MetricBatch { samples },
                });
            }
            Err(e @ (ProbeError::Gone { .. } | ProbeError::IdentityChanged { .. })) => {
                self.gone = true;
                if let Some(h) = self.tick.take() {
                    ctx.cancel_future(h);
                }
                tracing::info!(daemon = %self.spec.id, pid = self.spec.pid, reason = %e, "Daemon gone.");
                self.links.retired.do_send(WatcherRetired {
                    id: self.spec.id.clone(),
                    pid: self.spec.pid,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                self.links
                    .engine
                    .probe_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(daemon = %self.spec.id, pid = self.spec.pid, error = %e, "Probe failed.");
            }
        }
    }

    /// The samples of one probe: from the cgroup and the main process for a daemon whose
    /// totals come from its cgroup (`total` is the tree walk's, when this probe walked),
    /// else from the tree walk plus the cgroup's OOM kills and pressure where it has a cgroup.
    fn samples(
        &mut self,
        main: super::probe::ProcSnapshot,
        total: Option<super::tree::TreeTotals>,
        slow: bool,
        now: crate::types::TimestampMs,
    ) -> Vec<crate::types::Sample> {
        #[cfg(unix)]
        if let Some((probe, tracker)) = self.cgroup.as_mut() {
            let cg = probe.probe_figures(slow);
            if probe.reads_totals() {
                return tracker.samples(
                    &self.spec.id,
                    &self.labels,
                    &main,
                    &cg,
                    total.as_ref(),
                    slow,
                    now,
                );
            }
            let mut samples =
                tree_samples(&mut self.rates, &self.spec, &self.labels, main, total, now);
            samples.extend(tracker.extra_samples(&self.spec.id, &self.labels, &cg, slow, now));
            return samples;
        }
        tree_samples(&mut self.rates, &self.spec, &self.labels, main, total, now)
    }

    /// Schedules the next probe at the next multiple of the interval since a process-wide
    /// epoch, so all watchers with the same interval probe in the same timer wake-up (one
    /// thread wake and one burst of messages per interval instead of one per watcher), and
    /// a late tick does not shift the ones after it.
    fn schedule_next(&mut self, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        let delay = until_next_boundary(Instant::now(), self.links.interval);
        self.tick = Some(ctx.run_later(delay, |act, ctx| {
            act.tick = None;
            tick(act, ctx, Self::probe_once);
            act.schedule_next(ctx);
        }));
    }
}

/// The samples of a probe that walked the tree (none when this probe did not).
fn tree_samples(
    rates: &mut RateTracker,
    spec: &DaemonSpec,
    labels: &Labels,
    main: super::probe::ProcSnapshot,
    total: Option<super::tree::TreeTotals>,
    now: crate::types::TimestampMs,
) -> Vec<crate::types::Sample> {
    match total {
        Some(total) => rates.samples(
            &spec.id,
            labels,
            &super::tree::TreeSnapshot { main, total },
            now,
        ),
        None => Vec::new(),
    }
}

/// Time from `now` to the next multiple of `interval` counted from the first call in this
/// process (monotonic, so wall-clock steps do not matter). Never zero: a tick that lands
/// exactly on a boundary waits for the next one.
fn until_next_boundary(now: Instant, interval: Duration) -> Duration {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let period = interval.as_nanos().max(1);
    let phase = now.saturating_duration_since(epoch).as_nanos() % period;
    Duration::from_nanos((period - phase).min(u128::from(u64::MAX)) as u64)
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        // First probe right away (it yields no CPU rate), then on every interval boundary.
        ctx.run_later(Duration::ZERO, |act, ctx| tick(act, ctx, Self::probe_once));
        self.schedule_next(ctx);
    }
}

impl actix::Supervised for Watcher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Rebuild from the spec: a new probe (identity re-read) and no previous reading.
        self.probe = None;
        self.rates = RateTracker::default();
        #[cfg(unix)]
        {
            self.cgroup = None;
        }
        self.tick = None;
        self.gone = false;
    }
}

supervised_handlers! {
    Watcher.restart;

    /// A last probe (its failure is logged, not a restart), then nothing more is scheduled.
    Retire(act, _msg, ctx) {
        if !act.gone {
            if let Err(reason) = guard(|| act.probe_once(ctx)) {
                tracing::warn!(daemon = %act.spec.id, reason, "Last probe failed.");
            }
        }
        act.gone = true;
        if let Some(h) = act.tick.take() {
            ctx.cancel_future(h);
        }
        // No `ctx.stop()`: stopping while an address is alive would make actix's
        // supervisor restart us. With nothing scheduled, the actor ends as soon as the
        // supervisor drops its address, and is then not restarted.
        tracing::debug!(daemon = %act.spec.id, "Watcher retired.");
    }

    InjectPanic(act, _msg, _ctx) {
        panic!("injected panic in watcher {}", act.spec.id)
    }
}
