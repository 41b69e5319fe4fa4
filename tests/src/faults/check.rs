//! Checks a history against the final log, Jepsen-style.
//!
//! - **lost**: acknowledged, absent from the final log;
//! - **moved**: found at another partition or offset than acknowledged;
//! - **duplicated**: in the log more than once (an error for an idempotent producer; counted for others,
//!   whose retries may write a record twice, as Kafka's do);
//! - **unexpected**: in the log, never sent;
//! - **reordered**: a lane's acknowledged records out of acknowledgement order in their partition;
//! - **committed past the end**: a group offset beyond the partition's high watermark.
//!
//! Availability is reported, not judged: the share of sends acknowledged, and the longest time without an
//! acknowledgement, over the whole run and per fault ([`availability`]), with how long after the fault the
//! first write to each partition its node led was acknowledged (the failover time).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::nemesis::Applied;
use super::workload::{History, Outcome};

/// A producer's lane in one partition.
type LaneKey<'a> = (&'a str, usize, i32);

/// What the checkers found.
#[derive(Debug, Default)]
pub struct Report {
    pub sends: usize,
    pub acked: usize,
    pub unknown: usize,
    pub records: usize,
    pub lost: Vec<String>,
    pub moved: Vec<String>,
    pub duplicated_idempotent: Vec<String>,
    /// Duplicates from producers without idempotence: allowed, counted.
    pub duplicated_other: usize,
    pub unexpected: Vec<String>,
    pub reordered: Vec<String>,
    pub committed_past_end: Vec<String>,
    pub longest_gap: Duration,
    /// When that gap began, from the start of the run.
    pub longest_gap_from: Duration,
}

impl Report {
    /// Whether every invariant held.
    pub fn valid(&self) -> bool {
        self.lost.is_empty()
            && self.moved.is_empty()
            && self.duplicated_idempotent.is_empty()
            && self.unexpected.is_empty()
            && self.reordered.is_empty()
            && self.committed_past_end.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = 100.0 * self.acked as f64 / self.sends.max(1) as f64;
        writeln!(
            f,
            "{} sends: {} acknowledged ({share:.1}%), {} unknown; {} records in the log; longest gap without an \
             acknowledgement {:.2?} (from {:.1?} into the run); {} duplicates from non-idempotent producers",
            self.sends,
            self.acked,
            self.unknown,
            self.records,
            self.longest_gap,
            self.longest_gap_from,
            self.duplicated_other
        )?;
        for (name, found) in [
            ("lost", &self.lost),
            ("moved", &self.moved),
            ("duplicated (idempotent)", &self.duplicated_idempotent),
            ("unexpected", &self.unexpected),
            ("reordered", &self.reordered),
            ("committed past the end", &self.committed_past_end),
        ] {
            if !found.is_empty() {
                let shown: Vec<&str> = found.iter().take(10).map(String::as_str).collect();
                writeln!(
                    f,
                    "{name}: {} ({}{})",
                    found.len(),
                    shown.join("; "),
                    if found.len() > 10 { "; ..." } else { "" }
                )?;
            }
        }
        Ok(())
    }
}

