//! Watching dependencies the way consul-template's views do
//! (`watch/view.go`): one task per distinct [`Dependency`], however many
//! templates use it, long-polling with `index=<X-Consul-Index>&wait=60000ms`
//! and `stale` (re-asking without `stale` when the answering server's
//! last contact with the leader is older than `max_stale`). The same index
//! means no change; a lower one means the servers were reset, and the
//! index starts over from 0; equal data is not passed on. Loops faster
//! than 100 ms are slowed down. A failed request is retried with
//! exponential backoff and a log line; when the retries run out the
//! failure is reported and the process gives up. The datacenter list has
//! no blocking form and is polled every 15 seconds.

use super::config::Retry;
use super::deps::Dependency;
use super::engine::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// New data for a dependency, or the error that made its watch give up.
#[derive(Debug)]
pub struct Update {
    pub dep: Dependency,
    pub data: Result<Value, String>,
}

/// How the watches reach the agent.
pub struct Client {
    pub http: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    pub max_stale: Duration,
    pub block_wait: Duration,
    pub retry: Retry,
}

/// consul-template's floor between two requests of one view.
const MIN_DELAY: Duration = Duration::from_millis(100);
/// How often the datacenter list is fetched.
const DATACENTERS_EVERY: Duration = Duration::from_secs(15);

impl Client {
    /// A client whose timeout outlasts a blocking query (Consul may hold
    /// one for `wait` plus up to `wait/16` of jitter).
    pub fn new(
        base: String,
        token: Option<String>,
        max_stale: Duration,
        block_wait: Duration,
        retry: Retry,
    ) -> Result<Client, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let v = reqwest::header::HeaderValue::from_str(&t)
                .map_err(|_| "the ACL token is not a valid header value".to_string())?;
            headers.insert("X-Consul-Token", v);
        }
        let http = reqwest::Client::builder()
            .timeout(block_wait + block_wait / 16 + Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            max_stale,
            block_wait,
            retry,
        })
    }

    fn url(&self, path: &str, params: &[(String, String)]) -> String {
        let mut url = format!("{}{}", self.base, path);
        for (i, (k, v)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&query_escape(k));
            if !v.is_empty() || k != "recurse" && k != "stale" {
                url.push('=');
                url.push_str(&query_escape(v));
            }
        }
        url
    }

    async fn get(&self, path: &str, params: &[(String, String)]) -> Result<Answer, String> {
        let url = self.url(path, params);
        tracing::trace!("(view) GET {url}");
        let resp = self.http.get(&url).send().await.map_err(|e| describe(&e))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let index = header("X-Consul-Index");
        let last_contact = Duration::from_millis(header("X-Consul-LastContact").unwrap_or(0));
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        Ok(Answer {
            status,
            index,
            last_contact,
            body: body.to_vec(),
        })
    }
}

/// reqwest's error with its cause chain (`error sending request: ...:
/// Connection refused`), which says why the agent cannot be reached.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

struct Answer {
    status: u16,
    index: Option<u64>,
    last_contact: Duration,
    body: Vec<u8>,
}

/// The set of running watches.
pub struct Watcher {
    client: Arc<Client>,
    tx: mpsc::UnboundedSender<Update>,
    tasks: HashMap<Dependency, JoinHandle<()>>,
}

