//! The recorder's sources: every (daemon, labels) pair a [`Recorder`](super::Recorder) is
//! made for, registered once in a process-wide, deduplicated, append-only list and named in
//! each sample by its index there.
//!
//! A sample used to carry the daemon id and the label set as shared pointers: cloning them
//! on the recording thread and dropping them on the intake's moved both reference counts'
//! cache lines between cores on every sample. An index is `Copy`: the recording thread
//! touches nothing shared but the channel, and the collector resolves the index (through a
//! [`SourceCache`] of its own, without a lock once it has seen the index).
//!
//! The list only grows: it holds one entry per distinct pair for the life of the process,
//! at most [`MAX_SOURCES`]. A recorder made for a new pair past that records nothing (its
//! calls return `false` and count as dropped; a warning is logged once). Label values that
//! are few (a route, a queue), as the documentation of
//! [`Recorder::with_labels`](super::Recorder::with_labels) asks, stay far below it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, RwLock};

use crate::types::{DaemonId, Labels};

/// Most distinct (daemon, labels) pairs the process registers for its recorders.
pub const MAX_SOURCES: usize = 65_536;

/// A registered (daemon, labels) pair: an index into the process's source list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(u32);

impl SourceId {
    /// The host application's own samples: no daemon, no labels (always index 0).
    pub const HOST: SourceId = SourceId(0);

    /// The pair registered under this index.
    pub fn resolve(self) -> (Option<DaemonId>, Labels) {
        let list = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
        list.pairs
            .get(self.0 as usize)
            .cloned()
            .unwrap_or((None, Labels::empty()))
    }
}

/// The process's source list and its index by pair.
struct Registry {
    pairs: Vec<(Option<DaemonId>, Labels)>,
    index: HashMap<(Option<DaemonId>, Labels), u32>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(|| {
    let host = (None, Labels::empty());
    RwLock::new(Registry {
        pairs: vec![host.clone()],
        index: HashMap::from([(host, 0)]),
    })
});

/// Set once the list is full and the warning logged.
static FULL_LOGGED: AtomicBool = AtomicBool::new(false);

/// The index of `(daemon, labels)`, registering the pair when it is new; `None` when the
/// list is full ([`MAX_SOURCES`]) and the pair is not in it.
pub fn register(daemon: Option<DaemonId>, labels: Labels) -> Option<SourceId> {
    let key = (daemon, labels);
    {
        let list = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = list.index.get(&key) {
            return Some(SourceId(i));
        }
    }
    let mut list = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    let id = list.insert(key, MAX_SOURCES);
    if id.is_none() && !FULL_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            max = MAX_SOURCES,
            "Recorders were made for more distinct (daemon, labels) pairs than perfvisor \
             keeps; recorders for new pairs record nothing (keep label values few)."
        );
    }
    id
}

impl Registry {
    /// The index of `key`, appended when new and the list holds fewer than `max` pairs.
    fn insert(&mut self, key: (Option<DaemonId>, Labels), max: usize) -> Option<SourceId> {
        if let Some(&i) = self.index.get(&key) {
            return Some(SourceId(i));
        }
        if self.pairs.len() >= max {
            return None;
        }
        let i = u32::try_from(self.pairs.len()).ok()?;
        self.pairs.push(key.clone());
        self.index.insert(key, i);
        Some(SourceId(i))
    }
}

/// A reader's copy of the source list: the collector resolves every sample through it and
/// takes the registry's lock only for an index it has not seen yet (entries never change).
#[derive(Debug, Default)]
pub struct SourceCache {
    pairs: Vec<(Option<DaemonId>, Labels)>,
}

impl SourceCache {
    /// The (daemon, labels) pair of `id`.
    pub fn get(&mut self, id: SourceId) -> (&Option<DaemonId>, &Labels) {
        let i = id.0 as usize;
        if i >= self.pairs.len() {
            let list = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
            let known = self.pairs.len();
            self.pairs.extend(list.pairs[known..].iter().cloned());
        }
        match self.pairs.get(i) {
            Some((daemon, labels)) => (daemon, labels),
            // Not made by `register`: only index 0 and those it returned exist.
            None => (&None, &EMPTY),
        }
    }
}

static EMPTY: Labels = Labels::empty();

#[cfg(test)]
mod tests {
    use super::*;

    /// The same pair registers once; a different daemon or label set is a new entry; each
    /// index resolves to its pair, through the registry and through a cache.
    #[test]
    fn pairs_dedupe_and_resolve() {
        let d = || Some(DaemonId::new("sources-test-d"));
        let l = || Labels::from_pairs([("route", "/sources-test")]);
        let a = register(d(), l()).unwrap();
        let b = register(d(), l()).unwrap();
        assert_eq!(a, b);
        let c = register(d(), Labels::empty()).unwrap();
        let e = register(None, l()).unwrap();
        assert_ne!(a, c);
        assert_ne!(a, e);
        assert_ne!(c, e);
        assert_eq!(register(None, Labels::empty()), Some(SourceId::HOST));
        assert_eq!(a.resolve(), (d(), l()));
        assert_eq!(c.resolve(), (d(), Labels::empty()));
        assert_eq!(e.resolve(), (None, l()));
        let mut cache = SourceCache::default();
        assert_eq!(cache.get(e), (&None, &l()));
        assert_eq!(cache.get(a), (&d(), &l()));
        assert_eq!(cache.get(SourceId::HOST), (&None, &Labels::empty()));
        // Registered after the cache last looked: it catches up.
        let f = register(d(), Labels::from_pairs([("route", "/sources-test-late")])).unwrap();
        assert_eq!(cache.get(f).1.get("route"), Some("/sources-test-late"));
    }

    /// A full list refuses new pairs and still finds the ones it holds.
    #[test]
    fn a_full_list_refuses_new_pairs() {
        let mut list = Registry {
            pairs: Vec::new(),
            index: HashMap::new(),
        };
        let pair = |v: &str| (None, Labels::from_pairs([("k", v)]));
        assert_eq!(list.insert(pair("a"), 2), Some(SourceId(0)));
        assert_eq!(list.insert(pair("b"), 2), Some(SourceId(1)));
        assert_eq!(list.insert(pair("c"), 2), None);
        assert_eq!(list.insert(pair("a"), 2), Some(SourceId(0)));
        assert_eq!(list.pairs.len(), 2);
    }
}
