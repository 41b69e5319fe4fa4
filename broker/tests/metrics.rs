//! `/metrics` as an operator reads it: a real `strata server`, a real client (librdkafka) producing and
//! consuming, and the page parsed (not grepped) for what that traffic must show: requests and their latency
//! histograms, bytes and records in and out per topic, an error by its Kafka name, the remote wait of a
//! long-poll fetch, connections, per-partition log figures, log flushes, and a deleted topic's series gone.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::cluster::{self, Cluster};
use common::{Server, http_get, wait_for};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strata_protocol::client::Client;
use strata_protocol::client::admin::NewTopic as AdminTopic;

const TIMEOUT: Duration = Duration::from_secs(60);
const RECORDS: usize = 50;

/// One sample line of the text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` page: its samples and each family's declared type.
#[derive(Debug)]
struct Page {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Page {
    fn scrape(server: &Server) -> Page {
        let (status, body) = http_get(&server.http_addr, "/metrics");
        assert_eq!(status, 200);
        Page::parse(&body)
    }

    /// Parses the text exposition format as Strata writes it (no timestamps; label values escaped with `\`).
    fn parse(text: &str) -> Page {
        let mut page = Page {
            samples: Vec::new(),
            types: BTreeMap::new(),
        };
        for line in text.lines().filter(|line| !line.is_empty()) {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("a type line names a family and a type");
                assert!(
                    page.types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} declared twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a numeric value: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}').expect("closed"))),
            };
            page.samples.push(Sample { name, labels, value });
        }
        for sample in &page.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.name.strip_suffix(suffix))
                .filter(|family| page.types.get(*family).is_some_and(|t| t == "histogram"))
                .unwrap_or(&sample.name);
            assert!(page.types.contains_key(family), "{} has no # TYPE line", sample.name);
        }
        page
    }

    /// The value of the series `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} on the page"))
    }

    /// Series of any family with label `label` equal to `value`.
    fn series_with(&self, label: &str, value: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.labels.get(label).is_some_and(|v| v == value))
            .collect()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "a label value is quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(escaped) => value.push(escaped),
                    None => panic!("a dangling escape"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

fn client_config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4");
    config
}

