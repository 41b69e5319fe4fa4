//! The cluster a history runs against, and the faults it can take.
//!
//! [`Cluster`] is what the workload, the nemesis and the checkers need of a cluster: where clients connect,
//! how to kill, restart, freeze and thaw a node, and the bytes each replica holds. [`Processes`] is three
//! `strata server` processes on loopback, each a broker and a controller; SIGKILL kills, SIGSTOP freezes;
//! it cannot cut a node off (the compose cluster, [`super::compose`], can).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A cluster under test.
pub trait Cluster: Send {
    /// Node ids, each a broker and a controller.
    fn nodes(&self) -> Vec<i32>;
    /// `HOST:PORT` a client on this machine reaches node `id` at.
    fn client_addr(&self, id: i32) -> String;
    /// SIGKILL: no flush, no checkpoint.
    fn kill(&mut self, id: i32);
    /// Starts a killed node again on its data, ports and settings, and waits until it serves.
    fn restart(&mut self, id: i32);
    /// SIGSTOP: the node is silent (no heartbeats, no answers) until [`Self::resume`].
    fn pause(&mut self, id: i32);
    fn resume(&mut self, id: i32);
    /// Cuts node `id` off from the other nodes while clients still reach it; `false` if this cluster
    /// cannot.
    fn isolate(&mut self, _id: i32) -> bool {
        false
    }
    /// Undoes [`Self::isolate`].
    fn heal(&mut self, _id: i32) {}
    /// The concatenated `.log` segments of one partition on node `id`, oldest first; `None` if it has none.
    fn replica_bytes(&self, id: i32, topic: &str, partition: i32) -> Option<Vec<u8>>;
    /// The tail of node `id`'s log, for a failure's report.
    fn log_tail(&self, id: i32) -> String;
    /// `broker.session.timeout.ms`: a node silent for longer is fenced.
    fn session_timeout(&self) -> Duration;

    /// Every node's client address, comma-separated.
    fn bootstrap(&self) -> String {
        self.nodes()
            .iter()
            .map(|&id| self.client_addr(id))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Bound for a node to start serving (a debug build recovering its logs on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Broker settings of a fault-suite cluster: Kafka's three-node durability defaults, and sessions short
/// enough that a frozen node is fenced within seconds.
pub const SETTINGS: &[&str] = &[
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=200",
    "replica.lag.time.max.ms=2000",
    "group.initial.rebalance.delay.ms=0",
];
/// [`SETTINGS`]' session: a node frozen for longer is fenced.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(2000);

/// Three `strata server` processes on loopback.
#[derive(Debug)]
pub struct Processes {
    dir: TempDir,
    binary: PathBuf,
    nodes: Vec<Node>,
    voters: String,
}

#[derive(Debug)]
struct Node {
    id: i32,
    kafka: u16,
    controller: u16,
    http: u16,
    child: Option<Child>,
}

impl Processes {
    /// Starts `count` nodes of `binary` and waits until every one serves.
    pub fn start(binary: &Path, count: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes: Vec<Node> = (1..=count as i32)
            .map(|id| Node {
                id,
                kafka: free_port(),
                controller: free_port(),
                http: free_port(),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            dir,
            binary: binary.to_owned(),
            nodes,
            voters,
        };
        // All are started before any is waited for: a node serves only once a quorum elects a controller.
        for id in cluster.nodes() {
            cluster.spawn(id);
        }
        for id in cluster.nodes() {
            cluster.wait_serving(id);
        }
        cluster
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn data_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn log_path(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    fn spawn(&mut self, id: i32) {
        let node = self.node(id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("the node's log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("server")
            .args(["--node-id", &id.to_string()])
            .args(["--data-dir", self.data_dir(id).to_str().expect("a UTF-8 path")])
            .args(["--listen", &format!("127.0.0.1:{}", node.kafka)])
            .args(["--controller-listen", &format!("127.0.0.1:{}", node.controller)])
            .args(["--http-listen", &format!("127.0.0.1:{}", node.http)])
            .args(["--controller-voters", &self.voters])
            .env("STRATA_LOG", "info,openraft=warn")
            .env_remove("STRATA_SET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for setting in SETTINGS {
            command.args(["--set", setting]);
        }
        let child = command.spawn().expect("spawning strata");
        self.node_mut(id).child = Some(child);
    }

    /// Waits until node `id` answers `/health` with 200 (it serves once it is unfenced and caught up).
    fn wait_serving(&mut self, id: i32) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = format!("127.0.0.1:{}", self.node(id).http);
        while !health(&addr) {
            let child = self.node_mut(id).child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("waiting on strata") {
                panic!("node {id} exited while starting: {status}\n{}", self.log_tail(id));
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not serve within {START_TIMEOUT:?}\n{}",
                self.log_tail(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, id: i32, name: &str) {
        let pid = self.node(id).child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {pid}");
    }
}

impl Cluster for Processes {
    fn nodes(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn client_addr(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.node(id).kafka)
    }

    fn kill(&mut self, id: i32) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, id: i32) {
        self.kill(id);
        self.spawn(id);
        self.wait_serving(id);
    }

    fn pause(&mut self, id: i32) {
        self.signal(id, "STOP");
    }

    fn resume(&mut self, id: i32) {
        self.signal(id, "CONT");
    }

    fn replica_bytes(&self, id: i32, topic: &str, partition: i32) -> Option<Vec<u8>> {
        segments_of(&self.data_dir(id), topic, partition)
    }

    fn session_timeout(&self) -> Duration {
        SESSION_TIMEOUT
    }

    fn log_tail(&self, id: i32) -> String {
        let text = fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A frozen process ignores SIGKILL only until it is continued; SIGKILL works either way.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The concatenated `.log` segments of a partition in data directory `data_dir`, oldest first.
pub fn segments_of(data_dir: &Path, topic: &str, partition: i32) -> Option<Vec<u8>> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    // Zero-padded base offsets: name order is offset order.
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(fs::read(segment).ok()?);
    }
    Some(bytes)
}

/// A free loopback port (released again, so another process could take it first; unlikely here), never one
/// this process was handed before: the kernel may hand a released port out again at once, and two listeners
/// of one node once got the same port.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Whether the node's HTTP endpoint at `addr` answers `/health` with 200.
pub fn health(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// The `strata` binary the workspace built: `STRATA_BIN`, or `strata` next to this test's own directory
/// (`target/<profile>/strata`, which `cargo test --workspace` builds for the broker's tests).
pub fn strata_binary() -> PathBuf {
    if let Ok(path) = std::env::var("STRATA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("strata");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p strata-broker` (or set STRATA_BIN)",
        binary.display()
    );
    binary
}
