//! Starts an agent: data dir and node identity, gossip, then either a
//! server's replica, raft, feed and RPC port or a client agent's view and
//! forwarder, then the agent's own work and its listeners; waits for a
//! signal or a leave and stops everything in order.

use crate::acl::tokens::AgentTokens;
use crate::agent::local::Local;
use crate::agent::{Agent, AgentParts};
use crate::catalog::Catalog;
use crate::cluster::ClusterCtx;
use crate::config::Config;
use crate::consensus::forward::{Forwarder, ViewStatus};
use crate::consensus::servers::ServerList;
use crate::consensus::Consensus;
use crate::feed::publisher::Publisher;
use crate::feed::subscriber::Subscriber;
use crate::gossip::{Gossip, GossipConfig, MemberId};
use crate::health::HealthDeps;
use crate::http::Api;
use crate::metrics::Metrics;
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachine;
use crate::raft::{raft_config, raft_id, Raft, RaftNode};
use crate::rpc::listener::{Handlers, ListenerTls};
use crate::rpc::{DialTls, Dialer, Protocol};
use crate::store::log::LogStore;
use crate::tls::AgentTls;
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub fn run_agent(config: Config, loader: crate::config::Loader) -> Result<i32> {
    init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match start(config, loader).await {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("==> Error starting agent: {e:#}");
                Ok(1)
            }
        }
    })
}

fn init_logging(level: &str) {
    let level = match level.to_ascii_lowercase().as_str() {
        "err" => "error".to_string(),
        l => l.to_string(),
    };
    // hickory logs every response at info; keep it quiet unless asked.
    let mut filter = level;
    for quiet in crate::monitor::QUIET {
        filter.push_str(&format!(",{quiet}=warn"));
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let own = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour only for a terminal: logs in files and `docker logs` stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| filter.into()),
        );
    // `/v1/agent/monitor` sees events at the levels its monitors ask for,
    // whatever the agent's own log level.
    let _ = tracing_subscriber::registry()
        .with(own)
        .with(crate::monitor::layer())
        .try_init();
}

/// The node ID: `-node-id`, else the one kept in the data dir, else a new UUID
/// written there.
fn node_id(config: &Config, data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-id");
    let stored = match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading node-id"),
    };
    let id = match (&config.node_id, stored) {
        (Some(id), _) => id.to_ascii_lowercase(),
        (None, Some(s)) if uuid::Uuid::parse_str(&s).is_ok() => s,
        (None, Some(s)) => return Err(anyhow!("{}: invalid node ID {s:?}", path.display())),
        (None, None) => uuid::Uuid::new_v4().to_string(),
    };
    std::fs::write(&path, &id).context("writing node-id")?;
    Ok(id)
}

/// Reloads the configuration on every SIGHUP, as Consul does; a refused
/// configuration is logged and the running one stays.
async fn reload_on_sighup(agent: Arc<Agent>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("caught SIGHUP, reloading configuration");
        if let Err(e) = agent.reload().await {
            tracing::error!("Failed to reload configs: {e}");
        }
    }
}

/// How long open RPC connections may finish after shutdown begins.
const RPC_DRAIN: Duration = Duration::from_secs(2);

/// The layout of the data dir this version writes. A data dir written by
/// an earlier, incompatible layout is refused rather than misread.
const DATA_FORMAT: &str = "2";

