//! SIGKILL crash test of the partition log.
//!
//! A child process (this test binary run again, running only [`crash_child_process`]) appends batches to a
//! log, flushes every few appends, and reports each step on stdout. The parent SIGKILLs it at a point chosen
//! by a seeded PRNG, while it is still appending, reopens the log as after an unclean stop, and checks that
//!
//! - every batch the child reported flushed is present at its offset, byte for byte;
//! - the log holds whole batches only, each passing validation (CRC included), with contiguous offsets from 0
//!   to the log end offset;
//! - whatever survived past the flushed point is exactly what the child was writing, in order: batches it
//!   reported appended, and at most the one it was appending when it was killed;
//! - the leader-epoch cache (each round appends with a new epoch) holds exactly the first batch of each
//!   epoch that survived, read from its checkpoint rather than rebuilt: the log writes a new epoch's entry
//!   before the batch that starts it, and opening drops entries past what recovery kept.
//!
//! Rounds repeat on the same directory, each child continuing from what the previous recovery left. A second
//! test also closes the recovered log cleanly after each round and reopens it as after a clean shutdown, which
//! loads the files as recovery and close left them instead of scanning them again.
//!
//! Every batch is a pure function of the seed, its position in the log (`seq`) and the round (child process)
//! that wrote it. So the parent regenerates the exact bytes every batch must have, and when a batch is lost
//! at the tail and the next child writes a different one at the same position, the two differ: a stale batch
//! can never pass for the new one.
//!
//! Replaying: each test prints its seed (libtest shows it when the test fails); `STRATA_CRASH_SEED=<seed>`
//! reruns with the same batches and the same kill points, counted in reports. Where exactly in the child's
//! code a kill lands still depends on scheduling.

use std::convert::Infallible;
use std::env;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_storage::batch::build::{self, Record};
use strata_storage::batch::{self, BatchHeader};
use strata_storage::{HandleCache, Log, LogConfig, OpenState, ReadLimits, RecoveryReport};

/// The child's test function; `--exact` makes libtest run only it.
const CHILD_TEST: &str = "crash_child_process";
/// Set only for a child: the log directory. Without it [`crash_child_process`] does nothing.
const CHILD_DIR_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "STRATA_CRASH_CHILD_SEED";
const CHILD_ROUND_ENV: &str = "STRATA_CRASH_CHILD_ROUND";
/// The `seq` of the first batch the child appends: the number of batches the parent's recovery left.
const CHILD_FIRST_SEQ_ENV: &str = "STRATA_CRASH_CHILD_FIRST_SEQ";
/// Replaces the random seed, to replay a failure.
const SEED_ENV: &str = "STRATA_CRASH_SEED";
/// Marks the child's reports among libtest's own lines on the same stdout.
const REPORT_TAG: &str = "strata-crash-report:";
/// How long the child may stay silent before the parent gives up. Generous: a debug build on a busy
/// machine may wait long on an fsync.
const CHILD_SILENCE_MAX: Duration = Duration::from_secs(20);

/// Rounds of the main test, and of the clean-close test (which also closes and reopens after each).
const ROUNDS: u64 = 30;
const CLEAN_CLOSE_ROUNDS: u64 = 8;
/// A kill comes after 1 to this many reported flushes.
const FLUSHES_BEFORE_KILL_MAX: u64 = 25;
/// Small, so that both processes keep evicting and reopening descriptors and index maps.
const HANDLES_MAX: usize = 64;
/// Batch timestamps start here: fixed rather than "now", so that the parent can regenerate them.
const BASE_TIMESTAMP: i64 = 1_750_000_000_000;
/// One batch in `LARGE_ONE_IN` has a record of `LARGE_VALUE_BYTES`: its write takes long enough that a kill
/// aimed at it can tear it (the kernel stops copying a write at a page boundary once SIGKILL is pending).
const LARGE_ONE_IN: u64 = 8;
const LARGE_VALUE_BYTES: (u64, u64) = (128 << 10, 960 << 10);

/// Separate random streams derived from one seed.
const STREAM_BATCH: u64 = 1;
const STREAM_FLUSH_CADENCE: u64 = 2;
const STREAM_KILL_POINTS: u64 = 3;

