//! The client (`strata_protocol::client`) and the `strata` client commands (`topic`, `produce`, `consume`,
//! `bench`) against a real `strata server` process.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::cli::{strata, strata_with_env};
use common::{Server, wait_for};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::admin::{ConfigChange, ConfigSource, NewTopic, OffsetSpec};
use strata_protocol::client::partitioner::partition_for_key;
use strata_protocol::client::{
    Acks, BatchBuilder, Client, ClientError, Compression, FetchOptions, Headers, ProducePipeline,
};

/// The longest any one command or wait may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn new_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn batch(compression: Compression, values: impl IntoIterator<Item = String>, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    for value in values {
        builder.push(None, Some(Bytes::from(value)), Headers::new(), timestamp_ms);
    }
    builder.build().unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn the_client_negotiates_versions_and_drives_every_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    // The highest version both sides know: the broker's own maximum here, capped at v12 for Produce and
    // Fetch (v13 names topics by id).
    let broker_max = |client: &Client, key| client.broker_versions(key).unwrap().1;
    assert_eq!(
        client.version::<MetadataRequest>().unwrap(),
        broker_max(&client, kafka_protocol::messages::ApiKey::Metadata).min(13)
    );
    assert!(client.version::<ProduceRequest>().unwrap() <= 12);
    assert!(client.version::<FetchRequest>().unwrap() <= 12);

    client
        .create_topic(&new_topic("admin", 2, &[("retention.ms", "3600000")]))
        .await
        .unwrap();
    let duplicate = client.create_topic(&new_topic("admin", 2, &[])).await.unwrap_err();
    assert_eq!(
        duplicate.kafka_error(),
        Some(ResponseError::TopicAlreadyExists),
        "{duplicate}"
    );

    let topic = client.topic_metadata("admin", false).await.unwrap();
    assert_eq!(topic.partitions.len(), 2);
    assert!(topic.partitions.iter().all(|p| p.leader >= 0 && p.isr == p.replicas));
    let missing = client.topic_metadata("absent", false).await.unwrap_err();
    assert_eq!(missing.kafka_error(), Some(ResponseError::UnknownTopicOrPartition));
    let all = client.metadata(None, false).await.unwrap();
    assert_eq!(all.brokers.len(), 1);
    assert!(all.topics.iter().any(|t| t.name == "admin"));
    assert!(
        !all.topics.iter().any(|t| t.name == "absent"),
        "describing does not create"
    );

    let overrides = |configs: Vec<strata_protocol::client::admin::ConfigEntry>| -> Vec<(String, String)> {
        configs
            .into_iter()
            .filter(|c| c.source == ConfigSource::Topic)
            .map(|c| (c.name, c.value.unwrap()))
            .collect()
    };
    let configs = client.describe_topic_configs("admin").await.unwrap();
    assert!(
        configs
            .iter()
            .any(|c| c.name == "segment.bytes" && c.source == ConfigSource::Default)
    );
    assert_eq!(
        overrides(configs),
        [("retention.ms".to_string(), "3600000".to_string())]
    );
    client
        .alter_topic_configs(
            "admin",
            &[
                ConfigChange::Set("max.message.bytes".into(), "2000".into()),
                ConfigChange::Delete("retention.ms".into()),
            ],
        )
        .await
        .unwrap();
    let configs = client.describe_topic_configs("admin").await.unwrap();
    assert_eq!(
        overrides(configs),
        [("max.message.bytes".to_string(), "2000".to_string())]
    );
    let refused = client
        .alter_topic_configs("admin", &[ConfigChange::Set("no.such.setting".into(), "1".into())])
        .await
        .unwrap_err();
    assert!(refused.kafka_error().is_some(), "{refused}");

    client.create_partitions("admin", 3).await.unwrap();
    assert_eq!(client.topic_metadata("admin", false).await.unwrap().partitions.len(), 3);
    let shrink = client.create_partitions("admin", 1).await.unwrap_err();
    assert!(shrink.kafka_error().is_some(), "{shrink}");

    let values = (0..10).map(|i| format!("v{i}"));
    let base = client
        .produce("admin", 2, Acks::Leader, batch(Compression::None, values, now_ms()))
        .await
        .unwrap();
    assert_eq!(base, Some(0));
    let low = client.delete_records("admin", &[(2, 4)]).await.unwrap();
    assert_eq!(low, [(2, 4)]);
    let starts = client
        .list_offsets("admin", &[2, 0], OffsetSpec::Earliest)
        .await
        .unwrap();
    let ends = client.list_offsets("admin", &[2, 0], OffsetSpec::Latest).await.unwrap();
    assert_eq!(
        (starts[0].offset, ends[0].offset, starts[1].offset, ends[1].offset),
        (Some(4), Some(10), Some(0), Some(0)),
        "answers come in the order asked"
    );

    let cluster = client.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(Some(cluster.cluster_id), all.cluster_id);

    // Any request, through the generic path.
    let raw = client.send(MetadataRequest::default().with_topics(None)).await.unwrap();
    assert!(
        raw.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "admin"))
    );

    client.delete_topic("admin").await.unwrap();
    let gone = client.delete_topic("admin").await.unwrap_err();
    assert_eq!(gone.kafka_error(), Some(ResponseError::UnknownTopicOrPartition));
}

