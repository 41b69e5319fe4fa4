//! Consumer groups of the KIP-848 protocol through librdkafka (`group.protocol=consumer`): the coordinator
//! assigns, members reconcile one heartbeat at a time, and partitions move without the others stopping.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Server;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "kip848";
const GROUP: &str = "kip848-readers";
const PARTITIONS: i32 = 6;
/// Records produced in each phase.
const RECORDS: usize = 600;
const TIMEOUT: Duration = Duration::from_secs(60);

fn config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &server.addr)
        .set("broker.address.family", "v4");
    config
}

/// Partitions taken away from a member in rebalances (lost ones too: librdkafka revokes them through the
/// same callback), and how many assignments it was handed.
#[derive(Default)]
struct Revocations(Mutex<Vec<i32>>, std::sync::atomic::AtomicUsize);

impl rdkafka::client::ClientContext for Revocations {}

impl ConsumerContext for Revocations {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let mut log = self.0.lock().unwrap();
                log.extend(partitions.elements().iter().map(|e| e.partition()));
            }
            Rebalance::Assign(_) => {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Rebalance::Error(_) => {}
        }
    }
}

type Member = BaseConsumer<Revocations>;

fn member(server: &Server) -> Member {
    member_of(&server.addr)
}

fn member_of(bootstrap: &str) -> Member {
    member_as(bootstrap, None)
}

