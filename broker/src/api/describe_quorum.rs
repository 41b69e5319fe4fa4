//! DescribeQuorum (KIP-595, KIP-836, KIP-853): the controller quorum that keeps the cluster metadata, as the
//! one partition `__cluster_metadata-0` of Kafka's KRaft.
//!
//! A Kafka broker forwards this request to the active controller; a Strata broker asks the controllers itself
//! (`ControllerClient::describe_quorum`, which prefers the leader, the only one that knows every voter's
//! position) and translates the answer. It owns no quorum state.
//!
//! The answer, field by field:
//!
//! - `leader_id`: the Raft leader, -1 when none is known; `leader_epoch`: the Raft term.
//! - `high_watermark`: the committed index of the metadata log; each voter's `log_end_offset`: the last index
//!   known to be replicated to it, -1 when unknown (a controller other than the leader answered). Both are
//!   Raft log indices, inclusive, where Kafka's offsets point one past the last record; lag computed from the
//!   two (`high_watermark - log_end_offset`) means the same either way.
//! - `last_fetch_timestamp`, `last_caught_up_timestamp`: always -1, "unknown" in the protocol. The Raft
//!   library reports which index each voter has matched, not when it last asked for entries or when it was
//!   last caught up, and a time invented here would mislead an operator about a stalled voter.
//! - `observers`: empty. Brokers follow the metadata through the controllers' RPC, not as Raft observers,
//!   and their positions are not reported to the quorum.
//! - v2 `nodes`: each voter with one listener, `CONTROLLER`, at the address it has in the quorum.
//!
//! Errors, as Kafka answers them: a request that does not name exactly `__cluster_metadata` partition 0 gets
//! UNKNOWN_TOPIC_OR_PARTITION on each partition it names; no known leader is NOT_LEADER_OR_FOLLOWER on the
//! partition (what a Kafka controller that does not lead answers); no controller reachable is a top-level
//! REQUEST_TIMED_OUT (what a Kafka broker answers when forwarding to the controller times out).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_controller::client::ClientError;
use strata_controller::proto::controller as pb;

use crate::broker::Broker;

/// The topic Kafka's clients name the metadata log by; it has one partition, 0.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// The listener name each voter's address is given under in v2's `nodes`, Kafka's conventional one.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(broker: &Broker, request: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    if !names_metadata_partition(&request) {
        return unknown_partitions(&request);
    }
    respond(broker.controller.describe_quorum().await, version)
}

/// Kafka's check: exactly one topic, `__cluster_metadata`, with exactly one partition, 0.
fn names_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    match request.topics.as_slice() {
        [topic] => {
            topic.topic_name.0.as_str() == METADATA_TOPIC
                && matches!(topic.partitions.as_slice(), [partition] if partition.partition_index == 0)
        }
        _ => false,
    }
}

/// UNKNOWN_TOPIC_OR_PARTITION on every partition the request names, as Kafka answers.
fn unknown_partitions(request: &DescribeQuorumRequest) -> DescribeQuorumResponse {
    let code = ResponseError::UnknownTopicOrPartition.code();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_error_message(None)
                                .with_leader_id(BrokerId(-1))
                                .with_leader_epoch(-1)
                                .with_high_watermark(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(topics)
}

/// The response for what the controllers answered (or did not).
fn respond(reply: Result<pb::DescribeQuorumReply, ClientError>, version: i16) -> DescribeQuorumResponse {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(ResponseError::RequestTimedOut.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string())));
        }
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_message(None)
        .with_leader_epoch(i32::try_from(reply.term).unwrap_or(i32::MAX));
    let partition = match reply.leader_id {
        None => partition
            .with_error_code(ResponseError::NotLeaderOrFollower.code())
            .with_leader_id(BrokerId(-1))
            .with_high_watermark(-1),
        Some(leader) => partition
            .with_leader_id(BrokerId(node_id(leader)))
            .with_high_watermark(i64::try_from(reply.committed_index).unwrap_or(i64::MAX))
            .with_current_voters(
                reply
                    .voters
                    .iter()
                    .map(|v| {
                        // -1 (unknown) for both timestamps is ReplicaState's default; see the module doc.
                        ReplicaState::default()
                            .with_replica_id(BrokerId(node_id(v.id)))
                            .with_log_end_offset(v.log_end_index.max(-1))
                    })
                    .collect(),
            ),
    };
    let nodes = if version >= 2 && reply.leader_id.is_some() {
        reply
            .voters
            .iter()
            .map(|v| {
                let listeners = split_address(&v.address)
                    .map(|(host, port)| {
                        Listener::default()
                            .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
                            .with_host(StrBytes::from_string(host.to_owned()))
                            .with_port(port)
                    })
                    .into_iter()
                    .collect();
                Node::default()
                    .with_node_id(BrokerId(node_id(v.id)))
                    .with_listeners(listeners)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![partition]),
        ])
        .with_nodes(nodes)
}

