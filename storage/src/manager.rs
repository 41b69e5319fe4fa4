//! The log manager: every partition log of one data directory, their checkpoints, and background upkeep.
//!
//! ```text
//! <data_dir>/
//!   .lock                              held (flock) while a manager owns the directory
//!   .clean-shutdown                    present only between a clean close and the next open
//!   recovery-point-offset-checkpoint   per partition: offsets below this were fsynced
//!   log-start-offset-checkpoint        per partition: the log start offset (DeleteRecords, retention)
//!   <topic>-<partition>/               one `Log` each
//! ```
//!
//! Opening reads both checkpoints and the marker, deletes the marker (so a crash from now on is seen as
//! unclean), and opens every partition directory on a pool of threads. A checkpoint that fails its CRC is
//! logged and ignored: every log then recovers from its first segment, which is slow but loses nothing.
//!
//! Directories this manager does not own (the controller's `__cluster_metadata-0`) are left alone.
//!
//! Background work runs on one thread in two rounds with intervals of their own, as Kafka's log manager and
//! log cleaner do: upkeep (retention, `flush.ms`, checkpoints) every `log.retention.check.interval.ms`, and
//! the cleaner (compaction of the logs that are due, see [`Log::plan_compaction`]) every
//! `log.cleaner.backoff.ms`. The files of deleted and compacted-away segments are held open, unlinked, and
//! dropped (their space given back) once their `file.delete.delay.ms` has passed, at the first round after.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::checkpoint::OffsetCheckpoint;
use crate::config::LogConfig;
use crate::disk::{Disk, OpenMode, OsDisk};
use crate::error::{Error, IoContext};
use crate::handles::{HANDLES_MAX_DEFAULT, HandleCache};
use crate::log::{DeletedFile, Log, OpenState, RecoveryReport, later_by, now_ms, sync_dir};

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";
const LOCK_FILE: &str = ".lock";
/// Directories in a data directory that are not partition logs.
const FOREIGN_DIRS: &[&str] = &["__cluster_metadata-0"];
/// Deleted segment files held open across all logs, waiting for their `file.delete.delay.ms`: each is a
/// descriptor. Past this, the ones due soonest are freed early (and that is logged).
const DELETED_FILES_PENDING_MAX: usize = 4096;

/// A partition: topic name and partition number. Its directory is `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses `<topic>-<partition>`; topics may contain `-`, so the partition follows the last one.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
        (!topic.is_empty()).then(|| Self::new(topic, partition))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Settings of the manager itself (per-log settings are in [`LogConfig`]).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The most file descriptors plus index maps kept open at once, across all logs.
    pub handles_max: usize,
    /// Threads that open (and recover) logs at start and close them at shutdown.
    pub threads: usize,
    /// The disk the directory is on: the operating system's, or a test's.
    pub disk: Arc<dyn Disk>,
    /// Told how long each fsync of a log took (the broker's flush-latency histogram); `None`: nobody asks.
    pub flush_observer: Option<FlushObserver>,
}

/// Told the duration of every fsync of a partition's log: a flush (`flush.messages`, `flush.ms`, shutdown)
/// or the background fsync of a rolled segment. The storage crate measures; what the figure feeds (the
/// broker's Prometheus histogram) is the caller's business, so this crate depends on no metrics library.
#[derive(Clone)]
pub struct FlushObserver(Arc<dyn Fn(Duration) + Send + Sync>);

impl FlushObserver {
    pub fn new(observe: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        Self(Arc::new(observe))
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        (self.0)(elapsed);
    }
}

impl std::fmt::Debug for FlushObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushObserver")
    }
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            handles_max: HANDLES_MAX_DEFAULT,
            threads: thread::available_parallelism().map_or(2, |n| n.get()),
            disk: OsDisk::shared(),
            flush_observer: None,
        }
    }
}

/// What opening the data directory found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub logs: usize,
    pub clean_shutdown: bool,
    pub logs_recovered: usize,
    pub bytes_truncated: u64,
    pub elapsed: Duration,
}

/// A shared handle to one log; the mutex serialises appends, rolls and truncation.
pub type SharedLog = Arc<Mutex<Log>>;

