//! The web console: server-rendered pages over this node's broker, served on its HTTP port next to
//! `/health` and `/metrics` (`crate::http` mounts [`routes`]).
//!
//! It owns its pages (one file each: `overview`, `topics`, `messages`, `groups`), the throughput samples
//! the overview charts (`throughput`), the embedded stylesheet and script (`assets/`, compiled into the
//! binary: the console needs no network beyond this node), and who may use it:
//!
//! - Access ([`Access`]): open when the HTTP listener is on loopback and no password is set; HTTP Basic with
//!   the console password when one is set (`STRATA_CONSOLE_PASSWORD`, `--console-password-file`); refused
//!   (403, with the reason) when the listener is reachable beyond loopback and no password is set.
//! - CSRF: every change is a POST carrying this process's CSRF token (a random secret, rendered into each
//!   form; another site cannot read it), from a page of this origin (`Origin`, else `Referer`, must name
//!   the `Host` asked). GET never changes anything.
//!
//! It changes nothing by itself: topics go through `Broker::create_topic`, `delete_topic`, `set_configs`
//! and `add_partitions`, as the Kafka APIs do; records are read from the partition log up to the high
//! watermark, as a consumer's fetch is; groups are described and reset through a Kafka client of this
//! broker's own listener, with the CLI's `group reset-offsets` logic (`crate::cli::group`). So the console
//! can do nothing a Kafka client could not.

mod groups;
pub mod html;
mod messages;
mod overview;
mod throughput;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, REFERER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use strata_protocol::client::{ClientOptions, Router as KafkaRouter};
use tracing::{info, warn};

use crate::broker::Broker;
use html::{Section, escape};
pub use throughput::Throughput;

/// Pages using a Kafka client at once (the group pages); more wait their turn.
const KAFKA_PAGES_MAX: usize = 4;
/// How long a page's Kafka requests retry (a coordinator moving, a leader election) before it gives up.
const KAFKA_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest request body accepted (forms are a few fields; a topic's configs a few KiB).
pub const FORM_BYTES_MAX: usize = 64 * 1024;

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// Who may use the console.
#[derive(Clone, PartialEq, Eq)]
pub enum Access {
    /// The HTTP listener is on loopback and no password is set.
    Open,
    /// HTTP Basic with this password (any user name).
    Password(String),
    /// The listener is reachable beyond loopback and no password is set: pages answer 403.
    Refused,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password itself, in a log line or a panic message.
        match self {
            Access::Open => f.write_str("Open"),
            Access::Password(_) => f.write_str("Password(..)"),
            Access::Refused => f.write_str("Refused"),
        }
    }
}

impl Access {
    /// The rule for a listener bound to `addr` with the configured `password`, logged once at start.
    pub fn decide(addr: SocketAddr, password: Option<String>) -> Self {
        match password.filter(|p| !p.is_empty()) {
            Some(password) => {
                info!(%addr, "web console requires the console password (HTTP Basic)");
                Access::Password(password)
            }
            None if addr.ip().is_loopback() => {
                info!(%addr, "web console is open: the HTTP listener is on loopback");
                Access::Open
            }
            None => {
                warn!(
                    %addr,
                    "web console disabled: the HTTP listener is reachable beyond loopback and no console password is set \
                     (STRATA_CONSOLE_PASSWORD or --console-password-file); its pages answer 403, /health and /metrics stay open"
                );
                Access::Refused
            }
        }
    }
}

/// What every console page sees.
pub struct Console {
    broker: Arc<Broker>,
    access: Access,
    /// This process's CSRF token: 244 random bits, hex.
    csrf: String,
    throughput: Arc<Throughput>,
    /// A Kafka listener of this broker (the inter-broker one, which this node can always reach), for the
    /// group pages' client.
    bootstrap: String,
    /// Group pages using their Kafka client at once, at most (each holds a thread while it does).
    kafka_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("access", &self.access)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console of `broker`; starts its throughput sampling, which stops with the broker.
    pub fn start(broker: Arc<Broker>, access: Access, bootstrap: String) -> Arc<Self> {
        let throughput = Throughput::start(broker.clone());
        let csrf = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Arc::new(Self {
            broker,
            access,
            csrf,
            throughput,
            bootstrap,
            kafka_slots: tokio::sync::Semaphore::new(KAFKA_PAGES_MAX),
        })
    }

    /// Runs `op` with a Kafka client of this broker's listener, as the CLI does: on a thread of its own
    /// with a one-thread runtime. The client's futures (its coordinator retries take `async` closures)
    /// are not `Send`, which a page on the server's runtime must be; a connection per page costs a few
    /// milliseconds on loopback, which these pages can afford.
    async fn with_kafka<T: Send + 'static>(
        &self,
        op: impl AsyncFnOnce(&mut KafkaRouter) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let _slot = self
            .kafka_slots
            .acquire()
            .await
            .map_err(|_| Failure::new(StatusCode::SERVICE_UNAVAILABLE, "the console is stopping"))?;
        let bootstrap = self.bootstrap.clone();
        let work = move || -> Result<T, Failure> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format!("starting a runtime: {e}")))?;
            runtime.block_on(async move {
                let options = ClientOptions {
                    client_id: "strata-console".into(),
                    ..ClientOptions::default()
                };
                let mut router = KafkaRouter::connect(&bootstrap, options).await.map_err(|e| {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot reach this broker's Kafka listener {bootstrap}: {e}"),
                    )
                })?;
                router.set_retry_timeout(KAFKA_RETRY_TIMEOUT);
                op(&mut router).await
            })
        };
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page's client failed: {e}"),
            )
        })?
    }

    /// Checks a POST: it comes from a page of this origin and carries the CSRF token. Returns its fields.
    fn form(&self, headers: &HeaderMap, body: &[u8]) -> Result<std::collections::BTreeMap<String, String>, Failure> {
        if !same_origin(headers) {
            warn!("console: refused a POST from another origin");
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "refused: this change did not come from a page of this console (Origin/Referer)",
            ));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| Failure::bad_request("the form is not UTF-8 (application/x-www-form-urlencoded)"))?;
        let fields = html::fields(body);
        let token = fields.get("csrf").map(String::as_str).unwrap_or_default();
        if !constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            warn!("console: refused a POST without a valid CSRF token");
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or stale (reload the page and try again)",
            ));
        }
        Ok(fields)
    }
}

