//! Power loss under the storage engine, not just SIGKILL.
//!
//! SIGKILL leaves the page cache to the kernel, so every byte written survives it; a power cut keeps only what
//! was fsynced. [`PowerLossDisk`] is a [`Disk`] that remembers what each fsync made durable (a file's bytes by
//! inode, a directory's entries by name) and, when the power goes, builds the directory tree a disk could hold
//! afterwards: for every file, its bytes as of its last fsync with any of the pages written since, or zeros,
//! laid over them, and a length anywhere between the two (torn writes); for every directory entry created,
//! renamed or removed since its directory's last fsync, the old state or the new one. Nothing about which
//! unsynced write reaches the platter is assumed.
//!
//! The test runs a seeded workload on a [`LogManager`] (appends of keyed records, rolls, flushes,
//! checkpoints, truncations with a new leader epoch, clean restarts) and cuts the power at every fsync in
//! turn: the fsync fails, and so does every write after it. It then builds what survived, opens it as after
//! an unclean stop, and checks that
//!
//! - nothing flushed is lost: every record below the last flushed offset is there, the one written last;
//! - nothing torn is served: the log reads back as whole batches with contiguous offsets, each record one
//!   that was written at its offset (before or after a truncation that may not have reached the disk);
//! - the recovery point never runs ahead of the data: the checkpointed recovery point is at or below the
//!   recovered log end offset;
//! - the recovered log takes appends and survives a clean restart.
//!
//! Replaying: a failure names its workload seed, power-cut point and loss seed;
//! `STRATA_POWER_LOSS_SEEDS=<n>` runs more workloads. The order of fsyncs may vary between runs when a roll's
//! background fsync races the next append.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use strata_storage::batch::build::{Record, batch};
use strata_storage::batch::{self, BatchHeader};
use strata_storage::checkpoint::OffsetCheckpoint;
use strata_storage::disk::{Disk, DiskFile, OpenMode, OsDisk};
use strata_storage::{LeaderAppend, LogConfig, LogManager, ManagerConfig, ReadLimits, SharedLog, TopicPartition};

/// Workloads (seeds) run by default; each is cut at every one of its fsyncs.
const SEEDS_DEFAULT: u64 = 3;
/// Steps of one workload.
const STEPS: usize = 90;
/// The unit of a torn write: a page either reached the disk or did not.
const PAGE_BYTES: usize = 4096;
const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";

