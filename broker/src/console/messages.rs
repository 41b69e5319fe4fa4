//! The message browser: one partition's records from an offset, or from the first record at or after a
//! time (ListOffsets' rule), a page at a time. Records are read from this broker's replica of the
//! partition, as a consumer's fetch reads them: whole batches, up to the high watermark.

use std::fmt::Write as _;
use std::sync::{Arc, PoisonError};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Html;
use bytes::Bytes;
use kafka_protocol::records::Record;
use strata_protocol::client::records::decode_batches;
use strata_storage::TopicPartition;
use strata_storage::{ReadError, ReadLimits};

use super::html::{self, Section, escape, url};
use super::{Console, Failure, Page, number};
use crate::time::{format_rfc3339, parse_rfc3339};

/// Records per page at most, and by default.
const RECORDS_PER_PAGE_MAX: usize = 100;
const RECORDS_PER_PAGE_DEFAULT: usize = 20;
/// Bytes of a key, value or header shown; the rest is cut, with the full length given.
const VALUE_BYTES_SHOWN_MAX: usize = 1024;
/// Bytes read from the log for one read, and for one page in all (a page of large records shows fewer).
const READ_BYTES_MAX: usize = 256 * 1024;
const PAGE_READ_BYTES_MAX: usize = 4 * 1024 * 1024;

pub async fn page(State(console): State<Arc<Console>>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Page {
    let query = html::fields(query.as_deref().unwrap_or(""));
    let topic = console
        .broker
        .metadata
        .get(&name)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("topic `{name}` does not exist")))?;
    let index = number(query.get("partition"), "partition", 0..=topic.partitions - 1)?.unwrap_or(0);
    let limit =
        number(query.get("limit"), "records per page", 1..=RECORDS_PER_PAGE_MAX)?.unwrap_or(RECORDS_PER_PAGE_DEFAULT);
    let asked_offset = number(query.get("offset"), "offset", 0..=i64::MAX)?;
    let asked_time = match query.get("time").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            Failure::bad_request(format!(
                "`{text}` is not a time: give RFC 3339 (2026-11-20T10:00:00Z) or milliseconds since the epoch"
            ))
        })?),
    };
    let tp = TopicPartition::new(&name, index);
    let Some(partition) = console.broker.replicas.get(&tp) else {
        let leader = console
            .broker
            .metadata
            .image()
            .topic_by_name(&name)
            .and_then(|t| t.partitions.get(&index).map(|p| p.leader));
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "partition {index} of `{name}` has no replica on this broker; browse it on the console of its leader (broker {})",
                leader.map_or("none".to_owned(), |l| l.to_string())
            ),
        ));
    };
    let high_watermark = partition.high_watermark();
    let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
    let log_start = log.log_start_offset();
    let mut note = String::new();
    let from = match (asked_offset, asked_time) {
        (Some(offset), _) => offset as u64,
        (None, Some(ms)) => match log.offset_for_timestamp(ms) {
            Ok(Some(at)) if at.offset < high_watermark => at.offset,
            Ok(_) => {
                note = html::message(
                    "notice",
                    "No record at or after that time: showing the end of the partition.",
                );
                high_watermark
            }
            Err(e) => {
                return Err(Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the time index: {e}"),
                ));
            }
        },
        (None, None) => log_start,
    };
    if from < log_start || from > high_watermark {
        return Err(Failure::bad_request(format!(
            "offset {from} is outside partition {index} of `{name}`: it holds offsets {log_start} to {} \
             (high watermark {high_watermark})",
            high_watermark.saturating_sub(1)
        )));
    }
    let mut records: Vec<Record> = Vec::new();
    let (mut cursor, mut read_bytes) = (from, 0usize);
    while records.len() < limit && cursor < high_watermark && read_bytes < PAGE_READ_BYTES_MAX {
        let limits = ReadLimits {
            max_bytes: READ_BYTES_MAX,
            max_offset: Some(high_watermark),
            min_one_batch: true,
        };
        let read = match log.read(cursor, limits) {
            Ok(read) => read,
            Err(ReadError::OffsetOutOfRange { .. }) => break,
            Err(ReadError::Storage(e)) => {
                return Err(Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the log: {e}"),
                ));
            }
        };
        if read.records.is_empty() || read.next_offset <= cursor {
            break;
        }
        read_bytes += read.records.len();
        let decoded = decode_batches(Bytes::from(read.records), cursor as i64)
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding records: {e}")))?;
        records.extend(decoded.records.into_iter().take(limit - records.len()));
        cursor = read.next_offset;
    }
    drop(log);
    let next = records.last().map_or(from, |r| r.offset as u64 + 1);

    let base = format!("/topics/{}/messages?partition={index}&limit={limit}", url(&name));
    let mut nav = String::from("<nav class=\"pager\">");
    if from > log_start {
        let previous = from.saturating_sub(limit as u64).max(log_start);
        let _ = write!(nav, "<a href=\"{base}&offset={previous}\" rel=\"prev\">← previous</a>");
        let _ = write!(nav, "<a href=\"{base}&offset={log_start}\">first</a>");
    }
    let _ = write!(
        nav,
        "<span>offsets {from}–{} of {log_start}–{}</span>",
        next.saturating_sub(1),
        high_watermark.saturating_sub(1)
    );
    if next < high_watermark {
        let _ = write!(nav, "<a href=\"{base}&offset={next}\" rel=\"next\">next →</a>");
        let last = high_watermark.saturating_sub(limit as u64).max(log_start);
        let _ = write!(nav, "<a href=\"{base}&offset={last}\">last</a>");
    }
    nav.push_str("</nav>");

    let rows = records.iter().map(|r| {
        let mut headers = String::new();
        for (k, v) in &r.headers {
            let _ = write!(
                headers,
                "<div><code>{}</code>: {}</div>",
                escape(k.as_str()),
                show(v.as_ref())
            );
        }
        vec![
            r.offset.to_string(),
            format!(
                "<span title=\"{}\">{}</span>",
                r.timestamp,
                escape(&format_rfc3339(r.timestamp))
            ),
            show(r.key.as_ref()),
            show(r.value.as_ref()),
            if headers.is_empty() {
                "<span class=\"muted\">-</span>".to_owned()
            } else {
                headers
            },
        ]
    });
    let table = html::table(&["Offset", "Timestamp (UTC)", "Key", "Value", "Headers"], rows);
    let options: String = (0..topic.partitions.min(10_000))
        .map(|p| {
            let selected = if p == index { " selected" } else { "" };
            format!("<option value=\"{p}\"{selected}>{p}</option>")
        })
        .collect();
    let body = format!(
        "<p class=\"muted\"><a href=\"/topics/{u}\">{n}</a> · partition {index} · log start {log_start} · \
         high watermark {high_watermark}</p>\
         <form method=\"get\" action=\"/topics/{u}/messages\" class=\"row\">\
         <label>Partition <select name=\"partition\">{options}</select></label>\
         <label>From offset <input name=\"offset\" type=\"number\" min=\"0\" value=\"{offset}\"></label>\
         <label>or from time (UTC) <input name=\"time\" placeholder=\"2026-11-20T10:00:00Z\" value=\"{time}\"></label>\
         <label>Per page <input name=\"limit\" type=\"number\" min=\"1\" max=\"{RECORDS_PER_PAGE_MAX}\" value=\"{limit}\"></label>\
         <button type=\"submit\">Show</button></form>{note}{nav}{table}{nav}",
        u = url(&name),
        n = escape(&name),
        offset = asked_offset.map_or(String::new(), |o| o.to_string()),
        time = escape(query.get("time").map(String::as_str).unwrap_or("")),
    );
    Ok(Html(html::page(Section::Topics, &format!("Messages of {name}"), &body)))
}

