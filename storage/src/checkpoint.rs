//! Checkpoint files: small text files replaced atomically, with a CRC so that a torn or corrupt file is
//! detected rather than believed. [`OffsetCheckpoint`] holds one offset per partition; the leader-epoch
//! checkpoint ([`crate::epochs`]) uses the same framing through `write_lines` and `read_lines`.
//!
//! Kafka's text layout with a CRC-32 (`crc32fast`) line added, so the files stay readable with `cat`:
//!
//! ```text
//! 1                     format version
//! 2                     number of entries
//! orders 0 1834         topic, partition, offset; one line each
//! orders 1 977
//! crc32 8f3a09c1        CRC-32 of every byte above this line, 8 hex digits
//! ```
//!
//! A write goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and the directory is fsynced: a crash
//! leaves either the old file or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::TopicPartition;
use crate::disk::{Disk, OpenMode};
use crate::error::{Error, IoContext};
use crate::log::sync_dir;

const VERSION: &str = "1";
const CRC_PREFIX: &str = "crc32 ";

/// A checkpoint file of offsets by partition.
#[derive(Debug, Clone)]
pub struct OffsetCheckpoint {
    path: PathBuf,
    disk: Arc<dyn Disk>,
}

/// Why a checkpoint could not be believed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("checkpoint {} is corrupt: {reason}", path.display())]
pub struct CorruptCheckpoint {
    pub path: PathBuf,
    pub reason: String,
}

impl OffsetCheckpoint {
    pub fn new(path: impl Into<PathBuf>, disk: Arc<dyn Disk>) -> Self {
        Self {
            path: path.into(),
            disk,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `offsets`: write temp, fsync, rename, fsync the directory.
    pub fn write(&self, offsets: &BTreeMap<TopicPartition, u64>) -> Result<(), Error> {
        let lines: Vec<String> = offsets
            .iter()
            .map(|(tp, offset)| format!("{} {} {offset}", tp.topic, tp.partition))
            .collect();
        write_lines(&*self.disk, &self.path, VERSION, &lines)
    }

    /// Reads the file. A missing file is an empty checkpoint; a file that does not parse or fails its CRC is
    /// `Ok(Err(CorruptCheckpoint))` so the caller can fall back to a safe default.
    pub fn read(&self) -> Result<Result<BTreeMap<TopicPartition, u64>, CorruptCheckpoint>, Error> {
        let Some(lines) = read_lines(&self.path, VERSION)? else {
            return Ok(Ok(BTreeMap::new()));
        };
        Ok(lines.and_then(|lines| {
            parse_offsets(&lines).map_err(|reason| CorruptCheckpoint {
                path: self.path.clone(),
                reason,
            })
        }))
    }
}

fn parse_offsets(lines: &[String]) -> Result<BTreeMap<TopicPartition, u64>, String> {
    let mut offsets = BTreeMap::new();
    for line in lines {
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("bad line `{line}`"));
        };
        let partition = partition.parse().map_err(|_| format!("bad partition in `{line}`"))?;
        let offset = offset.parse().map_err(|_| format!("bad offset in `{line}`"))?;
        if offsets.insert(TopicPartition::new(topic, partition), offset).is_some() {
            return Err(format!("partition {topic}-{partition} is listed twice"));
        }
    }
    Ok(offsets)
}

/// Replaces the checkpoint file at `path` with `version`, the number of entries, `lines` (one entry each, no
/// newline) and a CRC-32 line: written to `<path>.tmp`, fsynced, renamed over `path`, and the directory
/// fsynced, so that a crash leaves either the old file or the new one.
pub(crate) fn write_lines(disk: &dyn Disk, path: &Path, version: &str, lines: &[String]) -> Result<(), Error> {
    write_file(disk, path, version, lines, true)?;
    sync_dir(disk, path.parent().unwrap_or(Path::new(".")))
}

