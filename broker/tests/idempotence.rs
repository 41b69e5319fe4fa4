//! Idempotent producers (`enable.idempotence`, the Java client's default): producer ids, and retries that
//! are answered rather than appended twice, across a restart too.

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::BytesMut;
use common::Server;
use common::raw::{connect, frame, log_end_offset, response};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One batch of `count` records from producer `id`, starting at `sequence`.
fn idempotent_batch(id: i64, epoch: i16, sequence: i32, count: i32) -> bytes::Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: sequence + i,
            timestamp: 1_780_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from(format!("record {}", sequence + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// Produces one batch; returns (error code, base offset).
fn produce(server: &Server, batch: bytes::Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("idem")))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(batch)),
                ]),
        ]);
    let mut stream = connect(server);
    stream.write_all(&frame(ApiKey::Produce, 9, &request)).unwrap();
    let response: ProduceResponse = response(&mut stream, ApiKey::Produce, 9);
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn create_topic(server: &Server) {
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, create_topics_request::CreatableTopic};
    let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("idem")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let mut stream = connect(server);
    stream.write_all(&frame(ApiKey::CreateTopics, 5, &request)).unwrap();
    let response: CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 5);
    assert_eq!(response.topics[0].error_code, 0);
}

fn new_producer_id(server: &Server) -> i64 {
    let mut stream = connect(server);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    stream.write_all(&frame(ApiKey::InitProducerId, 4, &request)).unwrap();
    let response: InitProducerIdResponse = response(&mut stream, ApiKey::InitProducerId, 4);
    assert_eq!((response.error_code, response.producer_epoch), (0, 0));
    response.producer_id.0
}

#[test]
fn a_retried_batch_is_answered_not_appended_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    create_topic(&server);
    let id = new_producer_id(&server);
    assert_ne!(new_producer_id(&server), id, "every producer gets its own id");

    assert_eq!(produce(&server, idempotent_batch(id, 0, 0, 5)), (0, 0));
    assert_eq!(
        produce(&server, idempotent_batch(id, 0, 0, 5)),
        (0, 0),
        "a retry gets its first offset"
    );
    assert_eq!(produce(&server, idempotent_batch(id, 0, 5, 3)), (0, 5));
    assert_eq!(log_end_offset(&server, "idem"), 8, "the retry appended nothing");
    let gap = produce(&server, idempotent_batch(id, 0, 10, 1)).0;
    assert_eq!(gap, ResponseError::OutOfOrderSequenceNumber.code());
    let stranger = produce(&server, idempotent_batch(id + 1000, 0, 4, 1)).0;
    assert_eq!(stranger, ResponseError::UnknownProducerId.code());

    // The sequences are rebuilt from the log after a restart: the retry is still recognised.
    assert!(server.terminate(Duration::from_secs(10)).success());
    server.restart();
    assert_eq!(produce(&server, idempotent_batch(id, 0, 5, 3)), (0, 5));
    assert_eq!(produce(&server, idempotent_batch(id, 0, 8, 2)), (0, 8));
    assert_eq!(log_end_offset(&server, "idem"), 10);
    assert!(
        new_producer_id(&server) > id + 1,
        "producer ids are not handed out twice across restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_with_idempotence_delivers_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20_000 {
        let key = format!("key-{i}");
        let record = FutureRecord::to("idem").key(&key).payload("value");
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.unwrap().unwrap().offset);
    }
    assert_eq!(offsets, (0..20_000).collect::<Vec<i64>>());
    assert_eq!(log_end_offset(&server, "idem"), 20_000);
}