/// How both processes open the log: as after a crash, with no checkpoint, so every segment is recovered.
const UNCLEAN: OpenState = OpenState {
    recovery_point: 0,
    log_start_offset: 0,
    clean_shutdown: false,
};

fn crash_config() -> LogConfig {
    let mut config = LogConfig::default();
    let settings = [
        // 4 MiB: a roll every 50 to 60 batches, about one per round, so that kills also land in rolls and in
        // fresh segments. Several times the largest batch, so that most large appends do not roll (and fsync)
        // first and a kill aimed at one lands in its write. (With 1 MiB, tears were rarer and the test slower:
        // every open fsyncs every segment.)
        ("segment.bytes", "4194304"),
        // Dense offset index entries, so that recovery rebuilds real indexes and reads by offset use them.
        ("index.interval.bytes", "1024"),
        // 100 years: batch timestamps are synthetic and old, and must not make every append roll by age.
        ("segment.ms", "3153600000000"),
    ];
    for (key, value) in settings {
        config.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    config
}

fn open_log(dir: &Path, state: OpenState) -> Result<(Log, RecoveryReport), strata_storage::Error> {
    Log::open(dir, crash_config(), HandleCache::new(HANDLES_MAX), state)
}

/// Leader epochs differ per round, so that the epoch the log stamps is checked too.
fn leader_epoch(round: u64) -> i32 {
    i32::try_from(round + 1).expect("few rounds")
}

// ---------------------------------------------------------------------------------------------------------
// The workload, shared by both processes.

/// One batch written by the child: `seq` is its position in the log (0 for the first batch), `round` the
/// child process that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchId {
    round: u64,
    seq: u64,
}

/// The batch `id` as a client sends it: 1 to 20 records of up to 200 bytes (a few without a value), and now
/// and then one large record (see [`LARGE_ONE_IN`]).
fn client_batch(seed: u64, id: BatchId) -> Vec<u8> {
    let mut rng = Rng::new(mix(&[STREAM_BATCH, seed, id.round, id.seq]));
    let count = rng.range(1, 20) as usize;
    let large = rng.below(LARGE_ONE_IN) == 0;
    let keys: Vec<String> = (0..count).map(|i| format!("r{}-s{}-{i}", id.round, id.seq)).collect();
    let values: Vec<Option<Vec<u8>>> = (0..count)
        .map(|i| {
            let len = match (large && i == 0, rng.below(10)) {
                (true, _) => rng.range(LARGE_VALUE_BYTES.0, LARGE_VALUE_BYTES.1),
                (false, 0) => return None,
                (false, _) => rng.below(201),
            };
            Some(rng.bytes(len as usize))
        })
        .collect();
    let records: Vec<Record<'_>> = (0..count)
        .map(|i| Record {
            key: Some(keys[i].as_bytes()),
            value: values[i].as_deref(),
            // Not monotonic within a batch, as with real producers.
            timestamp: BASE_TIMESTAMP + id.seq as i64 * 1000 + rng.below(2000) as i64,
            headers: &[],
        })
        .collect();
    build::batch(&records)
}

// ---------------------------------------------------------------------------------------------------------
// The child.

/// What the child reports, one line each, in the order it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// `Log::open` returned (after recovering the log) with this log end offset.
    Opened { log_end_offset: u64 },
    /// `Log::append` of batch `seq`, of `bytes` bytes, is about to start: from here until `Appended`, the
    /// batch may be in the log in part.
    Appending { seq: u64, bytes: u64 },
    /// `Log::append` returned for batch `seq`, after `micros`; the batch is not flushed yet.
    Appended {
        seq: u64,
        first_offset: u64,
        last_offset: u64,
        micros: u64,
    },
    /// `Log::flush` returned: everything below `log_end_offset` is on disk.
    Flushed { log_end_offset: u64 },
}

