//! `strata group list | describe | delete | reset-offsets` against a real `strata server` process, with
//! offsets committed and replayed by librdkafka consumers.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::cli::{strata, table};
use common::{Server, wait_for};
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use strata_protocol::client::admin::NewTopic;
use strata_protocol::client::{Acks, BatchBuilder, Client, Compression, Headers};

/// The longest any one command or wait may take.
const TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "events";
const PARTITIONS: i32 = 2;
/// Records per partition; record `i` has timestamp `base + i` seconds and value `p-i`.
const RECORDS: i64 = 10;

/// Runs a command that must succeed and returns its output.
fn ok(server: &Server, args: &[&str]) -> String {
    strata(&server.addr, args, b"").ok()
}

/// Runs a command that must fail and returns its one-line error.
fn fails(server: &Server, args: &[&str]) -> String {
    strata(&server.addr, args, b"").failed()
}

/// `describe`'s partitions: (partition) -> (committed, log end, lag), as printed.
fn described_offsets(server: &Server, group: &str) -> BTreeMap<i32, (String, String, String)> {
    let out = ok(server, &["group", "describe", group]);
    table(&out, "TOPIC")
        .into_iter()
        .filter(|row| row[0] == TOPIC)
        .map(|row| {
            (
                row[1].parse().unwrap(),
                (row[2].clone(), row[3].clone(), row[4].clone()),
            )
        })
        .collect()
}

/// The committed offsets of `group` in `TOPIC`, as `describe` shows them.
fn committed(server: &Server, group: &str) -> Vec<String> {
    described_offsets(server, group)
        .into_values()
        .map(|(c, _, _)| c)
        .collect()
}

