//! `strata server` nodes on loopback (three by default), each a broker and a controller of one quorum, for
//! tests that need a cluster: start them together, SIGKILL or SIGSTOP one, restart it on its directory, ports
//! and flags.

use std::net::TcpListener;
use std::time::Duration;

use tempfile::TempDir;

use super::{Server, Starting};

/// The nodes of [`Cluster::start`].
pub const NODES: usize = 3;
/// Short, so that tests of fencing are quick: brokers heartbeat every 200 ms.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(2_000);

pub struct Cluster {
    _dir: TempDir,
    /// By node id - 1. A killed node is kept, so that a restart reuses its directory, ports and flags.
    nodes: Vec<Server>,
    down: Vec<bool>,
}

/// `n` distinct free loopback ports. Their listeners are held until all are chosen, so that the kernel
/// cannot hand the same port out twice (a node's Kafka and controller listeners once got the same one);
/// dropped before the nodes start, they may still be taken by another process first, which is unlikely.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_nodes(NODES)
    }

    /// A cluster of `nodes` nodes, every one a broker and a voter.
    pub fn start_nodes(nodes: usize) -> Cluster {
        Self::start_shape(nodes, 0, 0)
    }

    /// Nodes `1..=combined` are brokers and voters, the next `controllers` voters only, and the next
    /// `brokers` brokers only.
    pub fn start_shape(combined: usize, controllers: usize, brokers: usize) -> Cluster {
        let nodes = combined + controllers + brokers;
        let voters_n = combined + controllers;
        let dir = tempfile::tempdir().unwrap();
        let mut ports = free_ports(nodes + voters_n);
        let controller_ports = ports.split_off(nodes);
        let kafka = ports;
        let voters = (0..voters_n)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, controller_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let settings: Vec<String> = [
            format!("broker.session.timeout.ms={}", SESSION_TIMEOUT.as_millis()),
            "broker.heartbeat.interval.ms=200".into(),
            "replica.lag.time.max.ms=2000".into(),
            "group.initial.rebalance.delay.ms=0".into(),
        ]
        .into();
        let starting: Vec<Starting> = (0..nodes)
            .map(|i| {
                let data = dir.path().join(format!("node-{}", i + 1));
                std::fs::create_dir_all(&data).unwrap();
                let roles = match i {
                    i if i < combined => "broker,controller",
                    i if i < voters_n => "controller",
                    _ => "broker",
                };
                let mut flags = vec![
                    "--node-id".to_owned(),
                    (i + 1).to_string(),
                    "--roles".into(),
                    roles.into(),
                    "--controller-voters".into(),
                    voters.clone(),
                ];
                if i < voters_n {
                    flags.extend([
                        "--controller-listen".into(),
                        format!("127.0.0.1:{}", controller_ports[i]),
                    ]);
                }
                Server::spawn(&data, settings.clone(), &format!("127.0.0.1:{}", kafka[i]), flags)
            })
            .collect();
        Cluster {
            _dir: dir,
            nodes: starting.into_iter().map(Starting::wait).collect(),
            down: vec![false; nodes],
        }
    }

    pub fn node(&self, id: i32) -> &Server {
        assert!(!self.down[id as usize - 1], "node {id} is down");
        &self.nodes[id as usize - 1]
    }

    pub fn live(&self) -> impl Iterator<Item = (i32, &Server)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.down[*i])
            .map(|(i, n)| (i as i32 + 1, n))
    }

    pub fn bootstrap(&self) -> String {
        self.live()
            .map(|(_, n)| n.addr.clone())
            .filter(|addr| !addr.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill(&mut self, id: i32) {
        self.nodes[id as usize - 1].kill();
        self.down[id as usize - 1] = true;
    }

    pub fn restart(&mut self, id: i32) {
        self.nodes[id as usize - 1].restart();
        self.down[id as usize - 1] = false;
    }
}
