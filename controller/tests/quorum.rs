//! Three controllers on loopback, talking openraft over gRPC: a leader is elected, a metadata batch commits
//! and reaches every image; the leader stops, the other two elect a new one and keep committing; a leader
//! whose peers stop steps down without raising its term.
//!
//! Every wait is a condition with a deadline: nothing sleeps hoping something happened meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, RaftError};
use openraft::type_config::alias::WatchReceiverOf;

use strata_controller::proto::metadata::{MetadataBatch, MetadataRecord, TopicRecord, metadata_record::Record};
use strata_controller::proto::raft::ControllerNode;
use strata_controller::types::NodeId;
use strata_controller::{Controller, MetadataImage, TypeConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Generous for a loaded CI machine; an election here takes well under a second.
const DEADLINE: Duration = Duration::from_secs(20);

fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "strata-quorum-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    }
}

fn topic_batch(name: &str, id: u8) -> MetadataBatch {
    MetadataBatch {
        records: vec![MetadataRecord {
            record: Some(Record::Topic(TopicRecord {
                name: name.into(),
                topic_id: vec![id; 16],
            })),
        }],
    }
}

/// Waits until every controller in `nodes` names the same leader, one of `nodes`, and that leader has committed
/// an entry of its own term (so a quorum has acknowledged it and its lease lets it take writes); returns it.
async fn agreed_leader(nodes: &[&Controller]) -> NodeId {
    let ids: Vec<NodeId> = nodes.iter().map(|node| node.id()).collect();
    let mut metrics: Vec<_> = nodes.iter().map(|node| node.raft().metrics()).collect();
    let agreed = async {
        loop {
            let leaders: Vec<Option<NodeId>> = metrics.iter().map(|m| m.borrow_watched().current_leader).collect();
            if let Some(Some(leader)) = leaders.first()
                && ids.contains(leader)
                && leaders.iter().all(|l| *l == Some(*leader))
                && metrics.iter().any(|m| {
                    let m = m.borrow_watched();
                    m.id == *leader && m.cluster_committed.is_some_and(|c| c.leader_id.term == m.current_term)
                })
            {
                return *leader;
            }
            // Wake on whichever node's metrics change next.
            let changes: Vec<_> = metrics.iter_mut().map(|m| Box::pin(m.changed())).collect();
            let (changed, _, _) = futures_util::future::select_all(changes).await;
            changed.expect("a controller's Raft stopped");
        }
    };
    tokio::time::timeout(DEADLINE, agreed)
        .await
        .unwrap_or_else(|_| panic!("no agreed leader among {ids:?} within {DEADLINE:?}"))
}

/// Proposes `batch` on `leader` and waits for it to be applied. A leader whose lease lapsed (no quorum
/// acknowledgement lately) refuses writes until its next acknowledged heartbeat: then this waits for the
/// leader's metrics to change and tries again, until the deadline.
async fn propose(leader: &Controller, batch: MetadataBatch) {
    let mut metrics = leader.raft().metrics();
    let write = async {
        loop {
            match leader.raft().client_write(batch.clone()).await {
                Ok(written) => return written,
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))
                    if forward.reason == ForwardReason::LeaseExpired =>
                {
                    metrics.changed().await.expect("leader's Raft stopped");
                }
                Err(e) => panic!("write on controller {} failed: {e}", leader.id()),
            }
        }
    };
    let written = tokio::time::timeout(DEADLINE, write)
        .await
        .unwrap_or_else(|_| panic!("write on controller {} not applied within {DEADLINE:?}", leader.id()));
    assert_eq!(written.response().outcome, Ok(()));
}

/// Waits until a controller's metrics satisfy `condition`, and answers them.
async fn wait_for_metrics(
    metrics: &mut WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>,
    condition: impl Fn(&RaftMetrics<TypeConfig>) -> bool,
) -> RaftMetrics<TypeConfig> {
    loop {
        let current = metrics.borrow_watched().clone();
        if condition(&current) {
            return current;
        }
        metrics.changed().await.expect("a controller's Raft stopped");
    }
}