/// Checks (or, for a fresh data dir, records) the data dir's layout.
fn check_data_format(dir: &Path) -> Result<()> {
    let marker = dir.join("format");
    match std::fs::read_to_string(&marker) {
        Ok(f) if f.trim() == DATA_FORMAT => return Ok(()),
        Ok(f) => {
            return Err(anyhow!(
                "data dir {} has format {:?}; this version of cairn reads format {DATA_FORMAT}. Move it away or start with an empty -data-dir",
                dir.display(),
                f.trim()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("reading the data dir's format"),
    }
    for old in ["raft", "state", "local-state.json"] {
        if dir.join(old).exists() {
            return Err(anyhow!(
                "data dir {} was written by an earlier, incompatible version of cairn ({old} is in the old format). Move it away or start with an empty -data-dir",
                dir.display()
            ));
        }
    }
    std::fs::write(&marker, format!("{DATA_FORMAT}\n")).context("writing the data dir's format")?;
    Ok(())
}

/// The data dir, made for `-dev` when none is given (removed on exit).
struct DataDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl DataDir {
    fn prepare(config: &Config) -> Result<DataDir> {
        let temp = if config.data_dir.is_none() {
            Some(tempfile::Builder::new().prefix("cairn-dev-").tempdir()?)
        } else {
            None
        };
        let path = match (&config.data_dir, &temp) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.path().to_path_buf(),
            (None, None) => return Err(anyhow!("data_dir cannot be empty")),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating data dir {}", path.display()))?;
        check_data_format(&path)?;
        Ok(DataDir { path, _temp: temp })
    }
}

/// What only a server runs.
struct ServerParts {
    raft: Raft,
    node: Arc<RaftNode>,
    feed: Arc<Publisher>,
    /// Subscriptions run here (see `feed::publisher::feed_runtime`).
    feed_rt: crate::feed::publisher::FeedRuntime,
}

/// The catalog this agent reads, its consensus handle, and (on servers)
/// the raft parts.
struct Core {
    catalog: Arc<Catalog>,
    consensus: Consensus,
    server: Option<ServerParts>,
}

async fn start_gossip(config: &Config, data_dir: &Path, node_id: &str) -> Result<Gossip> {
    let serf_port = config.ports.serf_lan.max(0) as u16;
    let identity = MemberId {
        name: config.node_name.clone(),
        addr: SocketAddr::new(config.advertise(), serf_port),
        node_id: node_id.to_string(),
        server: config.server,
        dc: config.datacenter.clone(),
        rpc_port: config.ports.server.max(0) as u16,
        http_port: config.ports.http.max(0) as u16,
        version: crate::agent::VERSION.to_string(),
        bootstrap_expect: config.bootstrap_expect,
        started_ms: crate::gossip::now_ms(),
        bump: 0,
    };
    let keys = crate::gossip::keyring::at_start(
        config.encrypt.as_deref(),
        data_dir,
        config.disable_keyring_file,
    )
    .map_err(|e| anyhow!("{e}"))?;
    for w in &keys.warnings {
        tracing::warn!("{w}");
    }
    Gossip::start(GossipConfig {
        bind: SocketAddr::new(config.bind_addr, serf_port),
        identity,
        keyring: keys.keyring,
        keyring_file: keys.file,
        pool: crate::gossip::Pool::Lan,
        shared_keyring: None,
    })
    .await
    .with_context(|| format!("binding serf LAN on {}:{serf_port}", config.bind_addr))
}

/// A server's place in the WAN pool: `<node>.<dc>` on `ports.serf_wan`,
/// with the LAN pool's keys. `None` with the WAN port off (-1) or on a
/// client agent.
async fn start_wan_gossip(config: &Config, lan: &Gossip) -> Result<Option<Gossip>> {
    if !config.server || config.ports.serf_wan < 0 {
        return Ok(None);
    }
    let port = config.ports.serf_wan as u16;
    let identity = MemberId {
        name: format!("{}.{}", config.node_name, config.datacenter),
        addr: SocketAddr::new(config.advertise_wan(), port),
        ..lan.identity.clone()
    };
    let wan = Gossip::start(GossipConfig {
        bind: SocketAddr::new(config.bind_addr, port),
        identity,
        keyring: None,
        keyring_file: None,
        pool: crate::gossip::Pool::Wan,
        shared_keyring: Some(lan.shared_keyring()),
    })
    .await
    .with_context(|| format!("binding serf WAN on {}:{port}", config.bind_addr))?;
    Ok(Some(wan))
}

/// How this agent dials servers: from its bind address, in TLS when
/// `verify_outgoing` is on.
fn rpc_dialer(config: &Config, tls: &AgentTls) -> Dialer {
    let dial_tls = tls
        .rpc
        .outgoing
        .clone()
        .map(|c| DialTls::new(c, tls.rpc.server_name.clone()));
    Dialer::with_tls(Some(config.bind_addr), dial_tls)
}

/// A server: the replica, raft, the subscription feed, and the RPC port.
async fn start_server(
    config: &Config,
    tls: &AgentTls,
    data_dir: &Path,
    node_id: &str,
    gossip: &Gossip,
    shutdown: watch::Receiver<bool>,
) -> Result<Core> {
    let catalog = Arc::new(Catalog::open(&data_dir.join("state")).context("opening state store")?);
    let feed = Publisher::new(catalog.clone());
    let log_store = LogStore::open(&data_dir.join("raft")).context("opening raft log")?;
    let sm = StateMachine::new(
        catalog.clone(),
        data_dir.join("raft").join("snapshot.bin"),
        feed.clone(),
    );
    let rpc_port = config.ports.server.max(0) as u16;
    let rpc_addr = SocketAddr::new(config.advertise(), rpc_port).to_string();
    let id = raft_id(node_id);
    let raft_cfg = Arc::new(
        raft_config(config)
            .validate()
            .map_err(|e| anyhow!("raft config: {e}"))?,
    );
    let dialer = rpc_dialer(config, tls);
    let acks = crate::raft::network::Acks::default();
    let network = Network {
        dialer: dialer.clone(),
        acks: acks.clone(),
    };
    let raft = Raft::new(id, raft_cfg, network, log_store, sm)
        .await
        .map_err(|e| anyhow!("starting raft: {e}"))?;
    let node = RaftNode::start(
        raft.clone(),
        id,
        dialer,
        catalog.clone(),
        gossip.clone(),
        acks,
        config.coordinates.clone(),
    );
    feed.set_serving(Arc::new(crate::cluster::FeedServing::new(
        node.clone(),
        gossip.clone(),
        config.datacenter.clone(),
    )));

    let feed_rt = crate::feed::publisher::feed_runtime().context("starting the feed runtime")?;
    let bind = SocketAddr::new(config.bind_addr, rpc_port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding RPC on {bind}"))?;
    let handlers = Handlers::default()
        .with(
            Protocol::Raft,
            crate::raft::service::raft_handler(node.clone()),
        )
        .with(
            Protocol::Consul,
            crate::raft::service::consul_handler(node.clone()),
        )
        .with(Protocol::Feed, feed.handler(feed_rt.handle().clone()));
    tokio::spawn(crate::rpc::listener::serve(
        listener,
        handlers,
        ListenerTls::new(&tls.rpc, config.limits.rpc_handshake_timeout),
        config.limits.rpc_max_conns_per_client,
        shutdown,
        RPC_DRAIN,
    ));
    if config.bootstrap || config.bootstrap_expect == 1 {
        node.bootstrap_alone(&rpc_addr)
            .await
            .map_err(|e| anyhow!("bootstrap: {e}"))?;
    }
    Ok(Core {
        catalog,
        consensus: Consensus::new(node.clone()),
        server: Some(ServerParts {
            raft,
            node,
            feed,
            feed_rt,
        }),
    })
}

/// A client agent: no raft state; a view of the catalog fed by a server's
/// subscription, and every request forwarded to a server.
async fn start_client(
    config: &Config,
    tls: &AgentTls,
    data_dir: &Path,
    gossip: &Gossip,
    tokens: Arc<AgentTokens>,
    shutdown: watch::Receiver<bool>,
) -> Result<Core> {
    let view =
        Arc::new(Catalog::open_view(&data_dir.join("view")).context("opening the catalog view")?);
    let servers = Arc::new(ServerList::new(gossip.clone(), config.datacenter.clone()));
    let status = Arc::new(ViewStatus::default());
    let dialer = rpc_dialer(config, tls);
    let forwarder = Forwarder::new(
        servers.clone(),
        dialer.clone(),
        view.clone(),
        status.clone(),
        tokens,
    );
    let subscriber = Subscriber {
        view: view.clone(),
        servers,
        status,
        dialer,
        node: config.node_name.clone(),
    };
    tokio::spawn(subscriber.run(shutdown));
    Ok(Core {
        catalog: view,
        consensus: Consensus::new(Arc::new(forwarder)),
        server: None,
    })
}

/// A started agent: what `stop` needs to take it down in order.
struct Running {
    config: Arc<Config>,
    data: DataDir,
    gossip: Gossip,
    /// Servers: the WAN pool.
    wan: Option<Gossip>,
    agent: Arc<Agent>,
    core: Core,
    http: crate::http::HttpServers,
    /// Tells the RPC listener and the feed subscriber to stop.
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    join_failed: tokio::sync::mpsc::Receiver<String>,
}

async fn start(config: Config, loader: crate::config::Loader) -> Result<i32> {
    let mut running = Running::start(config, loader).await?;
    let (leave, code) = running.wait().await?;
    running.stop(leave).await;
    Ok(code)
}

impl Running {
    /// Data dir, gossip, the server or client core, the agent, listeners,
    /// background tasks.
    async fn start(config: Config, loader: crate::config::Loader) -> Result<Running> {
        // Every certificate, key and CA is read before anything is bound,
        // so a bad path stops the agent with an error naming it.
        let tls = AgentTls::load(&config)?;
        let data = DataDir::prepare(&config)?;
        let data_dir = data.path.clone();
        let node_id = node_id(&config, &data_dir)?;
        let config = Arc::new(config);
        let metrics = Metrics::install();
        let (stop, stop_rx) = watch::channel(false);

        let tokens = Arc::new(AgentTokens::load(
            &config.acl.tokens,
            config.acl.enable_token_persistence,
            &data_dir,
        ));
        let gossip = start_gossip(&config, &data_dir, &node_id).await?;
        let wan = start_wan_gossip(&config, &gossip).await?;
        let core = if config.server {
            start_server(&config, &tls, &data_dir, &node_id, &gossip, stop_rx).await?
        } else {
            start_client(&config, &tls, &data_dir, &gossip, tokens.clone(), stop_rx).await?
        };

        let local = Local::open(&data_dir).context("opening local state")?;
        let (reports_tx, reports_rx) = tokio::sync::mpsc::unbounded_channel();
        let health = crate::health::start(HealthDeps {
            checks: local.runnable(),
            reports: reports_tx,
            catalog: core.catalog.clone(),
            node_name: config.node_name.clone(),
            // Script checks can only be defined with one of the two on:
            // over the API with `enable_script_checks`, in config files with
            // `enable_local_script_checks` too.
            script_checks: config.enable_script_checks || config.enable_local_script_checks,
        });
        let agent = Arc::new(Agent::new(AgentParts {
            config: config.clone(),
            node_id: node_id.clone(),
            data_dir: data_dir.clone(),
            catalog: core.catalog.clone(),
            consensus: core.consensus.clone(),
            tokens: tokens.clone(),
            local,
            health,
            loader: Some(loader),
        }));
        agent
            .apply_file_definitions(&config.services, &config.checks, false)
            .await
            .map_err(|e| anyhow!("{e}"))?;

        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let acl = if !config.acl.enabled {
            crate::acl::Resolver::disabled()
        } else if let Some(server) = &core.server {
            let acl = crate::acl::Resolver::server(
                config.acl.clone(),
                config.datacenter.clone(),
                core.catalog.clone(),
                tokens.clone(),
            );
            server.node.set_acl(acl.clone());
            acl
        } else {
            crate::acl::Resolver::client(config.acl.clone(), core.consensus.clone(), tokens.clone())
        };
        let acl_replication = Arc::new(crate::acl::replication::Status::default());
        let federation = Arc::new(crate::federation::Federation::new(
            config.datacenter.clone(),
            config.domain.clone(),
            gossip.clone(),
            wan.clone(),
            core.consensus.clone(),
            rpc_dialer(&config, &tls),
        ));
        let remote_dns = {
            let acl = config.acl.enabled.then(|| acl.clone());
            crate::dns::remote::Remote {
                federation: federation.clone(),
                token: Arc::new(move || acl.as_ref().map(|a| a.dns_secret())),
            }
        };
        crate::dns::start(
            &config,
            core.catalog.clone(),
            config.acl.enabled.then(|| acl.clone()),
            Some(remote_dns),
        )
        .await
        .context("starting DNS server")?;
        let events = {
            let agent = agent.clone();
            crate::events::Events::start(
                gossip.clone(),
                config.node_name.clone(),
                Arc::new(move || agent.local_services()),
            )
        };
        let http = crate::http::start(
            Api {
                agent: agent.clone(),
                catalog: core.catalog.clone(),
                consensus: core.consensus.clone(),
                gossip: gossip.clone(),
                config: config.clone(),
                metrics,
                acl: acl.clone(),
                events,
                federation: federation.clone(),
                acl_replication: acl_replication.clone(),
            },
            tls.https.clone(),
        )
        .await
        .context("starting HTTP server")?;
        if let Some(server) = &core.server {
            server.node.set_acl_endpoints(http.acl_endpoints());
        }

        if let Some(pid_file) = &config.pid_file {
            std::fs::write(pid_file, std::process::id().to_string())
                .with_context(|| format!("writing pid file {}", pid_file.display()))?;
        }
        tracing::info!(
            node = %config.node_name, id = %node_id, datacenter = %config.datacenter, server = config.server,
            data_dir = %data_dir.display(), "cairn agent running"
        );
        eprintln!(
            "==> cairn agent running! Node name: '{}', Datacenter: '{}', Server: {}",
            config.node_name, config.datacenter, config.server
        );

        let mut tasks = vec![
            tokio::spawn(agent.clone().take_reports(reports_rx)),
            tokio::spawn(crate::agent::check_sync::run(agent.clone())),
            tokio::spawn(crate::agent::sync::run(agent.clone())),
            tokio::spawn(crate::agent::reaper::run(agent.clone())),
            tokio::spawn(gauges_loop(core.catalog.clone(), core.consensus.clone())),
            tokio::spawn(reload_on_sighup(agent.clone())),
            tokio::spawn(crate::coordinate::sync::run(
                gossip.clone(),
                core.consensus.clone(),
                config.node_name.clone(),
                config.coordinates.clone(),
            )),
        ];
        if let Some(server) = &core.server {
            tasks.extend(server_tasks(&config, &tls, &core, server, &gossip));
            if config.acl.enabled {
                tasks.push(tokio::spawn(crate::acl::leader::leader_loop(
                    config.acl.clone(),
                    config.acl_primary().is_none(),
                    core.consensus.clone(),
                    core.catalog.clone(),
                )));
                if let Some(primary) = config.acl_primary() {
                    let replicator = crate::acl::replication::Replicator {
                        primary: primary.to_string(),
                        consensus: core.consensus.clone(),
                        catalog: core.catalog.clone(),
                        federation: federation.clone(),
                        tokens: tokens.clone(),
                        status: acl_replication.clone(),
                    };
                    tasks.push(tokio::spawn(replicator.run()));
                }
            }
        } else if config.acl.enabled {
            tasks.push(tokio::spawn(acl.clone().refresh_dns()));
        }
        let (join_failed_tx, join_failed) = tokio::sync::mpsc::channel::<String>(1);
        if !config.retry_join.is_empty() {
            let (g, targets) = (gossip.clone(), config.retry_join.clone());
            let (interval, max) = (config.retry_interval, config.retry_max);
            let serf_port = config.ports.serf_lan.max(0) as u16;
            let failed = join_failed_tx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) =
                    crate::cluster::retry_join(g, targets, serf_port, interval, max).await
                {
                    let _ = failed.send(e).await;
                }
            }));
        }
        if let Some(wan) = &wan {
            tasks.push(tokio::spawn(crate::federation::flood_join(
                gossip.clone(),
                wan.clone(),
                config.datacenter.clone(),
                config.ports.serf_wan.max(0) as u16,
            )));
        }
        if let (Some(wan), false) = (&wan, config.retry_join_wan.is_empty()) {
            let (g, targets) = (wan.clone(), config.retry_join_wan.clone());
            let (interval, max) = (config.retry_interval_wan, config.retry_max_wan);
            let port = config.ports.serf_wan.max(0) as u16;
            let failed = join_failed_tx;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::cluster::retry_join(g, targets, port, interval, max).await {
                    let _ = failed.send(e).await;
                }
            }));
        }
        Ok(Running {
            config,
            data,
            gossip,
            wan,
            agent,
            core,
            http,
            stop,
            tasks,
            join_failed,
        })
    }

    /// Waits for a reason to stop; returns whether to leave the cluster and
    /// the exit code.
    async fn wait(&mut self) -> Result<(bool, i32)> {
        let config = &self.config;
        let mut conflicts = self.gossip.conflicts();
        let mut shutdown = self.agent.shutdown_signal();
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Consul's defaults: servers stay in the cluster on SIGINT/SIGTERM
        // (skip_leave_on_interrupt=true, leave_on_terminate=false), client
        // agents leave gracefully.
        let leave_on_int = !config.skip_leave_on_interrupt.unwrap_or(config.server);
        let leave_on_term = config.leave_on_terminate.unwrap_or(!config.server);
        let raft = self.core.server.as_ref().map(|s| s.raft.clone());
        Ok(tokio::select! {
            // A raft core that stopped on its own (a panic or a storage
            // error) leaves a server that still claims the leadership it
            // had and answers nothing correctly: exit, so a supervisor
            // restarts it from its data dir.
            reason = raft_stopped(raft) => {
                eprintln!("==> {reason}");
                tracing::error!("{reason}");
                (false, 1)
            }
            _ = tokio::signal::ctrl_c() => { tracing::info!("caught interrupt, shutting down"); (leave_on_int, 0) }
            _ = sigterm.recv() => { tracing::info!("caught terminate, shutting down"); (leave_on_term, 0) }
            _ = shutdown.wait_for(|s| *s) => { tracing::info!("graceful leave requested"); (true, 0) }
            Some(e) = self.join_failed.recv() => { eprintln!("==> {e}"); (false, 1) }
            c = conflicts.wait_for(|c| c.is_some()) => {
                let msg = c.map(|c| c.clone().unwrap_or_default()).unwrap_or_default();
                eprintln!("==> {msg}");
                tracing::error!("{msg}");
                (false, 1)
            }
        })
    }

    /// Stops in order: leave gossip (if leaving), this agent's own work (no
    /// new writes), then the listeners (in-flight requests finish,
    /// subscribers move on), then raft.
    async fn stop(self, leave: bool) {
        if leave {
            if let Err(e) = self.gossip.leave().await {
                tracing::warn!("leave: {e}");
            }
            if let Some(wan) = &self.wan {
                if let Err(e) = wan.leave().await {
                    tracing::warn!("leave WAN: {e}");
                }
            }
            // Give the intent a moment to spread before the socket goes quiet.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.agent.request_shutdown();
        let _ = self.stop.send(true);
        if let Some(server) = &self.core.server {
            server.feed.close();
        }
        self.http.drained().await;
        if let Some(server) = self.core.server {
            let _ = tokio::time::timeout(Duration::from_secs(5), server.raft.shutdown()).await;
            drop(server.feed_rt);
        }
        if let Some(pid_file) = &self.config.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        drop(self.data);
    }
}

