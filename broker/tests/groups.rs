//! Consumer groups through librdkafka's `subscribe`: partitions shared out by the group, every record read
//! once, committed offsets that survive a restart.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "shared";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 6000;
const TIMEOUT: Duration = Duration::from_secs(120);

fn config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4");
    config
}

fn group_consumer(server: &Server, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = config(server)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

/// Polls every consumer until `done` holds for the sizes of their assignments.
fn poll_until<C: rdkafka::consumer::ConsumerContext>(
    consumers: &[&BaseConsumer<C>],
    what: &str,
    done: impl Fn(&[usize]) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for consumer in consumers {
            consumer.poll(Duration::from_millis(20));
        }
        let counts: Vec<usize> = consumers.iter().map(|c| c.assignment().unwrap().count()).collect();
        if done(&counts) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: assignments stuck at {counts:?}");
    }
}

/// A consumer's assigned partitions, sorted.
fn assigned<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>) -> Vec<i32> {
    let mut partitions: Vec<i32> = consumer
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    partitions.sort();
    partitions
}

async fn setup(server: &Server, records: usize) {
    let admin: AdminClient<DefaultClientContext> = config(server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    produce(server, 0, records).await;
}

async fn produce(server: &Server, from: usize, count: usize) {
    let producer: FutureProducer = config(server).set("linger.ms", "5").create().unwrap();
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let record = FutureRecord::to(TOPIC)
            .partition((i % PARTITIONS as usize) as i32)
            .key("k")
            .payload("v");
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_six_partitions_read_everything_once_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=1500"]);
    setup(&server, 0).await;
    // The group settles before there is anything to read, so no rebalance can hand a partition over
    // mid-way (which would legitimately re-deliver uncommitted records).
    let consumers: Vec<BaseConsumer> = (0..3).map(|_| group_consumer(&server, "readers")).collect();
    let members: Vec<&BaseConsumer> = consumers.iter().collect();
    poll_until(&members, "three members sharing six partitions", |counts| {
        counts == [2, 2, 2]
    });
    produce(&server, 0, RECORDS).await;

    let seen: Arc<Mutex<HashSet<(i32, i64)>>> = Arc::default();
    let duplicates: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let threads: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            let (seen, duplicates) = (seen.clone(), duplicates.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + TIMEOUT;
                while seen.lock().unwrap().len() < RECORDS {
                    assert!(
                        Instant::now() < deadline,
                        "the group read {} of {RECORDS}",
                        seen.lock().unwrap().len()
                    );
                    if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                        let message = message.expect("no consumer error");
                        if !seen.lock().unwrap().insert((message.partition(), message.offset())) {
                            duplicates.lock().unwrap().push((message.partition(), message.offset()));
                        }
                    }
                }
                consumer.commit_consumer_state(CommitMode::Sync).unwrap();
                let owned = consumer.assignment().unwrap().count();
                (consumer, owned)
            })
        })
        .collect();
    let finished: Vec<(BaseConsumer, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        duplicates.lock().unwrap().is_empty(),
        "read twice: {:?}",
        duplicates.lock().unwrap()
    );
    let shares: Vec<usize> = finished.iter().map(|(_, owned)| *owned).collect();
    assert_eq!(shares, vec![2, 2, 2], "six partitions shared out evenly");
    drop(finished);

    // The committed offsets are durable: after a restart the group resumes at the end.
    assert!(server.terminate(Duration::from_secs(10)).success());
    server.restart();
    let consumer = group_consumer(&server, "readers");
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(TOPIC, p);
    }
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(30)).unwrap();
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            Offset::Offset((RECORDS as i32 / PARTITIONS) as i64),
            "{element:?}"
        );
    }
    produce(&server, RECORDS, 12).await;
    let deadline = Instant::now() + TIMEOUT;
    let mut fresh = 0;
    while fresh < 12 {
        assert!(Instant::now() < deadline, "read {fresh} of the 12 new records");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            assert!(
                message.offset() >= (RECORDS as i32 / PARTITIONS) as i64,
                "only records after the commit"
            );
            fresh += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_without_leaving_loses_its_partitions_after_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    setup(&server, 60).await;
    let survivor = group_consumer(&server, "failover");
    // The other member is a separate process (kcat's balanced consumer), so that it can die for real.
    let mut victim = std::process::Command::new("kcat")
        .args([
            "-b",
            &server.addr,
            "-X",
            "broker.address.family=v4",
            "-X",
            "session.timeout.ms=6000",
        ])
        // Frequent heartbeats: its session then ends at least 5.5 s after the kill, whatever the timing.
        .args(["-X", "heartbeat.interval.ms=500"])
        .args(["-G", "failover", TOPIC])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kcat is installed (scripts/test installs it)");
    poll_until(&[&survivor], "two members sharing the partitions", |counts| {
        counts == [3]
    });
    // SIGKILL: no LeaveGroup. After its session timeout the survivor gets everything.
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    poll_until(&[&survivor], "the dead member's partitions moving", |counts| {
        counts == [PARTITIONS as usize]
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(5),
        "moved before the session could have expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_empty_groups_are_deleted_and_their_offsets_go_with_them() {
    use rdkafka::types::RDKafkaErrorCode;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    setup(&server, 60).await;
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();

    // A consumer that assigns partitions itself commits without joining: its group has no members.
    let manual: BaseConsumer = config(&server)
        .set("group.id", "manual")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(3)).unwrap();
    manual.commit(&offsets, CommitMode::Sync).unwrap();
    let committed = |consumer: &BaseConsumer| {
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(TOPIC, 0);
        consumer
            .committed_offsets(wanted, Duration::from_secs(30))
            .unwrap()
            .elements()[0]
            .offset()
    };
    assert_eq!(committed(&manual), Offset::Offset(3));

    // A group with a live member is refused.
    let member = group_consumer(&server, "busy");
    poll_until(&[&member], "the member getting partitions", |counts| counts[0] > 0);
    let results = admin
        .delete_groups(&["busy", "manual", "never-existed"], &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().1, RDKafkaErrorCode::NonEmptyGroup);
    assert!(results[1].is_ok(), "{results:?}");
    assert_eq!(results[2].as_ref().unwrap_err().1, RDKafkaErrorCode::GroupIdNotFound);
    assert_eq!(
        committed(&manual),
        Offset::Invalid,
        "the deleted group's offsets are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_topics_a_group_does_not_read_can_be_deleted() {
    use std::io::Write;

    use common::raw::{connect, frame, response};
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::{ApiKey, GroupId, OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    setup(&server, 60).await;
    let offset_delete = |group: &'static str| {
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
            ]);
        let mut stream = connect(&server);
        stream.write_all(&frame(ApiKey::OffsetDelete, 0, &request)).unwrap();
        let answer: OffsetDeleteResponse = response(&mut stream, ApiKey::OffsetDelete, 0);
        (
            answer.error_code,
            answer.topics.first().map(|t| t.partitions[0].error_code),
        )
    };
    let consumer: BaseConsumer = config(&server)
        .set("group.id", "idle")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(5)).unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    assert_eq!(offset_delete("idle"), (0, Some(0)));
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(30)).unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Invalid);
    assert_eq!(
        offset_delete("nobody").0,
        kafka_protocol::ResponseError::GroupIdNotFound.code()
    );

    // A group whose members subscribe to the topic keeps its offsets.
    let member = group_consumer(&server, "reading");
    poll_until(&[&member], "the member getting partitions", |counts| counts[0] > 0);
    let subscribed = kafka_protocol::ResponseError::GroupSubscribedToTopic.code();
    assert_eq!(offset_delete("reading"), (0, Some(subscribed)));
}

