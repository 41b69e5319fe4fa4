//! Python Kafka clients against a broker process. The interpreter is `STRATA_PYTHON` (scripts/test sets it),
//! else the venv `scripts/python-env` creates with the pinned clients of `scripts/python-requirements.txt`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::raw::{connect, frame, response};
use common::{Server, python, wait_for};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

/// Runs `broker/tests/python/<script>` with `args`; its last line of output, parsed as JSON.
fn run(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("running python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{script} printed nothing:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last:?}: {e}"))
}

/// kafka-python keeps an incremental fetch session by default: it reads a 40-partition topic whole, then
/// the records appended to two of its partitions, every record exactly once, over one session.
#[test]
fn kafka_python_consumes_through_a_fetch_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let report = run("fetch_sessions.py", &[&server.addr, "sessions"]);

    assert_eq!(
        report["produced_first"], 40,
        "one record at offset 0 of each partition: {report}"
    );
    let mut first: Vec<String> = (0..40).map(|p| format!("first-{p}")).collect();
    first.sort();
    assert_eq!(report["first_read"], serde_json::json!(first));
    let mut second: Vec<String> = (0..20).map(|i| format!("second-{i}")).collect();
    second.sort();
    assert_eq!(report["second_read"], serde_json::json!(second));
    assert_eq!(report["second_partitions"], serde_json::json!([5, 17]));
    let sessions = report["sessions"].as_object().expect("a session per broker");
    assert_eq!(sessions.len(), 1, "{report}");
    assert!(
        sessions.values().all(|id| id.as_i64().is_some_and(|id| id > 0)),
        "the broker kept the consumer's session: {report}"
    );
}

/// One worker process of `share_worker.py`, writing what it gets to its own file.
struct Worker {
    child: Child,
    out: PathBuf,
}

/// A record as a worker wrote it down.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    mode: String,
    partition: i32,
    offset: i64,
    deliveries: i32,
    value: String,
}

impl Worker {
    fn start(python: &Path, bootstrap: &str, dir: &Path, name: &str, mode: &str) -> Worker {
        let out = dir.join(format!("{name}.log"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/share_worker.py");
        let child = Command::new(python)
            .arg(script)
            .args([bootstrap, "workers", "jobs", out.to_str().unwrap(), mode])
            .spawn()
            .expect("starting a worker");
        Worker { child, out }
    }

    /// The records the worker got (not the commit confirmations).
    fn seen(&self) -> Vec<Seen> {
        self.lines().into_iter().filter(|s| s.mode != "committed").collect()
    }

    /// The records whose acknowledgement the broker confirmed to the worker.
    fn committed(&self) -> Vec<Seen> {
        self.lines().into_iter().filter(|s| s.mode == "committed").collect()
    }

    fn lines(&self) -> Vec<Seen> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut f = line.splitn(5, ' ');
                Some(Seen {
                    mode: f.next()?.to_owned(),
                    partition: f.next()?.parse().ok()?,
                    offset: f.next()?.parse().ok()?,
                    deliveries: f.next()?.parse().ok()?,
                    value: f.next()?.to_owned(),
                })
            })
            .collect()
    }

    /// Asks the worker to close its consumer and waits for it.
    fn stop(mut self) {
        std::fs::write(self.out.with_extension("log.stop"), b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "a worker did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_owned()))
}

/// Creates `jobs` with two partitions, and has the share group `workers` start from the earliest records,
/// with more group configs if given.
fn setup(server: &Server, more: &[(&'static str, &'static str)]) {
    setup_replicated(server, 1, more);
}

/// [`setup`] with `replicas` replicas of each partition.
fn setup_replicated(server: &Server, replicas: i16, more: &[(&'static str, &'static str)]) {
    let mut stream = connect(server);
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(name("jobs"))
            .with_num_partitions(2)
            .with_replication_factor(replicas),
    ]);
    stream.write_all(&frame(ApiKey::CreateTopics, 7, &create)).unwrap();
    let created: CreateTopicsResponse = response(&mut stream, ApiKey::CreateTopics, 7);
    assert_eq!(created.topics[0].error_code, 0);
    let earliest = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(StrBytes::from_static_str("workers"))
            .with_configs(
                [("share.auto.offset.reset", "earliest")]
                    .iter()
                    .chain(more)
                    .map(|(key, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_static_str(key))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str(value)))
                    })
                    .collect(),
            ),
    ]);
    stream
        .write_all(&frame(ApiKey::IncrementalAlterConfigs, 1, &earliest))
        .unwrap();
    let altered: IncrementalAlterConfigsResponse = response(&mut stream, ApiKey::IncrementalAlterConfigs, 1);
    assert_eq!(
        altered.responses[0].error_code, 0,
        "{:?}",
        altered.responses[0].error_message
    );
}

/// Produces `values` to the two partitions of `jobs` in turn, one batch per record.
fn produce(server: &Server, values: &[String]) {
    let mut stream = connect(server);
    for (i, value) in values.iter().enumerate() {
        let value: &'static str = Box::leak(value.clone().into_boxed_str());
        let batch = common::raw::batch(Compression::None, &[value], &[0], 1_780_000_000_000).freeze();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("jobs"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index((i % 2) as i32)
                            .with_records(Some(batch)),
                    ]),
            ]);
        stream.write_all(&frame(ApiKey::Produce, 9, &request)).unwrap();
        let produced: ProduceResponse = response(&mut stream, ApiKey::Produce, 9);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
}

