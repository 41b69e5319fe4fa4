//! The topic pages: the list, one topic (its partitions, a page at a time, and its configs), and the
//! forms that create a topic, set or remove a config, add partitions and delete a topic. Every change goes
//! through the same `Broker` functions as the Kafka APIs (CreateTopics, IncrementalAlterConfigs,
//! CreatePartitions, DeleteTopics), with their checks.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use kafka_protocol::ResponseError;
use strata_controller::ConfigResource;

use super::html::{self, Section, csrf_field, escape, url};
use super::{Console, Failure, Page, number, see_other};
use crate::broker::{NewTopic, PARTITIONS_MAX, TopicFailure};

/// Rows of a topic's partition table per page: a topic of 10,000 partitions is 100 pages.
const PARTITIONS_PER_PAGE: usize = 100;
/// Topics listed per page.
const TOPICS_PER_PAGE: usize = 500;
/// The most configs a create form may set.
const CONFIG_LINES_MAX: usize = 64;

/// A refused topic change as a page: the status a client error deserves, and the broker's reason.
impl From<TopicFailure> for Failure {
    fn from(f: TopicFailure) -> Self {
        let status = match f.error {
            ResponseError::UnknownTopicOrPartition => StatusCode::NOT_FOUND,
            ResponseError::TopicAlreadyExists => StatusCode::CONFLICT,
            ResponseError::RequestTimedOut | ResponseError::NotController => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure::new(status, f.message)
    }
}

/// Bytes of each topic's logs on this broker.
fn local_sizes(console: &Console) -> HashMap<String, u64> {
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for (tp, log) in console.broker.replicas.log_manager().logs() {
        let size = log.lock().unwrap_or_else(PoisonError::into_inner).size_bytes();
        *sizes.entry(tp.topic).or_default() += size;
    }
    sizes
}

pub async fn list(State(console): State<Arc<Console>>, RawQuery(query): RawQuery) -> Page {
    let query = html::fields(query.as_deref().unwrap_or(""));
    let image = console.broker.metadata.image();
    let sizes = local_sizes(&console);
    let mut topics: Vec<_> = image.topics().values().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let pages = topics.len().div_ceil(TOPICS_PER_PAGE).max(1);
    let page = number(query.get("page"), "page", 1..=pages)?.unwrap_or(1);
    let rows = topics
        .iter()
        .skip((page - 1) * TOPICS_PER_PAGE)
        .take(TOPICS_PER_PAGE)
        .map(|t| {
            let rf = t.partitions.get(&0).map_or(0, |p| p.replicas.len());
            let under = t.partitions.values().filter(|p| p.isr.len() < p.replicas.len()).count();
            let under = match under {
                0 => "0".to_owned(),
                n => format!("<span class=\"badge bad\">{n}</span>"),
            };
            vec![
                format!("<a href=\"/topics/{}\">{}</a>", url(&t.name), escape(&t.name)),
                t.partitions.len().to_string(),
                rf.to_string(),
                html::bytes(sizes.get(&t.name).copied().unwrap_or(0)),
                under,
            ]
        });
    let table = html::table(
        &[
            "Topic",
            "Partitions",
            "Replication factor",
            "Size on this broker",
            "Under-replicated",
        ],
        rows,
    );
    let body = format!(
        "{table}{pager}<section><h2>Create a topic</h2>\
         <form method=\"post\" action=\"/topics\" class=\"stack\">{csrf}\
         <label>Name <input name=\"name\" required maxlength=\"249\" pattern=\"[a-zA-Z0-9._-]+\" \
         placeholder=\"orders\"></label>\
         <label>Partitions <input name=\"partitions\" type=\"number\" min=\"1\" max=\"{PARTITIONS_MAX}\" \
         placeholder=\"broker default\"></label>\
         <label>Replication factor <input name=\"replication_factor\" type=\"number\" min=\"1\" max=\"32\" \
         placeholder=\"broker default\"></label>\
         <label>Configs <textarea name=\"configs\" rows=\"3\" placeholder=\"retention.ms=86400000&#10;cleanup.policy=compact\">\
         </textarea></label>\
         <button type=\"submit\">Create topic</button></form></section>",
        pager = pager("/topics?", page, pages),
        csrf = csrf_field(&console.csrf),
    );
    Ok(Html(html::page(Section::Topics, "Topics", &body)))
}

/// Links to the other pages of a paged table.
fn pager(base: &str, page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<nav class=\"pager\">");
    if page > 1 {
        let _ = write!(out, "<a href=\"{base}page={}\">← previous</a>", page - 1);
    }
    let _ = write!(out, "<span>page {page} of {pages}</span>");
    if page < pages {
        let _ = write!(out, "<a href=\"{base}page={}\">next →</a>", page + 1);
    }
    out.push_str("</nav>");
    out
}

