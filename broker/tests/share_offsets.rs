//! The admin side of share groups (KIP-932) over raw frames: DescribeShareGroupOffsets,
//! AlterShareGroupOffsets, DeleteShareGroupOffsets and DeleteGroups, against a share group whose member
//! fetches and acknowledges records, as Kafka 4.1 answers them.

mod common;

use std::io::Write;
use std::net::TcpStream;

use std::time::Duration;

use common::raw::{batch, connect, frame, response};
use common::{Server, wait_for};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
};
use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use uuid::Uuid;

const TOPIC: &str = "jobs";
const GROUP: &str = "workers";
/// Records produced to partition 0 (partition 1 stays empty).
const RECORDS: i64 = 10;
const ACCEPT: i8 = 1;
/// The longest any wait may take.
const TIMEOUT: Duration = Duration::from_secs(20);

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn call<Req: Encodable, Resp: Decodable>(stream: &mut TcpStream, key: ApiKey, version: i16, request: &Req) -> Resp {
    stream.write_all(&frame(key, version, request)).unwrap();
    response(stream, key, version)
}

/// Creates `TOPIC` with two partitions and `RECORDS` records in partition 0; returns its id.
fn setup(stream: &mut TcpStream) -> Uuid {
    let request = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_num_partitions(2)
            .with_replication_factor(1),
    ]);
    let created: CreateTopicsResponse = call(stream, ApiKey::CreateTopics, 7, &request);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    // One record per produce: the batch helper writes one batch.
    for _ in 0..RECORDS {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(
                        batch(Compression::None, &["job"], &[0], 1_780_000_000_000).freeze(),
                    ))]),
            ]);
        let produced: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    // The first FindCoordinator creates __consumer_offsets; a group's requests are answered once its
    // partition is led and read back.
    wait_for("a coordinator", TIMEOUT, || {
        let request = FindCoordinatorRequest::default().with_key(s(GROUP));
        let found: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 1, &request);
        found.error_code == 0
    });
    wait_for("the coordinator to answer", TIMEOUT, || {
        describe(stream, GROUP, None).0 == 0 && describe(stream, "classic", None).0 == 0
    });
    created.topics[0].topic_id
}

/// A member joins `GROUP`, subscribed to `TOPIC`; returns its epoch.
fn join(stream: &mut TcpStream, member: &str) -> i32 {
    let request = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]));
    let joined: ShareGroupHeartbeatResponse = call(stream, ApiKey::ShareGroupHeartbeat, 1, &request);
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    joined.member_epoch
}

fn leave(stream: &mut TcpStream, member: &str) {
    let request = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(-1);
    let left: ShareGroupHeartbeatResponse = call(stream, ApiKey::ShareGroupHeartbeat, 1, &request);
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
}

/// `member` opens its share session on both partitions and fetches without waiting: the acquired
/// `(partition, first offset, last offset, delivery count)`.
fn fetch(stream: &mut TcpStream, member: &str, topic_id: Uuid) -> Vec<(i32, i64, i64, i16)> {
    let request = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(0)
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_max_records(100)
        .with_topics(vec![FetchTopic::default().with_topic_id(topic_id).with_partitions(
            vec![
                FetchPartition::default().with_partition_index(0),
                FetchPartition::default().with_partition_index(1),
            ],
        )]);
    let fetched: ShareFetchResponse = call(stream, ApiKey::ShareFetch, 1, &request);
    assert_eq!(fetched.error_code, 0, "{:?}", fetched.error_message);
    let mut acquired = Vec::new();
    for topic in &fetched.responses {
        for partition in &topic.partitions {
            assert_eq!(partition.error_code, 0, "{partition:?}");
            for a in &partition.acquired_records {
                acquired.push((
                    partition.partition_index,
                    a.first_offset,
                    a.last_offset,
                    a.delivery_count,
                ));
            }
        }
    }
    acquired
}

/// `member` accepts `first..=last` of partition 0, in its share session (epoch 1), and closes it.
fn accept(stream: &mut TcpStream, member: &str, topic_id: Uuid, first: i64, last: i64) {
    let request = ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(-1)
        .with_topics(vec![
            AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![
                            AcknowledgementBatch::default()
                                .with_first_offset(first)
                                .with_last_offset(last)
                                .with_acknowledge_types(vec![ACCEPT]),
                        ]),
                ]),
        ]);
    let acknowledged: ShareAcknowledgeResponse = call(stream, ApiKey::ShareAcknowledge, 1, &request);
    assert_eq!(acknowledged.error_code, 0, "{:?}", acknowledged.error_message);
    let partition = &acknowledged.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
}

