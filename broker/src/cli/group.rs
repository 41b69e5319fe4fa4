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

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand};
use strata_protocol::client::admin::{ConsumerGroupDescription, GroupDescription, decode_consumer_assignment};
use strata_protocol::client::{ClientError, Router};

use strata_broker::offset_reset::{Target, TopicPartitions, commit_reset, group_error, log_end_offsets, plan_reset};
use strata_broker::time::parse_rfc3339;

use super::Bootstrap;
use super::format::print_table;

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

fn parse_datetime(text: &str) -> Result<i64, String> {
    parse_rfc3339(text).ok_or_else(|| format!("`{text}` is not an RFC 3339 time like 2026-11-20T10:00:00Z"))
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

async fn reset_offsets(router: &mut Router, args: ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let plan = plan_reset(router, group, &args.topics, args.target()).await?;
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
    commit_reset(router, group, &plan).await?;
    println!("Committed the new offsets of group {group}.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
