//! `strata server` configuration: flags, `STRATA_*` environment variables, and a TOML file.
//!
//! A setting comes from, in order: its flag, its environment variable, the `--config` file, the default.
//! The file uses the flags' names:
//!
//! ```toml
//! node-id = 1
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
    /// Roles of this node. A single node runs both; separate roles arrive with the controller quorum.
    #[arg(long, env = "STRATA_ROLES")]
    pub roles: Option<String>,
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

/// The resolved configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub node_id: i32,
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
        let roles = self.roles.or(file.roles).unwrap_or_else(|| "broker,controller".into());
        let mut role_set: Vec<&str> = roles.split(',').map(str::trim).collect();
        role_set.sort_unstable();
        if role_set != ["broker", "controller"] {
            bail!("--roles {roles}: this build runs single nodes with both roles (`broker,controller`)");
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
            node_id: self.node_id.or(file.node_id).unwrap_or(1),
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
            .contains("roles")
        );
    }
}
