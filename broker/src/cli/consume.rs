//! `strata consume TOPIC`: prints records, one a line.
//!
//! Where to start (`--from`) is resolved per partition with ListOffsets, asked of each partition's leader.
//! Without `--follow` the end is the log end offset of each partition when the command starts, so the
//! command prints what was there and exits; with it, fetches keep waiting for new records until `--count` is
//! reached or the command is stopped. The fetches go to the partitions' leaders (`fetcher`).

use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, Write};

use anyhow::{Context, bail};
use clap::Args;
use strata_protocol::client::admin::OffsetSpec;
use strata_protocol::client::{FetchOptions, Router};

use super::Bootstrap;
use super::fetcher::Fetcher;
use super::format::Format;
use strata_broker::time::parse_rfc3339;

/// Output is written in blocks of this size (and after every fetch), not a syscall per record.
const STDOUT_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    topic: String,
    /// Where to start: earliest, latest, an offset, or an RFC 3339 time (the first record at or after it).
    #[arg(long, default_value = "earliest", value_parser = StartAt::parse)]
    from: StartAt,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// A template with %k (key) %v (value) %o (offset) %p (partition) %t (timestamp, ms) %h (headers), or
    /// `json`. Each record ends with a newline.
    #[arg(long, default_value = "%v", value_parser = Format::parse)]
    format: Format,
    /// Keep waiting for new records (without it, stop at the end offsets seen at start).
    #[arg(long)]
    follow: bool,
}

/// Where `--from` starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

impl StartAt {
    fn parse(text: &str) -> Result<StartAt, String> {
        match text {
            "earliest" | "beginning" => Ok(StartAt::Earliest),
            "latest" | "end" => Ok(StartAt::Latest),
            _ => match text.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(StartAt::Offset(offset)),
                _ => parse_rfc3339(text).map(StartAt::Time).ok_or_else(|| {
                    format!("`{text}` is not earliest, latest, an offset or an RFC 3339 time like 2026-11-20T10:00:00Z")
                }),
            },
        }
    }
}

/// The offset each of `partitions` starts at.
async fn start_offsets(
    router: &mut Router,
    topic: &str,
    partitions: &[i32],
    from: StartAt,
) -> anyhow::Result<Vec<i64>> {
    let spec = match from {
        StartAt::Offset(offset) => return Ok(vec![offset; partitions.len()]),
        StartAt::Earliest => OffsetSpec::Earliest,
        StartAt::Latest => OffsetSpec::Latest,
        StartAt::Time(ms) => OffsetSpec::Timestamp(ms),
    };
    let found = router.list_offsets(topic, partitions, spec).await?;
    // No record at or after the time: start at the end, where the next record will be.
    let latest = if found.iter().any(|f| f.offset.is_none()) {
        router.list_offsets(topic, partitions, OffsetSpec::Latest).await?
    } else {
        Vec::new()
    };
    Ok(found
        .iter()
        .enumerate()
        .map(|(i, f)| f.offset.or_else(|| latest.get(i).and_then(|l| l.offset)).unwrap_or(0))
        .collect())
}

/// The partitions to read: all of the topic's, or the one asked for if it exists.
pub async fn partitions(router: &mut Router, topic: &str, only: Option<i32>) -> anyhow::Result<Vec<i32>> {
    let all: Vec<i32> = router
        .topic(topic, false)
        .await?
        .partitions
        .iter()
        .map(|p| p.index)
        .collect();
    match only {
        None => Ok(all),
        Some(p) if all.contains(&p) => Ok(vec![p]),
        Some(p) => bail!("topic {topic} has no partition {p} (it has {})", all.len()),
    }
}

/// Log end offsets now, per partition.
pub async fn end_offsets(router: &mut Router, topic: &str, partitions: &[i32]) -> anyhow::Result<Vec<i64>> {
    let ends = router.list_offsets(topic, partitions, OffsetSpec::Latest).await?;
    Ok(ends.iter().map(|e| e.offset.unwrap_or(0)).collect())
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut router = args.bootstrap.router().await?;
    let topic = &args.topic;
    let partitions = partitions(&mut router, topic, args.partition).await?;
    let starts = start_offsets(&mut router, topic, &partitions, args.from).await?;
    // partition -> end offset to stop at
    let mut reading: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    let mut positions = Vec::with_capacity(partitions.len());
    if args.follow {
        for (&p, &start) in partitions.iter().zip(&starts) {
            reading.insert(p, None);
            positions.push((p, start));
        }
    } else {
        let ends = end_offsets(&mut router, topic, &partitions).await?;
        for ((&p, &start), end) in partitions.iter().zip(&starts).zip(ends) {
            if start < end {
                reading.insert(p, Some(end));
                positions.push((p, start));
            }
        }
    }
    let mut fetcher = Fetcher::new(&mut router, topic, positions, FetchOptions::default())?;
    let mut out = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout().lock());
    let mut printed = 0u64;
    let count = args.count.unwrap_or(u64::MAX);
    while !reading.is_empty() && printed < count {
        for fetched in fetcher.next().await?.partitions {
            let Some(end) = reading.get(&fetched.partition).copied() else {
                continue;
            };
            for record in &fetched.records {
                if printed == count || end.is_some_and(|end| record.offset >= end) {
                    break;
                }
                match args.format.write(&mut out, fetched.partition, record) {
                    Ok(()) => printed += 1,
                    // A reader that went away (`| head`) is an ordinary end.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing to standard output"),
                }
            }
            if end.is_some_and(|end| fetched.next_offset >= end) {
                reading.remove(&fetched.partition);
                fetcher.stop(fetched.partition);
            }
        }
        match out.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            flushed => flushed.context("writing to standard output")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_names_offsets_and_times() {
        assert_eq!(StartAt::parse("earliest"), Ok(StartAt::Earliest));
        assert_eq!(StartAt::parse("latest"), Ok(StartAt::Latest));
        assert_eq!(StartAt::parse("42"), Ok(StartAt::Offset(42)));
        assert_eq!(StartAt::parse("1970-01-01T00:00:01Z"), Ok(StartAt::Time(1000)));
        assert!(StartAt::parse("-3").is_err());
        assert!(StartAt::parse("yesterday").is_err());
    }
}
