//! Three `strata server` processes on loopback, each a broker and a controller of one metadata quorum:
//! topics created through any node exist on all of them; replicated records survive their leader's SIGKILL;
//! losing the active controller or a broker is handled by the quorum; a restarted node rejoins.
//!
//! Every wait is a condition with a deadline. The only deadline that is a promise rather than a bound for a
//! slow machine is the issue's: a killed broker's partitions have new leaders within the session timeout
//! plus a second.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{self, Cluster};
use common::{Server, gauge, http_get};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strata_protocol::client::Client;
use strata_protocol::client::admin::{NewTopic, TopicMetadata};

const NODES: usize = cluster::NODES;
const SESSION_TIMEOUT: Duration = cluster::SESSION_TIMEOUT;
/// One cluster at a time: the tests hold deadlines (sessions of 2 s, leaders within a session plus a second)
/// that a machine running several debug clusters at once could miss.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bound for things a slow, loaded machine takes a while to do (start, elect, replicate).
const SLOW: Duration = Duration::from_secs(60);

async fn client(server: &Server) -> Client {
    Client::connect(&server.addr).await.expect("connecting")
}

/// The topic as `server` describes it, if it knows it.
async fn topic(server: &Server, name: &str) -> Option<TopicMetadata> {
    let mut client = Client::connect(&server.addr).await.ok()?;
    let metadata = client.metadata(Some(&[name]), false).await.ok()?;
    metadata
        .topics
        .into_iter()
        .find(|t| t.name == name && t.error.is_none())
}

/// Waits until `check` holds, asking again every 50 ms, for at most `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every partition has a leader, other than `not`, and all three replicas.
fn led_without(topic: &TopicMetadata, not: i32) -> bool {
    topic
        .partitions
        .iter()
        .all(|p| p.leader >= 0 && p.leader != not && p.replicas.len() == NODES)
}

fn new_topic(name: &str, partitions: i32) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor: NODES as i16,
        configs: vec![],
    }
}

fn producer(cluster: &Cluster) -> FutureProducer {
    producer_to(&cluster.bootstrap(), "all")
}

/// A producer bootstrapped from `bootstrap` alone, with `acks`.
fn producer_to(bootstrap: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("acks", acks)
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

/// Whether every replica in `replicas` holds the same bytes for partition 0 of `topic`.
fn logs_agree(cluster: &Cluster, replicas: &[i32], topic: &str) -> bool {
    let logs: Vec<Vec<u8>> = replicas
        .iter()
        .map(|&id| segment_bytes(cluster.node(id), topic))
        .collect();
    logs.iter().all(|log| log == &logs[0])
}

/// Produces `count` records `{prefix}-{i}` to partition 0 with acks=all; returns once all are acknowledged.
async fn produce(producer: &FutureProducer, topic: &str, prefix: &str, count: usize) {
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        let record = FutureRecord::<(), _>::to(topic).partition(0).payload(&value);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().expect("acknowledged");
    }
}

/// Reads partition 0 of `topic` from the start until `count` records arrived; returns their values.
fn consume(cluster: &Cluster, topic: &str, count: usize) -> Vec<String> {
    common::consume(&cluster.bootstrap(), topic, count)
}