/// DescribeShareGroupOffsets of `group`: `topics` `None` for all. Returns the group's error and, per
/// topic, `(name, id, [(partition, start offset, error)])`.
#[allow(clippy::type_complexity)]
fn describe(
    stream: &mut TcpStream,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Vec<(String, Uuid, Vec<(i32, i64, i16)>)>) {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| {
                DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(name)))
                    .with_partitions(partitions.to_vec())
            })
            .collect()
    });
    let request = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topics),
    ]);
    let described: DescribeShareGroupOffsetsResponse = call(stream, ApiKey::DescribeShareGroupOffsets, 0, &request);
    let group = &described.groups[0];
    let topics = group
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.start_offset, p.error_code))
                .collect();
            (t.topic_name.0.to_string(), t.topic_id, partitions)
        })
        .collect();
    (group.error_code, topics)
}

/// The start offsets of `GROUP` in `TOPIC`, as DescribeShareGroupOffsets with null topics gives them.
fn start_offsets(stream: &mut TcpStream) -> Vec<(i32, i64)> {
    let (error, topics) = describe(stream, GROUP, None);
    assert_eq!(error, 0);
    topics
        .into_iter()
        .filter(|(name, _, _)| name == TOPIC)
        .flat_map(|(_, _, partitions)| partitions)
        .map(|(p, offset, error)| {
            assert_eq!(error, 0);
            (p, offset)
        })
        .collect()
}

/// AlterShareGroupOffsets of `group`: the request's error, and per `(topic, partition)` the error.
fn alter(stream: &mut TcpStream, group: &str, offsets: &[(&str, i32, i64)]) -> (i16, Vec<(String, i32, i16)>) {
    let mut topics: Vec<AlterShareGroupOffsetsRequestTopic> = Vec::new();
    for &(topic, partition, offset) in offsets {
        let entry = AlterShareGroupOffsetsRequestPartition::default()
            .with_partition_index(partition)
            .with_start_offset(offset);
        match topics.iter_mut().find(|t| t.topic_name.0.as_str() == topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let request = AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(topics);
    let altered: AlterShareGroupOffsetsResponse = call(stream, ApiKey::AlterShareGroupOffsets, 0, &request);
    let partitions = altered
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic_name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    (altered.error_code, partitions)
}

/// DeleteShareGroupOffsets of `group`: the request's error, and per topic the error.
fn delete_offsets(stream: &mut TcpStream, group: &str, topics: &[&str]) -> (i16, Vec<(String, i16)>) {
    let request = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(
            topics
                .iter()
                .map(|t| DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(s(t))))
                .collect(),
        );
    let deleted: DeleteShareGroupOffsetsResponse = call(stream, ApiKey::DeleteShareGroupOffsets, 0, &request);
    let topics = deleted
        .responses
        .iter()
        .map(|t| (t.topic_name.0.to_string(), t.error_code))
        .collect();
    (deleted.error_code, topics)
}

fn delete_group(stream: &mut TcpStream, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let deleted: DeleteGroupsResponse = call(stream, ApiKey::DeleteGroups, 2, &request);
    deleted.results[0].error_code
}

/// The share groups ListGroups lists, with their states.
fn share_groups(stream: &mut TcpStream) -> Vec<(String, String)> {
    let request = ListGroupsRequest::default().with_types_filter(vec![s("share")]);
    let listed: ListGroupsResponse = call(stream, ApiKey::ListGroups, 5, &request);
    listed
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect()
}

fn share_group_state(stream: &mut TcpStream) -> Result<String, i16> {
    let request = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]);
    let described: ShareGroupDescribeResponse = call(stream, ApiKey::ShareGroupDescribe, 1, &request);
    let group = &described.groups[0];
    match group.error_code {
        0 => Ok(group.group_state.to_string()),
        error => Err(error),
    }
}

const NONE: i16 = 0;

fn code(error: ResponseError) -> i16 {
    error.code()
}