#[tokio::test]
async fn records_round_trip_with_every_codec_and_times_find_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    let base_ms = 1_780_000_000_000;
    for (i, compression) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{i}");
        client.create_topic(&new_topic(&topic, 1, &[])).await.unwrap();
        for round in 0..3i64 {
            let mut builder = BatchBuilder::new(compression);
            for j in 0..100 {
                let mut headers = Headers::new();
                headers.insert(StrBytes::from_static_str("round"), Some(Bytes::from(round.to_string())));
                builder.push(
                    Some(Bytes::from(format!("k{j}"))),
                    Some(Bytes::from(format!("{compression:?} {round} {j}"))),
                    headers,
                    base_ms + round * 1000,
                );
            }
            let base = client
                .produce(&topic, 0, Acks::All, builder.build().unwrap())
                .await
                .unwrap();
            assert_eq!(base, Some(round * 100));
        }
        // Fetch from the middle of the second batch, a little at a time: records before the fetch offset
        // and partial batches at the end of a response are never returned.
        let options = FetchOptions {
            partition_max_bytes: 1,
            ..FetchOptions::default()
        };
        let mut next = 150;
        let mut seen = Vec::new();
        while next < 300 {
            let fetched = client.fetch(&topic, &[(0, next)], &options).await.unwrap();
            assert_eq!(fetched[0].high_watermark, 300);
            seen.extend(fetched[0].records.iter().map(|r| (r.offset, r.value.clone().unwrap())));
            assert!(fetched[0].next_offset > next, "every fetch makes progress");
            next = fetched[0].next_offset;
        }
        let expected: Vec<(i64, Bytes)> = (150..300)
            .map(|o| (o, Bytes::from(format!("{compression:?} {} {}", o / 100, o % 100))))
            .collect();
        assert_eq!(seen, expected, "{compression:?}");

        for (ms, offset) in [
            (base_ms + 1000, Some(100)),
            (base_ms + 1001, Some(200)),
            (base_ms + 2001, None),
        ] {
            let found = client
                .list_offsets(&topic, &[0], OffsetSpec::Timestamp(ms))
                .await
                .unwrap();
            assert_eq!(
                found[0].offset, offset,
                "first offset at or after {ms} (None: no record that late)"
            );
        }
    }
}

