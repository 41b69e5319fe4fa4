//! `strata server` configuration: flags, `STRATA_*` environment variables, and a TOML file.
//!
//! A setting comes from, in order: its flag, its environment variable, the `--config` file, the default.
//! The file uses the flags' names:
//!
//! ```toml
//! node-id = 1
//! roles = "broker,controller"
//! controller-voters = "1@ctl-1:9093,2@ctl-2:9093,3@ctl-3:9093"
//! controller-listen = "0.0.0.0:9093"
//! data-dir = "/var/lib/strata"
//! listen = "0.0.0.0:9092"
//! advertise = "broker1.example.com:9092"
//! http-listen = "0.0.0.0:9644"
//! log-format = "json"
//!
//! [settings]                    # broker settings, named as in Kafka
//! "num.partitions" = "3"
//! "log.retention.ms" = "86400000"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::settings::BrokerSettings;

/// Flags of `strata server`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// A TOML file with any of these settings (flags and environment variables win over it).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<i32>,
    /// Roles of this node: `broker`, `controller`, or both (`broker,controller`, the default).
    #[arg(long, env = "STRATA_ROLES")]
    pub roles: Option<String>,
    /// The metadata quorum: `ID@HOST:PORT` of every controller, comma-separated. Default: this node alone,
    /// at its controller listener.
    #[arg(long, env = "STRATA_CONTROLLER_VOTERS")]
    pub controller_voters: Option<String>,
    /// Where this node's controller serves the quorum and brokers (controller role only).
    #[arg(long, env = "STRATA_CONTROLLER_LISTEN")]
    pub controller_listen: Option<String>,
    /// Where partition logs and metadata live.
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener address.
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// host:port given to clients in Metadata (default: the listener address).
    #[arg(long, env = "STRATA_ADVERTISE")]
    pub advertise: Option<String>,
    /// HTTP address for /health and /metrics.
    #[arg(long, env = "STRATA_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// A broker setting named as in Kafka, e.g. `--set num.partitions=3`; repeatable. The environment
    /// variable takes a comma-separated list.
    #[arg(long = "set", value_name = "KEY=VALUE", env = "STRATA_SET", value_delimiter = ',')]
    pub settings: Vec<String>,
    /// Log format: `human` or `json`.
    #[arg(long, env = "STRATA_LOG_FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    node_id: Option<i32>,
    roles: Option<String>,
    controller_voters: Option<String>,
    controller_listen: Option<String>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    http_listen: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, toml::Value>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// The resolved configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub node_id: i32,
    pub roles: Roles,
    /// The voters of the metadata quorum (id, HOST:PORT); `None`: this node alone, at the address its
    /// controller listener is bound to.
    pub controller_voters: Option<Vec<(u64, String)>>,
    pub controller_listen: String,
    pub data_dir: PathBuf,
    pub listen: String,
    /// host and port for Metadata; `None`: the address the listener is bound to (known after binding,
    /// so `--listen 127.0.0.1:0` works).
    pub advertise: Option<(String, i32)>,
    pub http_listen: String,
    pub log_format: LogFormat,
    pub settings: BrokerSettings,
}

