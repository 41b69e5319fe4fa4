//! Every API this broker advertises answers at every version it advertises: a request of each supported
//! (API, version) pair, sent over a raw connection, gets a response that decodes at that version. This is
//! the test that catches a handler setting a field the client's version does not have (the response then
//! fails to encode and the connection closes), and an advertised API that is not dispatched.
//!
//! The requests are built so the answers carry real values: a topic with records, a group with committed
//! offsets, groups with a joined member, time lookups that find a record.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Buf, Bytes, BytesMut};
use common::Server;
use common::raw::connect;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use strata_broker::api::SUPPORTED;
use uuid::Uuid;

const TOPIC: &str = "versions";
/// The group that has committed offsets.
const GROUP: &str = "versions-group";
/// The share group, and its one member.
const SHARE_GROUP: &str = "versions-share";
const SHARE_MEMBER: &str = "versions-share-member";
/// A share group without members, whose offsets are altered and deleted.
const EMPTY_SHARE_GROUP: &str = "versions-share-empty";
/// The timestamp of every record produced here.
const TIMESTAMP: i64 = 1_780_000_000_000;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn topic_name() -> TopicName {
    TopicName(s(TOPIC))
}

fn batch() -> Bytes {
    common::raw::batch(Compression::None, &["value"], &[0], TIMESTAMP).freeze()
}

/// One connection, sending requests and reading responses; reconnects when the server closed it, so one
/// failure does not hide the next.
struct Connection<'a> {
    server: &'a Server,
    stream: TcpStream,
    correlation_id: i32,
    /// The id of `TOPIC`, for Produce v13 and Fetch v13 on, which name topics by id.
    topic_id: Uuid,
}

impl<'a> Connection<'a> {
    fn new(server: &'a Server) -> Self {
        Connection {
            server,
            stream: connect(server),
            correlation_id: 0,
            topic_id: Uuid::nil(),
        }
    }

    /// Sends `request` at `version`; the decoded response, or why there is none.
    fn exchange(&mut self, request: &RequestKind, version: i16) -> Result<ResponseKind, String> {
        let key = api_key(request);
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(s("strata-versions-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        request
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("the test's {key:?} v{version} request does not encode: {e}"));
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).unwrap();

        let answer = self.read(key, version);
        if answer.is_err() {
            self.stream = connect(self.server);
        }
        answer
    }

    fn read(&mut self, key: ApiKey, version: i16) -> Result<ResponseKind, String> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| format!("no response (the server closed the connection: {e})"))?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| format!("the response header does not decode: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!(
                "correlation id {} answered {}",
                self.correlation_id, header.correlation_id
            ));
        }
        let response =
            ResponseKind::decode(key, &mut body, version).map_err(|e| format!("the response does not decode: {e}"))?;
        if body.has_remaining() {
            return Err(format!("{} bytes trail the response", body.remaining()));
        }
        Ok(response)
    }
}

fn api_key(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DeleteRecords(_) => ApiKey::DeleteRecords,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::DescribeCluster(_) => ApiKey::DescribeCluster,
        RequestKind::DescribeQuorum(_) => ApiKey::DescribeQuorum,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::DeleteGroups(_) => ApiKey::DeleteGroups,
        RequestKind::OffsetDelete(_) => ApiKey::OffsetDelete,
        RequestKind::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
        RequestKind::ShareGroupHeartbeat(_) => ApiKey::ShareGroupHeartbeat,
        RequestKind::ShareGroupDescribe(_) => ApiKey::ShareGroupDescribe,
        RequestKind::ShareFetch(_) => ApiKey::ShareFetch,
        RequestKind::ShareAcknowledge(_) => ApiKey::ShareAcknowledge,
        RequestKind::ReadShareGroupState(_) => ApiKey::ReadShareGroupState,
        RequestKind::WriteShareGroupState(_) => ApiKey::WriteShareGroupState,
        RequestKind::DescribeShareGroupOffsets(_) => ApiKey::DescribeShareGroupOffsets,
        RequestKind::AlterShareGroupOffsets(_) => ApiKey::AlterShareGroupOffsets,
        RequestKind::DeleteShareGroupOffsets(_) => ApiKey::DeleteShareGroupOffsets,
        RequestKind::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        RequestKind::ConsumerGroupDescribe(_) => ApiKey::ConsumerGroupDescribe,
        other => panic!("no test request for {other:?}"),
    }
}

