//! Figures for Prometheus: counters, fixed-bucket histograms, families of them keyed by labels, and the text
//! exposition format (version 0.0.4) they are rendered in.
//!
//! They live here, in the crate the broker and the controller both use, so both render one format. Recording
//! is cheap enough for the produce path: a counter is one relaxed atomic add; a histogram observation is a
//! search of at most 16 fixed bounds and two relaxed adds (its bucket and its sum). Counts are not
//! cumulative when recorded (one add, not one per bucket); rendering adds them up. Nothing here allocates
//! after a family's first use of a label set.
//!
//! Rendering reads the atomics one by one, so a scrape taken while requests run may show a histogram's
//! `_count` and `_sum` from slightly different moments, as every Prometheus client library does.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Latency bucket bounds in microseconds, 100 µs to 10 s: request, flush and commit latencies.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const _: () = assert!(LATENCY_BOUNDS_US.len() <= BOUNDS_MAX);

/// The most bounds a histogram has: what keeps an observation's search short.
const BOUNDS_MAX: usize = 16;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connections, waiting requests).
#[derive(Debug, Default)]
pub struct Gauge(std::sync::atomic::AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram over fixed bounds (microseconds), rendered in seconds as Prometheus expects.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    /// One count per bound, then the count above the last bound (`+Inf`); not cumulative.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(LATENCY_BOUNDS_US)
    }
}

impl Histogram {
    /// A histogram over `bounds_us`, which must increase and have at most 16 entries.
    pub fn new(bounds_us: &'static [u64]) -> Self {
        assert!(bounds_us.len() <= BOUNDS_MAX && bounds_us.windows(2).all(|w| w[0] < w[1]));
        Self {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        self.observe_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn observe_us(&self, us: u64) {
        let bucket = self.bounds_us.partition_point(|bound| *bound < us);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The sum of observations, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
}

/// Figures of one kind keyed by a label set (a topic, a topic and partition, an API and error code...),
/// created on first use. A std lock: the common path takes it shared, only to clone an `Arc`.
#[derive(Debug)]
pub struct Family<K, T> {
    members: RwLock<BTreeMap<K, Arc<T>>>,
}

impl<K, T> Default for Family<K, T> {
    fn default() -> Self {
        Self {
            members: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone, T: Default> Family<K, T> {
    /// The member for `key`, created on first use.
    pub fn get(&self, key: &K) -> Arc<T> {
        if let Some(member) = self.members.read().unwrap_or_else(PoisonError::into_inner).get(key) {
            return member.clone();
        }
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        members.entry(key.clone()).or_default().clone()
    }

    /// Forgets the members `keep` refuses (a deleted topic's, a partition no longer hosted).
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep(key));
    }

    /// Every member, in key order.
    pub fn snapshot(&self) -> Vec<(K, Arc<T>)> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, member)| (key.clone(), member.clone()))
            .collect()
    }
}

/// What kind of figure a family is, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A page of the text exposition format being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Each family is started once per page.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            self.out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of a counter or gauge family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A histogram's buckets (cumulative, in seconds), sum and count, under `name`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) -> &mut Self {
        let mut cumulative = 0;
        for (i, count) in histogram.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = histogram
                .bounds_us
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |bound| seconds(*bound));
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", seconds(histogram.sum_us()));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
        self
    }

    /// Adds a page rendered elsewhere (the controller's figures after the broker's).
    pub fn append(&mut self, page: &str) -> &mut Self {
        self.out.push_str(page);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let le = le.map(|le| ("le", le));
        for (i, (name, value)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Microseconds as seconds, exactly (no float rounding: `0.0025`, not `0.0025000000000000001`).
fn seconds(us: u64) -> String {
    let (whole, fraction) = (us / 1_000_000, us % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:06}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let histogram = Histogram::new(&[1_000, 10_000]);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_micros(1_000));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(2));
        let mut page = Exposition::new();
        page.family("strata_x_seconds", Kind::Histogram, "X.").histogram(
            "strata_x_seconds",
            &[("api", "Produce")],
            &histogram,
        );
        assert_eq!(
            page.finish(),
            "# HELP strata_x_seconds X.\n# TYPE strata_x_seconds histogram\n\
             strata_x_seconds_bucket{api=\"Produce\",le=\"0.001\"} 2\n\
             strata_x_seconds_bucket{api=\"Produce\",le=\"0.01\"} 3\n\
             strata_x_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 4\n\
             strata_x_seconds_sum{api=\"Produce\"} 2.0065\n\
             strata_x_seconds_count{api=\"Produce\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut page = Exposition::new();
        page.sample("strata_y", &[("group", "a\"b\\c\nd")], 1);
        assert_eq!(page.finish(), "strata_y{group=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn a_family_creates_members_once() {
        let family: Family<String, Counter> = Family::default();
        family.get(&"t".to_owned()).inc();
        family.get(&"t".to_owned()).add(2);
        assert_eq!(family.get(&"t".to_owned()).get(), 3);
        family.retain(|key| key != "t");
        assert!(family.snapshot().is_empty());
    }
}
