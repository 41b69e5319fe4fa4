//! Deterministic simulation of the controller quorum with turmoil: three controllers, their real storage and
//! their real gRPC network, on simulated hosts whose network and processes fail on a seeded schedule.
//!
//! # What is simulated
//!
//! Each controller is a turmoil host running `strata_controller::start_on`: the real `LogStore` and
//! `StateMachine`, each on its own temporary directory
//! (on tmpfs where there is one, so fsync costs nothing), and the real tonic `RaftService` and client
//! (`Network::with_connect`) over turmoil's simulated TCP. Time is simulated: every host's clock is a paused
//! tokio clock advanced by turmoil in steps of [`TICK`], so seconds of Raft timeouts pass in milliseconds.
//! File I/O runs on tokio's blocking pool, in real time: usually well within a step, but turmoil keeps
//! stepping while it runs, so on a heavily loaded machine a file operation that waits long for a core takes
//! simulated time too (a few real milliseconds can be a simulated second). A scripted scenario that finds a
//! leader change it did not cause may have met such a slow disk (seen once in 128 seeds while a build ran
//! beside them).
//!
//! Per seed, the network gets a latency range and, on half the seeds, a rate of random message loss
//! (turmoil's `fail_rate`; on turmoil's TCP a lost segment stalls its connection for good, so this exercises
//! keep-alive and reconnection), all under turmoil's `rng_seed`; and a driver (a turmoil client) runs one
//! scenario whose choices come from the same seed:
//!
//! 1. the cluster is initialized, a leader elected, and batches are committed;
//! 2. the leader is cut off from the other two (turmoil `hold`: messages wait, as TCP retransmits; or
//!    `partition`: messages are lost, as on a dead connection): a write proposed to it then never commits,
//!    the other two elect a leader and commit, the old leader steps down in its own term while still cut
//!    off (check-quorum), and once the link is back it follows and catches up;
//! 3. one follower, the leader, two nodes (quorum lost) or all three crash and restart from their files
//!    (turmoil `crash` then `bounce`; a crash drops the host's runtime, so every task stops at an await
//!    point and every started file operation completes: no torn writes here, `controller/tests/durability.rs` covers
//!    those);
//! 4. a random run of isolations, heals, crashes and restarts, with a writer proposing all along;
//! 5. everything is healed and restarted, the cluster must converge and commit again.
//!
//! Two scripted scenarios ([`Script`]) each put one fault in isolation, on seeds without random message loss:
//! a follower cut off for 20 s must not change the active controller or the term (pre-vote), and an active
//! controller cut off from both peers must step down within a bound, without raising its term, while the
//! other two elect a leader that stays the only one after healing (check-quorum).
//!
//! Write `n` is one batch: topic `w-n`, broker `n` registered, and broker 0 registered with incarnation `n`
//! (so broker 0 names the last write applied). Writes are proposed one at a time, each after the previous
//! one was answered, so the order of proposals is the order of commits.
//!
//! # Invariants
//!
//! - Agreement: at the end all three images are equal, and equal to replaying the committed writes in order
//!   on an empty image; all three have applied the same log id.
//! - Durability: every acknowledged write is in the final image, and on every node from the moment any
//!   later write is: no image ever shows write `m` without an acknowledged `n < m` (no loss, no reorder).
//! - Exactly once, in order: acknowledged writes have strictly increasing log indexes; every image is
//!   exactly its writes replayed in order (broker 0 names the largest); a batch is applied whole.
//! - Only what was proposed: no image holds a write never proposed, nor one proposed to a cut-off leader.
//! - No going back: within one run of a node its images only grow; a restarted node's first image holds
//!   everything it had applied before the crash (the committed log id is saved before applying).
//! - Liveness: a leader is elected on a majority, and after everything heals the cluster converges and
//!   takes writes, within generous simulated deadlines.
//!
//! # Seeds
//!
//! [`SEEDS_DEFAULT`] seeds run by default ([`SCRIPTED_SEEDS_DEFAULT`] for each scripted scenario);
//! `STRATA_SIM_SEEDS=N` runs N, `STRATA_SIM_SEED=S` only seed S.
//! A failure names its seed and prints the scenario's event log. The seed fixes the fault schedule and
//! turmoil's network randomness; openraft draws its election timeouts from an OS-seeded thread RNG and
//! tokio's `select!` picks branches at random, so a rerun replays the same scenario but not necessarily
//! the same interleaving.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ServerState, SnapshotPolicy};

use strata_controller::network::Network;
use strata_controller::proto::metadata::{
    MetadataBatch, MetadataRecord, RegisterBroker, TopicRecord, metadata_record::Record,
};
use strata_controller::proto::raft::ControllerNode;
use strata_controller::types::{NodeId, Raft};
use strata_controller::{MetadataImage, QuorumSettings, TypeConfig};
use strata_tests::sim::{
    EventLog, Fault, Faults, Rng, accept, builder, one_seed_asked, seeds, simulated_channel, step_until_done, temp_dirs,
};

/// Seeds run when neither `STRATA_SIM_SEEDS` nor `STRATA_SIM_SEED` is set.
const SEEDS_DEFAULT: u64 = 200;
/// The same for each scripted scenario (one fault, timed), which is cheaper to vary less.
const SCRIPTED_SEEDS_DEFAULT: u64 = 16;
/// Simulated time per turmoil step. Message delivery happens at step boundaries, so a round trip takes at
/// least two steps; within a step each host's timers fire at their exact instants.
const TICK: Duration = Duration::from_millis(4);
/// A seed whose scenario has not ended after this much simulated time fails.
const SIM_DURATION_MAX: Duration = Duration::from_secs(300);
/// How long, in simulated time, an election or a convergence may take before it counts as lost liveness.
/// Elections take well under a second here; this only has to be certain, not tight.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(30);
/// How long one write attempt waits for its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

const NODES: [NodeId; 3] = [1, 2, 3];
const PORT: u16 = 9093;

