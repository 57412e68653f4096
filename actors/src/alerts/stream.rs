//! Alert streams for hosts that run tokio and no actix: a bounded channel the dispatcher
//! fills without ever waiting, and the receiving end as an async `recv` and a `Stream`.
//!
//! The dispatcher never blocks on a slow reader: when a stream's buffer is full the alert
//! is dropped for that stream only and counted in [`AlertStream::lagged`]; other
//! subscribers, sinks and history are unaffected. A stream dropped by the host is
//! unsubscribed at the next alert.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::types::Alert;

/// Alerts one stream buffers before further ones are dropped (and counted) for it.
pub const STREAM_BUFFER: usize = 1024;

/// The dispatcher's end of an [`AlertStream`].
#[derive(Debug)]
pub struct StreamSender {
    tx: mpsc::Sender<Alert>,
    lagged: Arc<AtomicU64>,
}

/// What happened to one alert offered to a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the reader.
    Sent,
    /// The reader is behind: dropped for this stream and counted.
    Lagged,
    /// The reader is gone: unsubscribe it.
    Closed,
}

impl StreamSender {
    /// Offers an alert without waiting.
    pub fn offer(&self, alert: &Alert) -> Offer {
        match self.tx.try_send(alert.clone()) {
            Ok(()) => Offer::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.fetch_add(1, Ordering::Relaxed);
                Offer::Lagged
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

/// Every alert notification (firing and resolved) from the moment of subscription, for a
/// tokio host: `while let Some(alert) = stream.recv().await { … }`, or as a
/// `futures_core::Stream`. Needs no actix code and no particular runtime (the channel is
/// tokio's, which works under any executor). Ends when perfvisor shuts down.
#[derive(Debug)]
pub struct AlertStream {
    rx: mpsc::Receiver<Alert>,
    lagged: Arc<AtomicU64>,
}

impl AlertStream {
    /// A stream and the sender the dispatcher keeps.
    pub fn channel(buffer: usize) -> (StreamSender, AlertStream) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let lagged = Arc::new(AtomicU64::new(0));
        (
            StreamSender {
                tx,
                lagged: lagged.clone(),
            },
            AlertStream { rx, lagged },
        )
    }

    /// The next alert; `None` once perfvisor has shut down and every queued alert was read.
    pub async fn recv(&mut self) -> Option<Alert> {
        self.rx.recv().await
    }

    /// The next alert if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Alert> {
        self.rx.try_recv().ok()
    }

    /// Alerts dropped for this stream because its buffer ([`STREAM_BUFFER`]) was full when
    /// they came: the reader fell behind. They still reached sinks, history and the API.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

impl futures_core::Stream for AlertStream {
    type Item = Alert;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Alert>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AlertState, Labels, SeriesKey, Severity, Source};

    fn alert(i: i64) -> Alert {
        Alert {
            rule: format!("r{i}"),
            series: SeriesKey::new(Source::Host, "m", Labels::default()),
            daemon: None,
            project: None,
            state: AlertState::Firing,
            severity: Severity::Warning,
            value: 1.0,
            threshold: 0.0,
            message: String::new(),
            at_ms: i,
            since_ms: i,
            recommendations: Vec::new(),
            auto_actionable: false,
        }
    }

    /// A full buffer drops and counts without waiting; a dropped reader is reported closed.
    #[test]
    fn a_slow_reader_lags_and_a_gone_reader_closes() {
        let (tx, mut rx) = AlertStream::channel(2);
        assert_eq!(tx.offer(&alert(1)), Offer::Sent);
        assert_eq!(tx.offer(&alert(2)), Offer::Sent);
        assert_eq!(tx.offer(&alert(3)), Offer::Lagged);
        assert_eq!(rx.lagged(), 1);
        assert_eq!(rx.try_recv().map(|a| a.at_ms), Some(1));
        assert_eq!(tx.offer(&alert(4)), Offer::Sent);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let read: Vec<i64> = rt.block_on(async {
            vec![rx.recv().await, rx.recv().await]
                .into_iter()
                .flatten()
                .map(|a| a.at_ms)
                .collect()
        });
        assert_eq!(read, vec![2, 4]);
        drop(rx);
        assert_eq!(tx.offer(&alert(5)), Offer::Closed);
    }
}