/// Records the partitions taken away from a consumer in rebalances.
#[derive(Default)]
struct RevocationLog(Mutex<Vec<(String, i32)>>);

impl rdkafka::client::ClientContext for RevocationLog {}

impl rdkafka::consumer::ConsumerContext for RevocationLog {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Revoke(partitions) = rebalance {
            let mut log = self.0.lock().unwrap();
            log.extend(
                partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            );
        }
    }
}

/// A member of `group` that logs what rebalances take from it; `settings` are added to the usual ones.
fn logged_member(server: &Server, group: &str, settings: &[(&str, &str)]) -> BaseConsumer<RevocationLog> {
    let mut config = config(server);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("heartbeat.interval.ms", "200");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer<RevocationLog> = config.create_with_context(RevocationLog::default()).unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

fn cooperative(server: &Server) -> BaseConsumer<RevocationLog> {
    let settings = [
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("session.timeout.ms", "6000"),
    ];
    logged_member(server, "sticky", &settings)
}

fn static_member(server: &Server, instance: &str) -> BaseConsumer<RevocationLog> {
    logged_member(
        server,
        "static",
        &[("group.instance.id", instance), ("session.timeout.ms", "30000")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_must_move_when_a_member_joins() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=1000"]);
    setup(&server, 60).await;
    let first: Vec<BaseConsumer<RevocationLog>> = (0..3).map(|_| cooperative(&server)).collect();
    let refs: Vec<&BaseConsumer<RevocationLog>> = first.iter().collect();
    poll_until(&refs, "three members", |counts| counts == [2, 2, 2]);
    let before: Vec<Vec<i32>> = first.iter().map(assigned).collect();
    for consumer in &first {
        consumer.context().0.lock().unwrap().clear();
    }

    let fourth = cooperative(&server);
    let mut all = refs.clone();
    all.push(&fourth);
    poll_until(&all, "a fourth member", |counts| {
        counts.iter().sum::<usize>() == 6 && counts[3] >= 1 && counts.iter().all(|c| *c <= 2)
    });
    let revoked: Vec<(String, i32)> = first
        .iter()
        .flat_map(|c| c.context().0.lock().unwrap().clone())
        .collect();
    let mut revoked_partitions: Vec<i32> = revoked.iter().map(|(_, p)| *p).collect();
    revoked_partitions.sort();
    assert_eq!(
        revoked_partitions,
        assigned(&fourth),
        "only the partitions that moved were revoked (before: {before:?})"
    );
}

/// A server and two static members "a" and "b" of one generation, three partitions each, with a's log of
/// revocations cleared. The leader is the member whose id sorts first ("a-…"), so "b" is the follower.
async fn static_pair(dir: &std::path::Path) -> (Server, BaseConsumer<RevocationLog>, BaseConsumer<RevocationLog>) {
    // A long initial delay: both members must land in the first generation.
    let server = Server::start(dir, &["group.initial.rebalance.delay.ms=3000"]);
    setup(&server, 60).await;
    let a = static_member(&server, "a");
    let b = static_member(&server, "b");
    poll_until(&[&a, &b], "the static members settling", |counts| counts == [3, 3]);
    a.context().0.lock().unwrap().clear();
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_that_restarts_gets_its_partitions_back_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let (server, a, b) = static_pair(dir.path()).await;
    let (a_before, b_before) = (assigned(&a), assigned(&b));

    // "b" restarts: a static member leaves no LeaveGroup behind, and comes back with the same instance id.
    drop(b);
    let b = static_member(&server, "b");
    poll_until(&[&a, &b], "the static members settling", |counts| counts == [3, 3]);
    assert_eq!(
        assigned(&b),
        b_before,
        "the restarted member got its old partitions back"
    );
    assert_eq!(assigned(&a), a_before);
    assert!(
        a.context().0.lock().unwrap().is_empty(),
        "the other member saw no rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_consumer_with_the_same_instance_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (server, a, b) = static_pair(dir.path()).await;
    let b_partitions = assigned(&b);

    // A rolling deploy whose pods overlap: a second process with b's instance id while b still runs.
    let b_next = static_member(&server, "b");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for consumer in [&a, &b, &b_next] {
            consumer.poll(Duration::from_millis(20));
        }
        if b.client().fatal_error().is_some() && assigned(&b_next) == b_partitions {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the older process not fenced ({:?}) or the newer without its partitions ({:?})",
            b.client().fatal_error(),
            assigned(&b_next)
        );
    }
    let (code, reason) = b.client().fatal_error().unwrap();
    assert_eq!(code, rdkafka::types::RDKafkaErrorCode::FencedInstanceId, "{reason}");
    assert!(
        a.context().0.lock().unwrap().is_empty(),
        "the other member saw no rebalance"
    );
}

/// One request and its answer on `stream`.
fn exchange<Q, A>(
    stream: &mut std::net::TcpStream,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    request: &Q,
) -> A
where
    Q: kafka_protocol::protocol::Encodable,
    A: kafka_protocol::protocol::Decodable,
{
    use std::io::Write;
    stream.write_all(&common::raw::frame(key, version, request)).unwrap();
    common::raw::response(stream, key, version)
}

/// JoinGroup for a consumer of `group` subscribing to nothing in particular, with a session of
/// `session_timeout_ms`; v4+ hands a new member its id with MEMBER_ID_REQUIRED first.
fn join_group(
    stream: &mut std::net::TcpStream,
    version: i16,
    group: &str,
    session_timeout_ms: i32,
) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupRequest};
    use kafka_protocol::protocol::StrBytes;

    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(6000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
        ]);
    exchange(stream, ApiKey::JoinGroup, version, &request)
}