/// The console's routes, behind its access check.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/api/throughput", get(overview::throughput))
        .route("/api/quorum", get(overview::quorum_fragment))
        .route("/topics", get(topics::list).post(topics::create))
        .route("/topics/{name}", get(topics::show))
        .route("/topics/{name}/configs", post(topics::alter_config))
        .route("/topics/{name}/partitions", post(topics::add_partitions))
        .route(
            "/topics/{name}/delete",
            get(topics::confirm_delete).post(topics::delete),
        )
        .route("/topics/{name}/messages", get(messages::page))
        .route("/groups", get(groups::list))
        .route("/groups/{id}", get(groups::show))
        .route("/groups/{id}/reset", get(groups::preview).post(groups::apply))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(console.clone(), check_access))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .with_state(console)
}

async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        SCRIPT,
    )
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "no such page")
}

/// The access rule, before any page.
async fn check_access(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    match &console.access {
        Access::Open => {}
        Access::Refused => {
            return Failure::new(
                StatusCode::FORBIDDEN,
                "The web console is disabled on this node: its HTTP port is reachable beyond loopback and no console \
                 password is set. Set STRATA_CONSOLE_PASSWORD (or --console-password-file) and restart, or reach the \
                 console through a loopback listener. /health and /metrics stay open.",
            )
            .into_response();
        }
        Access::Password(password) => {
            if !basic_auth_matches(request.headers(), password) {
                let mut response = Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "the console needs the console password (HTTP Basic, any user name)",
                )
                .into_response();
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Basic realm=\"Strata console\", charset=\"UTF-8\""),
                );
                return response;
            }
        }
    }
    next.run(request).await
}

/// Whether `headers` carry HTTP Basic credentials with `password` (the user name is not checked).
fn basic_auth_matches(headers: &HeaderMap, password: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    constant_time_eq(&decoded[colon + 1..], password.as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how much of a secret was guessed.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a POST comes from a page of the origin it was sent to: its `Origin` (or, without one, its
/// `Referer`) names the `Host` it asked. A request with neither is refused: every browser sends one on
/// a form POST, and tools are not what the console serves.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let authority = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// A page that could not be shown: its status and why, rendered as an error page.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "{}<p><a href=\"javascript:history.back()\">Back</a> · <a href=\"/\">Overview</a></p>",
            html::message("error", &self.message)
        );
        (self.status, Html(html::page(Section::Overview, title, &body))).into_response()
    }
}

/// A page answer.
type Page = Result<Html<String>, Failure>;

/// A redirect after a POST that worked, so reloading does not send it again.
fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(axum::http::header::LOCATION, location.to_owned())],
    )
        .into_response()
}

/// Reads a bounded integer field: `None` when absent or empty, an error page when not a number in `range`.
fn number<T>(value: Option<&String>, what: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>, Failure>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = value.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Failure::bad_request(format!(
            "{what} must be a whole number from {} to {}, not `{text}`",
            range.start(),
            range.end()
        ))),
    }
}

/// Escaped text, for the few places a page writes a plain value.
fn text(value: &str) -> String {
    escape(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_name_the_host() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "n1:9644"),
            ("origin", "http://n1:9644")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "n1:9644"),
            ("referer", "http://n1:9644/topics?x")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "n1:9644"),
            ("origin", "http://evil:9644")
        ])));
        assert!(!same_origin(&headers(&[("host", "n1:9644"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "n1:9644")])));
        // The Origin wins over a Referer that would match.
        assert!(!same_origin(&headers(&[
            ("host", "n1:9644"),
            ("origin", "http://evil"),
            ("referer", "http://n1:9644/")
        ])));
    }

    #[test]
    fn basic_auth_checks_the_password_only() {
        let with = |credentials: &str| {
            let mut h = HeaderMap::new();
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            h.insert(AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
            h
        };
        assert!(basic_auth_matches(&with("admin:s3cret:x"), "s3cret:x"));
        assert!(basic_auth_matches(&with(":s3cret:x"), "s3cret:x"));
        assert!(!basic_auth_matches(&with("admin:wrong"), "s3cret:x"));
        assert!(!basic_auth_matches(&with("admin"), "s3cret:x"));
        assert!(!basic_auth_matches(&HeaderMap::new(), "s3cret:x"));
    }

    #[test]
    fn access_follows_the_listener_and_the_password() {
        let loopback: SocketAddr = "127.0.0.1:9644".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9644".parse().unwrap();
        assert_eq!(Access::decide(loopback, None), Access::Open);
        assert_eq!(Access::decide(any, None), Access::Refused);
        assert_eq!(Access::decide(any, Some(String::new())), Access::Refused);
        assert_eq!(Access::decide(any, Some("p".into())), Access::Password("p".into()));
        assert_eq!(Access::decide(loopback, Some("p".into())), Access::Password("p".into()));
    }
}
