//! `strata share-group list | describe | reset-offsets | delete-offsets | delete` against a real `strata server` process,
//! with a share group member (KIP-932) joining, fetching and leaving through the protocol client.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Server;
use common::cli::{strata, table};
use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{GroupId, ShareFetchRequest, ShareGroupHeartbeatRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::admin::NewTopic;
use strata_protocol::client::{Acks, BatchBuilder, Client, Compression, Headers};
use uuid::Uuid;

/// The longest any one wait may take.
const TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "jobs";
const PARTITIONS: i32 = 2;
/// Records per partition.
const RECORDS: i64 = 10;
const GROUP: &str = "workers";
const MEMBER: &str = "worker-1";

/// Runs a command that must succeed and returns its output.
fn ok(server: &Server, args: &[&str]) -> String {
    strata(&server.addr, args, b"").ok()
}

/// Runs a command that must fail and returns its one-line error.
fn fails(server: &Server, args: &[&str]) -> String {
    strata(&server.addr, args, b"").failed()
}

/// `share-group list`'s rows.
fn listed(server: &Server) -> Vec<Vec<String>> {
    table(&ok(server, &["share-group", "list"]), "GROUP")
}

/// `describe`'s partitions of `TOPIC`: (partition, start offset, log end, lag), as printed.
fn described(server: &Server, group: &str) -> Vec<(i32, String, String, String)> {
    let out = ok(server, &["share-group", "describe", group]);
    table(&out, "TOPIC")
        .into_iter()
        .filter(|row| row[0] == TOPIC)
        .map(|row| (row[1].parse().unwrap(), row[2].clone(), row[3].clone(), row[4].clone()))
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

fn row(partition: i32, start: i64, end: i64, lag: i64) -> (i32, String, String, String) {
    (partition, start.to_string(), end.to_string(), lag.to_string())
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `TOPIC` with `RECORDS` records per partition; returns its id.
fn setup(server: &Server) -> Uuid {
    runtime().block_on(async {
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
                batch.push(
                    None,
                    Some(Bytes::from(format!("{p}-{i}"))),
                    Headers::new(),
                    1_780_000_000_000,
                );
            }
            client
                .produce(TOPIC, p, Acks::Leader, batch.build().unwrap())
                .await
                .unwrap();
        }
        client.topic_metadata(TOPIC, false).await.unwrap().id
    })
}

/// `MEMBER` joins `GROUP` (through its coordinator, once there is one) and fetches once from both
/// partitions, which starts the group on them at the log end (`share.auto.offset.reset` latest).
fn join_and_fetch(server: &Server, topic_id: Uuid) {
    runtime().block_on(async {
        let mut client = Client::connect(&server.addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let request = ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(s(MEMBER))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]));
            let joined = client.send(request).await.unwrap();
            if joined.error_code == 0 {
                break;
            }
            // COORDINATOR_NOT_AVAILABLE (15) or NOT_COORDINATOR (16) while __consumer_offsets is made: a
            // FindCoordinator makes it.
            assert!([14, 15, 16].contains(&joined.error_code), "{joined:?}");
            assert!(tokio::time::Instant::now() < deadline, "no coordinator");
            let _ = client.find_coordinator(GROUP).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(GROUP))))
            .with_member_id(Some(s(MEMBER)))
            .with_share_session_epoch(0)
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_max_records(100)
            .with_topics(vec![
                FetchTopic::default().with_topic_id(topic_id).with_partitions(
                    (0..PARTITIONS)
                        .map(|p| FetchPartition::default().with_partition_index(p))
                        .collect(),
                ),
            ]);
        let fetched = client.send(request).await.unwrap();
        assert_eq!(fetched.error_code, 0, "{fetched:?}");
    });
}

fn leave(server: &Server) {
    runtime().block_on(async {
        let mut client = Client::connect(&server.addr).await.unwrap();
        let request = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(MEMBER))
            .with_member_epoch(-1);
        let left = client.send(request).await.unwrap();
        assert_eq!(left.error_code, 0, "{left:?}");
    });
}

