//! The `strata` binary: `strata server` (the default) runs a node; `topic`, `produce`, `consume`, `group`,
//! `share-group`, `cluster` and `bench` are clients of a running one, and `health` asks a node's HTTP endpoint whether it
//! serves (see the `cli` module and docs/cli.md).

mod cli;

use clap::{Parser, Subcommand};
use strata_broker::config::{LogFormat, ServerArgs};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "A Kafka-compatible distributed commit log")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (the default when no command is given).
    // Boxed: the server's flags are most of the enum's size, and every other command would carry them.
    Server(Box<ServerArgs>),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::TopicArgs),
    /// Send standard input to a topic, one record per line.
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records.
    Consume(cli::consume::ConsumeArgs),
    /// Measure produce or consume throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// List, describe and delete consumer groups, and reset their committed offsets.
    Group(cli::group::GroupArgs),
    /// List, describe and delete share groups (KIP-932), and reset their start offsets.
    ShareGroup(cli::share_group::ShareGroupArgs),
    /// Show the controller quorum and the brokers.
    Cluster(cli::cluster::ClusterArgs),
    /// Exit 0 if a node's HTTP endpoint answers /health with 200 (for container health checks).
    Health(cli::health::HealthArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client_command = match cli.command {
        Some(Command::Server(args)) => return serve(*args),
        // No command: a server configured by environment variables and defaults only.
        None => match Cli::parse_from(["strata", "server"]).command {
            Some(Command::Server(args)) => return serve(*args),
            _ => unreachable!("`server` was given"),
        },
        Some(Command::Topic(args)) => cli::block_on(cli::topic::run(args)),
        Some(Command::Produce(args)) => cli::block_on(cli::produce::run(args)),
        Some(Command::Consume(args)) => cli::block_on(cli::consume::run(args)),
        Some(Command::Bench(args)) => cli::block_on(cli::bench::run(args)),
        Some(Command::Group(args)) => cli::block_on(cli::group::run(args)),
        Some(Command::ShareGroup(args)) => cli::block_on(cli::share_group::run(args)),
        Some(Command::Cluster(args)) => cli::block_on(cli::cluster::run(args)),
        // One blocking request: no runtime to start.
        Some(Command::Health(args)) => cli::health::run(args),
    };
    // Client commands fail with one line (the causes joined by `: `), not anyhow's report.
    if let Err(e) = client_command {
        eprintln!("strata: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        strata_broker::run(config, shutdown).await
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGTERM or Ctrl-C starts a clean stop.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}
