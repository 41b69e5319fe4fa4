//! Small files that are replaced whole and guarded by a CRC-32: the log store's state and snapshots.
//!
//! Layout, little-endian:
//!
//! ```text
//! magic      4 bytes   names the kind of file and its format version
//! body_len   u32       bytes of body
//! crc        u32       CRC-32 (crc32fast) of body
//! body       body_len  a prost-encoded message
//! ```
//!
//! A file is replaced by writing `<name>.tmp`, fsyncing it, renaming it over `<name>` and fsyncing the
//! directory: after a crash the file is either the old one or the new one, never a mix. The CRC catches what
//! the file system does not (bit rot, a file truncated by hand); such a file is an error, not something to
//! repair, because it may hold a vote, and forgetting a vote could let this node vote twice in one term.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Bytes before the body.
pub const HEADER_BYTES: usize = 12;
const _: () = assert!(HEADER_BYTES == 4 + 4 + 4);

/// Why the bytes of a checked file are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckedFileError {
    #[error("{0} bytes, shorter than the {HEADER_BYTES}-byte header")]
    TooShort(usize),
    #[error("magic {found:?}, expected {expected:?}")]
    BadMagic { found: [u8; 4], expected: [u8; 4] },
    #[error("body of {len} bytes, over the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("header says {header} body bytes, {present} present")]
    LengthMismatch { header: usize, present: usize },
    #[error("CRC-32 {computed:08x} of the body, header says {stored:08x}")]
    Crc { stored: u32, computed: u32 },
}

/// Header and body, ready to write.
pub fn frame(magic: [u8; 4], body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("checked file bodies are far below 4 GiB");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(&magic);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// The body of `bytes`, checked: magic, length (against `body_bytes_max` and the bytes present) and CRC.
pub fn unframe(magic: [u8; 4], bytes: &[u8], body_bytes_max: usize) -> Result<&[u8], CheckedFileError> {
    if bytes.len() < HEADER_BYTES {
        return Err(CheckedFileError::TooShort(bytes.len()));
    }
    let (header, body) = bytes.split_at(HEADER_BYTES);
    let found: [u8; 4] = header[0..4].try_into().expect("4 bytes");
    if found != magic {
        return Err(CheckedFileError::BadMagic { found, expected: magic });
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    if len > body_bytes_max {
        return Err(CheckedFileError::TooLarge {
            len,
            max: body_bytes_max,
        });
    }
    if len != body.len() {
        return Err(CheckedFileError::LengthMismatch {
            header: len,
            present: body.len(),
        });
    }
    let stored = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CheckedFileError::Crc { stored, computed });
    }
    Ok(body)
}

/// Replaces `path` with `bytes`: write a temp file, fsync, rename, fsync the directory.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The bytes of `path`, or `None` if there is no such file.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes created, renamed and removed directory entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 4] = *b"TST1";

    #[test]
    fn frame_round_trip_and_damage() {
        let bytes = frame(MAGIC, b"hello");
        assert_eq!(unframe(MAGIC, &bytes, 64), Ok(&b"hello"[..]));
        assert!(matches!(
            unframe(*b"XXXX", &bytes, 64),
            Err(CheckedFileError::BadMagic { .. })
        ));
        assert_eq!(
            unframe(MAGIC, &bytes, 4),
            Err(CheckedFileError::TooLarge { len: 5, max: 4 })
        );
        assert_eq!(
            unframe(MAGIC, &bytes[..bytes.len() - 1], 64),
            Err(CheckedFileError::LengthMismatch { header: 5, present: 4 })
        );
        assert_eq!(unframe(MAGIC, &bytes[..3], 64), Err(CheckedFileError::TooShort(3)));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            unframe(MAGIC, &flipped, 64),
            Err(CheckedFileError::Crc { .. })
        ));
    }

    #[test]
    fn replace_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(read(&path).unwrap(), None);
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!path.with_extension("tmp").exists());
    }
}