/// The cluster upkeep a server runs.
fn server_tasks(
    config: &Config,
    tls: &AgentTls,
    core: &Core,
    server: &ServerParts,
    gossip: &Gossip,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ctx = ClusterCtx {
        node: server.node.clone(),
        consensus: core.consensus.clone(),
        catalog: core.catalog.clone(),
        gossip: gossip.clone(),
        datacenter: config.datacenter.clone(),
        dialer: rpc_dialer(config, tls),
    };
    let mut tasks = vec![
        tokio::spawn(crate::cluster::leader_loop(ctx.clone())),
        tokio::spawn(crate::cluster::session_ttl_loop(ctx.clone())),
        tokio::spawn(crate::cluster::feed_leadership_loop(
            ctx.clone(),
            server.feed.clone(),
        )),
    ];
    if config.bootstrap_expect > 1 {
        tasks.push(tokio::spawn(crate::cluster::bootstrap_expect(
            ctx,
            config.bootstrap_expect,
        )));
    }
    tasks
}

async fn gauges_loop(catalog: Arc<Catalog>, consensus: Consensus) {
    loop {
        if let Ok(r) = catalog.reader() {
            if let (Ok((nodes, instances, _checks)), Ok(services), Ok(kv)) =
                (r.counts(), r.service_tags(), r.kv_count())
            {
                crate::metrics::catalog_sizes(nodes, services.len() as u64, instances, kv);
            }
        }
        crate::metrics::is_leader(consensus.is_leader());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Resolves when `raft`'s core stops by itself (never without a server).
async fn raft_stopped(raft: Option<Raft>) -> String {
    let Some(raft) = raft else {
        return std::future::pending().await;
    };
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            return format!("raft stopped: {fatal}");
        }
        if metrics.changed().await.is_err() {
            return "raft stopped: its core exited".to_string();
        }
    }
}
