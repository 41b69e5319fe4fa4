//! The controller's service to brokers (`proto/controller_service.proto`): registration, heartbeats,
//! metadata changes, the metadata log as a stream, and a description of the quorum.
//!
//! Every controller serves it. Requests that write run on the **active controller**, the Raft leader; the
//! others answer NOT_CONTROLLER naming the leader they know, and the broker's client
//! ([`crate::client::ControllerClient`]) retries there. On the active controller each write is: confirm
//! leadership and wait until every committed entry is applied (a read index), then, under one lock, compute
//! records from the image with the control logic, propose them, and wait until they are applied. So each
//! computation sees the previous one's result, as the control logic requires.
//!
//! Broker liveness ([`BrokerLiveness`]) is kept here, in memory, by the active controller: a controller that
//! becomes active (a new term) starts every broker's session afresh. A timer fences brokers whose sessions
//! ended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::control::liveness::{
    BROKER_SESSION_TIMEOUT_MS, BrokerLiveness, Heartbeat, HeartbeatDecision, fence_expired, unfence_caught_up,
};
use crate::control::registration::register_broker;
use crate::control::{self, AlterPartition, ControllerResult, unclean_leader_election_enabled};
use crate::image::{ConfigResource, MetadataImage, Topic, TopicId};
use crate::metrics::{self, ControllerMetrics};
use crate::network::RPC_MESSAGE_BYTES_MAX;
use crate::proto::controller as pb;
use crate::proto::controller::controller_service_server::{ControllerService, ControllerServiceServer};
use crate::proto::controller::write_request::Command;
use crate::proto::metadata::{ConfigResourceType, MetadataBatch, MetadataRecord};
use crate::state_machine::Feed;
use crate::types::{NodeId, Raft};

/// Kafka's NOT_CONTROLLER: this controller is not the active one.
pub const NOT_CONTROLLER: i32 = 41;
/// Kafka's UNKNOWN_SERVER_ERROR.
const UNKNOWN_SERVER_ERROR: i32 = -1;
/// Kafka's INVALID_REQUEST.
const INVALID_REQUEST: i32 = 42;

/// Settings of the active controller's duties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumSettings {
    /// Kafka's `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// Kafka's `auto.leader.rebalance.enable`: leadership moves back to preferred replicas when a broker
    /// returns.
    pub auto_leader_rebalance: bool,
}

impl Default for QuorumSettings {
    fn default() -> Self {
        Self {
            session_timeout_ms: BROKER_SESSION_TIMEOUT_MS,
            auto_leader_rebalance: true,
        }
    }
}

/// What only the active controller keeps, valid for one term.
#[derive(Debug)]
struct Active {
    /// The term this state belongs to; another term starts afresh.
    term: u64,
    liveness: BrokerLiveness,
    /// The index each broker's registration was applied at, for registrations this controller made: a
    /// fenced broker that has applied it is caught up.
    registered_at: HashMap<i32, u64>,
    /// For brokers registered under an earlier controller: the applied index when this one became active,
    /// which is past their registrations.
    caught_up_floor: u64,
}

/// The state behind the service, shared with the liveness timer.
#[derive(Debug)]
pub struct Quorum {
    id: NodeId,
    raft: Raft,
    feed: watch::Receiver<Feed>,
    settings: QuorumSettings,
    active: Mutex<Option<Active>>,
    /// What `/metrics` shows of this controller's work (see [`crate::metrics`]).
    metrics: Arc<ControllerMetrics>,
    /// Sessions are timed on tokio's clock, which a simulation (turmoil) drives: a broker's session then
    /// ends in simulated time, as it would in real time.
    clock: Instant,
}

/// An answer that ends a request early (not the active controller, or a refusal).
type Early = pb::Reply;

fn reply_error(error_code: impl Into<i32>, message: impl ToString) -> pb::Reply {
    pb::Reply {
        error_code: error_code.into(),
        message: message.to_string(),
        ..Default::default()
    }
}

fn not_controller(leader_id: Option<NodeId>) -> pb::Reply {
    pb::Reply {
        error_code: NOT_CONTROLLER,
        message: "not the active controller".into(),
        leader_id,
        ..Default::default()
    }
}

