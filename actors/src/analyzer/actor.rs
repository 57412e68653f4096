//! The analyzer actor: thin handlers over [`Windows`].

use std::sync::Arc;

use actix::prelude::*;

use super::stats::{DaemonReport, Windows};
use crate::alerts::AlertDispatcher;
use crate::messages::*;
use crate::panic_guard::guard;
use crate::supervisor::{ChildHandle, Restartable};
use crate::telemetry::ActorStats;
use crate::types::SharedClock;

/// Keeps windows per series, answers reports, and hands samples to the dispatcher.
pub struct Analyzer {
    restart: Restartable,
    dispatcher: Addr<AlertDispatcher>,
    dispatcher_stats: Arc<ActorStats>,
    clock: SharedClock,
    window: usize,
    windows: Windows,
}

impl Analyzer {
    /// An analyzer with windows of `window` samples per series.
    pub fn new(
        child: Arc<ChildHandle>,
        dispatcher: Addr<AlertDispatcher>,
        dispatcher_stats: Arc<ActorStats>,
        clock: SharedClock,
        window: usize,
    ) -> Self {
        Analyzer {
            restart: Restartable::new(child),
            dispatcher,
            dispatcher_stats,
            clock,
            window,
            windows: Windows::new(window),
        }
    }
}

impl Actor for Analyzer {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
    }
}

impl actix::Supervised for Analyzer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Windows may be half-updated after a panic: start them afresh.
        self.windows = Windows::new(self.window);
    }
}

impl Handler<AnalyzeBatch> for Analyzer {
    type Result = ();
    fn handle(&mut self, msg: AnalyzeBatch, ctx: &mut Self::Context) {
        self.restart.child.stats.dequeued();
        let result = guard(|| {
            self.windows.add(&msg.batch);
            self.dispatcher_stats.enqueued();
            self.dispatcher.do_send(EvaluateRules {
                now_ms: self.clock.now_ms(),
                batch: msg.batch,
            });
        });
        if let Err(reason) = result {
            self.restart.fail(ctx, &reason);
        }
    }
}

impl Handler<GetReport> for Analyzer {
    type Result = MessageResult<GetReport>;
    fn handle(&mut self, msg: GetReport, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now_ms();
        match guard(|| self.windows.report(&msg.daemon, now)) {
            Ok(r) => MessageResult(r),
            Err(reason) => {
                self.restart.fail(ctx, &reason);
                MessageResult(None::<DaemonReport>)
            }
        }
    }
}

impl Handler<Flush> for Analyzer {
    type Result = ();
    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) {}
}

impl Handler<InjectPanic> for Analyzer {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Self::Context) {
        if let Err(reason) = guard(|| panic!("injected panic in analyzer")) {
            self.restart.fail(ctx, &reason);
        }
    }
}
