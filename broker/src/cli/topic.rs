//! `strata topic create | list | describe | alter | delete`.
//!
//! Every broker answers for topics, so these talk to the bootstrap broker alone, but for the log start and
//! end offsets of `describe`, which each partition's leader gives (ListOffsets, through the [`Router`]).

use anyhow::bail;
use clap::{Args, Subcommand};
use strata_protocol::client::Router;
use strata_protocol::client::admin::{ConfigChange, ConfigSource, NewTopic, OffsetSpec, TopicMetadata};

use super::{Bootstrap, parse_key_value};

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Copies of each partition (default: the broker's default.replication.factor).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic setting, e.g. `--config retention.ms=3600000`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List the topics, one name a line.
    List,
    /// Show a topic's partitions (leader, replicas, in-sync replicas, offsets) and its settings that differ
    /// from the broker defaults.
    Describe { name: String },
    /// Add partitions to a topic, or change its settings.
    Alter {
        name: String,
        /// The new total number of partitions (it can only grow).
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a topic setting; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a topic setting, so the broker default applies again; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic and its records.
    Delete { name: String },
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    if let TopicCommand::Describe { name } = &args.command {
        return describe(&mut args.bootstrap.router().await?, name).await;
    }
    let mut client = args.bootstrap.connect().await?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let topic = NewTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                configs,
            };
            client.create_topic(&topic).await?;
            println!("Created topic {name}.");
        }
        TopicCommand::List => {
            let mut names: Vec<String> = client
                .metadata(None, false)
                .await?
                .topics
                .into_iter()
                .map(|t| t.name)
                .collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        TopicCommand::Describe { .. } => unreachable!("described above"),
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            let changes: Vec<ConfigChange> = configs
                .into_iter()
                .map(|(k, v)| ConfigChange::Set(k, v))
                .chain(delete_configs.into_iter().map(ConfigChange::Delete))
                .collect();
            if partitions.is_none() && changes.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(count) = partitions {
                client.create_partitions(&name, count).await?;
            }
            if !changes.is_empty() {
                client.alter_topic_configs(&name, &changes).await?;
            }
            println!("Altered topic {name}.");
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

/// Prints, in the manner of `kafka-topics --describe`, with each partition's log start and end offsets:
///
/// ```text
/// Topic: orders  TopicId: 5f0c…  PartitionCount: 2  ReplicationFactor: 1  Configs: retention.ms=60000
///     Partition: 0  Leader: 1  Replicas: 1  Isr: 1  LogStartOffset: 0  LogEndOffset: 42
/// ```
async fn describe(router: &mut Router, name: &str) -> anyhow::Result<()> {
    let topic = router.topic(name, false).await?;
    let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
    let starts = router.list_offsets(name, &partitions, OffsetSpec::Earliest).await?;
    let ends = router.list_offsets(name, &partitions, OffsetSpec::Latest).await?;
    // The topic's own overrides: what `topic create --config` and `topic alter --config` set.
    let overrides: Vec<String> = router
        .on_any(async |client| client.describe_topic_configs(name).await)
        .await?
        .into_iter()
        .filter(|c| c.source == ConfigSource::Topic)
        .map(|c| {
            format!(
                "{}={}",
                c.name,
                c.value
                    .as_deref()
                    .unwrap_or(if c.sensitive { "(sensitive)" } else { "" })
            )
        })
        .collect();
    println!(
        "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
        topic.id,
        topic.partitions.len(),
        replication_factor(&topic),
        overrides.join(",")
    );
    for ((p, start), end) in topic.partitions.iter().zip(&starts).zip(&ends) {
        let offset = |o: Option<i64>| o.map_or("-".into(), |o| o.to_string());
        println!(
            "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tLogStartOffset: {}\tLogEndOffset: {}",
            p.index,
            p.leader,
            join(&p.replicas),
            join(&p.isr),
            offset(start.offset),
            offset(end.offset)
        );
    }
    Ok(())
}

fn replication_factor(topic: &TopicMetadata) -> usize {
    topic.partitions.first().map_or(0, |p| p.replicas.len())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
