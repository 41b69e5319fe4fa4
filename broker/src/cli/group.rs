//! `strata group list | describe | delete | reset-offsets`: consumer groups, as `kafka-consumer-groups` shows
//! and changes them. `list` shows each group's type (classic, consumer, share); `describe` describes a
//! KIP-848 consumer group through ConsumerGroupDescribe (DescribeGroups answers those `Dead`, as Kafka
//! does) and any other through DescribeGroups.
//!
//! `reset-offsets` computes a new committed offset per partition (from ListOffsets, the current commits and
//! the flag given), prints the plan, and with `--execute` commits it the way an admin tool does: outside any
//! generation, which the coordinator accepts only while the group has no members.
//!
//! On a cluster, a group's requests go to its coordinator (FindCoordinator, through the [`Router`]),
//! ListOffsets to each partition's leader, and `list` asks every broker for the groups it coordinates.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::ResponseError;
use strata_protocol::client::admin::{
    ConsumerGroupDescription, GroupDescription, ListedOffset, OffsetSpec, decode_consumer_assignment,
};
use strata_protocol::client::{ClientError, Router};

use super::Bootstrap;
use super::format::print_table;
use super::time::parse_rfc3339;

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List the groups with their states.
    List,
    /// Show a group's state, members with their assignments, and per partition the committed offset, the
    /// log end offset and the lag.
    Describe { group: String },
    /// Delete a group and its committed offsets (refused while it has members).
    Delete { group: String },
    /// Move a group's committed offsets (refused while it has members).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
#[command(group(ArgGroup::new("mode").required(true).args(["dry_run", "execute"])))]
struct ResetArgs {
    group: String,
    /// A topic, with all its partitions or only those listed (`orders:0,2`); repeatable.
    #[arg(long = "topic", required = true, value_name = "TOPIC[:P1,P2…]", value_parser = TopicPartitions::parse)]
    topics: Vec<TopicPartitions>,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset (nothing left to read).
    #[arg(long)]
    to_latest: bool,
    /// To this offset, or the nearest one in the log (between its start and end).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record at or after this RFC 3339 time (2026-11-20T10:00:00Z); the log end if none is.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// By N (negative: back) from the committed offset, kept between the log start and end.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Print the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

/// `--topic T` or `--topic T:P1,P2` (also `share-group reset-offsets`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicPartitions {
    pub(super) topic: String,
    /// `None`: every partition of the topic.
    pub(super) partitions: Option<Vec<i32>>,
}

