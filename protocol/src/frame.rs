//! Kafka frames: a big-endian `i32` size, then that many bytes.
//!
//! [`FrameCodec`] checks the size before it reserves any memory for the body: a client that announces a
//! 2 GiB frame gets its connection closed, not 2 GiB allocated. Requests and responses share the framing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;
/// The bytes of a frame's size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Why a connection's byte stream cannot be framed. Every variant closes the connection.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("frame size {0} is negative")]
    NegativeSize(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frames, and prefixes outgoing frames with their size.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    frame_bytes_max: usize,
}

impl FrameCodec {
    pub fn new(frame_bytes_max: usize) -> Self {
        Self { frame_bytes_max }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(FRAME_BYTES_MAX_DEFAULT)
    }
}

/// The body size a frame's 4-byte prefix announces, checked against `frame_bytes_max` before anything is
/// allocated for it. Shared by [`FrameCodec`] and the broker's listener, which reads frames itself.
pub fn body_size(prefix: [u8; SIZE_PREFIX_BYTES], frame_bytes_max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
    if size > frame_bytes_max {
        return Err(FrameError::TooLarge {
            size,
            max: frame_bytes_max,
        });
    }
    Ok(size)
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < SIZE_PREFIX_BYTES {
            return Ok(None);
        }
        let size = body_size(
            src[..SIZE_PREFIX_BYTES].try_into().expect("4 bytes"),
            self.frame_bytes_max,
        )?;
        if src.len() < SIZE_PREFIX_BYTES + size {
            // Reserve only once the size is known to be acceptable.
            src.reserve(SIZE_PREFIX_BYTES + size - src.len());
            return Ok(None);
        }
        src.advance(SIZE_PREFIX_BYTES);
        Ok(Some(src.split_to(size)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        let size = i32::try_from(frame.len()).map_err(|_| FrameError::TooLarge {
            size: frame.len(),
            max: i32::MAX as usize,
        })?;
        dst.reserve(SIZE_PREFIX_BYTES + frame.len());
        dst.put_i32(size);
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_whole_however_the_bytes_are_split() {
        let mut codec = FrameCodec::new(1024);
        let mut wire = BytesMut::new();
        codec.encode(Bytes::from_static(b"hello"), &mut wire).unwrap();
        codec.encode(Bytes::from_static(b""), &mut wire).unwrap();
        codec.encode(Bytes::from_static(b"world!"), &mut wire).unwrap();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame.freeze());
            }
        }
        assert_eq!(frames, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
    }

    #[test]
    fn an_oversized_frame_is_refused_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&(i32::MAX).to_be_bytes()[..]);
        assert!(
            matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { size, max: 1024 }) if size == i32::MAX as usize)
        );
        assert!(buf.capacity() < 1024, "nothing was reserved for the announced body");
        let mut negative = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut negative), Err(FrameError::NegativeSize(-5))));
    }
}
