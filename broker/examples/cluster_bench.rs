//! Controller quorum figures for BENCHMARKS.md (issue 4), on three `strata server` processes on loopback,
//! each a broker and a controller of one metadata quorum (`scripts/bench-cluster` builds and runs this):
//!
//! - `failover`: the active controller (the quorum leader, as DescribeQuorum names it) is SIGKILLed. Measured:
//!   from just before the signal to the first successful CreateTopics (1 partition, replication factor 2, so
//!   that the two survivors can hold it whether or not the dead broker is fenced yet) through a surviving
//!   node; beside it, until the other survivor's DescribeQuorum names a new leader. Between rounds the
//!   killed node is restarted on its directory and ports, and the next round starts once every node sees
//!   three live brokers and a leader that all voters have caught up with.
//! - `create`: one CreateTopics of `--partitions` partitions (10,000), replication factor 3 and then 1, each
//!   round on a fresh cluster, sent to a node that is not the active controller (as most brokers are).
//!   Measured: from sending it until every node's Metadata shows the topic with all its partitions, each
//!   with a leader and its replicas; beside it, until the answer arrived (the node that took the request
//!   answers only once it has created its own logs of the topic, and gives up after 30 s).
//!
//! ```sh
//! cargo build --release --bin strata --example cluster_bench
//! target/release/examples/cluster_bench [--strata PATH] [--rounds N] [--partitions N] [--logs DIR]
//!     [--set KEY=VALUE]... failover|create|all
//! ```
//!
//! `--strata` defaults to the `strata` binary next to this example's directory (`target/release/strata`).
//! Each node's log goes to `DIR/<run>-node<id>.log` with `--logs` (timestamps in UTC, to line up with the
//! UTC times printed here), else into the run's temporary directory, deleted at the end. `STRATA_LOG` is
//! passed on to the servers. Every wait is a condition polled with a deadline; every spawned server is
//! killed when its cluster is dropped, on a panic too.

use std::fmt;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use kafka_protocol::ResponseError;
use strata_protocol::client::admin::{NewTopic, TopicMetadata};
use strata_protocol::client::{Client, ClientOptions};
use tempfile::TempDir;

const NODES: i32 = 3;
const FAILOVER_ROUNDS: usize = 10;
const CREATE_ROUNDS: usize = 3;
const PARTITIONS: i32 = 10_000;
/// How long anything may take before the benchmark gives up: start, elect, catch up, create.
const SLOW: Duration = Duration::from_secs(60);
/// How often a condition is asked again; also the resolution of the figures that come from polling.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Options {
    strata: PathBuf,
    rounds: Option<usize>,
    partitions: i32,
    logs: Option<PathBuf>,
    settings: Vec<String>,
    what: String,
}

const USAGE: &str = "usage: cluster_bench [--strata PATH] [--rounds N] [--partitions N] [--logs DIR] \
                     [--set KEY=VALUE]... failover|create|all";

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let default_strata = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("strata")))
            .filter(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("target/release/strata"));
        let mut options = Options {
            strata: default_strata,
            rounds: None,
            partitions: PARTITIONS,
            logs: None,
            settings: Vec::new(),
            what: String::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--strata" => options.strata = value()?.into(),
                "--rounds" => options.rounds = Some(value()?.parse().context("--rounds")?),
                "--partitions" => options.partitions = value()?.parse().context("--partitions")?,
                "--logs" => options.logs = Some(value()?.into()),
                "--set" => options.settings.push(value()?),
                "failover" | "create" | "all" if options.what.is_empty() => options.what = arg,
                _ => bail!("unexpected argument {arg}\n{USAGE}"),
            }
        }
        ensure!(!options.what.is_empty(), "{USAGE}");
        ensure!(options.rounds != Some(0), "--rounds must be at least 1");
        ensure!(options.partitions > 0, "--partitions must be at least 1");
        ensure!(
            options.strata.exists(),
            "no strata binary at {} (build it with cargo build --release, or pass --strata)",
            options.strata.display()
        );
        Ok(options)
    }
}