#[test]
fn share_groups_are_listed_described_reset_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let topic_id = setup(&server);
    join_and_fetch(&server, topic_id);

    // A member: the group is stable, the member has every partition, and nothing is left to deliver.
    assert_eq!(listed(&server), vec![vec![GROUP.to_owned(), "Stable".to_owned()]]);
    let out = ok(&server, &["share-group", "describe", GROUP]);
    assert!(out.starts_with("Share group workers: state Stable"), "{out}");
    let members = table(&out, "MEMBER-ID");
    assert_eq!(members.len(), 1, "{out}");
    assert_eq!(
        (members[0][0].as_str(), members[0][3].as_str()),
        (MEMBER, "jobs:0,1"),
        "{out}"
    );
    assert_eq!(described(&server, GROUP), vec![row(0, 10, 10, 0), row(1, 10, 10, 0)]);

    // Nothing changes while it has a member.
    let refused = "share group workers has active members; stop them first";
    let error = fails(
        &server,
        &[
            "share-group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(error.contains(refused), "{error}");
    let error = fails(&server, &["share-group", "delete", GROUP]);
    assert!(error.contains(refused), "{error}");
    let error = fails(&server, &["share-group", "delete-offsets", GROUP, "--topic", TOPIC]);
    assert!(error.contains(refused), "{error}");

    leave(&server);
    assert_eq!(listed(&server), vec![vec![GROUP.to_owned(), "Empty".to_owned()]]);

    // A dry run by default: the plan, and nothing changed.
    let out = ok(
        &server,
        &["share-group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest"],
    );
    assert_eq!(plan(&out), vec![(0, "10".to_owned(), 0), (1, "10".to_owned(), 0)]);
    assert!(out.contains("Dry run"), "{out}");
    assert_eq!(described(&server, GROUP), vec![row(0, 10, 10, 0), row(1, 10, 10, 0)]);
    // An offset past the end is kept at the end.
    let out = ok(
        &server,
        &[
            "share-group",
            "reset-offsets",
            GROUP,
            "--topic",
            "jobs:1",
            "--to-offset",
            "99",
        ],
    );
    assert_eq!(plan(&out), vec![(1, "10".to_owned(), 10)]);

    // Partition 1 back to offset 4: six records to deliver again.
    let out = ok(
        &server,
        &[
            "share-group",
            "reset-offsets",
            GROUP,
            "--topic",
            "jobs:1",
            "--to-offset",
            "4",
            "--execute",
        ],
    );
    assert_eq!(plan(&out), vec![(1, "10".to_owned(), 4)]);
    assert!(
        out.contains("Changed the start offsets of share group workers."),
        "{out}"
    );
    assert_eq!(described(&server, GROUP), vec![row(0, 10, 10, 0), row(1, 4, 10, 6)]);

    // Deleted, it is gone.
    let out = ok(&server, &["share-group", "delete", GROUP]);
    assert_eq!(out.trim(), "Deleted share group workers.");
    assert_eq!(listed(&server), Vec::<Vec<String>>::new());
    let error = fails(&server, &["share-group", "describe", GROUP]);
    assert!(error.contains("share group workers does not exist"), "{error}");
    let error = fails(&server, &["share-group", "delete", GROUP]);
    assert!(error.contains("share group workers does not exist"), "{error}");

    // A group that never ran may be given its start offsets before it starts.
    let out = ok(
        &server,
        &[
            "share-group",
            "reset-offsets",
            "fresh",
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(plan(&out), vec![(0, "-".to_owned(), 0), (1, "-".to_owned(), 0)]);
    let out = ok(&server, &["share-group", "describe", "fresh"]);
    assert!(out.starts_with("Share group fresh: state Empty"), "{out}");
    assert_eq!(described(&server, "fresh"), vec![row(0, 0, 10, 10), row(1, 0, 10, 10)]);
    assert_eq!(listed(&server), vec![vec!["fresh".to_owned(), "Empty".to_owned()]]);

    // Its offsets forgotten, nothing is left of it.
    let out = ok(&server, &["share-group", "delete-offsets", "fresh", "--topic", TOPIC]);
    assert_eq!(out.trim(), "Deleted the start offsets of share group fresh for jobs.");
    let error = fails(&server, &["share-group", "describe", "fresh"]);
    assert!(error.contains("share group fresh does not exist"), "{error}");
    let error = fails(&server, &["share-group", "delete-offsets", "fresh", "--topic", TOPIC]);
    assert!(error.contains("share group fresh does not exist"), "{error}");
}
