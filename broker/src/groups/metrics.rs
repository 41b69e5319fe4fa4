//! The group coordinator's figures on `/metrics`: groups by type and state, members, completed rebalances,
//! and each group's committed offset and lag per partition, for the groups this broker coordinates.
//!
//! Lag is the partition's high watermark minus the group's committed offset, as
//! `kafka-consumer-groups.sh --describe` shows it, computed where the committed offsets are: on the group's
//! coordinator. The high watermark of a partition this broker leads is read from its replica at scrape
//! time. Partitions led by other brokers are asked for with ListOffsets by [`refresh_watermarks`], a task
//! that sends one request per topic to each leader every [`WATERMARK_REFRESH_INTERVAL_MS`] and caches the
//! answers, so a scrape never waits on the network and the leaders see a bounded load however often
//! Prometheus scrapes. A partition whose high watermark is not known yet (just committed to, its leader
//! unreachable) shows its committed offset but no lag, rather than a made-up one.
//!
//! Not here: share groups have no committed offsets to lag behind (their progress is share-partition
//! state), so they appear only in `strata_consumer_groups`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use strata_protocol::client::admin::OffsetSpec;
use strata_protocol::client::{Client, ClientOptions};
use strata_protocol::metrics::{Counter, Exposition, Family, Kind};
use strata_protocol::transport::Connector;
use strata_storage::TopicPartition;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::broker::Broker;
use crate::replica::Role;

/// How often the high watermarks of partitions led elsewhere are asked for.
pub const WATERMARK_REFRESH_INTERVAL_MS: u64 = 5_000;
/// How long one leader has to answer a round's requests before the round moves on without it.
const WATERMARK_REQUEST_TIMEOUT_MS: u64 = 2_000;
/// The most partitions led elsewhere whose high watermarks are kept: what bounds the cache and a round's
/// requests when groups commit to a great many partitions.
const REMOTE_PARTITIONS_MAX: usize = 100_000;

/// What the coordinator records for `/metrics` as it works.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// Completed rebalances by group: a classic group's new generation with members, a consumer group's
    /// new group epoch.
    rebalances: Family<String, Counter>,
    /// High watermarks of partitions led by other brokers, from their last ListOffsets answers.
    remote_watermarks: Mutex<HashMap<TopicPartition, i64>>,
}

impl GroupMetrics {
    /// Group `group` completed a rebalance.
    pub fn rebalanced(&self, group: &str) {
        self.rebalances.get(&group.to_owned()).inc();
    }

    fn remote_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.remote_watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .copied()
    }
}

/// A group this broker coordinates, as the page shows it.
struct Shown {
    kind: &'static str,
    state: &'static str,
    members: Option<usize>,
}

/// The groups this broker coordinates, by id: classic, consumer-protocol, those known only by committed
/// offsets (empty classic groups, as ListGroups lists them), and share groups.
fn coordinated(broker: &Broker) -> BTreeMap<String, Shown> {
    let coordinates = |group: &str| crate::api::check_coordinator(broker, group).is_ok();
    let mut groups = BTreeMap::new();
    for (id, state, _) in broker.groups.list() {
        if coordinates(&id) {
            let members = broker.groups.describe(&id).map(|g| g.members.len());
            let shown = Shown {
                kind: "classic",
                state: state.name(),
                members,
            };
            groups.insert(id, shown);
        }
    }
    for (id, state) in broker.groups.list_consumer() {
        if coordinates(&id) {
            let members = broker.groups.describe_consumer(&id).map(|g| g.members.len());
            let shown = Shown {
                kind: "consumer",
                state,
                members,
            };
            groups.insert(id, shown);
        }
    }
    for id in broker.offsets.groups() {
        if coordinates(&id) {
            groups.entry(id).or_insert(Shown {
                kind: "classic",
                state: "Empty",
                members: Some(0),
            });
        }
    }
    for id in broker.shares.groups.group_ids() {
        if coordinates(&id) {
            let shown = Shown {
                kind: "share",
                state: "Stable",
                members: None,
            };
            groups.insert(id, shown);
        }
    }
    for id in broker.shares.group_ids_with_partitions() {
        if coordinates(&id) {
            groups.entry(id).or_insert(Shown {
                kind: "share",
                state: "Empty",
                members: None,
            });
        }
    }
    groups
}