/// A member that joined `group` alone and leads it: (member id, generation). Joined at JoinGroup v5, which
/// asks for a member id first (KIP-394).
fn join(connection: &mut Connection<'_>, group: &str) -> (StrBytes, i32) {
    let mut member_id = s("");
    loop {
        let request = RequestKind::JoinGroup(join_request(group, member_id.clone(), 5));
        let Ok(ResponseKind::JoinGroup(response)) = connection.exchange(&request, 5) else {
            panic!("joining {group} failed")
        };
        match response.error_code {
            0 => return (response.member_id, response.generation_id),
            79 => member_id = response.member_id, // MEMBER_ID_REQUIRED
            code => panic!("joining {group}: error {code}"),
        }
    }
}

fn join_request(group: &str, member_id: StrBytes, version: i16) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x08versions\0\0\0\0"));
    let mut request = JoinGroupRequest::default()
        .with_group_id(s(group).into())
        .with_session_timeout_ms(30_000)
        .with_member_id(member_id)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    if version >= 1 {
        request = request.with_rebalance_timeout_ms(30_000);
    }
    request
}

/// A KIP-848 join of `group` by member `member_id`, subscribed to `TOPIC`.
fn consumer_join(group: &str, member_id: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(s(group).into())
        .with_member_id(s(member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![topic_name()]))
        .with_topic_partitions(Some(vec![]))
}