/// A member, static if `instance` (its `group.instance.id`) is given.
fn member_as(bootstrap: &str, instance: Option<&str>) -> Member {
    let mut config = ClientConfig::new();
    if let Some(instance) = instance {
        config.set("group.instance.id", instance);
    }
    // No session.timeout.ms, heartbeat.interval.ms or partition.assignment.strategy: with the consumer
    // protocol they are the coordinator's, and librdkafka refuses them.
    let consumer: Member = config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", GROUP)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Revocations::default())
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

fn assigned(consumer: &Member) -> BTreeSet<i32> {
    consumer
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

async fn produce(server: &Server, from: usize, count: usize) {
    produce_to(&server.addr, from, count).await;
}

/// Produces records `from..from + count` round-robin over the partitions, with acks=all.
async fn produce_to(bootstrap: &str, from: usize, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .unwrap();
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

/// The members' positions in the partitions assigned to them.
fn positions(members: &[&Member]) -> BTreeMap<i32, i64> {
    let mut positions = BTreeMap::new();
    for member in members {
        for e in member.position().unwrap().elements() {
            if let Offset::Offset(offset) = e.offset() {
                positions.insert(e.partition(), offset);
            }
        }
    }
    positions
}

/// Polls every member, recording what they read in `read`, until `done` holds for their assignments and
/// every partition's position is at `records` records in all.
fn poll_until(
    members: &[&Member],
    read: &mut BTreeSet<(i32, i64)>,
    records: usize,
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    let end = (records / PARTITIONS as usize) as i64;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for member in members {
            while let Some(message) = member.poll(Duration::from_millis(10)) {
                match message {
                    Ok(message) => {
                        read.insert((message.partition(), message.offset()));
                    }
                    // A broker killed on purpose: librdkafka reports the lost connection, and reconnects.
                    Err(rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                        | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                    )) => {}
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
        let assignments: Vec<BTreeSet<i32>> = members.iter().map(|m| assigned(m)).collect();
        let positions = positions(members);
        if done(&assignments) && read_all(read, records) && (0..PARTITIONS).all(|p| positions.get(&p) == Some(&end)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: assignments stuck at {assignments:?}, positions {positions:?}, {} records read",
            read.len()
        );
    }
}

/// Every partition assigned once, `sizes` partitions each.
fn shared(assignments: &[BTreeSet<i32>], sizes: &[usize]) -> bool {
    let all: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    let sizes_now: Vec<usize> = assignments.iter().map(BTreeSet::len).collect();
    sizes_now == sizes && all.len() == PARTITIONS as usize
}

/// Whether every record of offsets `0..records / PARTITIONS` of every partition was read.
fn read_all(read: &BTreeSet<(i32, i64)>, records: usize) -> bool {
    let per_partition = (records / PARTITIONS as usize) as i64;
    (0..PARTITIONS).all(|p| (0..per_partition).all(|o| read.contains(&(p, o))))
}

/// Commits each member's positions (its own partitions: a commit is checked against its member epoch).
fn commit(members: &[&Member]) {
    for member in members {
        member.commit(&member.position().unwrap(), CommitMode::Sync).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumer_protocol_members_share_six_partitions_and_partitions_move_without_stopping_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.consumer.heartbeat.interval.ms=200",
            "group.consumer.session.timeout.ms=10000",
        ],
    );
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    produce(&server, 0, RECORDS).await;
    let mut read = BTreeSet::new();

    // Three members: two partitions each, everything read and committed.
    let (a, b, c) = (member(&server), member(&server), member(&server));
    poll_until(&[&a, &b, &c], &mut read, RECORDS, "three members", |assignments| {
        shared(assignments, &[2, 2, 2])
    });
    commit(&[&a, &b, &c]);
    let before = [assigned(&a), assigned(&b)];
    a.context().0.lock().unwrap().clear();
    b.context().0.lock().unwrap().clear();

    // c leaves: a and b own all six, keeping their own, and read what is produced next.
    c.unsubscribe();
    drop(c);
    produce(&server, RECORDS, RECORDS).await;
    poll_until(&[&a, &b], &mut read, 2 * RECORDS, "c left", |assignments| {
        shared(assignments, &[3, 3])
    });
    for (member, kept) in [(&a, &before[0]), (&b, &before[1])] {
        assert!(assigned(member).is_superset(kept), "{kept:?} kept");
        assert!(
            member.context().0.lock().unwrap().is_empty(),
            "nothing revoked from a or b"
        );
    }
    commit(&[&a, &b]);
    let before = [assigned(&a), assigned(&b)];

    // d joins: one partition each moves to it, and only those were revoked from a and b.
    let d = member(&server);
    produce(&server, 2 * RECORDS, RECORDS).await;
    poll_until(&[&a, &b, &d], &mut read, 3 * RECORDS, "d joined", |assignments| {
        shared(assignments, &[2, 2, 2])
    });
    for (member, had) in [(&a, &before[0]), (&b, &before[1])] {
        let now = assigned(member);
        assert!(now.is_subset(had), "{now:?} is what it kept of {had:?}");
        let revoked: BTreeSet<i32> = member.context().0.lock().unwrap().iter().copied().collect();
        let moved: BTreeSet<i32> = had.difference(&now).copied().collect();
        assert_eq!(revoked, moved, "only what moved was revoked");
        assert!(moved.is_subset(&assigned(&d)));
    }
    assert!(d.context().0.lock().unwrap().is_empty());
    commit(&[&a, &b, &d]);

    // Every record was committed: each partition's committed offset is its end.
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(TOPIC, p);
    }
    let committed = a.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
    let offsets: BTreeMap<i32, Offset> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    let end = Offset::Offset((3 * RECORDS / PARTITIONS as usize) as i64);
    assert!(
        offsets.values().all(|o| *o == end),
        "committed {offsets:?}, expected {end:?}"
    );
}

/// Sends `request` at `version` on a new connection and reads the answer.
fn exchange<Q: kafka_protocol::protocol::Encodable, A: kafka_protocol::protocol::Decodable>(
    server: &Server,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    request: &Q,
) -> A {
    use std::io::Write;
    let mut stream = common::raw::connect(server);
    stream.write_all(&common::raw::frame(key, version, request)).unwrap();
    common::raw::response(&mut stream, key, version)
}

/// The first FindCoordinator creates __consumer_offsets; until the partitions of `groups` are led and read
/// back, their requests are answered COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR.
fn coordinators_ready(server: &Server, groups: &[&str]) {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    common::wait_for("coordinators", TIMEOUT, || {
        groups.iter().all(|group| {
            let key = StrBytes::from_string((*group).to_owned());
            let request = FindCoordinatorRequest::default().with_key(key.clone());
            let found: FindCoordinatorResponse = exchange(server, ApiKey::FindCoordinator, 1, &request);
            let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![key.into()]);
            let described: ConsumerGroupDescribeResponse = exchange(server, ApiKey::ConsumerGroupDescribe, 0, &request);
            found.error_code == 0 && described.groups[0].error_code == ResponseError::GroupIdNotFound.code()
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_is_removed_after_its_session_and_its_partitions_move() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.consumer.session.timeout.ms=1000",
            "group.consumer.heartbeat.interval.ms=100",
        ],
    );
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    coordinators_ready(&server, &["expiring"]);
    let join = |member: &str| {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(s("expiring").into())
            .with_member_id(s(member))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
            .with_topic_partitions(Some(vec![]));
        let answer: ConsumerGroupHeartbeatResponse = exchange(&server, ApiKey::ConsumerGroupHeartbeat, 1, &request);
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        (answer.member_epoch, answer.assignment.unwrap().topic_partitions)
    };
    // "gone" joins first and gets everything, then never heartbeats again; "stays" heartbeats, owning what
    // it was last told, until it has all six.
    let (_, gone) = join("gone");
    assert_eq!(gone[0].partitions.len(), PARTITIONS as usize);
    let (mut epoch, mut owned) = join("stays");
    assert_eq!(
        owned.iter().map(|t| t.partitions.len()).sum::<usize>(),
        0,
        "nothing free yet"
    );
    common::wait_for("gone's partitions to move to stays", TIMEOUT, || {
        let mine: Vec<TopicPartitions> = owned
            .iter()
            .map(|t| {
                TopicPartitions::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(t.partitions.clone())
            })
            .collect();
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(s("expiring").into())
            .with_member_id(s("stays"))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(mine));
        let answer: ConsumerGroupHeartbeatResponse = exchange(&server, ApiKey::ConsumerGroupHeartbeat, 1, &request);
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        epoch = answer.member_epoch;
        if let Some(assignment) = answer.assignment {
            owned = assignment.topic_partitions;
        }
        owned.iter().map(|t| t.partitions.len()).sum::<usize>() == PARTITIONS as usize
    });
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![s("expiring").into()]);
    let described: ConsumerGroupDescribeResponse = exchange(&server, ApiKey::ConsumerGroupDescribe, 1, &request);
    let members: Vec<&str> = described.groups[0]
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, vec!["stays"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_are_listed_described_and_kept_apart_from_classic_groups() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    let heartbeat = |group: &str, member: &str, epoch: i32| {
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(s(group).into())
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1);
        if epoch == 0 {
            request = request
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
                .with_topic_partitions(Some(vec![]));
        }
        exchange::<_, ConsumerGroupHeartbeatResponse>(&server, ApiKey::ConsumerGroupHeartbeat, 1, &request)
    };

    coordinators_ready(&server, &["cg", "classic"]);
    let joined = heartbeat("cg", "m1", 0);
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(joined.member_epoch, 1);
    assert_eq!(joined.heartbeat_interval_ms, 5000, "the broker default");
    let partitions: Vec<i32> = joined.assignment.unwrap().topic_partitions[0].partitions.clone();
    assert_eq!(partitions, (0..PARTITIONS).collect::<Vec<_>>());
    assert_eq!(
        heartbeat("cg", "m1", 7).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        heartbeat("cg", "nobody", 1).error_code,
        ResponseError::UnknownMemberId.code()
    );

    // ListGroups v5: a `consumer` group.
    let listed: ListGroupsResponse = exchange(
        &server,
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
    );
    let listed: Vec<(String, String, String)> = listed
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect();
    assert_eq!(listed, vec![("cg".into(), "consumer".into(), "Stable".into())]);

    // ConsumerGroupDescribe: epochs, assignor, the member and its assignment.
    let described: ConsumerGroupDescribeResponse = exchange(
        &server,
        ApiKey::ConsumerGroupDescribe,
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![s("cg").into(), s("absent").into()]),
    );
    let group = &described.groups[0];
    assert_eq!(
        (
            group.error_code,
            group.group_epoch,
            group.assignment_epoch,
            group.assignor_name.as_str()
        ),
        (0, 1, 1, "uniform")
    );
    assert_eq!(group.members[0].member_id.as_str(), "m1");
    assert_eq!(
        group.members[0].assignment.topic_partitions[0].topic_name.0.as_str(),
        TOPIC
    );
    assert_eq!(described.groups[1].error_code, ResponseError::GroupIdNotFound.code());

    // OffsetCommit v9 at the member's epoch is accepted; at another, STALE_MEMBER_EPOCH; below v9, refused.
    let commit = |version: i16, epoch: i32| {
        use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        let request = OffsetCommitRequest::default()
            .with_group_id(s("cg").into())
            .with_member_id(s("m1"))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_committed_offset(0)]),
            ]);
        let response: OffsetCommitResponse = exchange(&server, ApiKey::OffsetCommit, version, &request);
        response.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(9, 1), 0);
    assert_eq!(commit(9, 0), ResponseError::StaleMemberEpoch.code());
    assert_eq!(commit(8, 1), ResponseError::UnsupportedVersion.code());

    // A classic JoinGroup whose subscription cannot be read cannot join the consumer group, nor can a
    // heartbeat take a classic group whose members' subscriptions cannot be read (both would otherwise:
    // see `classic_consumers_are_upgraded_one_at_a_time`).
    let join = JoinGroupRequest::default()
        .with_group_id(s("cg").into())
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\x01\0\0\0\0\0\0\0\0")),
        ]);
    let refused: JoinGroupResponse = exchange(&server, ApiKey::JoinGroup, 5, &join);
    assert_eq!(refused.error_code, ResponseError::InconsistentGroupProtocol.code());
    let classic: JoinGroupResponse = exchange(
        &server,
        ApiKey::JoinGroup,
        3,
        &join.clone().with_group_id(s("classic").into()),
    );
    assert_eq!(classic.error_code, 0);
    let refused = heartbeat("classic", "m2", 0);
    assert_eq!(refused.error_code, ResponseError::GroupIdNotFound.code());

    // The member leaves: the group is empty, and a classic member may have the id.
    let left = heartbeat("cg", "m1", -1);
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let taken: JoinGroupResponse = exchange(&server, ApiKey::JoinGroup, 3, &join);
    assert_eq!(taken.error_code, 0);
}