impl TopicPartitions {
    pub(super) fn parse(text: &str) -> Result<TopicPartitions, String> {
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

fn parse_datetime(text: &str) -> Result<i64, String> {
    parse_rfc3339(text).ok_or_else(|| format!("`{text}` is not an RFC 3339 time like 2026-11-20T10:00:00Z"))
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
    Shift(i64),
}

impl ResetArgs {
    fn target(&self) -> Target {
        match (
            self.to_earliest,
            self.to_latest,
            self.to_offset,
            self.to_datetime,
            self.shift_by,
        ) {
            (true, ..) => Target::Earliest,
            (_, true, ..) => Target::Latest,
            (_, _, Some(offset), ..) => Target::Offset(offset),
            (_, _, _, Some(ms), _) => Target::Time(ms),
            (_, _, _, _, Some(n)) => Target::Shift(n),
            _ => unreachable!("clap requires one target"),
        }
    }
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut router = args.bootstrap.router().await?;
    match args.command {
        GroupCommand::List => list(&mut router).await,
        GroupCommand::Describe { group } => describe(&mut router, &group).await,
        GroupCommand::Delete { group } => {
            router
                .with_coordinator(&group, async |coordinator| coordinator.delete_group(&group).await)
                .await
                .map_err(|e| group_error(&group, e))?;
            println!("Deleted group {group}.");
            Ok(())
        }
        GroupCommand::ResetOffsets(reset) => reset_offsets(&mut router, reset).await,
    }
}

/// The refusals an operator can act on, in words; other errors as the client words them.
fn group_error(group: &str, error: ClientError) -> anyhow::Error {
    match error.kafka_error() {
        Some(ResponseError::NonEmptyGroup | ResponseError::UnknownMemberId) => {
            anyhow::anyhow!("group {group} has active members; stop them first")
        }
        Some(ResponseError::GroupIdNotFound) => anyhow::anyhow!("group {group} does not exist"),
        _ => error.into(),
    }
}

async fn list(router: &mut Router) -> anyhow::Result<()> {
    let mut groups = router.list_groups().await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    if groups.is_empty() {
        return Ok(());
    }
    let rows = groups
        .into_iter()
        .map(|g| {
            vec![
                g.group_id,
                g.group_type.unwrap_or_else(|| "-".into()),
                g.state.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["GROUP", "TYPE", "STATE"], rows);
    Ok(())
}

/// One partition of `describe`: the commit, and the member it is assigned to.
#[derive(Debug, Default)]
struct PartitionRow {
    committed: Option<i64>,
    member: Option<String>,
}

/// The partitions of `describe`, by topic and partition.
type Partitions = BTreeMap<(String, i32), PartitionRow>;

async fn describe(router: &mut Router, group: &str) -> anyhow::Result<()> {
    // A consumer-protocol group is described by ConsumerGroupDescribe (DescribeGroups answers it `Dead`, as
    // Kafka does); anything else, or a broker without it, by DescribeGroups.
    let consumer = router
        .with_coordinator(group, async |coordinator| {
            match coordinator.describe_consumer_group(group).await {
                Err(ClientError::UnsupportedApi(_)) => Ok(None),
                other => other,
            }
        })
        .await
        .map_err(|e| group_error(group, e))?;
    let committed = router
        .with_coordinator(group, async |coordinator| {
            coordinator.fetch_committed_offsets(group, None).await
        })
        .await?;
    let mut partitions: Partitions = BTreeMap::new();
    for c in committed {
        partitions.entry((c.topic, c.partition)).or_default().committed = c.offset;
    }
    match consumer {
        Some(description) => print_consumer_group(&description, &mut partitions),
        None => {
            let description = router
                .with_coordinator(group, async |coordinator| coordinator.describe_group(group).await)
                .await
                .map_err(|e| group_error(group, e))?;
            if description.state == "Dead" && description.members.is_empty() && partitions.is_empty() {
                bail!("group {group} does not exist");
            }
            print_classic_group(&description, &mut partitions);
        }
    }
    print_partitions(router, partitions).await
}

fn member_count(members: usize) -> String {
    match members {
        0 => "no members".to_owned(),
        1 => "1 member".to_owned(),
        n => format!("{n} members"),
    }
}

/// A KIP-848 group: epochs, the server-side assignor, and each member's epoch and partitions (and its
/// target, while some member is still reconciling towards it).
fn print_consumer_group(description: &ConsumerGroupDescription, partitions: &mut Partitions) {
    println!(
        "Group {}: type consumer, state {}, group epoch {}, assignor {}, {}",
        description.group_id,
        description.state,
        description.epoch,
        description.assignor,
        member_count(description.members.len())
    );
    if description.members.is_empty() {
        return;
    }
    let listed = |topics: &BTreeMap<String, Vec<i32>>| {
        format_assignment(&topics.iter().map(|(t, ps)| (t.clone(), ps.clone())).collect::<Vec<_>>())
    };
    let with_instances = description.members.iter().any(|m| m.instance_id.is_some());
    let with_targets = description
        .members
        .iter()
        .any(|m| listed(&m.assignment) != listed(&m.target));
    let mut rows = Vec::new();
    for member in &description.members {
        for (topic, ps) in &member.assignment {
            for &p in ps {
                partitions.entry((topic.clone(), p)).or_default().member = Some(member.member_id.clone());
            }
        }
        let mut row = vec![member.member_id.clone()];
        if with_instances {
            row.push(member.instance_id.clone().unwrap_or_else(|| "-".into()));
        }
        row.extend([
            member.client_id.clone(),
            member.client_host.clone(),
            member.epoch.to_string(),
            listed(&member.assignment),
        ]);
        if with_targets {
            row.push(listed(&member.target));
        }
        rows.push(row);
    }
    let mut header = vec!["MEMBER-ID"];
    if with_instances {
        header.push("INSTANCE-ID");
    }
    header.extend(["CLIENT-ID", "HOST", "EPOCH", "ASSIGNMENT"]);
    if with_targets {
        header.push("TARGET");
    }
    println!();
    print_table(&header, rows);
}

/// A group of the classic protocol (or one known only by its committed offsets).
fn print_classic_group(description: &GroupDescription, partitions: &mut Partitions) {
    let group = &description.group_id;
    let is_consumer = description.protocol_type == "consumer";
    let protocol = match (description.protocol_type.as_str(), description.protocol.as_str()) {
        ("", "") => "-".to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, chosen) => format!("{kind}/{chosen}"),
    };
    let members = member_count(description.members.len());
    println!(
        "Group {group}: type classic, state {}, protocol {protocol}, {members}",
        description.state
    );

    if !description.members.is_empty() {
        let with_instances = description.members.iter().any(|m| m.instance_id.is_some());
        let mut rows = Vec::new();
        for member in &description.members {
            let assignment = if is_consumer {
                match decode_consumer_assignment(&member.assignment) {
                    Ok(topics) => {
                        for (topic, ps) in &topics {
                            for &p in ps {
                                partitions.entry((topic.clone(), p)).or_default().member =
                                    Some(member.member_id.clone());
                            }
                        }
                        format_assignment(&topics)
                    }
                    Err(e) => format!("({e})"),
                }
            } else {
                format!("({} bytes)", member.assignment.len())
            };
            let mut row = vec![member.member_id.clone()];
            if with_instances {
                row.push(member.instance_id.clone().unwrap_or_else(|| "-".into()));
            }
            row.extend([member.client_id.clone(), member.client_host.clone(), assignment]);
            rows.push(row);
        }
        let header: &[&str] = if with_instances {
            &["MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]
        } else {
            &["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]
        };
        println!();
        print_table(header, rows);
    }
}

/// Every partition the group has committed or been assigned: the commit, the log end and the lag.
async fn print_partitions(router: &mut Router, partitions: Partitions) -> anyhow::Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    // A topic that is gone (or a partition that is) has no log end, and shows `-`.
    let ends = log_end_offsets(router, partitions.keys()).await?;
    let dash = |o: Option<i64>| o.map_or("-".into(), |o| o.to_string());
    let rows = partitions
        .into_iter()
        .map(|((topic, p), row)| {
            let end = ends.get(&(topic.clone(), p)).copied();
            let lag = row.committed.zip(end).map(|(c, e)| e - c);
            vec![
                topic,
                p.to_string(),
                dash(row.committed),
                dash(end),
                dash(lag),
                row.member.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
        ],
        rows,
    );
    Ok(())
}

/// `orders:0,1 payments:3`.
fn format_assignment(topics: &[(String, Vec<i32>)]) -> String {
    if topics.iter().all(|(_, ps)| ps.is_empty()) {
        return "-".into();
    }
    topics
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(topic, ps)| {
            let mut ps = ps.clone();
            ps.sort_unstable();
            let list: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{topic}:{}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of the reset plan.
#[derive(Debug)]
struct Planned {
    topic: String,
    partition: i32,
    current: Option<i64>,
    new: i64,
}

async fn reset_offsets(router: &mut Router, args: ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    // Kafka's tool refuses a group with members before computing anything: their commits would race ours.
    let description = router
        .with_coordinator(group, async |coordinator| coordinator.describe_group(group).await)
        .await
        .map_err(|e| group_error(group, e))?;
    if !description.members.is_empty() {
        bail!("group {group} has active members; stop them first");
    }
    let target = args.target();
    let mut plan: Vec<Planned> = Vec::new();
    for spec in &args.topics {
        let topic = spec.topic.as_str();
        let all: Vec<i32> = router
            .topic(topic, false)
            .await?
            .partitions
            .iter()
            .map(|p| p.index)
            .collect();
        let partitions = match &spec.partitions {
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
        };
        let committed = router
            .with_coordinator(group, async |coordinator| {
                coordinator
                    .fetch_committed_offsets(group, Some(&[(topic, &partitions)]))
                    .await
            })
            .await?;
        let current = |p: i32| {
            committed
                .iter()
                .find(|c| c.topic == topic && c.partition == p)
                .and_then(|c| c.offset)
        };
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

    let rows = plan
        .iter()
        .map(|planned| {
            vec![
                planned.topic.clone(),
                planned.partition.to_string(),
                planned.current.map_or("-".into(), |c| c.to_string()),
                planned.new.to_string(),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], rows);
    if args.dry_run {
        println!("Dry run: nothing committed (use --execute to commit).");
        return Ok(());
    }
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
    println!("Committed the new offsets of group {group}.");
    Ok(())
}

fn offsets_or_zero(listed: Vec<ListedOffset>) -> Vec<i64> {
    listed.iter().map(|l| l.offset.unwrap_or(0)).collect()
}

/// The log end offset of each of `partitions` (topic, index), asked per topic; a topic or partition that is
/// gone has none.
pub(super) async fn log_end_offsets<'a>(
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

    #[test]
    fn assignments_print_per_topic() {
        let topics = vec![
            ("a".to_owned(), vec![2, 0]),
            ("b".to_owned(), vec![]),
            ("c".to_owned(), vec![1]),
        ];
        assert_eq!(format_assignment(&topics), "a:0,2 c:1");
        assert_eq!(format_assignment(&[]), "-");
    }
}
