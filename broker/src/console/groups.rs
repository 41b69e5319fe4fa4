//! The consumer group pages: the list, one group (members, assignments, and per partition the committed
//! offset, the log end offset and the lag), and resetting a group's offsets: a preview (GET, changes
//! nothing) that shows each partition's current and new offset, then "apply" (POST). Both go through the
//! CLI's `group reset-offsets` logic (`crate::offset_reset::plan_reset`, `commit_reset`) over a Kafka client of
//! this broker's listener: a group's requests go to its coordinator wherever it is, and the coordinator
//! accepts the commit only while the group has no members, as Kafka does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use strata_protocol::client::admin::decode_consumer_assignment;
use strata_protocol::client::{ClientError, Router as KafkaRouter};

use super::html::{self, Section, csrf_field, escape, url};
use super::{Console, Failure, Page, number, text};
use crate::offset_reset::{Planned, Target, TopicPartitions, commit_reset, log_end_offsets, plan_reset};
use crate::time::parse_rfc3339;

/// Groups described on the list page (for their member counts); more are listed without one.
const GROUPS_DESCRIBED_MAX: usize = 200;
/// Topics one reset may name.
const RESET_TOPICS_MAX: usize = 64;

/// A client failure as a page.
fn failed(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e}"))
}

pub async fn list(State(console): State<Arc<Console>>) -> Page {
    let rows = console
        .with_kafka(async move |kafka| {
            let groups = kafka.list_groups().await.map_err(|e| failed("listing the groups", e))?;
            let mut rows = Vec::new();
            for (i, g) in groups.iter().enumerate() {
                let kind = g.group_type.clone().unwrap_or_else(|| "classic".into());
                let members = match i < GROUPS_DESCRIBED_MAX {
                    true => members_of(kafka, &g.group_id, &kind)
                        .await
                        .map_or("?".into(), |n| n.to_string()),
                    false => "-".into(),
                };
                rows.push(vec![
                    format!("<a href=\"/groups/{}\">{}</a>", url(&g.group_id), escape(&g.group_id)),
                    text(&kind),
                    state_badge(g.state.as_deref().unwrap_or("-")),
                    members,
                ]);
            }
            Ok(rows)
        })
        .await?;
    let body = html::table(&["Group", "Type", "State", "Members"], rows);
    Ok(Html(html::page(Section::Groups, "Consumer groups", &body)))
}

async fn members_of(kafka: &mut KafkaRouter, group: &str, kind: &str) -> Result<usize, ClientError> {
    match kind {
        "consumer" => kafka
            .with_coordinator(group, async |c| c.describe_consumer_group(group).await)
            .await
            .map(|d| d.map_or(0, |d| d.members.len())),
        "share" => Ok(0),
        _ => kafka
            .with_coordinator(group, async |c| c.describe_group(group).await)
            .await
            .map(|d| d.members.len()),
    }
}

fn state_badge(state: &str) -> String {
    let class = match state {
        "Stable" => "ok",
        "Empty" => "muted",
        "Dead" => "bad",
        _ => "warn",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(state))
}

/// One group as the page shows it.
struct Described {
    kind: &'static str,
    state: String,
    detail: String,
    /// Member id, client id, host, assignment (`topic:p,p`).
    members: Vec<[String; 4]>,
    /// (topic, partition) → (committed, member).
    partitions: BTreeMap<(String, i32), (Option<i64>, Option<String>)>,
}

async fn describe(kafka: &mut KafkaRouter, group: &str) -> Result<Described, Failure> {
    let consumer = kafka
        .with_coordinator(group, async |c| match c.describe_consumer_group(group).await {
            Err(ClientError::UnsupportedApi(_)) => Ok(None),
            other => other,
        })
        .await
        .map_err(|e| failed("describing the group", e))?;
    let committed = kafka
        .with_coordinator(group, async |c| c.fetch_committed_offsets(group, None).await)
        .await
        .map_err(|e| failed("fetching the committed offsets", e))?;
    let mut partitions: BTreeMap<(String, i32), (Option<i64>, Option<String>)> = BTreeMap::new();
    for c in committed {
        partitions.entry((c.topic, c.partition)).or_default().0 = c.offset;
    }
    let assignment = |topics: &[(String, Vec<i32>)]| {
        topics
            .iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut members = Vec::new();
    let described = match consumer {
        Some(d) => {
            for m in &d.members {
                for (topic, ps) in &m.assignment {
                    for &p in ps {
                        partitions.entry((topic.clone(), p)).or_default().1 = Some(m.member_id.clone());
                    }
                }
                let topics: Vec<(String, Vec<i32>)> = m.assignment.clone().into_iter().collect();
                members.push([
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    assignment(&topics),
                ]);
            }
            Described {
                kind: "consumer",
                state: d.state,
                detail: format!("group epoch {}, assignor {}", d.epoch, d.assignor),
                members,
                partitions,
            }
        }
        None => {
            let d = kafka
                .with_coordinator(group, async |c| c.describe_group(group).await)
                .await
                .map_err(|e| failed("describing the group", e))?;
            if d.state == "Dead" && d.members.is_empty() && partitions.is_empty() {
                return Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("group `{group}` does not exist"),
                ));
            }
            for m in &d.members {
                let shown = match d.protocol_type.as_str() {
                    "consumer" => match decode_consumer_assignment(&m.assignment) {
                        Ok(topics) => {
                            for (topic, ps) in &topics {
                                for &p in ps {
                                    partitions.entry((topic.clone(), p)).or_default().1 = Some(m.member_id.clone());
                                }
                            }
                            assignment(&topics)
                        }
                        Err(e) => format!("({e})"),
                    },
                    _ => format!("({} bytes)", m.assignment.len()),
                };
                members.push([m.member_id.clone(), m.client_id.clone(), m.client_host.clone(), shown]);
            }
            Described {
                kind: "classic",
                state: d.state,
                detail: match (d.protocol_type.as_str(), d.protocol.as_str()) {
                    ("", _) => "no protocol".to_owned(),
                    (kind, "") => format!("protocol {kind}"),
                    (kind, chosen) => format!("protocol {kind}/{chosen}"),
                },
                members,
                partitions,
            }
        }
    };
    Ok(described)
}

