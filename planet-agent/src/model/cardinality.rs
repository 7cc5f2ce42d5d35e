//! The cardinality budget: no family shows more than a set number of
//! series, and an edge stays visible for a retention window after its last
//! activity. Pure: tasks call it when they build a snapshot, so a scrape
//! only renders what is already within budget.
//!
//! Byte counters live in a [`Book`]: each entry is a cumulative counter
//! pair (egress, ingress). When a family would exceed its budget, the
//! heaviest entries (most bytes so far; ties go to the smaller key) are
//! kept and the rest are folded into one `other` entry, which gains their
//! bytes: the family's total is exactly the bytes ever credited to live
//! entries, and `other` only grows, so it stays a valid counter. A folded
//! key that moves bytes again starts a new entry from those bytes and
//! competes again. Entries (and `other`) without new bytes for the
//! retention window leave the family, as a series of a finished process
//! would.
//!
//! Gauge families rebuilt each time (`planet_upstream`) use
//! [`split_heaviest`] directly. [`FoldTracker`] counts, for either kind,
//! the distinct series folded within the retention window and in total.

use std::{
    cmp::Ordering,
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    time::{Duration, Instant},
};

use crate::collect::flows::Counts;

/// Label value of the series the folded ones are summed into.
pub const OTHER: &str = "other";

/// Default of `-task-dependency-retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(120);

/// Default of `-metrics-max-series-per-family`.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Series a byte entry shows: egress and ingress.
pub const SERIES_PER_ENTRY: usize = 2;

/// Limits of every family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most series one family shows, its `other` series included (at least 2).
    pub max_series: usize,
    /// An edge without activity for this long leaves its family.
    pub retention: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_series: DEFAULT_MAX_SERIES,
            retention: DEFAULT_RETENTION,
        }
    }
}

/// Folding counters of one family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldStatus {
    /// Series folded into `other` since start (a series counts again when
    /// it is folded after a retention window without being folded).
    pub total: u64,
    /// Distinct series folded within the retention window.
    pub current: usize,
}

/// Distinct folded keys, by hash, with when each was last folded.
#[derive(Clone, Debug, Default)]
pub struct FoldTracker {
    recent: HashMap<u64, Instant>,
    total: u64,
}

impl FoldTracker {
    pub fn record(&mut self, key: &impl Hash, now: Instant) {
        // SipHash with fixed keys: the same key always hashes alike.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        if self.recent.insert(hasher.finish(), now).is_none() {
            self.total += 1;
        }
    }

    /// Forgets keys last folded longer than `retention` before `now`.
    pub fn expire(&mut self, now: Instant, retention: Duration) {
        self.recent
            .retain(|_, at| now.saturating_duration_since(*at) <= retention);
    }

    pub fn status(&self) -> FoldStatus {
        FoldStatus {
            total: self.total,
            current: self.recent.len(),
        }
    }
}

/// Splits `items` into the `keep` heaviest and the rest, in linear time.
/// Equal weights are ordered by `order`, so the split is deterministic.
/// Neither half is sorted.
pub fn split_heaviest<T>(
    mut items: Vec<T>,
    keep: usize,
    weight: impl Fn(&T) -> u64,
    order: impl Fn(&T, &T) -> Ordering,
) -> (Vec<T>, Vec<T>) {
    if items.len() <= keep {
        return (items, Vec::new());
    }
    if keep > 0 {
        items.select_nth_unstable_by(keep - 1, |a, b| {
            weight(b).cmp(&weight(a)).then_with(|| order(a, b))
        });
    }
    let rest = items.split_off(keep);
    (items, rest)
}

/// A family's series as of one settle: kept entries sorted by key, the
/// `other` entry if any, and the folding counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budgeted<K> {
    pub series: Vec<(K, Counts)>,
    pub other: Option<Counts>,
    pub folds: FoldStatus,
}

