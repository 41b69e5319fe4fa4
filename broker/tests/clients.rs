//! A real Kafka client (librdkafka, through the `rdkafka` crate) against a real `strata server` process:
//! what a user pointing their application at Strata would see.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 100_000;
const TIMEOUT: Duration = Duration::from_secs(120);
/// A fixed, recent base timestamp, so that every record's timestamp is known to the test.
const BASE_TIMESTAMP: i64 = 1_780_000_000_000;

fn client_config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4");
    config
}

async fn create_topic(server: &Server, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(server).create().unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

fn producer(server: &Server, compression: &str) -> FutureProducer {
    client_config(server)
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

fn consumer(server: &Server) -> BaseConsumer {
    // librdkafka needs a group id to assign partitions, even though no group coordinator is involved.
    client_config(server)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap()
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

fn value(i: usize) -> String {
    format!("value {i} {}", "x".repeat(i % 200))
}

/// Produces `count` records with keys, a header and timestamps `BASE_TIMESTAMP + i` to partition 0 and
/// waits for every acknowledgement; returns the offsets acknowledged.
async fn produce(producer: &FutureProducer, topic: &str, count: usize) -> Vec<i64> {
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let (key, value, index) = (key(i), value(i), i.to_string());
        let headers = OwnedHeaders::new().insert(Header {
            key: "index",
            value: Some(&index),
        });
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(BASE_TIMESTAMP + i as i64);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("the producer queue has room"),
        );
    }
    let mut offsets = Vec::with_capacity(count);
    for delivery in deliveries {
        let delivered = delivery.await.expect("delivery not cancelled").expect("delivered");
        offsets.push(delivered.offset);
    }
    offsets
}

/// Consumes partition 0 of `topic` from `from` until `count` records arrived, checking each is the record
/// produced with that index.
fn consume_and_check(server: &Server, topic: &str, from: Offset, first_index: usize, count: usize) {
    let consumer = consumer(server);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, from).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut next = first_index;
    while next < first_index + count {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {count} records",
            next - first_index
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("no consumer error");
        assert_eq!(message.offset(), next as i64, "records arrive in order, without gaps");
        assert_eq!(message.key(), Some(key(next).as_bytes()));
        assert_eq!(message.payload(), Some(value(next).as_bytes()));
        assert_eq!(message.timestamp().to_millis(), Some(BASE_TIMESTAMP + next as i64));
        let header = message.headers().expect("headers").get(0);
        assert_eq!((header.key, header.value), ("index", Some(next.to_string().as_bytes())));
        next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_with_every_compression_codec() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&server, &topic, 1, &[]).await;
        let offsets = produce(&producer(&server, codec), &topic, RECORDS).await;
        assert_eq!(
            offsets,
            (0..RECORDS as i64).collect::<Vec<_>>(),
            "{codec}: offsets are assigned in order"
        );
        consume_and_check(&server, &topic, Offset::Beginning, 0, RECORDS);
    }
}

