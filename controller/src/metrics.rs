//! The controller's figures on `/metrics`: whether this node is the active controller, its Raft term and
//! applied index, and what only the active controller knows: how long metadata writes take to commit, how
//! far behind each broker's metadata is, the leader elections it decided, offline partitions and brokers by
//! state.
//!
//! [`ControllerMetrics`] holds what is recorded as it happens (commit latencies, elections, the applied
//! index each broker's heartbeat reports), shared by the quorum service that records it and the
//! [`ControllerFigures`] that render it. The rest is read at scrape time from the Raft metrics and the
//! metadata image, so it costs nothing between scrapes.
//!
//! The image-derived gauges (offline partitions, brokers, metadata lag) are shown by the active controller
//! only, as Kafka's controller gauges are: a standby's image may lag, and one source per cluster lets an
//! alert `sum` them without double counting. Counters and the commit-latency histogram are shown by every
//! controller, as they are, so that a rate over them survives a change of active controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use strata_protocol::metrics::{Counter, Exposition, Histogram, Kind};
use tokio::sync::watch;

use crate::image::{BrokerId, MetadataImage, NO_LEADER, TopicId};
use crate::proto::metadata::MetadataRecord;
use crate::proto::metadata::metadata_record::Record;
use crate::state_machine::Feed;
use crate::types::{NodeId, Raft};

/// What the controller records as it works; see the module documentation.
#[derive(Debug, Default)]
pub struct ControllerMetrics {
    /// Metadata writes on the active controller, from proposal to applied (committed by a majority).
    commit_latency: Histogram,
    clean_elections: Counter,
    unclean_elections: Counter,
    /// The metadata log index each broker last reported having applied, in its heartbeat.
    reported_applied: Mutex<BTreeMap<BrokerId, u64>>,
}

/// How many leader elections a committed batch made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Elections {
    /// The new leader was in the ISR.
    pub clean: u64,
    /// The new leader was not in the ISR: records it lacked are lost.
    pub unclean: u64,
}

impl ControllerMetrics {
    /// A metadata write took `elapsed` from proposal to commit.
    pub fn committed(&self, elapsed: Duration) {
        self.commit_latency.observe(elapsed);
    }

    /// Counts the elections of a batch committed on top of `before`.
    pub fn elected(&self, elections: Elections) {
        self.clean_elections.add(elections.clean);
        self.unclean_elections.add(elections.unclean);
    }

    /// Broker `id`'s heartbeat says it has applied the metadata log up to `applied_index`.
    pub fn broker_applied(&self, id: BrokerId, applied_index: u64) {
        self.reported_applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, applied_index);
    }

    pub fn commit_latency(&self) -> &Histogram {
        &self.commit_latency
    }
}

/// The leader elections among `records` committed on top of `before`: each `PartitionChange` naming a new
/// leader (not "no leader", not the same broker again), clean if that broker was in the ISR the partition
/// had just before the change. Several changes of one partition in a batch (a fencing, then a preferred
/// leader election) are judged in order.
pub fn elections(before: &MetadataImage, records: &[MetadataRecord]) -> Elections {
    let mut counted = Elections::default();
    // (leader, ISR) of partitions changed earlier in this batch.
    let mut changed: HashMap<(TopicId, i32), (BrokerId, Vec<BrokerId>)> = HashMap::new();
    for record in records {
        let Some(Record::PartitionChange(change)) = &record.record else {
            continue;
        };
        let Ok(topic) = TopicId::from_slice(&change.topic_id) else {
            continue;
        };
        let key = (topic, change.partition);
        let Some((leader, isr)) = changed.get(&key).cloned().or_else(|| {
            before
                .partition(&topic, change.partition)
                .map(|p| (p.leader, p.isr.clone()))
        }) else {
            continue;
        };
        let next_isr = change.isr.as_ref().map_or_else(|| isr.clone(), |ids| ids.ids.clone());
        let next_leader = change.leader.unwrap_or(leader);
        if next_leader != NO_LEADER && next_leader != leader {
            match isr.contains(&next_leader) {
                true => counted.clean += 1,
                false => counted.unclean += 1,
            }
        }
        changed.insert(key, (next_leader, next_isr));
    }
    counted
}

/// What renders the controller's figures: a cheap handle, cloned into the HTTP endpoint's render closure.
#[derive(Clone)]
pub struct ControllerFigures {
    id: NodeId,
    raft: Raft,
    feed: watch::Receiver<Feed>,
    metrics: Arc<ControllerMetrics>,
}

