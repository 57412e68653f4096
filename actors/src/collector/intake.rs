//! The recorder intake: a thread that takes raw samples out of the recorder channel and
//! hands them to the collector in batches.
//!
//! It blocks on the channel while idle (no CPU and no wake-ups: it waits for readiness, not
//! on a timer), then drains everything available and pauses for a millisecond before
//! waiting again. The pause batches bursts and keeps the receiver off the channel's wait
//! list under load, so `record()` rarely has to wake it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::Recipient;
use crossbeam_channel::{Receiver, Select, Sender};

use crate::messages::AppSamplesReceived;
use crate::recorder::RawSample;
use crate::telemetry::{ActorStats, RecorderStats};

/// Most samples handed over in one message.
pub const MAX_INTAKE_BATCH: usize = 4096;
/// Pause after each hand-over while samples keep coming.
pub const INTAKE_PAUSE: Duration = Duration::from_millis(1);

/// Controls the intake thread.
#[derive(Debug)]
pub struct IntakeHandle {
    stop: Arc<AtomicBool>,
    /// Dropped (or sent to) to wake the thread when it should stop.
    wake: Mutex<Option<Sender<()>>>,
    inflight: Arc<Mutex<()>>,
    /// Live [`PauseGuard`]s: while above 0 the thread takes nothing from the channel.
    paused: Arc<AtomicUsize>,
    join: Mutex<Option<JoinHandle<()>>>,
}

/// Keeps the intake thread from taking samples out of the recorder channel until dropped.
/// `Send`, so a flush holds it across the `DrainRecorder` round trip.
#[derive(Debug)]
pub struct PauseGuard(Arc<AtomicUsize>);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl IntakeHandle {
    /// Holds the intake still until the guard drops: a batch the thread has already taken
    /// is handed to the collector first (this waits for it), and nothing more is taken
    /// from the channel meanwhile. A flush pauses, sends `DrainRecorder`, waits for its
    /// reply and only then resumes the thread, so every sample recorded before the flush is
    /// either in a message ahead of the drain or still in the channel for the drain to take.
    /// (Releasing before the reply let the thread take the samples after the drain was
    /// queued and hand them over behind it.)
    pub fn pause(&self) -> PauseGuard {
        self.paused.fetch_add(1, Ordering::SeqCst);
        drop(self.inflight.lock().unwrap_or_else(|p| p.into_inner()));
        PauseGuard(Arc::clone(&self.paused))
    }

    /// Stops the thread after it has handed over what it holds, and waits for it.
    pub fn stop_and_join(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the sender makes the thread's wait return at once.
        drop(self.wake.lock().ok().and_then(|mut w| w.take()));
        let handle = self.join.lock().ok().and_then(|mut j| j.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// What the thread shares with its [`IntakeHandle`].
struct Control {
    stop: Arc<AtomicBool>,
    inflight: Arc<Mutex<()>>,
    paused: Arc<AtomicUsize>,
}

/// Starts the intake thread.
pub fn spawn(
    rx: Receiver<RawSample>,
    collector: Recipient<AppSamplesReceived>,
    collector_stats: Arc<ActorStats>,
    recorder_stats: Arc<RecorderStats>,
) -> IntakeHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let inflight = Arc::new(Mutex::new(()));
    let lock = inflight.clone();
    let paused = Arc::new(AtomicUsize::new(0));
    let held = paused.clone();
    let (wake, woken) = crossbeam_channel::bounded::<()>(1);
    let join = std::thread::Builder::new()
        .name("perfvisor-intake".into())
        .spawn(move || {
            run(
                rx,
                woken,
                collector,
                collector_stats,
                recorder_stats,
                Control {
                    stop: flag,
                    inflight: lock,
                    paused: held,
                },
            )
        })
        .map_err(|e| tracing::error!(error = %e, "Cannot start the recorder intake thread; the collector drains on its own timer."))
        .ok();
    IntakeHandle {
        stop,
        wake: Mutex::new(Some(wake)),
        inflight,
        paused,
        join: Mutex::new(join),
    }
}

fn run(
    rx: Receiver<RawSample>,
    woken: Receiver<()>,
    collector: Recipient<AppSamplesReceived>,
    collector_stats: Arc<ActorStats>,
    recorder_stats: Arc<RecorderStats>,
    control: Control,
) {
    let Control {
        stop,
        inflight,
        paused,
    } = control;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // Waits, without holding the in-flight lock (a flush may take it meanwhile), until
        // a sample is there, the channel is closed, or the handle asks the thread to stop.
        {
            let mut select = Select::new();
            let samples = select.recv(&rx);
            select.recv(&woken);
            if select.ready() != samples {
                // Asked to stop, or the handle is gone: nothing is held, so just end.
                return;
            }
        }
        {
            // Held while a sample is out of the channel but not yet with the collector.
            let in_flight = inflight.lock().unwrap_or_else(|p| p.into_inner());
            if paused.load(Ordering::SeqCst) > 0 {
                // A flush is draining the channel itself; leave the samples to it.
                drop(in_flight);
                std::thread::sleep(INTAKE_PAUSE);
                continue;
            }
            let mut batch = Vec::with_capacity(64);
            let mut closed = false;
            while batch.len() < MAX_INTAKE_BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                recorder_stats
                    .drained
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                collector_stats.enqueued();
                collector.do_send(AppSamplesReceived { samples: batch });
            }
            if closed {
                return;
            }
        }
        std::thread::sleep(INTAKE_PAUSE);
    }
}