/// A request of `key` at `version` with values the broker has something to say about.
fn request(connection: &mut Connection<'_>, key: ApiKey, version: i16) -> RequestKind {
    let v = version;
    match key {
        ApiKey::Produce => {
            use produce_request::{PartitionProduceData, TopicProduceData};
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(5_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(topic_name())
                            .with_topic_id(if v >= 13 { connection.topic_id } else { Uuid::nil() })
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(0)
                                    .with_records(Some(batch())),
                            ]),
                    ]),
            )
        }
        ApiKey::Fetch => {
            use fetch_request::{FetchPartition, FetchTopic};
            let mut partition = FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            if v >= 5 {
                partition = partition.with_log_start_offset(0);
            }
            if v >= 9 {
                partition = partition.with_current_leader_epoch(0);
            }
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(0)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![
                        FetchTopic::default()
                            .with_topic(topic_name())
                            .with_topic_id(if v >= 13 { connection.topic_id } else { Uuid::nil() })
                            .with_partitions(vec![partition]),
                    ]),
            )
        }
        ApiKey::ListOffsets => {
            use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
            // By time (a record has it), the latest, the earliest, and (v7) the largest timestamp.
            let mut times = vec![TIMESTAMP, -1, -2];
            if v >= 7 {
                times.push(-3);
            }
            let partitions = times
                .into_iter()
                .map(|t| {
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(t)
                })
                .collect();
            RequestKind::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(vec![
                        ListOffsetsTopic::default()
                            .with_name(topic_name())
                            .with_partitions(partitions),
                    ]),
            )
        }
        ApiKey::Metadata => {
            let topic = metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name()));
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![topic])))
        }
        ApiKey::ApiVersions => {
            let mut request = ApiVersionsRequest::default();
            if v >= 3 {
                request = request
                    .with_client_software_name(s("strata-versions-test"))
                    .with_client_software_version(s("1.0"));
            }
            RequestKind::ApiVersions(request)
        }
        ApiKey::CreateTopics => {
            let topic = create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(&format!("created-{v}"))))
                .with_num_partitions(1)
                .with_replication_factor(1);
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(5_000),
            )
        }
        ApiKey::DeleteTopics => {
            let name = TopicName(s(&format!("created-{v}")));
            let request = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default().with_name(Some(name)),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name])
            };
            RequestKind::DeleteTopics(request.with_timeout_ms(5_000))
        }
        ApiKey::DeleteRecords => {
            use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(topic_name())
                        .with_partitions(vec![
                            DeleteRecordsPartition::default().with_partition_index(0).with_offset(0),
                        ]),
                ]))
        }
        ApiKey::DescribeConfigs => {
            let topic = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(TOPIC));
            let broker = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1"));
            let mut request = DescribeConfigsRequest::default()
                .with_resources(vec![topic, broker])
                .with_include_synonyms(true);
            if v >= 3 {
                request = request.with_include_documentation(true);
            }
            RequestKind::DescribeConfigs(request)
        }
        ApiKey::AlterConfigs => {
            use alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let config = AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("604800000")));
            RequestKind::AlterConfigs(
                AlterConfigsRequest::default()
                    .with_validate_only(true)
                    .with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s(TOPIC))
                            .with_configs(vec![config]),
                    ]),
            )
        }
        ApiKey::CreatePartitions => {
            let topic = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic_name())
                .with_count(2);
            RequestKind::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(5_000)
                    .with_validate_only(true),
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let config = AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("604800000")));
            RequestKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default()
                    .with_validate_only(true)
                    .with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s(TOPIC))
                            .with_configs(vec![config]),
                    ]),
            )
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeQuorum => {
            use describe_quorum_request::{PartitionData, TopicData};
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                TopicData::default()
                    .with_topic_name(TopicName(s("__cluster_metadata")))
                    .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
            ]))
        }
        ApiKey::InitProducerId => {
            RequestKind::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(60_000))
        }
        ApiKey::FindCoordinator => {
            let request = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s(GROUP)])
            } else {
                FindCoordinatorRequest::default().with_key(s(GROUP))
            };
            RequestKind::FindCoordinator(request)
        }
        ApiKey::JoinGroup => {
            // A fresh group per version, joined in full: from v4 the first answer asks for a member id.
            let group = format!("joined-{v}");
            let first = join_request(&group, s(""), v);
            if v >= 4 {
                let Ok(ResponseKind::JoinGroup(asked)) = connection.exchange(&RequestKind::JoinGroup(first), v) else {
                    panic!("JoinGroup v{v} got no first answer")
                };
                RequestKind::JoinGroup(join_request(&group, asked.member_id, v))
            } else {
                RequestKind::JoinGroup(first)
            }
        }
        ApiKey::SyncGroup => {
            let group = format!("synced-{v}");
            let (member_id, generation) = join(connection, &group);
            let assignment = sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member_id.clone())
                .with_assignment(Bytes::from_static(
                    b"\0\x01\0\0\0\x01\0\x08versions\0\0\0\x01\0\0\0\0\0\0\0\0",
                ));
            let mut request = SyncGroupRequest::default()
                .with_group_id(s(&group).into())
                .with_generation_id(generation)
                .with_member_id(member_id)
                .with_assignments(vec![assignment]);
            if v >= 5 {
                request = request
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            RequestKind::SyncGroup(request)
        }
        ApiKey::Heartbeat => {
            let group = format!("beating-{v}");
            let (member_id, generation) = join(connection, &group);
            RequestKind::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(s(&group).into())
                    .with_generation_id(generation)
                    .with_member_id(member_id),
            )
        }
        ApiKey::LeaveGroup => {
            let group = format!("leaving-{v}");
            let (member_id, _) = join(connection, &group);
            let request = if v >= 3 {
                LeaveGroupRequest::default().with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(member_id),
                ])
            } else {
                LeaveGroupRequest::default().with_member_id(member_id)
            };
            RequestKind::LeaveGroup(request.with_group_id(s(&group).into()))
        }
        ApiKey::OffsetCommit => {
            use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
            let mut partition = OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_metadata(Some(s("metadata")));
            if v >= 6 {
                partition = partition.with_committed_leader_epoch(0);
            }
            RequestKind::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(s(GROUP).into())
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name())
                            .with_partitions(vec![partition]),
                    ]),
            )
        }
        ApiKey::OffsetFetch => {
            let request = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(s(GROUP).into())
                        .with_topics(None),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(s(GROUP).into())
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name())
                            .with_partition_indexes(vec![0]),
                    ]))
            };
            RequestKind::OffsetFetch(request)
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => {
            let mut request = DescribeGroupsRequest::default().with_groups(vec![s("joined-5").into(), s(GROUP).into()]);
            if v >= 3 {
                request = request.with_include_authorized_operations(true);
            }
            RequestKind::DescribeGroups(request)
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![s(&format!("leaving-{v}")).into()]),
        ),
        ApiKey::OffsetDelete => {
            use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
            RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(s(GROUP).into())
                    .with_topics(vec![
                        OffsetDeleteRequestTopic::default()
                            .with_name(topic_name())
                            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
                    ]),
            )
        }
        ApiKey::OffsetForLeaderEpoch => {
            use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
            let mut request = OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(topic_name())
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(0)
                            .with_leader_epoch(0),
                    ]),
            ]);
            if v >= 3 {
                request = request.with_replica_id((-1).into());
            }
            RequestKind::OffsetForLeaderEpoch(request)
        }
        // A share group member joins, is described, fetches (opening its share session) and acknowledges.
        ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(SHARE_GROUP)))
                .with_member_id(s(SHARE_MEMBER))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![topic_name()])),
        ),
        ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(
            ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(SHARE_GROUP))]),
        ),
        ApiKey::ShareFetch => RequestKind::ShareFetch(
            ShareFetchRequest::default()
                .with_group_id(Some(GroupId(s(SHARE_GROUP))))
                .with_member_id(Some(s(SHARE_MEMBER)))
                .with_share_session_epoch(0)
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_max_records(10)
                .with_topics(vec![
                    share_fetch_request::FetchTopic::default()
                        .with_topic_id(connection.topic_id)
                        .with_partitions(vec![
                            share_fetch_request::FetchPartition::default().with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::ShareAcknowledge => RequestKind::ShareAcknowledge(
            ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s(SHARE_GROUP))))
                .with_member_id(Some(s(SHARE_MEMBER)))
                .with_share_session_epoch(1),
        ),
        // The share group's start offsets (every partition it has); an empty group's set, then forgotten.
        ApiKey::DescribeShareGroupOffsets => {
            RequestKind::DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(GroupId(s(SHARE_GROUP)))
                    .with_topics(None),
            ]))
        }
        ApiKey::AlterShareGroupOffsets => {
            use alter_share_group_offsets_request::{
                AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
            };
            RequestKind::AlterShareGroupOffsets(
                AlterShareGroupOffsetsRequest::default()
                    .with_group_id(GroupId(s(EMPTY_SHARE_GROUP)))
                    .with_topics(vec![
                        AlterShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(topic_name())
                            .with_partitions(vec![
                                AlterShareGroupOffsetsRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_start_offset(0),
                            ]),
                    ]),
            )
        }
        ApiKey::DeleteShareGroupOffsets => RequestKind::DeleteShareGroupOffsets(
            DeleteShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(s(EMPTY_SHARE_GROUP)))
                .with_topics(vec![
                    delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(topic_name()),
                ]),
        ),
        ApiKey::ConsumerGroupHeartbeat => {
            RequestKind::ConsumerGroupHeartbeat(consumer_join(&format!("consumer-{v}"), &Uuid::new_v4().to_string()))
        }
        ApiKey::ConsumerGroupDescribe => {
            let group = format!("consumer-described-{v}");
            let join = RequestKind::ConsumerGroupHeartbeat(consumer_join(&group, &Uuid::new_v4().to_string()));
            let Ok(ResponseKind::ConsumerGroupHeartbeat(joined)) = connection.exchange(&join, 1) else {
                panic!("joining {group} failed")
            };
            assert_eq!(joined.error_code, 0, "joining {group}: {:?}", joined.error_message);
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![s(&group).into()]),
            )
        }
        // A share coordinator's state of a share-partition, written and read as a partition leader would.
        ApiKey::ReadShareGroupState => RequestKind::ReadShareGroupState(
            ReadShareGroupStateRequest::default()
                .with_group_id(s("versions-state"))
                .with_topics(vec![
                    read_share_group_state_request::ReadStateData::default()
                        .with_topic_id(connection.topic_id)
                        .with_partitions(vec![read_share_group_state_request::PartitionData::default()]),
                ]),
        ),
        ApiKey::WriteShareGroupState => RequestKind::WriteShareGroupState(
            WriteShareGroupStateRequest::default()
                .with_group_id(s("versions-state"))
                .with_topics(vec![
                    write_share_group_state_request::WriteStateData::default()
                        .with_topic_id(connection.topic_id)
                        .with_partitions(vec![
                            write_share_group_state_request::PartitionData::default().with_start_offset(1),
                        ]),
                ]),
        ),
        other => panic!("SUPPORTED lists {other:?}, which this test has no request for: add one"),
    }
}