impl Report {
    fn to_line(self) -> String {
        match self {
            Self::Opened { log_end_offset } => format!("opened {log_end_offset}"),
            Self::Appending { seq, bytes } => format!("appending {seq} {bytes}"),
            Self::Appended {
                seq,
                first_offset,
                last_offset,
                micros,
            } => format!("appended {seq} {first_offset} {last_offset} {micros}"),
            Self::Flushed { log_end_offset } => format!("flushed {log_end_offset}"),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let kind = words.next()?;
        let numbers: Vec<u64> = words.map(str::parse).collect::<Result<_, _>>().ok()?;
        match (kind, numbers.as_slice()) {
            ("opened", &[log_end_offset]) => Some(Self::Opened { log_end_offset }),
            ("appending", &[seq, bytes]) => Some(Self::Appending { seq, bytes }),
            ("appended", &[seq, first_offset, last_offset, micros]) => Some(Self::Appended {
                seq,
                first_offset,
                last_offset,
                micros,
            }),
            ("flushed", &[log_end_offset]) => Some(Self::Flushed { log_end_offset }),
            _ => None,
        }
    }
}

/// The child: runs only when started by [`ChildProcess::spawn`]; in a normal test run it passes at once.
#[test]
fn crash_child_process() {
    let Some(dir) = env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let seed = env_u64(CHILD_SEED_ENV);
    let round = env_u64(CHILD_ROUND_ENV);
    let first_seq = env_u64(CHILD_FIRST_SEQ_ENV);
    // Returns only when the parent is gone: nobody will kill us, so stop rather than fill the disk.
    let Err(e) = run_child(PathBuf::from(dir), seed, round, first_seq);
    eprintln!("crash child: stopping, stdout is gone: {e}");
}

/// Appends batches `first_seq..` and flushes after every 1 to 4 of them, reporting each step, until killed.
/// Returns only when reporting fails, that is when the parent is gone.
fn run_child(dir: PathBuf, seed: u64, round: u64, first_seq: u64) -> io::Result<Infallible> {
    let (mut log, _) = open_log(&dir, UNCLEAN).unwrap_or_else(|e| panic!("crash child: open {}: {e}", dir.display()));
    report(Report::Opened {
        log_end_offset: log.log_end_offset(),
    })?;
    let mut cadence = Rng::new(mix(&[STREAM_FLUSH_CADENCE, seed, round]));
    let mut seq = first_seq;
    loop {
        for _ in 0..cadence.range(1, 4) {
            let mut bytes = client_batch(seed, BatchId { round, seq });
            report(Report::Appending {
                seq,
                bytes: bytes.len() as u64,
            })?;
            let started = Instant::now();
            let info = log
                .append(&mut bytes, leader_epoch(round))
                .unwrap_or_else(|e| panic!("crash child: append of batch {seq}: {e}"));
            report(Report::Appended {
                seq,
                first_offset: info.first_offset,
                last_offset: info.last_offset,
                micros: started.elapsed().as_micros() as u64,
            })?;
            seq += 1;
        }
        log.flush().unwrap_or_else(|e| panic!("crash child: flush: {e}"));
        report(Report::Flushed {
            log_end_offset: log.log_end_offset(),
        })?;
    }
}

/// Writes one report line with one `write` to the pipe: that short, it is atomic, so a kill can lose a
/// report but never leave half of one.
fn report(report: Report) -> io::Result<()> {
    let line = format!("{REPORT_TAG} {}\n", report.to_line());
    let mut stdout = io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.flush()
}

fn env_u64(name: &str) -> u64 {
    let value = env::var(name).unwrap_or_else(|_| panic!("crash child: {name} is not set"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("crash child: {name}={value:?} is not a number"))
}

// ---------------------------------------------------------------------------------------------------------
// The parent: running and killing a child.

/// Where a failure happened, and how to replay it.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    seed: u64,
    round: u64,
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {} (replay with {SEED_ENV}={})", self.round, self.seed)
    }
}

/// A running child and its reports. Killed when dropped, so that a failing assertion never leaves a writer
/// running.
struct ChildProcess {
    child: Child,
    reports: Receiver<String>,
}

