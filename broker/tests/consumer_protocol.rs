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

/// Partitions taken away from a member in rebalances.
#[derive(Default)]
struct Revocations(Mutex<Vec<i32>>);

impl rdkafka::client::ClientContext for Revocations {}

impl ConsumerContext for Revocations {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut log = self.0.lock().unwrap();
            log.extend(partitions.elements().iter().map(|e| e.partition()));
        }
    }
}

type Member = BaseConsumer<Revocations>;

fn member(server: &Server) -> Member {
    // No session.timeout.ms, heartbeat.interval.ms or partition.assignment.strategy: with the consumer
    // protocol they are the coordinator's, and librdkafka refuses them.
    let consumer: Member = config(server)
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
                let message = message.unwrap();
                read.insert((message.partition(), message.offset()));
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
        assert!(member.context().0.lock().unwrap().is_empty(), "nothing revoked from a or b");
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
    let offsets: BTreeMap<i32, Offset> = committed.elements().iter().map(|e| (e.partition(), e.offset())).collect();
    let end = Offset::Offset((3 * RECORDS / PARTITIONS as usize) as i64);
    assert!(offsets.values().all(|o| *o == end), "committed {offsets:?}, expected {end:?}");
}