/// The high watermark of `tp` as this broker knows it: its own if it leads the partition, else the last
/// one its leader answered.
fn high_watermark(broker: &Broker, tp: &TopicPartition) -> Option<i64> {
    if let Some(partition) = broker.replicas.get(tp)
        && partition.state().role == Role::Leader
    {
        return i64::try_from(partition.high_watermark()).ok();
    }
    broker.groups.metrics().remote_watermark(tp)
}

/// Writes the group families onto `page`.
pub fn render(broker: &Broker, page: &mut Exposition) {
    let groups = coordinated(broker);

    let mut by_type_state: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for shown in groups.values() {
        *by_type_state.entry((shown.kind, shown.state)).or_default() += 1;
    }
    page.family(
        "strata_consumer_groups",
        Kind::Gauge,
        "Groups this broker coordinates, by type (classic, consumer, share) and state.",
    );
    for ((kind, state), count) in &by_type_state {
        page.sample("strata_consumer_groups", &[("type", kind), ("state", state)], count);
    }

    page.family(
        "strata_consumer_group_members",
        Kind::Gauge,
        "Members of each classic or consumer group this broker coordinates.",
    );
    for (id, shown) in &groups {
        if let Some(members) = shown.members {
            page.sample("strata_consumer_group_members", &[("group", id)], members);
        }
    }

    let metrics = broker.groups.metrics();
    // A counter of a group no longer coordinated here is dropped (its next coordinator counts from zero,
    // which Prometheus' rate() reads as a reset).
    metrics.rebalances.retain(|id| groups.contains_key(id));
    page.family(
        "strata_consumer_group_rebalances_total",
        Kind::Counter,
        "Rebalances completed by each group: a classic group's new generation, a consumer group's new epoch.",
    );
    for (id, count) in metrics.rebalances.snapshot() {
        page.sample("strata_consumer_group_rebalances_total", &[("group", &id)], count.get());
    }

    page.family(
        "strata_consumer_group_committed_offset",
        Kind::Gauge,
        "The offset each group committed for each partition.",
    );
    let mut lag_lines = Vec::new();
    for id in groups.iter().filter(|(_, s)| s.kind != "share").map(|(id, _)| id) {
        for (tp, committed) in broker.offsets.of_group(id) {
            let partition = tp.partition.to_string();
            let labels = [
                ("group", id.as_str()),
                ("topic", tp.topic.as_str()),
                ("partition", &partition),
            ];
            page.sample("strata_consumer_group_committed_offset", &labels, committed.offset);
            if let Some(high_watermark) = high_watermark(broker, &tp) {
                lag_lines.push((id.clone(), tp, (high_watermark - committed.offset).max(0)));
            }
        }
    }
    page.family(
        "strata_consumer_group_lag",
        Kind::Gauge,
        "The partition's high watermark minus the group's committed offset (records not yet consumed).",
    );
    for (id, tp, lag) in lag_lines {
        let partition = tp.partition.to_string();
        let labels = [
            ("group", id.as_str()),
            ("topic", tp.topic.as_str()),
            ("partition", &partition),
        ];
        page.sample("strata_consumer_group_lag", &labels, lag);
    }
}

