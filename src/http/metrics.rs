//! `GET /v1/agent/metrics`: Consul's JSON summary by default, the
//! Prometheus text exposition with `?format=prometheus` or a Prometheus /
//! OpenMetrics `Accept` header. The JSON is derived from the same render, so
//! both views always agree.

use super::wire::{ApiError, ApiResult, Ctx};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use std::collections::BTreeMap;

fn wants_prometheus(ctx: &Ctx) -> bool {
    if ctx.query.get("format") == Some("prometheus") {
        return true;
    }
    let accept = ctx
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/openmetrics-text")
        || accept.contains("text/plain;version=0.4.0")
        || accept.contains("version=0.0.4")
}

/// Consul requires `agent:read` on this agent's node for its metrics.
pub async fn metrics(ctx: Ctx) -> ApiResult {
    super::agent::require_agent(&ctx, crate::acl::Access::Read).await?;
    let text = ctx.metrics.render();
    if wants_prometheus(&ctx) {
        if ctx.config.prometheus_retention.is_zero() {
            return Err(ApiError::Status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Prometheus is not enabled since its retention time is not positive".into(),
            ));
        }
        let mut r = Response::new(Body::from(text));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(r);
    }
    Ok(ctx.json(&summary(&text, std::time::SystemTime::now())))
}

#[derive(Debug, Serialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    timestamp: String,
    gauges: Vec<Gauge>,
    points: Vec<Gauge>,
    counters: Vec<Sampled>,
    samples: Vec<Sampled>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Gauge {
    name: String,
    value: f64,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Sampled {
    name: String,
    count: u64,
    rate: f64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    labels: BTreeMap<String, String>,
}

/// Known dotted names, so the JSON carries Consul's `consul.raft.apply`
/// rather than the Prometheus form; anything else maps `_` to `.`.
const DOTTED: &[&str] = &[
    "consul.api.http",
    "consul.api.http.requests",
    "consul.dns.domain_query",
    "consul.dns.queries",
    "consul.raft.apply",
    "consul.raft.commitTime",
    "consul.fsm.apply",
    "consul.catalog.register",
    "consul.catalog.deregister",
    "consul.kvs.apply",
    "consul.txn.apply",
    "consul.state.nodes",
    "consul.state.services",
    "consul.state.service_instances",
    "consul.state.kv_entries",
    "consul.server.isLeader",
    "cairn.feed.ring_entries",
    "cairn.feed.ring_bytes",
];

fn dotted(prom: &str) -> String {
    DOTTED
        .iter()
        .find(|d| d.replace('.', "_") == prom)
        .map(|d| d.to_string())
        .unwrap_or_else(|| prom.replace('_', "."))
}

/// Splits `name{a="b",c="d"} 1.5` into name, labels and value.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let mut labels = BTreeMap::new();
    let name = match head.split_once('{') {
        None => head.to_string(),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut s = body;
            while !s.is_empty() {
                let (k, after) = s.split_once("=\"")?;
                let mut val = String::new();
                let mut chars = after.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                val.push(match n {
                                    'n' => '\n',
                                    other => other,
                                });
                            }
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => val.push(c),
                    }
                }
                let end = end?;
                labels.insert(k.trim_start_matches(',').to_string(), val);
                s = after[end + 1..].trim_start_matches(',');
            }
            name.to_string()
        }
    };
    Some((name, labels, value))
}

/// Go's `time.Time.String()` shape for UTC, as Consul's `Timestamp`.
fn go_timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

type SeriesKey = (String, Vec<(String, String)>);
type Aggregate = (f64, u64, f64, f64);

/// Builds Consul's JSON metrics summary from a Prometheus text render.
pub fn summary(text: &str, now: std::time::SystemTime) -> Summary {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Summary {
        timestamp: go_timestamp(now),
        ..Summary::default()
    };
    // Summaries/histograms: (base name, labels) -> (sum, count).
    let mut aggregates: BTreeMap<SeriesKey, Aggregate> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_string(), kind.trim().to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, mut labels, value)) = parse_sample(line) else {
            continue;
        };
        if let Some(kind) = types.get(&name) {
            match kind.as_str() {
                "gauge" => out.gauges.push(Gauge {
                    name: dotted(&name),
                    value,
                    labels,
                }),
                "counter" => out.counters.push(Sampled {
                    name: dotted(&name),
                    count: value.max(0.0) as u64,
                    rate: value,
                    sum: value,
                    min: value,
                    max: value,
                    mean: value,
                    stddev: 0.0,
                    labels,
                }),
                _ => {}
            }
            continue;
        }
        // `_sum`, `_count`, quantile and bucket lines of a summary/histogram.
        let (base, part) = if let Some(b) = name.strip_suffix("_sum") {
            (b, "sum")
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, "count")
        } else if let Some(b) = name.strip_suffix("_bucket") {
            (b, "bucket")
        } else {
            (name.as_str(), "quantile")
        };
        if !types.contains_key(base) {
            continue;
        }
        let quantile = labels.remove("quantile");
        labels.remove("le");
        let key = (base.to_string(), labels.into_iter().collect::<Vec<_>>());
        let agg = aggregates
            .entry(key)
            .or_insert((0.0, 0, f64::NAN, f64::NAN));
        match part {
            "sum" => agg.0 = value,
            "count" => agg.1 = value.max(0.0) as u64,
            "quantile" => match quantile.as_deref() {
                Some("0") => agg.2 = value,
                Some("1") => agg.3 = value,
                _ => {}
            },
            _ => {}
        }
    }
    for ((base, labels), (sum, count, min, max)) in aggregates {
        let mean = if count > 0 { sum / count as f64 } else { 0.0 };
        out.samples.push(Sampled {
            name: dotted(&base),
            count,
            rate: sum / 10.0,
            sum,
            min: if min.is_nan() { mean } else { min },
            max: if max.is_nan() { mean } else { max },
            mean,
            stddev: 0.0,
            labels: labels.into_iter().collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_from_prometheus_text() {
        let text = "# TYPE consul_raft_apply counter\nconsul_raft_apply 3\n\
# TYPE consul_server_isLeader gauge\nconsul_server_isLeader 1\n\
# TYPE consul_api_http histogram\nconsul_api_http_bucket{method=\"GET\",path=\"v1_kv_\",le=\"1\"} 2\n\
consul_api_http_sum{method=\"GET\",path=\"v1_kv_\"} 3\nconsul_api_http_count{method=\"GET\",path=\"v1_kv_\"} 2\n";
        let s = summary(text, std::time::UNIX_EPOCH);
        assert_eq!(s.timestamp, "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(s.counters.len(), 1);
        assert_eq!(s.counters[0].name, "consul.raft.apply");
        assert_eq!(s.counters[0].count, 3);
        assert_eq!(s.gauges[0].name, "consul.server.isLeader");
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.samples[0].name, "consul.api.http");
        assert_eq!(s.samples[0].count, 2);
        assert_eq!(s.samples[0].mean, 1.5);
        assert_eq!(
            s.samples[0].labels.get("path").map(String::as_str),
            Some("v1_kv_")
        );
    }

    #[test]
    fn timestamps_are_civil_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(go_timestamp(t), "2023-11-14 22:13:20 +0000 UTC");
    }
}
