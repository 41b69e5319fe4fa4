//! What `/metrics` tells an operator about consumer groups and the controller, read as Prometheus reads
//! it (the page is parsed, not grepped): lag per partition as records produced minus committed, members,
//! group states, rebalances; on a three-node cluster, one active controller, commit latencies, a killed
//! broker fenced and its partitions' leader elections counted. And that the Grafana dashboard and
//! `docs/metrics.md` name the same metrics a node serves.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::Cluster;
use common::{Server, http_get, wait_for};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(90);

/// One sample of a Prometheus text page.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A page of the Prometheus text format (0.0.4): its samples, and the families its `# TYPE` lines
/// declare. Panics on a line that is not the format, so a malformed page fails the test.
#[derive(Debug, Default)]
struct Page {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Page {
    fn parse(text: &str) -> Page {
        let mut page = Page::default();
        // The family being read: a sample belongs to the last one declared, as the format requires.
        let mut family = String::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                let previous = page.types.insert(name.to_owned(), kind.to_owned());
                assert!(previous.is_none(), "family {name} declared twice");
                family = name.to_owned();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name.to_owned(), parse_labels(rest))
                }
            };
            let of_family = name == family
                || (page.types.get(&family).map(String::as_str) == Some("histogram")
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}")));
            assert!(of_family, "{line} follows the declaration of {family}");
            page.samples.push(Sample { name, labels, value });
        }
        page
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .collect();
        assert!(matching.len() <= 1, "{name}{labels:?} matches {matching:?}");
        matching.first().map(|s| s.value)
    }
}

fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("closing quote");
            match c {
                '\\' => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    labels
}

