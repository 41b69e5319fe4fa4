//! Requests exactly as librdkafka sends them, kept as fixtures in `tests/fixtures/librdkafka/`: every one
//! must decode at a version the broker advertises. They also seed the request-decoding fuzz target
//! (`fuzz/`).
//!
//! To capture them again (for example after upgrading librdkafka):
//!
//! ```sh
//! cargo test -p strata-broker --test fixtures -- --ignored capture_librdkafka_fixtures
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/librdkafka")
}

fn fixtures() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures are committed")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect()
}

#[test]
fn every_captured_librdkafka_request_decodes_at_an_advertised_version() {
    let fixtures = fixtures();
    let mut apis = std::collections::BTreeSet::new();
    for (path, frame) in &fixtures {
        let request = strata_protocol::request::decode(frame.clone().into(), strata_broker::api::supported)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        apis.insert(request.api_key as i16);
    }
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::CreateTopics,
    ] {
        assert!(
            apis.contains(&(api as i16)),
            "no {api:?} fixture among {} files",
            fixtures.len()
        );
    }
}

/// A cheap stand-in for the fuzz target that runs on stable in every test run: thousands of mutations of
/// each real request (flipped bits, truncation, overwritten 4-byte lengths) must be refused or decoded,
/// never crash the decoder.
#[test]
fn mutated_requests_never_crash_the_decoder() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (_, frame) in fixtures() {
        for _ in 0..2000 {
            let mut mutated = frame.clone();
            match next() % 3 {
                0 => {
                    let at = next() as usize % mutated.len();
                    mutated[at] ^= 1 << (next() % 8);
                }
                1 => mutated.truncate(next() as usize % mutated.len()),
                _ if mutated.len() >= 4 => {
                    let at = next() as usize % (mutated.len() - 3);
                    mutated[at..at + 4].copy_from_slice(&(next() as i32).to_be_bytes());
                }
                _ => {}
            }
            let _ = strata_protocol::request::decode(mutated.into(), strata_broker::api::supported);
        }
    }
}

/// Forwards connections to `upstream`, recording every request frame the client sends.
async fn recording_proxy(listener: TcpListener, upstream: String, frames: Arc<Mutex<Vec<Vec<u8>>>>) {
    loop {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(&upstream).await.unwrap();
        let frames = frames.clone();
        tokio::spawn(async move {
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
            loop {
                let mut size = [0u8; 4];
                if from_client.read_exact(&mut size).await.is_err() {
                    return;
                }
                let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
                if from_client.read_exact(&mut frame).await.is_err() {
                    return;
                }
                frames.lock().unwrap().push(frame.clone());
                if to_server.write_all(&size).await.is_err() || to_server.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites the committed fixtures; run by hand"]
async fn capture_librdkafka_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    // The server advertises the proxy, so every connection librdkafka opens goes through it.
    let server = common::Server::start_with_flags(dir.path(), &[], &["--advertise", &proxy_addr]);
    let frames = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(recording_proxy(proxy, server.addr.clone(), frames.clone()));

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &proxy_addr)
        .set("broker.address.family", "v4");
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let options = AdminOptions::new();
    let topic = NewTopic::new("fixtures", 1, TopicReplication::Fixed(1)).set("retention.ms", "600000");
    admin.create_topics([&topic], &options).await.unwrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer: FutureProducer = config.clone().set("compression.type", codec).create().unwrap();
        for i in 0..3 {
            let key = format!("{codec}-{i}");
            producer
                .send(
                    FutureRecord::to("fixtures").key(&key).payload("payload"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "fixtures")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("fixtures", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut received = 0;
    while received < 15 {
        if let Some(message) = consumer.poll(Duration::from_secs(1)) {
            message.unwrap();
            received += 1;
        }
    }
    let mut times = TopicPartitionList::new();
    times.add_partition_offset("fixtures", 0, Offset::Offset(0)).unwrap();
    consumer.offsets_for_times(times, Duration::from_secs(10)).unwrap();
    consumer
        .fetch_watermarks("fixtures", 0, Duration::from_secs(10))
        .unwrap();
    let resource = ResourceSpecifier::Topic("fixtures");
    admin.describe_configs([&resource], &options).await.unwrap();
    admin
        .alter_configs([&AlterConfig::new(resource).set("retention.ms", "700000")], &options)
        .await
        .unwrap();
    admin
        .create_partitions([&NewPartitions::new("fixtures", 2)], &options)
        .await
        .unwrap();
    let mut up_to = TopicPartitionList::new();
    up_to.add_partition_offset("fixtures", 0, Offset::Offset(1)).unwrap();
    admin.delete_records(&up_to, &options).await.unwrap();
    admin.delete_topics(&["fixtures"], &options).await.unwrap();

    // Up to five fixtures per API and version (the produce requests of each codec among them).
    let out = fixtures_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut seen = std::collections::BTreeMap::<(String, i16), usize>::new();
    for frame in frames.lock().unwrap().iter() {
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let name = ApiKey::try_from(key).map_or(format!("key{key}"), |k| format!("{k:?}"));
        let count = seen.entry((name.clone(), version)).or_default();
        if *count < 5 {
            *count += 1;
            std::fs::write(out.join(format!("{name}-v{version}-{count}.bin")), frame).unwrap();
        }
    }
    println!(
        "captured {} fixtures in {}",
        seen.values().sum::<usize>(),
        out.display()
    );
}
