//! The cluster metadata a single node keeps: node and cluster identity, and the topics with their settings.
//!
//! This is the single-node stand-in for the controller quorum (a later milestone moves topics into the
//! Raft metadata log). Both files are replaced atomically (write temp, fsync, rename, fsync directory) and
//! carry a CRC-32, so a torn write is detected rather than believed:
//!
//! ```text
//! <data_dir>/meta.properties     node.id, cluster.id, version (Kafka's file, plus a crc32 line)
//! <data_dir>/topics.toml         one [[topic]] table per topic: name, id, partitions, configs
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const META_PROPERTIES: &str = "meta.properties";
const TOPICS_FILE: &str = "topics.toml";
const CRC_PREFIX: &str = "# crc32 ";

/// Who this node is, from `meta.properties` (written on first start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: i32,
    pub cluster_id: String,
}

impl NodeIdentity {
    /// Reads `meta.properties`, or writes it with a fresh cluster id on first start. A data directory that
    /// belongs to another node id is refused: mixing two nodes' data would be silent corruption.
    pub fn load_or_create(data_dir: &Path, node_id: i32) -> anyhow::Result<Self> {
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
                    cluster_id: new_cluster_id(),
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
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
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

/// A topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides, by Kafka name; validated before they get here.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    #[serde(default)]
    topic: Vec<Topic>,
}

/// Why a topic change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic `{0}` already exists")]
    Exists(String),
    #[error("topic `{0}` does not exist")]
    Unknown(String),
}

/// The topics of this node, persisted in `topics.toml`.
#[derive(Debug)]
pub struct TopicStore {
    path: PathBuf,
    topics: RwLock<BTreeMap<String, Topic>>,
}

impl TopicStore {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(TOPICS_FILE);
        let topics = match fs::read_to_string(&path) {
            Ok(text) => {
                let body = verify_crc(&text).with_context(|| format!("{} is corrupt", path.display()))?;
                let file: TopicsFile = toml::from_str(body).with_context(|| format!("parsing {}", path.display()))?;
                file.topic.into_iter().map(|t| (t.name.clone(), t)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            path,
            topics: RwLock::new(topics),
        })
    }

    pub fn get(&self, name: &str) -> Option<Topic> {
        self.read().get(name).cloned()
    }

    pub fn by_id(&self, id: Uuid) -> Option<Topic> {
        self.read().values().find(|t| t.id == id).cloned()
    }

    pub fn all(&self) -> Vec<Topic> {
        self.read().values().cloned().collect()
    }

    /// Adds a topic and persists the change before returning.
    pub fn create(&self, topic: Topic) -> anyhow::Result<Result<(), TopicError>> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if topics.contains_key(&topic.name) {
            return Ok(Err(TopicError::Exists(topic.name)));
        }
        topics.insert(topic.name.clone(), topic);
        self.persist(&topics)?;
        Ok(Ok(()))
    }

    /// Changes a topic and persists the change before returning the new state.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut Topic)) -> anyhow::Result<Result<Topic, TopicError>> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get_mut(name) else {
            return Ok(Err(TopicError::Unknown(name.into())));
        };
        change(topic);
        let updated = topic.clone();
        self.persist(&topics)?;
        Ok(Ok(updated))
    }

    /// Removes a topic and persists the change.
    pub fn delete(&self, name: &str) -> anyhow::Result<Option<Topic>> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let removed = topics.remove(name);
        if removed.is_some() {
            self.persist(&topics)?;
        }
        Ok(removed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Topic>> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self, topics: &BTreeMap<String, Topic>) -> anyhow::Result<()> {
        let file = TopicsFile {
            topic: topics.values().cloned().collect(),
        };
        write_atomically(&self.path, &with_crc(toml::to_string(&file)?))
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
        let first = NodeIdentity::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        assert_eq!(NodeIdentity::load_or_create(dir.path(), 1).unwrap(), first);
        assert!(NodeIdentity::load_or_create(dir.path(), 2).is_err());
        let path = dir.path().join(META_PROPERTIES);
        let torn = fs::read_to_string(&path).unwrap().replace("node.id=1", "node.id=7");
        fs::write(&path, torn).unwrap();
        assert!(
            NodeIdentity::load_or_create(dir.path(), 7).is_err(),
            "the CRC catches an edited file"
        );
    }

    #[test]
    fn topics_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        let topic = Topic {
            name: "orders".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: [("retention.ms".into(), "1000".into())].into(),
        };
        store.create(topic.clone()).unwrap().unwrap();
        assert_eq!(
            store.create(topic.clone()).unwrap(),
            Err(TopicError::Exists("orders".into()))
        );
        store.update("orders", |t| t.partitions = 5).unwrap().unwrap();
        let reopened = TopicStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("orders").unwrap().partitions, 5);
        assert_eq!(reopened.by_id(topic.id).unwrap().configs["retention.ms"], "1000");
        assert!(reopened.delete("orders").unwrap().is_some());
        assert!(TopicStore::open(dir.path()).unwrap().all().is_empty());
    }
}
