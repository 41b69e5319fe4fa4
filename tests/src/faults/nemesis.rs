//! Faults, one at a time, from a seed: each applied, held, healed, and logged.

use std::time::{Duration, Instant};

use strata_protocol::client::Client;

use super::cluster::Cluster;
use super::workload::TOPIC;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node, hold, start it again.
    Kill(i32),
    /// SIGSTOP a node past its session timeout, then SIGCONT.
    Pause(i32),
    /// SIGKILL the active controller, hold, start it again.
    KillActiveController,
    /// Restart every node in turn, each once the previous one serves again.
    RollingRestart,
    /// Cut a node off from its peers (clients still reach it) past its session, then heal.
    Isolate(i32),
    /// Cut the active controller off from its peers, then heal.
    IsolateActiveController,
}

/// What a fault did and when: for the availability report.
#[derive(Debug, Clone)]
pub struct Applied {
    pub fault: Fault,
    /// The node it hit (for the active controller: the one it was).
    pub node: Option<i32>,
    /// The partitions of the workload's topic that node led when the fault began: how long writes to them
    /// stop is the failover time.
    pub led: Vec<i32>,
    pub started: Instant,
    /// When the fault had taken effect (the kill, pause or cut done): failover is timed from here.
    pub in_effect: Instant,
    pub healed: Instant,
}

/// How long a killed node stays down.
const DOWN: Duration = Duration::from_secs(3);

/// `count` faults chosen from `seed` among nodes `nodes`; network cuts only if `cuts` (the cluster can).
pub fn schedule(seed: u64, nodes: &[i32], count: usize, cuts: bool) -> Vec<Fault> {
    let mut state = seed;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let node = nodes[(next() % nodes.len() as u64) as usize];
            match next() % if cuts { 6 } else { 4 } {
                0 => Fault::Kill(node),
                1 => Fault::Pause(node),
                2 => Fault::KillActiveController,
                3 => Fault::RollingRestart,
                4 => Fault::Isolate(node),
                _ => Fault::IsolateActiveController,
            }
        })
        .collect()
}

/// Applies `fault` to `cluster`, holds it, heals it.
pub async fn apply(cluster: &mut dyn Cluster, fault: Fault) -> Applied {
    let target = match fault {
        Fault::Kill(id) | Fault::Pause(id) | Fault::Isolate(id) => Some(id),
        Fault::KillActiveController | Fault::IsolateActiveController => Some(active_controller(cluster).await),
        Fault::RollingRestart => None,
    };
    let led = match target {
        Some(id) => partitions_led_by(cluster, id).await,
        None => Vec::new(),
    };
    let started = Instant::now();
    let mut in_effect = started;
    match fault {
        Fault::Kill(_) | Fault::KillActiveController => {
            let id = target.expect("a node");
            cluster.kill(id);
            in_effect = Instant::now();
            tokio::time::sleep(DOWN).await;
            restart(cluster, id).await;
        }
        Fault::Pause(id) => {
            cluster.pause(id);
            in_effect = Instant::now();
            tokio::time::sleep(cluster.session_timeout() + Duration::from_millis(1500)).await;
            cluster.resume(id);
        }
        Fault::Isolate(_) | Fault::IsolateActiveController => {
            let id = target.expect("a node");
            assert!(cluster.isolate(id), "this cluster cannot cut a node off");
            in_effect = Instant::now();
            tokio::time::sleep(cluster.session_timeout() + Duration::from_millis(3000)).await;
            cluster.heal(id);
        }
        Fault::RollingRestart => {
            for id in cluster.nodes() {
                cluster.kill(id);
                restart(cluster, id).await;
            }
        }
    }
    Applied {
        fault,
        node: target,
        led,
        started,
        in_effect,
        healed: Instant::now(),
    }
}

/// The partitions of the workload's topic whose leader is `id`, as any node tells (empty if none answers).
async fn partitions_led_by(cluster: &dyn Cluster, id: i32) -> Vec<i32> {
    for node in cluster.nodes() {
        if let Ok(mut client) = Client::connect(&cluster.client_addr(node)).await
            && let Ok(topic) = client.topic_metadata(TOPIC, false).await
            && topic.error.is_none()
        {
            return topic
                .partitions
                .iter()
                .filter(|p| p.leader == id)
                .map(|p| p.index)
                .collect();
        }
    }
    Vec::new()
}

/// Restarts a node off the async runtime: waiting for it to serve blocks.
async fn restart(cluster: &mut dyn Cluster, id: i32) {
    tokio::task::block_in_place(|| cluster.restart(id));
}

/// The active controller, as DescribeQuorum through any node tells.
pub async fn active_controller(cluster: &dyn Cluster) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for id in cluster.nodes() {
            if let Ok(mut client) = Client::connect(&cluster.client_addr(id)).await
                && let Ok(quorum) = client.describe_quorum().await
                && let Some(leader) = quorum.leader_id
            {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no active controller within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
