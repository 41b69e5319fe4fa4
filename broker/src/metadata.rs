//! What a broker knows of the cluster: its own identity (`meta.properties`), and the metadata image it
//! follows from the controller quorum ([`MetadataView`]).
//!
//! `meta.properties` is replaced atomically (write temp, fsync, rename, fsync directory) and carries a
//! CRC-32, so a torn write is detected rather than believed:
//!
//! ```text
//! <data_dir>/meta.properties     node.id, cluster.id, version (Kafka's file, plus a crc32 line)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use strata_controller::client::Followed;
use strata_controller::{ConfigResource, MetadataImage};
use tokio::sync::watch;
use uuid::Uuid;

use crate::replica::ClusterView;

const META_PROPERTIES: &str = "meta.properties";
const CRC_PREFIX: &str = "# crc32 ";

/// Who this node is, from `meta.properties` (written on first start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: i32,
    pub cluster_id: String,
}

impl NodeIdentity {
    /// Reads `meta.properties`, or writes it on first start with a cluster id drawn at random or, given a
    /// `cluster_seed` (the voters of a multi-node quorum, which every node is given alike), derived from it
    /// so that every node names the same cluster. A data directory that belongs to another node id is
    /// refused: mixing two nodes' data would be silent corruption.
    pub fn load_or_create(data_dir: &Path, node_id: i32, cluster_seed: Option<&str>) -> anyhow::Result<Self> {
        let path = data_dir.join(META_PROPERTIES);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let body = verify_crc(&text).with_context(|| format!("{} is corrupt", path.display()))?;
                let get = |key: &str| {
                    body.lines()
                        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                        .map(str::to_owned)
                        .with_context(|| format!("{} has no {key}", path.display()))
                };
                let stored: i32 = get("node.id")?.parse().context("node.id is not a number")?;
                if stored != node_id {
                    bail!("{} belongs to node {stored}, not node {node_id}", data_dir.display());
                }
                Ok(Self {
                    node_id,
                    cluster_id: get("cluster.id")?,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self {
                    node_id,
                    cluster_id: new_cluster_id(cluster_seed),
                };
                let body = format!("version=1\nnode.id={node_id}\ncluster.id={}\n", identity.cluster_id);
                write_atomically(&path, &with_crc(body))?;
                Ok(identity)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Kafka's cluster ids are a UUID in URL-safe base64 without padding (22 characters).
fn new_cluster_id(seed: Option<&str>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // FNV-1a, twice with different starting points, for 128 bits that only depend on the seed.
    let fnv = |start: u64, text: &str| {
        text.bytes()
            .fold(start, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    };
    let bits = match seed {
        Some(seed) => {
            (u128::from(fnv(0xcbf2_9ce4_8422_2325, seed)) << 64) | u128::from(fnv(0x6c62_272e_07bb_0142, seed))
        }
        None => Uuid::new_v4().as_u128(),
    };
    (0..22u32)
        .map(|i| {
            // Six bits per character from the top; the 22nd character holds the last two bits, zero-padded.
            let end = 6 * (i + 1);
            let sextet = if end <= 128 {
                bits >> (128 - end)
            } else {
                bits << (end - 128)
            };
            ALPHABET[(sextet & 0x3f) as usize] as char
        })
        .collect()
}

/// A topic as a request handler sees it: a summary of the metadata image's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Replicas of partition 0 (every partition is placed with the same count).
    pub replication_factor: i16,
    /// Topic-level overrides, by Kafka name; validated before they get here.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    fn from_image(image: &MetadataImage, topic: &strata_controller::Topic) -> Self {
        let configs = image
            .configs(&ConfigResource::Topic(topic.name.clone()))
            .cloned()
            .unwrap_or_default();
        Self {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.len() as i32,
            replication_factor: topic.partitions.get(&0).map_or(0, |p| p.replicas.len() as i16),
            configs,
        }
    }
}

/// The cluster metadata as this broker follows it from the controllers (see
/// `strata_controller::client::follow`): read by request handlers, waited on after a change.
#[derive(Debug)]
pub struct MetadataView {
    followed: watch::Receiver<Followed>,
    /// The listener brokers reach each other on (`inter.broker.listener.name`).
    inter_broker_listener: String,
    /// The index of the last image this broker has acted on (hosted, led, followed its partitions).
    acted_on: watch::Sender<u64>,
}

impl MetadataView {
    pub fn new(followed: watch::Receiver<Followed>, inter_broker_listener: String) -> Self {
        Self {
            followed,
            inter_broker_listener,
            acted_on: watch::Sender::new(0),
        }
    }

    /// Called once the image of `index` has been acted on.
    pub fn acted_on(&self, index: u64) {
        self.acted_on.send_replace(index);
    }

    pub fn image(&self) -> MetadataImage {
        self.followed.borrow().image.clone()
    }

    pub fn index(&self) -> u64 {
        self.followed.borrow().index
    }

    /// Waits until this broker has acted on the image of index `index` (a change the controller applied
    /// there), or `timeout` passes. Returns whether it has.
    pub async fn wait_for(&self, index: u64, timeout: Duration) -> bool {
        let mut acted_on = self.acted_on.subscribe();
        tokio::time::timeout(timeout, acted_on.wait_for(|&acted| acted >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until this broker's image includes index `index`, acted on or not, or `timeout` passes.
    pub async fn wait_to_know(&self, index: u64, timeout: Duration) -> bool {
        let mut followed = self.followed.clone();
        tokio::time::timeout(timeout, followed.wait_for(|f| f.index >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Followed> {
        self.followed.clone()
    }

    pub fn get(&self, name: &str) -> Option<Topic> {
        let image = self.image();
        image.topic_by_name(name).map(|t| Topic::from_image(&image, t))
    }

    pub fn by_id(&self, id: Uuid) -> Option<Topic> {
        let image = self.image();
        image.topic(&id).map(|t| Topic::from_image(&image, t))
    }

    pub fn all(&self) -> Vec<Topic> {
        let image = self.image();
        let mut topics: Vec<Topic> = image.topics().values().map(|t| Topic::from_image(&image, t)).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }
}

impl ClusterView for MetadataView {
    fn broker_address(&self, id: i32) -> Option<String> {
        let image = self.image();
        let listener = image
            .broker(id)?
            .listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener)?;
        Some(format!("{}:{}", listener.host, listener.port))
    }

    fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.image().topic_by_name(name).map(|t| t.id)
    }
}

pub(crate) fn with_crc(body: String) -> String {
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}{CRC_PREFIX}{crc:08x}\n")
}

/// Returns the body of a file written by [`with_crc`] if its CRC matches.
pub(crate) fn verify_crc(text: &str) -> anyhow::Result<&str> {
    let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let stored = text[body_end..]
        .trim_end()
        .strip_prefix(CRC_PREFIX)
        .context("no CRC line")?;
    let stored = u32::from_str_radix(stored, 16).context("CRC is not hex")?;
    let body = &text[..body_end];
    if crc32fast::hash(body.as_bytes()) != stored {
        bail!("CRC mismatch");
    }
    Ok(body)
}

pub(crate) fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_guards_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::load_or_create(dir.path(), 1, None).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        assert_eq!(NodeIdentity::load_or_create(dir.path(), 1, None).unwrap(), first);
        assert!(NodeIdentity::load_or_create(dir.path(), 2, None).is_err());
        let path = dir.path().join(META_PROPERTIES);
        let torn = fs::read_to_string(&path).unwrap().replace("node.id=1", "node.id=7");
        fs::write(&path, torn).unwrap();
        assert!(
            NodeIdentity::load_or_create(dir.path(), 7, None).is_err(),
            "the CRC catches an edited file"
        );
    }

    #[test]
    fn nodes_given_the_same_voters_name_the_same_cluster() {
        let seed = Some("1@a:9093,2@b:9093,3@c:9093");
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = NodeIdentity::load_or_create(a.path(), 1, seed).unwrap();
        let two = NodeIdentity::load_or_create(b.path(), 2, seed).unwrap();
        assert_eq!(one.cluster_id, two.cluster_id);
        assert_eq!(one.cluster_id.len(), 22);
        assert_ne!(new_cluster_id(Some("1@a:9093")), one.cluster_id);
    }
}
