//! `strata cluster describe`: the controller quorum (DescribeQuorum), as `kafka-metadata-quorum describe
//! --status --replication` shows it, and every registered broker, live or fenced (DescribeCluster v2).

use clap::{Args, Subcommand};
use strata_protocol::client::admin::{ClusterDescription, QuorumDescription};
use strata_protocol::client::{Client, ClientError};

use super::Bootstrap;
use super::format::print_table;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the controller quorum (leader, term, committed index, each voter's log end and lag) and the
    /// brokers (address, rack, live or fenced).
    Describe,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut client = args.bootstrap.connect().await?;
    match args.command {
        ClusterCommand::Describe => describe(&mut client).await,
    }
}

/// Prints, e.g.:
///
/// ```text
/// Cluster 4f6ad0c2-…: quorum leader 1, term 2, committed index 57
///
/// VOTER  ADDRESS         LOG-END  LAG
/// 1      10.0.0.1:9093   57       0
/// 2      10.0.0.2:9093   51       6
///
/// BROKER  ADDRESS         RACK  STATE
/// 1       10.0.0.1:9092   a     live
/// 2       10.0.0.2:9092   -     fenced
/// ```
///
/// When the quorum cannot be described (no controller reachable, no leader) the brokers are still printed,
/// from the broker's own metadata, and the command then fails with the quorum's error.
async fn describe(client: &mut Client) -> anyhow::Result<()> {
    let cluster = client.describe_cluster_with_fenced().await?;
    let quorum = match client.describe_quorum().await {
        Ok(quorum) => Ok(quorum),
        // Answers that leave the connection usable: the brokers can still be shown.
        Err(
            e @ (ClientError::Kafka { .. } | ClientError::UnsupportedApi(_) | ClientError::UnsupportedVersion { .. }),
        ) => Err(e),
        Err(e) => return Err(e.into()),
    };
    match &quorum {
        Ok(quorum) => {
            println!("{}", quorum_line(&cluster.cluster_id, quorum));
            println!();
            print_table(&["VOTER", "ADDRESS", "LOG-END", "LAG"], voter_rows(quorum));
        }
        Err(_) => println!("Cluster {}: quorum unavailable", cluster.cluster_id),
    }
    println!();
    print_table(&["BROKER", "ADDRESS", "RACK", "STATE"], broker_rows(&cluster));
    if !cluster.fenced_listed {
        eprintln!("note: this broker lists only live brokers (listing fenced ones needs DescribeCluster v2)");
    }
    quorum.map(|_| ()).map_err(Into::into)
}

fn quorum_line(cluster_id: &str, quorum: &QuorumDescription) -> String {
    let leader = quorum.leader_id.map_or("none".to_owned(), |id| id.to_string());
    let committed = quorum.high_watermark.map_or("?".to_owned(), |hw| hw.to_string());
    format!(
        "Cluster {cluster_id}: quorum leader {leader}, term {}, committed index {committed}",
        quorum.leader_epoch
    )
}

/// One row per voter, by id. What the leader does not know is `?`; an address only v2 gives is `-` without it.
fn voter_rows(quorum: &QuorumDescription) -> Vec<Vec<String>> {
    let unknown = |value: Option<i64>| value.map_or("?".to_owned(), |v| v.to_string());
    let mut voters = quorum.voters.clone();
    voters.sort_by_key(|v| v.id);
    voters
        .iter()
        .map(|v| {
            vec![
                v.id.to_string(),
                v.address.clone().unwrap_or_else(|| "-".into()),
                unknown(v.log_end_offset),
                unknown(v.lag(quorum.high_watermark)),
            ]
        })
        .collect()
}

fn broker_rows(cluster: &ClusterDescription) -> Vec<Vec<String>> {
    let mut brokers = cluster.brokers.clone();
    brokers.sort_by_key(|b| b.node_id);
    brokers
        .into_iter()
        .map(|b| {
            let host = if b.host.contains(':') {
                format!("[{}]", b.host)
            } else {
                b.host
            };
            vec![
                b.node_id.to_string(),
                format!("{host}:{}", b.port),
                b.rack.unwrap_or_else(|| "-".into()),
                if b.fenced { "fenced" } else { "live" }.to_owned(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use strata_protocol::client::admin::{ClusterBroker, QuorumVoter};

    use super::*;

    #[test]
    fn voters_show_unknowns_as_question_marks() {
        let quorum = QuorumDescription {
            leader_id: Some(1),
            leader_epoch: 2,
            high_watermark: Some(57),
            voters: vec![
                QuorumVoter {
                    id: 3,
                    log_end_offset: None,
                    address: None,
                },
                QuorumVoter {
                    id: 1,
                    log_end_offset: Some(58),
                    address: Some("10.0.0.1:9093".into()),
                },
                QuorumVoter {
                    id: 2,
                    log_end_offset: Some(51),
                    address: Some("10.0.0.2:9093".into()),
                },
            ],
            observers: Vec::new(),
        };
        assert_eq!(
            quorum_line("c", &quorum),
            "Cluster c: quorum leader 1, term 2, committed index 57"
        );
        assert_eq!(
            voter_rows(&quorum),
            [
                ["1", "10.0.0.1:9093", "58", "0"],
                ["2", "10.0.0.2:9093", "51", "6"],
                ["3", "-", "?", "?"],
            ]
        );
        let leaderless = QuorumDescription {
            leader_id: None,
            high_watermark: None,
            ..quorum
        };
        assert_eq!(
            quorum_line("c", &leaderless),
            "Cluster c: quorum leader none, term 2, committed index ?"
        );
    }

    #[test]
    fn brokers_show_rack_and_state() {
        let broker = |node_id, host: &str, rack: Option<&str>, fenced| ClusterBroker {
            node_id,
            host: host.into(),
            port: 9092,
            rack: rack.map(Into::into),
            fenced,
        };
        let cluster = ClusterDescription {
            cluster_id: "c".into(),
            controller_id: 1,
            brokers: vec![broker(2, "::1", None, true), broker(1, "h1", Some("a"), false)],
            fenced_listed: true,
        };
        assert_eq!(
            broker_rows(&cluster),
            [["1", "h1:9092", "a", "live"], ["2", "[::1]:9092", "-", "fenced"]]
        );
    }
}