pub async fn show(State(console): State<Arc<Console>>, Path(group): Path<String>) -> Page {
    let asked = group.clone();
    let (described, ends) = console
        .with_kafka(async move |kafka| {
            let described = describe(kafka, &asked).await?;
            let ends = log_end_offsets(kafka, described.partitions.keys())
                .await
                .map_err(|e| failed("listing the log end offsets", e))?;
            Ok((described, ends))
        })
        .await?;
    let member_rows = described
        .members
        .iter()
        .map(|m| m.iter().map(|cell| format!("<code>{}</code>", escape(cell))).collect());
    let dash = |o: Option<i64>| o.map_or("-".to_owned(), |o| o.to_string());
    let mut total_lag = 0;
    let partition_rows: Vec<Vec<String>> = described
        .partitions
        .iter()
        .map(|((topic, p), (committed, member))| {
            let end = ends.get(&(topic.clone(), *p)).copied();
            let lag = committed.zip(end).map(|(c, e)| (e - c).max(0));
            total_lag += lag.unwrap_or(0);
            vec![
                format!("<a href=\"/topics/{}\">{}</a>", url(topic), escape(topic)),
                p.to_string(),
                dash(*committed),
                dash(end),
                match lag {
                    Some(lag) if lag > 0 => format!("<strong>{lag}</strong>"),
                    other => dash(other),
                },
                member
                    .as_deref()
                    .map_or("-".to_owned(), |m| format!("<code>{}</code>", escape(m))),
            ]
        })
        .collect();
    let topics: Vec<&String> = {
        let mut t: Vec<&String> = described.partitions.keys().map(|(t, _)| t).collect();
        t.dedup();
        t
    };
    let options: String = topics
        .iter()
        .map(|t| format!("<option value=\"{}\">{}</option>", escape(t), escape(t)))
        .collect();
    let body = format!(
        "<p>Type <strong>{kind}</strong> · state {state} · {detail} · {count} members · total lag <strong \
         id=\"total-lag\">{total_lag}</strong></p>\
         <section><h2>Members</h2>{members}</section>\
         <section><h2>Partitions</h2>{partitions}</section>\
         <section><h2>Reset offsets</h2>\
         <p class=\"muted\">Shows the change first; it is applied only while the group has no members.</p>\
         <form method=\"get\" action=\"/groups/{u}/reset\" class=\"row\">\
         <label>Topic <select name=\"topic\"><option value=\"\">all committed topics</option>{options}</select></label>\
         <label>To <select name=\"to\"><option value=\"earliest\">earliest</option><option value=\"latest\">latest</option>\
         <option value=\"offset\">offset</option><option value=\"time\">time</option></select></label>\
         <label>Offset <input name=\"offset\" type=\"number\" min=\"0\"></label>\
         <label>Time (UTC) <input name=\"time\" placeholder=\"2026-11-20T10:00:00Z\"></label>\
         <button type=\"submit\">Preview</button></form></section>",
        kind = described.kind,
        state = state_badge(&described.state),
        detail = escape(&described.detail),
        count = described.members.len(),
        members = html::table(&["Member", "Client id", "Host", "Assignment"], member_rows),
        partitions = html::table(
            &[
                "Topic",
                "Partition",
                "Committed offset",
                "Log end offset",
                "Lag",
                "Member"
            ],
            partition_rows
        ),
        u = url(&group),
    );
    Ok(Html(html::page(Section::Groups, &format!("Group {group}"), &body)))
}

/// What a reset form asks for.
struct ResetAsk {
    /// Empty: every topic the group has committed offsets for.
    topic: String,
    target: Target,
}

