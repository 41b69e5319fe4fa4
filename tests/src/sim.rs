//! The harness the turmoil simulations share (`tests/controller_quorum.rs`, the controller quorum alone;
//! `tests/replication.rs`, whole clusters): which seeds run, the seeded choices of a scenario, its event
//! log, the turmoil builder and the temporary directories of its hosts, the faults only the stepping loop
//! can apply, and tonic over turmoil's simulated TCP.
//!
//! It owns nothing about what a simulation runs or checks: the hosts, the driver's scenario and the
//! invariants stay in each test, as do its constants (tick, deadlines, default seed count), which differ
//! with what it simulates.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::Duration;

use futures_util::Stream;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use strata_controller::network::Accepted;

/// The seeds to run: only `STRATA_SIM_SEED` when it is set; otherwise `found` (seeds that once broke an
/// invariant) and then `0..STRATA_SIM_SEEDS`, `0..default_count` when that is not set either.
pub fn seeds(found: &[u64], default_count: u64) -> Vec<u64> {
    match std::env::var("STRATA_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("STRATA_SIM_SEED is a u64")],
        Err(_) => {
            let count = std::env::var("STRATA_SIM_SEEDS")
                .map(|count| count.parse().expect("STRATA_SIM_SEEDS is a count"))
                .unwrap_or(default_count);
            found.iter().copied().chain(0..count).collect()
        }
    }
}

/// Whether one seed was asked for (`STRATA_SIM_SEED`): its event log is then printed even when it passes.
pub fn one_seed_asked() -> bool {
    std::env::var("STRATA_SIM_SEED").is_ok()
}

/// SplitMix64: the scenario's own seeded choices (turmoil has its own generator, seeded with the same seed).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Uniform in `low..=high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }
}

/// The scenario's events with their simulated times, printed when a seed fails.
#[derive(Debug, Default)]
pub struct EventLog(RefCell<Vec<String>>);

impl EventLog {
    pub fn note(&self, event: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.0
            .borrow_mut()
            .push(format!("{:>8.3}s  {}", at.as_secs_f64(), event.into()));
    }

    pub fn render(&self) -> String {
        self.0.borrow().join("\n")
    }
}

/// A turmoil simulation for `seed`: its network randomness drawn from the seed, stepping by `tick`, failing
/// once `duration_max` of simulated time has passed, each message delayed by up to `latency_max`. The caller
/// may set more (message loss) before building it.
///
/// From the first simulation on, the process runs blocking file work inline
/// ([`strata_protocol::blocking::run_inline`]): on another thread it would take simulated time as long as the
/// machine needs in real time, so a loaded machine would stretch an fsync into seconds of simulated silence
/// and a seed would not replay.
pub fn builder(seed: u64, tick: Duration, duration_max: Duration, latency_max: Duration) -> turmoil::Builder {
    strata_protocol::blocking::run_inline();
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .tick_duration(tick)
        .simulation_duration(duration_max)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(latency_max);
    builder
}

/// One directory per host, `count` of them, each as [`temp_dir`] makes it.
pub fn temp_dirs(prefix: &str, count: usize) -> Result<Vec<TempDir>, String> {
    (0..count).map(|_| temp_dir(prefix)).collect()
}

/// A directory for one host's files, named `<prefix>…`, on tmpfs where there is one: the controller's log
/// store fsyncs on every append, which costs milliseconds on a disk and nothing on tmpfs.
pub fn temp_dir(prefix: &str) -> Result<TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new().prefix(prefix).tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix(prefix).tempdir()
    };
    dir.map_err(|e| format!("temporary directory: {e}"))
}

/// A fault only the simulation itself can apply (`Sim::crash` and `Sim::bounce` need it mutably): the driver
/// asks ([`Faults::apply`]), the stepping loop applies ([`step_until_done`]) after the current step.
#[derive(Debug, Clone, Copy)]
pub enum Fault<Id> {
    Crash(Id),
    Restart(Id),
}

/// The faults the driver asked for and the stepping loop has not applied yet. Everything runs on the
/// simulation's thread, hence the cells.
#[derive(Debug)]
pub struct Faults<Id> {
    pending: RefCell<Vec<Fault<Id>>>,
    asked: Cell<u64>,
    applied: Cell<u64>,
    /// How often [`Faults::apply`] looks whether its fault was applied: the simulation's step.
    tick: Duration,
}

impl<Id: Copy> Faults<Id> {
    /// No fault yet, in a simulation stepping by `tick`.
    pub fn new(tick: Duration) -> Self {
        Self {
            pending: RefCell::default(),
            asked: Cell::new(0),
            applied: Cell::new(0),
            tick,
        }
    }

    /// Asks for `fault` and returns once the stepping loop applied it.
    pub async fn apply(&self, fault: Fault<Id>) {
        self.pending.borrow_mut().push(fault);
        let asked = self.asked.get() + 1;
        self.asked.set(asked);
        while self.applied.get() < asked {
            tokio::time::sleep(self.tick).await;
        }
    }
}

/// Steps `sim` until its clients are done, applying the faults asked for after each step: a crash
/// (`on_crash` runs just after it) or a restart (a bounce) of the host `host_name` names. An error if the
/// simulation stops (a host failed, or the simulated duration ran out).
pub fn step_until_done<Id: Copy>(
    sim: &mut turmoil::Sim<'_>,
    faults: &Faults<Id>,
    host_name: impl Fn(Id) -> String,
    mut on_crash: impl FnMut(Id),
) -> Result<(), String> {
    loop {
        match sim.step() {
            Ok(done) => {
                for fault in faults.pending.take() {
                    match fault {
                        Fault::Crash(id) => {
                            sim.crash(host_name(id));
                            on_crash(id);
                        }
                        Fault::Restart(id) => sim.bounce(host_name(id)),
                    }
                    faults.applied.set(faults.applied.get() + 1);
                }
                if done {
                    return Ok(());
                }
            }
            Err(e) => return Err(format!("simulation stopped: {e}")),
        }
    }
}

/// A peer's gRPC channel over simulated TCP: tonic's own connection handling (lazy connect, connect timeout,
/// reconnect) over a turmoil stream instead of a socket.
pub fn simulated_channel(endpoint: &Endpoint) -> Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(|uri: Uri| async move {
        let authority = uri
            .authority()
            .ok_or_else(|| io::Error::other("peer URI has no authority"))?;
        let stream = turmoil::net::TcpStream::connect(authority.as_str()).await?;
        Ok::<_, io::Error>(TokioIo::new(stream))
    }))
}

/// The connections a simulated listener accepts, as tonic's server (`strata_controller::start_on`) takes
/// them.
pub fn accept(
    listener: turmoil::net::TcpListener,
) -> impl Stream<Item = io::Result<Accepted<turmoil::net::TcpStream>>> + Send + 'static {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| Accepted(stream));
        Some((accepted, listener))
    })
}
