//! Per-series state kept by source: the table the writer, the analyzer and the alert engine
//! hold their per-series entries in.
//!
//! A watcher's batch is one daemon's dozen series in the same order every probe. A hash map
//! keyed by the whole [`SeriesKey`] puts those dozen entries at random places among tens of
//! thousands, so every sample costs a cache miss on its bucket (at 1,000 daemons that miss
//! was the largest single cost in perfvisor's profile). Here the entries of one source sit
//! side by side in one vector: a batch costs one source lookup (none when the previous
//! lookup was the same source), and each sample's entry is found at the slot after the
//! previous one's, already in cache. A series a source sends later than its first batch
//! (a rate, which needs two readings) is put where the lookup before it left off, so the
//! slots keep the order of the batches and the next lookup does not have to search.

use crate::types::{FastMap, SeriesKey, Source};

/// Slots past which a source's entries also get a hash index (pushed app metrics with many
/// label sets). Below it a scan from the hint is faster than hashing: the writer holds a
/// daemon's 16 process series and 18 judgement series in one group, and a lookup through
/// the index costs a cache miss the scan does not.
const INDEX_FROM: usize = 64;

/// One source's entries.
#[derive(Debug)]
struct Group<V> {
    source: Source,
    slots: Vec<(SeriesKey, V)>,
    /// Where the next lookup starts: the slot after the last one found.
    hint: usize,
    /// Slot by key, once the group has more than [`INDEX_FROM`] slots.
    index: Option<FastMap<SeriesKey, usize>>,
    /// The table's generation when an entry of this group was last looked up to change
    /// (see [`SeriesTable::touched_mut`]).
    touched: u32,
}

impl<V> Group<V> {
    fn new(source: Source, generation: u32) -> Self {
        Group {
            source,
            slots: Vec::new(),
            hint: 0,
            index: None,
            touched: generation,
        }
    }

    /// The slot of `key` (whose source is this group's).
    fn position(&self, key: &SeriesKey) -> Option<usize> {
        if let Some(index) = &self.index {
            return index.get(key).copied();
        }
        let same = |(k, _): &(SeriesKey, V)| k.metric == key.metric && k.labels == key.labels;
        let start = self.hint.min(self.slots.len());
        match self.slots[start..].iter().position(same) {
            Some(p) => Some(start + p),
            None => self.slots[..start].iter().position(same),
        }
    }

    /// Adds an entry: in an unindexed group where the last lookup left off (the slot the
    /// hint names), so that slots follow the order the source sends its series in; in an
    /// indexed one at the end (whose slots the index names). Returns its slot.
    fn push(&mut self, key: SeriesKey, value: V) -> usize {
        let len = self.slots.len();
        if len == self.slots.capacity() {
            // Grown by a quarter, not doubled: a daemon's 34 series in the writer would
            // otherwise sit in 64 slots (3 MB of empty slots at 1,000 daemons).
            self.slots.reserve_exact((len / 4).max(4));
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), len);
            self.slots.push((key, value));
            return len;
        }
        let at = self.hint.min(len);
        self.slots.insert(at, (key, value));
        if self.slots.len() > INDEX_FROM {
            self.reindex();
        }
        at
    }

    /// Rebuilds the index after slots moved (or builds it when the group grew past
    /// [`INDEX_FROM`]); drops it when the group shrank below.
    fn reindex(&mut self) {
        self.hint = 0;
        self.index = (self.slots.len() > INDEX_FROM).then(|| {
            self.slots
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect()
        });
    }
}

/// Entries keyed by series, grouped by source (see the module documentation). Iteration
/// goes source by source, in no particular order.
#[derive(Debug)]
pub struct SeriesTable<V> {
    /// Group by source.
    by_source: FastMap<Source, usize>,
    groups: Vec<Group<V>>,
    /// The group the last mutable lookup found: a batch's next sample is likely the same
    /// source's.
    last: usize,
    len: usize,
    /// Advanced by [`Self::untouch`]; a group looked up to change since carries it.
    generation: u32,
}

impl<V> Default for SeriesTable<V> {
    fn default() -> Self {
        SeriesTable {
            by_source: FastMap::default(),
            groups: Vec::new(),
            last: 0,
            len: 0,
            generation: 0,
        }
    }
}

