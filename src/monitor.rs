//! The agent's log as a stream, for `/v1/agent/monitor` [agent/monitor].
//!
//! A tracing layer, beside the one writing the agent's own log, hands
//! events to the monitors attached at the time. Each monitor asks for a
//! level of its own, which may be more verbose than the agent's
//! `log_level` (an agent logging at INFO can be monitored at DEBUG), so the
//! layer has its own filter: the most verbose level any attached monitor
//! asked for, and nothing at all while none is attached. Lines are written
//! as Consul's hclog writes them, or as its JSON.

use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// Dependencies whose logs the agent keeps at WARN whatever its level
/// (they log every response or every raft tick); monitors see them the
/// same way, so a monitor at a level shows what the agent would log at it.
pub const QUIET: &[&str] = &["hickory_server", "hickory_proto", "openraft"];

/// Events a slow monitor may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// One log event, formatted once for every monitor.
#[derive(Debug, Clone)]
pub struct Record {
    pub level: Level,
    /// hclog's line (no newline).
    pub text: String,
    /// hclog's JSON object (no newline).
    pub json: String,
}

struct Hub {
    tx: broadcast::Sender<Arc<Record>>,
    /// Attached monitors per level rank (index 1 = ERROR .. 5 = TRACE).
    counts: Mutex<[usize; 6]>,
    /// The most verbose rank attached; 0 when none is.
    max: AtomicU8,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        tx: broadcast::channel(BACKLOG).0,
        counts: Mutex::new([0; 6]),
        max: AtomicU8::new(0),
    })
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// hclog's `LevelFromString`, as Consul validates `?loglevel`: `trace`,
/// `debug`, `info`, `warn`, `error` in any case, with `off` (no lines).
/// None for anything else.
pub fn parse_level(s: &str) -> Option<Option<Level>> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some(Some(Level::TRACE)),
        "debug" => Some(Some(Level::DEBUG)),
        "info" => Some(Some(Level::INFO)),
        "warn" => Some(Some(Level::WARN)),
        "error" => Some(Some(Level::ERROR)),
        "off" => Some(None),
        _ => None,
    }
}

/// An attached monitor: receives records at its level or more severe.
/// Detaches when dropped.
pub struct Monitor {
    rx: broadcast::Receiver<Arc<Record>>,
    rank: u8,
}

/// Attaches a monitor at `level` (None: `off`, nothing is received).
pub fn attach(level: Option<Level>) -> Monitor {
    let h = hub();
    let rank = level.as_ref().map(rank).unwrap_or(0);
    let rx = h.tx.subscribe();
    let mut counts = h.counts.lock();
    counts[rank as usize] += 1;
    h.max.store(max_rank(&counts), Ordering::Relaxed);
    Monitor { rx, rank }
}

fn max_rank(counts: &[usize; 6]) -> u8 {
    (1..6u8)
        .rev()
        .find(|r| counts[*r as usize] > 0)
        .unwrap_or(0)
}

impl Monitor {
    /// The next record for this monitor; None once the log ends. Records
    /// missed by falling behind are skipped.
    pub async fn next(&mut self) -> Option<Arc<Record>> {
        loop {
            match self.rx.recv().await {
                Ok(r) if rank(&r.level) <= self.rank => return Some(r),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let h = hub();
        let mut counts = h.counts.lock();
        counts[self.rank as usize] -= 1;
        h.max.store(max_rank(&counts), Ordering::Relaxed);
    }
}

/// The layer to add to the agent's subscriber.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    MonitorLayer.with_filter(Attached)
}

struct MonitorLayer;

/// Passes events at or above the most verbose attached level. Decided per
/// event, as monitors come and go.
struct Attached;

impl<S> Filter<S> for Attached {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        let r = rank(meta.level());
        r <= hub().max.load(Ordering::Relaxed) && (r <= rank(&Level::WARN) || !quiet(meta.target()))
    }

    fn callsite_enabled(&self, _meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let h = hub();
        if h.tx.receiver_count() == 0 {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let record = format(
            *meta.level(),
            &module(meta.target()),
            &fields,
            chrono::Utc::now(),
        );
        let _ = h.tx.send(Arc::new(record));
    }
}

fn quiet(target: &str) -> bool {
    QUIET.iter().any(|q| {
        target
            .strip_prefix(q)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// hclog's module name for a tracing target: cairn's own modules without
/// the crate name, `::` as `.`.
fn module(target: &str) -> String {
    target
        .strip_prefix("cairn::")
        .unwrap_or(target)
        .replace("::", ".")
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().to_string(), text));
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Both of hclog's forms: `2006-01-02T15:04:05.000Z [INFO]  module:
/// message: key=value`, and `{"@level", "@message", "@module",
/// "@timestamp", key: value}`.
fn format(
    level: Level,
    module: &str,
    fields: &Fields,
    at: chrono::DateTime<chrono::Utc>,
) -> Record {
    let name = level_name(level);
    let mut text = format!(
        "{} {:<7} {}: {}",
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        format!("[{name}]"),
        module,
        fields.message
    );
    if !fields.pairs.is_empty() {
        text.push(':');
        for (k, v) in &fields.pairs {
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                let _ = write!(text, " {k}={v:?}");
            } else {
                let _ = write!(text, " {k}={v}");
            }
        }
    }
    let mut obj = serde_json::Map::new();
    obj.insert("@level".into(), name.to_ascii_lowercase().into());
    obj.insert("@message".into(), fields.message.clone().into());
    obj.insert("@module".into(), module.into());
    obj.insert(
        "@timestamp".into(),
        at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().into(),
    );
    for (k, v) in &fields.pairs {
        obj.insert(k.clone(), v.clone().into());
    }
    Record {
        level,
        text,
        json: serde_json::Value::Object(obj).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_hclog_does() {
        assert_eq!(parse_level("INFO"), Some(Some(Level::INFO)));
        assert_eq!(parse_level("trace"), Some(Some(Level::TRACE)));
        assert_eq!(parse_level("Off"), Some(None));
        assert_eq!(parse_level("not-a-real-level"), None);
        assert_eq!(parse_level("err"), None);
    }

    #[test]
    fn noisy_dependencies_stay_at_warn() {
        assert!(quiet("openraft"));
        assert!(quiet("openraft::core::raft_core"));
        assert!(quiet("hickory_server::server"));
        assert!(!quiet("openraftish"));
        assert!(!quiet("cairn::raft"));
    }

    #[test]
    fn lines_are_hclog_lines() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let fields = Fields {
            message: "Synced service".into(),
            pairs: vec![
                ("service".into(), "web".into()),
                ("why".into(), "a b".into()),
            ],
        };
        let r = format(Level::INFO, &module("cairn::agent::sync"), &fields, at);
        assert_eq!(
            r.text,
            r#"2024-05-01T12:00:00.123Z [INFO]  agent.sync: Synced service: service=web why="a b""#
        );
        let v: serde_json::Value = serde_json::from_str(&r.json).expect("json");
        assert_eq!(v["@level"], "info");
        assert_eq!(v["@module"], "agent.sync");
        assert_eq!(v["@message"], "Synced service");
        assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.123456Z");
        assert_eq!(v["service"], "web");
    }

    #[test]
    fn the_most_verbose_attached_level_is_passed() {
        let a = attach(Some(Level::WARN));
        let b = attach(Some(Level::DEBUG));
        assert!(hub().max.load(Ordering::Relaxed) >= rank(&Level::DEBUG));
        drop(b);
        drop(a);
    }
}