async fn create_topic(admin: &AdminClient<DefaultClientContext>, name: &str, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// A produce to partition 7 of `topic`, which has one: answered UNKNOWN_TOPIC_OR_PARTITION.
fn produce_to_a_missing_partition(server: &Server, topic: &str) {
    let batch = common::raw::batch(
        kafka_protocol::records::Compression::None,
        &["lost"],
        &[0],
        1_780_000_000_000,
    );
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(7)
                        .with_records(Some(batch.freeze())),
                ]),
        ]);
    let mut stream = common::raw::connect(server);
    stream
        .write_all(&common::raw::frame(ApiKey::Produce, 9, &request))
        .unwrap();
    let answer: ProduceResponse = common::raw::response(&mut stream, ApiKey::Produce, 9);
    assert_eq!(answer.responses[0].partition_responses[0].error_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_show_on_the_metrics_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin: AdminClient<DefaultClientContext> = client_config(&server).create().unwrap();
    // flush.messages=1: every append is fsynced, so the flush histogram counts each.
    create_topic(&admin, "metered", &[("flush.messages", "1")]).await;
    // More in-sync replicas wanted than the topic has replicas: under min ISR from the start.
    create_topic(&admin, "thin", &[("min.insync.replicas", "2")]).await;

    let producer: FutureProducer = client_config(&server)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("compression.type", "none")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = format!("record {i}");
        producer
            .send(
                FutureRecord::<(), _>::to("metered").partition(0).payload(&value),
                TIMEOUT,
            )
            .await
            .expect("acknowledged");
    }
    produce_to_a_missing_partition(&server, "metered");

    // A consumer reads every record, then keeps long-polling an empty partition.
    let consumer: BaseConsumer = client_config(&server)
        .set("group.id", "metrics-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "500")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("metered", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut read = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while read < RECORDS {
        assert!(std::time::Instant::now() < deadline, "read {read} of {RECORDS}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            assert!(message.unwrap().payload().is_some());
            read += 1;
        }
    }
    // Keep polling in the background, so that its fetches long-poll the empty partition.
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let polling = polling.clone();
        std::thread::spawn(move || {
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        })
    };
    wait_for("a long-poll fetch waiting", TIMEOUT, || {
        let page = Page::scrape(&server);
        page.value("strata_purgatory_size", &[("operation", "fetch")]) >= 1.0
            && page.value("strata_request_remote_latency_seconds_sum", &[("api", "Fetch")]) >= 0.4
    });

    let page = Page::scrape(&server);
    let metered = [("topic", "metered")];
    let partition = [("topic", "metered"), ("partition", "0")];

    // Produce: every acks=all request counted, timed and its remote wait recorded (a single replica acks at
    // once, so the wait is short but there).
    let produces = page.value("strata_requests_total", &[("api", "Produce")]);
    assert!(produces >= RECORDS as f64 + 1.0, "{produces}");
    for histogram in [
        "strata_request_latency_seconds",
        "strata_request_queue_latency_seconds",
        "strata_request_local_latency_seconds",
        "strata_request_remote_latency_seconds",
        "strata_response_send_latency_seconds",
    ] {
        assert_eq!(page.types[histogram], "histogram");
        let count = page.value(&format!("{histogram}_count"), &[("api", "Produce")]);
        assert_eq!(count, produces, "{histogram}");
        let inf = page.value(&format!("{histogram}_bucket"), &[("api", "Produce"), ("le", "+Inf")]);
        assert_eq!(inf, count, "{histogram}: the +Inf bucket holds every observation");
        assert!(page.value(&format!("{histogram}_count"), &[("api", "Fetch")]) >= 1.0);
    }
    let total = page.value("strata_request_latency_seconds_sum", &[("api", "Produce")]);
    let local = page.value("strata_request_local_latency_seconds_sum", &[("api", "Produce")]);
    assert!(total > 0.0 && total >= local, "total {total}, local {local}");

    // Bytes and records in: every record once, the bytes as stored (no compression, no rewrite of size).
    assert_eq!(page.value("strata_topic_messages_in_total", &metered), RECORDS as f64);
    let log_size = page.value("strata_log_size_bytes", &partition);
    assert_eq!(page.value("strata_topic_bytes_in_total", &metered), log_size);
    // Out: the consumer read the whole log once.
    assert_eq!(page.value("strata_topic_messages_out_total", &metered), RECORDS as f64);
    assert_eq!(page.value("strata_topic_bytes_out_total", &metered), log_size);
    assert_eq!(page.value("strata_replication_bytes_out_total", &[]), 0.0);

    // The refused produce, by its Kafka name.
    assert_eq!(
        page.value(
            "strata_request_errors_total",
            &[("api", "Produce"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")]
        ),
        1.0
    );

    // The partition's log.
    assert_eq!(page.value("strata_log_end_offset", &partition), RECORDS as f64);
    assert_eq!(page.value("strata_high_watermark", &partition), RECORDS as f64);
    assert_eq!(page.value("strata_log_start_offset", &partition), 0.0);
    assert_eq!(page.value("strata_log_segments", &partition), 1.0);
    assert!(page.value("strata_log_flush_latency_seconds_count", &[]) >= RECORDS as f64);
    assert_eq!(page.value("strata_under_min_isr_partitions", &[]), 1.0, "thin");
    assert!(page.value("strata_leader_partitions", &[]) >= 2.0);

    // Connections: the producer's, the consumer's and the admin client's are open.
    let open: f64 = page
        .samples
        .iter()
        .filter(|s| s.name == "strata_connections")
        .map(|s| s.value)
        .sum();
    let accepted: f64 = page
        .samples
        .iter()
        .filter(|s| s.name == "strata_connections_accepted_total")
        .map(|s| s.value)
        .sum();
    assert!(open >= 3.0 && accepted >= open, "open {open}, accepted {accepted}");

    // Clients gone, their connections close.
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
    drop((producer, admin));
    wait_for("the clients' connections to close", TIMEOUT, || {
        let page = Page::scrape(&server);
        let open: f64 = page
            .samples
            .iter()
            .filter(|s| s.name == "strata_connections")
            .map(|s| s.value)
            .sum();
        open == 0.0
    });

    // A deleted topic's series go, per topic and per partition.
    let admin: AdminClient<DefaultClientContext> = client_config(&server).create().unwrap();
    let deleted = admin.delete_topics(&["metered"], &AdminOptions::new()).await.unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    wait_for("the deleted topic's series to go", TIMEOUT, || {
        Page::scrape(&server).series_with("topic", "metered").is_empty()
    });
    let page = Page::scrape(&server);
    assert!(
        page.get("strata_log_end_offset", &[("topic", "thin"), ("partition", "0")])
            .is_some()
    );
}

/// A fetch at an offset past the log end is answered OFFSET_OUT_OF_RANGE, counted under Fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_out_of_range_is_counted_by_its_error_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin: AdminClient<DefaultClientContext> = client_config(&server).create().unwrap();
    create_topic(&admin, "short", &[]).await;
    let consumer: BaseConsumer = client_config(&server)
        .set("group.id", "out-of-range")
        .set("enable.auto.commit", "false")
        // Report the error rather than reset silently; the broker counts it either way.
        .set("auto.offset.reset", "error")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("short", 0, Offset::Offset(1_000))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    wait_for("OFFSET_OUT_OF_RANGE on /metrics", TIMEOUT, || {
        let _ = consumer.poll(Duration::from_millis(100));
        Page::scrape(&server)
            .get(
                "strata_request_errors_total",
                &[("api", "Fetch"), ("error", "OFFSET_OUT_OF_RANGE")],
            )
            .is_some_and(|count| count >= 1.0)
    });
}

