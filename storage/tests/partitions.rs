//! A broker with 20,000 partitions must stay far below `vm.max_map_count` (65,530 by default) and the
//! descriptor limit: only a bounded number of index maps and log files are open at once, whatever the number
//! of partitions. Counted from `/proc/self/maps` and `/proc/self/fd`.

use std::path::PathBuf;

use strata_storage::batch::build::{Record, batch};
use strata_storage::{HANDLES_MAX_DEFAULT, LogConfig, LogManager, ManagerConfig, ReadLimits, TopicPartition};

const PARTITIONS: usize = 20_000;
const MAP_COUNT_MAX: usize = 65_530;

fn count_lines(path: &str) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

fn count_entries(path: &str) -> usize {
    std::fs::read_dir(path).unwrap().count()
}

/// tmpfs when there is one: the test is about maps and descriptors, and 40,000 directory fsyncs on a real
/// disk would make it slow without making it stronger.
fn scratch_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

#[test]
fn twenty_thousand_partitions_stay_far_below_the_map_and_descriptor_limits() {
    let dir = scratch_dir();
    let maps_before = count_lines("/proc/self/maps");
    let fds_before = count_entries("/proc/self/fd");

    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let mut config = LogConfig::default();
    // An index entry for every batch after the first, so each partition maps both of its indexes.
    config.set("index.interval.bytes", "0").unwrap();
    let value = [7u8; 100];
    // A current timestamp: an old one would roll a segment per append (segment.ms counts from it).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = [Record {
        value: Some(&value),
        timestamp: now_ms,
        ..Default::default()
    }];
    let topics: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|i| TopicPartition::new(format!("topic-{}", i / 10), (i % 10) as i32))
        .collect();
    for tp in &topics {
        let log = manager.get_or_create(tp, config.clone()).unwrap();
        let mut log = log.lock().unwrap();
        for _ in 0..3 {
            log.append(&mut batch(&record), 0).unwrap();
        }
        // A lookup by time and a read of the middle batch go through both indexes.
        assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
        assert_eq!(log.read(1, ReadLimits::bytes(1)).unwrap().next_offset, 2);
    }

    let maps = count_lines("/proc/self/maps") - maps_before;
    let fds = count_entries("/proc/self/fd").saturating_sub(fds_before);
    println!("{PARTITIONS} partitions: {maps} new maps, {fds} new descriptors (bound {HANDLES_MAX_DEFAULT})");
    assert!(
        maps <= HANDLES_MAX_DEFAULT + 64,
        "{maps} maps for {PARTITIONS} partitions"
    );
    assert!(maps_before + maps < MAP_COUNT_MAX / 4, "far below vm.max_map_count");
    assert!(
        fds <= HANDLES_MAX_DEFAULT + 64,
        "{fds} descriptors for {PARTITIONS} partitions"
    );

    // Every partition is still fully usable after its handles were evicted.
    for tp in topics.iter().step_by(97) {
        let log = manager.get(tp).unwrap();
        let mut log = log.lock().unwrap();
        assert_eq!(log.read(0, ReadLimits::bytes(1 << 20)).unwrap().next_offset, 3);
        log.append(&mut batch(&record), 0).unwrap();
    }
    manager.close().unwrap();
    drop(manager);

    // And all of them reopen.
    let (manager, report) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    assert_eq!(report.logs, PARTITIONS);
    assert!(report.clean_shutdown);
    assert_eq!(manager.get(&topics[97]).unwrap().lock().unwrap().log_end_offset(), 4);
    assert_eq!(manager.get(&topics[1]).unwrap().lock().unwrap().log_end_offset(), 3);
    assert!(count_lines("/proc/self/maps") - maps_before <= HANDLES_MAX_DEFAULT + 64);
}
