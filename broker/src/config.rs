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
//! # or, as Kafka names them, several listeners (instead of listen and advertise):
//! # listeners = "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092"
//! # advertised-listeners = "INTERNAL://broker1:9092,EXTERNAL://localhost:19092"
//! # listener-security-protocol-map = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"
//! # inter-broker-listener-name = "INTERNAL"
//! http-listen = "0.0.0.0:9644"
//! console-password-file = "/run/secrets/strata-console"
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
    /// Kafka's `listeners`: `NAME://HOST:PORT`, comma-separated, one Kafka listener each (instead of
    /// `--listen`). Clients are answered with the addresses of the listener they connected to.
    #[arg(long, env = "STRATA_LISTENERS")]
    pub listeners: Option<String>,
    /// Kafka's `advertised.listeners`: `NAME://HOST:PORT` for listeners whose bound address is not the one
    /// clients reach.
    #[arg(long, env = "STRATA_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL`, comma-separated. Only `PLAINTEXT` is
    /// supported; a listener named `PLAINTEXT` needs no entry.
    #[arg(long, env = "STRATA_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// Kafka's `inter.broker.listener.name`: the listener other brokers reach this one on (replication).
    /// Default: `PLAINTEXT` if there is one, else the first listener.
    #[arg(long, env = "STRATA_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// HTTP address for /health, /metrics and the web console.
    #[arg(long, env = "STRATA_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// The web console's password (HTTP Basic, any user name). Hidden: give it in the environment variable
    /// or in `--console-password-file`, where `ps` does not show it.
    #[arg(long, env = "STRATA_CONSOLE_PASSWORD", hide = true, hide_env_values = true)]
    pub console_password: Option<String>,
    /// A file whose first line is the web console's password. Without a password the console is open on a
    /// loopback HTTP listener and refused (403) on any other.
    #[arg(long, env = "STRATA_CONSOLE_PASSWORD_FILE")]
    pub console_password_file: Option<PathBuf>,
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
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
    inter_broker_listener_name: Option<String>,
    http_listen: Option<String>,
    console_password_file: Option<PathBuf>,
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

/// A Kafka listener (Kafka's `listeners` entry with its `advertised.listeners` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListener {
    /// Upper case, as Kafka normalises listener names.
    pub name: String,
    /// `HOST:PORT` to bind.
    pub bind: String,
    /// host and port for Metadata; `None`: the address the listener is bound to (known after binding, so
    /// `--listen 127.0.0.1:0` works).
    pub advertised: Option<(String, i32)>,
}

/// The name of the one listener `--listen` configures, and of Kafka's default security protocol.
pub const PLAINTEXT: &str = "PLAINTEXT";

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
    /// The Kafka listeners, at least one.
    pub listeners: Vec<KafkaListener>,
    /// The name of the listener other brokers connect to this one on.
    pub inter_broker_listener: String,
    pub http_listen: String,
    /// The web console's password, if one is set.
    pub console_password: Option<Secret>,
    pub log_format: LogFormat,
    pub settings: BrokerSettings,
}

