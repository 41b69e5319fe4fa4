//! Kafka's topic settings as AdminClient, Terraform and Connect pass them, through a real client (librdkafka,
//! via the `rdkafka` crate) against a real `strata server`: created and described, refused with a reason
//! where Strata has no such feature, and honoured where they change what is stored: `compression.type`
//! (the leader recompresses), `message.timestamp.type=LogAppendTime` (the producer gets the append time),
//! keys on compacted topics (`INVALID_RECORD`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::Server;
use common::raw::{connect, frame, response};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strata_storage::batch::{BatchHeader, Compression};

const TIMEOUT: Duration = Duration::from_secs(60);

fn client_config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4");
    config
}

fn admin(server: &Server) -> AdminClient<DefaultClientContext> {
    client_config(server).create().unwrap()
}

async fn create_topic(server: &Server, name: &str, configs: &[(&str, &str)]) -> Result<(), RDKafkaErrorCode> {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin(server)
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap();
    results[0].clone().map(|_| ()).map_err(|(_, code)| code)
}

fn producer(server: &Server, compression: &str) -> FutureProducer {
    client_config(server)
        .set("compression.type", compression)
        .set("linger.ms", "20")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

fn consumer(server: &Server, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(server)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    consumer
}

/// Reads `count` records of partition 0 from its start: (offset, key, value, timestamp).
fn consume(server: &Server, topic: &str, count: usize) -> Vec<(i64, Vec<u8>, Vec<u8>, Timestamp)> {
    let consumer = consumer(server, topic);
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "consumed {} of {count}", out.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("no consumer error");
            out.push((
                message.offset(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
                message.timestamp(),
            ));
        }
    }
    out
}

/// The headers of every batch stored in partition 0 of `topic`, read from its segment files.
fn stored_batches(server: &Server, topic: &str) -> Vec<BatchHeader> {
    let dir = server.data_dir.join(format!("{topic}-0"));
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut headers = Vec::new();
    for path in logs {
        let bytes = std::fs::read(path).unwrap();
        let mut rest = &bytes[..];
        while rest.len() >= strata_storage::batch::BATCH_HEADER_BYTES {
            let Ok(header) = strata_storage::batch::check_stored(rest) else {
                break;
            };
            rest = &rest[header.total_bytes()..];
            headers.push(header);
        }
    }
    headers
}

/// DescribeConfigs v4 by hand, for what the `rdkafka` crate does not show: each setting's type.
fn described_types(server: &Server, topic: &str) -> HashMap<String, (String, i8, i8)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configuration_keys(None),
    ]);
    let mut stream = connect(server);
    stream.write_all(&frame(ApiKey::DescribeConfigs, 4, &request)).unwrap();
    let mut answer: DescribeConfigsResponse = response(&mut stream, ApiKey::DescribeConfigs, 4);
    let result = answer.results.remove(0);
    assert_eq!(result.error_code, 0);
    result
        .configs
        .into_iter()
        .map(|c| {
            (
                c.name.to_string(),
                (
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                    c.config_type,
                    c.config_source,
                ),
            )
        })
        .collect()
}

