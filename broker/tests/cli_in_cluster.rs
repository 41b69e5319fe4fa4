//! The `strata` client commands against three `strata server` nodes, each a broker and a controller: a topic
//! whose partitions are led by all three is produced to through one node and read back through another;
//! a consumer group's coordinator is on one node and the group commands work through the others; `group
//! list` through any node lists the groups of all; the benchmarks spread over the leaders.
//!
//! The commands are given one node as `--bootstrap` and must find leaders and coordinators themselves:
//! requests sent to the bootstrap node alone would be refused NOT_LEADER_OR_FOLLOWER or NOT_COORDINATOR.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cli::{strata, table};
use common::cluster::Cluster;
use common::{Server, wait_for};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use strata_protocol::client::Client;
use strata_protocol::client::partitioner::partition_for_key;

const TOPIC: &str = "spread";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 3000;
const GROUP: &str = "cli-readers";
/// Bound for one command, or one wait, on a slow, loaded machine.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command that must succeed and returns its standard output.
fn ok(node: &Server, args: &[&str]) -> String {
    strata(&node.addr, args, b"").ok()
}

/// `group describe`'s partitions of [`TOPIC`]: partition -> (committed, log end, lag), as printed.
fn described_offsets(output: &str) -> BTreeMap<i32, (i64, i64, i64)> {
    table(output, "TOPIC")
        .into_iter()
        .filter(|row| row[0] == TOPIC)
        .map(|row| {
            let number = |cell: &String| cell.parse::<i64>().unwrap_or_else(|_| panic!("{cell} in {row:?}"));
            (
                row[1].parse().unwrap(),
                (number(&row[2]), number(&row[3]), number(&row[4])),
            )
        })
        .collect()
}