impl Watcher {
    pub fn new(client: Client) -> (Watcher, mpsc::UnboundedReceiver<Update>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Watcher {
                client: Arc::new(client),
                tx,
                tasks: HashMap::new(),
            },
            rx,
        )
    }

    pub fn watching(&self, d: &Dependency) -> bool {
        self.tasks.contains_key(d)
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts watching `d` unless it is watched already.
    pub fn watch(&mut self, d: Dependency) {
        if self.tasks.contains_key(&d) {
            return;
        }
        tracing::debug!("(watcher) adding {d}");
        let view = View {
            dep: d.clone(),
            client: self.client.clone(),
            tx: self.tx.clone(),
        };
        self.tasks.insert(d, tokio::spawn(view.run()));
    }

    /// Stops every watch not in `keep`; returns the ones stopped.
    pub fn retain(&mut self, keep: &BTreeSet<Dependency>) -> Vec<Dependency> {
        let gone: Vec<Dependency> = self
            .tasks
            .keys()
            .filter(|d| !keep.contains(*d))
            .cloned()
            .collect();
        for d in &gone {
            if let Some(task) = self.tasks.remove(d) {
                tracing::debug!("(watcher) {d} is no longer needed");
                task.abort();
            }
        }
        gone
    }

    pub fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One dependency's watch.
struct View {
    dep: Dependency,
    client: Arc<Client>,
    tx: mpsc::UnboundedSender<Update>,
}

impl View {
    async fn run(self) {
        let mut retries = 0u32;
        loop {
            match self.poll().await {
                Ok(()) => return,
                Err(e) => match self.client.retry.pause(retries) {
                    Some(pause) => {
                        tracing::warn!(
                            "(view) {}: {e} (retry attempt {} after {:?})",
                            self.dep,
                            retries + 1,
                            crate::duration::format(pause)
                        );
                        tokio::time::sleep(pause).await;
                        retries += 1;
                    }
                    None => {
                        tracing::error!("(view) {}: {e} (exceeded maximum retries)", self.dep);
                        let _ = self.tx.send(Update {
                            dep: self.dep.clone(),
                            data: Err(format!("{}: {e}", self.dep)),
                        });
                        return;
                    }
                },
            }
        }
    }

    /// Follows the dependency until the receiver is gone (`Ok`) or a
    /// request fails (`Err`, to be retried).
    async fn poll(&self) -> Result<(), String> {
        let c = &self.client;
        let agent_node = match &self.dep {
            Dependency::CatalogNode { name: None, .. } => Some(self.agent_node().await?),
            _ => None,
        };
        let (path, base_params) = self.dep.request(agent_node.as_deref());
        let mut index: Option<u64> = None;
        let mut last: Option<Value> = None;
        let mut allow_stale = !c.max_stale.is_zero();
        let mut first = true;
        loop {
            let start = Instant::now();
            let mut params = base_params.clone();
            if self.dep.blocking() {
                if let Some(i) = index {
                    params.push(("index".into(), i.to_string()));
                    params.push(("wait".into(), format!("{}ms", c.block_wait.as_millis())));
                }
            }
            if allow_stale {
                params.push(("stale".into(), String::new()));
            }
            let answer = c.get(&path, &params).await?;
            if allow_stale && answer.last_contact > c.max_stale {
                tracing::trace!(
                    "(view) {} stale data (last contact exceeded max_stale)",
                    self.dep
                );
                allow_stale = false;
                continue;
            }
            allow_stale = !c.max_stale.is_zero();
            let elapsed = start.elapsed();
            if !first && elapsed < MIN_DELAY {
                let jitter = Duration::from_millis(rand::random::<u64>() % 20);
                tokio::time::sleep(MIN_DELAY - elapsed + jitter).await;
            }
            first = false;
            if self.dep.blocking() {
                match (answer.index, index) {
                    (Some(new), Some(old)) if new == old => continue,
                    (Some(new), Some(old)) if new < old => {
                        tracing::trace!("(view) {} had a lower index, resetting", self.dep);
                        index = Some(0);
                        continue;
                    }
                    (new, _) => index = Some(new.unwrap_or(0)),
                }
            }
            let data = match &self.dep {
                Dependency::Datacenters {
                    only_reachable: true,
                } => {
                    let all = self
                        .dep
                        .decode(answer.status, &answer.body)
                        .map_err(|e| e.to_string())?;
                    self.reachable(all).await
                }
                _ => self
                    .dep
                    .decode(answer.status, &answer.body)
                    .map_err(|e| e.to_string())?,
            };
            if last.as_ref() != Some(&data) {
                last = Some(data.clone());
                let update = Update {
                    dep: self.dep.clone(),
                    data: Ok(data),
                };
                if self.tx.send(update).is_err() {
                    return Ok(());
                }
            }
            if !self.dep.blocking() {
                tokio::time::sleep(DATACENTERS_EVERY).await;
            }
        }
    }

    /// The agent's node name, for `node` without a name.
    async fn agent_node(&self) -> Result<String, String> {
        let answer = self.client.get("/v1/agent/self", &[]).await?;
        if answer.status != 200 {
            return Err(format!(
                "Unexpected response code: {} ({})",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        v.pointer("/Config/NodeName")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .ok_or_else(|| "the agent did not report its node name".to_string())
    }

    /// `datacenters true`: only the datacenters whose catalog answers.
    async fn reachable(&self, all: Value) -> Value {
        let Value::List(dcs) = all else {
            return all;
        };
        let mut kept = Vec::new();
        for dc in dcs.iter() {
            let Some(name) = dc.as_text() else { continue };
            let params = [("dc".to_string(), name.clone())];
            if let Ok(a) = self.client.get("/v1/catalog/services", &params).await {
                if a.status == 200 {
                    kept.push(dc.clone());
                }
            }
        }
        Value::list(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_bare_flags_and_escaped_values() {
        let c = Client::new(
            "http://127.0.0.1:8500/".into(),
            None,
            Duration::from_secs(2),
            Duration::from_secs(60),
            Retry::default(),
        )
        .unwrap();
        let params = vec![
            ("tag".to_string(), "a b".to_string()),
            ("passing".to_string(), "1".to_string()),
            ("stale".to_string(), String::new()),
        ];
        assert_eq!(
            c.url("/v1/health/service/web", &params),
            "http://127.0.0.1:8500/v1/health/service/web?tag=a%20b&passing=1&stale"
        );
        assert_eq!(
            c.url("/v1/kv/app", &[("recurse".into(), String::new())]),
            "http://127.0.0.1:8500/v1/kv/app?recurse"
        );
    }

    #[test]
    fn one_watch_per_distinct_dependency() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Nothing listens there; the watches retry until stopped.
            let c = Client::new(
                "http://127.0.0.1:9".into(),
                None,
                Duration::from_secs(2),
                Duration::from_secs(60),
                Retry::default(),
            )
            .unwrap();
            let (mut w, _rx) = Watcher::new(c);
            let web = Dependency::health_service("web").unwrap();
            w.watch(web.clone());
            w.watch(Dependency::health_service("web|passing").unwrap());
            w.watch(Dependency::kv_get("k").unwrap());
            assert_eq!(w.len(), 2);
            let stopped = w.retain(&BTreeSet::from([web.clone()]));
            assert_eq!(stopped, [Dependency::kv_get("k").unwrap()]);
            assert!(w.watching(&web));
            assert_eq!(w.len(), 1);
        });
    }
}