/// Waits until the image seen through `images` has a topic named `name`.
async fn wait_for_topic(id: NodeId, images: &mut watch::Receiver<MetadataImage>, name: &str) {
    tokio::time::timeout(DEADLINE, images.wait_for(|image| image.topic_by_name(name).is_some()))
        .await
        .unwrap_or_else(|_| panic!("topic {name} not in controller {id}'s image within {DEADLINE:?}"))
        .expect("state machine gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_controllers_elect_commit_and_fail_over() {
    let ids: [NodeId; 3] = [1, 2, 3];
    let mut dirs = Vec::new();
    let mut listeners = Vec::new();
    for _ in ids {
        dirs.push(TempDir::new().unwrap());
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members: BTreeMap<NodeId, ControllerNode> = ids
        .iter()
        .zip(&listeners)
        .map(|(id, listener)| (*id, ControllerNode::new(listener.local_addr().unwrap().to_string())))
        .collect();
    let mut nodes: Vec<Option<Controller>> = Vec::new();
    for ((id, dir), listener) in ids.iter().zip(&dirs).zip(listeners) {
        let node = strata_controller::start(*id, dir.path(), listener, raft_config())
            .await
            .unwrap();
        nodes.push(Some(node));
    }
    let mut images: Vec<_> = nodes.iter().map(|n| n.as_ref().unwrap().images()).collect();

    nodes[0].as_ref().unwrap().raft().initialize(members).await.unwrap();
    let all: Vec<&Controller> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
    let leader = agreed_leader(&all).await;

    // A batch proposed on the leader commits and every image shows it.
    let leader_at = ids.iter().position(|id| *id == leader).unwrap();
    propose(all[leader_at], topic_batch("orders", 1)).await;
    for (id, images) in ids.iter().zip(images.iter_mut()) {
        wait_for_topic(*id, images, "orders").await;
    }

    // Stop the leader: the other two elect a new one among themselves.
    nodes[leader_at].take().unwrap().shutdown().await;
    let survivors: Vec<&Controller> = nodes.iter().flatten().collect();
    assert_eq!(survivors.len(), 2);
    let new_leader = agreed_leader(&survivors).await;
    assert_ne!(new_leader, leader);

    // The new leader commits with the remaining majority, and both survivors apply it.
    let new_leader_node = survivors.iter().find(|n| n.id() == new_leader).unwrap();
    propose(new_leader_node, topic_batch("payments", 2)).await;
    for (at, id) in ids.iter().enumerate() {
        if at != leader_at {
            wait_for_topic(*id, &mut images[at], "payments").await;
            assert!(images[at].borrow().topic_by_name("orders").is_some());
        }
    }

    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

/// A controller that was down while the others compacted their logs into snapshots catches up through
/// `InstallSnapshot` over gRPC: its log lacks entries the leader no longer has, so only the snapshot can
/// bring it up to date; afterwards its image is the leader's.
/// Check-quorum and pre-vote in real time over gRPC: the active controller whose two peers stop steps down
/// (no longer leader, no leader named) within `election_timeout_max + election_timeout_min` of its last
/// acknowledgement, plus a heartbeat and a second of slack for a loaded machine, in the same term; alone, it
/// then keeps that term, its pre-votes finding no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_controller_left_alone_steps_down_in_its_term() {
    let ids: [NodeId; 3] = [1, 2, 3];
    let mut dirs = Vec::new();
    let mut listeners = Vec::new();
    for _ in ids {
        dirs.push(TempDir::new().unwrap());
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members: BTreeMap<NodeId, ControllerNode> = ids
        .iter()
        .zip(&listeners)
        .map(|(id, listener)| (*id, ControllerNode::new(listener.local_addr().unwrap().to_string())))
        .collect();
    let mut nodes: Vec<Controller> = Vec::new();
    for ((id, dir), listener) in ids.iter().zip(&dirs).zip(listeners) {
        nodes.push(
            strata_controller::start(*id, dir.path(), listener, raft_config())
                .await
                .unwrap(),
        );
    }
    nodes[0].raft().initialize(members).await.unwrap();
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let leader_at = ids.iter().position(|id| *id == leader).unwrap();
    let alone = nodes.remove(leader_at);
    let term = alone.raft().metrics().borrow_watched().current_term;

    let stopped_at = tokio::time::Instant::now();
    for node in nodes {
        node.shutdown().await;
    }
    let config = raft_config();
    let bound = strata_controller::check_quorum::step_down_after(&config)
        + Duration::from_millis(config.heartbeat_interval)
        + Duration::from_secs(1);
    let mut metrics = alone.raft().metrics();
    let stepped_down = tokio::time::timeout(
        bound,
        wait_for_metrics(&mut metrics, |m| {
            m.state != openraft::ServerState::Leader && m.current_leader.is_none()
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("controller {leader}, alone, still leads {bound:?} after its peers stopped"));
    assert_eq!(stepped_down.current_term, term, "stepping down raised the term");
    eprintln!(
        "controller {leader} stepped down {:?} after its peers stopped",
        stopped_at.elapsed()
    );

    // Several election timeouts alone: pre-vote keeps the term where it was.
    let alone_for = Duration::from_millis(4 * config.election_timeout_max);
    let raised = tokio::time::timeout(alone_for, wait_for_metrics(&mut metrics, |m| m.current_term != term)).await;
    if let Ok(m) = raised {
        panic!(
            "controller {leader}, alone, raised its term from {term} to {}",
            m.current_term
        );
    }
    alone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_far_behind_installs_a_snapshot_over_grpc() {
    let config = || openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..raft_config()
    };
    let ids: [NodeId; 3] = [1, 2, 3];
    let dirs: Vec<TempDir> = ids.iter().map(|_| TempDir::new().unwrap()).collect();
    let mut listeners = Vec::new();
    for _ in ids {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let members: BTreeMap<NodeId, ControllerNode> = ids
        .iter()
        .zip(&addrs)
        .map(|(id, addr)| (*id, ControllerNode::new(addr.clone())))
        .collect();
    let mut nodes: Vec<Option<Controller>> = Vec::new();
    for ((id, dir), listener) in ids.iter().zip(&dirs).zip(listeners) {
        nodes.push(Some(
            strata_controller::start(*id, dir.path(), listener, config())
                .await
                .unwrap(),
        ));
    }
    nodes[0].as_ref().unwrap().raft().initialize(members).await.unwrap();
    let all: Vec<&Controller> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
    let leader = agreed_leader(&all).await;
    let leader_at = ids.iter().position(|id| *id == leader).unwrap();
    let behind_at = (leader_at + 1) % ids.len();

    // One follower stops; the other two commit enough to snapshot and purge their logs past it.
    nodes[behind_at].take().unwrap().shutdown().await;
    let leader_node = nodes[leader_at].as_ref().unwrap();
    for i in 0..30u8 {
        propose(leader_node, topic_batch(&format!("topic-{i}"), i + 1)).await;
    }
    let mut metrics = leader_node.raft().metrics();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let purged = metrics.borrow_watched().purged.map(|p| p.index);
            if purged.is_some_and(|p| p >= 20) {
                return;
            }
            metrics.changed().await.expect("leader's Raft stopped");
        }
    })
    .await
    .expect("the leader purged its log within the deadline");

    // Back on its old directory and address: the leader can only send it the snapshot.
    let listener = TcpListener::bind(&addrs[behind_at]).await.unwrap();
    let back = strata_controller::start(ids[behind_at], dirs[behind_at].path(), listener, config())
        .await
        .unwrap();
    let mut images = back.images();
    wait_for_topic(ids[behind_at], &mut images, "topic-29").await;
    let leader_image = nodes[leader_at].as_ref().unwrap().images().borrow().clone();
    tokio::time::timeout(DEADLINE, images.wait_for(|image| *image == leader_image))
        .await
        .expect("the caught-up image equals the leader's")
        .unwrap();
    let installed = back.raft().metrics().borrow_watched().snapshot;
    assert!(
        installed.is_some_and(|s| s.index >= 20),
        "caught up through a snapshot, not the log: {installed:?}"
    );

    back.shutdown().await;
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

/// A broker far behind the metadata log gets the whole image first, then the batches after it: here a
/// follower starting from index 0 against a controller restarted from a snapshot, which no longer keeps the
/// batches before it. The follower ends with the controller's image, at its applied index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_gets_the_image_then_the_batches() {
    use std::sync::Arc;
    use strata_controller::client::{ControllerClient, follow};

    let config = || openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..raft_config()
    };
    let dir = TempDir::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = strata_controller::start(1, dir.path(), listener, config())
        .await
        .unwrap();
    let members = BTreeMap::from([(1, ControllerNode::new(addr.clone()))]);
    node.raft().initialize(members).await.unwrap();
    agreed_leader(&[&node]).await;
    for i in 0..12u8 {
        propose(&node, topic_batch(&format!("before-{i}"), i + 1)).await;
    }
    let mut metrics = node.raft().metrics();
    tokio::time::timeout(DEADLINE, async {
        while metrics.borrow_watched().snapshot.is_none_or(|s| s.index < 5) {
            metrics.changed().await.expect("Raft stopped");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no snapshot at index 5 or later: {:?}",
            node.raft().metrics().borrow_watched().snapshot
        )
    });
    node.shutdown().await;

    // Restarted: the snapshot and the log after it; batches from now on are kept for followers.
    let listener = TcpListener::bind(&addr).await.unwrap();
    let node = strata_controller::start(1, dir.path(), listener, config())
        .await
        .unwrap();
    agreed_leader(&[&node]).await;
    for i in 0..3u8 {
        propose(&node, topic_batch(&format!("after-{i}"), 100 + i)).await;
    }

    // On the wire: the first update after index 0 is the image, marked as a snapshot.
    let mut raw = strata_controller::proto::controller::controller_service_client::ControllerServiceClient::connect(
        format!("http://{addr}"),
    )
    .await
    .unwrap();
    let request = strata_controller::proto::controller::FetchMetadataRequest { after_index: 0 };
    let mut stream = raw.fetch_metadata(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("an update");
    assert!(first.snapshot, "a follower at 0 gets the image first");
    drop(stream);

    let client = Arc::new(ControllerClient::new(&[(1, addr)]).unwrap());
    let (_stop, stopped) = watch::channel(false);
    let mut followed = follow(client, None, stopped);
    let image = node.images().borrow().clone();
    let caught_up = tokio::time::timeout(DEADLINE, followed.wait_for(|f| f.image == image))
        .await
        .expect("the follower has the controller's image within the deadline")
        .unwrap()
        .clone();
    assert!(caught_up.image.topic_by_name("before-0").is_some() && caught_up.image.topic_by_name("after-2").is_some());
    let applied = node.raft().metrics().borrow_watched().last_applied.map(|id| id.index);
    assert_eq!(
        Some(caught_up.index),
        applied,
        "the follower is at the controller's applied index"
    );
    node.shutdown().await;
}