#[tokio::test]
async fn a_pipeline_keeps_requests_in_flight_and_acknowledges_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    client.create_topic(&new_topic("pipelined", 2, &[])).await.unwrap();
    let topic = TopicName(StrBytes::from_static_str("pipelined"));
    let mut pipeline = ProducePipeline::new(&mut client, topic.clone(), Acks::Leader, 4).unwrap();
    let mut acked = Vec::new();
    let mut most_in_flight = 0;
    for request in 0..50 {
        let batches = (0..2)
            .map(|p| {
                (
                    p,
                    batch(Compression::Lz4, (0..100).map(|i| format!("{request} {i}")), now_ms()),
                )
            })
            .collect();
        if let Some(ack) = pipeline.send(batches, request).await.unwrap() {
            acked.push(ack);
        }
        most_in_flight = most_in_flight.max(pipeline.in_flight());
    }
    while let Some(ack) = pipeline.next_ack().await.unwrap() {
        acked.push(ack);
    }
    assert_eq!(most_in_flight, 4, "requests do not wait for one another");
    for (i, ack) in acked.iter().enumerate() {
        assert_eq!(ack.token, i, "acknowledged in the order sent");
        assert_eq!(ack.base_offsets, [(0, i as i64 * 100), (1, i as i64 * 100)]);
    }

    // acks=0: nothing comes back; the records arrive all the same.
    let mut fire_and_forget = ProducePipeline::new(&mut client, topic, Acks::None, 4).unwrap();
    for request in 0..10 {
        let batches = vec![(
            0,
            batch(Compression::None, (0..10).map(|i| format!("{request} {i}")), now_ms()),
        )];
        let ack = fire_and_forget.send(batches, request).await.unwrap().expect("at once");
        assert_eq!((ack.token, ack.base_offsets), (request, vec![(0, -1)]));
    }
    assert_eq!(fire_and_forget.in_flight(), 0);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let end = client
            .list_offsets("pipelined", &[0], OffsetSpec::Latest)
            .await
            .unwrap()[0]
            .offset;
        if end == Some(5100) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acks=0 records did not all arrive: end {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn failures_are_typed() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let refused = Client::connect(&closed).await.unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["auto.create.topics.enable=false"]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    let unknown = client
        .produce(
            "nowhere",
            0,
            Acks::Leader,
            batch(Compression::None, ["x".to_string()], now_ms()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        unknown.kafka_error(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{unknown}"
    );
    assert!(
        unknown
            .to_string()
            .starts_with("producing to nowhere-0: UnknownTopicOrPartition"),
        "{unknown}"
    );

    // A request submitted and not received blocks the one-shot path rather than mixing up responses.
    client
        .submit(&MetadataRequest::default().with_topics(None))
        .await
        .unwrap();
    let busy = client
        .send(MetadataRequest::default().with_topics(None))
        .await
        .unwrap_err();
    assert!(matches!(busy, ClientError::Usage(_)), "{busy}");
    client.receive::<MetadataRequest>().await.unwrap();
    client.metadata(None, false).await.unwrap();
}

/// `offsets.topic.replication.factor`, when set, is Kafka's rule: no `__consumer_offsets` (and so no group
/// coordinator) until that many brokers are live, rather than a topic that starts under-replicated.
#[tokio::test]
async fn the_offsets_topic_waits_for_its_replication_factor_of_live_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["offsets.topic.replication.factor=2"]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    let none = client.find_coordinator("readers").await.unwrap_err();
    assert_eq!(
        none.kafka_error(),
        Some(ResponseError::CoordinatorNotAvailable),
        "{none}"
    );
    let missing = client.topic_metadata("__consumer_offsets", false).await.unwrap_err();
    assert_eq!(missing.kafka_error(), Some(ResponseError::UnknownTopicOrPartition));

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["offsets.topic.replication.factor=1"]);
    let mut client = Client::connect(&server.addr).await.unwrap();
    let coordinator = wait_for_coordinator(&mut client, "readers").await;
    assert_eq!(coordinator.node_id, 1);
    let offsets = client.topic_metadata("__consumer_offsets", false).await.unwrap();
    assert!(offsets.partitions.iter().all(|p| p.replicas.len() == 1));
}

/// The group's coordinator, once the broker has one (it answers CoordinatorNotAvailable while it creates
/// `__consumer_offsets`).
async fn wait_for_coordinator(client: &mut Client, group: &str) -> strata_protocol::client::admin::BrokerMetadata {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match client.find_coordinator(group).await {
            Ok(found) => return found,
            Err(e) if e.kafka_error() == Some(ResponseError::CoordinatorNotAvailable) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("finding the coordinator of {group}: {e}"),
        }
    }
}