/// A secret that never shows in `Debug` output (a configuration logged whole, a panic message).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The console password from `STRATA_CONSOLE_PASSWORD` or a file's first line; not both, not empty. An empty
/// `STRATA_CONSOLE_PASSWORD` is no password (compose files pass it through as `${VAR:-}`).
fn console_password(direct: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Option<Secret>> {
    let direct = direct.filter(|p| !p.is_empty());
    let password = match (direct, file) {
        (Some(_), Some(_)) => {
            bail!("STRATA_CONSOLE_PASSWORD and --console-password-file are both set; give one")
        }
        (Some(password), None) => password,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the console password from {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        (None, None) => return Ok(None),
    };
    if password.trim().is_empty() {
        bail!("the console password is empty");
    }
    Ok(Some(Secret(password)))
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
        let (listeners, inter_broker_listener) = resolve_listeners(ListenerArgs {
            listen: self.listen.or(file.listen),
            advertise: self.advertise.or(file.advertise),
            listeners: self.listeners.or(file.listeners),
            advertised_listeners: self.advertised_listeners.or(file.advertised_listeners),
            protocol_map: self
                .listener_security_protocol_map
                .or(file.listener_security_protocol_map),
            inter_broker: self.inter_broker_listener_name.or(file.inter_broker_listener_name),
        })?;
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
            listeners,
            inter_broker_listener,
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| "127.0.0.1:9644".into()),
            console_password: console_password(
                self.console_password,
                self.console_password_file.or(file.console_password_file),
            )?,
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

/// The listener flags as given, before they are checked against each other.
struct ListenerArgs {
    listen: Option<String>,
    advertise: Option<String>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    protocol_map: Option<String>,
    inter_broker: Option<String>,
}

/// The Kafka listeners and the inter-broker listener's name, from either `--listen`/`--advertise` (one
/// listener named `PLAINTEXT`) or Kafka's four listener settings.
fn resolve_listeners(args: ListenerArgs) -> anyhow::Result<(Vec<KafkaListener>, String)> {
    let Some(text) = args.listeners else {
        if args.advertised_listeners.is_some() || args.protocol_map.is_some() {
            bail!("--advertised-listeners and --listener-security-protocol-map need --listeners");
        }
        let advertised = args.advertise.as_deref().map(parse_advertise).transpose()?;
        let bind = args.listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let listener = KafkaListener {
            name: PLAINTEXT.into(),
            bind,
            advertised,
        };
        if let Some(name) = args.inter_broker.filter(|n| !n.eq_ignore_ascii_case(PLAINTEXT)) {
            bail!("--inter-broker-listener-name {name}: the only listener is {PLAINTEXT} (--listen)");
        }
        return Ok((vec![listener], PLAINTEXT.into()));
    };
    if args.listen.is_some() || args.advertise.is_some() {
        bail!("--listeners replaces --listen and --advertise; give one or the other");
    }
    let mut listeners: Vec<KafkaListener> = Vec::new();
    for (name, bind) in named_addresses("--listeners", &text)? {
        if listeners.iter().any(|l| l.name == name) {
            bail!("--listeners names {name} twice");
        }
        let bind = match bind.strip_prefix(':') {
            // Kafka's `NAME://:PORT`: every interface.
            Some(port) => format!("0.0.0.0:{port}"),
            None => bind,
        };
        listeners.push(KafkaListener {
            name,
            bind,
            advertised: None,
        });
    }
    if listeners.is_empty() {
        bail!("--listeners names no listener");
    }
    for (name, address) in named_addresses(
        "--advertised-listeners",
        args.advertised_listeners.as_deref().unwrap_or(""),
    )? {
        let listener = listeners
            .iter_mut()
            .find(|l| l.name == name)
            .with_context(|| format!("--advertised-listeners names {name}, which --listeners does not"))?;
        listener.advertised = Some(parse_advertise(&address)?);
    }
    let mut protocols: BTreeMap<String, String> = BTreeMap::new();
    for pair in args
        .protocol_map
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (name, protocol) = pair
            .split_once(':')
            .with_context(|| format!("--listener-security-protocol-map {pair}: expected NAME:PROTOCOL"))?;
        protocols.insert(name.trim().to_ascii_uppercase(), protocol.trim().to_ascii_uppercase());
    }
    for listener in &listeners {
        // Kafka's default map names each protocol after itself.
        let protocol = protocols
            .get(&listener.name)
            .map_or(listener.name.as_str(), String::as_str);
        match protocol {
            PLAINTEXT => {}
            "SSL" | "SASL_PLAINTEXT" | "SASL_SSL" => bail!(
                "listener {}: security protocol {protocol} is not supported yet; Strata serves PLAINTEXT only",
                listener.name
            ),
            _ => bail!(
                "listener {}: no security protocol; map it with --listener-security-protocol-map {}:PLAINTEXT",
                listener.name,
                listener.name
            ),
        }
    }
    let inter_broker = match args.inter_broker {
        Some(name) => {
            let name = name.trim().to_ascii_uppercase();
            if !listeners.iter().any(|l| l.name == name) {
                bail!("--inter-broker-listener-name {name}: no such listener in --listeners");
            }
            name
        }
        None => listeners
            .iter()
            .find(|l| l.name == PLAINTEXT)
            .unwrap_or(&listeners[0])
            .name
            .clone(),
    };
    Ok((listeners, inter_broker))
}

/// `NAME://ADDRESS` entries, comma-separated; names upper-cased.
fn named_addresses(flag: &str, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, address) = entry
                .split_once("://")
                .with_context(|| format!("{flag} {entry}: expected NAME://HOST:PORT"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                bail!("{flag} {entry}: a listener name is letters, digits, `_` and `-`");
            }
            Ok((name.to_ascii_uppercase(), address.to_owned()))
        })
        .collect()
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
        assert_eq!(config.node_id, 1);
        assert_eq!(
            config.listeners,
            [KafkaListener {
                name: PLAINTEXT.into(),
                bind: "127.0.0.1:9092".into(),
                advertised: None, // the bound address is advertised
            }]
        );
        assert_eq!(config.inter_broker_listener, PLAINTEXT);
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
    fn the_console_password_comes_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console-password");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        let config = |direct: Option<&str>, file: Option<&std::path::Path>| {
            ServerArgs {
                console_password: direct.map(str::to_owned),
                console_password_file: file.map(std::path::Path::to_path_buf),
                ..ServerArgs::default()
            }
            .resolve()
        };
        assert_eq!(config(None, None).unwrap().console_password, None);
        assert_eq!(
            config(Some("pw"), None).unwrap().console_password,
            Some(Secret("pw".into()))
        );
        let from_file = config(None, Some(&path)).unwrap();
        assert_eq!(from_file.console_password, Some(Secret("s3cret".into())));
        assert!(
            !format!("{from_file:?}").contains("s3cret"),
            "Debug output hides the password"
        );
        assert!(config(Some("pw"), Some(&path)).is_err(), "both");
        assert!(config(Some(" "), None).is_err(), "blank");
        assert_eq!(config(Some(""), None).unwrap().console_password, None, "empty: none");
        std::fs::write(&path, "\n").unwrap();
        assert!(config(None, Some(&path)).is_err(), "an empty file");
        assert!(config(None, Some(&dir.path().join("missing"))).is_err());
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
        assert_eq!(config.listeners[0].bind, "127.0.0.1:2000");
        assert_eq!(config.settings.num_partitions, 6);
        assert_eq!(config.settings.log.retention_ms, Some(5000));
    }

    #[test]
    fn kafka_listener_settings_make_several_listeners() {
        let config = ServerArgs {
            listeners: Some("internal://0.0.0.0:9092, EXTERNAL://:19092".into()),
            advertised_listeners: Some("INTERNAL://node1:9092,EXTERNAL://localhost:19092".into()),
            listener_security_protocol_map: Some("INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".into()),
            inter_broker_listener_name: Some("internal".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.listeners,
            [
                KafkaListener {
                    name: "INTERNAL".into(),
                    bind: "0.0.0.0:9092".into(),
                    advertised: Some(("node1".into(), 9092)),
                },
                KafkaListener {
                    name: "EXTERNAL".into(),
                    bind: "0.0.0.0:19092".into(),
                    advertised: Some(("localhost".into(), 19092)),
                },
            ]
        );
        assert_eq!(config.inter_broker_listener, "INTERNAL");
    }

    #[test]
    fn listener_settings_that_disagree_are_clear_errors() {
        let bad = |listeners: &str, advertised: Option<&str>, map: Option<&str>, inter: Option<&str>| {
            ServerArgs {
                listeners: Some(listeners.into()),
                advertised_listeners: advertised.map(Into::into),
                listener_security_protocol_map: map.map(Into::into),
                inter_broker_listener_name: inter.map(Into::into),
                ..Default::default()
            }
            .resolve()
            .unwrap_err()
            .to_string()
        };
        assert!(bad("A://:1,A://:2", None, Some("A:PLAINTEXT"), None).contains("twice"));
        assert!(bad("A://:1", Some("B://h:1"), Some("A:PLAINTEXT"), None).contains("does not"));
        assert!(bad("A://:1", None, None, None).contains("no security protocol"));
        assert!(bad("SSL://:1", None, None, None).contains("not supported"));
        assert!(bad("A://:1", None, Some("A:PLAINTEXT"), Some("B")).contains("no such listener"));
        assert!(bad("A:1", None, None, None).contains("NAME://HOST:PORT"));
        let both = ServerArgs {
            listen: Some("127.0.0.1:1".into()),
            listeners: Some("PLAINTEXT://:2".into()),
            ..Default::default()
        };
        assert!(both.resolve().unwrap_err().to_string().contains("replaces"));
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