#[test]
fn nothing_flushed_is_lost_and_nothing_torn_is_served_after_a_power_cut_at_any_fsync() {
    let seeds = std::env::var("STRATA_POWER_LOSS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS_DEFAULT);
    let mut cuts = 0;
    for seed in 0..seeds {
        let syncs = run_uncut(seed);
        assert!(
            syncs > 20,
            "seed {seed}: a workload of {STEPS} steps fsynced only {syncs} times"
        );
        for cut_at in 1..=syncs {
            cut_power_and_recover(seed, cut_at);
            cuts += 1;
        }
    }
    eprintln!("{cuts} power cuts over {seeds} workloads recovered");
}

/// Runs workload `seed` with the power on throughout; returns the fsyncs it made.
fn run_uncut(seed: u64) -> u64 {
    let root = tempfile::tempdir().unwrap();
    let disk = PowerLossDisk::new(root.path(), None);
    let model = Workload::new(seed, disk.clone()).run();
    assert!(model.power_cut.is_none(), "seed {seed}: {:?}", model.power_cut);
    disk.syncs()
}

fn cut_power_and_recover(seed: u64, cut_at: u64) {
    let context = format!("seed {seed}, power cut at fsync {cut_at} (loss seed = the same)");
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fs::create_dir(&data).unwrap();
    let disk = PowerLossDisk::new(&data, Some(cut_at));
    let model = Workload::new(seed, disk.clone()).run();

    let after = root.path().join("after");
    disk.surviving_tree(&after, &mut Rng::new(seed ^ cut_at.rotate_left(32)));
    let checkpointed = OffsetCheckpoint::new(after.join(RECOVERY_POINT_CHECKPOINT), OsDisk::shared())
        .read()
        .unwrap()
        .ok()
        .and_then(|points| points.get(&partition()).copied());

    let (manager, _) = LogManager::open(&after, log_config(), ManagerConfig::default())
        .unwrap_or_else(|e| panic!("{context}: the surviving directory does not open: {e}"));
    let log = manager.get_or_create(&partition(), log_config()).unwrap();
    let end = {
        let log = lock(&log);
        let end = log.log_end_offset();
        assert!(
            end >= model.flushed.len() as u64,
            "{context}: the log ends at {end}, but {} records were flushed",
            model.flushed.len()
        );
        if let Some(point) = checkpointed.filter(|_| !model.truncated_since_checkpoint) {
            assert!(
                point <= end,
                "{context}: checkpointed recovery point {point} is past the data's end {end}"
            );
        }
        check_contents(&context, &log, &model);
        end
    };

    // The recovered log is a log: it takes an append and keeps it across a clean restart.
    let mut next = record_batch(u64::MAX, 1);
    assert!(matches!(
        lock(&log).append_as_leader(&mut next, i32::MAX).unwrap(),
        LeaderAppend::Appended(_)
    ));
    drop(log);
    manager.close().unwrap();
    drop(manager);
    let (manager, report) = LogManager::open(&after, log_config(), ManagerConfig::default()).unwrap();
    assert!(report.clean_shutdown, "{context}");
    assert_eq!(
        lock(&manager.get(&partition()).unwrap()).log_end_offset(),
        end + 1,
        "{context}"
    );
}

/// Reads the whole log and checks every record against what the workload wrote.
fn check_contents(context: &str, log: &strata_storage::Log, model: &Model) {
    let mut expected = log.log_start_offset();
    assert_eq!(expected, 0, "{context}: nothing deletes records");
    while expected < log.log_end_offset() {
        let read = log
            .read(expected, ReadLimits::bytes(1 << 20))
            .unwrap_or_else(|e| panic!("{context}: reading offset {expected}: {e}"));
        let mut bytes = &read.records[..];
        assert!(!bytes.is_empty(), "{context}: nothing read at {expected}");
        while !bytes.is_empty() {
            let header = BatchHeader::parse(bytes).unwrap_or_else(|e| panic!("{context}: at {expected}: {e}"));
            let (whole, rest) = bytes.split_at(header.total_bytes());
            batch::validate(whole).unwrap_or_else(|e| panic!("{context}: a torn batch at {expected}: {e}"));
            for record in batch::records(whole).unwrap() {
                let offset = record.offset as u64;
                assert_eq!(offset, expected, "{context}: offsets are not contiguous");
                let id = u64::from_be_bytes(record.key.as_deref().unwrap().try_into().unwrap());
                assert!(
                    model.written.get(&offset).is_some_and(|ids| ids.contains(&id)),
                    "{context}: offset {offset} holds record {id}, which was never written there"
                );
                if let Some(&flushed) = model.flushed.get(offset as usize) {
                    assert_eq!(
                        id, flushed,
                        "{context}: offset {offset} was flushed with record {flushed}"
                    );
                }
                expected += 1;
            }
            bytes = rest;
        }
    }
}

fn partition() -> TopicPartition {
    TopicPartition::new("power", 0)
}

/// Small segments and indexes, so a short workload rolls and indexes often.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A batch of `count` records keyed by ids from `first_id`, with values of a few hundred bytes.
fn record_batch(first_id: u64, count: u64) -> Vec<u8> {
    let keys: Vec<[u8; 8]> = (0..count).map(|i| first_id.wrapping_add(i).to_be_bytes()).collect();
    let value = vec![b'v'; 150];
    let records: Vec<Record<'_>> = keys
        .iter()
        .map(|key| Record {
            key: Some(key),
            value: Some(&value),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        })
        .collect();
    batch(&records)
}

/// What the workload wrote and what it knew to be durable when the power went.
#[derive(Debug, Default)]
struct Model {
    /// Every record id ever written at each offset.
    written: HashMap<u64, Vec<u64>>,
    /// The record ids at offsets `0..len` as of the last flush (or clean close) that returned.
    flushed: Vec<u64>,
    /// A truncation since the last checkpoint: the checkpointed recovery point may be past the log end, as
    /// in Kafka (the truncation lowered it in memory only), without vouching for anything that is not there.
    truncated_since_checkpoint: bool,
    /// The error that ended the workload early, if the power went.
    power_cut: Option<String>,
}

struct Workload {
    rng: Rng,
    disk: Arc<PowerLossDisk>,
    model: Model,
    /// The record ids at offsets `0..log end`, as the log holds them now.
    current: Vec<u64>,
    /// The first offset of each batch in the log.
    batch_starts: Vec<u64>,
    next_id: u64,
    epoch: i32,
}

impl Workload {
    fn new(seed: u64, disk: Arc<PowerLossDisk>) -> Self {
        Self {
            rng: Rng::new(seed),
            disk,
            model: Model::default(),
            current: Vec::new(),
            batch_starts: Vec::new(),
            next_id: 0,
            epoch: 0,
        }
    }

    fn run(mut self) -> Model {
        if let Err(e) = self.steps() {
            self.model.power_cut = Some(e.to_string());
        }
        self.model
    }

    fn open(&self) -> Result<(LogManager, SharedLog), strata_storage::Error> {
        let config = ManagerConfig {
            disk: self.disk.clone(),
            threads: 1,
            ..ManagerConfig::default()
        };
        let (manager, _) = LogManager::open(self.disk.root(), log_config(), config)?;
        let log = manager.get_or_create(&partition(), log_config())?;
        Ok((manager, log))
    }

    fn steps(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let (mut manager, mut log) = self.open()?;
        for _ in 0..STEPS {
            match self.rng.below(100) {
                0..70 => {
                    let count = 1 + self.rng.below(4);
                    let mut bytes = record_batch(self.next_id, count);
                    let LeaderAppend::Appended(info) = lock(&log).append_as_leader(&mut bytes, self.epoch)? else {
                        unreachable!("no producer id, no duplicates");
                    };
                    self.batch_starts.push(info.first_offset);
                    for (offset, id) in (info.first_offset..=info.last_offset).zip(self.next_id..) {
                        self.model.written.entry(offset).or_default().push(id);
                        self.current.push(id);
                    }
                    self.next_id += count;
                }
                70..80 => {
                    lock(&log).flush()?;
                    self.model.flushed = self.current.clone();
                }
                80..85 => lock(&log).roll()?,
                85..90 => {
                    manager.checkpoint()?;
                    self.model.truncated_since_checkpoint = false;
                }
                90..96 => {
                    // At a batch's start, as a follower truncates (to where an epoch ends): a truncation into a
                    // batch takes it whole, which a power cut during it could leave half done.
                    let to = match self.rng.below(self.batch_starts.len() as u64 + 1) as usize {
                        i if i == self.batch_starts.len() => self.current.len() as u64,
                        i => self.batch_starts[i],
                    };
                    // What a power cut during the truncation may take.
                    self.model.flushed.truncate(to as usize);
                    let end = manager.truncate_to(&partition(), to)?;
                    self.current.truncate(end as usize);
                    self.batch_starts.retain(|&start| start < end);
                    let kept = self.model.flushed.len().min(end as usize);
                    self.model.flushed.truncate(kept);
                    // As after a leader change, which is when a replica truncates.
                    self.epoch += 1;
                    self.model.truncated_since_checkpoint = true;
                }
                _ => {
                    drop(log);
                    manager.close()?;
                    self.model.flushed = self.current.clone();
                    self.model.truncated_since_checkpoint = false;
                    drop(manager);
                    (manager, log) = self.open()?;
                }
            }
        }
        Ok(())
    }
}

/// A disk that keeps the bytes and entries each fsync made durable; see the module documentation.
#[derive(Debug)]
struct PowerLossDisk {
    root: PathBuf,
    state: Arc<Mutex<DurableState>>,
}

#[derive(Debug, Default)]
struct DurableState {
    /// Each file's bytes as of its last fsync, by inode.
    files: HashMap<u64, Vec<u8>>,
    /// Each directory's entries (name -> inode, whether a directory) as of its last fsync.
    dirs: HashMap<PathBuf, BTreeMap<OsString, Entry>>,
    syncs: u64,
    /// The power goes off at this fsync, which fails, as does every write and fsync after it.
    cut_at: Option<u64>,
    off: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    inode: u64,
    is_dir: bool,
}

impl DurableState {
    fn power(&self) -> io::Result<()> {
        match self.off {
            true => Err(io::Error::other("the power is off")),
            false => Ok(()),
        }
    }
}

/// Counts an fsync; the one at the cut point turns the power off and fails.
fn begin_sync(state: &Mutex<DurableState>) -> io::Result<MutexGuard<'_, DurableState>> {
    let mut state = lock(state);
    state.power()?;
    state.syncs += 1;
    if state.cut_at == Some(state.syncs) {
        state.off = true;
        state.power()?;
    }
    Ok(state)
}

