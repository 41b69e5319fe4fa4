//! Acting on the metadata: each new image the broker follows becomes partitions hosted, led, followed, or
//! deleted here.
//!
//! Only what changed between two images is looked at: a topic whose `Arc` is the same in both, with the same
//! settings, is skipped, so a metadata change costs in proportion to what it touched (a change of the
//! dynamic broker configs touches every topic: they are the defaults of all). For each partition of a
//! changed topic this broker is a replica of, the log is hosted with the topic's settings and the replica
//! state is taken from the image (`crate::replica`); a follower gets a fetcher from its leader
//! (`crate::fetcher`); a new leader of a `__consumer_offsets` partition loads the offsets and the consumer-protocol
//! groups it now coordinates, and one that stops leading forgets those groups. Partitions of deleted topics, and those moved off this broker, are deleted.

use std::sync::Arc;

use strata_controller::{ConfigResource, MetadataImage};
use strata_protocol::blocking;
use strata_storage::TopicPartition;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::broker::Broker;
use crate::groups::ConsumerLoad;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::replica::Role;
use crate::share::state::SHARE_STATE_TOPIC;

/// Applies every new image until `shutdown`, telling the metadata view the index of each one applied.
pub fn start(broker: Arc<Broker>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut followed = broker.metadata.subscribe();
        let mut previous = MetadataImage::empty();
        loop {
            let current = followed.borrow_and_update().clone();
            if current.index > 0 {
                // Hosting partitions is file I/O (thousands of files for a large topic): off the async
                // workers.
                let (worker, before, image) = (broker.clone(), previous.clone(), current.image.clone());
                if let Err(e) = blocking::run(move || apply(&worker, &before, &image)).await {
                    error!(error = %e, "acting on the metadata failed");
                }
                previous = current.image;
                broker.metadata.acted_on(current.index);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = followed.changed() => if changed.is_err() { return },
            }
        }
    });
}

fn apply(broker: &Arc<Broker>, previous: &MetadataImage, image: &MetadataImage) {
    let me = broker.node_id();
    // New dynamic broker configs change the defaults of every topic: every hosted log is configured again.
    let defaults_changed = broker.apply_dynamic_configs(previous, image);
    let settings = broker.settings();
    // Deleted topics first: a topic deleted and created again under the same name must not lose its new
    // logs to the old one's deletion.
    for (id, topic) in previous.topics() {
        if image.topic(id).is_some() {
            continue;
        }
        for (&index, partition) in topic.partitions.iter() {
            if partition.replicas.contains(&me) {
                remove(broker, &TopicPartition::new(topic.name.clone(), index));
            }
        }
        info!(topic = %topic.name, "topic deleted; its logs here are deleted");
    }
    for topic in image.topics().values() {
        let resource = ConfigResource::Topic(topic.name.clone());
        let configs_changed = defaults_changed || previous.configs(&resource) != image.configs(&resource);
        let before = previous.topic(&topic.id);
        if !configs_changed && before.is_some_and(|b| Arc::ptr_eq(b, topic)) {
            continue;
        }
        let configs = image.configs(&resource).cloned().unwrap_or_default();
        let log_config = settings.topic_log_config(&configs);
        for (&index, partition) in topic.partitions.iter() {
            let tp = TopicPartition::new(topic.name.clone(), index);
            let was = before.and_then(|b| b.partitions.get(&index));
            if !partition.replicas.contains(&me) {
                if was.is_some_and(|w| w.replicas.contains(&me)) {
                    remove(broker, &tp);
                }
                continue;
            }
            if !configs_changed && was == Some(partition) {
                continue;
            }
            let hosted = match broker.replicas.ensure(&tp, log_config.clone()) {
                Ok(hosted) => hosted,
                Err(e) => {
                    error!(partition = %tp, error = %e, "hosting a partition failed");
                    continue;
                }
            };
            let role_before = hosted.apply_metadata(me, partition);
            let role = hosted.state().role;
            match role {
                Role::Follower(leader) => broker.replicas.follow(tp.clone(), leader, partition.leader_epoch),
                Role::Leader | Role::Offline => broker.replicas.unfollow(&tp),
            }
            if role != role_before {
                info!(partition = %tp, ?role, leader_epoch = partition.leader_epoch, "replica role changed");
            }
            if topic.name == OFFSETS_TOPIC && role == Role::Leader && role_before != Role::Leader {
                broker.offsets.start_loading(index);
                let (broker, hosted) = (broker.clone(), hosted.clone());
                // Reading a partition from its start: off the async workers.
                blocking::spawn(move || {
                    let mut groups = ConsumerLoad::new(broker.groups.clone(), index);
                    if let Err(e) = broker.offsets.load_partition(&hosted, &mut groups) {
                        error!(partition = %hosted.tp, error = %e, "loading committed offsets failed");
                    }
                });
            }
            if topic.name == SHARE_STATE_TOPIC && role == Role::Leader && role_before != Role::Leader {
                broker.shares.state.start_loading(index);
                let (broker, hosted) = (broker.clone(), hosted.clone());
                blocking::spawn(move || {
                    if let Err(e) = broker.shares.state.load_partition(&hosted) {
                        error!(partition = %hosted.tp, error = %e, "loading share-partition states failed");
                    }
                });
            }
            if topic.name == OFFSETS_TOPIC && role != Role::Leader && role_before == Role::Leader {
                // Another broker coordinates these groups now; what this one knew of them is stale.
                broker.groups.unload_consumer(index);
            }
        }
    }
}

fn remove(broker: &Broker, tp: &TopicPartition) {
    broker.replicas.unfollow(tp);
    if let Err(e) = broker.replicas.remove(tp) {
        error!(partition = %tp, error = %e, "deleting a partition's log failed");
    }
}