/// Share groups with librdkafka's share consumer (confluent-kafka 2.16): a worker SIGKILLed while it holds
/// records, whose records go to the others once their acquisition locks expire, delivered a second time;
/// then five workers on a two-partition topic, all of which get work, and every record processed by exactly
/// one of them.
#[test]
fn confluent_kafka_share_consumers_share_a_two_partition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.share.record.lock.duration.ms=3000",
            "group.share.heartbeat.interval.ms=500",
            "group.share.session.timeout.ms=5000",
        ],
    );
    let python = python();
    setup(&server, &[]);

    // A worker takes records and dies holding them.
    let held: Vec<String> = (0..10).map(|i| format!("held-{i}")).collect();
    produce(&server, &held);
    let mut holder = Worker::start(&python, &server.addr, dir.path(), "holder", "hold");
    wait_for("the holder to get records", Duration::from_secs(60), || {
        !holder.seen().is_empty()
    });
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let killed_at = Instant::now();
    let taken: BTreeSet<(i32, i64)> = holder.seen().iter().map(|s| (s.partition, s.offset)).collect();

    let jobs: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
    produce(&server, &jobs);
    let workers: Vec<Worker> = (0..5)
        .map(|i| Worker::start(&python, &server.addr, dir.path(), &format!("worker-{i}"), "accept"))
        .collect();
    let everything = held.len() + jobs.len();
    let mut redelivered_after = None;
    wait_for("every record to be processed", Duration::from_secs(120), || {
        let seen: BTreeSet<(i32, i64)> = workers
            .iter()
            .flat_map(Worker::seen)
            .map(|s| (s.partition, s.offset))
            .collect();
        if redelivered_after.is_none() && taken.iter().all(|t| seen.contains(t)) {
            redelivered_after = Some(killed_at.elapsed());
        }
        seen.len() >= everything
    });
    eprintln!("the held records were redelivered {redelivered_after:?} after the kill");
    let seen: Vec<Vec<Seen>> = workers.iter().map(Worker::seen).collect();
    for worker in workers {
        worker.stop();
    }

    // Every record exactly once among the accepting workers, each of which got some.
    let mut by_record: BTreeMap<(i32, i64), Vec<&Seen>> = BTreeMap::new();
    for s in seen.iter().flatten() {
        by_record.entry((s.partition, s.offset)).or_default().push(s);
    }
    assert_eq!(by_record.len(), everything, "every record processed");
    let twice: Vec<_> = by_record.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(twice.is_empty(), "records processed more than once: {twice:?}");
    for (i, got) in seen.iter().enumerate() {
        assert!(
            !got.is_empty(),
            "worker {i} got no work: {:?}",
            seen.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    let mut values: Vec<&str> = by_record.values().map(|s| s[0].value.as_str()).collect();
    values.sort();
    let mut expected: Vec<&str> = held.iter().chain(&jobs).map(String::as_str).collect();
    expected.sort();
    assert_eq!(values, expected);
    // The records the dead worker held came back, delivered a second time; the rest once.
    for (record, s) in &by_record {
        let deliveries = if taken.contains(record) { 2 } else { 1 };
        assert_eq!(s[0].deliveries, deliveries, "{record:?}: {:?}", s[0]);
        assert_eq!(s[0].mode, "accept");
    }

    // confluent-kafka's AdminClient deletes the share group once it has no members (the killed holder's
    // session ends within `group.share.session.timeout.ms`); then it is gone.
    wait_for(
        "the AdminClient to delete the share group",
        Duration::from_secs(30),
        || run("share_admin.py", &[&server.addr, "workers"])["error"].is_null(),
    );
    let again = run("share_admin.py", &[&server.addr, "workers"]);
    assert_eq!(again["error"], "GROUP_ID_NOT_FOUND", "{again}");
}

/// The dead-letter topic: a record a worker rejects, and one that fails (is released) on every delivery
/// until the delivery limit, are copied there with headers saying where from and why; every other record is
/// processed once.
#[test]
fn rejected_and_exhausted_share_records_land_in_the_dead_letter_topic() {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.share.delivery.count.limit=3",
            "group.share.heartbeat.interval.ms=500",
        ],
    );
    let python = python();
    setup(&server, &[("errors.deadletterqueue.topic.name", "jobs.dlq")]);
    let values: Vec<String> = ["ok-0", "poison-0", "ok-1", "flaky-0", "ok-2", "ok-3"]
        .iter()
        .map(|v| v.to_string())
        .collect();
    produce(&server, &values);
    let workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&python, &server.addr, dir.path(), &format!("worker-{i}"), "accept"))
        .collect();

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "200")
        .create()
        .unwrap();
    consumer.subscribe(&["jobs.dlq"]).unwrap();
    let mut letters: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters.len() < 2 {
        assert!(Instant::now() < deadline, "dead letters so far: {letters:?}");
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.insert(value, headers);
    }
    wait_for("every good record to be processed", Duration::from_secs(60), || {
        let seen: BTreeSet<String> = workers.iter().flat_map(Worker::seen).map(|s| s.value).collect();
        ["ok-0", "ok-1", "ok-2", "ok-3"].iter().all(|ok| seen.contains(*ok))
    });
    let seen: Vec<Seen> = workers.iter().flat_map(Worker::seen).collect();
    for worker in workers {
        worker.stop();
    }

    let poison = &letters["poison-0"];
    assert_eq!(poison["__dlq.errors.reason"], "rejected");
    assert_eq!(poison["__dlq.errors.delivery.count"], "1");
    assert_eq!(poison["__dlq.errors.topic"], "jobs");
    assert_eq!(poison["__dlq.errors.group.id"], "workers");
    assert_eq!(poison["__dlq.errors.partition"], "1");
    assert_eq!(poison["__dlq.errors.offset"], "0");
    let flaky = &letters["flaky-0"];
    assert_eq!(flaky["__dlq.errors.reason"], "delivery-limit");
    assert_eq!(flaky["__dlq.errors.delivery.count"], "3");
    // The flaky record was handed out exactly three times; the good ones once each.
    let deliveries = |value: &str| seen.iter().filter(|s| s.value == value).count();
    assert_eq!(deliveries("flaky-0"), 3);
    for ok in ["ok-0", "ok-1", "ok-2", "ok-3"] {
        assert_eq!(deliveries(ok), 1, "{ok}");
    }
}