pub async fn show(State(console): State<Arc<Console>>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Page {
    let query = html::fields(query.as_deref().unwrap_or(""));
    let image = console.broker.metadata.image();
    let topic = image
        .topic_by_name(&name)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("topic `{name}` does not exist")))?;
    let pages = topic.partitions.len().div_ceil(PARTITIONS_PER_PAGE).max(1);
    let page = number(query.get("page"), "page", 1..=pages)?.unwrap_or(1);
    let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
    let rows = topic
        .partitions
        .iter()
        .skip((page - 1) * PARTITIONS_PER_PAGE)
        .take(PARTITIONS_PER_PAGE)
        .map(|(&index, p)| {
            let tp = strata_storage::TopicPartition::new(&name, index);
            let local = console.broker.replicas.get(&tp).map(|partition| {
                let hw = partition.high_watermark();
                let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
                (log.log_start_offset(), log.log_end_offset(), hw, log.size_bytes())
            });
            let isr = match p.isr.len() < p.replicas.len() {
                true => format!("<span class=\"badge bad\">{}</span>", ids(&p.isr)),
                false => ids(&p.isr),
            };
            let leader = match p.leader {
                l if l < 0 => "<span class=\"badge bad\">none</span>".to_owned(),
                l => l.to_string(),
            };
            let mut row = vec![index.to_string(), leader, ids(&p.replicas), isr];
            match local {
                Some((start, end, hw, size)) => {
                    row.extend([start.to_string(), end.to_string(), hw.to_string(), html::bytes(size)])
                }
                None => row.extend(["-".into(), "-".into(), "-".into(), "not on this broker".into()]),
            }
            row.push(format!(
                "<a href=\"/topics/{}/messages?partition={index}\">browse</a>",
                url(&name)
            ));
            row
        });
    let partitions = html::table(
        &[
            "Partition",
            "Leader",
            "Replicas",
            "ISR",
            "Log start",
            "Log end",
            "High watermark",
            "Size",
            "Messages",
        ],
        rows,
    );
    let configs = image
        .configs(&ConfigResource::Topic(name.clone()))
        .cloned()
        .unwrap_or_default();
    let csrf = csrf_field(&console.csrf);
    let config_rows = configs.iter().map(|(k, v)| {
        vec![
            format!("<code>{}</code>", escape(k)),
            format!("<code>{}</code>", escape(v)),
            format!(
                "<form method=\"post\" action=\"/topics/{}/configs\" class=\"inline\">{csrf}\
                 <input type=\"hidden\" name=\"key\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"remove\">\
                 <button type=\"submit\" class=\"secondary\">remove</button></form>",
                url(&name),
                escape(k)
            ),
        ]
    });
    let body = format!(
        "<p class=\"muted\">Topic id {id} · {count} partitions · \
         <a href=\"/topics/{u}/messages\">browse messages</a> · <a href=\"/topics/{u}/delete\" class=\"danger\">delete…</a></p>\
         <section><h2>Partitions</h2>{partitions}{pager}</section>\
         <section><h2>Configs <span class=\"muted small\">(set on this topic; others are the broker defaults)</span></h2>\
         {config_table}\
         <form method=\"post\" action=\"/topics/{u}/configs\" class=\"row\">{csrf}\
         <input type=\"hidden\" name=\"action\" value=\"set\">\
         <label>Config <input name=\"key\" required placeholder=\"retention.ms\"></label>\
         <label>Value <input name=\"value\" required placeholder=\"86400000\"></label>\
         <button type=\"submit\">Set</button></form></section>\
         <section><h2>Add partitions</h2>\
         <form method=\"post\" action=\"/topics/{u}/partitions\" class=\"row\">{csrf}\
         <label>New partition count <input name=\"count\" type=\"number\" min=\"{next}\" max=\"{PARTITIONS_MAX}\" \
         value=\"{next}\" required></label><button type=\"submit\">Add partitions</button></form></section>",
        id = topic.id,
        count = topic.partitions.len(),
        u = url(&name),
        pager = pager(&format!("/topics/{}?", url(&name)), page, pages),
        config_table = html::table(&["Config", "Value", ""], config_rows),
        next = topic.partitions.len() + 1,
    );
    Ok(Html(html::page(Section::Topics, &format!("Topic {name}"), &body)))
}