impl ChildProcess {
    fn spawn(dir: &Path, ctx: Ctx, first_seq: u64) -> Self {
        let mut child = Command::new(this_binary())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_SEED_ENV, ctx.seed.to_string())
            .env(CHILD_ROUND_ENV, ctx.round.to_string())
            .env(CHILD_FIRST_SEQ_ENV, first_seq.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A panicking child explains itself here.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{ctx}: spawning the child: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, reports) = mpsc::channel();
        // A thread reads, so that the parent can wait for a report with a deadline.
        thread::spawn(move || forward_reports(stdout, sender));
        Self { child, reports }
    }

    /// The child's next report, or `None` once its stdout is closed (it is dead and every report was read).
    fn next_report(&self, ctx: Ctx) -> Option<Report> {
        match self.reports.recv_timeout(CHILD_SILENCE_MAX) {
            Ok(line) => Some(Report::parse(&line).unwrap_or_else(|| panic!("{ctx}: unreadable report {line:?}"))),
            Err(RecvTimeoutError::Disconnected) => None,
            // Dropping `self` while unwinding kills the child.
            Err(RecvTimeoutError::Timeout) => {
                panic!("{ctx}: the child reported nothing for {CHILD_SILENCE_MAX:?}")
            }
        }
    }

    fn sigkill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the child");
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("reap the child")
    }
}

/// This test binary. On Linux, `/proc/self/exe` names the very file being run even when cargo replaces the
/// binary at its path meanwhile (a build running alongside), which would leave `current_exe` naming a new
/// build, or nothing.
fn this_binary() -> PathBuf {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        proc_self
    } else {
        env::current_exe().expect("the path of this test binary")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each report line of the child until its stdout closes; libtest's own lines are skipped (with
/// `--nocapture` a report may follow libtest's "test crash_child_process ... " on the same line).
fn forward_reports(stdout: ChildStdout, sender: Sender<String>) {
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    // A line without its newline could only be cut short; reports are written whole, but a fragment must
    // never be taken for one.
    while matches!(stdout.read_line(&mut line), Ok(n) if n > 0) && line.ends_with('\n') {
        if let Some((_, report)) = line.split_once(REPORT_TAG)
            && sender.send(report.trim().to_owned()).is_err()
        {
            return;
        }
        line.clear();
    }
}

/// Where, after its chosen number of flushes, the child is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// At the flush report: the kill lands in what follows (making the next batch, a roll, an append).
    AtFlush,
    /// At the report of the n-th append after it: past an unflushed tail, at times between the append and its
    /// report.
    AfterAppends(u64),
    /// At a random point into the append of a large batch, `permille` of the way through by the time earlier
    /// large appends took: the kill lands in its checks, its write (which it may tear), or a roll before it.
    InLargeAppend { permille: u32 },
}

impl KillPoint {
    /// Half of the kills are aimed into a large append: the only kind that can tear a batch.
    fn random(rng: &mut Rng) -> Self {
        match rng.below(4) {
            0 => Self::AtFlush,
            1 => Self::AfterAppends(rng.range(1, 3)),
            _ => Self::InLargeAppend {
                permille: rng.below(1000) as u32,
            },
        }
    }