#[test]
fn the_parser_reads_escaped_labels_and_histograms() {
    let page = Page::parse(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"u,o=te\\\\\",y=\"2\"} 3\n\
         # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n",
    );
    assert_eq!(page.value("a_total", &[("x", "q\"u,o=te\\"), ("y", "2")]), 3.0);
    assert_eq!(page.value("h_bucket", &[("le", "+Inf")]), 1.0);
    assert_eq!(page.value("h_count", &[]), 1.0);
}

/// The leader's figure `name` (no labels) for partition 0 of `topic`, and the followers' summed.
fn leader_and_followers(cluster: &Cluster, leader: i32, name: &str) -> (f64, f64) {
    let mut followers = 0.0;
    let mut on_leader = 0.0;
    for (id, node) in cluster.live() {
        let value = Page::scrape(node).value(name, &[]);
        if id == leader {
            on_leader = value;
        } else {
            followers += value;
        }
    }
    (on_leader, followers)
}

/// Three nodes, a topic of three replicas: replication bytes flow from the leader to the followers, an
/// acks=all produce waits for them (remote time), and a follower killed and restarted leaves the ISR and
/// comes back by the leader's request: an ISR expansion on the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_and_isr_changes_show_on_the_leader() {
    let mut cluster = Cluster::start();
    let mut admin = Client::connect(&cluster.node(1).addr).await.unwrap();
    admin
        .create_topic(&AdminTopic {
            name: "replicated".into(),
            partitions: 1,
            replication_factor: cluster::NODES as i16,
            configs: vec![],
        })
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        producer
            .send(
                FutureRecord::<(), _>::to("replicated")
                    .partition(0)
                    .payload(&format!("r{i}")),
                TIMEOUT,
            )
            .await
            .expect("acknowledged");
    }
    let leader = admin.metadata(Some(&["replicated"]), false).await.unwrap().topics[0].partitions[0].leader;
    let partition = [("topic", "replicated"), ("partition", "0")];
    wait_for("every replica to hold every record", TIMEOUT, || {
        cluster
            .live()
            .all(|(_, node)| Page::scrape(node).get("strata_log_end_offset", &partition) == Some(RECORDS as f64))
    });
    let (out_on_leader, out_on_followers) =
        leader_and_followers(&cluster, leader, "strata_replication_bytes_out_total");
    let (in_on_leader, in_on_followers) = leader_and_followers(&cluster, leader, "strata_replication_bytes_in_total");
    assert!(
        out_on_leader > 0.0 && out_on_followers == 0.0,
        "{out_on_leader} {out_on_followers}"
    );
    assert!(
        in_on_followers > 0.0 && in_on_leader == 0.0,
        "{in_on_leader} {in_on_followers}"
    );
    let leader_page = Page::scrape(cluster.node(leader));
    assert!(
        leader_page.value("strata_request_remote_latency_seconds_sum", &[("api", "Produce")]) > 0.0,
        "acks=all waited for the followers"
    );
    assert_eq!(
        leader_page.value("strata_topic_messages_in_total", &[("topic", "replicated")]),
        RECORDS as f64
    );

    let follower = (1..=cluster::NODES as i32).find(|id| *id != leader).unwrap();
    cluster.kill(follower);
    // The ISR loses it: by the leader's own request (a shrink it counts) or by the controller fencing the
    // dead broker first (the two race at these settings), so only the partition's state is checked here.
    wait_for("the partition to be under-replicated", TIMEOUT, || {
        Page::scrape(cluster.node(leader)).value("strata_under_replicated_partitions", &[]) >= 1.0
    });
    cluster.restart(follower);
    wait_for("the leader to expand the ISR again", TIMEOUT, || {
        let page = Page::scrape(cluster.node(leader));
        page.value("strata_isr_expands_total", &[]) >= 1.0
            && page.value("strata_under_replicated_partitions", &[]) == 0.0
    });
}
