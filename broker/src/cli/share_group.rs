//! `strata share-group list | describe | reset-offsets | delete-offsets | delete`: share groups (KIP-932), as
//! `kafka-share-groups` shows and changes them.
//!
//! A share group has no committed offsets: per partition it has a start offset, before which every record is
//! done with (acknowledged or archived); the records from there on are delivered to its members one at a
//! time. `describe` shows it with the lag (log end offset − start offset: the records not yet done with,
//! in flight or not delivered). `reset-offsets` moves the start offsets (AlterShareGroupOffsets), which the
//! coordinator allows only while the group has no members; it prints the plan and changes nothing without
//! `--execute`. `delete-offsets` forgets them for whole topics (DeleteShareGroupOffsets), under the same rule.
//!
//! A group's requests go to its coordinator (FindCoordinator, through the [`Router`]), ListOffsets to each
//! partition's leader, and `list` asks every broker for the groups it coordinates.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::ResponseError;
use strata_protocol::client::admin::{ListedOffset, OffsetSpec};
use strata_protocol::client::{ClientError, Router};

use super::Bootstrap;
use super::format::print_table;
use strata_broker::offset_reset::{TopicPartitions, log_end_offsets};

#[derive(Debug, Args)]
pub struct ShareGroupArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(subcommand)]
    command: ShareGroupCommand,
}

