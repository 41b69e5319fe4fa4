//! Fetch sessions (KIP-227) and topic ids in Produce and Fetch (v13), over raw frames: a consumer of many
//! partitions names them once, then each poll is answered with only the partitions that have news; a poll
//! that names nothing still wakes on an append to any partition of its session; the session's epoch and id
//! are checked with Kafka's error codes.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::Server;
use common::raw::{batch, connect, frame, response};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
    TopicName, create_topics_request::CreatableTopic,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use uuid::Uuid;

const PARTITIONS: i32 = 50;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn create(stream: &mut TcpStream, topic: &str) -> Uuid {
    let request = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1),
    ]);
    stream.write_all(&frame(ApiKey::CreateTopics, 7, &request)).unwrap();
    let created: CreateTopicsResponse = response(stream, ApiKey::CreateTopics, 7);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    created.topics[0].topic_id
}

/// Produces one record to `partition` of the topic with id `topic_id`, at Produce v13 (topics by id).
fn produce(stream: &mut TcpStream, topic_id: Uuid, partition: i32) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_topic_id(topic_id)
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(partition).with_records(Some(
                        batch(Compression::None, &["news"], &[0], 1_780_000_000_000).freeze(),
                    )),
                ]),
        ]);
    stream.write_all(&frame(ApiKey::Produce, 13, &request)).unwrap();
    response(stream, ApiKey::Produce, 13)
}

fn partition(index: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(index)
        .with_fetch_offset(offset)
        .with_current_leader_epoch(-1)
        .with_partition_max_bytes(1 << 20)
}

/// A fetch of `topic_id` at v13 in session `session_id` at `epoch`, naming `partitions` and forgetting
/// `forgotten`, waiting up to `max_wait_ms` for a byte.
fn fetch_request(
    session_id: i32,
    epoch: i32,
    topic_id: Uuid,
    partitions: Vec<FetchPartition>,
    forgotten: Vec<i32>,
    max_wait_ms: i32,
) -> FetchRequest {
    let topics = if partitions.is_empty() {
        vec![]
    } else {
        vec![
            FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions),
        ]
    };
    let forgotten = if forgotten.is_empty() {
        vec![]
    } else {
        vec![
            ForgottenTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(forgotten),
        ]
    };
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

fn fetch(stream: &mut TcpStream, version: i16, request: &FetchRequest) -> FetchResponse {
    stream.write_all(&frame(ApiKey::Fetch, version, request)).unwrap();
    response(stream, ApiKey::Fetch, version)
}

/// The partitions an answer carries, with how many record bytes each.
fn answered(response: &FetchResponse) -> Vec<(i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |r| r.len())))
        .collect()
}