#[test]
fn topic_commands_create_list_describe_alter_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let run = |args: &[&str]| strata(&server.addr, args, b"");
    let created = run(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=3600000",
        "--config",
        "segment.bytes=1048576",
    ]);
    assert_eq!(created.ok(), "Created topic orders.\n");
    run(&["topic", "create", "audit"]).ok();
    assert_eq!(run(&["topic", "list"]).ok(), "audit\norders\n");

    strata(&server.addr, &["produce", "orders", "--partition", "1"], b"a\nb\n").ok();
    let described = run(&["topic", "describe", "orders"]).ok();
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 4, "{described}");
    assert!(lines[0].starts_with("Topic: orders\tTopicId: "), "{described}");
    assert!(
        lines[0]
            .ends_with("PartitionCount: 3\tReplicationFactor: 1\tConfigs: segment.bytes=1048576,retention.ms=3600000"),
        "{described}"
    );
    assert_eq!(
        lines[2],
        "\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\tLogStartOffset: 0\tLogEndOffset: 2"
    );

    let altered = run(&[
        "topic",
        "alter",
        "orders",
        "--partitions",
        "5",
        "--config",
        "max.message.bytes=5000",
        "--delete-config",
        "segment.bytes",
    ]);
    assert_eq!(altered.ok(), "Altered topic orders.\n");
    let described = run(&["topic", "describe", "orders"]).ok();
    assert!(described.contains("PartitionCount: 5"), "{described}");
    assert!(
        described.contains("Configs: retention.ms=3600000,max.message.bytes=5000\n"),
        "{described}"
    );
    assert!(described.contains("\tPartition: 4\t"), "{described}");

    assert_eq!(run(&["topic", "delete", "orders"]).ok(), "Deleted topic orders.\n");
    assert_eq!(run(&["topic", "list"]).ok(), "audit\n");
    let again = run(&["topic", "delete", "orders"]).failed();
    assert!(
        again.starts_with("strata: deleting topic orders: UnknownTopicOrPartition"),
        "{again}"
    );
    let nothing = run(&["topic", "alter", "audit"]).failed();
    assert!(nothing.contains("nothing to alter"), "{nothing}");
}