/// `key=value` lines of the create form.
fn parse_configs(text: &str) -> Result<BTreeMap<String, String>, Failure> {
    let mut configs = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| Failure::bad_request(format!("config line `{line}` is not KEY=VALUE")))?;
        configs.insert(key.trim().to_owned(), value.trim().to_owned());
        if configs.len() > CONFIG_LINES_MAX {
            return Err(Failure::bad_request(format!("at most {CONFIG_LINES_MAX} configs")));
        }
    }
    Ok(configs)
}

pub async fn create(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Result<Response, Failure> {
    let form = console.form(&headers, &body)?;
    let name = form.get("name").map(|n| n.trim().to_owned()).unwrap_or_default();
    let new = NewTopic {
        name: name.clone(),
        partitions: number(form.get("partitions"), "partitions", 1..=PARTITIONS_MAX)?,
        replication_factor: number(form.get("replication_factor"), "replication factor", 1..=i16::MAX)?,
        configs: parse_configs(form.get("configs").map(String::as_str).unwrap_or(""))?,
        assignment: None,
    };
    console.broker.create_topic(new, false).await?;
    Ok(see_other(&format!("/topics/{}", url(&name))))
}

pub async fn alter_config(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = console.form(&headers, &body)?;
    let key = form.get("key").map(|k| k.trim().to_owned()).unwrap_or_default();
    if key.is_empty() {
        return Err(Failure::bad_request("a config name is needed"));
    }
    let resource = ConfigResource::Topic(name.clone());
    let mut configs = console.broker.configs_of(&resource)?;
    match form.get("action").map(String::as_str) {
        Some("set") => {
            let value = form.get("value").map(|v| v.trim().to_owned()).unwrap_or_default();
            configs.insert(key, value);
        }
        Some("remove") => {
            configs.remove(&key);
        }
        _ => return Err(Failure::bad_request("action must be `set` or `remove`")),
    }
    console.broker.set_configs(&resource, configs, false).await?;
    Ok(see_other(&format!("/topics/{}", url(&name))))
}

pub async fn add_partitions(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = console.form(&headers, &body)?;
    let count = number(form.get("count"), "the partition count", 1..=PARTITIONS_MAX)?
        .ok_or_else(|| Failure::bad_request("a partition count is needed"))?;
    console.broker.add_partitions(&name, count, None, false).await?;
    Ok(see_other(&format!("/topics/{}", url(&name))))
}

pub async fn confirm_delete(State(console): State<Arc<Console>>, Path(name): Path<String>) -> Page {
    if console.broker.metadata.get(&name).is_none() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("topic `{name}` does not exist"),
        ));
    }
    let body = format!(
        "<p>Deleting <strong>{n}</strong> removes its partitions and every record in them, on every broker. \
         Consumer groups keep their committed offsets for it until they expire.</p>\
         <form method=\"post\" action=\"/topics/{u}/delete\" class=\"stack\">{csrf}\
         <label>Type the topic's name to confirm <input name=\"confirm\" required autocomplete=\"off\"></label>\
         <button type=\"submit\" class=\"danger\">Delete topic {n}</button></form>",
        n = escape(&name),
        u = url(&name),
        csrf = csrf_field(&console.csrf),
    );
    Ok(Html(html::page(
        Section::Topics,
        &format!("Delete topic {name}?"),
        &body,
    )))
}

pub async fn delete(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = console.form(&headers, &body)?;
    if form.get("confirm").map(|c| c.trim()) != Some(name.as_str()) {
        return Err(Failure::bad_request(format!(
            "not deleted: the confirmation does not match the topic's name `{name}`"
        )));
    }
    console.broker.delete_topic(&name).await?;
    let notice = html::message("notice", &format!("Topic {name} was deleted."));
    let page = html::page(
        Section::Topics,
        "Topic deleted",
        &format!("{notice}<p><a href=\"/topics\">Back to the topics</a></p>"),
    );
    Ok(Html(page).into_response())
}