/// RFC 3339, a `datetime-local` value (taken as UTC), or milliseconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    parse_rfc3339(text)
        .or_else(|| parse_rfc3339(&format!("{text}Z")))
        .or_else(|| parse_rfc3339(&format!("{text}:00Z")))
}

/// A key, value or header value: UTF-8 text when it is, hex otherwise, cut at [`VALUE_BYTES_SHOWN_MAX`].
fn show(bytes: Option<&Bytes>) -> String {
    let Some(bytes) = bytes else {
        return "<span class=\"muted\">null</span>".to_owned();
    };
    let shown = &bytes[..bytes.len().min(VALUE_BYTES_SHOWN_MAX)];
    let cut = match bytes.len() > shown.len() {
        true => format!(" <span class=\"muted\">… ({} bytes)</span>", bytes.len()),
        false => String::new(),
    };
    // A cut may split a character: the valid prefix is still text.
    let text = match std::str::from_utf8(shown) {
        Ok(text) => Some(text),
        Err(e) if !cut.is_empty() && e.error_len().is_none() => std::str::from_utf8(&shown[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            format!("<pre>{}</pre>{cut}", escape(text))
        }
        _ => {
            let mut hex = String::with_capacity(shown.len() * 2);
            for b in shown {
                let _ = write!(hex, "{b:02x}");
            }
            format!("<code class=\"hex\" title=\"hex\">{hex}</code>{cut}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_as_text_or_hex_and_are_cut() {
        assert_eq!(show(None), "<span class=\"muted\">null</span>");
        assert_eq!(
            show(Some(&Bytes::from_static(b"<b>hi</b>"))),
            "<pre>&lt;b&gt;hi&lt;/b&gt;</pre>"
        );
        assert_eq!(
            show(Some(&Bytes::from_static(&[0, 1, 0xff]))),
            "<code class=\"hex\" title=\"hex\">0001ff</code>"
        );
        let long = Bytes::from("é".repeat(1000));
        let shown = show(Some(&long));
        assert!(shown.starts_with("<pre>é"), "{shown}");
        assert!(shown.ends_with("… (2000 bytes)</span>"), "{shown}");
    }

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("1000"), Some(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01"), Some(1000));
        assert_eq!(parse_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(parse_time("-5"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