impl Quorum {
    pub fn new(
        id: NodeId,
        raft: Raft,
        feed: watch::Receiver<Feed>,
        settings: QuorumSettings,
        metrics: Arc<ControllerMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            raft,
            feed,
            settings,
            active: Mutex::new(None),
            metrics,
            clock: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn image(&self) -> MetadataImage {
        self.feed.borrow().image.clone()
    }

    fn applied_index(&self) -> u64 {
        self.feed.borrow().applied_index
    }

    /// Confirms this controller is active with everything committed applied, and takes the write lock.
    async fn activate(&self) -> Result<MutexGuard<'_, Option<Active>>, Early> {
        if let Err(e) = self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            let leader = e.forward_to_leader().and_then(|f| f.leader_id);
            return Err(not_controller(leader.filter(|&l| l != self.id)));
        }
        let term = self.raft.metrics().borrow_watched().current_term;
        let mut active = self.active.lock().await;
        if active.as_ref().is_none_or(|a| a.term != term) {
            let image = self.image();
            tracing::info!(
                id = self.id,
                term,
                brokers = image.brokers().len(),
                "this controller is active"
            );
            *active = Some(Active {
                term,
                liveness: BrokerLiveness::from_image(&image, self.now_ms(), self.settings.session_timeout_ms),
                registered_at: HashMap::new(),
                caught_up_floor: self.applied_index(),
            });
        }
        Ok(active)
    }

    /// Commits `records` as one batch and answers the index it was applied at (the current applied index
    /// when there is nothing to write). Called with the write lock held ([`Self::activate`]), so the image
    /// now is the one the records were computed from: the leader elections among them are judged and
    /// counted against it once they are committed.
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, Early> {
        if records.is_empty() {
            return Ok(self.applied_index());
        }
        let elections = metrics::elections(&self.image(), &records);
        let proposed = std::time::Instant::now();
        match self.raft.client_write(MetadataBatch { records }).await {
            Ok(response) => match response.data.outcome {
                Ok(()) => {
                    self.metrics.committed(proposed.elapsed());
                    self.metrics.elected(elections);
                    Ok(response.log_id.index)
                }
                Err(e) => Err(reply_error(
                    UNKNOWN_SERVER_ERROR,
                    format!("metadata change refused: {e}"),
                )),
            },
            Err(e) => match e.forward_to_leader() {
                Some(forward) => Err(not_controller(forward.leader_id.filter(|&l| l != self.id))),
                None => Err(reply_error(UNKNOWN_SERVER_ERROR, format!("metadata quorum: {e}"))),
            },
        }
    }

    fn unclean(image: &MetadataImage) -> impl Fn(&Topic) -> bool + '_ {
        |topic| unclean_leader_election_enabled(image, &topic.name)
    }

    async fn register(&self, request: pb::RegisterBrokerRequest) -> Result<pb::Reply, Early> {
        let mut guard = self.activate().await?;
        let image = self.image();
        let result = register_broker(
            &image,
            request.broker_id,
            request.incarnation,
            request.listeners,
            request.rack,
            Self::unclean(&image),
        )
        .map_err(|e| reply_error(e.kafka_error_code(), &e))?;
        let index = self.propose(result.records).await?;
        let active = guard.as_mut().expect("activated");
        active
            .liveness
            .registered(request.broker_id, request.incarnation, self.now_ms());
        active.registered_at.insert(request.broker_id, index);
        tracing::info!(
            broker = request.broker_id,
            incarnation = request.incarnation,
            index,
            "broker registered"
        );
        Ok(pb::Reply {
            metadata_index: index,
            fenced: true,
            ..Default::default()
        })
    }

    async fn heartbeat(&self, request: pb::BrokerHeartbeatRequest) -> Result<pb::Reply, Early> {
        let mut guard = self.activate().await?;
        let active = guard.as_mut().expect("activated");
        let image = self.image();
        let heartbeat = Heartbeat {
            broker_id: request.broker_id,
            incarnation: request.incarnation,
            applied_offset: request.applied_index,
        };
        let caught_up = active
            .registered_at
            .get(&request.broker_id)
            .copied()
            .unwrap_or(active.caught_up_floor);
        let decision = active
            .liveness
            .heartbeat(&image, heartbeat, self.now_ms(), caught_up)
            .map_err(|e| reply_error(e.kafka_error_code(), &e))?;
        // Only an accepted heartbeat (the broker's current incarnation) says how far its metadata is.
        self.metrics.broker_applied(request.broker_id, request.applied_index);
        let records = if request.shutting_down {
            tracing::info!(broker = request.broker_id, "broker shutting down: fencing it");
            control::fence_broker(&image, request.broker_id, Self::unclean(&image))
                .map_err(|e| reply_error(e.kafka_error_code(), &e))?
                .records
        } else if decision == HeartbeatDecision::Unfence {
            tracing::info!(broker = request.broker_id, "broker caught up: unfencing it");
            unfence_caught_up(
                &image,
                request.broker_id,
                Self::unclean(&image),
                self.settings.auto_leader_rebalance,
            )
            .map_err(|e| reply_error(e.kafka_error_code(), &e))?
            .records
        } else {
            Vec::new()
        };
        let index = self.propose(records).await?;
        let fenced = self
            .image()
            .broker(request.broker_id)
            .is_none_or(|broker| broker.fenced);
        Ok(pb::Reply {
            metadata_index: index,
            fenced,
            ..Default::default()
        })
    }

    async fn write(&self, request: pb::WriteRequest) -> Result<pb::Reply, Early> {
        let _guard = self.activate().await?;
        let image = self.image();
        let command = request
            .command
            .ok_or_else(|| reply_error(INVALID_REQUEST, "a write names a command"))?;
        let grows_isr = matches!(command, Command::AlterPartition(_));
        let mut records = compute(&image, command)?.records;
        if request.validate_only {
            return Ok(pb::Reply::default());
        }
        if grows_isr && self.settings.auto_leader_rebalance && !records.is_empty() {
            // A preferred replica back in the ISR leads again at once (Kafka checks periodically).
            let batch = MetadataBatch {
                records: records.clone(),
            };
            if let Ok(next) = image.replay_batch(&batch) {
                records.extend(control::preferred_leader_elections(&next).records);
            }
        }
        let index = self.propose(records).await?;
        Ok(pb::Reply {
            metadata_index: index,
            ..Default::default()
        })
    }

    /// On the active controller: fences the brokers whose sessions ended. Elsewhere: nothing.
    async fn check_sessions(&self) -> Result<(), Early> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.id) {
            return Ok(());
        }
        let guard = self.activate().await?;
        let active = guard.as_ref().expect("activated");
        let image = self.image();
        let result = fence_expired(&image, &active.liveness, self.now_ms(), Self::unclean(&image));
        if !result.response.is_empty() {
            tracing::warn!(brokers = ?result.response, "brokers missed their sessions: fencing them");
            self.propose(result.records).await?;
        }
        Ok(())
    }

    /// Runs [`Self::check_sessions`] every `interval` until the quorum is dropped.
    pub fn spawn_session_checks(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let quorum = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(quorum) = quorum.upgrade() else { return };
                if let Err(reply) = quorum.check_sessions().await
                    && reply.error_code != NOT_CONTROLLER
                {
                    tracing::warn!(error = %reply.message, "checking broker sessions failed");
                }
            }
        })
    }

    fn describe(&self) -> pb::DescribeQuorumReply {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let replication = metrics.replication.clone().unwrap_or_default();
        let voters = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(&id, node)| {
                let matched = if id == self.id {
                    metrics.last_log_index
                } else {
                    replication.get(&id).and_then(|m| m.as_ref()).map(|log_id| log_id.index)
                };
                pb::VoterState {
                    id,
                    address: node.addr.clone(),
                    log_end_index: matched.map_or(-1, |index| index as i64),
                }
            })
            .collect();
        pb::DescribeQuorumReply {
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            committed_index: metrics.cluster_committed.map_or(0, |c| c.index),
            voters,
        }
    }
}