/// The leader of each partition of `topic`, as `node` describes it, once every partition has one.
async fn leaders(node: &Server, topic: &str) -> Vec<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(mut client) = Client::connect(&node.addr).await
            && let Ok(described) = client.topic_metadata(topic, false).await
            && described.partitions.iter().all(|p| p.leader >= 0)
        {
            return described.partitions.iter().map(|p| p.leader).collect();
        }
        assert!(Instant::now() < deadline, "{topic} has no leaders within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_find_leaders_and_coordinators_through_any_node() {
    let cluster = Cluster::start();
    let node = |id: i32| cluster.node(id);

    // A topic created through node 1, its partitions led by all three nodes.
    let create = [
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "6",
        "--replication-factor",
        "3",
    ];
    assert_eq!(ok(node(1), &create), format!("Created topic {TOPIC}.\n"));
    let led_by: BTreeSet<i32> = leaders(node(1), TOPIC).await.into_iter().collect();
    assert_eq!(led_by, BTreeSet::from([1, 2, 3]), "leadership is spread");

    // Produced through node 1 at once: two thirds of the partitions are led elsewhere, and their leaders
    // may not even have heard of the topic yet.
    let input: String = (0..RECORDS).map(|i| format!("key-{i}:value-{i}\n")).collect();
    let produce = ["produce", TOPIC, "--key-separator", ":", "--acks", "all"];
    let produced = strata(&node(1).addr, &produce, input.as_bytes());
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);
    assert_eq!(produced.stderr, format!("{RECORDS} records produced\n"));

    // Read back through node 2: every record once, in its key's partition, in offset order.
    let consume = ["consume", TOPIC, "--from", "earliest", "--format", "%p %o %k %v"];
    let consumed = ok(node(2), &consume);
    let mut values = BTreeSet::new();
    let mut last_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for line in consumed.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (partition, offset): (i32, i64) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
        assert_eq!(partition, partition_for_key(fields[2].as_bytes(), PARTITIONS), "{line}");
        assert_eq!(fields[3], fields[2].replace("key", "value"), "{line}");
        if let Some(last) = last_offsets.insert(partition, offset) {
            assert!(offset > last, "offset order in partition {partition}: {line}");
        }
        assert!(values.insert(fields[3].to_owned()), "read twice: {line}");
    }
    assert_eq!(values.len(), RECORDS);
    assert_eq!(last_offsets.len(), PARTITIONS as usize, "every partition has records");

    // `topic describe` through node 3: the log end offsets come from each partition's leader.
    let described = ok(node(3), &["topic", "describe", TOPIC]);
    let ends: i64 = described
        .lines()
        .filter_map(|line| line.split("LogEndOffset: ").nth(1))
        .map(|end| end.trim().parse::<i64>().unwrap())
        .sum();
    assert_eq!(ends, RECORDS as i64, "{described}");

    // A consumer group reads everything and commits.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("broker.address.family", "v4")
        .set("group.id", GROUP)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut read = 0;
    while read < RECORDS {
        assert!(Instant::now() < deadline, "the group read {read} of {RECORDS}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap();
            read += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();

    // The group commands go through a node that does not coordinate the group.
    let coordinator = Client::connect(&node(1).addr)
        .await
        .unwrap()
        .find_coordinator(GROUP)
        .await
        .unwrap()
        .node_id;
    let elsewhere = node(if coordinator == 1 { 2 } else { 1 });
    let active = ok(elsewhere, &["group", "describe", GROUP]);
    assert!(
        active.contains("state Stable") && active.contains("1 member"),
        "{active}"
    );
    let offsets = described_offsets(&active);
    assert_eq!(offsets.len(), PARTITIONS as usize, "{active}");
    assert!(
        offsets
            .values()
            .all(|&(committed, end, lag)| committed == end && lag == 0),
        "{active}"
    );
    assert_eq!(
        offsets.values().map(|(committed, _, _)| committed).sum::<i64>(),
        RECORDS as i64
    );
    for id in 1..=3 {
        let listed = ok(node(id), &["group", "list"]);
        assert!(
            table(&listed, "GROUP").iter().any(|row| row[0] == GROUP),
            "group list through node {id}: {listed}"
        );
    }

    // Once the consumer has left, its offsets go back to the start.
    drop(consumer);
    wait_for("the group to have no members", TIMEOUT, || {
        ok(elsewhere, &["group", "describe", GROUP]).contains("no members")
    });
    let reset = [
        "group",
        "reset-offsets",
        GROUP,
        "--topic",
        TOPIC,
        "--to-earliest",
        "--execute",
    ];
    let planned = ok(elsewhere, &reset);
    assert!(
        planned.contains(&format!("Committed the new offsets of group {GROUP}.")),
        "{planned}"
    );
    let plan = table(&planned, "TOPIC");
    assert_eq!(plan.len(), PARTITIONS as usize, "{planned}");
    assert!(plan.iter().all(|row| row[3] == "0"), "{planned}");
    let after = described_offsets(&ok(elsewhere, &["group", "describe", GROUP]));
    assert!(
        after
            .values()
            .all(|&(committed, end, lag)| committed == 0 && lag == end),
        "{after:?}"
    );
    assert_eq!(after.values().map(|(_, _, lag)| lag).sum::<i64>(), RECORDS as i64);

    // The benchmarks: a topic the benchmark creates through node 3, with a partition on each node.
    let bench_produce = [
        "bench",
        "produce",
        "--topic",
        "bench-spread",
        "--partitions",
        "3",
        "--records",
        "30000",
    ];
    let sent = ok(node(3), &bench_produce);
    assert!(sent.starts_with("30000 records sent, "), "{sent}");
    let led_by: BTreeSet<i32> = leaders(node(3), "bench-spread").await.into_iter().collect();
    assert_eq!(led_by.len(), 3, "one partition on each node");
    let bench_consume = ["bench", "consume", "--topic", "bench-spread", "--records", "30000"];
    let received = ok(node(2), &bench_consume);
    assert!(received.starts_with("30000 records consumed, "), "{received}");
}