/// Produces `values` to the two partitions of `jobs` in turn through librdkafka with acks=all, wherever their
/// leaders are.
fn produce_to(bootstrap: &str, values: &[String]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let partition = (i % 2) as i32;
        producer
            .send(BaseRecord::<(), str>::to("jobs").partition(partition).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(producer.in_flight_count(), 0, "every record acknowledged");
}

/// The leader of partition `partition` of `jobs`, from `bootstrap`'s metadata.
fn leader_of(bootstrap: &str, partition: i32) -> i32 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client.fetch_metadata(Some("jobs"), Duration::from_secs(10)).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .unwrap()
}

/// Acknowledged share records survive a leader failover (the persister: `__share_group_state`): on three
/// nodes, what one worker had acknowledged and the broker confirmed never comes back after the leader of the
/// partition is SIGKILLed, and what a worker held unacknowledged when it died comes back to the others.
#[test]
fn acknowledged_share_records_never_come_back_across_a_leader_failover() {
    let mut cluster = common::cluster::Cluster::start();
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    setup_replicated(cluster.node(1), 3, &[]);
    let bootstrap = cluster.bootstrap();

    // A worker processes and acknowledges the first records, and the broker confirms it.
    let first: Vec<String> = (0..20).map(|i| format!("first-{i}")).collect();
    produce_to(&bootstrap, &first);
    let early = Worker::start(&python, &bootstrap, dir.path(), "early", "accept");
    wait_for("the first records to be acknowledged", Duration::from_secs(90), || {
        early.committed().len() >= first.len()
    });
    let acknowledged: BTreeSet<String> = early.committed().into_iter().map(|s| s.value).collect();
    early.stop();

    // A worker takes some of the next records and dies holding them; then the leader of their partition dies.
    let second: Vec<String> = (0..20).map(|i| format!("second-{i}")).collect();
    produce_to(&bootstrap, &second);
    let mut holder = Worker::start(&python, &bootstrap, dir.path(), "holder", "hold");
    wait_for("the holder to get records", Duration::from_secs(60), || {
        !holder.seen().is_empty()
    });
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let held: BTreeSet<String> = holder.seen().into_iter().map(|s| s.value).collect();
    let leader = leader_of(&bootstrap, holder.seen()[0].partition);
    cluster.kill(leader);
    let bootstrap = cluster.bootstrap();

    let third: Vec<String> = (0..20).map(|i| format!("third-{i}")).collect();
    produce_to(&bootstrap, &third);
    let workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&python, &bootstrap, dir.path(), &format!("late-{i}"), "accept"))
        .collect();
    let remaining: BTreeSet<String> = second.iter().chain(&third).cloned().collect();
    wait_for(
        "every remaining record to be acknowledged",
        Duration::from_secs(120),
        || {
            let done: BTreeSet<String> = workers.iter().flat_map(Worker::committed).map(|s| s.value).collect();
            remaining.is_subset(&done)
        },
    );
    let late: Vec<Seen> = workers.iter().flat_map(Worker::seen).collect();
    for worker in workers {
        worker.stop();
    }

    assert_eq!(acknowledged.len(), first.len());
    let again: Vec<&Seen> = late.iter().filter(|s| acknowledged.contains(&s.value)).collect();
    assert!(
        again.is_empty(),
        "acknowledged records delivered again after the failover: {again:?}"
    );
    let redelivered: BTreeSet<String> = late
        .iter()
        .filter(|s| held.contains(&s.value))
        .map(|s| s.value.clone())
        .collect();
    assert_eq!(redelivered, held, "what the dead worker held went to the others");
}