fn scrape(server: &Server) -> Page {
    let (status, body) = http_get(&server.http_addr, "/metrics");
    assert_eq!(status, 200);
    Page::parse(&body)
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    config
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, replication: i32) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let results = admin.create_topics([&new], &AdminOptions::new()).await.unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Produces `count` records to each of `partitions` of `topic`, all acknowledged.
async fn produce(bootstrap: &str, topic: &str, partitions: &[i32], count: usize) {
    let producer: FutureProducer = config(bootstrap).set("linger.ms", "5").create().unwrap();
    let mut deliveries = Vec::new();
    for &partition in partitions {
        for _ in 0..count {
            let record = FutureRecord::to(topic).partition(partition).key("k").payload("v");
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
}

fn member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Polls `consumers` until their assignment sizes satisfy `done`.
fn poll_until(consumers: &[&BaseConsumer], what: &str, done: impl Fn(&[usize]) -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        for consumer in consumers {
            consumer.poll(Duration::from_millis(20));
        }
        let counts: Vec<usize> = consumers.iter().map(|c| c.assignment().unwrap().count()).collect();
        if done(&counts) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: assignments stuck at {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_members_state_and_rebalances_show_on_the_coordinator() {
    const TOPIC: &str = "metered";
    const GROUP: &str = "billing";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    create_topic(&server.addr, TOPIC, 3, 1).await;
    produce(&server.addr, TOPIC, &[0, 1, 2], 10).await;

    let first = member(&server.addr, GROUP, TOPIC);
    poll_until(&[&first], "one member owning three partitions", |c| c == [3]);
    let committed = [(0, 4), (1, 7), (2, 10)];
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in committed {
        offsets
            .add_partition_offset(TOPIC, partition, Offset::Offset(offset))
            .unwrap();
    }
    first.commit(&offsets, CommitMode::Sync).unwrap();

    let labels = |partition: &'static str| [("group", GROUP), ("topic", TOPIC), ("partition", partition)];
    wait_for(
        "lag per partition: 10 produced minus what was committed",
        TIMEOUT,
        || {
            let page = scrape(&server);
            page.value("strata_consumer_group_lag", &labels("0")) == Some(6.0)
                && page.value("strata_consumer_group_lag", &labels("1")) == Some(3.0)
                && page.value("strata_consumer_group_lag", &labels("2")) == Some(0.0)
        },
    );
    let page = scrape(&server);
    for (partition, offset) in [("0", 4.0), ("1", 7.0), ("2", 10.0)] {
        assert_eq!(
            page.value("strata_consumer_group_committed_offset", &labels(partition)),
            Some(offset)
        );
    }
    assert_eq!(
        page.value("strata_consumer_group_members", &[("group", GROUP)]),
        Some(1.0)
    );
    assert_eq!(
        page.value("strata_consumer_groups", &[("type", "classic"), ("state", "Stable")]),
        Some(1.0)
    );
    let rebalances = page
        .value("strata_consumer_group_rebalances_total", &[("group", GROUP)])
        .expect("the first generation is a completed rebalance");
    assert!(rebalances >= 1.0);
    assert_eq!(page.types["strata_consumer_group_rebalances_total"], "counter");

    // Lag follows the high watermark: five more records on partition 2.
    produce(&server.addr, TOPIC, &[2], 5).await;
    wait_for("lag of partition 2 after five more records", TIMEOUT, || {
        scrape(&server).value("strata_consumer_group_lag", &labels("2")) == Some(5.0)
    });

    // A second member: a rebalance completes, and the group has two members.
    let second = member(&server.addr, GROUP, TOPIC);
    poll_until(&[&first, &second], "two members sharing three partitions", |c| {
        c.iter().sum::<usize>() == 3 && c.iter().all(|n| *n > 0)
    });
    wait_for("a rebalance counted and two members", TIMEOUT, || {
        let page = scrape(&server);
        page.value("strata_consumer_group_members", &[("group", GROUP)]) == Some(2.0)
            && page
                .value("strata_consumer_group_rebalances_total", &[("group", GROUP)])
                .is_some_and(|n| n > rebalances)
    });
}

/// The node that says it is the active controller, once exactly one live node does.
fn active_controller(cluster: &Cluster) -> i32 {
    let mut active = Vec::new();
    wait_for("exactly one active controller", TIMEOUT, || {
        active = cluster
            .live()
            .filter(|(_, node)| scrape(node).value("strata_controller_active", &[]) == Some(1.0))
            .map(|(id, _)| id)
            .collect();
        active.len() == 1
    });
    active[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_controller_shows_commits_fenced_brokers_and_the_elections_it_made() {
    const TOPIC: &str = "ledger";
    let mut cluster = Cluster::start();
    let controller = active_controller(&cluster);
    create_topic(&cluster.bootstrap(), TOPIC, 3, 3).await;

    let page = scrape(cluster.node(controller));
    assert!(
        page.value("strata_controller_commit_latency_seconds_count", &[])
            .unwrap()
            > 0.0,
        "registrations and the topic were committed"
    );
    assert_eq!(page.types["strata_controller_commit_latency_seconds"], "histogram");
    wait_for("three active brokers, their metadata caught up", TIMEOUT, || {
        let page = scrape(cluster.node(controller));
        page.value("strata_controller_brokers", &[("state", "active")]) == Some(3.0)
            && page.value("strata_controller_brokers", &[("state", "fenced")]) == Some(0.0)
            && (1..=3).all(|id| {
                let id = id.to_string();
                page.value("strata_controller_metadata_lag", &[("broker", &id)]) == Some(0.0)
            })
    });
    for (id, node) in cluster.live().filter(|(id, _)| *id != controller) {
        let page = scrape(node);
        assert_eq!(page.value("strata_controller_active", &[]), Some(0.0), "node {id}");
        // Only the active controller shows the image's gauges: one source per cluster.
        assert_eq!(
            page.value("strata_controller_offline_partitions", &[]),
            None,
            "node {id}"
        );
    }

    // A broker that is not the active controller, and leads partitions, dies.
    let (victim, led) = cluster
        .live()
        .filter(|(id, _)| *id != controller)
        .map(|(id, node)| (id, scrape(node).value("strata_leader_partitions", &[]).unwrap()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let before = scrape(cluster.node(controller));
    let clean_before = before
        .value("strata_controller_leader_elections_total", &[("kind", "clean")])
        .unwrap();
    let unclean_before = before
        .value("strata_controller_leader_elections_total", &[("kind", "unclean")])
        .unwrap();
    assert!(led >= 1.0, "placement spreads three leaders over three brokers");
    cluster.kill(victim);

    wait_for(
        "the killed broker fenced and its partitions re-elected",
        TIMEOUT,
        || {
            let page = scrape(cluster.node(controller));
            page.value("strata_controller_brokers", &[("state", "fenced")]) == Some(1.0)
                && page.value("strata_controller_brokers", &[("state", "active")]) == Some(2.0)
                && page
                    .value("strata_controller_leader_elections_total", &[("kind", "clean")])
                    .is_some_and(|n| n >= clean_before + led)
        },
    );
    let page = scrape(cluster.node(controller));
    assert_eq!(
        page.value("strata_controller_leader_elections_total", &[("kind", "unclean")]),
        Some(unclean_before),
        "every new leader came from the ISR"
    );
    assert_eq!(
        page.value("strata_controller_offline_partitions", &[]),
        Some(0.0),
        "three replicas: every partition still has a leader"
    );
    assert_eq!(active_controller(&cluster), controller);
}

/// The metric names `docs/metrics.md` documents: the first column of its tables, `` `strata_...` ``.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `strata_"))
        .map(|rest| format!("strata_{}", rest.split('`').next().unwrap()))
        .collect()
}

/// Metric names in a PromQL expression: `strata_` words, a histogram's series named by their family.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("strata_") {
        let word: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + word.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(&word);
        names.push(family.to_owned());
    }
    names
}

/// Every `expr` of the dashboard's panels.
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The names the data path (request latencies, bytes per topic, purgatory, per-partition logs...) serves:
/// documented with the rest, served once that work is in. Until a node serves any of them, none is
/// required; once it serves one, all are.
const DATA_PATH: &[&str] = &[
    "strata_request_errors_total",
    "strata_request_latency_seconds",
    "strata_request_queue_latency_seconds",
    "strata_request_local_latency_seconds",
    "strata_request_remote_latency_seconds",
    "strata_response_send_latency_seconds",
    "strata_connections",
    "strata_connections_accepted_total",
    "strata_topic_bytes_in_total",
    "strata_topic_messages_in_total",
    "strata_topic_bytes_out_total",
    "strata_topic_messages_out_total",
    "strata_replication_bytes_in_total",
    "strata_replication_bytes_out_total",
    "strata_purgatory_size",
    "strata_under_min_isr_partitions",
    "strata_isr_shrinks_total",
    "strata_isr_expands_total",
    "strata_log_flush_latency_seconds",
    "strata_log_size_bytes",
    "strata_log_segments",
    "strata_log_start_offset",
    "strata_log_end_offset",
    "strata_high_watermark",
];

#[test]
fn the_dashboard_and_the_docs_name_the_metrics_a_node_serves() {
    let documented = documented();
    assert!(documented.len() >= 40, "docs/metrics.md lists {documented:?}");
    for name in DATA_PATH {
        assert!(documented.contains(*name), "{name} is not in docs/metrics.md");
    }

    let dashboard =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/strata.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let inputs = dashboard["__inputs"].as_array().expect("an __inputs list");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "a Prometheus datasource input"
    );
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "the dashboard's panels query: {exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| names_in(e)).collect();
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "the dashboard uses undocumented metrics: {undocumented:?}"
    );

    // A live node, both roles: every documented family is declared on its page.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let page = scrape(&server);
    let data_path_served = DATA_PATH.iter().any(|name| page.types.contains_key(*name));
    let missing: Vec<&String> = documented
        .iter()
        .filter(|name| !page.types.contains_key(*name))
        .filter(|name| data_path_served || !DATA_PATH.contains(&name.as_str()))
        .collect();
    assert!(missing.is_empty(), "documented but not served: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_on_the_coordinator_covers_partitions_other_brokers_lead() {
    const TOPIC: &str = "spread";
    const GROUP: &str = "auditors";
    let cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    // One replica each: placement spreads the three leaders over the three brokers.
    create_topic(&bootstrap, TOPIC, 3, 1).await;
    produce(&bootstrap, TOPIC, &[0, 1, 2], 20).await;
    let leaders: BTreeSet<i32> = cluster
        .live()
        .filter(|(_, node)| scrape(node).value("strata_leader_partitions", &[]) == Some(1.0))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(leaders.len(), 3, "each broker leads one partition");

    // Offsets committed without membership (as a consumer that assigns itself partitions does).
    let committer: BaseConsumer = config(&bootstrap).set("group.id", GROUP).create().unwrap();
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in [(0, 5), (1, 10), (2, 15)] {
        offsets
            .add_partition_offset(TOPIC, partition, Offset::Offset(offset))
            .unwrap();
    }
    committer.commit(&offsets, CommitMode::Sync).unwrap();

    // Exactly one node, the coordinator, shows the group; its lag covers the partitions it does not lead,
    // whose high watermarks it asks their leaders for.
    let labels = |partition: &'static str| [("group", GROUP), ("topic", TOPIC), ("partition", partition)];
    let mut coordinators = Vec::new();
    wait_for("the coordinator's lag of all three partitions", TIMEOUT, || {
        coordinators = cluster
            .live()
            .filter(|(_, node)| {
                let page = scrape(node);
                page.value("strata_consumer_group_committed_offset", &labels("0"))
                    .is_some()
                    && page.value("strata_consumer_group_lag", &labels("0")) == Some(15.0)
                    && page.value("strata_consumer_group_lag", &labels("1")) == Some(10.0)
                    && page.value("strata_consumer_group_lag", &labels("2")) == Some(5.0)
            })
            .map(|(id, _)| id)
            .collect();
        coordinators.len() == 1
    });
    let shown_elsewhere = cluster
        .live()
        .filter(|(id, node)| {
            *id != coordinators[0]
                && scrape(node)
                    .value("strata_consumer_group_committed_offset", &labels("0"))
                    .is_some()
        })
        .count();
    assert_eq!(shown_elsewhere, 0, "only the coordinator shows a group");
}

/// A member of the KIP-848 consumer protocol: the coordinator assigns, and each new group epoch is a
/// rebalance.
fn consumer_protocol_member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_groups_show_their_type_members_and_epochs() {
    const TOPIC: &str = "epochs";
    const GROUP: &str = "kip848";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    create_topic(&server.addr, TOPIC, 4, 1).await;

    let first = consumer_protocol_member(&server.addr, GROUP, TOPIC);
    poll_until(&[&first], "one member owning four partitions", |c| c == [4]);
    let mut rebalances = 0.0;
    wait_for("a stable consumer group of one", TIMEOUT, || {
        let page = scrape(&server);
        rebalances = page
            .value("strata_consumer_group_rebalances_total", &[("group", GROUP)])
            .unwrap_or(0.0);
        page.value("strata_consumer_groups", &[("type", "consumer"), ("state", "Stable")]) == Some(1.0)
            && page.value("strata_consumer_group_members", &[("group", GROUP)]) == Some(1.0)
            && rebalances >= 1.0
    });

    let second = consumer_protocol_member(&server.addr, GROUP, TOPIC);
    poll_until(&[&first, &second], "two members sharing four partitions", |c| {
        c.iter().sum::<usize>() == 4 && c.iter().all(|n| *n > 0)
    });
    wait_for("a new group epoch counted and two members", TIMEOUT, || {
        let page = scrape(&server);
        page.value("strata_consumer_group_members", &[("group", GROUP)]) == Some(2.0)
            && page
                .value("strata_consumer_group_rebalances_total", &[("group", GROUP)])
                .is_some_and(|n| n > rebalances)
    });
}

/// What a scrape costs with many groups: 1,000 groups with offsets committed for 10 partitions each
/// (10,000 lag and 10,000 committed-offset series). A measurement, not a check: run it with
/// `cargo test --release -p strata-broker --test group_metrics -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scrape_time_with_a_thousand_groups() {
    const TOPIC: &str = "wide";
    const GROUPS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server.addr, TOPIC, 10, 1).await;
    let mut client = strata_protocol::client::Client::connect(&server.addr).await.unwrap();
    let offsets: Vec<(&str, i32, i64)> = (0..10).map(|p| (TOPIC, p, 0)).collect();
    for group in 0..GROUPS {
        let group = format!("group-{group}");
        // FindCoordinator creates `__consumer_offsets`; a first commit may find its partition still
        // loading: retry until it answers.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while let Err(e) = async {
            client.find_coordinator(&group).await?;
            client.commit_group_offsets(&group, &offsets).await
        }
        .await
        {
            assert!(std::time::Instant::now() < deadline, "committing for {group}: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let (status, body) = http_get(&server.http_addr, "/metrics");
        times.push(started.elapsed());
        assert_eq!(status, 200);
        let page = Page::parse(&body);
        assert_eq!(
            page.samples
                .iter()
                .filter(|s| s.name == "strata_consumer_group_lag")
                .count(),
            GROUPS * 10
        );
    }
    times.sort();
    println!(
        "scrape of {} groups x 10 partitions: median {:?}, max {:?}",
        GROUPS,
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