/// A controller's node id as Kafka's `int32`. Node ids come from `--node-id`, an `i32`, so the fallback (-1,
/// "none") is only reached by a quorum that this build did not configure.
fn node_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// `HOST:PORT` or `[V6]:PORT` as host and port; `None` for anything else (the voter is then listed without a
/// listener rather than with a made-up one).
fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::describe_quorum_request;

    use super::*;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| describe_quorum_request::PartitionData::default().with_partition_index(p))
                        .collect(),
                ),
        ])
    }

    fn reply(leader_id: Option<u64>) -> pb::DescribeQuorumReply {
        pb::DescribeQuorumReply {
            leader_id,
            term: 3,
            committed_index: 42,
            voters: vec![
                pb::VoterState {
                    id: 1,
                    address: "10.0.0.1:9093".into(),
                    log_end_index: 43,
                },
                pb::VoterState {
                    id: 2,
                    address: "[::1]:9093".into(),
                    log_end_index: -1,
                },
            ],
        }
    }

    #[test]
    fn only_the_metadata_partition_is_described() {
        assert!(names_metadata_partition(&request(METADATA_TOPIC, &[0])));
        for (topic, partitions) in [
            ("orders", &[0][..]),
            (METADATA_TOPIC, &[1]),
            (METADATA_TOPIC, &[0, 0]),
            (METADATA_TOPIC, &[]),
        ] {
            let asked = request(topic, partitions);
            assert!(!names_metadata_partition(&asked), "{topic} {partitions:?}");
            let answer = unknown_partitions(&asked);
            assert_eq!(answer.error_code, 0, "the error is per partition, as Kafka answers");
            assert_eq!(answer.topics[0].topic_name.0.as_str(), topic);
            let codes: Vec<i16> = answer.topics[0].partitions.iter().map(|p| p.error_code).collect();
            assert_eq!(
                codes,
                vec![ResponseError::UnknownTopicOrPartition.code(); partitions.len()]
            );
        }
        assert!(!names_metadata_partition(&DescribeQuorumRequest::default()));
    }

    #[test]
    fn the_leaders_view_becomes_the_partition_and_v2_nodes() {
        let answer = respond(Ok(reply(Some(1))), 2);
        assert_eq!(answer.error_code, 0);
        let partition = &answer.topics[0].partitions[0];
        assert_eq!(answer.topics[0].topic_name.0.as_str(), METADATA_TOPIC);
        assert_eq!(
            (
                partition.error_code,
                partition.leader_id.0,
                partition.leader_epoch,
                partition.high_watermark
            ),
            (0, 1, 3, 42)
        );
        let voters: Vec<(i32, i64, i64)> = partition
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset, v.last_fetch_timestamp))
            .collect();
        assert_eq!(voters, [(1, 43, -1), (2, -1, -1)]);
        assert!(partition.observers.is_empty());
        let nodes: Vec<(i32, &str, &str, u16)> = answer
            .nodes
            .iter()
            .flat_map(|n| {
                n.listeners
                    .iter()
                    .map(move |l| (n.node_id.0, l.name.as_str(), l.host.as_str(), l.port))
            })
            .collect();
        assert_eq!(
            nodes,
            [(1, "CONTROLLER", "10.0.0.1", 9093), (2, "CONTROLLER", "::1", 9093)]
        );

        // Before v2 there are no nodes to give (the field would not encode).
        assert!(respond(Ok(reply(Some(1))), 1).nodes.is_empty());
    }

    #[test]
    fn no_leader_and_no_controller_are_errors() {
        let leaderless = respond(Ok(reply(None)), 2);
        let partition = &leaderless.topics[0].partitions[0];
        assert_eq!(partition.error_code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!((partition.leader_id.0, partition.leader_epoch), (-1, 3));
        assert!(partition.current_voters.is_empty() && leaderless.nodes.is_empty());

        let unreachable = respond(Err(ClientError::Timeout(Duration::from_secs(5), "down".into())), 2);
        assert_eq!(unreachable.error_code, ResponseError::RequestTimedOut.code());
        assert!(unreachable.topics.is_empty());
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("c1.example.com:9093"), Some(("c1.example.com", 9093)));
        assert_eq!(split_address("[fe80::1]:9093"), Some(("fe80::1", 9093)));
        for bad in ["c1", "c1:port", ":9093", "c1:70000"] {
            assert_eq!(split_address(bad), None, "{bad}");
        }
    }
}
