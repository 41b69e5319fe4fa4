//! The disk under a data directory: every write, length change and fsync of segment and checkpoint files goes
//! through [`Disk`] and [`DiskFile`], so that a test can put a disk under the storage engine that loses power.
//!
//! [`DiskFile`] has the shape of redb's `StorageBackend`: positioned reads and writes, length, `set_len` and
//! `sync_data`, nothing else. [`Disk`] opens such files and fsyncs a path (a directory, after files were
//! created, renamed or removed in it; a file written elsewhere, such as a mmapped index or a rolled segment
//! fsynced on another thread). Renames and removals themselves stay plain `std::fs` calls: POSIX makes them
//! durable only when their directory is fsynced, which goes through [`Disk::sync_path`], so a power-loss disk
//! learns of them there.
//!
//! What does not go through it: reads of checkpoint files (a disk only has to decide what survives; reading
//! goes to the files as they are) and the index maps, which memmap2 needs real files for; their fsync does.
//! [`OsDisk`] is the disk of every server.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open file: redb's `StorageBackend` shape. Methods take `&mut self`: a caller holds the file alone
/// (segments keep theirs in a locked [`crate::handles::Slot`]).
#[allow(clippy::len_without_is_empty)] // redb's shape: a length to read, not a collection
pub trait DiskFile: Send + fmt::Debug {
    /// The file's length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// Exactly `len` bytes at `offset`; `UnexpectedEof` if the file ends first.
    fn read(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes every byte written so far, and the length, survive a power loss.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// How [`Disk::open`] treats a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist; it is opened for reading and writing as it is.
    Existing,
    /// The file is created if missing and emptied if not.
    Truncated,
}

/// Opens files and fsyncs paths; see the module documentation.
pub trait Disk: Send + Sync + fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    /// fsyncs the file or directory at `path`: for a directory, the entries created, renamed or removed in it.
    fn sync_path(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's files.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsDisk;

impl OsDisk {
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

impl Disk for OsDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let file = match mode {
            OpenMode::Existing => OpenOptions::new().read(true).write(true).open(path)?,
            OpenMode::Truncated => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?,
        };
        Ok(Box::new(OsFile(file)))
    }

    fn sync_path(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A file of [`OsDisk`].
#[derive(Debug)]
pub struct OsFile(pub File);

impl DiskFile for OsFile {
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        // Through the descriptor's offset rather than `pread`: `read_to_end` fills the buffer's spare capacity
        // without zeroing it first, and a memset of a 1 MiB fetch the kernel is about to overwrite costs more
        // than the extra `lseek`. `&mut self` makes the descriptor's offset ours.
        self.0.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        Read::by_ref(&mut self.0).take(len as u64).read_to_end(&mut buf)?;
        if buf.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} run past the end"),
            ));
        }
        Ok(buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}