/// The control logic's records for one write command.
fn compute(image: &MetadataImage, command: Command) -> Result<ControllerResult<()>, Early> {
    let refused = |code: i16, e: &dyn std::fmt::Display| reply_error(code, e);
    Ok(match command {
        Command::CreateTopic(c) => {
            let configs: BTreeMap<String, String> = c.configs.into_iter().collect();
            let result = if c.assignments.is_empty() {
                control::create_topic(
                    image,
                    &c.name,
                    Uuid::new_v4(),
                    c.partitions,
                    c.replication_factor,
                    &configs,
                )
            } else {
                let assignment = c.assignments.into_iter().map(|ids| ids.ids).collect();
                control::create_topic_assigned(image, &c.name, Uuid::new_v4(), assignment, &configs)
            }
            .map_err(|e| refused(e.kafka_error_code(), &e))?;
            ControllerResult::new(result.records, ())
        }
        Command::DeleteTopic(d) => {
            let result = control::delete_topic(image, &d.name).map_err(|e| refused(e.kafka_error_code(), &e))?;
            ControllerResult::new(result.records, ())
        }
        Command::CreatePartitions(c) => if c.assignments.is_empty() {
            control::create_partitions(image, &c.name, c.count)
        } else {
            let assignment = c.assignments.into_iter().map(|ids| ids.ids).collect();
            control::create_partitions_assigned(image, &c.name, assignment)
        }
        .map_err(|e| refused(e.kafka_error_code(), &e))?,
        Command::SetConfigs(s) => {
            let resource = match ConfigResourceType::try_from(s.resource_type) {
                Ok(ConfigResourceType::Topic) => ConfigResource::Topic(s.resource_name),
                Ok(ConfigResourceType::Broker) => ConfigResource::Broker(s.resource_name),
                Ok(ConfigResourceType::Group) => ConfigResource::Group(s.resource_name),
                _ => return Err(reply_error(INVALID_REQUEST, "unknown config resource type")),
            };
            let set: BTreeMap<String, String> = s.set.into_iter().collect();
            control::set_configs(image, &resource, &set, &s.remove).map_err(|e| refused(e.kafka_error_code(), &e))?
        }
        Command::AlterPartition(a) => {
            let topic_id =
                TopicId::from_slice(&a.topic_id).map_err(|_| reply_error(INVALID_REQUEST, "a topic id is 16 bytes"))?;
            let request = AlterPartition {
                broker_id: a.broker_id,
                incarnation: a.incarnation,
                topic_id,
                partition: a.partition,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                isr: a.isr,
            };
            let result = control::alter_partition(image, &request).map_err(|e| refused(e.kafka_error_code(), &e))?;
            ControllerResult::new(result.records, ())
        }
    })
}