/// The settings a Terraform or Connect setup passes, every one of Kafka's new ones among them.
const SETTINGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.type", "zstd"),
    ("compression.zstd.level", "5"),
    ("compression.gzip.level", "6"),
    ("compression.lz4.level", "10"),
    ("message.timestamp.type", "CreateTime"),
    ("message.timestamp.before.max.ms", "86400000"),
    ("message.timestamp.after.max.ms", "600000"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("min.compaction.lag.ms", "1000"),
    ("max.compaction.lag.ms", "3600000"),
    ("file.delete.delay.ms", "30000"),
    ("segment.jitter.ms", "1000"),
    ("preallocate", "false"),
    ("local.retention.ms", "-2"),
    ("local.retention.bytes", "-2"),
    ("remote.storage.enable", "false"),
    ("remote.log.copy.disable", "false"),
    ("remote.log.delete.on.disable", "false"),
    ("leader.replication.throttled.replicas", ""),
    ("follower.replication.throttled.replicas", ""),
    ("unclean.leader.election.enable", "false"),
    ("min.insync.replicas", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_topic_settings_are_created_and_described_with_their_types_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["log.cleaner.min.compaction.lag.ms=500"]);
    create_topic(&server, "configured", SETTINGS).await.unwrap();

    let described = admin(&server)
        .describe_configs([&ResourceSpecifier::Topic("configured")], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    for (key, value) in SETTINGS {
        let entry = resource.get(key).unwrap_or_else(|| panic!("{key} is described"));
        let shown = match *key {
            // Java's Double.toString, as Kafka shows it.
            "min.cleanable.dirty.ratio" => "0.1",
            _ => value,
        };
        assert_eq!(entry.value.as_deref(), Some(shown), "{key}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{key} was set on the topic");
    }

    // Every Kafka 4 topic setting, with Kafka's type, and where the value comes from.
    create_topic(&server, "plain", &[]).await.unwrap();
    let types = described_types(&server, "plain");
    assert_eq!(types.len(), 33, "Kafka 4's topic settings: {:?}", types.keys());
    let (string, boolean, long, int, double, list) = (2, 1, 5, 3, 6, 7);
    for (key, value, config_type) in [
        ("compression.type", "producer", string),
        ("compression.zstd.level", "3", int),
        ("compression.gzip.level", "-1", int),
        ("compression.lz4.level", "9", int),
        ("message.timestamp.type", "CreateTime", string),
        ("message.timestamp.before.max.ms", "9223372036854775807", long),
        ("message.timestamp.after.max.ms", "3600000", long),
        ("min.cleanable.dirty.ratio", "0.5", double),
        ("max.compaction.lag.ms", "9223372036854775807", long),
        ("file.delete.delay.ms", "60000", long),
        ("segment.jitter.ms", "0", long),
        ("preallocate", "false", boolean),
        ("local.retention.ms", "-2", long),
        ("remote.storage.enable", "false", boolean),
        ("leader.replication.throttled.replicas", "", list),
        ("cleanup.policy", "delete", list),
        ("max.message.bytes", "1048588", int),
    ] {
        let (shown, shown_type, source) = &types[key];
        assert_eq!((shown.as_str(), *shown_type), (value, config_type), "{key}");
        assert_eq!(*source, 5, "{key}: DEFAULT_CONFIG");
    }
    let (shown, _, source) = &types["min.compaction.lag.ms"];
    assert_eq!(
        (shown.as_str(), *source),
        ("500", 4),
        "the broker's default: STATIC_BROKER_CONFIG"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_strata_cannot_honour_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for (key, value, reason) in [
        ("preallocate", "true", "does not preallocate"),
        ("remote.storage.enable", "true", "tiered storage is not supported"),
        ("local.retention.ms", "3600000", "tiered storage is not supported"),
        ("local.retention.bytes", "-1", "tiered storage is not supported"),
        (
            "leader.replication.throttled.replicas",
            "*",
            "replication throttles are not supported",
        ),
        ("compression.type", "brotli", "must be one of"),
        ("compression.zstd.level", "23", "out of range"),
        ("min.cleanable.dirty.ratio", "2", "out of range"),
        ("message.timestamp.type", "NoTime", "must be one of"),
        ("retention.ms", "-7", "out of range"),
    ] {
        let topic = format!("refused-{}", key.replace('.', "-"));
        assert_eq!(
            create_topic(&server, &topic, &[(key, value)]).await,
            Err(RDKafkaErrorCode::InvalidConfig),
            "{key}={value}"
        );
        // The reason reaches the client in the response's message (shown here by hand: the `rdkafka`
        // crate keeps only the code).
        let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(key.into()))
                        .with_value(Some(StrBytes::from_string(value.into()))),
                ]),
        ]);
        let mut stream = connect(&server);
        stream.write_all(&frame(ApiKey::CreateTopics, 5, &request)).unwrap();
        let answer: CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 5);
        let result = &answer.topics[0];
        assert_eq!(result.error_code, ResponseError::InvalidConfig.code());
        let message = result.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains(reason), "{key}={value}: {message}");
    }
    // Kafka refuses a minimum compaction lag above the maximum.
    assert_eq!(
        create_topic(
            &server,
            "lags",
            &[("min.compaction.lag.ms", "2000"), ("max.compaction.lag.ms", "1000")]
        )
        .await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_producer_to_a_zstd_topic_is_stored_as_zstd_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "zstd-topic", &[("compression.type", "zstd")])
        .await
        .unwrap();
    create_topic(&server, "as-sent", &[]).await.unwrap();
    const RECORDS: usize = 2000;
    for topic in ["zstd-topic", "as-sent"] {
        let producer = producer(&server, "gzip");
        let deliveries: Vec<_> = (0..RECORDS)
            .map(|i| {
                let (key, value) = (format!("key-{i}"), format!("value {i} {}", "z".repeat(i % 100)));
                producer
                    .send_result(FutureRecord::to(topic).partition(0).key(&key).payload(&value))
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let delivered = delivery.await.unwrap().expect("delivered");
            assert_eq!(delivered.offset, i as i64, "{topic}");
        }
        let read = consume(&server, topic, RECORDS);
        for (i, (offset, key, value, _)) in read.into_iter().enumerate() {
            assert_eq!(offset, i as i64);
            assert_eq!(key, format!("key-{i}").into_bytes());
            assert_eq!(value, format!("value {i} {}", "z".repeat(i % 100)).into_bytes());
        }
    }
    let codecs = |topic| -> Vec<Compression> {
        stored_batches(&server, topic)
            .iter()
            .map(|h| h.compression().unwrap())
            .collect()
    };
    let zstd = codecs("zstd-topic");
    assert!(!zstd.is_empty());
    assert!(zstd.iter().all(|c| *c == Compression::Zstd), "{zstd:?}");
    let as_sent = codecs("as-sent");
    assert!(
        as_sent.iter().all(|c| *c == Compression::Gzip),
        "compression.type=producer keeps the producer's codec: {as_sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_append_time_topic_returns_the_append_time_to_producer_and_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "stamped", &[("message.timestamp.type", "LogAppendTime")])
        .await
        .unwrap();
    let producer = producer(&server, "lz4");
    let before = chrono_ms();
    // The producer's own timestamp, an old one, is replaced.
    let delivered = producer
        .send(
            FutureRecord::to("stamped")
                .partition(0)
                .key("k")
                .payload("v")
                .timestamp(1_000_000),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let after = chrono_ms();
    let Timestamp::LogAppendTime(stamped) = delivered.timestamp else {
        panic!("the delivery report carries the append time: {:?}", delivered.timestamp);
    };
    assert!((before..=after).contains(&stamped), "{before} <= {stamped} <= {after}");
    let read = consume(&server, "stamped", 1);
    assert_eq!(
        read[0].3,
        Timestamp::LogAppendTime(stamped),
        "the consumer sees the same time"
    );

    // On a CreateTime topic the producer's timestamp stays, and the report says CreateTime.
    create_topic(&server, "created", &[]).await.unwrap();
    let delivered = producer
        .send(
            FutureRecord::to("created")
                .partition(0)
                .key("k")
                .payload("v")
                .timestamp(before),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(delivered.timestamp, Timestamp::CreateTime(before));
    assert_eq!(consume(&server, "created", 1)[0].3, Timestamp::CreateTime(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_to_a_compacted_topic_fail_with_invalid_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "table", &[("cleanup.policy", "compact")])
        .await
        .unwrap();
    let producer = client_config(&server)
        .set("message.timeout.ms", "10000")
        .set("retries", "0")
        .create::<FutureProducer>()
        .unwrap();
    let refused = producer
        .send(
            FutureRecord::<str, str>::to("table").partition(0).payload("no key"),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _))
        ),
        "{refused:?}"
    );
    // A keyed record is taken, and is the only one stored.
    producer
        .send(
            FutureRecord::to("table").partition(0).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let read = consume(&server, "table", 1);
    assert_eq!((read[0].0, read[0].1.as_slice()), (0, b"k".as_slice()));
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