#[test]
fn an_incremental_fetch_answers_only_the_partitions_with_news() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    let mut producer = connect(&server);
    let topic_id = create(&mut stream, "sessions");
    let produced = produce(&mut producer, topic_id, 3);
    assert_eq!(
        produced.responses[0].topic_id, topic_id,
        "Produce v13 answers by topic id"
    );
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    // The full fetch names every partition and opens a session.
    let all = (0..PARTITIONS).map(|p| partition(p, 0)).collect();
    let full = fetch(&mut stream, 13, &fetch_request(0, 0, topic_id, all, vec![], 0));
    assert_eq!(full.error_code, 0);
    let session = full.session_id;
    assert_ne!(session, 0, "a session is opened");
    assert_eq!(full.responses[0].topic_id, topic_id, "Fetch v13 answers by topic id");
    let carried = answered(&full);
    assert_eq!(
        carried.len(),
        PARTITIONS as usize,
        "a full fetch answers every partition"
    );
    assert!(carried.iter().all(|&(p, bytes)| (p == 3) == (bytes > 0)), "{carried:?}");

    // Partition 3 moves on; nothing else changed, so nothing is answered.
    let quiet = fetch(
        &mut stream,
        13,
        &fetch_request(session, 1, topic_id, vec![partition(3, 1)], vec![], 0),
    );
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert_eq!(answered(&quiet), vec![], "no partition has news");

    // An append to partition 7 (never named since the full fetch) is answered, and only it.
    produce(&mut producer, topic_id, 7);
    let news = fetch(&mut stream, 13, &fetch_request(session, 2, topic_id, vec![], vec![], 0));
    let carried = answered(&news);
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(carried[0].0, 7);
    assert!(carried[0].1 > 0, "with its record");

    // A long poll naming nothing is woken by an append to a partition of the session.
    let poll = fetch_request(session, 3, topic_id, vec![partition(7, 1)], vec![], 30_000);
    stream.write_all(&frame(ApiKey::Fetch, 13, &poll)).unwrap();
    produce(&mut producer, topic_id, 9);
    let woken: FetchResponse = response(&mut stream, ApiKey::Fetch, 13);
    assert_eq!(answered(&woken).iter().map(|p| p.0).collect::<Vec<_>>(), vec![9]);

    // A forgotten partition is no longer read.
    let forget = fetch_request(session, 4, topic_id, vec![partition(9, 1)], vec![3], 0);
    assert_eq!(answered(&fetch(&mut stream, 13, &forget)), vec![]);
    produce(&mut producer, topic_id, 3);
    let after = fetch(&mut stream, 13, &fetch_request(session, 5, topic_id, vec![], vec![], 0));
    assert_eq!(answered(&after), vec![], "partition 3 was forgotten");

    // Kafka's errors for a wrong epoch and an unknown session.
    let stale = fetch(&mut stream, 13, &fetch_request(session, 5, topic_id, vec![], vec![], 0));
    assert_eq!(stale.error_code, ResponseError::InvalidFetchSessionEpoch.code());
    let unknown = fetch(
        &mut stream,
        13,
        &fetch_request(session ^ 1, 1, topic_id, vec![], vec![], 0),
    );
    assert_eq!(unknown.error_code, ResponseError::FetchSessionIdNotFound.code());
    // The session survived both.
    let again = fetch(&mut stream, 13, &fetch_request(session, 6, topic_id, vec![], vec![], 0));
    assert_eq!((again.error_code, again.session_id), (0, session));
}

#[test]
fn topic_ids_name_topics_and_sessions_work_by_name_before_v13() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    let topic_id = create(&mut stream, "named");

    // An id the cluster does not know: UNKNOWN_TOPIC_ID, for Produce and Fetch.
    let stranger = Uuid::new_v4();
    let refused = produce(&mut stream, stranger, 0);
    assert_eq!(
        refused.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    let unknown = fetch(
        &mut stream,
        13,
        &fetch_request(0, -1, stranger, vec![partition(0, 0)], vec![], 0),
    );
    assert_eq!(unknown.session_id, 0, "epoch -1 opens no session");
    assert_eq!(
        unknown.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );

    // v12 names topics; its sessions are kept by name.
    produce(&mut stream, topic_id, 1);
    let by_name = |partitions: Vec<FetchPartition>| {
        if partitions.is_empty() {
            vec![]
        } else {
            vec![
                FetchTopic::default()
                    .with_topic(name("named"))
                    .with_partitions(partitions),
            ]
        }
    };
    let full = fetch(
        &mut stream,
        12,
        &fetch_request(0, 0, Uuid::nil(), vec![], vec![], 0)
            .with_topics(by_name(vec![partition(0, 0), partition(1, 0)])),
    );
    assert_ne!(full.session_id, 0);
    assert_eq!(full.responses[0].topic.0.as_str(), "named");
    assert_eq!(answered(&full).len(), 2);
    let quiet = fetch(
        &mut stream,
        12,
        &fetch_request(full.session_id, 1, Uuid::nil(), vec![], vec![], 0).with_topics(by_name(vec![partition(1, 1)])),
    );
    assert_eq!(answered(&quiet), vec![]);
    // A session opened by name is not continued by id.
    let mixed = fetch(
        &mut stream,
        13,
        &fetch_request(full.session_id, 2, topic_id, vec![], vec![], 0),
    );
    assert_eq!(mixed.error_code, ResponseError::FetchSessionTopicIdError.code());
}

#[test]
fn without_session_slots_every_fetch_is_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["max.incremental.fetch.session.cache.slots=0"]);
    let mut stream = connect(&server);
    let topic_id = create(&mut stream, "sessionless");
    let full = fetch(
        &mut stream,
        13,
        &fetch_request(0, 0, topic_id, vec![partition(0, 0), partition(1, 0)], vec![], 0),
    );
    assert_eq!((full.error_code, full.session_id), (0, 0));
    assert_eq!(answered(&full).len(), 2);
}