fn timestamps_consumer(server: &Server, topic: &str, at: i64) -> (BaseConsumer, i64) {
    let consumer = consumer(server);
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(topic, 0, Offset::Offset(at)).unwrap();
    let found = consumer.offsets_for_times(query, Duration::from_secs(30)).unwrap();
    let offset = match found.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(offset) => offset,
        Offset::End => -1,
        other => panic!("offsets_for_times({at}) answered {other:?}"),
    };
    (consumer, offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_record_at_a_time_and_seeking_replays_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "times", 1, &[]).await;
    produce(&producer(&server, "lz4"), "times", 5000).await;
    // Record i has timestamp BASE_TIMESTAMP + i.
    for (at, expected) in [
        (BASE_TIMESTAMP, 0),
        (BASE_TIMESTAMP + 1234, 1234),
        (BASE_TIMESTAMP - 10, 0),
        (BASE_TIMESTAMP + 4999, 4999),
    ] {
        let (_, offset) = timestamps_consumer(&server, "times", at);
        assert_eq!(offset, expected, "first offset at or after {at}");
    }
    let (_, offset) = timestamps_consumer(&server, "times", BASE_TIMESTAMP + 5000);
    assert_eq!(offset, -1, "no record that late: Kafka answers -1 (the end)");
    // Seeking to the answer replays from exactly that record.
    let (_, offset) = timestamps_consumer(&server, "times", BASE_TIMESTAMP + 3210);
    consume_and_check(&server, "times", Offset::Offset(offset), 3210, 1790);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_on_first_use_unless_auto_creation_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["num.partitions=3"]);
    produce(&producer(&server, "none"), "auto-created", 10).await;
    let metadata = consumer(&server)
        .fetch_metadata(Some("auto-created"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        metadata.topics()[0].partitions().len(),
        3,
        "num.partitions applies to auto-created topics"
    );
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["auto.create.topics.enable=false"]);
    let producer = client_config(&server)
        .set("message.timeout.ms", "3000")
        .create::<FutureProducer>()
        .unwrap();
    let result = producer
        .send(
            FutureRecord::to("never-created").payload("x").key("k"),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        result.is_err(),
        "a record for an unknown topic is not accepted when auto-creation is off"
    );
    let metadata = consumer(&server).fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(metadata.topics().iter().all(|t| t.name() != "never-created"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_settings_changed_live_take_effect() {
    use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "live", 1, &[("retention.ms", "3600000")]).await;
    let admin: AdminClient<DefaultClientContext> = client_config(&server).create().unwrap();
    let options = AdminOptions::new();
    let producer = client_config(&server)
        .set("message.timeout.ms", "10000")
        .create::<FutureProducer>()
        .unwrap();
    let big = "b".repeat(5000);
    producer
        .send(
            FutureRecord::to("live").partition(0).key("k").payload(&big),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let alter = AlterConfig::new(ResourceSpecifier::Topic("live")).set("max.message.bytes", "1000");
    let altered = admin.alter_configs([&alter], &options).await.unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let refused = producer
        .send(
            FutureRecord::to("live").partition(0).key("k").payload(&big),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
        ),
        "the new max.message.bytes applies at once: {refused:?}"
    );
    producer
        .send(
            FutureRecord::to("live").partition(0).key("k").payload("small"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    assert_eq!(
        topic_setting(&admin, "live", "max.message.bytes").await.as_deref(),
        Some("1000")
    );
    // AlterConfigs replaces the whole set of overrides, as in Kafka.
    assert_eq!(
        topic_setting(&admin, "live", "retention.ms").await.as_deref(),
        Some("604800000")
    );

    // An out-of-range value is refused and changes nothing. (The rdkafka crate does not surface
    // per-resource AlterConfigs errors, so the refusal is checked through DescribeConfigs.)
    let out_of_range = AlterConfig::new(ResourceSpecifier::Topic("live")).set("segment.bytes", "1");
    admin.alter_configs([&out_of_range], &options).await.unwrap();
    assert_eq!(
        topic_setting(&admin, "live", "segment.bytes").await.as_deref(),
        Some("1073741824")
    );
    assert_eq!(
        topic_setting(&admin, "live", "max.message.bytes").await.as_deref(),
        Some("1000")
    );

    let grown = admin
        .create_partitions([&NewPartitions::new("live", 4)], &options)
        .await
        .unwrap();
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    let metadata = consumer(&server)
        .fetch_metadata(Some("live"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
    // A new producer: the old one's metadata still says one partition until its next refresh.
    producer_plain(&server)
        .send(
            FutureRecord::to("live").partition(3).key("k").payload("p3"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let mut up_to = TopicPartitionList::new();
    up_to.add_partition_offset("live", 0, Offset::Offset(1)).unwrap();
    admin.delete_records(&up_to, &options).await.unwrap();
    let (low, high) = consumer(&server)
        .fetch_watermarks("live", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (1, 2), "DeleteRecords moved the log start offset");
}

/// A topic setting as DescribeConfigs reports it.
async fn topic_setting(admin: &AdminClient<DefaultClientContext>, topic: &str, key: &str) -> Option<String> {
    use rdkafka::admin::ResourceSpecifier;
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    described[0].as_ref().unwrap().get(key).and_then(|e| e.value.clone())
}

/// Keys of every record of partition 0, by offset, read from the beginning to the high watermark.
fn read_all_keys(server: &Server, topic: &str) -> Vec<(i64, String)> {
    let consumer = consumer(server);
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(low)).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut keys = Vec::new();
    while keys.len() < (high - low) as usize {
        assert!(
            Instant::now() < deadline,
            "read {} of {} records",
            keys.len(),
            high - low
        );
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.unwrap();
            keys.push((
                message.offset(),
                String::from_utf8(message.key().unwrap().to_vec()).unwrap(),
            ));
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_every_record_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    create_topic(&server, "durable", 1, &[]).await;
    produce(&producer(&server, "zstd"), "durable", 10_000).await;
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(
        dir.path().join(".clean-shutdown").exists(),
        "a clean stop leaves the marker"
    );

    server.restart();
    consume_and_check(&server, "durable", Offset::Beginning, 0, 10_000);
    let offsets = produce(&producer(&server, "none"), "durable", 1).await;
    assert_eq!(offsets, vec![10_000], "the log end offset continues where it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_produce_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    create_topic(&server, "crashy", 1, &[]).await;
    // Keep producing, collecting what was acknowledged, until enough is in; then SIGKILL mid-stream.
    let producer = client_config(&server)
        .set("linger.ms", "1")
        .set("message.timeout.ms", "5000")
        .set("retries", "0")
        .create::<FutureProducer>()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    let mut sent = 0usize;
    while acknowledged.len() < 20_000 {
        while pending.len() < 2000 {
            let key = key(sent);
            let record = FutureRecord::to("crashy").partition(0).key(&key).payload("v");
            pending.push_back((key.clone(), producer.send_result(record).map_err(|(e, _)| e).unwrap()));
            sent += 1;
        }
        let (key, delivery) = pending.pop_front().unwrap();
        let delivered = delivery.await.unwrap().expect("the server is up");
        acknowledged.push((delivered.offset, key));
    }
    server.kill();
    // Whatever was in flight fails or was written; only acknowledged records are promised.
    for (key, delivery) in pending {
        if let Ok(Ok(delivered)) = delivery.await {
            acknowledged.push((delivered.offset, key));
        }
    }
    drop(producer);

    server.restart();
    let stored = read_all_keys(&server, "crashy");
    for (offset, key) in &acknowledged {
        assert_eq!(
            stored.get(*offset as usize).map(|(_, k)| k),
            Some(key),
            "acknowledged record at {offset}"
        );
    }
    assert!(
        stored.iter().enumerate().all(|(i, (offset, _))| *offset == i as i64),
        "offsets without gaps or repeats"
    );
    let offsets = produce(&producer_plain(&server), "crashy", 1).await;
    assert_eq!(
        offsets,
        vec![stored.len() as i64],
        "the log end offset continues after recovery"
    );
}

fn producer_plain(server: &Server) -> FutureProducer {
    producer(server, "none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acks_setting_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "acks", 1, &[]).await;
    let mut expected = 0;
    for acks in ["0", "1", "all"] {
        let producer: FutureProducer = client_config(&server).set("acks", acks).create().unwrap();
        let offsets = produce(&producer, "acks", 100).await;
        if acks == "0" {
            assert!(offsets.iter().all(|o| *o < 0), "acks=0 gets no offsets back");
        } else {
            assert_eq!(offsets, (expected..expected + 100).collect::<Vec<i64>>(), "acks={acks}");
        }
        expected += 100;
        // acks=0 is never answered, so wait for the records to be there.
        common::wait_for("acks=0 records to land", Duration::from_secs(30), || {
            consumer(&server)
                .fetch_watermarks("acks", 0, Duration::from_secs(10))
                .unwrap()
                .1
                == expected
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_is_woken_by_an_append_not_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server, "wake", 1, &[]).await;
    // The consumer's fetches wait up to 20 s for data; an append must end the wait long before that.
    let consumer: BaseConsumer = client_config(&server)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20000")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("wake", 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    // Let the consumer reach its first (empty, waiting) fetch.
    assert!(consumer.poll(Duration::from_millis(1500)).is_none());
    let producer = producer_plain(&server);
    for round in 0..3 {
        let sent = Instant::now();
        produce(&producer, "wake", 1).await;
        let message = loop {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                break message.unwrap();
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "no record after 30 s");
        };
        assert_eq!(message.offset(), round);
        let waited = sent.elapsed();
        assert!(
            waited < Duration::from_secs(10),
            "round {round}: the fetch answered after {waited:?}, at its deadline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_error_codes_reach_the_client() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::types::RDKafkaErrorCode as Code;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin: AdminClient<DefaultClientContext> = client_config(&server).create().unwrap();
    let options = AdminOptions::new();
    create_topic(&server, "exists", 1, &[]).await;
    let cases = [
        (
            NewTopic::new("exists", 1, TopicReplication::Fixed(1)),
            Code::TopicAlreadyExists,
        ),
        (
            NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
            Code::InvalidTopic,
        ),
        (
            NewTopic::new("three-replicas", 1, TopicReplication::Fixed(3)),
            Code::InvalidReplicationFactor,
        ),
        (
            NewTopic::new("no-partitions", 0, TopicReplication::Fixed(1)),
            Code::InvalidPartitions,
        ),
        (
            NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("retention.ms", "-7"),
            Code::InvalidConfig,
        ),
        (
            NewTopic::new("unknown-config", 1, TopicReplication::Fixed(1)).set("no.such", "1"),
            Code::InvalidConfig,
        ),
    ];
    for (topic, expected) in &cases {
        let results = admin.create_topics([topic], &options).await.unwrap();
        assert_eq!(results[0].as_ref().unwrap_err().1, *expected, "{}", topic.name);
    }

    // Fetching past the end, with no reset policy, is OFFSET_OUT_OF_RANGE.
    produce(&producer_plain(&server), "exists", 3).await;
    let consumer: BaseConsumer = client_config(&server)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("exists", 0, Offset::Offset(1000))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no OFFSET_OUT_OF_RANGE");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Err(KafkaError::MessageConsumption(code))) => {
                assert!(
                    matches!(
                        code,
                        RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset
                    ),
                    "{code:?}"
                );
                break;
            }
            Some(other) => panic!("expected an offset error, got {other:?}"),
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_shrinks_to_the_newest_value_of_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["log.retention.check.interval.ms=100", "log.cleaner.backoff.ms=100"],
    );
    create_topic(
        &server,
        "latest",
        1,
        &[("cleanup.policy", "compact"), ("segment.bytes", "4096")],
    )
    .await;
    // Small batches, so that the records spread over many segments (the active one is never compacted).
    let producer: FutureProducer = client_config(&server).set("batch.num.messages", "20").create().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..2000 {
        let (key, value) = (format!("key-{}", i % 10), format!("value-{i}"));
        deliveries.push(
            producer
                .send_result(FutureRecord::to("latest").partition(0).key(&key).payload(&value))
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    // Reads everything from the start: (key, value) in offset order.
    let read_all = || {
        let consumer = consumer(&server);
        let (_, high) = consumer.fetch_watermarks("latest", 0, Duration::from_secs(10)).unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset("latest", 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while out.last().is_none_or(|(offset, _, _)| offset + 1 < high) {
            assert!(Instant::now() < deadline, "could not read to the end");
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.unwrap();
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                out.push((message.offset(), text(message.key()), text(message.payload())));
            }
        }
        out
    };
    common::wait_for("compaction to shrink the topic", TIMEOUT, || read_all().len() < 400);
    let survivors = read_all();
    for k in 0..10 {
        let key = format!("key-{k}");
        let last = survivors
            .iter()
            .rev()
            .find(|(_, sk, _)| *sk == key)
            .map(|(_, _, v)| v.clone());
        assert_eq!(last, Some(format!("value-{}", 1990 + k)), "the newest value of {key}");
    }
    assert_eq!(survivors.last().unwrap().0, 1999, "offsets are kept");
}