/// Owns a data directory; see the module documentation.
#[derive(Debug)]
pub struct LogManager {
    dir: PathBuf,
    default_config: LogConfig,
    config: ManagerConfig,
    handles: Arc<HandleCache>,
    logs: RwLock<HashMap<TopicPartition, SharedLog>>,
    recovery_points: OffsetCheckpoint,
    log_starts: OffsetCheckpoint,
    /// Serialises checkpoint writers (the background thread, shutdown).
    checkpointing: Mutex<()>,
    /// Serialises cleaner rounds: two compactions of one log would share its cleaner directory.
    cleaning: Mutex<()>,
    /// Files of deleted segments waiting for their `file.delete.delay.ms`; see the module documentation.
    deleted_files: Mutex<Vec<DeletedFile>>,
    _lock: fs::File,
}

impl LogManager {
    /// Opens every log under `dir` (creating `dir` if needed); see the module documentation.
    pub fn open(
        dir: impl Into<PathBuf>,
        default_config: LogConfig,
        config: ManagerConfig,
    ) -> Result<(Self, OpenReport), Error> {
        let started = Instant::now();
        let dir = dir.into();
        fs::create_dir_all(&dir).context("create data directory", &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context("open", &lock_path)?;
        lock.try_lock().map_err(|e| Error::Io {
            op: "lock (is another Strata using this data directory?)",
            path: lock_path.clone(),
            source: e.into(),
        })?;

        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean_shutdown = marker.exists();
        let disk = config.disk.clone();
        let recovery_points = OffsetCheckpoint::new(dir.join(RECOVERY_POINT_CHECKPOINT), disk.clone());
        let log_starts = OffsetCheckpoint::new(dir.join(LOG_START_OFFSET_CHECKPOINT), disk.clone());
        let read_or_warn = |checkpoint: &OffsetCheckpoint| -> Result<BTreeMap<TopicPartition, u64>, Error> {
            Ok(checkpoint.read()?.unwrap_or_else(|corrupt| {
                warn!(error = %corrupt, "ignoring a corrupt checkpoint");
                BTreeMap::new()
            }))
        };
        let recovery_point_map = read_or_warn(&recovery_points)?;
        let log_start_map = read_or_warn(&log_starts)?;

        let mut partitions = Vec::new();
        for entry in fs::read_dir(&dir).context("list", &dir)? {
            let entry = entry.context("list", &dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !entry.file_type().context("stat", entry.path())?.is_dir() || FOREIGN_DIRS.contains(&name) {
                continue;
            }
            match TopicPartition::from_dir_name(name) {
                Some(tp) => partitions.push(tp),
                None => {
                    warn!(path = %entry.path().display(), "ignoring a directory that is not a partition log")
                }
            }
        }

        let handles = HandleCache::on_disk(config.handles_max, disk.clone());
        let opened = parallel_map(partitions, config.threads, |tp| {
            let state = OpenState {
                // With a clean marker the checkpoint is not needed; without one, an absent entry means "scan all".
                recovery_point: recovery_point_map.get(&tp).copied().unwrap_or(0),
                log_start_offset: log_start_map.get(&tp).copied().unwrap_or(0),
                clean_shutdown,
            };
            let log_dir = dir.join(tp.dir_name());
            Log::open(log_dir, default_config.clone(), handles.clone(), state).map(|(log, report)| (tp, log, report))
        });
        let mut report = OpenReport {
            clean_shutdown,
            ..OpenReport::default()
        };
        let mut logs = HashMap::new();
        for result in opened {
            let (tp, mut log, recovery): (_, Log, RecoveryReport) = result?;
            report.logs += 1;
            report.logs_recovered += usize::from(recovery.segments_recovered > 0);
            report.bytes_truncated += recovery.bytes_truncated;
            log.observe_flushes(config.flush_observer.clone());
            logs.insert(tp, Arc::new(Mutex::new(log)));
        }
        // From here on a crash is an unclean stop.
        if clean_shutdown {
            fs::remove_file(&marker).context("remove clean-shutdown marker", &marker)?;
            sync_dir(&*disk, &dir)?;
        }
        report.elapsed = started.elapsed();
        info!(dir = %dir.display(), logs = report.logs, clean = clean_shutdown, recovered = report.logs_recovered,
            bytes_truncated = report.bytes_truncated, elapsed_ms = report.elapsed.as_millis() as u64, "opened data directory");
        let manager = Self {
            dir,
            default_config,
            config,
            handles,
            logs: RwLock::new(logs),
            recovery_points,
            log_starts,
            checkpointing: Mutex::new(()),
            cleaning: Mutex::new(()),
            deleted_files: Mutex::new(Vec::new()),
            _lock: lock,
        };
        Ok((manager, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// The shared bound on open descriptors and maps (for metrics and tests).
    pub fn handles(&self) -> &Arc<HandleCache> {
        &self.handles
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<SharedLog> {
        read(&self.logs).get(tp).cloned()
    }

    /// Every log, in no particular order.
    pub fn logs(&self) -> Vec<(TopicPartition, SharedLog)> {
        read(&self.logs)
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect()
    }

    /// The log of `tp`, created empty with `config` if it does not exist. An existing log keeps its config.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<SharedLog, Error> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let mut logs = self.logs.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        let (mut log, _) = Log::open(
            self.dir.join(tp.dir_name()),
            config,
            self.handles.clone(),
            OpenState::default(),
        )?;
        log.observe_flushes(self.config.flush_observer.clone());
        // The new directory is fsynced with the log's first flush (see `Log`).
        let log = Arc::new(Mutex::new(log));
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    /// Deletes a log and its files. Returns whether it existed.
    pub fn delete(&self, tp: &TopicPartition) -> Result<bool, Error> {
        let Some(log) = self.logs.write().unwrap_or_else(PoisonError::into_inner).remove(tp) else {
            return Ok(false);
        };
        lock(&log).delete()?;
        sync_dir(&*self.config.disk, &self.dir)?;
        Ok(true)
    }

    /// Writes both checkpoints from the logs' current state.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let _serialised = lock(&self.checkpointing);
        self.write_checkpoints(None)
    }

    /// [`Log::truncate_to`] on the log of `tp`, safe against a power cut part-way: the recovery point
    /// checkpointed for it is lowered to `offset`, durably, before any file changes. Otherwise a stale,
    /// higher recovery point would have the next open trust segments the truncation was changing (a later
    /// segment's deletion lost, an earlier one's cut kept: a gap), or that were refilled after it and not yet
    /// fsynced. Kafka checkpoints recovery points right after a truncation; before it closes the window.
    pub fn truncate_to(&self, tp: &TopicPartition, offset: u64) -> Result<u64, Error> {
        let log = self.get(tp).ok_or_else(|| self.missing(tp))?;
        let _serialised = lock(&self.checkpointing);
        self.write_checkpoints(Some((tp, offset)))?;
        lock(&log).truncate_to(offset)
    }

    /// [`Log::truncate_fully_and_start_at`] on the log of `tp`, with the recovery point checkpointed at 0
    /// first, for the same reason as [`Self::truncate_to`].
    pub fn truncate_fully_and_start_at(&self, tp: &TopicPartition, offset: u64) -> Result<(), Error> {
        let log = self.get(tp).ok_or_else(|| self.missing(tp))?;
        let _serialised = lock(&self.checkpointing);
        self.write_checkpoints(Some((tp, 0)))?;
        lock(&log).truncate_fully_and_start_at(offset)
    }

    fn missing(&self, tp: &TopicPartition) -> Error {
        Error::Io {
            op: "find log",
            path: self.dir.join(tp.dir_name()),
            source: std::io::ErrorKind::NotFound.into(),
        }
    }

    /// Writes both checkpoints; `lowered`: a partition whose recovery point is written no higher than an
    /// offset. The caller holds `checkpointing`.
    fn write_checkpoints(&self, lowered: Option<(&TopicPartition, u64)>) -> Result<(), Error> {
        let mut recovery_points = BTreeMap::new();
        let mut log_starts = BTreeMap::new();
        for (tp, log) in self.logs() {
            let mut log = lock(&log);
            log.reap_rolled_syncs();
            let mut recovery_point = log.recovery_point();
            if let Some((_, offset)) = lowered.filter(|(lowered, _)| **lowered == tp) {
                recovery_point = recovery_point.min(offset);
            }
            recovery_points.insert(tp.clone(), recovery_point);
            log_starts.insert(tp, log.log_start_offset());
        }
        self.recovery_points.write(&recovery_points)?;
        self.log_starts.write(&log_starts)
    }

    /// One round of everything the background does: [`Self::upkeep`], then [`Self::clean`]. For callers that
    /// drive the manager themselves (tests, tools).
    pub fn maintain(&self) -> Result<(), Error> {
        let upkeep = self.upkeep();
        self.clean();
        upkeep
    }

    /// One round of upkeep: retention, `flush.ms`, freeing deleted segments whose delay has passed, and the
    /// checkpoints. A failing log is logged and skipped so that one bad partition does not stop upkeep of the
    /// others.
    pub fn upkeep(&self) -> Result<(), Error> {
        let now = Instant::now();
        let now_ms = now_ms();
        for (tp, log) in self.logs() {
            let mut locked = lock(&log);
            if let Err(e) = locked.enforce_retention(now_ms) {
                error!(partition = %tp, error = %e, "retention failed");
            }
            // The fsync runs on a thread of its own; the recovery point follows when it is done.
            locked.flush_in_background_if_due(now);
            let deleted = locked.take_deleted_files();
            drop(locked);
            self.hold_deleted(deleted);
        }
        self.free_due_deleted_files();
        self.checkpoint()
    }

    /// One round of the cleaner: every compacted log that is due (dirty ratio, `max.compaction.lag.ms`; see
    /// [`Log::plan_compaction`]) is compacted, its segments built without the log's lock. Returns how many
    /// logs were compacted.
    pub fn clean(&self) -> usize {
        let _serialised = lock(&self.cleaning);
        let now_ms = now_ms();
        let mut compacted = 0;
        for (tp, log) in self.logs() {
            let plan = lock(&log).plan_compaction(now_ms);
            if let Some(plan) = plan {
                let retired = compact_unlocked(&tp, &log, plan);
                self.hold_deleted(retired);
                compacted += 1;
            }
        }
        self.free_due_deleted_files();
        compacted
    }

    /// Keeps deleted segments' files until their delay has passed; past the bound, frees those due soonest.
    fn hold_deleted(&self, files: Vec<DeletedFile>) {
        if files.is_empty() {
            return;
        }
        let mut held = lock(&self.deleted_files);
        held.extend(files);
        if held.len() > DELETED_FILES_PENDING_MAX {
            held.sort_by_key(|f| std::cmp::Reverse(f.due));
            let early = held.split_off(DELETED_FILES_PENDING_MAX);
            drop(held);
            warn!(
                files = early.len(),
                "more deleted segment files waiting than held: freed before their file.delete.delay.ms"
            );
            drop(early);
        }
    }

    /// Drops (and so frees the space of) the deleted segments' files whose `file.delete.delay.ms` has passed.
    pub fn free_due_deleted_files(&self) {
        let now = Instant::now();
        let due: Vec<DeletedFile> = {
            let mut held = lock(&self.deleted_files);
            let (due, waiting) = std::mem::take(&mut *held).into_iter().partition(|f| f.due <= now);
            *held = waiting;
            due
        };
        // Freeing a large file's blocks takes a while: outside the lock.
        drop(due);
    }

    /// Deleted segment files still holding their space, waiting for `file.delete.delay.ms`.
    pub fn deleted_files_pending(&self) -> usize {
        lock(&self.deleted_files).len()
    }

    /// Runs [`Self::upkeep`] every `upkeep_interval` and [`Self::clean`] every `cleaner_interval` on a thread
    /// until the returned handle is stopped or dropped.
    pub fn start_background(self: &Arc<Self>, upkeep_interval: Duration, cleaner_interval: Duration) -> Background {
        let (stop, stopped) = mpsc::channel::<()>();
        let manager = Arc::downgrade(self);
        let thread = thread::Builder::new()
            .name("strata-log-upkeep".into())
            .spawn(move || {
                let started = Instant::now();
                let (mut next_upkeep, mut next_clean) =
                    (later_by(started, upkeep_interval), later_by(started, cleaner_interval));
                loop {
                    let wake = next_upkeep.min(next_clean);
                    let wait = wake.saturating_duration_since(Instant::now());
                    if let Err(mpsc::RecvTimeoutError::Disconnected) | Ok(()) = stopped.recv_timeout(wait) {
                        break;
                    }
                    let Some(manager) = manager.upgrade() else {
                        break;
                    };
                    let now = Instant::now();
                    if now >= next_upkeep {
                        if let Err(e) = manager.upkeep() {
                            error!(error = %e, "log upkeep failed");
                        }
                        next_upkeep = later_by(Instant::now(), upkeep_interval);
                    }
                    if now >= next_clean {
                        manager.clean();
                        next_clean = later_by(Instant::now(), cleaner_interval);
                    }
                }
            })
            .expect("spawning a thread");
        Background {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Closes every log (seal and fsync), writes the checkpoints and, if every log closed cleanly, the
    /// clean-shutdown marker, so the next open skips recovery. Call it once, last: the logs are not to be
    /// used afterwards (it takes `&self` so that a server can close what its tasks still reference).
    pub fn close(&self) -> Result<(), Error> {
        let logs = self.logs();
        let closed = parallel_map(logs, self.config.threads, |(tp, log)| {
            let result = lock(&log).close();
            if let Err(e) = &result {
                error!(partition = %tp, error = %e, "log did not close cleanly");
            }
            result
        });
        let all_clean = closed.iter().all(Result::is_ok);
        self.checkpoint()?;
        if all_clean {
            let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
            (self.config.disk.open(&marker, OpenMode::Truncated))
                .and_then(|mut f| f.sync_data())
                .context("write clean-shutdown marker", &marker)?;
            sync_dir(&*self.config.disk, &self.dir)?;
        }
        info!(dir = %self.dir.display(), clean = all_clean, "closed data directory");
        closed.into_iter().collect::<Result<Vec<_>, _>>().map(|_| ())
    }
}

/// Builds the compaction `plan` without the log's lock, then swaps the segments in one at a time, taking
/// the lock for each (see [`Log::install_next_compacted`]): appends and reads wait for one segment's swap
/// at most. A build the log outran is thrown away and planned again on the next round. Returns the replaced
/// segments' files, to be freed after their delay.
fn compact_unlocked(tp: &TopicPartition, log: &SharedLog, plan: crate::log::CompactionPlan) -> Vec<DeletedFile> {
    let (dirty_ratio, overdue) = (plan.dirty_ratio(), plan.overdue());
    let mut built = match plan.build() {
        Ok(built) => built,
        Err(e) => {
            error!(partition = %tp, error = %e, "compaction failed");
            return Vec::new();
        }
    };
    let mut report = crate::log::CompactionReport::default();
    loop {
        match lock(log).install_next_compacted(&mut built, &mut report) {
            Ok(true) => continue,
            Ok(false) if report.abandoned => info!(partition = %tp, "compaction abandoned: the log changed"),
            Ok(false) => {}
            Err(e) => error!(partition = %tp, error = %e, "compaction failed"),
        }
        break;
    }
    if report.segments_rewritten > 0 {
        info!(partition = %tp, dirty_ratio, overdue, segments = report.segments_rewritten,
            bytes_removed = report.bytes_removed, "cleaned");
    }
    let retired = built.take_retired();
    // Deletes the cleaner's directory, without the lock.
    drop(built);
    retired
}

/// Stops the upkeep thread when stopped or dropped.
#[derive(Debug)]
pub struct Background {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Background {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Applies `f` to every item on up to `threads` threads; results in no particular order.
fn parallel_map<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(items.len()));
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = items.get(i) else { break };
                    let item = lock(slot).take().expect("each index is taken once");
                    let result = f(item);
                    lock(&results).push(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_directory_names() {
        assert_eq!(
            TopicPartition::from_dir_name("orders-3"),
            Some(TopicPartition::new("orders", 3))
        );
        assert_eq!(
            TopicPartition::from_dir_name("my-topic-12"),
            Some(TopicPartition::new("my-topic", 12))
        );
        assert_eq!(TopicPartition::from_dir_name("orders"), None);
        assert_eq!(TopicPartition::from_dir_name("-3"), None);
        assert_eq!(TopicPartition::from_dir_name("orders-x"), None);
        assert_eq!(
            TopicPartition::from_dir_name("orders--1"),
            Some(TopicPartition::new("orders-", 1))
        );
        assert_eq!(TopicPartition::new("a-b", 0).dir_name(), "a-b-0");
    }
}