impl ServerArgs {
    /// Merges flags, environment, file and defaults, and checks the result.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = self.node_id.or(file.node_id).unwrap_or(1);
        if node_id < 0 {
            bail!("--node-id {node_id}: a node id is not negative");
        }
        let roles = parse_roles(&self.roles.or(file.roles).unwrap_or_else(|| "broker,controller".into()))?;
        let controller_voters = match self.controller_voters.or(file.controller_voters) {
            Some(text) => Some(
                text.split(',')
                    .filter(|v| !v.trim().is_empty())
                    .map(strata_controller::client::parse_voter)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        match &controller_voters {
            None if !roles.controller => bail!("--roles broker needs --controller-voters: the quorum to join"),
            Some(voters) if voters.is_empty() => bail!("--controller-voters names no voter"),
            Some(voters) if roles.controller && !voters.iter().any(|(id, _)| *id == node_id as u64) => {
                bail!("--controller-voters does not name this node ({node_id}), which has the controller role")
            }
            _ => {}
        }
        let listen = self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:9092".into());
        let advertise = match self.advertise.or(file.advertise) {
            Some(advertise) => Some(parse_advertise(&advertise)?),
            None => None,
        };
        let log_format = match self.log_format.or(file.log_format).as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("--log-format {other}: expected `human` or `json`"),
        };
        let mut settings = BrokerSettings::default();
        for (key, value) in file.settings {
            let value = match value {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            settings
                .set(&key, &value)
                .with_context(|| format!("setting {key} from the config file"))?;
        }
        for pair in &self.settings {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--set {pair}: expected KEY=VALUE"))?;
            settings
                .set(key.trim(), value.trim())
                .with_context(|| format!("--set {pair}"))?;
        }
        Ok(ServerConfig {
            node_id,
            roles,
            controller_voters,
            controller_listen: self
                .controller_listen
                .or(file.controller_listen)
                .unwrap_or_else(|| "127.0.0.1:9093".into()),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data")),
            listen,
            advertise,
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| "127.0.0.1:9644".into()),
            log_format,
            settings,
        })
    }
}

fn parse_roles(text: &str) -> anyhow::Result<Roles> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for role in text.split(',').map(str::trim) {
        match role {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => bail!("--roles {text}: unknown role `{other}` (expected `broker`, `controller` or both)"),
        }
    }
    Ok(roles)
}

/// `host:port` that clients can connect to.
pub fn parse_advertise(advertise: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = advertise
        .rsplit_once(':')
        .with_context(|| format!("advertised address {advertise} is not host:port"))?;
    let port: i32 = port
        .parse()
        .with_context(|| format!("advertised address {advertise}: bad port"))?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    if host == "0.0.0.0" || host == "::" || port == 0 {
        bail!(
            "advertised address {advertise}: clients cannot connect to a wildcard address or port 0; give a reachable one"
        );
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_make_a_local_single_node() {
        let config = ServerArgs::default().resolve().unwrap();
        assert_eq!((config.node_id, config.listen.as_str()), (1, "127.0.0.1:9092"));
        assert_eq!(config.advertise, None, "the bound address is advertised");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(
            (
                config.roles,
                config.controller_voters,
                config.controller_listen.as_str()
            ),
            (
                Roles {
                    broker: true,
                    controller: true
                },
                None,
                "127.0.0.1:9093"
            )
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "node-id = 7\nlisten = \"127.0.0.1:1000\"\n[settings]\n\"num.partitions\" = 4\n\"log.retention.ms\" = \"5000\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            listen: Some("127.0.0.1:2000".into()),
            settings: vec!["num.partitions=6".into()],
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.listen, "127.0.0.1:2000");
        assert_eq!(config.settings.num_partitions, 6);
        assert_eq!(config.settings.log.retention_ms, Some(5000));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let bad = |args: ServerArgs| args.resolve().unwrap_err().to_string();
        assert!(
            bad(ServerArgs {
                settings: vec!["nonsense".into()],
                ..Default::default()
            })
            .contains("KEY=VALUE")
        );
        assert!(
            bad(ServerArgs {
                settings: vec!["no.such=1".into()],
                ..Default::default()
            })
            .contains("no.such")
        );
        assert!(
            bad(ServerArgs {
                advertise: Some("0.0.0.0:9092".into()),
                ..Default::default()
            })
            .contains("wildcard")
        );
        assert!(
            bad(ServerArgs {
                roles: Some("broker".into()),
                ..Default::default()
            })
            .contains("--controller-voters")
        );
        assert!(
            bad(ServerArgs {
                roles: Some("broker,zookeeper".into()),
                ..Default::default()
            })
            .contains("zookeeper")
        );
        assert!(
            bad(ServerArgs {
                node_id: Some(4),
                controller_voters: Some("1@a:9093,2@b:9093,3@c:9093".into()),
                ..Default::default()
            })
            .contains("does not name this node")
        );
    }
}