/// The tonic face of a [`Quorum`].
#[derive(Debug, Clone)]
pub struct QuorumGrpc {
    quorum: Arc<Quorum>,
}

impl QuorumGrpc {
    pub fn new(quorum: Arc<Quorum>) -> Self {
        Self { quorum }
    }

    pub fn into_service(self) -> ControllerServiceServer<Self> {
        ControllerServiceServer::new(self)
            .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
    }
}

fn answer(result: Result<pb::Reply, Early>) -> Result<Response<pb::Reply>, Status> {
    Ok(Response::new(result.unwrap_or_else(|early| early)))
}

/// The updates that bring a follower at `after` to `feed`: the batches it lacks, or the whole image.
fn updates(feed: &Feed, after: u64) -> VecDeque<pb::MetadataUpdate> {
    let mut updates = VecDeque::new();
    match feed.batches_after(after) {
        Some(batches) => {
            for (index, batch) in batches {
                updates.push_back(pb::MetadataUpdate {
                    index: *index,
                    snapshot: false,
                    batch: Some(MetadataBatch::clone(batch)),
                });
            }
            if updates.back().is_none_or(|u| u.index < feed.applied_index) {
                updates.push_back(pb::MetadataUpdate {
                    index: feed.applied_index,
                    snapshot: false,
                    batch: None,
                });
            }
        }
        None => updates.push_back(pb::MetadataUpdate {
            index: feed.applied_index,
            snapshot: true,
            batch: Some(MetadataBatch {
                records: feed.image.to_records(),
            }),
        }),
    }
    updates
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::MetadataUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl ControllerService for QuorumGrpc {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        answer(self.quorum.register(request.into_inner()).await)
    }

    async fn broker_heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        answer(self.quorum.heartbeat(request.into_inner()).await)
    }

    async fn write(&self, request: Request<pb::WriteRequest>) -> Result<Response<pb::Reply>, Status> {
        answer(self.quorum.write(request.into_inner()).await)
    }

    type FetchMetadataStream = UpdateStream;

    async fn fetch_metadata(
        &self,
        request: Request<pb::FetchMetadataRequest>,
    ) -> Result<Response<Self::FetchMetadataStream>, Status> {
        let after = request.into_inner().after_index;
        let feed = self.quorum.feed.clone();
        let stream = futures_util::stream::unfold(
            (feed, after, VecDeque::new()),
            |(mut feed, mut sent, mut pending)| async move {
                loop {
                    if let Some(update) = pending.pop_front() {
                        return Some((Ok(update), (feed, sent, pending)));
                    }
                    let current = feed.borrow_and_update().clone();
                    // A follower ahead of this controller (which is behind the quorum) waits for it.
                    if current.applied_index > sent {
                        pending = updates(&current, sent);
                        if pending.front().is_some_and(|u| u.snapshot) {
                            tracing::info!(
                                after = sent,
                                index = current.applied_index,
                                "a metadata follower is behind the kept batches: sending it the image"
                            );
                        }
                        sent = current.applied_index;
                        continue;
                    }
                    if feed.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn describe_quorum(
        &self,
        _request: Request<pb::DescribeQuorumRequest>,
    ) -> Result<Response<pb::DescribeQuorumReply>, Status> {
        Ok(Response::new(self.quorum.describe()))
    }
}
