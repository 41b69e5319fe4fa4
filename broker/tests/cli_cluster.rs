//! `strata cluster describe`, DescribeQuorum and DescribeCluster against real `strata server` processes: a
//! single node (broker and controller in one, so a quorum of one voter that leads itself), and that node with
//! a second, broker-only node that stops and so is fenced.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::cli::{strata, table};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::Client;
use strata_protocol::client::admin::{ClusterDescription, METADATA_TOPIC};

/// The longest the command may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn cluster_describe_shows_the_quorum_of_one_and_the_live_broker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ran = strata(&server.addr, &["cluster", "describe"], b"");
    assert_eq!(ran.code, Some(0), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    eprintln!("{}", ran.stdout);

    let first = ran.stdout.lines().next().unwrap();
    assert!(first.starts_with("Cluster "), "{first}");
    assert!(first.contains(": quorum leader 1, term "), "{first}");
    let committed: i64 = first.rsplit(' ').next().unwrap().parse().unwrap();

    let voters = table(&ran.stdout, "VOTER");
    assert_eq!(voters.len(), 1, "{}", ran.stdout);
    let voter = &voters[0];
    assert_eq!(voter[0], "1");
    assert!(voter[1].starts_with("127.0.0.1:"), "the controller listener: {voter:?}");
    let log_end: i64 = voter[2].parse().expect("the leader knows its own log end");
    assert!(log_end >= committed, "{voter:?} vs committed {committed}");
    assert_eq!(voter[3], "0", "the leader has no lag");

    let brokers = table(&ran.stdout, "BROKER");
    assert_eq!(brokers, [["1", server.addr.as_str(), "-", "live"]], "{}", ran.stdout);
}

#[tokio::test]
async fn describe_quorum_names_the_leader_and_its_one_voter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    assert_eq!(
        client.broker_versions(kafka_protocol::messages::ApiKey::DescribeQuorum),
        Some((0, 2))
    );

    let quorum = client.describe_quorum().await.unwrap();
    assert_eq!(quorum.leader_id, Some(1));
    assert!(quorum.leader_epoch >= 1, "{quorum:?}");
    assert_eq!(quorum.voters.len(), 1, "{quorum:?}");
    assert_eq!(quorum.voters[0].id, 1);
    assert!(quorum.voters[0].log_end_offset.is_some(), "{quorum:?}");
    let address = quorum.voters[0]
        .address
        .as_deref()
        .expect("v2 gives the voter's listener");
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(quorum.observers.is_empty());

    // Raw, at every version: v0 and v1 without nodes.
    for version in 0..=2 {
        let request = DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
        ]);
        let response = client.send_at(request, version).await.unwrap();
        assert_eq!(response.error_code, 0, "v{version}");
        let partition = &response.topics[0].partitions[0];
        assert_eq!((partition.error_code, partition.leader_id.0), (0, 1), "v{version}");
        assert_eq!(partition.current_voters.len(), 1, "v{version}");
        assert_eq!(response.nodes.len(), usize::from(version == 2), "v{version}");
    }

    // Any other partition is unknown, on the partition, as Kafka answers.
    let other = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(1)]),
    ]);
    let response = client.send(other).await.unwrap();
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // DescribeCluster v2 with fenced brokers asked for: the one broker, live.
    let cluster = client.describe_cluster_with_fenced().await.unwrap();
    assert!(cluster.fenced_listed);
    let brokers: Vec<(i32, bool)> = cluster.brokers.iter().map(|b| (b.node_id, b.fenced)).collect();
    assert_eq!(brokers, [(1, false)]);
}

#[tokio::test]
async fn a_stopped_broker_is_listed_fenced_when_asked_for() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let first = Server::start(dirs[0].path(), &[]);
    let mut client = Client::connect(&first.addr).await.unwrap();
    // The quorum's one voter, at the address DescribeQuorum v2 gives: where the second node joins.
    let quorum = client.describe_quorum().await.unwrap();
    let voter = quorum.voters[0].address.clone().unwrap();
    let voters = format!("1@{voter}");
    let mut second = Server::start_with_flags(
        dirs[1].path(),
        &[],
        &["--node-id", "2", "--roles", "broker", "--controller-voters", &voters],
    );

    let states = |cluster: &ClusterDescription| -> Vec<(i32, bool)> {
        cluster.brokers.iter().map(|b| (b.node_id, b.fenced)).collect()
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let cluster = client.describe_cluster_with_fenced().await.unwrap();
        if states(&cluster) == [(1, false), (2, false)] {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 never became live: {cluster:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM: a controlled shutdown, which fences the broker at once.
    second.terminate(TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let cluster = client.describe_cluster_with_fenced().await.unwrap();
        if states(&cluster) == [(1, false), (2, true)] {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 was never fenced: {cluster:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without the flag (and before v2) only live brokers are listed, as before KIP-1073.
    let live: Vec<i32> = client
        .describe_cluster()
        .await
        .unwrap()
        .brokers
        .iter()
        .map(|b| b.node_id)
        .collect();
    assert_eq!(live, [1]);

    let ran = strata(&first.addr, &["cluster", "describe"], b"");
    eprintln!("{}", ran.stdout);
    assert_eq!(ran.code, Some(0), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    let brokers: Vec<(String, String)> = table(&ran.stdout, "BROKER")
        .into_iter()
        .map(|row| (row[0].clone(), row[3].clone()))
        .collect();
    assert_eq!(
        brokers,
        [
            ("1".to_owned(), "live".to_owned()),
            ("2".to_owned(), "fenced".to_owned())
        ],
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn without_a_controller_the_quorum_is_unavailable_and_the_brokers_still_print() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut first = Server::start(dirs[0].path(), &[]);
    let quorum = Client::connect(&first.addr)
        .await
        .unwrap()
        .describe_quorum()
        .await
        .unwrap();
    let voters = format!("1@{}", quorum.voters[0].address.as_deref().unwrap());
    let second = Server::start_with_flags(
        dirs[1].path(),
        &[],
        &["--node-id", "2", "--roles", "broker", "--controller-voters", &voters],
    );
    first.kill();

    let mut client = Client::connect(&second.addr).await.unwrap();
    let error = client.describe_quorum().await.unwrap_err();
    assert_eq!(error.kafka_error(), Some(ResponseError::RequestTimedOut), "{error}");

    let ran = strata(&second.addr, &["cluster", "describe"], b"");
    eprintln!("{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.code, Some(1), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.starts_with("Cluster ") && ran.stdout.contains(": quorum unavailable"),
        "{}",
        ran.stdout
    );
    assert!(!table(&ran.stdout, "BROKER").is_empty(), "{}", ran.stdout);
    assert!(
        ran.stderr.starts_with("strata: describing the controller quorum: "),
        "{}",
        ran.stderr
    );
}