/// A client of `group` that joins nothing: it commits and reads committed offsets.
fn reader(server: &Server, group: &str) -> BaseConsumer {
    config(server)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The groups ListGroups shows.
fn listed_groups(server: &Server) -> Vec<String> {
    use kafka_protocol::messages::{ApiKey, ListGroupsRequest, ListGroupsResponse};

    let mut stream = common::raw::connect(server);
    let answer: ListGroupsResponse = exchange(&mut stream, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(answer.error_code, 0);
    answer.groups.into_iter().map(|g| g.group_id.0.to_string()).collect()
}

const GROUP_MAX_SIZE_REACHED: i16 = 81;
const MEMBER_ID_REQUIRED: i16 = 79;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_at_group_max_size_refuses_new_members_until_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0", "group.max.size=2"]);
    setup(&server, 0).await;
    let first = group_consumer(&server, "capped");
    let second = group_consumer(&server, "capped");
    poll_until(&[&first, &second], "two members sharing the partitions", |counts| {
        counts == [3, 3]
    });

    // A third consumer is refused, with no member id, whether or not its version asks for one first.
    let mut stream = common::raw::connect(&server);
    for version in [3, 5] {
        let answer = join_group(&mut stream, version, "capped", 6000);
        assert_eq!(
            (answer.error_code, answer.member_id.as_str()),
            (GROUP_MAX_SIZE_REACHED, ""),
            "JoinGroup v{version}"
        );
    }
    // The members were not disturbed.
    for _ in 0..10 {
        first.poll(Duration::from_millis(20));
        second.poll(Duration::from_millis(20));
    }
    assert_eq!((assigned(&first).len(), assigned(&second).len()), (3, 3));

    // Once a member has left there is room again.
    drop(second);
    poll_until(&[&first], "the remaining member taking every partition", |counts| {
        counts == [PARTITIONS as usize]
    });
    let answer = join_group(&mut stream, 5, "capped", 6000);
    assert_eq!(answer.error_code, MEMBER_ID_REQUIRED);
    assert!(!answer.member_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_expire_after_the_retention_and_stay_expired_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "group.initial.rebalance.delay.ms=0",
            "offsets.retention.ms=2000",
            "offsets.retention.check.interval.ms=100",
        ],
    );
    setup(&server, 60).await;
    let commit = |consumer: &BaseConsumer, offset: i64| {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(TOPIC, 0, Offset::Offset(offset)).unwrap();
        consumer.commit(&offsets, CommitMode::Sync).unwrap();
    };
    let committed = |reader: &BaseConsumer| {
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(TOPIC, 0);
        reader
            .committed_offsets(wanted, Duration::from_secs(30))
            .unwrap()
            .elements()[0]
            .offset()
    };

    // A group whose member stays: its offsets are kept however old they get.
    let staying = group_consumer(&server, "staying");
    poll_until(&[&staying], "the member getting partitions", |counts| counts[0] > 0);
    commit(&staying, 5);
    // A group whose member leaves: its offsets go the retention after it is empty.
    let leaving = group_consumer(&server, "leaving");
    poll_until(&[&leaving], "the member getting partitions", |counts| counts[0] > 0);
    commit(&leaving, 7);
    drop(leaving);
    // A consumer that assigns partitions itself: its offsets go the retention after their commit.
    let standalone = reader(&server, "standalone");
    commit(&standalone, 3);

    let (left, alone, stays) = (
        reader(&server, "leaving"),
        reader(&server, "standalone"),
        reader(&server, "staying"),
    );
    assert_eq!(committed(&left), Offset::Offset(7));
    let deadline = Instant::now() + TIMEOUT;
    while committed(&left) != Offset::Invalid || committed(&alone) != Offset::Invalid {
        assert!(Instant::now() < deadline, "the offsets did not expire");
        staying.poll(Duration::from_millis(50));
    }
    // Expired more than the retention after the staying member's commit: its group's are still there.
    assert_eq!(committed(&stays), Offset::Offset(5));
    common::wait_for("the expired groups to go", TIMEOUT, || {
        let listed = listed_groups(&server);
        listed == ["staying"]
    });

    // The expiry was written to __consumer_offsets: a restart does not bring the offsets back. The staying
    // group's are read back, and kept while its member rejoins.
    assert!(server.terminate(Duration::from_secs(10)).success());
    server.restart();
    let (left, alone, stays) = (
        reader(&server, "leaving"),
        reader(&server, "standalone"),
        reader(&server, "staying"),
    );
    assert_eq!(committed(&left), Offset::Invalid);
    assert_eq!(committed(&alone), Offset::Invalid);
    assert_eq!(committed(&stays), Offset::Offset(5));
    drop(staying);
}