/// The reset plan printed: (partition, current, new).
fn plan(output: &str) -> Vec<(i32, String, i64)> {
    table(output, "TOPIC")
        .into_iter()
        .map(|row| {
            assert_eq!(row[0], TOPIC);
            (row[1].parse().unwrap(), row[2].clone(), row[3].parse().unwrap())
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn consumer_config(server: &Server, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        // A group without a commit for a partition is a test failure, not a silent start somewhere.
        .set("auto.offset.reset", "error")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    config
}

/// Creates `TOPIC` with `RECORDS` records per partition, timestamped a second apart from `base_ms`.
fn setup(server: &Server, base_ms: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(&server.addr).await.unwrap();
        let topic = NewTopic {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: Vec::new(),
        };
        client.create_topic(&topic).await.unwrap();
        for p in 0..PARTITIONS {
            let mut batch = BatchBuilder::new(Compression::None);
            for i in 0..RECORDS {
                let value = Bytes::from(format!("{p}-{i}"));
                batch.push(None, Some(value), Headers::new(), base_ms + i * 1000);
            }
            client
                .produce(TOPIC, p, Acks::Leader, batch.build().unwrap())
                .await
                .unwrap();
        }
    });
}

#[test]
fn groups_are_listed_described_reset_replayed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    // Whole seconds, a few minutes ago.
    let base_ms = (now_ms() / 1000 - 300) * 1000;
    setup(&server, base_ms);

    // A consumer that commits without joining (as an assign()-only consumer does): an empty group.
    let committer: BaseConsumer = consumer_config(&server, "replay").create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(10)).unwrap();
    offsets.add_partition_offset(TOPIC, 1, Offset::Offset(7)).unwrap();
    committer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(committer);

    let listed = ok(&server, &["group", "list"]);
    assert!(
        table(&listed, "GROUP").contains(&["replay", "classic", "Empty"].map(String::from).to_vec()),
        "{listed}"
    );
    let described = ok(&server, &["group", "describe", "replay"]);
    assert!(
        described.starts_with("Group replay: type classic, state Empty"),
        "{described}"
    );
    let offsets = described_offsets(&server, "replay");
    assert_eq!(offsets[&0], ("10".into(), "10".into(), "0".into()), "{described}");
    assert_eq!(offsets[&1], ("7".into(), "10".into(), "3".into()), "{described}");
    assert_eq!(
        fails(&server, &["group", "describe", "absent"]),
        "strata: group absent does not exist"
    );

    // A dry run prints the plan and commits nothing.
    let reset = |target: &[&str], topic: &str, mode: &str| {
        let mut args = vec!["group", "reset-offsets", "replay", "--topic", topic];
        args.extend_from_slice(target);
        args.push(mode);
        ok(&server, &args)
    };
    let dry = reset(&["--to-earliest"], TOPIC, "--dry-run");
    assert_eq!(plan(&dry), vec![(0, "10".into(), 0), (1, "7".into(), 0)], "{dry}");
    assert_eq!(committed(&server, "replay"), ["10", "7"]);
    // Exactly one mode is required.
    let neither = strata(
        &server.addr,
        &["group", "reset-offsets", "replay", "--topic", TOPIC, "--to-earliest"],
        b"",
    );
    assert_eq!(neither.code, Some(2), "{}", neither.stderr);

    let executed = reset(&["--to-earliest"], TOPIC, "--execute");
    assert_eq!(
        plan(&executed),
        vec![(0, "10".into(), 0), (1, "7".into(), 0)],
        "{executed}"
    );
    assert_eq!(committed(&server, "replay"), ["0", "0"]);

    // The first record at or after the time: record 5 (base + 5 s) for base + 4.5 s.
    let at = common::rfc3339(base_ms + 4500);
    let by_time = reset(&["--to-datetime", &at], TOPIC, "--execute");
    assert_eq!(
        plan(&by_time),
        vec![(0, "0".into(), 5), (1, "0".into(), 5)],
        "{by_time}"
    );
    // Past the last record: the log end.
    let later = common::rfc3339(base_ms + 3_600_000);
    let after_all = reset(&["--to-datetime", &later], &format!("{TOPIC}:1"), "--dry-run");
    assert_eq!(plan(&after_all), vec![(1, "5".into(), 10)], "{after_all}");
    // --to-offset is kept within the log; one partition only.
    let clamped = reset(&["--to-offset", "100"], &format!("{TOPIC}:1"), "--execute");
    assert_eq!(plan(&clamped), vec![(1, "5".into(), 10)], "{clamped}");
    assert_eq!(committed(&server, "replay"), ["5", "10"]);
    let shifted = reset(&["--shift-by", "-2"], TOPIC, "--execute");
    assert_eq!(
        plan(&shifted),
        vec![(0, "5".into(), 3), (1, "10".into(), 8)],
        "{shifted}"
    );
    let offsets = described_offsets(&server, "replay");
    assert_eq!(offsets[&0], ("3".into(), "10".into(), "7".into()));
    assert_eq!(offsets[&1], ("8".into(), "10".into(), "2".into()));
    let too_far = reset(&["--shift-by", "-50"], &format!("{TOPIC}:0"), "--dry-run");
    assert_eq!(plan(&too_far), vec![(0, "3".into(), 0)], "{too_far}");

    // A consumer of the group resumes at the reset point and reads exactly the records from it.
    let consumer: BaseConsumer = consumer_config(&server, "replay").create().unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let expected: Vec<(i32, i64)> = (3..RECORDS)
        .map(|o| (0, o))
        .chain((8..RECORDS).map(|o| (1, o)))
        .collect();
    let mut read: Vec<(i32, i64)> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while read.len() < expected.len() {
        assert!(Instant::now() < deadline, "replayed only {read:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            let value = std::str::from_utf8(message.payload().unwrap()).unwrap().to_owned();
            assert_eq!(value, format!("{}-{}", message.partition(), message.offset()));
            assert_eq!(message.timestamp().to_millis(), Some(base_ms + message.offset() * 1000));
            read.push((message.partition(), message.offset()));
        }
    }
    read.sort_unstable();
    assert_eq!(read, expected);
    let mut done = TopicPartitionList::new();
    done.add_partition_offset(TOPIC, 0, Offset::Offset(RECORDS)).unwrap();
    done.add_partition_offset(TOPIC, 1, Offset::Offset(RECORDS)).unwrap();
    consumer.commit(&done, CommitMode::Sync).unwrap();

    // While the consumer is a member: describe shows it with its assignment; resets and deletes are refused.
    let mut described = String::new();
    wait_for("the group to be Stable", TIMEOUT, || {
        consumer.poll(Duration::from_millis(10));
        described = ok(&server, &["group", "describe", "replay"]);
        described.starts_with("Group replay: type classic, state Stable")
    });
    assert!(described.contains("protocol consumer/"), "{described}");
    let members = table(&described, "MEMBER-ID");
    assert_eq!(members.len(), 1, "{described}");
    assert_eq!(members[0].last().unwrap(), &format!("{TOPIC}:0,1"), "{described}");
    let partitions = table(&described, "TOPIC");
    assert!(
        partitions
            .iter()
            .all(|row| row[2] == "10" && row[4] == "0" && row[5] == members[0][0]),
        "{described}"
    );
    let refused = "strata: group replay has active members; stop them first";
    for mode in ["--execute", "--dry-run"] {
        let args = [
            "group",
            "reset-offsets",
            "replay",
            "--topic",
            TOPIC,
            "--to-earliest",
            mode,
        ];
        assert_eq!(fails(&server, &args), refused);
    }
    assert_eq!(committed(&server, "replay"), ["10", "10"]);
    // The coordinator itself refuses an admin commit for a group with members.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let commit_error = runtime.block_on(async {
        let mut client = Client::connect(&server.addr).await.unwrap();
        client
            .commit_group_offsets("replay", &[(TOPIC, 0, 0)])
            .await
            .unwrap_err()
    });
    assert_eq!(
        commit_error.kafka_error(),
        Some(ResponseError::UnknownMemberId),
        "{commit_error}"
    );
    assert_eq!(fails(&server, &["group", "delete", "replay"]), refused);

    // Once it leaves, the group can be deleted, and its offsets go with it.
    drop(consumer);
    wait_for("the member to leave", TIMEOUT, || {
        ok(&server, &["group", "describe", "replay"]).contains("no members")
    });
    assert_eq!(ok(&server, &["group", "delete", "replay"]), "Deleted group replay.\n");
    assert!(!ok(&server, &["group", "list"]).contains("replay"));
    assert_eq!(
        fails(&server, &["group", "describe", "replay"]),
        "strata: group replay does not exist"
    );
    let deleted_again = fails(&server, &["group", "delete", "replay"]);
    assert_eq!(deleted_again, "strata: group replay does not exist");

    // A consumer-protocol group (KIP-848): listed with its type, described through ConsumerGroupDescribe
    // with its epochs, assignor and each member's epoch and partitions.
    // No session or heartbeat settings: with the consumer protocol they are the coordinator's.
    let modern: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4")
        .set("group.id", "modern")
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    modern.subscribe(&[TOPIC]).unwrap();
    let mut described = String::new();
    wait_for("the consumer group to be Stable", TIMEOUT, || {
        modern.poll(Duration::from_millis(10));
        // Until the consumer joins, the group does not exist.
        described = strata(&server.addr, &["group", "describe", "modern"], b"").stdout;
        described.starts_with("Group modern: type consumer, state Stable")
    });
    assert!(described.contains("assignor uniform, 1 member"), "{described}");
    let members = table(&described, "MEMBER-ID");
    assert_eq!(members.len(), 1, "{described}");
    assert_eq!(members[0].last().unwrap(), &format!("{TOPIC}:0,1"), "{described}");
    let listed = ok(&server, &["group", "list"]);
    assert!(
        table(&listed, "GROUP").contains(&["modern", "consumer", "Stable"].map(String::from).to_vec()),
        "{listed}"
    );
}