/// Raft timing for the simulation. The AppendEntries time-to-live is the heartbeat interval, so it must
/// exceed a round trip: two steps plus twice the largest latency drawn below. The cost of a seed is in
/// Raft's events (each heartbeat, each tick of openraft's loop), not in simulated time, so the heartbeat is
/// no shorter than it needs to be.
const HEARTBEAT_MS: u64 = 150;
const ELECTION_TIMEOUT_MIN_MS: u64 = 400;
const ELECTION_TIMEOUT_MAX_MS: u64 = 800;
/// How long the scripted follower stays cut off: as long as in the report of the term inflation (term 1 to
/// 131 in 20 s with openraft's default timeouts; with this simulation's, pre-vote off, term 1 to about 32).
const FOLLOWER_CUT_OFF: Duration = Duration::from_secs(20);
/// How long after being cut off from both peers an active controller must have stepped down: check-quorum's
/// `election_timeout_max + election_timeout_min` since the last acknowledgement (sent before the cut), one
/// check interval (a quarter heartbeat) late at most, and the driver's polling; a heartbeat of slack.
const STEP_DOWN_BOUND: Duration =
    Duration::from_millis(ELECTION_TIMEOUT_MAX_MS + ELECTION_TIMEOUT_MIN_MS + HEARTBEAT_MS + 100);
/// How long a scripted scenario watches that nothing changes where nothing should.
const STEADY_WATCH: Duration = Duration::from_secs(3);
/// Largest one-way message latency a seed may draw.
const LATENCY_MAX_MS: u64 = 25;
/// Largest chance that a message is lost, in millionths, on the seeds that lose messages.
const FAIL_RATE_MAX_PPM: u64 = 10_000;
/// A snapshot every few entries, and the log purged behind it, so that a node that was down catches up by an
/// InstallSnapshot over the simulated network, not only by AppendEntries.
const SNAPSHOT_EVERY_ENTRIES: u64 = 8;
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 2;

fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "strata-simulation".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT,
        purge_batch_size: 1,
        ..Default::default()
    }
}

fn host_name(id: NodeId) -> String {
    format!("controller-{id}")
}

// ---------------------------------------------------------------------------------------------------------
// Seeds and the test entry point.

#[test]
fn controllers_under_partitions_and_crashes() {
    run_seeds("controllers_under_partitions_and_crashes", Script::Chaos, SEEDS_DEFAULT);
}

#[test]
fn a_cut_off_follower_does_not_disturb_the_quorum() {
    run_seeds(
        "a_cut_off_follower_does_not_disturb_the_quorum",
        Script::FollowerCutOff,
        SCRIPTED_SEEDS_DEFAULT,
    );
}

#[test]
fn a_cut_off_active_controller_steps_down() {
    run_seeds(
        "a_cut_off_active_controller_steps_down",
        Script::ActiveControllerCutOff,
        SCRIPTED_SEEDS_DEFAULT,
    );
}

/// Runs `script` on the seeds the environment asks for (`default_count` of them when it asks nothing), on
/// as many threads as there are cores, and fails naming the first failing seed.
fn run_seeds(test: &str, script: Script, default_count: u64) {
    let seeds = seeds(&[], default_count);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len().max(1));
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let stats: Mutex<Vec<SeedStats>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if at >= seeds.len() {
                        return;
                    }
                    let seed = seeds[at];
                    let outcome = std::panic::catch_unwind(|| run_seed(seed, script))
                        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&panic))));
                    match outcome {
                        Ok(seed_stats) => stats.lock().unwrap().push(seed_stats),
                        Err(message) => failures.lock().unwrap().push((seed, message)),
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    if let Some((seed, message)) = failures.first() {
        panic!(
            "controller simulation {test} failed for seed {seed} ({} failing seed(s): {:?})\n{message}\n\
             rerun this seed with: STRATA_SIM_SEED={seed} cargo test -p strata-tests --test controller_quorum {test}",
            failures.len(),
            failures.iter().map(|(seed, _)| seed).collect::<Vec<_>>(),
        );
    }
    let stats = stats.into_inner().unwrap();
    let total = SeedStats::sum(&stats);
    eprintln!(
        "{test}: {} seeds in {:.1?} ({workers} threads): {} writes acknowledged, {} unknown, {} to a cut-off \
         leader, {} crashes, {} snapshots installed from a leader; {:.0?} simulated; check-quorum step-downs \
         after {:?} (longest)",
        stats.len(),
        started.elapsed(),
        total.acked,
        total.unknown,
        total.isolated,
        total.crashes,
        total.snapshots_installed,
        total.simulated,
        total.step_down_max,
    );
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(not a string)".into())
}

/// What one seed did, summed up for the closing line.
#[derive(Debug, Default, Clone, Copy)]
struct SeedStats {
    acked: usize,
    unknown: usize,
    isolated: usize,
    crashes: usize,
    /// Snapshots a controller received from the leader (InstallSnapshot over the simulated network).
    snapshots_installed: usize,
    simulated: Duration,
    /// The longest a cut-off active controller took to step down (scripted step-down seeds only).
    step_down_max: Option<Duration>,
}

