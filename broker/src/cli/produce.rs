//! `strata produce TOPIC`: one record per line of standard input.
//!
//! A thread reads stdin in chunks of up to [`CHUNK_BYTES`] and hands them over a bounded channel; lines are
//! sliced out of the chunks (no copy, except for a line split across two chunks) and become records. Piped
//! input fills large batches; typed input is sent at most `--linger-ms` after each line.

use std::io::Read;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::Headers;
use tokio::sync::mpsc;

use super::producer::{OnAck, Producer};
use super::{Bootstrap, ProducerArgs, parse_key_value};

/// Bytes read from stdin at once.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks read ahead of the producer, at most.
const CHUNKS_AHEAD_MAX: usize = 4;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    topic: String,
    /// Split each line into key and value at the first SEP (a line without SEP is an error). Without it,
    /// the line is the value and the key is null.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Headers added to every record, as k=v,k2=v2.
    #[arg(long, value_name = "K=V,…", value_delimiter = ',', value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition (default: by key hash, or sticky when there is no key).
    #[arg(long)]
    partition: Option<i32>,
    #[command(flatten)]
    producer: ProducerArgs,
}

/// Counts acknowledged records.
#[derive(Debug, Default)]
struct Count(u64);

impl OnAck for Count {
    fn acked(&mut self, _now: Instant, enqueued: &[Instant]) {
        self.0 += enqueued.len() as u64;
    }
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let mut router = args.bootstrap.router().await?;
    let mut producer = Producer::new(&mut router, &args.topic, args.partition, &args.producer, Count(0)).await?;
    let headers: Headers = args
        .headers
        .iter()
        .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(Bytes::from(v.clone()))))
        .collect();
    let mut lines = LineSplitter::default();
    let mut chunks = read_stdin();
    let mut line_number = 0u64;
    loop {
        let chunk = match producer.linger_deadline() {
            // Something is waiting to go: wait for more input only until its linger ends.
            Some(deadline) => tokio::select! {
                chunk = chunks.recv() => chunk,
                () = tokio::time::sleep_until(deadline.into()) => {
                    producer.send_lingering(Instant::now()).await?;
                    continue;
                }
            },
            None => chunks.recv().await,
        };
        let (last, chunk) = match chunk {
            Some(chunk) => (false, chunk.context("reading standard input")?),
            None => (true, Bytes::new()),
        };
        let now = Instant::now();
        let timestamp_ms = now_ms();
        for line in lines.split(chunk, last) {
            line_number += 1;
            let (key, value) = split_key(line, args.key_separator.as_deref())
                .with_context(|| format!("line {line_number} has no key separator"))?;
            producer
                .send(key, Some(value), headers.clone(), timestamp_ms, now)
                .await?;
        }
        if last {
            break;
        }
    }
    producer.flush().await?;
    eprintln!("{} records produced", producer.on_ack().0);
    Ok(())
}

/// Milliseconds since the epoch, for record timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Chunks of stdin from a reader thread; `None` at the end of input.
fn read_stdin() -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0; CHUNK_BYTES];
            let read = match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(read);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the producer stopped
            }
        }
    });
    rx
}

/// Splits a stream of chunks into lines (without their `\n`).
#[derive(Debug, Default)]
struct LineSplitter {
    /// The start of a line whose end has not arrived yet.
    partial: BytesMut,
}

impl LineSplitter {
    /// The lines that end in `chunk`; with `last`, also the final line if the input did not end in `\n`.
    fn split(&mut self, mut chunk: Bytes, last: bool) -> Vec<Bytes> {
        let mut lines = Vec::new();
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let line = chunk.split_to(end + 1).slice(..end);
            if self.partial.is_empty() {
                lines.push(line);
            } else {
                self.partial.extend_from_slice(&line);
                lines.push(self.partial.split().freeze());
            }
        }
        self.partial.extend_from_slice(&chunk);
        if last && !self.partial.is_empty() {
            lines.push(self.partial.split().freeze());
        }
        lines
    }
}

/// Splits a line into key and value at the first `separator`; `None` if a separator is given and absent.
fn split_key(line: Bytes, separator: Option<&str>) -> Option<(Option<Bytes>, Bytes)> {
    let Some(separator) = separator.map(str::as_bytes) else {
        return Some((None, line));
    };
    let at = line.windows(separator.len()).position(|w| w == separator)?;
    Some((Some(line.slice(..at)), line.slice(at + separator.len()..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.split(Bytes::from_static(b"a\nbb"), false), [&b"a"[..]]);
        assert!(splitter.split(Bytes::from_static(b"b"), false).is_empty());
        assert_eq!(
            splitter.split(Bytes::from_static(b"b\n\nc"), false),
            [&b"bbbb"[..], &b""[..]]
        );
        assert_eq!(splitter.split(Bytes::new(), true), [&b"c"[..]]);
        assert!(splitter.split(Bytes::new(), true).is_empty());
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        let line = Bytes::from_static(b"k::v::w");
        assert_eq!(
            split_key(line.clone(), Some("::")),
            Some((Some(Bytes::from_static(b"k")), Bytes::from_static(b"v::w")))
        );
        assert_eq!(split_key(line.clone(), None), Some((None, line.clone())));
        assert_eq!(split_key(line, Some("|")), None);
    }
}