impl PowerLossDisk {
    fn new(root: &Path, cut_at: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            root: root.to_owned(),
            state: Arc::new(Mutex::new(DurableState {
                cut_at,
                ..DurableState::default()
            })),
        })
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Writes into `out` the tree under the root that the disk could hold after the power cut.
    fn surviving_tree(&self, out: &Path, rng: &mut Rng) {
        let state = lock(&self.state);
        survive_dir(&state, &self.root, out, rng);
    }
}

impl Disk for PowerLossDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        lock(&self.state).power()?;
        let inner = OsDisk.open(path, mode)?;
        Ok(Box::new(PowerLossFile {
            inode: fs::metadata(path)?.ino(),
            inner,
            state: self.state.clone(),
        }))
    }

    fn sync_path(&self, path: &Path) -> io::Result<()> {
        let mut state = begin_sync(&self.state)?;
        let meta = fs::metadata(path)?;
        if meta.is_dir() {
            let entries = list(path)?;
            state.dirs.insert(path.to_owned(), entries);
        } else {
            state.files.insert(meta.ino(), fs::read(path)?);
        }
        Ok(())
    }
}

/// A file of [`PowerLossDisk`]: writes go to the real file (the page cache), `sync_data` records its bytes.
#[derive(Debug)]
struct PowerLossFile {
    inode: u64,
    inner: Box<dyn DiskFile>,
    state: Arc<Mutex<DurableState>>,
}