impl SeedStats {
    fn sum(all: &[SeedStats]) -> SeedStats {
        all.iter().fold(SeedStats::default(), |sum, s| SeedStats {
            acked: sum.acked + s.acked,
            unknown: sum.unknown + s.unknown,
            isolated: sum.isolated + s.isolated,
            crashes: sum.crashes + s.crashes,
            snapshots_installed: sum.snapshots_installed + s.snapshots_installed,
            simulated: sum.simulated + s.simulated,
            step_down_max: sum.step_down_max.max(s.step_down_max),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// One seed: the simulation, its hosts and the driver.

/// The scenario a seed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Every phase listed in the module documentation, with seeded random faults.
    Chaos,
    /// One follower cut off from both peers for [`FOLLOWER_CUT_OFF`], then healed: the active controller and
    /// the term must not change (pre-vote).
    FollowerCutOff,
    /// The active controller cut off from both peers: it steps down within [`STEP_DOWN_BOUND`] without
    /// raising its term (check-quorum), the other two elect one, and after healing that one stays.
    ActiveControllerCutOff,
}

/// What the hosts and the driver of one simulation share. Everything runs on the simulation's thread.
#[derive(Debug)]
struct Shared {
    nodes: BTreeMap<NodeId, NodeSlot>,
    faults: Faults<NodeId>,
}

/// One controller as the driver sees it.
#[derive(Debug, Default)]
struct NodeSlot {
    /// The running controller's Raft; `None` while crashed (or not started yet).
    raft: RefCell<Option<Raft>>,
    /// Runs of this node so far; a restart starts the next.
    runs: Cell<u32>,
    /// Every image the node published, as seen by its observer: (run, facts).
    history: RefCell<Vec<(u32, Facts)>>,
    latest: RefCell<Option<MetadataImage>>,
}

impl Shared {
    fn node(&self, id: NodeId) -> &NodeSlot {
        &self.nodes[&id]
    }

    fn raft(&self, id: NodeId) -> Option<Raft> {
        self.node(id).raft.borrow().clone()
    }

    fn running(&self) -> Vec<NodeId> {
        NODES
            .into_iter()
            .filter(|id| self.node(*id).raft.borrow().is_some())
            .collect()
    }
}

/// What an image says about the writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    /// Writes whose topic `w-n` exists.
    writes: BTreeSet<u64>,
    /// Registered brokers other than 0: must equal `writes` (a batch applies whole).
    brokers: BTreeSet<u64>,
    /// Broker 0's incarnation: the last write applied.
    last: Option<u64>,
}

impl Facts {
    fn of(image: &MetadataImage) -> Facts {
        Facts {
            writes: image
                .topics()
                .values()
                .filter_map(|topic| topic.name.strip_prefix("w-")?.parse().ok())
                .collect(),
            brokers: image
                .brokers()
                .keys()
                .filter(|id| **id != 0)
                .map(|id| *id as u64)
                .collect(),
            last: image.broker(0).map(|broker| broker.incarnation),
        }
    }
}

fn write_batch(n: u64) -> MetadataBatch {
    let mut topic_id = [0u8; 16];
    topic_id[0] = 0x51; // never the nil UUID
    topic_id[8..].copy_from_slice(&n.to_be_bytes());
    let record = |record| MetadataRecord { record: Some(record) };
    let register = |broker_id: u64, incarnation| {
        Record::RegisterBroker(RegisterBroker {
            broker_id: broker_id as i32,
            incarnation,
            listeners: Vec::new(),
            rack: None,
        })
    };
    MetadataBatch {
        records: vec![
            record(Record::Topic(TopicRecord {
                name: format!("w-{n}"),
                topic_id: topic_id.to_vec(),
            })),
            record(register(n, 1)),
            record(register(0, n)),
        ],
    }
}

fn run_seed(seed: u64, script: Script) -> Result<SeedStats, String> {
    let mut rng = Rng::new(seed);
    let latency_max = rng.millis(1, LATENCY_MAX_MS);
    // No random loss in the scripted scenarios: a lost segment stalls a simulated TCP connection until
    // keep-alive replaces it (about 2 s), which on the only link a leader has left is a real loss of quorum
    // and a legitimate election, not the fault under test.
    let fail_rate = if script == Script::Chaos && rng.chance(50) {
        rng.between(1, FAIL_RATE_MAX_PPM) as f64 / 1e6
    } else {
        0.0
    };
    let mut sim = builder(seed, TICK, SIM_DURATION_MAX, latency_max)
        .fail_rate(fail_rate)
        .build();

    let dirs = temp_dirs("strata-sim-", NODES.len())?;
    let shared = Rc::new(Shared {
        nodes: NODES.iter().map(|id| (*id, NodeSlot::default())).collect(),
        faults: Faults::new(TICK),
    });
    for (id, dir) in NODES.into_iter().zip(&dirs) {
        let shared = Rc::clone(&shared);
        let dir = dir.path().to_owned();
        sim.host(host_name(id), move || {
            run_controller(id, dir.clone(), Rc::clone(&shared))
        });
    }

    let log = Rc::new(EventLog::default());
    let result: Rc<RefCell<Option<Result<SeedStats, String>>>> = Rc::default();
    {
        let driver = Driver {
            script,
            shared: Rc::clone(&shared),
            rng: RefCell::new(rng),
            log: Rc::clone(&log),
            writes: Rc::default(),
            crashes: Cell::new(0),
        };
        let result = Rc::clone(&result);
        sim.client("driver", async move {
            let outcome = driver.run().await;
            *result.borrow_mut() = Some(outcome);
            Ok(())
        });
    }

    let installs = SnapshotInstalls::default();
    let _counting = tracing::subscriber::set_default(installs.clone());
    let stepped = step_until_done(&mut sim, &shared.faults, host_name, |id| {
        shared.node(id).raft.replace(None);
    });
    let simulated = sim.elapsed();
    // Stop every host (and its files) before the directories go.
    drop(sim);
    let outcome = match (stepped, result.take()) {
        (Ok(()), Some(outcome)) => outcome,
        (Ok(()), None) => Err("the driver ended without an outcome".into()),
        (Err(e), _) => Err(e),
    };
    if one_seed_asked() {
        eprintln!(
            "seed {seed}, latency 0..={latency_max:?}, fail rate {fail_rate}; events:\n{}",
            log.render()
        );
    }
    outcome
        .map(|stats| SeedStats {
            simulated,
            snapshots_installed: installs.0.load(Ordering::Relaxed),
            ..stats
        })
        .map_err(|e| {
            format!(
                "{e}\nlatency 0..={latency_max:?}, fail rate {fail_rate}; events:\n{}",
                log.render()
            )
        })
}

/// The software of one controller host: started at the beginning and again at each restart (bounce).
async fn run_controller(id: NodeId, dir: PathBuf, shared: Rc<Shared>) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
    let addr = SocketAddr::new(turmoil::lookup(host_name(id)), PORT);
    let controller = strata_controller::start_on(
        id,
        &dir,
        addr,
        accept(listener),
        Network::with_connect(id, simulated_channel),
        raft_config(),
        QuorumSettings::default(),
    )
    .await?;
    let slot = shared.node(id);
    let run = slot.runs.get() + 1;
    slot.runs.set(run);
    slot.raft.replace(Some(controller.raft().clone()));
    let mut images = controller.images();
    loop {
        let image = images.borrow_and_update().clone();
        slot.history.borrow_mut().push((run, Facts::of(&image)));
        slot.latest.replace(Some(image));
        if images.changed().await.is_err() {
            break;
        }
    }
    // The state machine stopped (its Raft failed): keep the controller as it is until the run ends.
    std::future::pending::<()>().await;
    drop(controller);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The driver: the scenario, the writes, and the checks.

/// What the driver knows of the writes.
#[derive(Debug, Default)]
struct Writes {
    /// The next write's number (writes start at 1; broker 0 is not a write).
    next: u64,
    /// Acknowledged writes and the log index each was committed at.
    acked: BTreeMap<u64, u64>,
    /// Writes whose fate is unknown (no answer in time, their node crashed, their entry discarded): they may
    /// or may not commit. Every other write that was not acknowledged was refused before being appended, or
    /// went to a cut-off leader, and must never commit.
    unknown: BTreeSet<u64>,
    /// Writes proposed to a leader cut off from the other two.
    isolated: BTreeSet<u64>,
    /// Whatever broke an invariant outside the driver's own flow (a late answer).
    violations: Vec<String>,
}

impl Writes {
    fn take_number(&mut self) -> u64 {
        self.next = self.next.max(1);
        let n = self.next;
        self.next += 1;
        n
    }

    fn ack(&mut self, n: u64, index: u64) -> Result<(), String> {
        if self.isolated.contains(&n) {
            return Err(format!(
                "write {n}, proposed to a cut-off leader, acknowledged at {index}"
            ));
        }
        match self.acked.insert(n, index) {
            None => Ok(()),
            Some(earlier) => Err(format!("write {n} acknowledged twice, at {earlier} and {index}")),
        }
    }
}

/// How one write attempt ended.
#[derive(Debug)]
enum Attempt {
    /// Committed and applied at this log index.
    Acked(u64),
    /// Refused before its entry was appended (not the leader, or its lease lapsed): safe to try again.
    Refused(Option<NodeId>),
    /// Anything else: it may or may not commit.
    Unknown(String),
}

async fn attempt(raft: &Raft, n: u64, timeout: Duration) -> Result<Attempt, String> {
    match tokio::time::timeout(timeout, raft.client_write(write_batch(n))).await {
        Err(_elapsed) => Ok(Attempt::Unknown(format!("no answer within {timeout:?}"))),
        Ok(Ok(written)) => match &written.response().outcome {
            Ok(()) => Ok(Attempt::Acked(written.log_id().index)),
            Err(e) => Err(format!("write {n} committed but replay refused it: {e}")),
        },
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            Ok(Attempt::Refused(forward.leader_id))
        }
        Ok(Err(e)) => Ok(Attempt::Unknown(e.to_string())),
    }
}

/// A link cut by the scenario, healed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// turmoil `hold`: messages wait on the link and arrive once it is released, as TCP retransmits.
    Hold,
    /// turmoil `partition`: messages are lost, and a TCP stream that lost one stays stalled for good (as a
    /// connection to a vanished peer would until the kernel gives up).
    Partition,
}