fn expected(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The active controller, as DescribeQuorum through any live node tells.
async fn active_controller(cluster: &Cluster) -> i32 {
    let deadline = Instant::now() + SLOW;
    loop {
        for (_, node) in cluster.live() {
            if let Ok(mut client) = Client::connect(&node.addr).await
                && let Ok(quorum) = client.describe_quorum().await
                && let Some(id) = quorum.leader_id
            {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no quorum leader within {SLOW:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_through_any_node_exist_on_every_node() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start();
    for id in 1..=NODES as i32 {
        let mut client = client(cluster.node(id)).await;
        client.create_topic(&new_topic(&format!("via-{id}"), 3)).await.unwrap();
    }
    for (_, node) in cluster.live() {
        for id in 1..=NODES as i32 {
            let name = format!("via-{id}");
            // CreateTopics answers once the node that took it knows the topic; the others follow.
            eventually(&format!("{name} on {}", node.addr), SLOW, || async {
                topic(node, &name)
                    .await
                    .is_some_and(|t| t.partitions.len() == 3 && led_without(&t, -1))
            })
            .await;
        }
    }
    // Leadership is spread: each node leads one partition of a three-partition topic.
    let spread = topic(cluster.node(1), "via-1").await.unwrap();
    let mut leaders: Vec<i32> = spread.partitions.iter().map(|p| p.leader).collect();
    leaders.sort_unstable();
    assert_eq!(leaders, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_active_controller_is_replaced_and_acknowledged_records_survive() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start();
    client(cluster.node(1))
        .await
        .create_topic(&new_topic("orders", 1))
        .await
        .unwrap();
    eventually("orders fully in sync", SLOW, || async {
        topic(cluster.node(1), "orders")
            .await
            .is_some_and(|t| t.partitions[0].isr.len() == NODES)
    })
    .await;
    produce(&producer(&cluster), "orders", "before", 500).await;

    let controller = active_controller(&cluster).await;
    cluster.kill(controller);
    let survivor = cluster.live().find(|(id, _)| *id != controller).unwrap().1;
    // A new controller takes over: creating a topic through a surviving node works again.
    eventually("a topic created after the failover", SLOW, || async {
        match Client::connect(&survivor.addr).await {
            Ok(mut client) => client.create_topic(&new_topic("after-failover", 1)).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    let new_controller = active_controller(&cluster).await;
    assert_ne!(new_controller, controller);

    // The brokers keep serving: every acknowledged record is there, and new ones are taken.
    eventually("orders led by a live broker", SLOW, || async {
        topic(survivor, "orders")
            .await
            .is_some_and(|t| led_without(&t, controller))
    })
    .await;
    produce(&producer(&cluster), "orders", "after", 100).await;
    let mut all = expected("before", 500);
    all.extend(expected("after", 100));
    assert_eq!(consume(&cluster, "orders", 600), all);

    // The killed node comes back, catches up and is in sync again.
    cluster.restart(controller);
    eventually("the restarted node back in the ISR", SLOW, || async {
        topic(cluster.node(controller), "orders")
            .await
            .is_some_and(|t| t.partitions[0].isr.contains(&controller))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_loses_its_leaderships_within_the_session_and_rejoins() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start();
    client(cluster.node(1))
        .await
        .create_topic(&new_topic("events", 6))
        .await
        .unwrap();
    eventually("events fully in sync", SLOW, || async {
        topic(cluster.node(1), "events")
            .await
            .is_some_and(|t| t.partitions.iter().all(|p| p.isr.len() == NODES))
    })
    .await;
    produce(&producer(&cluster), "events", "acked", 300).await;

    // A broker that is not the active controller, and leads partition 0.
    let controller = active_controller(&cluster).await;
    let leader = topic(cluster.node(1), "events").await.unwrap().partitions[0].leader;
    let victim = if leader != controller {
        leader
    } else {
        (1..=NODES as i32).find(|&id| id != controller).unwrap()
    };
    let led_before = topic(cluster.node(1), "events")
        .await
        .unwrap()
        .partitions
        .iter()
        .filter(|p| p.leader == victim)
        .count();
    assert!(led_before > 0, "placement gives every broker leaderships");
    let killed_at = Instant::now();
    cluster.kill(victim);
    let observer = cluster.node(controller);
    eventually(
        "new leaders for the killed broker's partitions",
        SESSION_TIMEOUT + Duration::from_secs(1),
        || async { topic(observer, "events").await.is_some_and(|t| led_without(&t, victim)) },
    )
    .await;
    eprintln!("new leaders {:?} after the SIGKILL", killed_at.elapsed());
    // Nothing acknowledged was lost with the leader of partition 0.
    assert_eq!(consume(&cluster, "events", 300), expected("acked", 300));
    // The survivors report the partitions they lead without the dead replica in sync.
    eventually("every partition under-replicated", SLOW, || async {
        under_replicated(&cluster) == 6
    })
    .await;

    cluster.restart(victim);
    let observer = cluster.node(controller);
    eventually(
        "the restarted broker leading again (preferred leaders restored)",
        SLOW,
        || async {
            topic(observer, "events")
                .await
                .is_some_and(|t| t.partitions.iter().filter(|p| p.leader == victim).count() == led_before)
        },
    )
    .await;
    eventually("no partition under-replicated", SLOW, || async {
        under_replicated(&cluster) == 0
    })
    .await;
}

/// Led partitions whose ISR lacks a replica, summed over the live nodes' `/metrics`.
fn under_replicated(cluster: &Cluster) -> usize {
    cluster
        .live()
        .map(|(_, node)| {
            gauge(
                &http_get(&node.http_addr, "/metrics").1,
                "strata_under_replicated_partitions",
            )
        })
        .map(|value| value.expect("the gauge is served") as usize)
        .sum()
}

/// Kafka's `abs(javaHashCode(group)) % 50`: the partition of `__consumer_offsets` that holds a group.
fn offsets_partition(group: &str) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % 50
}

fn group_consumer(cluster: &Cluster, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["jobs"]).unwrap();
    consumer
}

/// Polls until `count` records arrived; returns their offsets.
fn poll_offsets(consumer: &BaseConsumer, count: usize) -> Vec<i64> {
    let deadline = Instant::now() + SLOW;
    let mut offsets = Vec::new();
    while offsets.len() < count {
        assert!(Instant::now() < deadline, "consumed {} of {count}", offsets.len());
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(message.offset());
        }
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_loss_of_the_group_coordinator() {
    let _serial = SERIAL.lock().await;
    use rdkafka::consumer::CommitMode;

    let mut cluster = Cluster::start();
    client(cluster.node(1))
        .await
        .create_topic(&new_topic("jobs", 1))
        .await
        .unwrap();
    produce(&producer(&cluster), "jobs", "job", 200).await;

    // The first member reads half and commits where it stopped, then leaves.
    let first = group_consumer(&cluster, "workers");
    let offsets = poll_offsets(&first, 100);
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
    let mut position = TopicPartitionList::new();
    position.add_partition_offset("jobs", 0, Offset::Offset(100)).unwrap();
    first.commit(&position, CommitMode::Sync).unwrap();
    drop(first);

    // The coordinator is the leader of the group's partition of __consumer_offsets: kill it.
    let offsets_topic = topic(cluster.node(1), "__consumer_offsets")
        .await
        .expect("created for the group");
    let coordinator = offsets_topic.partitions[offsets_partition("workers") as usize].leader;
    assert_eq!(
        offsets_topic.partitions[0].replicas.len(),
        NODES,
        "offsets are replicated to every broker of a three-broker cluster"
    );
    cluster.kill(coordinator);

    // A new member of the group, through the survivors, resumes exactly after the commit.
    let second = group_consumer(&cluster, "workers");
    let resumed = poll_offsets(&second, 100);
    assert_eq!(
        resumed,
        (100..200).collect::<Vec<i64>>(),
        "no record read twice or skipped"
    );
}

/// The bytes of partition 0's first segment of `topic` in `server`'s data directory.
fn segment_bytes(server: &Server, topic: &str) -> Vec<u8> {
    std::fs::read(
        server
            .data_dir
            .join(format!("{topic}-0"))
            .join("00000000000000000000.log"),
    )
    .unwrap_or_default()
}

/// A leader that takes acks=1 writes while its followers are silent, and is then cut off and replaced,
/// comes back as a follower: it truncates whatever the new leader does not have (OffsetForLeaderEpoch) and
/// copies the rest, so the three logs end byte for byte the same. (Whether the followers got some of those
/// writes before falling silent depends on timing; the logs must agree either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leader_comes_back_with_a_log_identical_to_the_new_leaders() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start();
    client(cluster.node(1))
        .await
        .create_topic(&new_topic("diverge", 1))
        .await
        .unwrap();
    eventually("diverge fully in sync", SLOW, || async {
        topic(cluster.node(1), "diverge")
            .await
            .is_some_and(|t| t.partitions[0].isr.len() == NODES)
    })
    .await;
    produce(&producer(&cluster), "diverge", "base", 10).await;
    let leader = topic(cluster.node(1), "diverge").await.unwrap().partitions[0].leader;
    let followers: Vec<i32> = (1..=NODES as i32).filter(|&id| id != leader).collect();

    // The followers fall silent (briefly: two of three controllers silent is no quorum); the leader takes
    // acks=1 writes.
    for &id in &followers {
        cluster.node(id).pause();
    }
    let only_leader: FutureProducer = producer_to(&cluster.node(leader).addr, "1");
    produce(&only_leader, "diverge", "acks1", 5).await;
    // Then the leader falls silent, the followers come back, and one of them is elected.
    cluster.node(leader).pause();
    for &id in &followers {
        cluster.node(id).resume();
    }
    let observer = cluster.node(followers[0]);
    eventually("a new leader", SLOW, || async {
        topic(observer, "diverge")
            .await
            .is_some_and(|t| t.partitions[0].leader >= 0 && t.partitions[0].leader != leader)
    })
    .await;
    let survivors = producer_to(&format!("{},{}", observer.addr, cluster.node(followers[1]).addr), "all");
    produce(&survivors, "diverge", "after", 7).await;

    // The old leader returns: once it is in the ISR again, every replica's log is the same bytes.
    cluster.node(leader).resume();
    eventually("the old leader in sync again, with identical logs", SLOW, || async {
        let in_sync = topic(observer, "diverge")
            .await
            .is_some_and(|t| t.partitions[0].isr.len() == NODES);
        in_sync && logs_agree(&cluster, &[1, 2, 3], "diverge")
    })
    .await;
    // What consumers read: the base records, those acks=1 writes the new leader had (a prefix, in order),
    // and everything it acknowledged afterwards.
    let count = {
        let mut client = client(observer).await;
        let metadata = client.metadata(Some(&["diverge"]), false).await.unwrap();
        let leader = metadata.topics[0].partitions[0].leader;
        let at = metadata.brokers.iter().find(|b| b.node_id == leader).unwrap();
        let mut client = Client::connect(&format!("{}:{}", at.host, at.port)).await.unwrap();
        let listed = client
            .list_offsets("diverge", &[0], strata_protocol::client::admin::OffsetSpec::Latest)
            .await
            .unwrap();
        listed[0].offset.unwrap() as usize
    };
    let values = consume(&cluster, "diverge", count);
    let kept = count - 17;
    let mut want = expected("base", 10);
    want.extend(expected("acks1", 5).into_iter().take(kept));
    want.extend(expected("after", 7));
    assert_eq!(values, want);
}

/// With `unclean.leader.election.enable`, a partition whose only in-sync replica is lost is led by an
/// out-of-sync replica, and what only the old leader had is lost. When the old leader returns, as a
/// follower, it truncates those records (OffsetForLeaderEpoch) and copies the new leader's log: the logs end
/// byte for byte the same, and consumers read exactly what the new leader acknowledged. Five nodes, so that
/// the quorum survives three of them falling silent in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_election_the_old_leader_truncates_what_it_alone_had() {
    let _serial = SERIAL.lock().await;
    const FIVE: usize = 5;
    let cluster = Cluster::start_nodes(FIVE);
    let unclean = NewTopic {
        configs: vec![("unclean.leader.election.enable".into(), "true".into())],
        ..new_topic("unclean", 1)
    };
    client(cluster.node(1)).await.create_topic(&unclean).await.unwrap();
    eventually("unclean fully in sync", SLOW, || async {
        topic(cluster.node(1), "unclean")
            .await
            .is_some_and(|t| t.partitions[0].isr.len() == NODES)
    })
    .await;
    let replicas = topic(cluster.node(1), "unclean").await.unwrap().partitions[0]
        .replicas
        .clone();
    let leader = topic(cluster.node(1), "unclean").await.unwrap().partitions[0].leader;
    let followers: Vec<i32> = replicas.iter().copied().filter(|&id| id != leader).collect();
    let bystander = (1..=FIVE as i32).find(|id| !replicas.contains(id)).unwrap();
    let observer = cluster.node(bystander);
    produce(&producer(&cluster), "unclean", "base", 10).await;

    // The followers fall silent and are fenced; the leader alone acknowledges more records.
    for &id in &followers {
        cluster.node(id).pause();
    }
    eventually("the leader alone in the ISR", SLOW, || async {
        topic(observer, "unclean")
            .await
            .is_some_and(|t| t.partitions[0].isr == [leader])
    })
    .await;
    let alone: FutureProducer = producer_to(&cluster.node(leader).addr, "all");
    produce(&alone, "unclean", "lost", 5).await;

    // The leader falls silent before they return: one of them is elected, out of sync.
    cluster.node(leader).pause();
    for &id in &followers {
        cluster.node(id).resume();
    }
    eventually("an unclean leader", SLOW, || async {
        topic(observer, "unclean")
            .await
            .is_some_and(|t| followers.contains(&t.partitions[0].leader))
    })
    .await;
    let after = producer_to(&observer.addr, "all");
    produce(&after, "unclean", "after", 7).await;

    // The old leader returns, truncates the five records only it had, and copies the new leader's.
    cluster.node(leader).resume();
    eventually("the old leader in sync again, with identical logs", SLOW, || async {
        let in_sync = topic(observer, "unclean")
            .await
            .is_some_and(|t| t.partitions[0].isr.len() == NODES);
        in_sync && logs_agree(&cluster, &replicas, "unclean")
    })
    .await;
    let mut all = expected("base", 10);
    all.extend(expected("after", 7));
    assert_eq!(
        consume(&cluster, "unclean", 17),
        all,
        "the records only the old leader had are gone"
    );
}

/// The larger shape: three controller-only nodes (the quorum, serving no clients) and three broker-only
/// nodes. Topics live on the brokers; losing the active controller or a broker is handled as on combined
/// nodes; the controllers' `/metrics` name exactly one active controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_only_and_broker_only_nodes_make_a_cluster() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start_shape(0, 3, 3);
    let brokers = [4, 5, 6];
    client(cluster.node(4))
        .await
        .create_topic(&new_topic("split", 3))
        .await
        .unwrap();
    for id in brokers {
        eventually(&format!("split on broker {id}"), SLOW, || async {
            topic(cluster.node(id), "split").await.is_some_and(|t| {
                t.partitions
                    .iter()
                    .all(|p| brokers.contains(&p.leader) && p.isr.len() == 3)
            })
        })
        .await;
    }
    produce(&producer(&cluster), "split", "v", 100).await;
    let active = |cluster: &Cluster| {
        (1..=3)
            .filter(|&id| cluster.live().any(|(live, _)| live == id))
            .map(|id| {
                gauge(
                    &http_get(&cluster.node(id).http_addr, "/metrics").1,
                    "strata_controller_active",
                )
            })
            .map(|value| value.expect("controllers serve /metrics") as usize)
            .sum::<usize>()
    };
    eventually("one active controller", SLOW, || async { active(&cluster) == 1 }).await;

    let controller = active_controller(&cluster).await;
    assert!((1..=3).contains(&controller), "a controller-only node leads the quorum");
    cluster.kill(controller);
    eventually("a topic created after the failover", SLOW, || async {
        match Client::connect(&cluster.node(5).addr).await {
            Ok(mut client) => client.create_topic(&new_topic("after", 1)).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    eventually("one active controller again", SLOW, || async { active(&cluster) == 1 }).await;

    cluster.kill(6);
    eventually("split led by the two brokers left", SLOW, || async {
        topic(cluster.node(4), "split")
            .await
            .is_some_and(|t| t.partitions.iter().all(|p| p.leader == 4 || p.leader == 5))
    })
    .await;
    assert_eq!(consume(&cluster, "split", 100).len(), 100);
}