impl std::fmt::Debug for ControllerFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerFigures")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ControllerFigures {
    pub fn new(id: NodeId, raft: Raft, feed: watch::Receiver<Feed>, metrics: Arc<ControllerMetrics>) -> Self {
        Self {
            id,
            raft,
            feed,
            metrics,
        }
    }

    /// Writes every controller family onto `page`.
    pub fn render(&self, page: &mut Exposition) {
        let raft = self.raft.metrics().borrow_watched().clone();
        let active = raft.current_leader == Some(self.id);
        let applied = raft.last_applied.map_or(0, |id| id.index);
        page.family(
            "strata_controller_active",
            Kind::Gauge,
            "1 on the active controller (the Raft leader).",
        )
        .sample("strata_controller_active", &[], u8::from(active));
        page.family(
            "strata_controller_term",
            Kind::Gauge,
            "The metadata quorum's Raft term.",
        )
        .sample("strata_controller_term", &[], raft.current_term);
        page.family(
            "strata_metadata_applied_index",
            Kind::Gauge,
            "The metadata log index applied.",
        )
        .sample("strata_metadata_applied_index", &[], applied);
        page.family(
            "strata_controller_commit_latency_seconds",
            Kind::Histogram,
            "Metadata writes on the active controller, from proposal to committed and applied.",
        )
        .histogram(
            "strata_controller_commit_latency_seconds",
            &[],
            &self.metrics.commit_latency,
        );
        page.family(
            "strata_controller_leader_elections_total",
            Kind::Counter,
            "Partition leaders elected by this node as active controller: clean (from the ISR) or unclean.",
        )
        .sample(
            "strata_controller_leader_elections_total",
            &[("kind", "clean")],
            self.metrics.clean_elections.get(),
        )
        .sample(
            "strata_controller_leader_elections_total",
            &[("kind", "unclean")],
            self.metrics.unclean_elections.get(),
        );

        let (image, committed) = {
            let feed = self.feed.borrow();
            (feed.image.clone(), feed.applied_index)
        };
        // Each family is declared on every controller, its samples only on the active one.
        page.family(
            "strata_controller_offline_partitions",
            Kind::Gauge,
            "Partitions without a leader (active controller only).",
        );
        if active {
            let offline: usize = image
                .topics()
                .values()
                .map(|topic| topic.partitions.values().filter(|p| p.leader == NO_LEADER).count())
                .sum();
            page.sample("strata_controller_offline_partitions", &[], offline);
        }
        page.family(
            "strata_controller_brokers",
            Kind::Gauge,
            "Registered brokers by state, active or fenced (active controller only).",
        );
        if active {
            let fenced = image.brokers().values().filter(|b| b.fenced).count();
            let unfenced = image.brokers().len() - fenced;
            page.sample("strata_controller_brokers", &[("state", "active")], unfenced)
                .sample("strata_controller_brokers", &[("state", "fenced")], fenced);
        }
        page.family(
            "strata_controller_metadata_lag",
            Kind::Gauge,
            "Metadata log entries each broker has yet to apply, from its last heartbeat (active controller only).",
        );
        if active {
            let mut reported = self
                .metrics
                .reported_applied
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A broker removed from the metadata is forgotten; a registered one not heard from yet is not
            // shown.
            reported.retain(|id, _| image.broker(*id).is_some());
            for (id, applied) in reported.iter() {
                let broker = id.to_string();
                page.sample(
                    "strata_controller_metadata_lag",
                    &[("broker", &broker)],
                    committed.saturating_sub(*applied),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fence_broker;
    use crate::control::testing::{apply, cluster, partition, with_orders};

    #[test]
    fn fencing_a_leader_elects_a_clean_successor() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 1, 3);
        let leader = partition(&image, 0).leader;
        let fenced = fence_broker(&image, leader, |_| false).unwrap();
        assert_eq!(elections(&image, &fenced.records), Elections { clean: 1, unclean: 0 });
        let after = apply(&image, &fenced);
        assert_ne!(partition(&after, 0).leader, leader);
    }

    #[test]
    fn an_out_of_sync_leader_is_unclean_and_no_leader_is_no_election() {
        let image = with_orders(&cluster(&[(1, None), (2, None)]), 1, 2);
        let p = partition(&image, 0).clone();
        let follower = *p.replicas.iter().find(|id| **id != p.leader).unwrap();
        let topic = image.topics().values().next().unwrap().id;
        let change = |leader: BrokerId, isr: Vec<BrokerId>| MetadataRecord {
            record: Some(Record::PartitionChange(crate::proto::metadata::PartitionChange {
                topic_id: topic.as_bytes().to_vec(),
                partition: 0,
                leader: Some(leader),
                isr: Some(crate::proto::metadata::BrokerIds { ids: isr }),
                replicas: None,
            })),
        };
        // The ISR shrinks to the leader, the leader goes, the follower is elected anyway: unclean.
        let records = vec![
            change(p.leader, vec![p.leader]),
            change(NO_LEADER, vec![p.leader]),
            change(follower, vec![follower]),
        ];
        assert_eq!(elections(&image, &records), Elections { clean: 0, unclean: 1 });
    }
}