#[test]
fn share_group_offsets_are_described_altered_and_deleted_only_without_members() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    let topic_id = setup(&mut stream);

    // Nothing started yet: -1 and no error, for a topic that exists and for one that does not (nil id).
    let (error, topics) = describe(&mut stream, GROUP, Some(&[(TOPIC, &[0, 1]), ("missing", &[0])]));
    assert_eq!(error, NONE);
    assert_eq!(
        topics,
        vec![
            (TOPIC.to_owned(), topic_id, vec![(0, -1, NONE), (1, -1, NONE)]),
            ("missing".to_owned(), Uuid::nil(), vec![(0, -1, NONE)]),
        ]
    );
    assert_eq!(describe(&mut stream, GROUP, None), (NONE, vec![]));

    // A member starts at the log end (share.auto.offset.reset latest): 10 in partition 0, 0 in partition 1.
    join(&mut stream, "m1");
    assert_eq!(fetch(&mut stream, "m1", topic_id), vec![]);
    assert_eq!(start_offsets(&mut stream), vec![(0, RECORDS), (1, 0)]);

    // With a member, nothing changes.
    let non_empty = code(ResponseError::NonEmptyGroup);
    assert_eq!(alter(&mut stream, GROUP, &[(TOPIC, 0, 3)]).0, non_empty);
    assert_eq!(delete_offsets(&mut stream, GROUP, &[TOPIC]).0, non_empty);
    assert_eq!(delete_group(&mut stream, GROUP), non_empty);
    assert_eq!(start_offsets(&mut stream), vec![(0, RECORDS), (1, 0)]);

    // Without members the group is empty, its state kept.
    leave(&mut stream, "m1");
    assert_eq!(share_groups(&mut stream), vec![(GROUP.to_owned(), "Empty".to_owned())]);
    assert_eq!(share_group_state(&mut stream), Ok("Empty".to_owned()));

    // Back to offset 3 in partition 0; bad partitions are refused one by one, and change nothing.
    let (error, partitions) = alter(
        &mut stream,
        GROUP,
        &[(TOPIC, 0, 3), (TOPIC, 1, 5), (TOPIC, 7, 0), ("missing", 0, 0)],
    );
    assert_eq!(error, NONE);
    let unknown = code(ResponseError::UnknownTopicOrPartition);
    assert_eq!(
        partitions,
        vec![
            (TOPIC.to_owned(), 0, NONE),
            (TOPIC.to_owned(), 1, code(ResponseError::InvalidRequest)),
            (TOPIC.to_owned(), 7, unknown),
            ("missing".to_owned(), 0, unknown),
        ],
        "partition 1 is empty: offset 5 is past its end"
    );
    let (_, partitions) = alter(&mut stream, GROUP, &[(TOPIC, 1, -1)]);
    assert_eq!(
        partitions,
        vec![(TOPIC.to_owned(), 1, code(ResponseError::InvalidRequest))]
    );
    assert_eq!(start_offsets(&mut stream), vec![(0, 3), (1, 0)]);

    // The next member gets records 3..9, delivered afresh; once accepted, the start moves past them.
    join(&mut stream, "m2");
    assert_eq!(fetch(&mut stream, "m2", topic_id), vec![(0, 3, RECORDS - 1, 1)]);
    assert_eq!(start_offsets(&mut stream), vec![(0, 3), (1, 0)], "in flight");
    accept(&mut stream, "m2", topic_id, 3, RECORDS - 1);
    assert_eq!(start_offsets(&mut stream), vec![(0, RECORDS), (1, 0)]);
    leave(&mut stream, "m2");

    // Deleting the topic's offsets forgets them; a topic without any is refused.
    let (error, topics) = delete_offsets(&mut stream, GROUP, &[TOPIC, "missing"]);
    assert_eq!(error, NONE);
    assert_eq!(topics, vec![(TOPIC.to_owned(), NONE), ("missing".to_owned(), unknown)]);
    assert_eq!(describe(&mut stream, GROUP, None), (NONE, vec![]));
    let (_, topics) = describe(&mut stream, GROUP, Some(&[(TOPIC, &[0])]));
    assert_eq!(topics[0].2, vec![(0, -1, NONE)]);
    let not_found = code(ResponseError::GroupIdNotFound);
    assert_eq!(delete_offsets(&mut stream, GROUP, &[TOPIC]).0, not_found);
    assert_eq!(share_groups(&mut stream), vec![]);

    // Altering the offsets of a group without state makes an empty share group; DeleteGroups removes it.
    assert_eq!(
        alter(&mut stream, GROUP, &[(TOPIC, 0, 0)]),
        (NONE, vec![(TOPIC.to_owned(), 0, NONE)])
    );
    assert_eq!(share_group_state(&mut stream), Ok("Empty".to_owned()));
    assert_eq!(delete_group(&mut stream, GROUP), NONE);
    assert_eq!(share_group_state(&mut stream), Err(not_found));
    assert_eq!(delete_group(&mut stream, GROUP), not_found);
    assert_eq!(describe(&mut stream, GROUP, None), (NONE, vec![]));
}

#[test]
fn a_consumer_group_is_not_a_share_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    setup(&mut stream);
    // An admin commit outside any generation: a consumer group with committed offsets.
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("classic")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(4),
                ]),
        ]);
    let committed: OffsetCommitResponse = call(&mut stream, ApiKey::OffsetCommit, 8, &request);
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    let not_found = code(ResponseError::GroupIdNotFound);
    assert_eq!(describe(&mut stream, "classic", None).0, not_found);
    assert_eq!(alter(&mut stream, "classic", &[(TOPIC, 0, 0)]).0, not_found);
    assert_eq!(delete_offsets(&mut stream, "classic", &[TOPIC]).0, not_found);
    assert_eq!(
        alter(&mut stream, "", &[(TOPIC, 0, 0)]).0,
        code(ResponseError::InvalidGroupId)
    );
}