/// Wall-clock time of day in UTC, `HH:MM:SS.mmm`, to find the moment in the servers' logs.
struct Utc(SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let day_ms = since.as_millis() % 86_400_000;
        let (h, m, s, ms) = (
            day_ms / 3_600_000,
            day_ms / 60_000 % 60,
            day_ms / 1000 % 60,
            day_ms % 1000,
        );
        write!(f, "{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A free loopback port (the listener is dropped, so another process might take it first; unlikely here).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Debug)]
struct Node {
    id: i32,
    /// `127.0.0.1:PORT` of the Kafka listener.
    kafka: String,
    controller: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// `None` while the node is down.
    child: Option<Child>,
}

/// Three nodes, each a broker and a controller. Dropping it kills every node still running.
#[derive(Debug)]
struct Cluster {
    strata: PathBuf,
    voters: String,
    settings: Vec<String>,
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl Cluster {
    /// Starts three nodes with fresh data directories, without waiting for them (see [`Cluster::ready`]).
    fn start(options: &Options, run: &str) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let log_dir = match &options.logs {
            Some(logs) => logs.clone(),
            None => dir.path().to_owned(),
        };
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let mut nodes = Vec::new();
        for id in 1..=NODES {
            let data_dir = dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&data_dir)?;
            nodes.push(Node {
                id,
                kafka: format!("127.0.0.1:{}", free_port()?),
                controller: format!("127.0.0.1:{}", free_port()?),
                data_dir,
                log: log_dir.join(format!("{run}-node{id}.log")),
                child: None,
            });
        }
        let voters = nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            strata: options.strata.clone(),
            voters,
            settings: options.settings.clone(),
            nodes,
            _dir: dir,
        };
        for id in 1..=NODES {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Starts node `id` on its directory and ports; its log is appended to.
    fn spawn(&mut self, id: i32) -> anyhow::Result<()> {
        let node = &self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "node {id} is running");
        let log = OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut command = Command::new(&self.strata);
        command
            .arg("server")
            .args(["--node-id", &id.to_string(), "--roles", "broker,controller"])
            .args(["--controller-voters", &self.voters])
            .args(["--controller-listen", &node.controller])
            .args(["--listen", &node.kafka])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env_remove("STRATA_SET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for setting in &self.settings {
            command.args(["--set", setting]);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.strata.display()))?;
        self.nodes[id as usize - 1].child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reaps the process.
    fn kill(&mut self, id: i32) -> anyhow::Result<()> {
        let mut child = self.nodes[id as usize - 1].child.take().context("the node is down")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Fails if a node that should run has exited, with the end of its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child
                && let Some(status) = child.try_wait()?
            {
                node.child = None;
                bail!("node {} exited ({status}):\n{}", node.id, log_tail(&node.log));
            }
        }
        Ok(())
    }

    /// Waits until every live node lists every live node as a live (unfenced) broker, and names a quorum
    /// leader whose log every live voter has caught up with.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SLOW;
        let expected = self.live().count();
        loop {
            self.check_running()?;
            let mut all = true;
            for node in self.live() {
                all &= node_ready(&node.kafka, expected).await;
                if !all {
                    break;
                }
            }
            if all {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the cluster was not ready within {SLOW:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The active controller, as DescribeQuorum through any live node names it.
    async fn active_controller(&self) -> anyhow::Result<i32> {
        let deadline = Instant::now() + SLOW;
        loop {
            for node in self.live() {
                if let Ok(mut client) = Client::connect(&node.kafka).await
                    && let Ok(quorum) = client.describe_quorum().await
                    && let Some(id) = quorum.leader_id
                {
                    return Ok(id);
                }
            }
            ensure!(Instant::now() < deadline, "no quorum leader within {SLOW:?}");
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// See [`Cluster::ready`].
async fn node_ready(addr: &str, brokers: usize) -> bool {
    let Ok(mut client) = Client::connect(addr).await else {
        return false;
    };
    let Ok(metadata) = client.metadata(Some(&[]), false).await else {
        return false;
    };
    if metadata.brokers.len() != brokers {
        return false;
    }
    let Ok(quorum) = client.describe_quorum().await else {
        return false;
    };
    quorum.leader_id.is_some()
        && quorum.voters.iter().filter(|v| v.log_end_offset.is_some()).count() >= brokers
        && quorum
            .voters
            .iter()
            .filter_map(|v| v.lag(quorum.high_watermark))
            .filter(|lag| *lag == 0)
            .count()
            >= brokers
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A client that waits longer than the broker does for the controller, so that its answer is what is seen.
async fn connect(addr: &str) -> anyhow::Result<Client> {
    let options = ClientOptions {
        client_id: "cluster-bench".into(),
        request_timeout: Duration::from_secs(90),
        ..ClientOptions::default()
    };
    Client::connect_with(addr, options)
        .await
        .with_context(|| format!("connecting to {addr}"))
}

fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor,
        configs: Vec::new(),
    }
}

/// Creates `topic` through `addr`, trying again after each failure, until it succeeds (a topic that already
/// exists counts: an earlier attempt whose answer was lost created it) or `SLOW` passes. Returns the number
/// of failed attempts.
async fn create_until_ok(addr: &str, mut client: Option<Client>, topic: &NewTopic) -> anyhow::Result<usize> {
    let deadline = Instant::now() + SLOW;
    let mut failures = 0;
    loop {
        if client.is_none() {
            client = connect(addr).await.ok();
        }
        if let Some(c) = &mut client {
            match c.create_topic(topic).await {
                Ok(()) => return Ok(failures),
                Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => return Ok(failures),
                Err(e) => {
                    failures += 1;
                    eprintln!("  CreateTopics through {addr} failed: {e}");
                    if e.kafka_error().is_none() {
                        client = None; // the connection is in an unknown state
                    }
                }
            }
        }
        ensure!(Instant::now() < deadline, "no successful CreateTopics within {SLOW:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `addr`'s DescribeQuorum until it names a leader other than `old`; returns that leader and the
/// time since `since`.
async fn new_leader(addr: String, old: i32, since: Instant) -> anyhow::Result<(i32, Duration)> {
    let deadline = Instant::now() + SLOW;
    let mut client = None;
    loop {
        if client.is_none() {
            client = connect(&addr).await.ok();
        }
        if let Some(c) = &mut client {
            match c.describe_quorum().await {
                Ok(quorum) => {
                    if let Some(id) = quorum.leader_id.filter(|id| *id != old) {
                        return Ok((id, since.elapsed()));
                    }
                }
                Err(e) if e.kafka_error().is_none() => client = None,
                Err(_) => {}
            }
        }
        ensure!(Instant::now() < deadline, "no new leader within {SLOW:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Median and max of `values` (sorted here).
fn median_max(values: &mut [Duration]) -> (Duration, Duration) {
    values.sort_unstable();
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    };
    (median, values[n - 1])
}

async fn failover(options: &Options) -> anyhow::Result<()> {
    let rounds = options.rounds.unwrap_or(FAILOVER_ROUNDS);
    let mut cluster = Cluster::start(options, "failover")?;
    cluster.ready().await?;
    // Every node has taken a write before the first kill, as in a cluster that has been running.
    for id in 1..=NODES {
        let topic = new_topic(&format!("warm-up-{id}"), 1, 2);
        create_until_ok(&cluster.node(id).kafka, None, &topic).await?;
    }
    let (mut created, mut elected) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let controller = cluster.active_controller().await?;
        let survivors: Vec<i32> = (1..=NODES).filter(|id| *id != controller).collect();
        let (via, observer) = (survivors[0], survivors[1]);
        let via_addr = cluster.node(via).kafka.clone();
        let client = connect(&via_addr).await?;
        let topic = new_topic(&format!("after-failover-{round}"), 1, 2);

        let wall = SystemTime::now();
        let killed_at = Instant::now();
        cluster.kill(controller)?;
        let observer_addr = cluster.node(observer).kafka.clone();
        let leader = tokio::spawn(new_leader(observer_addr, controller, killed_at));
        let failures = create_until_ok(&via_addr, Some(client), &topic).await?;
        let create_time = killed_at.elapsed();
        let (new_controller, leader_time) = leader.await??;
        println!(
            "failover round {round}: SIGKILL of controller {controller} at {}; node {observer} named \
             controller {new_controller} after {}; first CreateTopics through node {via} succeeded after {} \
             ({failures} failed attempts)",
            Utc(wall),
            ms(leader_time),
            ms(create_time),
        );
        created.push(create_time);
        elected.push(leader_time);

        cluster.spawn(controller)?;
        cluster.ready().await?;
    }
    let (leader_median, leader_max) = median_max(&mut elected);
    println!(
        "controller failover, SIGKILL to a new leader named by DescribeQuorum ({rounds} rounds): median {}, \
         max {}",
        ms(leader_median),
        ms(leader_max)
    );
    let (median, max) = median_max(&mut created);
    println!(
        "controller failover, SIGKILL to first successful CreateTopics ({rounds} rounds): median {}, max {} \
         (target < 2 s: {})",
        ms(median),
        ms(max),
        if max < Duration::from_secs(2) { "met" } else { "not met" }
    );
    Ok(())
}

/// The topic as `client`'s broker describes it, if it is there.
async fn describe(client: &mut Client, name: &str) -> anyhow::Result<Option<TopicMetadata>> {
    let metadata = client.metadata(Some(&[name]), false).await?;
    Ok(metadata
        .topics
        .into_iter()
        .find(|t| t.name == name && t.error.is_none()))
}

/// Polls `client`'s Metadata until `name` has `partitions` partitions, each with a leader and
/// `replication_factor` replicas; returns the time since `started`.
async fn visible(
    mut client: Client,
    name: String,
    partitions: i32,
    replication_factor: i16,
    started: Instant,
) -> anyhow::Result<Duration> {
    let deadline = started + SLOW;
    loop {
        if let Some(topic) = describe(&mut client, &name).await?
            && topic.partitions.len() == partitions as usize
            && topic
                .partitions
                .iter()
                .all(|p| p.leader >= 0 && p.replicas.len() == replication_factor as usize && p.error.is_none())
        {
            return Ok(started.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "{name} not visible on {} within {SLOW:?}",
            client.addr()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn create(options: &Options) -> anyhow::Result<()> {
    let rounds = options.rounds.unwrap_or(CREATE_ROUNDS);
    let partitions = options.partitions;
    for replication_factor in [3, 1] {
        let mut all_visible = Vec::new();
        for round in 1..=rounds {
            let run = format!("create-rf{replication_factor}-{round}");
            let mut cluster = Cluster::start(options, &run)?;
            cluster.ready().await?;
            let controller = cluster.active_controller().await?;
            let via = (1..=NODES).find(|id| *id != controller).expect("three nodes");
            let name = format!("big-rf{replication_factor}");
            let mut client = connect(&cluster.node(via).kafka).await?;
            let mut observers = Vec::new();
            for node in cluster.live() {
                observers.push((node.id, connect(&node.kafka).await?));
            }

            let wall = SystemTime::now();
            let started = Instant::now();
            let pollers: Vec<_> = observers
                .into_iter()
                .map(|(id, observer)| {
                    let poll = visible(observer, name.clone(), partitions, replication_factor, started);
                    (id, tokio::spawn(poll))
                })
                .collect();
            // The broker answers once it has acted on the change itself (its logs of the topic created),
            // and gives up after 30 s: an error answer is reported, visibility is what is measured.
            let answer = match client
                .create_topic(&new_topic(&name, partitions, replication_factor))
                .await
            {
                Ok(()) => format!("answered after {}", ms(started.elapsed())),
                Err(e) => format!("answered with an error after {}: {e}", ms(started.elapsed())),
            };
            let mut seen = Vec::new();
            for (id, poller) in pollers {
                seen.push((id, poller.await??));
            }
            let everywhere = seen.iter().map(|(_, d)| *d).max().expect("three nodes");
            let per_node: Vec<String> = seen.iter().map(|(id, d)| format!("node {id} {}", ms(*d))).collect();
            println!(
                "create round {round}: {partitions} partitions, replication factor {replication_factor}, sent at \
                 {} to node {via} (active controller {controller}): visible with leaders on {}; on every node \
                 after {}; {answer}",
                Utc(wall),
                per_node.join(", "),
                ms(everywhere),
            );
            all_visible.push(everywhere);
            cluster.check_running()?;
        }
        let (median, max) = median_max(&mut all_visible);
        println!(
            "CreateTopics of {partitions} partitions, replication factor {replication_factor}, to visible on \
             every node ({rounds} rounds): median {}, max {} (target < 2 s: {})",
            ms(median),
            ms(max),
            if max < Duration::from_secs(2) { "met" } else { "not met" }
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    println!(
        "strata: {}; nodes: {NODES}, each broker and controller; settings: {:?}",
        options.strata.display(),
        options.settings
    );
    match options.what.as_str() {
        "failover" => failover(&options).await,
        "create" => create(&options).await,
        _ => {
            failover(&options).await?;
            create(&options).await
        }
    }
}