impl DiskFile for PowerLossFile {
    fn len(&mut self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read(offset, len)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        lock(&self.state).power()?;
        self.inner.write(offset, data)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        lock(&self.state).power()?;
        self.inner.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = begin_sync(&self.state)?;
        let len = self.inner.len()?;
        let bytes = self.inner.read(0, len as usize)?;
        state.files.insert(self.inode, bytes);
        Ok(())
    }
}

/// A directory's entries now.
fn list(dir: &Path) -> io::Result<BTreeMap<OsString, Entry>> {
    let mut entries = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        entries.insert(
            entry.file_name(),
            Entry {
                inode: meta.ino(),
                is_dir: meta.is_dir(),
            },
        );
    }
    Ok(entries)
}

/// Builds in `out` what directory `dir` could hold after the power cut: each entry changed since the
/// directory's last fsync as it was or as it is, each file torn between its durable and its current bytes.
fn survive_dir(state: &DurableState, dir: &Path, out: &Path, rng: &mut Rng) {
    fs::create_dir_all(out).unwrap();
    let now = list(dir).unwrap_or_default();
    let durable = state.dirs.get(dir).cloned().unwrap_or_default();
    let names: std::collections::BTreeSet<&OsString> = now.keys().chain(durable.keys()).collect();
    for name in names {
        let (current, old) = (now.get(name).copied(), durable.get(name).copied());
        let survivor = if current == old || rng.below(2) == 0 {
            current
        } else {
            old
        };
        let Some(entry) = survivor else { continue };
        let (path, to) = (dir.join(name), out.join(name));
        if entry.is_dir {
            survive_dir(state, &path, &to, rng);
            continue;
        }
        // The bytes written since the last fsync exist only if the entry is still the same file.
        let written = (current == Some(entry)).then(|| fs::read(&path).unwrap());
        let synced = state.files.get(&entry.inode).map_or(&[][..], Vec::as_slice);
        fs::write(&to, torn(synced, written.as_deref(), rng)).unwrap();
    }
}

/// A file's bytes after a power cut: as of its last fsync (`synced`), with any page of what was written
/// since (`written`) over them, and past the synced length any page possibly never written (zeros); the
/// length anywhere from the shorter of the two to the longer.
fn torn(synced: &[u8], written: Option<&[u8]>, rng: &mut Rng) -> Vec<u8> {
    let Some(written) = written.filter(|w| *w != synced) else {
        return synced.to_vec();
    };
    let (short, long) = (synced.len().min(written.len()), synced.len().max(written.len()));
    let len = match rng.below(3) {
        0 => synced.len(),
        1 => written.len(),
        _ => short + rng.below((long - short) as u64 + 1) as usize,
    };
    let mut out = vec![0u8; len];
    for start in (0..len).step_by(PAGE_BYTES) {
        let end = (start + PAGE_BYTES).min(len);
        let choices: Vec<Option<&[u8]>> = [
            (start < synced.len()).then_some(synced),
            (start < written.len()).then_some(written),
            (start >= synced.len()).then_some(&[][..]),
        ]
        .into_iter()
        .flatten()
        .map(Some)
        .collect();
        let source = choices[rng.below(choices.len() as u64) as usize].unwrap_or(&[]);
        let available = source.len().clamp(start, end);
        out[start..available].copy_from_slice(&source[start..available]);
    }
    out
}

/// SplitMix64: a seeded, dependency-free PRNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
