//! Moving a consumer group's committed offsets: the plan (each partition's current and new offset, from
//! ListOffsets, the group's commits and where to move) and committing it, as `strata group reset-offsets`
//! and the web console's reset both do, over a Kafka client ([`Router`]): a group's requests go to its
//! coordinator, ListOffsets to each partition's leader. The commit is an admin tool's, outside any
//! generation, which the coordinator accepts only while the group has no members.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use kafka_protocol::ResponseError;
use strata_protocol::client::admin::{ListedOffset, OffsetSpec};
use strata_protocol::client::{ClientError, Router};

/// `--topic T` or `--topic T:P1,P2` (also `share-group reset-offsets`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    /// `None`: every partition of the topic.
    pub partitions: Option<Vec<i32>>,
}

impl TopicPartitions {
    /// The partitions meant, checked against the topic as the cluster describes it: all of them, or the
    /// ones named (sorted, once each). Fails on a partition the topic does not have.
    pub async fn resolve(&self, router: &mut Router) -> anyhow::Result<Vec<i32>> {
        let topic = self.topic.as_str();
        let all: Vec<i32> = router
            .topic(topic, false)
            .await?
            .partitions
            .iter()
            .map(|p| p.index)
            .collect();
        Ok(match &self.partitions {
            None => all,
            Some(wanted) => {
                if let Some(missing) = wanted.iter().find(|p| !all.contains(p)) {
                    bail!("topic {topic} has no partition {missing} (it has {})", all.len());
                }
                let mut wanted = wanted.clone();
                wanted.sort_unstable();
                wanted.dedup();
                wanted
            }
        })
    }

    pub fn parse(text: &str) -> Result<TopicPartitions, String> {
        let bad = || format!("`{text}` is not TOPIC or TOPIC:PARTITION,PARTITION…");
        let (topic, partitions) = match text.split_once(':') {
            None => (text, None),
            Some((topic, list)) => {
                let partitions = list
                    .split(',')
                    .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                    .collect::<Option<Vec<i32>>>()
                    .ok_or_else(bad)?;
                (topic, Some(partitions))
            }
        };
        if topic.is_empty() {
            return Err(bad());
        }
        Ok(TopicPartitions {
            topic: topic.to_owned(),
            partitions,
        })
    }
}

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
    Shift(i64),
}

/// One line of the reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub topic: String,
    pub partition: i32,
    pub current: Option<i64>,
    pub new: i64,
}

/// The refusals an operator can act on, in words; other errors as the client words them.
pub fn group_error(group: &str, error: ClientError) -> anyhow::Error {
    match error.kafka_error() {
        Some(ResponseError::NonEmptyGroup | ResponseError::UnknownMemberId) => {
            anyhow::anyhow!("group {group} has active members; stop them first")
        }
        Some(ResponseError::GroupIdNotFound) => anyhow::anyhow!("group {group} does not exist"),
        _ => error.into(),
    }
}

/// The new committed offset of each partition of `topics` for `group`, from ListOffsets, the current commits
/// and `target`. Refused while the group has members, before anything is computed: their commits would race
/// the reset. Shared by `strata group reset-offsets` and the web console.
pub async fn plan_reset(
    router: &mut Router,
    group: &str,
    topics: &[TopicPartitions],
    target: Target,
) -> anyhow::Result<Vec<Planned>> {
    // Kafka's tool refuses a group with members before computing anything: their commits would race ours.
    let description = router
        .with_coordinator(group, async |coordinator| coordinator.describe_group(group).await)
        .await
        .map_err(|e| group_error(group, e))?;
    if !description.members.is_empty() {
        bail!("group {group} has active members; stop them first");
    }
    let mut plan: Vec<Planned> = Vec::new();
    for spec in topics {
        let topic = spec.topic.as_str();
        let partitions = spec.resolve(router).await?;
        let committed = router
            .with_coordinator(group, async |coordinator| {
                coordinator
                    .fetch_committed_offsets(group, Some(&[(topic, &partitions)]))
                    .await
            })
            .await?;
        // By partition: a topic of 10,000 partitions would otherwise be searched 10,000 times.
        let committed: BTreeMap<i32, i64> = committed
            .into_iter()
            .filter(|c| c.topic == topic)
            .filter_map(|c| Some((c.partition, c.offset?)))
            .collect();
        let current = |p: i32| committed.get(&p).copied();
        let earliest = offsets_or_zero(router.list_offsets(topic, &partitions, OffsetSpec::Earliest).await?);
        let latest = offsets_or_zero(router.list_offsets(topic, &partitions, OffsetSpec::Latest).await?);
        let by_time = match target {
            Target::Time(ms) => Some(
                router
                    .list_offsets(topic, &partitions, OffsetSpec::Timestamp(ms))
                    .await?,
            ),
            _ => None,
        };
        for (i, &p) in partitions.iter().enumerate() {
            let (low, high) = (earliest[i], latest[i].max(earliest[i]));
            let new = match target {
                Target::Earliest => low,
                Target::Latest => high,
                Target::Offset(offset) => offset.clamp(low, high),
                // No record at or after the time: the end, where the next record will be.
                Target::Time(_) => by_time.as_ref().and_then(|found| found[i].offset).unwrap_or(high),
                Target::Shift(n) => {
                    let from = current(p).with_context(|| {
                        format!("cannot shift {topic}-{p}: group {group} has no committed offset for it")
                    })?;
                    from.saturating_add(n).clamp(low, high)
                }
            };
            plan.push(Planned {
                topic: topic.to_owned(),
                partition: p,
                current: current(p),
                new,
            });
        }
    }
    Ok(plan)
}

/// Commits `plan` the way an admin tool does: outside any generation, which the coordinator accepts only
/// while the group has no members.
pub async fn commit_reset(router: &mut Router, group: &str, plan: &[Planned]) -> anyhow::Result<()> {
    let offsets: Vec<(&str, i32, i64)> = plan
        .iter()
        .map(|planned| (planned.topic.as_str(), planned.partition, planned.new))
        .collect();
    router
        .with_coordinator(group, async |coordinator| {
            coordinator.commit_group_offsets(group, &offsets).await
        })
        .await
        .map_err(|e| group_error(group, e))?;
    Ok(())
}

fn offsets_or_zero(listed: Vec<ListedOffset>) -> Vec<i64> {
    listed.iter().map(|l| l.offset.unwrap_or(0)).collect()
}

/// The log end offset of each of `partitions` (topic, index), asked per topic; a topic or partition that is
/// gone has none.
pub async fn log_end_offsets<'a>(
    router: &mut Router,
    partitions: impl Iterator<Item = &'a (String, i32)>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut ends = BTreeMap::new();
    for (topic, ps) in by_topic {
        match router.list_offsets(topic, &ps, OffsetSpec::Latest).await {
            Ok(listed) => {
                for l in listed {
                    if let Some(end) = l.offset {
                        ends.insert((topic.to_owned(), l.partition), end);
                    }
                }
            }
            Err(e) if e.kafka_error().is_some() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_take_an_optional_partition_list() {
        assert_eq!(
            TopicPartitions::parse("orders"),
            Ok(TopicPartitions {
                topic: "orders".into(),
                partitions: None
            })
        );
        assert_eq!(
            TopicPartitions::parse("orders:0,2"),
            Ok(TopicPartitions {
                topic: "orders".into(),
                partitions: Some(vec![0, 2])
            })
        );
        for bad in ["", ":1", "orders:", "orders:a", "orders:-1", "orders:1,,2"] {
            assert!(TopicPartitions::parse(bad).is_err(), "{bad}");
        }
    }
}
