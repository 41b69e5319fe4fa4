//! Bad input on one connection gets its error or a closed connection; the server stays up and a
//! well-behaved client on another connection sees nothing of it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::Server;
use common::raw::{connect, frame, log_end_offset, response};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, ProduceRequest, ProduceResponse, TopicName,
    create_topics_request::CreatableTopic,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The server closed this connection: a read ends (EOF or reset) rather than timing out.
fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
}

fn records_with_bad_crc() -> bytes::Bytes {
    let mut buf = encoded(Compression::None, &["value"], &[0]);
    let last = buf.len() - 1;
    buf[last] ^= 0xff; // inside the records: covered by the CRC
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_disturbs_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["socket.request.max.bytes=1048576"]);

    // A well-behaved client keeps producing on its own connection the whole time.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let addr = server.addr.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let good_client = tokio::spawn(async move {
        let mut delivered = 0u64;
        // Stops between sends, so every record sent was also counted.
        while stop_rx.try_recv().is_err() {
            producer
                .send(
                    FutureRecord::to("well-behaved").key("k").payload("v"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("the good client was disturbed ({addr}): {e}"));
            delivered += 1;
        }
        delivered
    });

    let mut stream = connect(&server);
    let create = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("target")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    stream.write_all(&frame(ApiKey::CreateTopics, 5, &create)).unwrap();
    let _: kafka_protocol::messages::CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 5);

    // An ApiVersions version from the future: UNSUPPORTED_VERSION with a v0 body, and the connection stays.
    let mut future = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    future[6..8].copy_from_slice(&99i16.to_be_bytes());
    stream.write_all(&future).unwrap();
    let refused: ApiVersionsResponse = response(&mut stream, ApiKey::ApiVersions, 0);
    assert_eq!(refused.error_code, ResponseError::UnsupportedVersion.code());
    assert!(refused.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    stream
        .write_all(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()))
        .unwrap();
    let accepted: ApiVersionsResponse = response(&mut stream, ApiKey::ApiVersions, 3);
    assert_eq!(accepted.error_code, 0);

    // A batch with a broken CRC: CORRUPT_MESSAGE, and nothing appended.
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("target")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records_with_bad_crc())),
                ]),
        ]);
    stream.write_all(&frame(ApiKey::Produce, 9, &produce)).unwrap();
    let produced: ProduceResponse = response(&mut stream, ApiKey::Produce, 9);
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(log_end_offset(&server, "target"), 0, "a rejected batch appends nothing");

    // A size prefix beyond socket.request.max.bytes: closed before anything is allocated.
    let mut oversized = connect(&server);
    oversized.write_all(&(512 * 1024 * 1024i32).to_be_bytes()).unwrap();
    assert_closed(&mut oversized);

    // A negative size prefix.
    let mut negative = connect(&server);
    negative.write_all(&(-1i32).to_be_bytes()).unwrap();
    assert_closed(&mut negative);

    // Random bytes framed as a request.
    let mut random = connect(&server);
    let mut seed = 0x2545f4914f6cdd1du64;
    let noise: Vec<u8> = (0..200)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    random.write_all(&(noise.len() as i32).to_be_bytes()).unwrap();
    random.write_all(&noise).unwrap();
    assert_closed(&mut random);

    // An API key no Kafka has.
    let mut unknown = connect(&server);
    let mut request = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    request[4..6].copy_from_slice(&9999i16.to_be_bytes());
    unknown.write_all(&request).unwrap();
    assert_closed(&mut unknown);

    // A Metadata request announcing two billion topics in a few bytes.
    let mut huge = connect(&server);
    let mut request = frame(
        ApiKey::Metadata,
        1,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![])),
    );
    let len = request.len();
    request[len - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
    huge.write_all(&request).unwrap();
    assert_closed(&mut huge);

    // A frame cut short by the client going away.
    let mut truncated = connect(&server);
    let request = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    truncated.write_all(&request[..request.len() / 2]).unwrap();
    drop(truncated);

    // The server still serves: the good client never failed, and this connection still works.
    stream
        .write_all(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()))
        .unwrap();
    let _: ApiVersionsResponse = response(&mut stream, ApiKey::ApiVersions, 3);
    stop_tx.send(()).unwrap();
    let delivered = good_client.await.unwrap();
    assert!(delivered > 0);
    assert_eq!(log_end_offset(&server, "well-behaved"), delivered as i64);
}

