//! The overview page: the brokers as the metadata knows them, the controller quorum as DescribeQuorum
//! reports it, and live throughput charts (drawn by `assets/console.js` from `/api/throughput`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};

use super::html::{self, Section, escape};
use super::{Console, Page};

/// How long the page waits for the controllers' answer before showing the quorum as unknown.
const QUORUM_WAIT: Duration = Duration::from_secs(2);

pub async fn page(State(console): State<Arc<Console>>) -> Page {
    let broker = &console.broker;
    let image = broker.metadata.image();
    let rows = image.brokers().values().map(|b| {
        let mut listeners = String::new();
        for l in &b.listeners {
            let _ = write!(
                listeners,
                "<div><span class=\"muted\">{}</span> {}:{}</div>",
                escape(&l.name),
                escape(&l.host),
                l.port
            );
        }
        let state = match b.fenced {
            true => "<span class=\"badge bad\">fenced</span>",
            false => "<span class=\"badge ok\">active</span>",
        };
        let this = if b.id == broker.node_id() {
            " <span class=\"muted\">(this node)</span>"
        } else {
            ""
        };
        vec![
            format!("{}{this}", b.id),
            listeners,
            state.to_owned(),
            escape(b.rack.as_deref().unwrap_or("-")).into_owned(),
        ]
    });
    let brokers = html::table(&["Broker", "Listeners", "State", "Rack"], rows);
    let (topics, partitions) = image
        .topics()
        .values()
        .fold((0, 0), |(t, p), topic| (t + 1, p + topic.partitions.len()));
    let quorum = quorum(&console).await;
    let body = format!(
        "<p class=\"muted\">Cluster {cluster} · this node is broker {id} · {topics} topics, {partitions} partitions · \
         metadata index {index}</p>\
         <section><h2>Throughput <span class=\"muted small\">(this broker's share, per second)</span></h2>\
         <div class=\"charts\" id=\"charts\" data-source=\"/api/throughput\">\
         <figure><figcaption>Records in</figcaption><svg class=\"chart\" data-field=\"records_in\"></svg></figure>\
         <figure><figcaption>Bytes in</figcaption><svg class=\"chart\" data-field=\"bytes_in\"></svg></figure>\
         <figure><figcaption>Records consumed <span class=\"muted small\">(committed offsets)</span></figcaption>\
         <svg class=\"chart\" data-field=\"records_consumed\"></svg></figure></div>\
         <div id=\"legend\" class=\"legend\"></div></section>\
         <section><h2>Brokers</h2>{brokers}</section>\
         <section><h2>Controller quorum</h2><div data-refresh=\"/api/quorum\" data-every=\"5000\">{quorum}</div></section>",
        cluster = escape(&broker.identity.cluster_id),
        id = broker.node_id(),
        index = broker.metadata.index(),
    );
    Ok(Html(html::page(Section::Overview, "Overview", &body)))
}

/// The quorum table alone, refreshed in place by the page's script.
pub async fn quorum_fragment(State(console): State<Arc<Console>>) -> Html<String> {
    Html(quorum(&console).await)
}

pub async fn throughput(State(console): State<Arc<Console>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        console.throughput.json().to_string(),
    )
}

/// The voters, the leader, the term and each voter's lag behind the committed index.
async fn quorum(console: &Console) -> String {
    let reply = match tokio::time::timeout(QUORUM_WAIT, console.broker.controller.describe_quorum()).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return html::message("error", &format!("the controllers did not answer: {e}")),
        Err(_) => return html::message("error", "the controllers did not answer within 2 s"),
    };
    let leader = reply.leader_id;
    let rows = reply.voters.iter().map(|v| {
        let role = match leader {
            Some(l) if l == v.id => "<span class=\"badge ok\">leader</span>",
            _ => "follower",
        };
        let lag = match v.log_end_index {
            i if i < 0 => "unknown".to_owned(),
            i => (i64::try_from(reply.committed_index).unwrap_or(i64::MAX) - i)
                .max(0)
                .to_string(),
        };
        let end = match v.log_end_index {
            i if i < 0 => "unknown".to_owned(),
            i => i.to_string(),
        };
        vec![
            v.id.to_string(),
            escape(&v.address).into_owned(),
            role.to_owned(),
            end,
            lag,
        ]
    });
    format!(
        "<p>Leader: <strong>{}</strong> · term {} · committed index {}</p>{}",
        leader.map_or("none".to_owned(), |l| l.to_string()),
        reply.term,
        reply.committed_index,
        html::table(&["Voter", "Address", "Role", "Replicated to", "Lag (entries)"], rows)
    )
}