#[test]
fn produced_lines_come_back_with_their_keys_headers_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let run = |args: &[&str], stdin: &[u8]| strata(&server.addr, args, stdin);
    run(&["topic", "create", "keyed", "--partitions", "3"], b"").ok();
    let count = 2000;
    let input: String = (0..count)
        .map(|i| format!("key-{}::value {i} :: {}\n", i % 17, "x".repeat(i % 50)))
        .collect();
    let produced = run(
        &[
            "produce",
            "keyed",
            "--key-separator",
            "::",
            "--headers",
            "source=test,run=1",
            "--compression",
            "zstd",
            "--batch-size",
            "4096",
        ],
        input.as_bytes(),
    );
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);
    assert_eq!(produced.stderr, format!("{count} records produced\n"));
    assert_eq!(produced.stdout, "");

    let count_arg = count.to_string();
    let consumed = run(
        &[
            "consume",
            "keyed",
            "--from",
            "earliest",
            "--count",
            &count_arg,
            "--format",
            "%p|%k|%v|%h",
        ],
        b"",
    )
    .ok();
    let mut got: Vec<&str> = consumed.lines().collect();
    let mut expected: Vec<String> = input
        .lines()
        .map(|line| {
            let (key, value) = line.split_once("::").unwrap();
            let partition = partition_for_key(key.as_bytes(), 3);
            format!("{partition}|{key}|{value}|source=test,run=1")
        })
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        got, expected,
        "every line, in the partition Kafka's partitioner picks for its key"
    );

    // One partition: records come back in the order sent, at consecutive offsets.
    let input = "first\nsecond line\n\nlast without newline";
    run(
        &["produce", "plain", "--acks", "all", "--compression", "gzip"],
        input.as_bytes(),
    )
    .ok();
    let consumed = run(&["consume", "plain", "--format", "%o:%k:%v"], b"").ok();
    assert_eq!(consumed, "0::first\n1::second line\n2::\n3::last without newline\n");
    let from_offset = run(&["consume", "plain", "--from", "2", "--format", "json"], b"").ok();
    assert!(
        from_offset.starts_with(r#"{"partition":0,"offset":2,"timestamp":"#)
            && from_offset.contains(r#""key":null,"value":"","headers":{}}"#),
        "{from_offset}"
    );
    assert_eq!(from_offset.lines().count(), 2);
    assert_eq!(run(&["consume", "plain", "--from", "latest"], b"").ok(), "");
}

#[test]
fn consume_from_a_time_starts_at_the_first_record_at_or_after_it() {
    assert_eq!(common::rfc3339(1_795_168_800_500), "2026-11-20T10:00:00.500Z");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let run = |args: &[&str], stdin: &[u8]| strata(&server.addr, args, stdin);
    run(&["topic", "create", "timed", "--partitions", "2"], b"").ok();
    run(&["produce", "timed"], b"old 1\nold 2\nold 3\n").ok();
    let stamps = run(&["consume", "timed", "--format", "%t"], b"").ok();
    let newest_old: i64 = stamps.lines().map(|t| t.parse::<i64>().unwrap()).max().unwrap();
    // Everything produced from now on is stamped after `since`.
    let since = newest_old + 1;
    wait_for("the clock to pass the old records' time", TIMEOUT, || now_ms() > since);
    run(&["produce", "timed", "--partition", "1"], b"new 1\nnew 2\n").ok();

    let consumed = run(
        &["consume", "timed", "--from", &common::rfc3339(since), "--format", "%v"],
        b"",
    )
    .ok();
    assert_eq!(consumed, "new 1\nnew 2\n");
    let everything = run(
        &["consume", "timed", "--from", &common::rfc3339(newest_old - 60_000)],
        b"",
    )
    .ok();
    assert_eq!(everything.lines().count(), 5);
    let future = run(&["consume", "timed", "--from", "2999-01-01T00:00:00+02:00"], b"").ok();
    assert_eq!(future, "", "a time after every record starts at the end");
}

#[test]
fn consume_follow_waits_for_records_produced_later() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    strata(&server.addr, &["topic", "create", "live", "--partitions", "1"], b"").ok();
    let addr = server.addr.clone();
    // Starts at offset 0 of an empty topic, so records produced at any point after are seen.
    let follower = std::thread::spawn(move || {
        strata(
            &addr,
            &["consume", "live", "--from", "0", "--follow", "--count", "3"],
            b"",
        )
    });
    strata(&server.addr, &["produce", "live"], b"one\ntwo\n").ok();
    strata(&server.addr, &["produce", "live"], b"three\nfour\n").ok();
    assert_eq!(follower.join().unwrap().ok(), "one\ntwo\nthree\n");
}

#[test]
fn failures_exit_non_zero_with_one_line_on_stderr() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let refused = strata(&closed, &["topic", "list"], b"").failed();
    assert!(
        refused.starts_with(&format!("strata: cannot connect to {closed}")),
        "{refused}"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["auto.create.topics.enable=false"]);
    let run = |args: &[&str], stdin: &[u8]| strata(&server.addr, args, stdin);
    let unknown = run(&["consume", "nope"], b"").failed();
    assert_eq!(
        unknown,
        "strata: topic nope: UnknownTopicOrPartition (it does not exist)"
    );
    let unknown = run(&["produce", "nope"], b"x\n").failed();
    assert!(unknown.contains("topic nope: UnknownTopicOrPartition"), "{unknown}");
    let unknown = run(&["topic", "describe", "nope"], b"").failed();
    assert!(unknown.contains("topic nope: UnknownTopicOrPartition"), "{unknown}");

    run(&["topic", "create", "t", "--partitions", "2"], b"").ok();
    let no_separator = run(&["produce", "t", "--key-separator", "="], b"k=v\nnone here\n").failed();
    assert_eq!(no_separator, "strata: line 2 has no key separator");
    let no_partition = run(&["consume", "t", "--partition", "7"], b"").failed();
    assert!(no_partition.contains("topic t has no partition 7"), "{no_partition}");
    let bad_config = run(&["topic", "create", "u", "--config", "segment.bytes=1"], b"").failed();
    assert!(bad_config.starts_with("strata: creating topic u: "), "{bad_config}");
    assert!(bad_config.contains("segment.bytes"), "{bad_config}");
    let bad_from = run(&["consume", "t", "--from", "yesterday"], b"");
    assert_eq!(bad_from.code, Some(2), "a usage error: {}", bad_from.stderr);
    assert!(
        bad_from
            .stderr
            .contains("is not earliest, latest, an offset or an RFC 3339 time")
    );
}