fn reset_ask(fields: &BTreeMap<String, String>) -> Result<ResetAsk, Failure> {
    let target = match fields.get("to").map(String::as_str) {
        Some("earliest") => Target::Earliest,
        Some("latest") => Target::Latest,
        Some("offset") => Target::Offset(
            number(fields.get("offset"), "offset", 0..=i64::MAX)?
                .ok_or_else(|| Failure::bad_request("an offset is needed to reset to an offset"))?,
        ),
        Some("time") => {
            let text = fields.get("time").map(|t| t.trim()).unwrap_or("");
            let ms = parse_rfc3339(text)
                .or_else(|| parse_rfc3339(&format!("{text}Z")))
                .or_else(|| parse_rfc3339(&format!("{text}:00Z")))
                .ok_or_else(|| {
                    Failure::bad_request(format!("`{text}` is not an RFC 3339 time like 2026-11-20T10:00:00Z"))
                })?;
            Target::Time(ms)
        }
        _ => return Err(Failure::bad_request("`to` must be earliest, latest, offset or time")),
    };
    Ok(ResetAsk {
        topic: fields.get("topic").map(|t| t.trim().to_owned()).unwrap_or_default(),
        target,
    })
}

/// The plan for `ask`: the CLI's, over the topics named or every topic the group has committed.
async fn plan(console: &Console, group: &str, ask: ResetAsk) -> Result<Vec<Planned>, Failure> {
    let group = group.to_owned();
    console
        .with_kafka(async move |kafka| {
            let group = group.as_str();
            let topics: Vec<TopicPartitions> = match ask.topic.as_str() {
                "" => {
                    let committed = kafka
                        .with_coordinator(group, async |c| c.fetch_committed_offsets(group, None).await)
                        .await
                        .map_err(|e| failed("fetching the committed offsets", e))?;
                    let mut names: Vec<String> = committed.into_iter().map(|c| c.topic).collect();
                    names.sort();
                    names.dedup();
                    names
                        .into_iter()
                        .map(|topic| TopicPartitions {
                            topic,
                            partitions: None,
                        })
                        .collect()
                }
                topic => vec![TopicPartitions {
                    topic: topic.to_owned(),
                    partitions: None,
                }],
            };
            if topics.is_empty() {
                return Err(Failure::bad_request(format!(
                    "group `{group}` has no committed offsets: name a topic to reset"
                )));
            }
            if topics.len() > RESET_TOPICS_MAX {
                return Err(Failure::bad_request(format!(
                    "at most {RESET_TOPICS_MAX} topics at once"
                )));
            }
            // The CLI's refusals (members present, an unknown topic) are the operator's to act on: 409.
            plan_reset(kafka, group, &topics, ask.target)
                .await
                .map_err(|e| Failure::new(StatusCode::CONFLICT, format!("{e:#}")))
        })
        .await
}

fn plan_table(plan: &[Planned]) -> String {
    let rows = plan.iter().map(|p| {
        let changed = p.current != Some(p.new);
        vec![
            escape(&p.topic).into_owned(),
            p.partition.to_string(),
            p.current.map_or("-".to_owned(), |c| c.to_string()),
            match changed {
                true => format!("<strong>{}</strong>", p.new),
                false => p.new.to_string(),
            },
        ]
    });
    html::table(&["Topic", "Partition", "Current offset", "New offset"], rows)
}

pub async fn preview(
    State(console): State<Arc<Console>>,
    Path(group): Path<String>,
    RawQuery(query): RawQuery,
) -> Page {
    let fields = html::fields(query.as_deref().unwrap_or(""));
    let ask = reset_ask(&fields)?;
    let plan = plan(&console, &group, ask).await?;
    let mut hidden = String::new();
    for name in ["topic", "to", "offset", "time"] {
        if let Some(value) = fields.get(name) {
            let _ = write!(
                hidden,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
    }
    let body = format!(
        "{notice}<section id=\"plan\">{table}</section>\
         <form method=\"post\" action=\"/groups/{u}/reset\" class=\"row\">{csrf}{hidden}\
         <button type=\"submit\" class=\"danger\">Apply</button> <a href=\"/groups/{u}\">Cancel</a></form>",
        notice = html::message(
            "notice",
            "Dry run: nothing has changed yet. Apply commits these offsets."
        ),
        table = plan_table(&plan),
        u = url(&group),
        csrf = csrf_field(&console.csrf),
    );
    Ok(Html(html::page(
        Section::Groups,
        &format!("Reset offsets of {group}"),
        &body,
    )))
}

pub async fn apply(
    State(console): State<Arc<Console>>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let fields = console.form(&headers, &body)?;
    let ask = reset_ask(&fields)?;
    // Planned again, not taken from the form: the log may have moved since the preview, and a form's
    // offsets would be the client's word.
    let plan = plan(&console, &group, ask).await?;
    let (committing, planned) = (group.clone(), plan.clone());
    console
        .with_kafka(async move |kafka| {
            commit_reset(kafka, &committing, &planned)
                .await
                .map_err(|e| Failure::new(StatusCode::CONFLICT, format!("{e:#}")))
        })
        .await?;
    let body = format!(
        "{}{}<p><a href=\"/groups/{}\">Back to the group</a></p>",
        html::message("notice", &format!("Committed the new offsets of group {group}.")),
        plan_table(&plan),
        url(&group)
    );
    Ok(Html(html::page(Section::Groups, &format!("Reset offsets of {group}"), &body)).into_response())
}