/// The group epoch of [`GROUP`] and its members' epochs, as ConsumerGroupDescribe at `server` (its
/// coordinator) says, once it answers.
fn epochs(server: &Server) -> (i32, BTreeMap<String, i32>) {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![StrBytes::from_static_str(GROUP).into()]);
    let mut described = None;
    common::wait_for("the group described by its coordinator", TIMEOUT, || {
        let response: ConsumerGroupDescribeResponse = exchange(server, ApiKey::ConsumerGroupDescribe, 0, &request);
        let group = response.groups.into_iter().next().unwrap();
        let found = group.error_code == 0;
        described = Some(group);
        found
    });
    let group = described.unwrap();
    let members = group
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_epoch))
        .collect();
    (group.group_epoch, members)
}

/// The node that coordinates `group`, as FindCoordinator says through `server`, once it has one.
async fn coordinator_of(server: &Server, group: &str) -> i32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = strata_protocol::client::Client::connect(&server.addr).await.unwrap();
        if let Ok(found) = client.find_coordinator(group).await {
            return found.node_id;
        }
        assert!(Instant::now() < deadline, "no coordinator for {group}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_survives_the_loss_of_its_coordinator_without_a_rebalance() {
    let mut cluster = common::cluster::Cluster::start();
    let bootstrap = cluster.bootstrap();
    let any = cluster.live().next().unwrap().1;
    let admin: AdminClient<DefaultClientContext> = config(any).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    produce_to(&bootstrap, 0, RECORDS).await;
    let mut read = BTreeSet::new();

    let members = [member_of(&bootstrap), member_of(&bootstrap), member_of(&bootstrap)];
    let members: Vec<&Member> = members.iter().collect();
    poll_until(&members, &mut read, RECORDS, "three members", |assignments| {
        shared(assignments, &[2, 2, 2])
    });
    let assignments: Vec<BTreeSet<i32>> = members.iter().map(|m| assigned(m)).collect();
    let counts = |members: &[&Member]| {
        members
            .iter()
            .map(|m| {
                (
                    m.context().0.lock().unwrap().len(),
                    m.context().1.load(std::sync::atomic::Ordering::SeqCst),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = counts(&members);
    let coordinator = coordinator_of(any, GROUP).await;
    let epochs_before = epochs(cluster.node(coordinator));
    assert_eq!(epochs_before.1.len(), 3, "{epochs_before:?}");

    // SIGKILL the coordinator; the group's partition of __consumer_offsets moves to a survivor, which
    // reads the group back.
    cluster.kill(coordinator);
    let survivor = cluster.live().next().unwrap().1;
    let moved = coordinator_of(survivor, GROUP).await;
    let deadline = Instant::now() + TIMEOUT;
    let mut moved = moved;
    while moved == coordinator {
        assert!(Instant::now() < deadline, "the coordinator did not move");
        tokio::time::sleep(Duration::from_millis(100)).await;
        moved = coordinator_of(survivor, GROUP).await;
    }

    // Records produced now (acks=all, through the survivors) are all read by the same members, which keep
    // their partitions: no revocation, no new assignment.
    produce_to(&cluster.bootstrap(), RECORDS, RECORDS).await;
    poll_until(&members, &mut read, 2 * RECORDS, "after the failover", |now| {
        now == assignments.as_slice()
    });
    // The new coordinator knows the group at the same group epoch, and each member at its epoch.
    assert_eq!(epochs(cluster.node(moved)), epochs_before);
    assert_eq!(counts(&members), before, "(revoked, assignments) per member unchanged");
    assert_eq!(members.iter().map(|m| assigned(m)).collect::<Vec<_>>(), assignments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_that_restarts_gets_its_partitions_back_without_disturbing_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.consumer.heartbeat.interval.ms=200"]);
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    produce(&server, 0, RECORDS).await;
    let mut read = BTreeSet::new();

    let a = member_as(&server.addr, Some("pod-a"));
    let b = member_as(&server.addr, Some("pod-b"));
    poll_until(&[&a, &b], &mut read, RECORDS, "two static members", |assignments| {
        shared(assignments, &[3, 3])
    });
    let (a_had, b_had) = (assigned(&a), assigned(&b));
    a.context().0.lock().unwrap().clear();
    let a_assignments = a.context().1.load(std::sync::atomic::Ordering::SeqCst);
    let (group_epoch, _) = epochs(&server);

    // b's process stops (it leaves with epoch -2: for a while) and another takes its instance id, within
    // the session timeout: it gets b's partitions, and a is not rebalanced.
    drop(b);
    let b = member_as(&server.addr, Some("pod-b"));
    produce(&server, RECORDS, RECORDS).await;
    // Read by a and the new b alone: b's partitions from where b's process was (nothing was committed, so
    // from the start: `read` already holds those, and every position reaches the end).
    poll_until(&[&a, &b], &mut read, 2 * RECORDS, "b back", |assignments| {
        assignments[0] == a_had && assignments[1] == b_had
    });
    assert!(a.context().0.lock().unwrap().is_empty(), "nothing revoked from a");
    assert_eq!(
        a.context().1.load(std::sync::atomic::Ordering::SeqCst),
        a_assignments,
        "a was assigned nothing new"
    );
    let (epoch_now, members) = epochs(&server);
    assert_eq!(epoch_now, group_epoch, "no rebalance: the group epoch is the same");
    assert_eq!(members.len(), 2, "b's process was replaced, not added: {members:?}");

    // A second live process with a's instance id is refused (UNRELEASED_INSTANCE_ID, fatal in
    // librdkafka): it gets nothing, a keeps everything it had.
    let intruder = member_as(&server.addr, Some("pod-a"));
    let deadline = Instant::now() + TIMEOUT;
    let error = loop {
        match intruder.poll(Duration::from_millis(100)) {
            Some(Err(e)) => break e,
            _ => assert!(Instant::now() < deadline, "the intruder was not refused"),
        }
    };
    assert!(error.to_string().contains("instance"), "{error}");
    assert!(assigned(&intruder).is_empty());
    assert_eq!(assigned(&a), a_had);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_subscribed_by_regex_reads_every_matching_topic_including_one_created_later() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.consumer.heartbeat.interval.ms=200"]);
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topics = [
        NewTopic::new("metrics-cpu", 2, TopicReplication::Fixed(1)),
        NewTopic::new("metrics-disk", 1, TopicReplication::Fixed(1)),
        NewTopic::new("logs", 1, TopicReplication::Fixed(1)),
    ];
    admin.create_topics(&topics, &AdminOptions::new()).await.unwrap();
    let producer: FutureProducer = config(&server).set("acks", "all").create().unwrap();
    let send = |topic: &'static str, partitions: i32, count: usize| {
        let producer = producer.clone();
        async move {
            for i in 0..count {
                let payload = format!("{topic}-{i}");
                let record = FutureRecord::to(topic)
                    .partition(i as i32 % partitions)
                    .key("k")
                    .payload(&payload);
                producer.send(record, Duration::from_secs(10)).await.unwrap();
            }
        }
    };
    send("metrics-cpu", 2, 10).await;
    send("metrics-disk", 1, 10).await;
    send("logs", 1, 10).await;

    // librdkafka sends a subscription starting with ^ as the member's subscribed_topic_regex.
    let consumer: Member = config(&server)
        .set("group.id", "by-pattern")
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Revocations::default())
        .unwrap();
    consumer.subscribe(&["^metrics-.*"]).unwrap();
    let mut read: BTreeSet<String> = BTreeSet::new();
    let poll_for = |read: &mut BTreeSet<String>, consumer: &Member, wanted: usize, what: &str| {
        common::wait_for(what, TIMEOUT, || {
            while let Some(message) = consumer.poll(Duration::from_millis(50)) {
                let message = message.unwrap();
                read.insert(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
            }
            read.len() >= wanted
        });
    };
    poll_for(&mut read, &consumer, 20, "the matching topics' records");
    assert!(read.iter().all(|r| r.starts_with("metrics-")), "{read:?}");

    // A matching topic created later joins the subscription; its records are read too, and never logs'.
    let later = NewTopic::new("metrics-net", 1, TopicReplication::Fixed(1));
    admin.create_topics([&later], &AdminOptions::new()).await.unwrap();
    send("metrics-net", 1, 10).await;
    poll_for(&mut read, &consumer, 30, "the new topic's records");
    let expected: BTreeSet<String> = ["metrics-cpu", "metrics-disk", "metrics-net"]
        .iter()
        .flat_map(|t| (0..10).map(move |i| format!("{t}-{i}")))
        .collect();
    assert_eq!(read, expected);
    let topics: BTreeSet<String> = consumer
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.topic().to_owned())
        .collect();
    assert_eq!(
        topics,
        ["metrics-cpu", "metrics-disk", "metrics-net"].map(String::from).into()
    );
    // The coordinator, not the client, resolved the pattern (librdkafka sends its patterns as one regex,
    // each in parentheses, joined with `|`).
    use kafka_protocol::messages::*;
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![
        kafka_protocol::protocol::StrBytes::from_static_str("by-pattern").into(),
    ]);
    let described: ConsumerGroupDescribeResponse = exchange(&server, ApiKey::ConsumerGroupDescribe, 0, &request);
    let member = &described.groups[0].members[0];
    assert_eq!(member.subscribed_topic_regex.as_deref(), Some("(^metrics-.*)"));
}

/// A classic consumer (librdkafka's default `group.protocol`) of [`GROUP`], with `strategy` as its
/// `partition.assignment.strategy` (librdkafka's default when `None`).
fn classic_member(server: &Server, strategy: Option<&str>) -> Member {
    let mut config = config(server);
    if let Some(strategy) = strategy {
        config.set("partition.assignment.strategy", strategy);
    }
    let consumer: Member = config
        .set("group.id", GROUP)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Revocations::default())
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

/// Polls `members` (recording what they read) until each owns `size` partitions, no partition twice, and
/// every record of `0..records` was read and every position is at its end.
fn read_shared(members: &[&Member], read: &mut BTreeSet<(i32, i64)>, records: usize, size: usize, what: &str) {
    let end = (records / PARTITIONS as usize) as i64;
    common::wait_for(what, TIMEOUT, || {
        for member in members {
            while let Some(message) = member.poll(Duration::from_millis(10)) {
                let message = message.unwrap_or_else(|e| panic!("{what}: {e}"));
                read.insert((message.partition(), message.offset()));
            }
        }
        let assignments: Vec<BTreeSet<i32>> = members.iter().map(|m| assigned(m)).collect();
        let positions = positions(members);
        shared(&assignments, &vec![size; members.len()])
            && read_all(read, records)
            && (0..PARTITIONS).all(|p| positions.get(&p) == Some(&end))
    });
}

/// Every partition's committed offset, as `member` reads them.
fn committed(member: &Member) -> BTreeMap<i32, Offset> {
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(TOPIC, p);
    }
    let committed = member.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

/// Kafka 4's online upgrade (KIP-848): classic consumers and consumer-protocol ones in one group, through a
/// rolling deploy that switches `group.protocol` one consumer at a time, without stopping the group.
async fn classic_consumers_are_upgraded_one_at_a_time(strategy: Option<&str>) {
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "group.initial.rebalance.delay.ms=0",
            "group.consumer.heartbeat.interval.ms=200",
            "group.consumer.session.timeout.ms=10000",
        ],
    );
    let admin: AdminClient<DefaultClientContext> = config(&server).create().unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    produce(&server, 0, RECORDS).await;
    let mut read = BTreeSet::new();

    // A classic group of two.
    let (a, b) = (classic_member(&server, strategy), classic_member(&server, strategy));
    read_shared(&[&a, &b], &mut read, RECORDS, 3, "two classic members");
    commit(&[&a, &b]);

    // A consumer-protocol member joins the same group id: the group becomes a consumer group, and the
    // three of them own two partitions each.
    let c = member(&server);
    produce(&server, RECORDS, RECORDS).await;
    read_shared(
        &[&a, &b, &c],
        &mut read,
        2 * RECORDS,
        2,
        "a consumer-protocol member joined",
    );
    commit(&[&a, &b, &c]);
    let (_, members) = epochs(&server);
    assert_eq!(members.len(), 3, "one consumer group of three: {members:?}");
    let end = Offset::Offset((2 * RECORDS / PARTITIONS as usize) as i64);
    let offsets = committed(&c);
    assert!(offsets.values().all(|o| *o == end), "committed {offsets:?}");

    // A rolling upgrade: a restarts with group.protocol=consumer, and consumption goes on.
    a.unsubscribe();
    drop(a);
    let a = member(&server);
    produce(&server, 2 * RECORDS, RECORDS).await;
    read_shared(
        &[&a, &b, &c],
        &mut read,
        3 * RECORDS,
        2,
        "a restarted on the consumer protocol",
    );
    commit(&[&a, &b, &c]);
    assert_eq!(epochs(&server).1.len(), 3);
    let end = Offset::Offset((3 * RECORDS / PARTITIONS as usize) as i64);
    let offsets = committed(&b);
    assert!(offsets.values().all(|o| *o == end), "committed {offsets:?}");

    // A downgrade: the consumer-protocol members leave, and the classic one left is a classic group
    // again, which it rejoins and then owns everything.
    for member in [a, c] {
        member.unsubscribe();
        drop(member);
    }
    produce(&server, 3 * RECORDS, RECORDS).await;
    read_shared(
        &[&b],
        &mut read,
        4 * RECORDS,
        PARTITIONS as usize,
        "only the classic member is left",
    );
    commit(&[&b]);
    use kafka_protocol::messages::*;
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![StrBytes::from_static_str(GROUP).into()]);
    let response: ConsumerGroupDescribeResponse = exchange(&server, ApiKey::ConsumerGroupDescribe, 0, &request);
    assert_eq!(
        response.groups[0].error_code,
        kafka_protocol::ResponseError::GroupIdNotFound.code(),
        "a classic group again"
    );
    let request = DescribeGroupsRequest::default().with_groups(vec![StrBytes::from_static_str(GROUP).into()]);
    let response: DescribeGroupsResponse = exchange(&server, ApiKey::DescribeGroups, 5, &request);
    let group = &response.groups[0];
    assert_eq!((group.group_state.as_str(), group.members.len()), ("Stable", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_classic_consumers_share_a_group_with_a_consumer_protocol_member_through_a_rolling_upgrade() {
    classic_consumers_are_upgraded_one_at_a_time(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_classic_consumers_share_a_group_with_a_consumer_protocol_member_through_a_rolling_upgrade() {
    classic_consumers_are_upgraded_one_at_a_time(Some("cooperative-sticky")).await;
}