#[test]
fn health_exits_zero_only_when_the_node_answers_200() {
    let health = |http: &str| strata_with_env(&["health", "--http", http, "--timeout-ms", "500"], &[], b"");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(health(&server.http_addr).ok(), "ok\n");
    // Without --http, the server's own setting: what a container's HEALTHCHECK relies on.
    let from_env = strata_with_env(&["health"], &[("STRATA_HTTP_LISTEN", &server.http_addr)], b"");
    assert_eq!(from_env.ok(), "ok\n");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let refused = health(&closed).failed();
    assert!(
        refused.starts_with(&format!("strata: health of {closed}: cannot connect")),
        "{refused}"
    );

    // A node that is still starting has bound its HTTP port but does not answer yet.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let starting = health(&silent.local_addr().unwrap().to_string()).failed();
    assert!(starting.contains("no answer within 500 ms"), "{starting}");

    let unhealthy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unhealthy_addr = unhealthy.local_addr().unwrap().to_string();
    let answering = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = unhealthy.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).unwrap();
        stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    });
    let answered = health(&unhealthy_addr).failed();
    answering.join().unwrap();
    assert_eq!(
        answered,
        format!("strata: health of {unhealthy_addr}: answered 503, not 200")
    );
}

#[test]
fn bench_produce_and_consume_print_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let produced = strata(
        &server.addr,
        &[
            "bench",
            "produce",
            "--topic",
            "perf",
            "--records",
            "20000",
            "--record-size",
            "50",
            "--partitions",
            "2",
            "--batch-size",
            "16384",
            "--compression",
            "lz4",
        ],
        b"",
    )
    .ok();
    assert!(produced.starts_with("20000 records sent, "), "{produced}");
    for part in [
        "records/s",
        "MB/s",
        "latency ms: avg ",
        "p50 ",
        "p99 ",
        "p99.9 ",
        "max ",
    ] {
        assert!(produced.contains(part), "{part} in {produced}");
    }
    let described = strata(&server.addr, &["topic", "describe", "perf"], b"").ok();
    assert!(
        described.contains("PartitionCount: 2"),
        "the benchmark created the topic: {described}"
    );

    let consumed = strata(&server.addr, &["bench", "consume", "--topic", "perf"], b"").ok();
    assert!(consumed.starts_with("20000 records consumed, "), "{consumed}");
    assert!(consumed.contains("fetch latency ms: avg "), "{consumed}");
    let some = strata(
        &server.addr,
        &["bench", "consume", "--topic", "perf", "--records", "500"],
        b"",
    )
    .ok();
    assert!(some.starts_with("500 records consumed, "), "{some}");

    // --throughput paces the producer: 1,500 records at 1,000/s cannot finish in under a second.
    let started = std::time::Instant::now();
    let paced = strata(
        &server.addr,
        &[
            "bench",
            "produce",
            "--topic",
            "paced",
            "--records",
            "1500",
            "--throughput",
            "1000",
        ],
        b"",
    )
    .ok();
    assert!(paced.starts_with("1500 records sent, "), "{paced}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "not paced: {paced}"
    );
}
