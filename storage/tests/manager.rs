//! The log manager: a data directory's logs, checkpoints, clean-shutdown marker and background upkeep.

use std::path::Path;
use std::time::{Duration, Instant};

use strata_storage::batch::build::{Record, batch};
use strata_storage::manager::{CLEAN_SHUTDOWN_MARKER, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use strata_storage::{LogConfig, LogManager, ManagerConfig, OpenReport, TopicPartition};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn one_record(timestamp: i64) -> Vec<u8> {
    batch(&[Record {
        value: Some(b"hello"),
        timestamp,
        ..Default::default()
    }])
}

fn open(dir: &Path) -> (LogManager, OpenReport) {
    LogManager::open(dir, LogConfig::default(), ManagerConfig::default()).unwrap()
}

fn fill(manager: &LogManager, tp: &TopicPartition, records: usize) {
    let log = manager.get_or_create(tp, LogConfig::default()).unwrap();
    let mut log = log.lock().unwrap();
    for _ in 0..records {
        log.append(&mut one_record(now_ms()), 0).unwrap();
    }
}

#[test]
fn a_clean_close_leaves_a_marker_and_checkpoints_that_the_next_open_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, report) = open(dir.path());
    assert!(!report.clean_shutdown);
    let orders = TopicPartition::new("orders", 0);
    let audit = TopicPartition::new("audit-log", 3);
    fill(&manager, &orders, 10);
    fill(&manager, &audit, 4);
    manager
        .get(&orders)
        .unwrap()
        .lock()
        .unwrap()
        .delete_records_before(6)
        .unwrap();
    manager.close().unwrap();
    drop(manager);
    assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    let recovery = std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap();
    assert!(
        recovery.contains("orders 0 10\n") && recovery.contains("audit-log 3 4\n"),
        "{recovery}"
    );

    let (manager, report) = open(dir.path());
    assert!(report.clean_shutdown);
    assert_eq!((report.logs, report.logs_recovered), (2, 0));
    assert!(
        !dir.path().join(CLEAN_SHUTDOWN_MARKER).exists(),
        "a crash from now on must look unclean"
    );
    let orders = manager.get(&orders).unwrap();
    let orders = orders.lock().unwrap();
    assert_eq!(
        (orders.log_start_offset(), orders.log_end_offset()),
        (6, 10),
        "DeleteRecords survives"
    );
    assert_eq!(manager.get(&audit).unwrap().lock().unwrap().log_end_offset(), 4);
}

#[test]
fn without_the_marker_logs_recover_from_their_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("events", 0);
    {
        let (manager, _) = open(dir.path());
        fill(&manager, &tp, 5);
        manager.get(&tp).unwrap().lock().unwrap().flush().unwrap();
        manager.checkpoint().unwrap();
        fill(&manager, &tp, 3);
        // Dropped without close: as after a SIGKILL, no marker.
    }
    let (manager, report) = open(dir.path());
    assert!(!report.clean_shutdown);
    assert_eq!(report.logs_recovered, 1);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(
        manager.get(&tp).unwrap().lock().unwrap().log_end_offset(),
        8,
        "the page cache kept everything"
    );
}

#[test]
fn a_corrupt_checkpoint_is_ignored_and_everything_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("events", 0);
    {
        let (manager, _) = open(dir.path());
        fill(&manager, &tp, 5);
        manager.close().unwrap();
        drop(manager);
    }
    std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_MARKER)).unwrap();
    let checkpoint = dir.path().join(RECOVERY_POINT_CHECKPOINT);
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    bytes[4] ^= 0x10;
    std::fs::write(&checkpoint, bytes).unwrap();
    std::fs::write(dir.path().join(LOG_START_OFFSET_CHECKPOINT), b"garbage").unwrap();

    let (manager, report) = open(dir.path());
    assert_eq!(report.logs_recovered, 1);
    assert_eq!(manager.get(&tp).unwrap().lock().unwrap().log_end_offset(), 5);
}