/// One batch of `values` encoded by the `kafka-protocol` crate with `compression`, records at `offsets`.
fn encoded(compression: Compression, values: &[&'static str], offsets: &[i64]) -> BytesMut {
    common::raw::batch(compression, values, offsets, 1_780_000_000_000)
}

/// Rewrites a batch's header to claim `count` records over `count` offsets, its payload replaced by
/// `payload` when given, with a length and a CRC-32C that agree: it passes every header check.
fn relabel(mut batch: BytesMut, count: i32, payload: Option<&[u8]>) -> bytes::Bytes {
    if let Some(payload) = payload {
        batch.truncate(61);
        batch.extend_from_slice(payload);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
    }
    batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// Produces `records` to partition 0 of `topic` and returns that partition's answer.
fn produce(stream: &mut TcpStream, topic: &'static str, records: bytes::Bytes) -> PartitionProduceResponse {
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    stream.write_all(&frame(ApiKey::Produce, 9, &produce)).unwrap();
    let mut produced: ProduceResponse = response(stream, ApiKey::Produce, 9);
    produced.responses.remove(0).partition_responses.remove(0)
}

/// Batches whose CRC is right but whose records lie about themselves are refused with Kafka's codes and
/// never stored: once stored, a compacted topic's cleaner read a count of i32::MAX and the broker aborted,
/// at every restart; garbage compressed payloads failed every consumer of the partition.
#[test]
fn batches_whose_records_lie_are_refused_before_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    let create = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("compacted")))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact"))),
            ]),
    ]);
    stream.write_all(&frame(ApiKey::CreateTopics, 5, &create)).unwrap();
    let _: kafka_protocol::messages::CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 5);

    // A gzip batch of one record claiming i32::MAX of them (its last offset delta agreeing).
    let lying = relabel(encoded(Compression::Gzip, &["a"], &[0]), i32::MAX, None);
    let answer = produce(&mut stream, "compacted", lying);
    assert_eq!(answer.error_code, ResponseError::CorruptMessage.code(), "{answer:?}");

    // Payloads that are not what their codec says.
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let garbage = relabel(
            encoded(compression, &["a"], &[0]),
            1,
            Some(b"not compressed by anything, only claiming to be"),
        );
        let answer = produce(&mut stream, "compacted", garbage);
        assert_eq!(
            answer.error_code,
            ResponseError::CorruptMessage.code(),
            "{compression:?}: {answer:?}"
        );
    }

    // Two records at the same offset delta: INVALID_RECORD, naming the second.
    let repeated = relabel(encoded(Compression::None, &["a", "b"], &[0, 0]), 2, None);
    let answer = produce(&mut stream, "compacted", repeated);
    assert_eq!(answer.error_code, ResponseError::InvalidRecord.code(), "{answer:?}");
    assert_eq!(answer.record_errors.len(), 1);
    assert_eq!(answer.record_errors[0].batch_index, 1);

    assert_eq!(log_end_offset(&server, "compacted"), 0, "nothing was stored");
    // The partition still takes good batches, and the broker comes back from a restart (the cleaner
    // reading what was stored) serving.
    let good = encoded(Compression::Gzip, &["a"], &[0]).freeze();
    assert_eq!(produce(&mut stream, "compacted", good).error_code, 0);
    server.terminate(Duration::from_secs(10));
    server.restart();
    assert_eq!(log_end_offset(&server, "compacted"), 1);
}

/// Share group requests naming absurd offset ranges are refused at once, and the broker goes on serving: an
/// acknowledgement of offsets 0..2^63 (nothing in flight there) and a share-partition state reaching far past
/// what is ever in flight, which loading would otherwise spend the broker's memory on.
#[test]
fn share_requests_with_absurd_offset_ranges_are_refused() {
    use kafka_protocol::messages::share_acknowledge_request::{
        AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
    };
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::write_share_group_state_request::{PartitionData, StateBatch, WriteStateData};
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, ShareAcknowledgeRequest, ShareAcknowledgeResponse,
        ShareFetchRequest, ShareFetchResponse, TopicName, WriteShareGroupStateRequest, WriteShareGroupStateResponse,
        create_topics_request::CreatableTopic,
    };

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("absurd")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    stream.write_all(&frame(ApiKey::CreateTopics, 7, &create)).unwrap();
    let created: CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 7);
    let topic_id = created.topics[0].topic_id;

    // A member opens a share session, then acknowledges offsets it was never given.
    let group = Some(GroupId(StrBytes::from_static_str("absurd-group")));
    let member = Some(StrBytes::from_static_str("absurd-member"));
    let open = ShareFetchRequest::default()
        .with_group_id(group.clone())
        .with_member_id(member.clone())
        .with_share_session_epoch(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()]),
        ]);
    stream.write_all(&frame(ApiKey::ShareFetch, 1, &open)).unwrap();
    let opened: ShareFetchResponse = response(&mut stream, ApiKey::ShareFetch, 1);
    assert_eq!(opened.error_code, 0);
    let acknowledge = ShareAcknowledgeRequest::default()
        .with_group_id(group)
        .with_member_id(member)
        .with_share_session_epoch(1)
        .with_topics(vec![
            AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![AcknowledgePartition::default().with_acknowledgement_batches(
                    vec![
                AcknowledgementBatch::default()
                    .with_first_offset(0)
                    .with_last_offset(i64::MAX)
                    .with_acknowledge_types(vec![1]),
            ],
                )]),
        ]);
    stream
        .write_all(&frame(ApiKey::ShareAcknowledge, 1, &acknowledge))
        .unwrap();
    let acknowledged: ShareAcknowledgeResponse = response(&mut stream, ApiKey::ShareAcknowledge, 1);
    assert_eq!(
        acknowledged.responses[0].partitions[0].error_code,
        ResponseError::InvalidRecordState.code()
    );

    // A state reaching 2^62 offsets past its start.
    let write = WriteShareGroupStateRequest::default()
        .with_group_id(StrBytes::from_static_str("absurd-group"))
        .with_topics(vec![WriteStateData::default().with_topic_id(topic_id).with_partitions(
            vec![PartitionData::default().with_start_offset(0).with_state_batches(vec![
                StateBatch::default()
                    .with_first_offset(0)
                    .with_last_offset(1 << 62)
                    .with_delivery_state(2)
                    .with_delivery_count(1),
            ])],
        )]);
    stream
        .write_all(&frame(ApiKey::WriteShareGroupState, 0, &write))
        .unwrap();
    let written: WriteShareGroupStateResponse = response(&mut stream, ApiKey::WriteShareGroupState, 0);
    assert_eq!(
        written.results[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );

    // Still serving.
    assert_eq!(log_end_offset(&server, "absurd"), 0);
}