/// The partitions, led by other brokers, that groups this broker coordinates have committed offsets for,
/// by leader.
fn remote_partitions(broker: &Broker) -> BTreeMap<i32, BTreeMap<String, BTreeSet<i32>>> {
    let image = broker.metadata.image();
    let me = broker.node_id();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, BTreeSet<i32>>> = BTreeMap::new();
    let mut count = 0;
    for id in broker.offsets.groups() {
        if crate::api::check_coordinator(broker, &id).is_err() {
            continue;
        }
        for (tp, _) in broker.offsets.of_group(&id) {
            let Some(topic) = image.topic_by_name(&tp.topic) else {
                continue;
            };
            let Some(partition) = topic.partitions.get(&tp.partition) else {
                continue;
            };
            if partition.leader == me || partition.leader == strata_controller::NO_LEADER {
                continue;
            }
            if count >= REMOTE_PARTITIONS_MAX {
                return by_leader;
            }
            let inserted = by_leader
                .entry(partition.leader)
                .or_default()
                .entry(tp.topic.clone())
                .or_default()
                .insert(tp.partition);
            count += usize::from(inserted);
        }
    }
    by_leader
}

/// Keeps the high watermarks of partitions led elsewhere fresh for [`render`], until `shutdown`: every
/// [`WATERMARK_REFRESH_INTERVAL_MS`], one ListOffsets per topic to each leader, over a connection kept
/// from one round to the next. What a round did not learn (the leader did not answer, the partition is no
/// longer committed to or moved here) is dropped, so a stale watermark is never shown for long.
pub async fn refresh_watermarks(broker: Arc<Broker>, connector: Connector, shutdown: CancellationToken) {
    let mut connections: HashMap<i32, Client> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(WATERMARK_REFRESH_INTERVAL_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let wanted = remote_partitions(&broker);
        connections.retain(|leader, _| wanted.contains_key(leader));
        let mut learned = HashMap::new();
        for (leader, topics) in wanted {
            let round = ask_leader(&broker, &connector, &mut connections, leader, &topics, &mut learned);
            let timeout = Duration::from_millis(WATERMARK_REQUEST_TIMEOUT_MS);
            match tokio::time::timeout(timeout, round).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(leader, error = %e, "asking a leader for high watermarks failed");
                    connections.remove(&leader);
                }
                Err(_) => {
                    debug!(leader, "a leader did not answer for high watermarks in time");
                    connections.remove(&leader);
                }
            }
        }
        *broker
            .groups
            .metrics()
            .remote_watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = learned;
    }
}

/// One round's requests to `leader`: the latest offset (the high watermark, for a client) of each of
/// `topics`' partitions, into `learned`.
async fn ask_leader(
    broker: &Broker,
    connector: &Connector,
    connections: &mut HashMap<i32, Client>,
    leader: i32,
    topics: &BTreeMap<String, BTreeSet<i32>>,
    learned: &mut HashMap<TopicPartition, i64>,
) -> anyhow::Result<()> {
    let client = match connections.entry(leader) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            let addr = broker
                .replicas
                .cluster()
                .broker_address(leader)
                .ok_or_else(|| anyhow::anyhow!("broker {leader} has no listener in the metadata"))?;
            let options = ClientOptions {
                client_id: format!("strata-group-lag-{}", broker.node_id()),
                request_timeout: Duration::from_millis(WATERMARK_REQUEST_TIMEOUT_MS),
                connector: connector.clone(),
                ..ClientOptions::default()
            };
            entry.insert(Client::connect_with(&addr, options).await?)
        }
    };
    for (topic, partitions) in topics {
        let partitions: Vec<i32> = partitions.iter().copied().collect();
        // A partition that moved since the metadata was read fails the whole topic's answer: it is asked
        // again next round, from its new leader.
        match client.list_offsets(topic, &partitions, OffsetSpec::Latest).await {
            Ok(listed) => {
                for answer in listed {
                    if let Some(offset) = answer.offset {
                        learned.insert(TopicPartition::new(topic.clone(), answer.partition), offset);
                    }
                }
            }
            Err(e) if client.is_usable() => debug!(leader, topic, error = %e, "high watermarks refused"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