#[test]
fn one_data_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = open(dir.path());
    let second = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default());
    assert!(second.unwrap_err().to_string().contains("another Strata"));
    manager.close().unwrap();
    drop(manager);
    open(dir.path());
}

#[test]
fn deleted_logs_leave_nothing_behind_and_foreign_directories_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("__cluster_metadata-0")).unwrap();
    std::fs::write(
        dir.path().join("__cluster_metadata-0").join("raft.log"),
        b"not a segment",
    )
    .unwrap();
    let (manager, _) = open(dir.path());
    let tp = TopicPartition::new("short-lived", 1);
    fill(&manager, &tp, 2);
    assert!(manager.delete(&tp).unwrap());
    assert!(!manager.delete(&tp).unwrap());
    assert!(manager.get(&tp).is_none());
    assert!(!dir.path().join("short-lived-1").exists());
    manager.close().unwrap();
    drop(manager);
    let (manager, report) = open(dir.path());
    assert_eq!(report.logs, 0);
    assert!(dir.path().join("__cluster_metadata-0").join("raft.log").exists());
    drop(manager);
}

#[test]
fn background_upkeep_applies_retention_and_writes_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = open(dir.path());
    let manager = std::sync::Arc::new(manager);
    let tp = TopicPartition::new("expiring", 0);
    let mut config = LogConfig::default();
    config.set("retention.ms", "60000").unwrap();
    config.set("segment.bytes", "100").unwrap(); // a segment per batch: retention deletes whole segments
    let log = manager.get_or_create(&tp, config).unwrap();
    {
        let mut log = log.lock().unwrap();
        for _ in 0..3 {
            log.append(&mut one_record(now_ms() - 3_600_000), 0).unwrap();
        }
        log.append(&mut one_record(now_ms()), 0).unwrap();
    }
    let background = manager.start_background(Duration::from_millis(20), Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().log_start_offset() < 3 {
        assert!(Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let checkpoint = dir.path().join(LOG_START_OFFSET_CHECKPOINT);
    while !std::fs::read_to_string(&checkpoint)
        .unwrap_or_default()
        .contains("expiring 0 3\n")
    {
        assert!(Instant::now() < deadline, "the log start offset was never checkpointed");
        std::thread::sleep(Duration::from_millis(5));
    }
    background.stop();
    assert_eq!(log.lock().unwrap().log_end_offset(), 4);
}

/// The flush observer hears of every fsync of a log: a `flush.messages=1` log's per-append flush, on a log
/// created through the manager and on one the manager found on disk when it opened.
#[test]
fn every_flush_of_a_log_is_observed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use strata_storage::FlushObserver;

    let dir = tempfile::tempdir().unwrap();
    let flushes = Arc::new(AtomicU64::new(0));
    let counted = flushes.clone();
    let config = || ManagerConfig {
        flush_observer: Some(FlushObserver::new({
            let counted = counted.clone();
            move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })),
        ..ManagerConfig::default()
    };
    let every_record = LogConfig {
        flush_messages: Some(1),
        ..LogConfig::default()
    };
    let orders = TopicPartition::new("orders", 0);
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), config()).unwrap();
    let log = manager.get_or_create(&orders, every_record.clone()).unwrap();
    for _ in 0..3 {
        log.lock().unwrap().append(&mut one_record(now_ms()), 0).unwrap();
    }
    assert!(flushes.load(Ordering::Relaxed) >= 3, "one fsync per append");
    drop(log);
    manager.close().unwrap();
    drop(manager);

    let before = flushes.load(Ordering::Relaxed);
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), config()).unwrap();
    let log = manager.get(&orders).expect("found on disk");
    log.lock().unwrap().set_config(every_record);
    log.lock().unwrap().append(&mut one_record(now_ms()), 0).unwrap();
    assert!(
        flushes.load(Ordering::Relaxed) > before,
        "a reopened log is observed too"
    );
}