/// Checks `history` against `log` ((partition, offset, value) of every record) and the partitions' high
/// watermarks. `idempotent`: whether a producer (by name) was idempotent.
pub fn check(
    history: &History,
    log: &[(i32, i64, String)],
    high_watermarks: &[i64],
    committed: &[(i32, i64)],
    idempotent: impl Fn(&str) -> bool,
    started: Instant,
) -> Report {
    let mut report = Report {
        sends: history.sends.len(),
        records: log.len(),
        ..Report::default()
    };
    let mut found: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (partition, offset, value) in log {
        found.entry(value.as_str()).or_default().push((*partition, *offset));
    }
    let sent: HashSet<&str> = history.sends.iter().map(|s| s.value.as_str()).collect();
    for (value, places) in &found {
        if !sent.contains(value) {
            report.unexpected.push(format!("{value} at {places:?}"));
        }
        if places.len() > 1 {
            let producer = value.split('-').next().unwrap_or_default();
            match idempotent(producer) {
                true => report.duplicated_idempotent.push(format!("{value} at {places:?}")),
                false => report.duplicated_other += places.len() - 1,
            }
        }
    }
    // By (producer, lane, partition): the (seq, offset) of each acknowledged record.
    let mut lanes: BTreeMap<LaneKey<'_>, Vec<(u64, i64)>> = BTreeMap::new();
    let mut acks: Vec<Instant> = Vec::new();
    for send in &history.sends {
        match &send.outcome {
            Outcome::Unknown(_) => report.unknown += 1,
            Outcome::Acked { partition, offset } => {
                report.acked += 1;
                acks.push(send.answered);
                let places = found.get(send.value.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                if places.is_empty() {
                    report
                        .lost
                        .push(format!("{} (acknowledged at {partition}/{offset})", send.value));
                } else if !places.contains(&(*partition, *offset)) {
                    report.moved.push(format!(
                        "{} acknowledged at {partition}/{offset}, found at {places:?}",
                        send.value
                    ));
                }
                lanes
                    .entry((send.producer.as_str(), send.lane, *partition))
                    .or_default()
                    .push((send.seq, *offset));
            }
        }
    }
    for ((producer, lane, partition), mut acked) in lanes {
        acked.sort_unstable();
        if let Some(pair) = acked.windows(2).find(|w| w[1].1 <= w[0].1) {
            report.reordered.push(format!(
                "{producer} lane {lane} partition {partition}: seq {} at offset {} after seq {} at offset {}",
                pair[1].0, pair[1].1, pair[0].0, pair[0].1
            ));
        }
    }
    for &(partition, offset) in committed.iter().chain(&history.commits) {
        let end = high_watermarks.get(partition as usize).copied().unwrap_or(0);
        if offset > end {
            report.committed_past_end.push(format!(
                "partition {partition}: committed {offset}, high watermark {end}"
            ));
        }
    }
    acks.sort_unstable();
    let mut last = started;
    for &at in &acks {
        let gap = at.saturating_duration_since(last);
        if gap > report.longest_gap {
            report.longest_gap = gap;
            report.longest_gap_from = last.saturating_duration_since(started);
        }
        last = at;
    }
    report
}

/// Availability while one fault was held, from its start until it was healed.
#[derive(Debug)]
pub struct FaultAvailability {
    pub applied: Applied,
    /// Sends answered in the window.
    pub answered: usize,
    /// Of those, acknowledged.
    pub acked: usize,
    /// The longest time without an acknowledgement (of any partition) in the window, from its start.
    pub longest_gap: Duration,
    /// For each partition the fault's node led: how long after the fault took effect the first write to it
    /// was acknowledged (`None`: none in the window).
    pub failover: Vec<(i32, Option<Duration>)>,
}

impl fmt::Display for FaultAvailability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.applied;
        let share = 100.0 * self.acked as f64 / self.answered.max(1) as f64;
        write!(
            f,
            "{:?} (node {:?}), held {:.1?}: {} sends answered, {} acknowledged ({share:.1}%), longest gap {:.2?}",
            a.fault,
            a.node,
            a.healed.saturating_duration_since(a.started),
            self.answered,
            self.acked,
            self.longest_gap
        )?;
        for (partition, first) in &self.failover {
            match first {
                Some(after) => write!(f, "; partition {partition} it led written again after {after:.2?}")?,
                None => write!(f, "; partition {partition} it led not written again while held")?,
            }
        }
        Ok(())
    }
}

/// Availability per fault in `applied`, from the sends of `history` answered while it was held.
pub fn availability(history: &History, applied: &[Applied]) -> Vec<FaultAvailability> {
    applied
        .iter()
        .map(|a| {
            let window = |at: Instant| a.started <= at && at <= a.healed;
            let answered: Vec<_> = history.sends.iter().filter(|s| window(s.answered)).collect();
            let mut acks: Vec<(Instant, i32)> = answered
                .iter()
                .filter_map(|s| match s.outcome {
                    Outcome::Acked { partition, .. } => Some((s.answered, partition)),
                    Outcome::Unknown(_) => None,
                })
                .collect();
            acks.sort_unstable();
            let mut last = a.started;
            let mut longest_gap = Duration::ZERO;
            for &(at, _) in acks.iter().chain(&[(a.healed, -1)]) {
                longest_gap = longest_gap.max(at.saturating_duration_since(last));
                last = at;
            }
            let failover = a
                .led
                .iter()
                .map(|&p| {
                    let first = acks.iter().find(|&&(at, partition)| partition == p && at > a.in_effect);
                    (p, first.map(|(at, _)| at.saturating_duration_since(a.in_effect)))
                })
                .collect();
            FaultAvailability {
                applied: a.clone(),
                answered: answered.len(),
                acked: acks.len(),
                longest_gap,
                failover,
            }
        })
        .collect()
}
