//! Throughput samples for the overview's charts, taken in the node every second.
//!
//! Each sample holds, per topic, what this broker can count without touching the produce or fetch path:
//! the sum of the log end offsets and of the log sizes of the partitions it leads (records and bytes in),
//! and the sum of the offsets committed by the groups it coordinates (records consumed). Rates are the
//! differences between consecutive samples. A cluster's total is the sum over its brokers' consoles;
//! each console shows its own broker's share. Bytes out (what fetches return) are not sampled here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;

use crate::broker::Broker;
use crate::replica::Role;

/// Samples kept: two minutes at one a second.
const SAMPLES_MAX: usize = 120;
/// Topics tracked one by one in a sample; the rest count in the total only (a sample of 10,000 topics
/// would cost more than the chart shows).
const TOPICS_TRACKED_MAX: usize = 500;
/// Topics drawn as their own series: the busiest ones.
const SERIES_MAX: usize = 5;
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Cumulative counts at one moment.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    records_in: u64,
    bytes_in: u64,
    records_consumed: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.records_in += other.records_in;
        self.bytes_in += other.bytes_in;
        self.records_consumed += other.records_consumed;
    }
}

#[derive(Debug)]
struct Sample {
    at_ms: i64,
    total: Counts,
    topics: HashMap<String, Counts>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: Mutex<VecDeque<Sample>>,
}

impl Throughput {
    /// Starts sampling `broker` every second until it shuts down.
    pub fn start(broker: Arc<Broker>) -> Arc<Self> {
        let throughput = Arc::new(Self::default());
        let sampling = throughput.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = broker.shutdown.cancelled() => return,
                }
                let sample = take(&broker);
                let mut samples = sampling.samples.lock().unwrap_or_else(PoisonError::into_inner);
                if samples.len() == SAMPLES_MAX {
                    samples.pop_front();
                }
                samples.push_back(sample);
            }
        });
        throughput
    }

    /// The rates between consecutive samples, as the overview's script draws them: per second, the total
    /// and the busiest topics' series.
    pub fn json(&self) -> serde_json::Value {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let pairs: Vec<(&Sample, &Sample)> = samples.iter().zip(samples.iter().skip(1)).collect();
        let rate = |a: u64, b: u64, ms: i64| (b.saturating_sub(a)) as f64 * 1000.0 / ms.max(1) as f64;
        let series = |pick: &dyn Fn(&Sample) -> Counts| {
            let (mut records_in, mut bytes_in, mut consumed) = (Vec::new(), Vec::new(), Vec::new());
            for (a, b) in &pairs {
                let (ca, cb, ms) = (pick(a), pick(b), b.at_ms - a.at_ms);
                records_in.push(rate(ca.records_in, cb.records_in, ms));
                bytes_in.push(rate(ca.bytes_in, cb.bytes_in, ms));
                consumed.push(rate(ca.records_consumed, cb.records_consumed, ms));
            }
            (records_in, bytes_in, consumed)
        };
        let (records_in, bytes_in, consumed) = series(&|s| s.total);
        let mut out = vec![
            json!({"name": "all topics", "records_in": records_in, "bytes_in": bytes_in, "records_consumed": consumed}),
        ];
        // The busiest topics over the window kept.
        let mut busiest: Vec<(String, u64)> = match (samples.front(), samples.back()) {
            (Some(first), Some(last)) => last
                .topics
                .iter()
                .map(|(name, c)| {
                    let before = first.topics.get(name).copied().unwrap_or_default();
                    let moved = c.records_in.saturating_sub(before.records_in)
                        + c.records_consumed.saturating_sub(before.records_consumed);
                    (name.clone(), moved)
                })
                .filter(|(_, moved)| *moved > 0)
                .collect(),
            _ => Vec::new(),
        };
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (name, _) in busiest.into_iter().take(SERIES_MAX) {
            let (records_in, bytes_in, consumed) = series(&|s| s.topics.get(&name).copied().unwrap_or_default());
            out.push(
                json!({"name": name, "records_in": records_in, "bytes_in": bytes_in, "records_consumed": consumed}),
            );
        }
        let times: Vec<i64> = pairs.iter().map(|(_, b)| b.at_ms).collect();
        json!({"interval_ms": SAMPLE_INTERVAL.as_millis() as u64, "times_ms": times, "series": out})
    }
}

/// One sample of `broker`: its led partitions' logs and its groups' commits.
fn take(broker: &Broker) -> Sample {
    let mut topics: HashMap<String, Counts> = HashMap::new();
    let mut total = Counts::default();
    let mut count = |topic: &str, counts: Counts| {
        total.add(counts);
        if let Some(c) = topics.get_mut(topic) {
            c.add(counts);
        } else if topics.len() < TOPICS_TRACKED_MAX {
            topics.insert(topic.to_owned(), counts);
        }
    };
    for partition in broker.replicas.all() {
        if partition.state().role != Role::Leader || partition.tp.topic.starts_with("__") {
            continue;
        }
        let (end, size) = {
            let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            (log.log_end_offset(), log.size_bytes())
        };
        let counts = Counts {
            records_in: end,
            bytes_in: size,
            records_consumed: 0,
        };
        count(&partition.tp.topic, counts);
    }
    for group in broker.offsets.groups() {
        for (tp, committed) in broker.offsets.of_group(&group) {
            let counts = Counts {
                records_consumed: u64::try_from(committed.offset).unwrap_or(0),
                ..Counts::default()
            };
            count(&tp.topic, counts);
        }
    }
    Sample {
        at_ms: crate::now_ms(),
        total,
        topics,
    }
}
