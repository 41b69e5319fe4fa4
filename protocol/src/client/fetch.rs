//! Fetch: records from several partitions of one topic, decoded.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::records::{Record, decode_batches};
use super::{Client, ClientError, Result, check};

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes` to arrive. Keep it well below the request timeout.
    pub max_wait: Duration,
    pub min_bytes: i32,
    /// The most bytes in the response (the first batch comes whole even if larger).
    pub max_bytes: i32,
    /// The most bytes from each partition.
    pub partition_max_bytes: i32,
}

impl Default for FetchOptions {
    /// Kafka's consumer defaults: `fetch.max.wait.ms` 500, `fetch.max.bytes` 50 MiB,
    /// `max.partition.fetch.bytes` 1 MiB.
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
        }
    }
}

/// What one partition returned.
#[derive(Debug)]
pub struct FetchedPartition {
    pub partition: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the fetch offset, in offset order.
    pub records: Vec<Record>,
    /// Where the next fetch of this partition starts.
    pub next_offset: i64,
}

impl Client {
    /// Fetches `topic`'s partitions from the given offsets (`(partition, offset)` pairs). A partition the
    /// broker answers with an error code fails the whole call.
    pub async fn fetch(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        options: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>> {
        self.fetch_partitions(topic, positions, options)
            .await?
            .into_iter()
            .map(|(_, fetched)| fetched)
            .collect()
    }

    /// Like [`fetch`](Self::fetch), answering partition by partition: each partition's records, or the error
    /// the broker answered for it (a partition whose leader moved, for one). What fails the whole request
    /// (an error for all of it, a broken connection) fails the call.
    pub async fn fetch_partitions(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        options: &FetchOptions,
    ) -> Result<Vec<(i32, Result<FetchedPartition>)>> {
        let partitions = positions
            .iter()
            .map(|&(partition, offset)| {
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(options.partition_max_bytes)
            })
            .collect();
        let max_wait_ms = i32::try_from(options.max_wait.as_millis())
            .map_err(|_| ClientError::Usage(format!("fetch max wait {:?} is too long", options.max_wait)))?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(options.min_bytes)
            .with_max_bytes(options.max_bytes)
            // Sessionless: every request names its partitions (KIP-227 session id 0, epoch -1).
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(partitions),
            ]);
        let response = self.send(request).await?;
        check(response.error_code, None, || format!("fetching from {topic}"))?;
        let mut fetched = Vec::with_capacity(positions.len());
        for topic_response in response.responses {
            for data in topic_response.partitions {
                let index = data.partition_index;
                let from = positions
                    .iter()
                    .find(|(p, _)| *p == index)
                    .map(|(_, offset)| *offset)
                    .ok_or_else(|| {
                        ClientError::Records(format!("the broker answered for unrequested partition {index}"))
                    })?;
                let partition =
                    check(data.error_code, None, || format!("fetching from {topic}-{index}")).and_then(|()| {
                        let decoded = decode_batches(data.records.unwrap_or_default(), from)?;
                        Ok(FetchedPartition {
                            partition: index,
                            high_watermark: data.high_watermark,
                            log_start_offset: data.log_start_offset,
                            records: decoded.records,
                            next_offset: decoded.next_offset.map_or(from, |next| next.max(from)),
                        })
                    });
                fetched.push((index, partition));
            }
        }
        Ok(fetched)
    }
}