fn cut(a: NodeId, b: NodeId, how: Cut) {
    match how {
        Cut::Hold => turmoil::hold(host_name(a), host_name(b)),
        Cut::Partition => turmoil::partition(host_name(a), host_name(b)),
    }
}

/// Heals every link between controllers cut in one of the ways `kinds`.
fn heal(kinds: &[Cut]) {
    for (at, a) in NODES.iter().enumerate() {
        for b in &NODES[at + 1..] {
            if kinds.contains(&Cut::Hold) {
                // Delivers what was held.
                turmoil::release(host_name(*a), host_name(*b));
            }
            if kinds.contains(&Cut::Partition) {
                turmoil::repair(host_name(*a), host_name(*b));
            }
        }
    }
}

fn metrics(shared: &Shared, id: NodeId) -> Option<openraft::RaftMetrics<TypeConfig>> {
    shared.raft(id).map(|raft| raft.metrics().borrow_watched().clone())
}

/// The leader that one of `nodes` names, if it is one of them.
fn believed_leader(shared: &Shared, nodes: &[NodeId]) -> Option<NodeId> {
    nodes
        .iter()
        .filter_map(|id| metrics(shared, *id)?.current_leader)
        .find(|leader| nodes.contains(leader))
}

/// Proposes writes one after another through whichever node leads, `pause` apart, until `stop`; every
/// outcome is recorded.
async fn background_writer(
    shared: Rc<Shared>,
    writes: Rc<RefCell<Writes>>,
    log: Rc<EventLog>,
    pause: Duration,
    stop: Rc<Cell<bool>>,
) -> Result<(), String> {
    let mut n = writes.borrow_mut().take_number();
    let mut target: Option<NodeId> = None;
    let mut turn = 0;
    while !stop.get() {
        let running = shared.running();
        if running.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        turn += 1;
        let to = target
            .filter(|id| running.contains(id))
            .or_else(|| believed_leader(&shared, &running))
            .unwrap_or(running[turn % running.len()]);
        let Some(raft) = shared.raft(to) else { continue };
        match attempt(&raft, n, WRITE_TIMEOUT).await? {
            Attempt::Acked(index) => {
                writes.borrow_mut().ack(n, index)?;
                n = writes.borrow_mut().take_number();
                target = Some(to);
                // A pause between writes: the faults, not the write rate, are what this phase is about.
                tokio::time::sleep(pause).await;
            }
            Attempt::Refused(leader) => {
                target = leader;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Attempt::Unknown(why) => {
                log.note(format!("write {n} to {to}: unknown ({why})"));
                writes.borrow_mut().unknown.insert(n);
                n = writes.borrow_mut().take_number();
                target = None;
            }
        }
    }
    Ok(())
}

/// The scenario of one seed, run as turmoil's client.
struct Driver {
    script: Script,
    shared: Rc<Shared>,
    rng: RefCell<Rng>,
    log: Rc<EventLog>,
    writes: Rc<RefCell<Writes>>,
    crashes: Cell<usize>,
}

impl Driver {
    async fn run(self) -> Result<SeedStats, String> {
        let step_down = match self.script {
            Script::Chaos => {
                self.scenario().await?;
                None
            }
            Script::FollowerCutOff => {
                self.follower_cut_off().await?;
                None
            }
            Script::ActiveControllerCutOff => Some(self.active_controller_cut_off().await?),
        };
        self.check()?;
        let writes = self.writes.borrow();
        Ok(SeedStats {
            acked: writes.acked.len(),
            unknown: writes.unknown.len(),
            isolated: writes.isolated.len(),
            crashes: self.crashes.get(),
            snapshots_installed: 0,
            simulated: Duration::ZERO,
            step_down_max: step_down,
        })
    }

    fn rng(&self) -> RefMut<'_, Rng> {
        self.rng.borrow_mut()
    }

    fn metrics(&self, id: NodeId) -> Option<openraft::RaftMetrics<TypeConfig>> {
        metrics(&self.shared, id)
    }

    async fn scenario(&self) -> Result<(), String> {
        // 1. Start, initialize, elect, commit.
        self.start_cluster().await?;

        // 2. Cut the leader off from the other two.
        self.isolate_leader().await?;

        // 3. Crash and restart.
        self.crash_and_restart().await?;

        // 4. A random run of faults under a steady writer.
        self.chaos().await?;

        // 5. Heal everything; the cluster converges and commits.
        heal(&[Cut::Hold, Cut::Partition]);
        self.log.note("healing everything");
        for id in NODES {
            if self.shared.raft(id).is_none() {
                self.restart(id).await?;
            }
        }
        self.converged().await?;
        let count = self.rng().between(1, 3);
        self.write_acked(count, &NODES).await?;
        self.converged().await
    }

    /// Phase 1: every controller started, the cluster initialized on one of them, a leader agreed and a few
    /// writes committed.
    async fn start_cluster(&self) -> Result<(), String> {
        self.wait_until("all controllers started", || self.shared.running().len() == NODES.len())
            .await?;
        let first = self.rng().pick(&NODES);
        let members: BTreeMap<NodeId, ControllerNode> = NODES
            .iter()
            .map(|id| (*id, ControllerNode::new(format!("{}:{PORT}", host_name(*id)))))
            .collect();
        let raft = self.shared.raft(first).ok_or("not running")?;
        raft.initialize(members)
            .await
            .map_err(|e| format!("initialize on {first}: {e}"))?;
        self.log.note(format!("initialized on {first}"));
        let leader = self.agreed_leader(&NODES).await?;
        self.log.note(format!("leader {leader}"));
        let count = self.rng().between(2, 6);
        self.write_acked(count, &NODES).await
    }

    /// Phase 2: the leader loses both links. A write proposed to it never commits; the others elect a leader
    /// and commit; the old leader steps down while still cut off, and after the links return it follows and
    /// catches up.
    async fn isolate_leader(&self) -> Result<(), String> {
        let old = self.agreed_leader(&NODES).await?;
        let old_term = self.metrics(old).map(|m| m.current_term).unwrap_or_default();
        let others: Vec<NodeId> = NODES.into_iter().filter(|id| *id != old).collect();
        let how = if self.rng().chance(50) {
            Cut::Hold
        } else {
            Cut::Partition
        };
        for other in &others {
            cut(old, *other, how);
        }
        self.log.note(format!(
            "leader {old} (term {old_term}) cut off from {others:?} ({how:?})"
        ));

        // A write taken while the old leader still holds its lease: appended there, never committed.
        let raft = self.shared.raft(old).ok_or("not running")?;
        let n = self.take_isolated();
        self.log.note(format!("write {n} proposed to cut-off leader {old}"));
        let stranded = tokio::task::spawn_local({
            let (raft, writes, log) = (raft.clone(), Rc::clone(&self.writes), Rc::clone(&self.log));
            async move {
                match attempt(&raft, n, LIVENESS_DEADLINE).await {
                    Ok(Attempt::Acked(index)) => writes
                        .borrow_mut()
                        .violations
                        .push(format!("cut-off leader {old} acknowledged write {n} at {index}")),
                    outcome => log.note(format!("answer to write {n} from cut-off leader {old}: {outcome:?}")),
                }
            }
        });

        let new = self.agreed_leader(&others).await?;
        self.log.note(format!("new leader {new} among {others:?}"));
        let count = self.rng().between(1, 5);
        self.write_acked(count, &others).await?;

        // Later, the old leader refuses writes (its lease lapsed) or takes them and cannot commit them.
        let n = self.take_isolated();
        match attempt(&raft, n, WRITE_TIMEOUT).await? {
            Attempt::Acked(index) => {
                return Err(format!("write {n} acknowledged at {index} by cut-off leader {old}"));
            }
            outcome => self.log.note(format!("write {n} to cut-off leader {old}: {outcome:?}")),
        }

        // Check-quorum: cut off from both, it stops leading before the links return, in its own term.
        self.wait_until("the cut-off leader steps down while cut off", || {
            self.metrics(old)
                .is_some_and(|m| m.state != ServerState::Leader && m.current_term == old_term)
        })
        .await?;

        heal(&[how]);
        self.log.note("links healed");
        self.wait_until("the old leader steps down", || {
            self.metrics(old)
                .is_some_and(|m| m.state != ServerState::Leader || m.current_term > old_term)
        })
        .await?;
        self.converged().await?;
        // Its first write's entry was discarded when it took the new leader's log: it has answered by now.
        self.wait_until("the cut-off leader answers its first write", || stranded.is_finished())
            .await
    }

    /// Scripted: one follower cut off from both peers for [`FOLLOWER_CUT_OFF`]. Its election timer fires
    /// over and over, but its pre-votes find no majority, so it never raises its term. The other two keep
    /// their active controller and term and take writes all along; after healing the follower follows the
    /// same controller in the same term, and nothing is re-elected.
    async fn follower_cut_off(&self) -> Result<(), String> {
        self.start_cluster().await?;
        let leader = self.agreed_leader(&NODES).await?;
        let term = self.term(leader)?;
        let followers: Vec<NodeId> = NODES.into_iter().filter(|id| *id != leader).collect();
        let cut_off = self.rng().pick(&followers);
        let quorum: Vec<NodeId> = NODES.into_iter().filter(|id| *id != cut_off).collect();
        let how = self.cut_kind();
        for other in &quorum {
            cut(cut_off, *other, how);
        }
        self.log.note(format!(
            "follower {cut_off} cut off ({how:?}) from leader {leader} (term {term})"
        ));

        let steady = || self.leads_in(leader, term, &quorum);
        let until = tokio::time::Instant::now() + FOLLOWER_CUT_OFF;
        while tokio::time::Instant::now() < until {
            self.holds_for(
                &format!("leader {leader} in term {term} over {quorum:?}"),
                Duration::from_secs(2),
                steady,
            )
            .await?;
            self.write_acked(1, &quorum).await?;
        }
        let cut_off_term = self.term(cut_off)?;
        if cut_off_term != term {
            return Err(format!(
                "cut-off follower {cut_off} raised its term from {term} to {cut_off_term}"
            ));
        }

        heal(&[how]);
        self.log.note(format!("follower {cut_off} back"));
        self.converged().await?;
        let all_steady = || self.leads_in(leader, term, &NODES);
        if !all_steady() {
            return Err(format!(
                "after follower {cut_off} returned, leader {leader} in term {term} is not what all three see\n{}",
                self.status()
            ));
        }
        self.holds_for(
            &format!("leader {leader} in term {term} over all three"),
            STEADY_WATCH,
            all_steady,
        )
        .await?;
        self.write_acked(1, &NODES).await?;
        self.converged().await
    }

    /// Scripted: the active controller cut off from both peers. Within [`STEP_DOWN_BOUND`] it is no longer
    /// leader, in the same term (check-quorum); the other two elect a leader and commit; the cut-off one
    /// stays a follower without raising its term (pre-vote); after healing it follows the new leader, which
    /// stays the only leader, in its term. Answers how long the step-down took.
    async fn active_controller_cut_off(&self) -> Result<Duration, String> {
        self.start_cluster().await?;
        let old = self.agreed_leader(&NODES).await?;
        let old_term = self.term(old)?;
        let others: Vec<NodeId> = NODES.into_iter().filter(|id| *id != old).collect();
        let how = self.cut_kind();
        for other in &others {
            cut(old, *other, how);
        }
        let cut_at = tokio::time::Instant::now();
        self.log.note(format!(
            "active controller {old} (term {old_term}) cut off from {others:?} ({how:?})"
        ));

        self.wait_within(&format!("cut-off controller {old} steps down"), STEP_DOWN_BOUND, || {
            self.metrics(old)
                .is_some_and(|m| m.state != ServerState::Leader && m.current_leader != Some(old))
        })
        .await?;
        let step_down = cut_at.elapsed();
        let term = self.term(old)?;
        self.log.note(format!(
            "controller {old} stepped down after {step_down:?}, in term {term}"
        ));
        if term != old_term {
            return Err(format!(
                "controller {old} stepped down from term {old_term} into term {term}"
            ));
        }

        let new = self.agreed_leader(&others).await?;
        let new_term = self.term(new)?;
        self.log
            .note(format!("new leader {new} (term {new_term}) among {others:?}"));
        let count = self.rng().between(1, 3);
        self.write_acked(count, &others).await?;
        self.holds_for(
            &format!("cut-off controller {old} stays a follower in term {old_term}"),
            STEADY_WATCH,
            || {
                self.metrics(old)
                    .is_some_and(|m| m.state != ServerState::Leader && m.current_term == old_term)
            },
        )
        .await?;

        heal(&[how]);
        self.log.note(format!("controller {old} back"));
        self.converged().await?;
        let all_steady = || self.leads_in(new, new_term, &NODES) && self.leaders() == [new];
        if !all_steady() {
            return Err(format!(
                "after controller {old} returned, leader {new} in term {new_term} is not the only one all three see\n{}",
                self.status()
            ));
        }
        self.holds_for(
            &format!("leader {new} in term {new_term}, the only one"),
            STEADY_WATCH,
            all_steady,
        )
        .await?;
        self.write_acked(1, &NODES).await?;
        self.converged().await?;
        Ok(step_down)
    }

    fn cut_kind(&self) -> Cut {
        if self.rng().chance(50) {
            Cut::Hold
        } else {
            Cut::Partition
        }
    }

    fn term(&self, id: NodeId) -> Result<u64, String> {
        self.metrics(id)
            .map(|m| m.current_term)
            .ok_or_else(|| format!("controller {id} is not running"))
    }

    /// Whether `leader` leads in `term` and every one of `nodes` follows it in that term.
    fn leads_in(&self, leader: NodeId, term: u64, nodes: &[NodeId]) -> bool {
        nodes.iter().all(|id| {
            self.metrics(*id).is_some_and(|m| {
                m.current_term == term
                    && m.current_leader == Some(leader)
                    && (m.state == ServerState::Leader) == (*id == leader)
            })
        })
    }

    /// The controllers that are Raft leaders now.
    fn leaders(&self) -> Vec<NodeId> {
        NODES
            .into_iter()
            .filter(|id| self.metrics(*id).is_some_and(|m| m.state == ServerState::Leader))
            .collect()
    }

    fn take_isolated(&self) -> u64 {
        let mut writes = self.writes.borrow_mut();
        let n = writes.take_number();
        writes.isolated.insert(n);
        n
    }

    /// Phase 3: crash one follower, the leader, two nodes or all three, and restart them from their files.
    async fn crash_and_restart(&self) -> Result<(), String> {
        let leader = self.agreed_leader(&NODES).await?;
        let followers: Vec<NodeId> = NODES.into_iter().filter(|id| *id != leader).collect();
        let kind = self.rng().between(0, 3);
        let with_leader = self.rng().chance(50);
        let follower = self.rng().pick(&followers);
        let victims: Vec<NodeId> = match kind {
            0 => vec![follower],
            1 => vec![leader],
            2 if with_leader => vec![leader, follower],
            2 => followers.clone(),
            _ => NODES.to_vec(),
        };
        for id in &victims {
            self.crash(*id).await;
        }
        let survivors = self.shared.running();
        if survivors.len() >= 2 {
            // A majority is left: it elects (or keeps) a leader and commits, often enough that the log is
            // purged past where the crashed node's ends, so that it catches up by a snapshot.
            self.agreed_leader(&survivors).await?;
            let count = self.rng().between(2, 3 * SNAPSHOT_EVERY_ENTRIES / 2);
            self.write_acked(count, &survivors).await?;
        } else if let Some(survivor) = survivors.first() {
            // Alone, a node commits nothing: a write to it is refused or not answered.
            let n = self.writes.borrow_mut().take_number();
            let raft = self.shared.raft(*survivor).ok_or("not running")?;
            match attempt(&raft, n, WRITE_TIMEOUT).await? {
                Attempt::Acked(index) => {
                    return Err(format!("write {n} acknowledged at {index} by {survivor} alone"));
                }
                Attempt::Refused(_) => self.log.note(format!("write {n} to lone {survivor}: refused")),
                Attempt::Unknown(why) => {
                    // Appended on a leader that lost its followers: it commits if they come back in time.
                    self.writes.borrow_mut().unknown.insert(n);
                    self.log.note(format!("write {n} to lone {survivor}: unknown ({why})"));
                }
            }
        }
        let pause = self.rng().millis(0, 1500);
        tokio::time::sleep(pause).await;
        for id in victims {
            self.restart(id).await?;
        }
        self.converged().await
    }

    /// Phase 4: faults at random moments while a writer keeps proposing.
    async fn chaos(&self) -> Result<(), String> {
        let stop = Rc::new(Cell::new(false));
        let write_pause = self.rng().millis(20, 200);
        let writer = tokio::task::spawn_local(background_writer(
            Rc::clone(&self.shared),
            Rc::clone(&self.writes),
            Rc::clone(&self.log),
            write_pause,
            Rc::clone(&stop),
        ));
        let events = self.rng().between(2, 5);
        for _ in 0..events {
            let pause = self.rng().millis(50, 600);
            tokio::time::sleep(pause).await;
            let running = self.shared.running();
            let down: Vec<NodeId> = NODES.into_iter().filter(|id| !running.contains(id)).collect();
            let event = self.rng().between(0, 4);
            match event {
                0 | 1 => {
                    let node = self.rng().pick(&NODES);
                    let how = if self.rng().chance(50) {
                        Cut::Hold
                    } else {
                        Cut::Partition
                    };
                    for other in NODES.into_iter().filter(|other| *other != node) {
                        cut(node, other, how);
                    }
                    self.log.note(format!("chaos: {node} cut off ({how:?})"));
                }
                2 => {
                    heal(&[Cut::Hold, Cut::Partition]);
                    self.log.note("chaos: links healed");
                }
                3 if !running.is_empty() => {
                    let node = self.rng().pick(&running);
                    self.crash(node).await;
                }
                _ if !down.is_empty() => {
                    let node = self.rng().pick(&down);
                    self.restart(node).await?;
                }
                _ => {}
            }
        }
        stop.set(true);
        // The writer ends after its current attempt, which the write timeout bounds.
        writer.await.map_err(|e| format!("writer: {e}"))??;
        self.log.note("chaos over");
        Ok(())
    }

    /// Proposes `count` writes through the leader of `nodes`, each until acknowledged. A write whose fate is
    /// unknown (the leader changed under it) is recorded as such and followed by a fresh one.
    async fn write_acked(&self, count: u64, nodes: &[NodeId]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + LIVENESS_DEADLINE;
        let mut acked = 0;
        let mut n = self.writes.borrow_mut().take_number();
        let mut target = believed_leader(&self.shared, nodes).unwrap_or(nodes[0]);
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "liveness: {count} writes through {nodes:?} not acknowledged within {LIVENESS_DEADLINE:?}"
                ));
            }
            let Some(raft) = self.shared.raft(target) else {
                target = self.rng().pick(nodes);
                continue;
            };
            match attempt(&raft, n, WRITE_TIMEOUT).await? {
                Attempt::Acked(index) => {
                    self.writes.borrow_mut().ack(n, index)?;
                    acked += 1;
                    if acked == count {
                        return Ok(());
                    }
                    n = self.writes.borrow_mut().take_number();
                }
                Attempt::Refused(leader) => {
                    target = leader
                        .filter(|id| nodes.contains(id))
                        .unwrap_or_else(|| self.rng().pick(nodes));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Attempt::Unknown(why) => {
                    self.writes.borrow_mut().unknown.insert(n);
                    self.log.note(format!("write {n} to {target}: unknown ({why})"));
                    n = self.writes.borrow_mut().take_number();
                }
            }
        }
    }

    async fn crash(&self, id: NodeId) {
        self.shared.faults.apply(Fault::Crash(id)).await;
        self.crashes.set(self.crashes.get() + 1);
        self.log.note(format!("crashed {id}"));
    }

    async fn restart(&self, id: NodeId) -> Result<(), String> {
        let runs = self.shared.node(id).runs.get();
        self.shared.faults.apply(Fault::Restart(id)).await;
        self.wait_until("a restarted controller runs", || self.shared.node(id).runs.get() > runs)
            .await?;
        let last_log = self.metrics(id).and_then(|m| m.last_log_index);
        self.log.note(format!("restarted {id}: its log ends at {last_log:?}"));
        Ok(())
    }

    /// Waits until every node of `nodes` names the same leader, one of `nodes`, and that leader has committed
    /// an entry of its own term (so it takes writes); returns it.
    async fn agreed_leader(&self, nodes: &[NodeId]) -> Result<NodeId, String> {
        let mut found = None;
        self.wait_until(&format!("a leader agreed by {nodes:?}"), || {
            found = self.agreement(nodes);
            found.is_some()
        })
        .await?;
        found.ok_or_else(|| "no leader".into())
    }

    fn agreement(&self, nodes: &[NodeId]) -> Option<NodeId> {
        let metrics: Vec<_> = nodes.iter().map(|id| self.metrics(*id)).collect::<Option<_>>()?;
        let leader = metrics.first()?.current_leader?;
        let of_leader = metrics.iter().find(|m| m.id == leader)?;
        let agreed = metrics.iter().all(|m| m.current_leader == Some(leader))
            && of_leader.state == ServerState::Leader
            && of_leader
                .cluster_committed
                .is_some_and(|c| c.leader_id.term == of_leader.current_term);
        agreed.then_some(leader)
    }

    /// Waits until all three agree on a leader and have applied what it has applied, with equal images.
    async fn converged(&self) -> Result<(), String> {
        self.wait_until("all three converge", || {
            let Some(leader) = self.agreement(&NODES) else {
                return false;
            };
            let Some(applied) = self.metrics(leader).and_then(|m| m.last_applied) else {
                return false;
            };
            let images: Vec<Option<MetadataImage>> = NODES
                .iter()
                .map(|id| self.shared.node(*id).latest.borrow().clone())
                .collect();
            NODES
                .iter()
                .all(|id| self.metrics(*id).is_some_and(|m| m.last_applied == Some(applied)))
                && images.windows(2).all(|pair| pair[0] == pair[1])
        })
        .await?;
        self.log.note("converged");
        Ok(())
    }

    /// Polls `condition` every 10 ms of simulated time until it holds, or fails at the liveness deadline.
    async fn wait_until(&self, what: &str, condition: impl FnMut() -> bool) -> Result<(), String> {
        self.wait_within(what, LIVENESS_DEADLINE, condition).await
    }

    /// Polls `condition` every 10 ms of simulated time until it holds, or fails once `within` has passed.
    async fn wait_within(
        &self,
        what: &str,
        within: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        while !condition() {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "liveness: {what}: not within {within:?} (simulated)\n{}",
                    self.status()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Checks `condition` every 10 ms of simulated time for `during`, failing at the first time it does not
    /// hold.
    async fn holds_for(&self, what: &str, during: Duration, mut condition: impl FnMut() -> bool) -> Result<(), String> {
        let until = tokio::time::Instant::now() + during;
        while tokio::time::Instant::now() < until {
            if !condition() {
                return Err(format!("{what}: no longer holds\n{}", self.status()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Each controller's Raft state, for a failure message.
    fn status(&self) -> String {
        NODES
            .iter()
            .map(|id| match self.metrics(*id) {
                None => format!("controller {id}: down"),
                Some(m) => format!(
                    "controller {id}: {:?}, term {}, leader {:?}, last log {:?}, committed {:?}, applied {:?}, \
                     purged {:?}",
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.local_committed.map(|c| c.index),
                    m.last_applied.map(|c| c.index),
                    m.purged.map(|c| c.index),
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The invariants, over the writes' outcomes and every image every node showed.
    fn check(&self) -> Result<(), String> {
        let writes = self.writes.borrow();
        if let Some(violation) = writes.violations.first() {
            return Err(violation.clone());
        }

        // Acknowledged writes were committed in the order they were proposed.
        for ((m, before), (n, index)) in writes.acked.iter().zip(writes.acked.iter().skip(1)) {
            if index <= before {
                return Err(format!(
                    "write {n} acknowledged at index {index}, write {m} before it at {before}"
                ));
            }
        }

        for id in NODES {
            let slot = self.shared.node(id);
            let history = slot.history.borrow();
            for (run, facts) in history.iter() {
                check_image(&writes, facts).map_err(|e| format!("controller {id}, run {run}: {e}"))?;
            }
            // Images only grow: within a run, and from before a crash to the first image after the restart.
            for ((run_before, before), (run, after)) in history.iter().zip(history.iter().skip(1)) {
                if !before.writes.is_subset(&after.writes) {
                    let lost: Vec<_> = before.writes.difference(&after.writes).collect();
                    let when = if run_before == run {
                        "within a run"
                    } else {
                        "across a restart"
                    };
                    return Err(format!("controller {id} lost writes {lost:?} {when} (run {run})"));
                }
            }
            if let Some(m) = self.metrics(id)
                && let Err(e) = &m.running_state
            {
                return Err(format!("controller {id} stopped: {e}"));
            }
        }

        // Agreement, and every image is the committed writes replayed in order.
        let images: Vec<MetadataImage> = NODES
            .iter()
            .map(|id| {
                self.shared
                    .node(*id)
                    .latest
                    .borrow()
                    .clone()
                    .ok_or(format!("controller {id}: no image"))
            })
            .collect::<Result<_, _>>()?;
        let committed = Facts::of(&images[0]).writes;
        let expected = committed.iter().try_fold(MetadataImage::empty(), |image, n| {
            image
                .replay_batch(&write_batch(*n))
                .map_err(|e| format!("replaying write {n}: {e}"))
        })?;
        for (id, image) in NODES.iter().zip(&images) {
            if *image != expected {
                return Err(format!(
                    "controller {id}'s final image is not the committed writes {committed:?} replayed in order: \
                     it holds {:?}",
                    Facts::of(image)
                ));
            }
        }
        let applied: BTreeSet<_> = NODES
            .iter()
            .map(|id| self.metrics(*id).and_then(|m| m.last_applied))
            .collect();
        if applied.len() != 1 {
            return Err(format!("controllers end at different applied log ids: {applied:?}"));
        }
        Ok(())
    }
}

/// The invariants of one image: a batch applies whole; broker 0 names the last write, the largest; no write
/// that was refused or went to a cut-off leader; no acknowledged write missing below a present one.
fn check_image(writes: &Writes, facts: &Facts) -> Result<(), String> {
    if facts.brokers != facts.writes {
        return Err(format!(
            "a batch applied in part: topics {:?}, brokers {:?}",
            facts.writes, facts.brokers
        ));
    }
    if facts.last != facts.writes.last().copied() {
        return Err(format!(
            "writes {:?} applied out of order: the last applied is {:?}",
            facts.writes, facts.last
        ));
    }
    if let Some(n) = facts
        .writes
        .iter()
        .find(|n| !writes.acked.contains_key(n) && !writes.unknown.contains(n))
    {
        let why = if writes.isolated.contains(n) {
            "proposed to a cut-off leader"
        } else {
            "refused or never proposed"
        };
        return Err(format!("write {n} applied, but it was {why}"));
    }
    if let Some(&top) = facts.writes.last()
        && let Some(n) = writes
            .acked
            .keys()
            .take_while(|n| **n < top)
            .find(|n| !facts.writes.contains(n))
    {
        return Err(format!("acknowledged write {n} missing while write {top} is applied"));
    }
    Ok(())
}

/// Counts the snapshots controllers install from a leader, from the state machine's log event: a tracing
/// subscriber interested in that event only, so that every other callsite stays disabled.
#[derive(Debug, Clone, Default)]
struct SnapshotInstalls(Arc<AtomicUsize>);

impl SnapshotInstalls {
    const TARGET: &str = "strata_controller::state_machine";
    const MESSAGE: &str = "metadata snapshot installed";

    fn wanted(metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target() == Self::TARGET && *metadata.level() == tracing::Level::INFO
    }
}

impl tracing::Subscriber for SnapshotInstalls {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if Self::wanted(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        Self::wanted(metadata)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}") == SnapshotInstalls::MESSAGE {
                    self.0 = true;
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