    /// Whether to kill now, given the reports so far and the number of appends at the chosen flush, and if
    /// so, how long into the child's current step.
    ///
    /// The delay waits for nothing (every check holds whenever the kill lands); it only spreads kills over an
    /// append, which takes a fraction of a millisecond, rather than always landing at its start. It is scaled
    /// by the child's own timings, so that it fits whatever machine and build profile run the test.
    fn reached(self, reports: &RoundReports, appends_at_flush: u64) -> Option<Duration> {
        match self {
            Self::AtFlush => Some(Duration::ZERO),
            Self::AfterAppends(n) => (reports.appends >= appends_at_flush + n).then_some(Duration::ZERO),
            Self::InLargeAppend { permille } => {
                let announced = reports
                    .appending
                    .filter(|announced| announced.bytes >= LARGE_VALUE_BYTES.0)?;
                let seconds_per_byte = reports.large_append_seconds_per_byte?;
                let expected = seconds_per_byte * announced.bytes as f64;
                Some(Duration::from_secs_f64(expected * f64::from(permille) / 1000.0))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The parent: what the log must hold.

/// A batch the log should hold, as it must be stored: the client's bytes with the two header fields the log
/// assigns, the base offset (bytes 0..8) and the partition leader epoch (bytes 12..16); see
/// `strata_storage::batch`.
#[derive(Debug, Clone)]
struct Expected {
    id: BatchId,
    base_offset: u64,
    /// The offset after the batch's last record.
    end_offset: u64,
    bytes: Vec<u8>,
}

impl Expected {
    /// The batch the child writes in `round` after `log` (batches with seq 0..n in order): seq n, at the end.
    fn after(log: &[Expected], seed: u64, round: u64) -> Self {
        let id = BatchId {
            round,
            seq: log.len() as u64,
        };
        let base_offset = end_offset(log);
        let mut bytes = client_batch(seed, id);
        bytes[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
        bytes[12..16].copy_from_slice(&leader_epoch(round).to_be_bytes());
        let header = BatchHeader::parse(&bytes).expect("a built batch has a header");
        Self {
            id,
            base_offset,
            end_offset: header.last_offset() as u64 + 1,
            bytes,
        }
    }
}

fn end_offset(log: &[Expected]) -> u64 {
    log.last().map_or(0, |batch| batch.end_offset)
}

/// An append the child announced.
#[derive(Debug, Clone, Copy)]
struct Announced {
    seq: u64,
    bytes: u64,
}

/// What the child's reports in one round say, on top of the log the round started with.
struct RoundReports {
    ctx: Ctx,
    /// The log the round started with, then every batch the child reported appended.
    batches: Vec<Expected>,
    /// The batch the child reported it is appending and has not reported appended yet. Only its size: making
    /// the expected batch takes longer than the child's append, and would delay a kill aimed at it.
    appending: Option<Announced>,
    /// The time per byte of the fastest large append so far, as the child timed it (slower ones rolled a
    /// segment first).
    large_append_seconds_per_byte: Option<f64>,
    /// How many of `batches` are on disk: those the round started with (recovery keeps only what it fsyncs),
    /// and then those below the last reported flush.
    durable: usize,
    opened: bool,
    flushes: u64,
    appends: u64,
}

impl RoundReports {
    fn new(ctx: Ctx, log: Vec<Expected>) -> Self {
        Self {
            ctx,
            durable: log.len(),
            batches: log,
            appending: None,
            large_append_seconds_per_byte: None,
            opened: false,
            flushes: 0,
            appends: 0,
        }
    }

    /// Takes in one report, checking that the child does exactly what the parent predicts.
    fn apply(&mut self, report: Report) {
        let ctx = self.ctx;
        let log_end_offset = end_offset(&self.batches);
        let in_order = match report {
            Report::Opened { .. } => !self.opened,
            Report::Appended { .. } => self.appending.is_some(),
            Report::Appending { .. } | Report::Flushed { .. } => self.opened && self.appending.is_none(),
        };
        assert!(in_order, "{ctx}: {report:?} out of order");
        match report {
            Report::Opened {
                log_end_offset: opened_at,
            } => {
                assert_eq!(
                    opened_at, log_end_offset,
                    "{ctx}: the child's open found another log end than the parent's recovery"
                );
                self.opened = true;
            }
            Report::Appending { seq, bytes } => {
                assert_eq!(
                    seq,
                    self.batches.len() as u64,
                    "{ctx}: the child appends another batch than predicted"
                );
                self.appending = Some(Announced { seq, bytes });
            }
            Report::Appended {
                seq,
                first_offset,
                last_offset,
                micros,
            } => {
                let batch = self.take_appending();
                if batch.bytes.len() as u64 >= LARGE_VALUE_BYTES.0 {
                    let rate = micros as f64 / 1e6 / batch.bytes.len() as f64;
                    self.large_append_seconds_per_byte = Some(
                        self.large_append_seconds_per_byte
                            .map_or(rate, |fastest| fastest.min(rate)),
                    );
                }
                assert_eq!(
                    (seq, first_offset, last_offset),
                    (batch.id.seq, batch.base_offset, batch.end_offset - 1),
                    "{ctx}: the child appended (seq, first offset, last offset) other than predicted"
                );
                self.batches.push(batch);
                self.appends += 1;
            }
            Report::Flushed {
                log_end_offset: flushed_to,
            } => {
                assert_eq!(
                    flushed_to, log_end_offset,
                    "{ctx}: the child flushed to another log end than its appends reached"
                );
                self.durable = self.batches.len();
                self.flushes += 1;
            }
        }
    }

    /// Everything the log may hold after the kill, in order: the batches reported appended, then the one the
    /// child was appending when it was killed, if any. The child reports each append before it starts it
    /// and does one at a time, so there is no other.
    fn into_candidates(mut self) -> Vec<Expected> {
        if self.appending.is_some() {
            let batch = self.take_appending();
            self.batches.push(batch);
        }
        self.batches
    }

    /// The batch being appended, made now, and checked against its announced size.
    fn take_appending(&mut self) -> Expected {
        let announced = self.appending.take().expect("an append was announced");
        let batch = Expected::after(&self.batches, self.ctx.seed, self.ctx.round);
        assert_eq!(
            (announced.seq, announced.bytes),
            (batch.id.seq, batch.bytes.len() as u64),
            "{}: the child announced another batch (seq, bytes) than predicted",
            self.ctx
        );
        batch
    }
}

/// What the kills hit over all rounds; printed so that a run shows where they landed.
#[derive(Debug, Default)]
struct Stats {
    rounds: u64,
    batches_reported_appended: u64,
    /// Reported appended, not flushed, and recovered (SIGKILL leaves the page cache alone).
    unflushed_recovered: u64,
    unflushed_lost: u64,
    /// Kills during an append: rounds where the batch being appended was recovered, or was not.
    in_flight_recovered: u64,
    in_flight_lost: u64,
    /// Rounds whose recovery cut a torn tail.
    torn_tails: u64,
    bytes_truncated: u64,
}

// ---------------------------------------------------------------------------------------------------------
// The parent: one round, and the checks.

/// Runs a child on `dir` until a random kill point, SIGKILLs it, reopens the log as after a crash and checks
/// it against `model` (the log the round starts with) and the child's reports. Moves `model` to the log
/// recovery left, and returns the reopened log.
fn crash_round(dir: &Path, ctx: Ctx, kill_points: &mut Rng, model: &mut Vec<Expected>, stats: &mut Stats) -> Log {
    let flushes_before_kill = kill_points.range(1, FLUSHES_BEFORE_KILL_MAX);
    let kill_point = KillPoint::random(kill_points);
    let mut reports = RoundReports::new(ctx, std::mem::take(model));
    let mut child = ChildProcess::spawn(dir, ctx, reports.batches.len() as u64);

    let mut appends_at_flush = None;
    let delay = loop {
        let Some(report) = child.next_report(ctx) else {
            panic!(
                "{ctx}: the child ended by itself ({}) before it was killed",
                child.wait()
            );
        };
        reports.apply(report);
        if reports.flushes >= flushes_before_kill
            && let Some(delay) = kill_point.reached(&reports, *appends_at_flush.get_or_insert(reports.appends))
        {
            break delay;
        }
    };
    thread::sleep(delay);
    let status = child.sigkill();
    assert_eq!(
        status.signal(),
        Some(9),
        "{ctx}: the child ended by itself ({status}), not by the SIGKILL"
    );
    // Reports the child wrote before it died are still facts: a flush it reported did complete.
    while let Some(report) = child.next_report(ctx) {
        reports.apply(report);
    }

    let (log, recovery) = open_log(dir, UNCLEAN).unwrap_or_else(|e| panic!("{ctx}: reopening after the kill: {e}"));
    let (durable, reported, appends) = (reports.durable, reports.batches.len(), reports.appends);
    let mut candidates = reports.into_candidates();
    let recovered = check_log(&log, &candidates, durable, ctx);
    check_epochs(&log, ctx);
    assert!(
        !recovery.epoch_cache_rebuilt,
        "{ctx}: the leader-epoch checkpoint had to be rebuilt: {recovery:?}"
    );

    stats.rounds += 1;
    stats.batches_reported_appended += appends;
    stats.unflushed_recovered += (recovered.min(reported) - durable) as u64;
    stats.unflushed_lost += (reported - recovered.min(reported)) as u64;
    if candidates.len() > reported {
        stats.in_flight_recovered += u64::from(recovered > reported);
        stats.in_flight_lost += u64::from(recovered == reported);
    }
    stats.torn_tails += u64::from(recovery.bytes_truncated > 0);
    stats.bytes_truncated += recovery.bytes_truncated;
    eprintln!(
        "{ctx}: killed at {kill_point:?} after {flushes_before_kill} flushes; batches: flushed {durable}, \
         reported appended {reported}, being appended {}, recovered {recovered}; {recovery:?}",
        candidates.len() - reported
    );

    candidates.truncate(recovered);
    *model = candidates;
    log
}

/// Checks the log: whole, valid, contiguous batches from offset 0 to its end (see [`for_each_batch`]), which
/// are the first `n` of `candidates` byte for byte, for some `n` at least `durable`; and each one reads back
/// by its offsets. Returns `n`.
fn check_log(log: &Log, candidates: &[Expected], durable: usize, ctx: Ctx) -> usize {
    let mut found = 0;
    for_each_batch(log, ctx, |stored| {
        let Some(expected) = candidates.get(found) else {
            panic!(
                "{ctx}: the log holds more than the {} batches the child can have written",
                candidates.len()
            );
        };
        if stored != expected.bytes {
            let at = stored
                .iter()
                .zip(&expected.bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(stored.len().min(expected.bytes.len()));
            panic!(
                "{ctx}: batch {found} at offset {} ({}) is not {:?} as written: {} bytes stored, {} expected, \
                 first difference at byte {at}",
                expected.base_offset,
                if found < durable { "flushed" } else { "not flushed" },
                expected.id,
                stored.len(),
                expected.bytes.len()
            );
        }
        check_read_back(log, expected, ctx);
        found += 1;
    });
    assert!(
        found >= durable,
        "{ctx}: {durable} batches were flushed (to offset {}), but the log holds only {found} (log end offset {})",
        end_offset(&candidates[..durable]),
        log.log_end_offset(),
    );
    found
}

/// Checks that the leader-epoch cache lists exactly the first batch of each epoch in the log.
fn check_epochs(log: &Log, ctx: Ctx) {
    let mut expected: Vec<(i32, u64)> = Vec::new();
    for_each_batch(log, ctx, |stored| {
        let header = BatchHeader::parse(stored).expect("checked by for_each_batch");
        let epoch = header.partition_leader_epoch;
        if expected.last().is_none_or(|(latest, _)| epoch > *latest) {
            expected.push((epoch, header.base_offset as u64));
        }
    });
    let cached: Vec<(i32, u64)> = log.epoch_entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(
        cached, expected,
        "{ctx}: the leader-epoch cache does not match the batches"
    );
}

/// Reads the log front to back with `Log::read` and hands each batch to `check`, checking on the way that each
/// is whole and passes `batch::validate` (CRC-32C included), that offsets are contiguous from the log start
/// offset (0: nothing here deletes records) and that the last batch ends at the log end offset.
fn for_each_batch(log: &Log, ctx: Ctx, mut check: impl FnMut(&[u8])) {
    assert_eq!(log.log_start_offset(), 0, "{ctx}: the log start offset moved");
    let log_end_offset = log.log_end_offset();
    let mut next = 0;
    while next < log_end_offset {
        let read = log
            .read(next, ReadLimits::bytes(1 << 20))
            .unwrap_or_else(|e| panic!("{ctx}: read at {next}: {e}"));
        assert!(
            !read.records.is_empty(),
            "{ctx}: a read at {next}, below the log end offset {log_end_offset}, returned nothing"
        );
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).unwrap_or_else(|e| panic!("{ctx}: batch at offset {next}: {e}"));
            assert!(
                header.total_bytes() <= rest.len(),
                "{ctx}: a read at offset {next} returned a partial batch"
            );
            let (whole, after) = rest.split_at(header.total_bytes());
            let header =
                batch::validate(whole).unwrap_or_else(|e| panic!("{ctx}: the batch at offset {next} is invalid: {e}"));
            assert_eq!(
                header.base_offset, next as i64,
                "{ctx}: a gap or an overlap: the batch after offset {next} starts elsewhere"
            );
            check(whole);
            next = header.last_offset() as u64 + 1;
            rest = after;
        }
        assert_eq!(
            read.next_offset, next,
            "{ctx}: a read's next offset is not the one after its last batch"
        );
    }
    assert_eq!(
        next, log_end_offset,
        "{ctx}: the last batch does not end at the log end offset"
    );
}

/// Reads `expected` alone at its first and at its last offset (through the offset index that recovery
/// rebuilt), and checks that exactly it comes back.
fn check_read_back(log: &Log, expected: &Expected, ctx: Ctx) {
    let one_batch = ReadLimits {
        max_bytes: 1,
        max_offset: None,
        min_one_batch: true,
    };
    for offset in [expected.base_offset, expected.end_offset - 1] {
        let read = log
            .read(offset, one_batch)
            .unwrap_or_else(|e| panic!("{ctx}: read at {offset}: {e}"));
        assert!(
            read.records == expected.bytes && read.next_offset == expected.end_offset,
            "{ctx}: a read at offset {offset} did not return exactly the batch {:?} at {}..{}",
            expected.id,
            expected.base_offset,
            expected.end_offset
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// The tests.

#[test]
fn sigkilled_writer_loses_no_flushed_batch_and_leaves_whole_contiguous_batches() {
    let seed = seed();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut kill_points = Rng::new(mix(&[STREAM_KILL_POINTS, seed, 1]));
    let mut model = Vec::new();
    let mut stats = Stats::default();
    for round in 0..ROUNDS {
        let ctx = Ctx { seed, round };
        // Dropped, not closed: the next child finds the files as recovery left them, not tidied by a close.
        drop(crash_round(dir.path(), ctx, &mut kill_points, &mut model, &mut stats));
    }
    eprintln!("{stats:?}");
}

/// What recovery reports must be what it left on disk: after a clean close, a clean open (which loads the
/// files and their indexes instead of scanning them) must find the very same log.
#[test]
fn log_recovered_after_sigkill_reopens_unchanged_after_a_clean_close() {
    let seed = seed();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut kill_points = Rng::new(mix(&[STREAM_KILL_POINTS, seed, 2]));
    let mut model = Vec::new();
    let mut stats = Stats::default();
    for round in 0..CLEAN_CLOSE_ROUNDS {
        let ctx = Ctx { seed, round };
        let mut log = crash_round(dir.path(), ctx, &mut kill_points, &mut model, &mut stats);
        let (log_end_offset, log_start_offset) = log.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
        drop(log);
        assert_eq!(
            log_end_offset,
            end_offset(&model),
            "{ctx}: close reported another log end offset"
        );
        let clean = OpenState {
            recovery_point: log_end_offset,
            log_start_offset,
            clean_shutdown: true,
        };
        let (log, report) = open_log(dir.path(), clean).unwrap_or_else(|e| panic!("{ctx}: clean reopen: {e}"));
        assert_eq!(
            report.segments_recovered, 0,
            "{ctx}: a clean open scanned segments; it must trust them"
        );
        check_log(&log, &model, model.len(), ctx);
        check_epochs(&log, ctx);
        assert!(
            !report.epoch_cache_rebuilt,
            "{ctx}: a clean open rebuilt the epoch cache"
        );
    }
    eprintln!("{stats:?}");
}

/// The seed from `STRATA_CRASH_SEED`, or a new one; printed either way so that a failure can be replayed.
fn seed() -> u64 {
    init_tracing();
    let seed = match env::var(SEED_ENV) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={value:?} is not a number")),
        Err(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
            mix(&[now.as_nanos() as u64, u64::from(std::process::id())])
        }
    };
    eprintln!("crash test seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// Recovery's warnings (torn tails cut) are shown with a failing test's output; `RUST_LOG` changes the level.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------------------
// Randomness.

/// splitmix64: tiny, and any seed (0 included) gives a good stream.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// `len` bytes: one random KiB, repeated. Cheap enough in a debug build that a large batch spends its
    /// time being written rather than made, so that a kill aimed at its append lands in the write.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len.min(1024) {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        while out.len() < len {
            out.extend_from_within(..(len - out.len()).min(out.len()));
        }
        out.truncate(len);
        out
    }
}

/// Hashes numbers into one seed, so that each stream, round and batch gets its own sequence.
fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0, |hash, &part| Rng::new(hash ^ part).next_u64())
}
