//! What every monitor is to the harness ([`Monitor`]), and what a run shares with it.

use super::*;

// ---------------------------------------------------------------------------------------
// Monitors
// ---------------------------------------------------------------------------------------

/// What one run of a monitor shares with the monitor.
pub(crate) struct Ctx<'a> {
    pub(crate) n: usize,
    pub(crate) pids: &'a [u32],
    pub(crate) cpu_pid: u32,
    pub(crate) mem_pid: u32,
    pub(crate) tag: &'a str,
    pub(crate) dir: PathBuf,
}

impl Ctx<'_> {
    /// The targets' pids, comma-separated, as pidstat and the floor child take them.
    pub(crate) fn pid_list(&self) -> String {
        let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        pids.join(",")
    }
}

/// The measurement window, in both clocks.
pub(crate) struct Window {
    pub(crate) wall0_ms: i64,
    pub(crate) wall1_ms: i64,
}

/// A monitor's readings of the two special targets over (or at the end of) the window.
#[derive(Default)]
pub(crate) struct Reading {
    pub(crate) cpu_pct: Option<f64>,
    pub(crate) rss_mib: Option<f64>,
}

pub(crate) trait Monitor {
    /// Starts the monitor on the targets and waits until it watches all of them.
    fn start(&mut self, ctx: &Ctx) -> Result<(), String>;
    /// The running monitor's main process.
    fn proc(&mut self) -> &mut Proc;
    /// Called every second, after the harness has sampled.
    fn tick(&mut self, _ctx: &Ctx, _in_window: bool) {}
    fn window_start(&mut self, _ctx: &Ctx) {}
    fn window_end(&mut self, _ctx: &Ctx) {}
    /// Its readings of the two special targets; called after the window closed.
    fn report(&mut self, ctx: &Ctx, w: &Window) -> Result<Reading, String>;
    fn stop(&mut self) {
        self.proc().stop(libc::SIGTERM, Duration::from_secs(10));
    }
    /// Where its output goes, for diagnostics.
    fn log(&self) -> PathBuf;
    /// What the reader of the table must know about it.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

pub(crate) fn not_started() -> ! {
    panic!("monitor used before start")
}