#[derive(Debug, Subcommand)]
enum ShareGroupCommand {
    /// List the share groups with their states.
    List,
    /// Show a share group's members with their assignments, and per partition the start offset, the log end
    /// offset and the lag.
    Describe { group: String },
    /// Move a share group's start offsets (refused while it has members); a dry run unless --execute.
    ResetOffsets(ResetArgs),
    /// Forget a share group's start offsets of whole topics: it starts them again as a new group would
    /// (refused while it has members).
    DeleteOffsets {
        group: String,
        /// A topic; repeatable.
        #[arg(long = "topic", required = true, value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Delete a share group and what it remembers of its partitions (refused while it has members).
    Delete { group: String },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
struct ResetArgs {
    group: String,
    /// A topic, with all its partitions or only those listed (`orders:0,2`); repeatable.
    #[arg(long = "topic", required = true, value_name = "TOPIC[:P1,P2…]", value_parser = TopicPartitions::parse)]
    topics: Vec<TopicPartitions>,
    /// To the log start offset: every record still in the log is delivered again.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset: only records written from now on are delivered.
    #[arg(long)]
    to_latest: bool,
    /// To this offset, or the nearest one in the log (between its start and end).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Print the new offsets without changing them (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Change the start offsets.
    #[arg(long)]
    execute: bool,
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

impl ResetArgs {
    fn target(&self) -> Target {
        match (self.to_earliest, self.to_latest, self.to_offset) {
            (true, ..) => Target::Earliest,
            (_, true, _) => Target::Latest,
            (_, _, Some(offset)) => Target::Offset(offset),
            _ => unreachable!("clap requires one target"),
        }
    }
}

pub async fn run(args: ShareGroupArgs) -> anyhow::Result<()> {
    let mut router = args.bootstrap.router().await?;
    match args.command {
        ShareGroupCommand::List => list(&mut router).await,
        ShareGroupCommand::Describe { group } => describe(&mut router, &group).await,
        ShareGroupCommand::ResetOffsets(reset) => reset_offsets(&mut router, reset).await,
        ShareGroupCommand::DeleteOffsets { group, topics } => {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            router
                .with_coordinator(&group, async |coordinator| {
                    coordinator.delete_share_group_offsets(&group, &topics).await
                })
                .await
                .map_err(|e| share_group_error(&group, e))?;
            println!(
                "Deleted the start offsets of share group {group} for {}.",
                topics.join(", ")
            );
            Ok(())
        }
        ShareGroupCommand::Delete { group } => {
            router
                .with_coordinator(&group, async |coordinator| coordinator.delete_group(&group).await)
                .await
                .map_err(|e| share_group_error(&group, e))?;
            println!("Deleted share group {group}.");
            Ok(())
        }
    }
}

/// The refusals an operator can act on, in words; other errors as the client words them.
fn share_group_error(group: &str, error: ClientError) -> anyhow::Error {
    match error.kafka_error() {
        Some(ResponseError::NonEmptyGroup) => {
            anyhow::anyhow!("share group {group} has active members; stop them first")
        }
        Some(ResponseError::GroupIdNotFound) => anyhow::anyhow!("share group {group} does not exist"),
        _ => error.into(),
    }
}

async fn list(router: &mut Router) -> anyhow::Result<()> {
    let groups: Vec<_> = router
        .list_groups()
        .await?
        .into_iter()
        .filter(|g| g.protocol_type == "share")
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let rows = groups
        .into_iter()
        .map(|g| vec![g.group_id, g.state.unwrap_or_else(|| "-".into())])
        .collect();
    print_table(&["GROUP", "STATE"], rows);
    Ok(())
}

async fn describe(router: &mut Router, group: &str) -> anyhow::Result<()> {
    let description = router
        .with_coordinator(group, async |coordinator| coordinator.describe_share_group(group).await)
        .await
        .map_err(|e| share_group_error(group, e))?;
    let started = router
        .with_coordinator(group, async |coordinator| {
            coordinator.share_group_offsets(group, None).await
        })
        .await
        .map_err(|e| share_group_error(group, e))?;
    let members = match description.members.len() {
        0 => "no members".to_owned(),
        1 => "1 member".to_owned(),
        n => format!("{n} members"),
    };
    println!(
        "Share group {group}: state {}, epoch {}, {members}",
        description.state, description.epoch
    );

    // Per partition: the start offset, `None` where the group has not started (or the coordinator could
    // not say). Every assigned partition is shown, started or not.
    let mut partitions: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    for offset in started {
        partitions.insert((offset.topic, offset.partition), offset.start_offset);
    }
    if !description.members.is_empty() {
        let mut rows = Vec::new();
        for member in &description.members {
            for (topic, ps) in &member.assignment {
                for &p in ps {
                    partitions.entry((topic.clone(), p)).or_default();
                }
            }
            rows.push(vec![
                member.member_id.clone(),
                member.client_id.clone(),
                member.client_host.clone(),
                format_assignment(&member.assignment),
            ]);
        }
        println!();
        print_table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], rows);
    }

    if partitions.is_empty() {
        return Ok(());
    }
    // A topic that is gone (or a partition that is) has no log end, and shows `-`.
    let ends = log_end_offsets(router, partitions.keys()).await?;
    let dash = |o: Option<i64>| o.map_or("-".into(), |o| o.to_string());
    let rows = partitions
        .into_iter()
        .map(|((topic, p), start)| {
            let end = ends.get(&(topic.clone(), p)).copied();
            let lag = start.zip(end).map(|(s, e)| (e - s).max(0));
            vec![topic, p.to_string(), dash(start), dash(end), dash(lag)]
        })
        .collect();
    println!();
    print_table(&["TOPIC", "PARTITION", "START-OFFSET", "LOG-END-OFFSET", "LAG"], rows);
    Ok(())
}

/// `orders:0,1 payments:3`.
fn format_assignment(topics: &[(String, Vec<i32>)]) -> String {
    let mut parts: Vec<String> = topics
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(topic, ps)| {
            let mut ps = ps.clone();
            ps.sort_unstable();
            let list: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{topic}:{}", list.join(","))
        })
        .collect();
    if parts.is_empty() {
        return "-".into();
    }
    parts.sort();
    parts.join(" ")
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
    // Refused before anything is computed, as Kafka's tool refuses: the members' acknowledgements would race
    // the change. A group that does not exist yet may have its start offsets set before it starts.
    let description = router
        .with_coordinator(group, async |coordinator| coordinator.describe_share_group(group).await)
        .await;
    match description {
        Ok(description) if !description.members.is_empty() => {
            bail!("share group {group} has active members; stop them first")
        }
        Ok(_) => {}
        Err(e) if e.kafka_error() == Some(ResponseError::GroupIdNotFound) => {}
        Err(e) => return Err(share_group_error(group, e)),
    }
    let target = args.target();
    let mut plan: Vec<Planned> = Vec::new();
    for spec in &args.topics {
        let topic = spec.topic.as_str();
        let partitions = spec.resolve(router).await?;
        let current = router
            .with_coordinator(group, async |coordinator| {
                coordinator
                    .share_group_offsets(group, Some(&[(topic, &partitions)]))
                    .await
            })
            .await
            .map_err(|e| share_group_error(group, e))?;
        let current = |p: i32| {
            current
                .iter()
                .find(|c| c.topic == topic && c.partition == p)
                .and_then(|c| c.start_offset)
        };
        let earliest = offsets_or_zero(router.list_offsets(topic, &partitions, OffsetSpec::Earliest).await?);
        let latest = offsets_or_zero(router.list_offsets(topic, &partitions, OffsetSpec::Latest).await?);
        for (i, &p) in partitions.iter().enumerate() {
            let (low, high) = (earliest[i], latest[i].max(earliest[i]));
            let new = match target {
                Target::Earliest => low,
                Target::Latest => high,
                Target::Offset(offset) => offset.clamp(low, high),
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
    if args.dry_run || !args.execute {
        println!("Dry run: nothing changed (use --execute to change the start offsets).");
        return Ok(());
    }
    let offsets: Vec<(&str, i32, i64)> = plan
        .iter()
        .map(|planned| (planned.topic.as_str(), planned.partition, planned.new))
        .collect();
    router
        .with_coordinator(group, async |coordinator| {
            coordinator.alter_share_group_offsets(group, &offsets).await
        })
        .await
        .map_err(|e| share_group_error(group, e))?;
    println!("Changed the start offsets of share group {group}.");
    Ok(())
}

fn offsets_or_zero(listed: Vec<ListedOffset>) -> Vec<i64> {
    listed.iter().map(|l| l.offset.unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_print_per_topic_in_order() {
        let topics = vec![
            ("b".to_owned(), vec![1]),
            ("a".to_owned(), vec![2, 0]),
            ("c".to_owned(), vec![]),
        ];
        assert_eq!(format_assignment(&topics), "a:0,2 b:1");
        assert_eq!(format_assignment(&[]), "-");
    }
}