#[test]
fn every_supported_version_of_every_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let mut connection = Connection::new(&server);

    // A topic with a record, so lookups find something.
    let setup = request(&mut connection, ApiKey::CreateTopics, 7);
    let RequestKind::CreateTopics(create) = setup else {
        unreachable!()
    };
    let create = create.with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic_name())
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let Ok(ResponseKind::CreateTopics(created)) = connection.exchange(&RequestKind::CreateTopics(create), 7) else {
        panic!("the topic is created")
    };
    connection.topic_id = created.topics[0].topic_id;
    let produce = request(&mut connection, ApiKey::Produce, 9);
    connection.exchange(&produce, 9).unwrap();

    let mut failures = Vec::new();
    let mut answered = 0;
    for &(key, min, max) in SUPPORTED {
        for version in min..=max {
            let request = request(&mut connection, key, version);
            match connection.exchange(&request, version) {
                Ok(ResponseKind::ListOffsets(response)) => {
                    // The record is found by its time, at every version.
                    let by_time = &response.topics[0].partitions[0];
                    assert_eq!((by_time.error_code, by_time.offset), (0, 0), "ListOffsets v{version}");
                    assert_eq!(by_time.timestamp, TIMESTAMP, "ListOffsets v{version}");
                    if version >= 4 {
                        assert_eq!(
                            by_time.leader_epoch, 0,
                            "ListOffsets v{version}: the epoch that wrote it"
                        );
                    }
                    answered += 1;
                }
                Ok(ResponseKind::Produce(response)) => {
                    // Named by id from v13, by name before: either way the record is appended.
                    let partition = &response.responses[0].partition_responses[0];
                    assert_eq!(partition.error_code, 0, "Produce v{version}");
                    answered += 1;
                }
                Ok(ResponseKind::Fetch(response)) => {
                    let partition = &response.responses[0].partitions[0];
                    assert_eq!(partition.error_code, 0, "Fetch v{version}");
                    assert!(
                        partition.records.as_ref().is_some_and(|r| !r.is_empty()),
                        "Fetch v{version} reads the records"
                    );
                    answered += 1;
                }
                Ok(ResponseKind::ShareGroupHeartbeat(response)) => {
                    assert_eq!(
                        response.error_code, 0,
                        "ShareGroupHeartbeat: {:?}",
                        response.error_message
                    );
                    answered += 1;
                }
                Ok(ResponseKind::ShareFetch(response)) => {
                    assert_eq!(response.error_code, 0, "ShareFetch: {:?}", response.error_message);
                    answered += 1;
                }
                Ok(ResponseKind::ShareAcknowledge(response)) => {
                    assert_eq!(response.error_code, 0, "ShareAcknowledge: {:?}", response.error_message);
                    answered += 1;
                }
                Ok(ResponseKind::DescribeShareGroupOffsets(response)) => {
                    let group = &response.groups[0];
                    assert_eq!(group.error_code, 0, "DescribeShareGroupOffsets: {group:?}");
                    let partition = &group.topics[0].partitions[0];
                    assert_eq!(partition.error_code, 0, "DescribeShareGroupOffsets: {partition:?}");
                    assert!(partition.start_offset >= 0, "the member fetched: {partition:?}");
                    answered += 1;
                }
                Ok(ResponseKind::AlterShareGroupOffsets(response)) => {
                    assert_eq!(response.error_code, 0, "AlterShareGroupOffsets: {response:?}");
                    assert_eq!(response.responses[0].partitions[0].error_code, 0, "{response:?}");
                    answered += 1;
                }
                Ok(ResponseKind::DeleteShareGroupOffsets(response)) => {
                    assert_eq!(response.error_code, 0, "DeleteShareGroupOffsets: {response:?}");
                    assert_eq!(response.responses[0].error_code, 0, "{response:?}");
                    answered += 1;
                }
                Ok(ResponseKind::ConsumerGroupHeartbeat(response)) => {
                    assert_eq!(
                        response.error_code, 0,
                        "ConsumerGroupHeartbeat v{version}: {response:?}"
                    );
                    let assignment = response.assignment.expect("a join is answered its assignment");
                    assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
                    answered += 1;
                }
                Ok(ResponseKind::ConsumerGroupDescribe(response)) => {
                    let group = &response.groups[0];
                    assert_eq!(group.error_code, 0, "ConsumerGroupDescribe v{version}: {group:?}");
                    assert_eq!((group.group_state.as_str(), group.members.len()), ("Stable", 1));
                    answered += 1;
                }
                Ok(_) => answered += 1,
                Err(why) => failures.push(format!("{key:?} v{version}: {why}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "advertised versions without an answer:\n{}",
        failures.join("\n")
    );
    assert!(answered > 100, "{answered} requests answered");
}