/// [`write_lines`] without any fsync: written to `<path>.tmp` and renamed over `path`. For files written
/// under a partition's lock (producer-state snapshots at a roll), which the caller fsyncs off it; until then
/// a crash may leave the file torn or empty, which its CRC reveals.
pub(crate) fn write_lines_unsynced(disk: &dyn Disk, path: &Path, version: &str, lines: &[String]) -> Result<(), Error> {
    write_file(disk, path, version, lines, false)
}

fn write_file(disk: &dyn Disk, path: &Path, version: &str, lines: &[String], sync: bool) -> Result<(), Error> {
    let mut body = format!("{version}\n{}\n", lines.len());
    for line in lines {
        debug_assert!(!line.contains('\n'), "one entry per line");
        body.push_str(line);
        body.push('\n');
    }
    body.push_str(&format!("{CRC_PREFIX}{:08x}\n", crc32fast::hash(body.as_bytes())));
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = disk.open(&tmp, OpenMode::Truncated)?;
        file.write(0, body.as_bytes())?;
        if sync {
            file.sync_data()?;
        }
        fs::rename(&tmp, path)
    };
    write().context("write checkpoint", path)
}

/// Reads a checkpoint file written by [`write_lines`] and returns its entry lines. `Ok(None)`: there is no
/// file. `Ok(Some(Err(_)))`: the file is not UTF-8, fails its CRC, has another version or another number of
/// entries than its header says.
pub(crate) fn read_lines(path: &Path, version: &str) -> Result<Option<Result<Vec<String>, CorruptCheckpoint>>, Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("read checkpoint", path),
    };
    Ok(Some(parse_lines(&bytes, version).map_err(|reason| CorruptCheckpoint {
        path: path.to_owned(),
        reason,
    })))
}

fn parse_lines(bytes: &[u8], version: &str) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no CRC line")?;
    let crc_line = text[body_end..].trim_end();
    let stored = crc_line.strip_prefix(CRC_PREFIX).ok_or("last line is not the CRC")?;
    let stored = u32::from_str_radix(stored, 16).map_err(|_| "CRC is not hex".to_owned())?;
    let body = &text[..body_end];
    let computed = crc32fast::hash(body.as_bytes());
    if stored != computed {
        return Err(format!("CRC {stored:08x} does not match contents {computed:08x}"));
    }
    let mut lines = body.lines();
    if lines.next() != Some(version) {
        return Err("unknown version".into());
    }
    let count: usize = lines.next().and_then(|l| l.parse().ok()).ok_or("bad entry count")?;
    let entries: Vec<String> = lines.map(str::to_owned).collect();
    if entries.len() != count {
        return Err(format!("{} entries where the header says {count}", entries.len()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;

    fn sample() -> BTreeMap<TopicPartition, u64> {
        [
            (TopicPartition::new("orders", 0), 1834),
            (TopicPartition::new("orders", 1), 977),
            (TopicPartition::new("a.b-c_d", 12), 0),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = OffsetCheckpoint::new(dir.path().join("recovery-point-offset-checkpoint"), OsDisk::shared());
        assert_eq!(
            checkpoint.read().unwrap().unwrap(),
            BTreeMap::new(),
            "missing file is empty"
        );
        checkpoint.write(&sample()).unwrap();
        assert_eq!(checkpoint.read().unwrap().unwrap(), sample());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = OffsetCheckpoint::new(dir.path().join("cp"), OsDisk::shared());
        checkpoint.write(&sample()).unwrap();
        let good = fs::read(checkpoint.path()).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            fs::write(checkpoint.path(), &bad).unwrap();
            assert!(checkpoint.read().unwrap().is_err(), "flip at byte {i} went unnoticed");
        }
        for len in 0..good.len() - 1 {
            fs::write(checkpoint.path(), &good[..len]).unwrap();
            assert!(
                checkpoint.read().unwrap().is_err(),
                "truncation to {len} bytes went unnoticed"
            );
        }
    }
}
