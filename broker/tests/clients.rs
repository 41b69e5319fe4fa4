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
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap();
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
        let delivered = delivery
            .await
            .expect("delivery not cancelled")
            .expect("delivered");
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
        assert_eq!(
            message.offset(),
            next as i64,
            "records arrive in order, without gaps"
        );
        assert_eq!(message.key(), Some(key(next).as_bytes()));
        assert_eq!(message.payload(), Some(value(next).as_bytes()));
        assert_eq!(
            message.timestamp().to_millis(),
            Some(BASE_TIMESTAMP + next as i64)
        );
        let header = message.headers().expect("headers").get(0);
        assert_eq!(
            (header.key, header.value),
            ("index", Some(next.to_string().as_bytes()))
        );
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