impl<V> SeriesTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn group_of(&self, source: &Source) -> Option<usize> {
        match self.groups.get(self.last) {
            Some(g) if &g.source == source => Some(self.last),
            _ => self.by_source.get(source).copied(),
        }
    }

    fn group_mut_of(&mut self, source: &Source) -> Option<usize> {
        let g = self.group_of(source)?;
        self.last = g;
        self.groups[g].touched = self.generation;
        Some(g)
    }

    /// The entry of `key`.
    pub fn get(&self, key: &SeriesKey) -> Option<&V> {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The entry of `key`, with the key as stored.
    pub fn get_key_value(&self, key: &SeriesKey) -> Option<(&SeriesKey, &V)> {
        let group = &self.groups[self.group_of(&key.source)?];
        let (k, v) = &group.slots[group.position(key)?];
        Some((k, v))
    }

    /// True when `key` has an entry.
    pub fn contains_key(&self, key: &SeriesKey) -> bool {
        self.get_key_value(key).is_some()
    }

    /// The entry of `key`, to change.
    pub fn get_mut(&mut self, key: &SeriesKey) -> Option<&mut V> {
        let g = self.group_mut_of(&key.source)?;
        let group = &mut self.groups[g];
        let at = group.position(key)?;
        group.hint = at + 1;
        Some(&mut group.slots[at].1)
    }

    /// The group of `source`, made when there is none.
    fn group_or_insert(&mut self, source: &Source) -> usize {
        match self.group_mut_of(source) {
            Some(g) => g,
            None => {
                let g = self.groups.len();
                self.groups
                    .push(Group::new(source.clone(), self.generation));
                self.by_source.insert(source.clone(), g);
                self.last = g;
                g
            }
        }
    }

    /// The entry of `key`, made by `make` when there is none.
    pub fn get_or_insert_with(&mut self, key: &SeriesKey, make: impl FnOnce() -> V) -> &mut V {
        let g = self.group_or_insert(&key.source);
        let group = &mut self.groups[g];
        let at = match group.position(key) {
            Some(at) => at,
            None => {
                self.len += 1;
                group.push(key.clone(), make())
            }
        };
        group.hint = at + 1;
        &mut group.slots[at].1
    }

    /// Sets the entry of `key`; returns the one it replaces.
    pub fn insert(&mut self, key: SeriesKey, value: V) -> Option<V> {
        let g = self.group_or_insert(&key.source);
        let group = &mut self.groups[g];
        match group.position(&key) {
            Some(at) => {
                group.hint = at + 1;
                Some(std::mem::replace(&mut group.slots[at].1, value))
            }
            None => {
                self.len += 1;
                group.hint = group.push(key, value) + 1;
                None
            }
        }
    }

    /// Every entry of `source`, in slot order (the order of the batches that brought them,
    /// see the module documentation).
    pub fn of_source<'a>(
        &'a self,
        source: &Source,
    ) -> impl Iterator<Item = (&'a SeriesKey, &'a V)> + 'a {
        self.group_of(source)
            .map(|g| self.groups[g].slots.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k, v))
    }

    /// Every entry of `source`, to change.
    pub fn of_source_mut<'a>(
        &'a mut self,
        source: &Source,
    ) -> impl Iterator<Item = (&'a SeriesKey, &'a mut V)> + 'a {
        let g = self.group_mut_of(source);
        let slots: &mut [(SeriesKey, V)] = match g {
            Some(g) => &mut self.groups[g].slots,
            None => &mut [],
        };
        slots.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The sources with entries.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.groups.iter().map(|g| &g.source)
    }

    /// True when `source` has entries.
    pub fn has_source(&self, source: &Source) -> bool {
        self.group_of(source).is_some()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &V)> {
        self.groups
            .iter()
            .flat_map(|g| g.slots.iter().map(|(k, v)| (k, v)))
    }

    /// Every entry, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&SeriesKey, &mut V)> {
        self.groups
            .iter_mut()
            .flat_map(|g| g.slots.iter_mut().map(|(k, v)| (&*k, v)))
    }

    /// Every entry of the sources looked up to change ([`Self::get_mut`],
    /// [`Self::get_or_insert_with`], [`Self::insert`], [`Self::of_source_mut`]) since the
    /// last [`Self::untouch`], to change. The storage writer walks only these at each flush
    /// instead of its 34,000 series at 1,000 daemons, of which a flush has samples for half.
    pub fn touched_mut(&mut self) -> impl Iterator<Item = (&SeriesKey, &mut V)> {
        let generation = self.generation;
        self.groups
            .iter_mut()
            .filter(move |g| g.touched == generation)
            .flat_map(|g| g.slots.iter_mut().map(|(k, v)| (&*k, v)))
    }

    /// Starts a new generation: no source counts as touched until it is looked up to
    /// change again.
    pub fn untouch(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &SeriesKey> {
        self.iter().map(|(k, _)| k)
    }

    /// Every entry's value.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every entry's value, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` says to; a source left without any is forgotten.
    pub fn retain(&mut self, mut keep: impl FnMut(&SeriesKey, &mut V) -> bool) {
        let mut removed = 0;
        let mut emptied = false;
        for group in &mut self.groups {
            let before = group.slots.len();
            group.slots.retain_mut(|(k, v)| keep(k, v));
            if group.slots.len() != before {
                removed += before - group.slots.len();
                group.reindex();
                emptied |= group.slots.is_empty();
            }
        }
        self.len -= removed;
        if emptied {
            self.groups.retain(|g| !g.slots.is_empty());
            self.reindex_sources();
        }
    }

    /// Forgets every entry of `source`.
    pub fn remove_source(&mut self, source: &Source) {
        if let Some(g) = self.by_source.remove(source) {
            let group = self.groups.swap_remove(g);
            self.len -= group.slots.len();
            if let Some(moved) = self.groups.get(g) {
                self.by_source.insert(moved.source.clone(), g);
            }
            self.last = 0;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.by_source.clear();
        self.groups.clear();
        self.last = 0;
        self.len = 0;
    }

    fn reindex_sources(&mut self) {
        self.by_source.clear();
        for (i, g) in self.groups.iter().enumerate() {
            self.by_source.insert(g.source.clone(), i);
        }
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DaemonId, Labels};

    fn key(daemon: &str, metric: &'static str, label: Option<&str>) -> SeriesKey {
        let labels = match label {
            Some(v) => Labels::from_pairs([("k", v)]),
            None => Labels::empty(),
        };
        SeriesKey::new(Source::Daemon(DaemonId::new(daemon)), metric, labels)
    }

    /// The table answers as a map keyed by series would, through inserts, lookups from any
    /// slot, retains that empty a source, and source removal (checked against a std map).
    #[test]
    fn behaves_as_a_map_of_series() {
        let mut table = SeriesTable::new();
        let mut model = std::collections::HashMap::new();
        let metrics = ["a", "b", "c", "d"];
        for round in 0..3 {
            for d in 0..5 {
                for m in 0..metrics.len() {
                    // Lookups out of insertion order too: the hint must not be trusted.
                    let k = key(&format!("d{d}"), metrics[(m * 3 + round) % 4], None);
                    *table.get_or_insert_with(&k, || 0) += 1;
                    *model.entry(k).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(table.len(), model.len());
        for (k, v) in &model {
            assert_eq!(table.get(k), Some(v), "{k}");
        }
        table.retain(|k, _| k.source != Source::Daemon(DaemonId::new("d2")));
        model.retain(|k, _| k.source != Source::Daemon(DaemonId::new("d2")));
        table.remove_source(&Source::Daemon(DaemonId::new("d0")));
        model.retain(|k, _| k.source != Source::Daemon(DaemonId::new("d0")));
        assert_eq!(table.len(), model.len());
        assert_eq!(table.sources().count(), 3);
        for (k, v) in &model {
            assert_eq!(table.get(k), Some(v), "{k}");
            assert_eq!(table.get_mut(k).copied(), Some(*v), "{k}");
        }
        let mut seen: Vec<_> = table.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut want: Vec<_> = model.into_iter().collect();
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
        assert!(!table.contains_key(&key("d0", "a", None)));
        assert_eq!(table.insert(key("d1", "a", None), 9), Some(3));
        assert_eq!(table.insert(key("d9", "a", None), 1), None);
        assert_eq!(
            table
                .of_source(&Source::Daemon(DaemonId::new("d9")))
                .count(),
            1
        );
    }

    /// `touched_mut` yields the entries of exactly the sources looked up to change since
    /// the last `untouch` (new sources included), and nothing after an `untouch`.
    #[test]
    fn touched_sources_are_those_changed_since_untouch() {
        let mut table = SeriesTable::new();
        for d in 0..4 {
            for m in ["a", "b"] {
                table.insert(key(&format!("d{d}"), m, None), 0);
            }
        }
        let touched = |t: &mut SeriesTable<i32>| {
            let mut keys: Vec<String> = t.touched_mut().map(|(k, _)| k.to_string()).collect();
            keys.sort();
            keys
        };
        assert_eq!(touched(&mut table).len(), 8, "new sources are touched");
        table.untouch();
        assert!(touched(&mut table).is_empty());
        // Reads do not touch; each kind of mutable lookup does.
        assert_eq!(table.get(&key("d0", "a", None)), Some(&0));
        *table.get_mut(&key("d1", "a", None)).unwrap() += 1;
        *table.get_or_insert_with(&key("d2", "c", None), || 5) += 1;
        table
            .of_source_mut(&Source::Daemon(DaemonId::new("d3")))
            .for_each(|_| {});
        let want: Vec<String> = [
            ("d1", "a"),
            ("d1", "b"),
            ("d2", "a"),
            ("d2", "b"),
            ("d2", "c"),
        ]
        .into_iter()
        .chain([("d3", "a"), ("d3", "b")])
        .map(|(d, m)| key(d, m, None).to_string())
        .collect();
        assert_eq!(touched(&mut table), want);
        table.untouch();
        assert!(touched(&mut table).is_empty());
    }

    /// Series a source sends from its second batch on (rates, which need two readings)
    /// take the slots where their batch puts them, so every lookup of the third batch
    /// finds its entry at the hint without searching.
    #[test]
    fn late_series_take_their_batch_order() {
        let mut table = SeriesTable::new();
        let first = ["cpu_time", "memory", "read", "write", "fds"];
        let later = [
            "cpu_time",
            "cpu_util",
            "memory",
            "read",
            "read_rate",
            "write",
            "write_rate",
            "fds",
        ];
        for m in first {
            table.get_or_insert_with(&key("d", m, None), || 0);
        }
        for batch in 0..2 {
            for m in later {
                *table.get_or_insert_with(&key("d", m, None), || 0) += batch;
            }
        }
        let order: Vec<&str> = table
            .of_source(&Source::Daemon(DaemonId::new("d")))
            .map(|(k, _)| k.metric.as_str())
            .collect();
        assert_eq!(order, later);
        let group = &mut table.groups[0];
        group.hint = 0;
        for (at, m) in later.iter().enumerate() {
            let k = key("d", m, None);
            assert_eq!(group.slots[group.hint].0, k, "{m} is at the hint");
            assert_eq!(group.position(&k), Some(at));
            group.hint = at + 1;
        }
    }

    /// A source with many label sets (pushed app metrics) is indexed, and stays correct as
    /// slots are removed and the index rebuilt or dropped.
    #[test]
    fn large_sources_are_indexed() {
        let mut table = SeriesTable::new();
        let labels: Vec<String> = (0..INDEX_FROM * 3).map(|i| format!("v{i}")).collect();
        for (i, l) in labels.iter().enumerate() {
            table.insert(key("app", "m", Some(l)), i);
        }
        assert_eq!(table.len(), INDEX_FROM * 3);
        for (i, l) in labels.iter().enumerate().rev() {
            assert_eq!(table.get(&key("app", "m", Some(l))), Some(&i));
        }
        assert!(table.groups[0].index.is_some());
        table.retain(|_, v| *v % 2 == 0);
        assert!(table.groups[0].index.is_some(), "still past INDEX_FROM");
        assert_eq!(table.len(), INDEX_FROM * 3 / 2);
        for (i, l) in labels.iter().enumerate() {
            let want = (i % 2 == 0).then_some(i);
            assert_eq!(table.get(&key("app", "m", Some(l))).copied(), want);
        }
        table.retain(|_, v| *v % 10 == 0);
        assert!(table.groups[0].index.is_none(), "back below INDEX_FROM");
        for (i, l) in labels.iter().enumerate() {
            let want = (i % 10 == 0).then_some(i);
            assert_eq!(table.get(&key("app", "m", Some(l))).copied(), want);
        }
        table.clear();
        assert!(table.is_empty() && table.sources().next().is_none());
    }
}