#[test]
fn a_thousand_groups_joined_and_left_leave_no_group_behind() {
    use kafka_protocol::messages::{
        ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, LeaveGroupRequest, LeaveGroupResponse,
    };
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.initial.rebalance.delay.ms=0",
            "offsets.retention.check.interval.ms=100",
        ],
    );
    let mut stream = common::raw::connect(&server);
    // The first FindCoordinator creates __consumer_offsets.
    common::wait_for("a coordinator", TIMEOUT, || {
        let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("cycle-0"));
        let answer: FindCoordinatorResponse = exchange(&mut stream, ApiKey::FindCoordinator, 1, &request);
        answer.error_code == 0
    });
    // While a partition of __consumer_offsets is read back, its groups' requests are answered
    // COORDINATOR_LOAD_IN_PROGRESS (or NOT_COORDINATOR before it is led): asked again.
    let mut join = |version: i16, group: &str, session_timeout_ms: i32| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let answer = join_group(&mut stream, version, group, session_timeout_ms);
            if ![14, 15, 16].contains(&answer.error_code) {
                return answer;
            }
            assert!(Instant::now() < deadline, "no coordinator for {group}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let mut members = Vec::new();
    for i in 0..1000 {
        let group = format!("cycle-{i}");
        // v3 joins at once, without MEMBER_ID_REQUIRED. A long session: none ends while the test runs.
        let joined = join(3, &group, 60_000);
        assert_eq!(joined.error_code, 0, "{group}");
        members.push((group, joined.member_id));
    }
    // Members handed an id that never join with it: forgotten after their session timeout (6 s).
    for i in 0..20 {
        let answer = join(5, &format!("abandoned-{i}"), 6000);
        assert_eq!(answer.error_code, MEMBER_ID_REQUIRED);
    }
    assert!(listed_groups(&server).len() >= 1000, "the groups exist while joined");
    for (group, member_id) in members {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
            .with_member_id(member_id);
        let answer: LeaveGroupResponse = exchange(&mut stream, ApiKey::LeaveGroup, 1, &request);
        assert_eq!(answer.error_code, 0, "{group}");
    }
    common::wait_for("every group to go", TIMEOUT, || listed_groups(&server).is_empty());
}