impl<K> Default for Budgeted<K> {
    fn default() -> Self {
        Self {
            series: Vec::new(),
            other: None,
            folds: FoldStatus::default(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    bytes: Counts,
    changed: Instant,
}

impl Entry {
    fn weight(&self) -> u64 {
        self.bytes.tx.saturating_add(self.bytes.rx)
    }
}

/// Cumulative byte counters of one family under a [`Budget`].
#[derive(Clone, Debug)]
pub struct Book<K> {
    entries: HashMap<K, Entry>,
    other: Option<Entry>,
    folds: FoldTracker,
}

impl<K> Default for Book<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            other: None,
            folds: FoldTracker::default(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Book<K> {
    /// Adds `delta` to `key`'s counters.
    pub fn credit(&mut self, key: K, delta: Counts, now: Instant) {
        if delta.is_zero() {
            return;
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            bytes: Counts::default(),
            changed: now,
        });
        entry.bytes += delta;
        entry.changed = now;
    }

    /// Drops entries idle for longer than the retention window, then folds
    /// the lightest entries into `other` until the family fits its budget.
    pub fn settle(&mut self, now: Instant, budget: Budget) {
        let idle = |e: &Entry| now.saturating_duration_since(e.changed) > budget.retention;
        self.entries.retain(|_, e| !idle(e));
        if self.other.as_ref().is_some_and(idle) {
            self.other = None;
        }
        self.folds.expire(now, budget.retention);

        let slots = (budget.max_series / SERIES_PER_ENTRY).max(1);
        if self.entries.len() + usize::from(self.other.is_some()) <= slots {
            return;
        }
        let (kept, folded) = split_heaviest(
            self.entries.drain().collect(),
            slots - 1,
            |(_, e): &(K, Entry)| e.weight(),
            |a, b| a.0.cmp(&b.0),
        );
        let other = self.other.get_or_insert(Entry {
            bytes: Counts::default(),
            changed: now,
        });
        other.changed = now;
        for (key, entry) in folded {
            other.bytes += entry.bytes;
            self.folds.record(&key, now);
        }
        self.entries = kept.into_iter().collect();
    }

    /// The family as it stands.
    pub fn report(&self) -> Budgeted<K> {
        let mut series: Vec<(K, Counts)> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.bytes))
            .collect();
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Budgeted {
            series,
            other: self.other.map(|e| e.bytes),
            folds: self.folds.status(),
        }
    }

    /// Entries kept (without `other`).
    pub fn kept(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(tx: u64, rx: u64) -> Counts {
        Counts { tx, rx }
    }

    fn budget(max_series: usize) -> Budget {
        Budget {
            max_series,
            retention: Duration::from_secs(120),
        }
    }

    fn total(report: &Budgeted<u32>) -> Counts {
        let mut sum = report.other.unwrap_or_default();
        for (_, b) in &report.series {
            sum += *b;
        }
        sum
    }

    #[test]
    fn within_budget_nothing_is_folded() {
        let mut book = Book::default();
        let now = Instant::now();
        for k in 0..5u32 {
            book.credit(k, bytes(1, 1), now);
        }
        book.settle(now, budget(10));
        let report = book.report();
        assert_eq!(report.series.len(), 5);
        assert_eq!(report.other, None);
        assert_eq!(report.folds, FoldStatus::default());
    }

    #[test]
    fn the_heaviest_are_kept_and_the_rest_summed_into_other() {
        let mut book = Book::default();
        let now = Instant::now();
        for k in 0..10u32 {
            book.credit(k, bytes(u64::from(k) * 10, 1), now);
        }
        // 8 series: 3 entries and `other`.
        book.settle(now, budget(8));
        let report = book.report();
        let kept: Vec<u32> = report.series.iter().map(|(k, _)| *k).collect();
        assert_eq!(kept, vec![7, 8, 9]);
        assert_eq!(report.other, Some(bytes(10 * (1 + 2 + 3 + 4 + 5 + 6), 7)));
        assert_eq!(total(&report), bytes(450, 10), "no byte lost");
        assert_eq!(
            report.folds,
            FoldStatus {
                total: 7,
                current: 7
            }
        );
    }

    #[test]
    fn other_only_grows_and_folded_keys_compete_again() {
        let mut book = Book::default();
        let t0 = Instant::now();
        for k in 0..4u32 {
            book.credit(k, bytes(100 * u64::from(k + 1), 0), t0);
        }
        book.settle(t0, budget(6)); // 2 entries + other
        assert_eq!(book.report().other, Some(bytes(300, 0)));
        // Key 0 was folded; it moves a lot now and displaces key 2.
        let t1 = t0 + Duration::from_secs(7);
        book.credit(0, bytes(1000, 0), t1);
        book.settle(t1, budget(6));
        let report = book.report();
        let kept: Vec<u32> = report.series.iter().map(|(k, _)| *k).collect();
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(
            report.series[0].1,
            bytes(1000, 0),
            "only bytes since folding"
        );
        assert_eq!(
            report.other,
            Some(bytes(600, 0)),
            "300 before, plus key 2's"
        );
        assert_eq!(report.folds.total, 3, "key 2 is newly folded; 0 and 1 were");
    }

    #[test]
    fn ties_are_broken_by_key() {
        let now = Instant::now();
        let mut a = Book::default();
        let mut b = Book::default();
        for k in 0..100u32 {
            a.credit(k, bytes(5, 5), now);
            b.credit(99 - k, bytes(5, 5), now);
        }
        a.settle(now, budget(20));
        b.settle(now, budget(20));
        assert_eq!(a.report(), b.report());
        assert_eq!(a.report().series.last().map(|s| s.0), Some(8));
    }

    #[test]
    fn idle_entries_expire_after_the_retention_window() {
        let mut book = Book::default();
        let t0 = Instant::now();
        book.credit(1u32, bytes(1, 1), t0);
        book.credit(2u32, bytes(1, 1), t0);
        book.settle(t0 + Duration::from_secs(120), budget(100));
        assert_eq!(book.kept(), 2, "visible for the whole window");
        book.credit(2, bytes(1, 0), t0 + Duration::from_secs(60));
        book.settle(t0 + Duration::from_secs(121), budget(100));
        let report = book.report();
        assert_eq!(report.series, vec![(2, bytes(2, 1))]);
        book.settle(t0 + Duration::from_secs(200), budget(100));
        assert_eq!(book.report(), Budgeted::default());
    }

    #[test]
    fn a_budget_of_two_series_shows_only_other() {
        let mut book = Book::default();
        let now = Instant::now();
        book.credit(1u32, bytes(1, 2), now);
        book.credit(2u32, bytes(3, 4), now);
        book.settle(now, budget(2));
        let report = book.report();
        assert!(report.series.is_empty());
        assert_eq!(report.other, Some(bytes(4, 6)));
    }

    /// 100k distinct peers against the default budget: exact bytes, the
    /// heaviest kept, and the same answer whatever the arrival order.
    #[test]
    fn hundred_thousand_peers() {
        const PEERS: u32 = 100_000;
        // Distinct weights in a scrambled order: peer i moves w(i) bytes.
        let weight = |i: u32| u64::from(i.wrapping_mul(2_654_435_761) % 1_000_003) + 1;
        let now = Instant::now();
        let settle = |order: &mut dyn Iterator<Item = u32>| {
            let mut book = Book::default();
            for i in order {
                book.credit(i, bytes(weight(i), weight(i) / 2), now);
            }
            book.settle(now, Budget::default());
            book.report()
        };
        let report = settle(&mut (0..PEERS));
        let slots = DEFAULT_MAX_SERIES / SERIES_PER_ENTRY;
        assert_eq!(report.series.len(), slots - 1);
        assert!((report.series.len() + 1) * SERIES_PER_ENTRY <= DEFAULT_MAX_SERIES);

        let mut expected = Counts::default();
        for i in 0..PEERS {
            expected += bytes(weight(i), weight(i) / 2);
        }
        assert_eq!(total(&report), expected, "bytes preserved exactly");

        let mut by_weight: Vec<u32> = (0..PEERS).collect();
        by_weight.sort_unstable_by(|a, b| weight(*b).cmp(&weight(*a)).then(a.cmp(b)));
        let mut heaviest: Vec<u32> = by_weight[..slots - 1].to_vec();
        heaviest.sort_unstable();
        let kept: Vec<u32> = report.series.iter().map(|(k, _)| *k).collect();
        assert_eq!(kept, heaviest, "the kept series are the heaviest");
        assert_eq!(report.folds.current, PEERS as usize - (slots - 1));

        assert_eq!(settle(&mut (0..PEERS).rev()), report, "deterministic");
    }

    #[test]
    fn split_heaviest_keeps_exactly_the_heaviest() {
        let items: Vec<u64> = vec![5, 1, 9, 3, 9, 7];
        let (mut kept, mut rest) = split_heaviest(items, 3, |w| *w, |a, b| a.cmp(b));
        kept.sort_unstable();
        rest.sort_unstable();
        assert_eq!(kept, vec![7, 9, 9]);
        assert_eq!(rest, vec![1, 3, 5]);
        let (kept, rest) = split_heaviest(vec![1u64, 2], 0, |w| *w, |a, b| a.cmp(b));
        assert!(kept.is_empty());
        assert_eq!(rest.len(), 2);
    }
}
