//! Starts an agent: data dir and node identity, stores, raft, listeners,
//! self-registration and anti-entropy; then waits for a signal or a leave.

use crate::agent::Agent;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::gossip::crypto::Keyring;
use crate::gossip::{Gossip, GossipConfig, MemberId};
use crate::metrics::Metrics;
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachine;
use crate::raft::{raft_config, raft_id, Consensus, Raft};
use crate::store::log::LogStore;
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn run_agent(config: Config) -> Result<i32> {
    init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match start(config).await {
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
    let filter = format!("{level},hickory_server=warn,hickory_proto=warn,openraft=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
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

async fn start(config: Config) -> Result<i32> {
    // -dev without -data-dir: a temporary directory removed on exit.
    let temp = if config.data_dir.is_none() {
        Some(tempfile::Builder::new().prefix("cairn-dev-").tempdir()?)
    } else {
        None
    };
    let data_dir = match (&config.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return Err(anyhow!("data_dir cannot be empty")),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let node_id = node_id(&config, &data_dir)?;
    let config = Arc::new(config);
    let metrics = Metrics::install();

    let catalog = Arc::new(Catalog::open(&data_dir.join("state")).context("opening state store")?);
    let log_store = LogStore::open(&data_dir.join("raft")).context("opening raft log")?;
    let sm = StateMachine::new(catalog.clone(), data_dir.join("raft").join("snapshot.bin"));

    let advertise = config.advertise();
    let rpc_port = config.ports.server.max(0) as u16;
    let rpc_addr = SocketAddr::new(advertise, rpc_port).to_string();
    let id = raft_id(&node_id);
    let raft_cfg = Arc::new(
        raft_config(&config)
            .validate()
            .map_err(|e| anyhow!("raft config: {e}"))?,
    );
    let raft = Raft::new(
        id,
        raft_cfg,
        Network {
            local: Some(config.bind_addr),
        },
        log_store.clone(),
        sm,
    )
    .await
    .map_err(|e| anyhow!("starting raft: {e}"))?;
    let consensus = Arc::new(Consensus::new(
        raft.clone(),
        id,
        Some(config.bind_addr),
        catalog.clone(),
    ));

    // Every agent listens for raft traffic: servers vote, client agents are
    // learners that keep a local replica for DNS and stale reads.
    let bind = SocketAddr::new(config.bind_addr, rpc_port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding RPC on {bind}"))?;
    tokio::spawn(crate::rpc::serve(listener, consensus.clone()));
    if config.server && (config.bootstrap || config.bootstrap_expect == 1) {
        consensus
            .bootstrap_alone(&rpc_addr)
            .await
            .map_err(|e| anyhow!("bootstrap: {e}"))?;
    }

    let serf_port = config.ports.serf_lan.max(0) as u16;
    let identity = MemberId {
        name: config.node_name.clone(),
        addr: SocketAddr::new(advertise, serf_port),
        node_id: node_id.clone(),
        server: config.server,
        dc: config.datacenter.clone(),
        rpc_port,
        http_port: config.ports.http.max(0) as u16,
        version: crate::agent::VERSION.to_string(),
        bootstrap_expect: config.bootstrap_expect,
        started_ms: crate::gossip::now_ms(),
        bump: 0,
    };
    let keyring = match &config.encrypt {
        Some(k) => Some(Keyring::from_base64(k).map_err(|e| anyhow!("-encrypt: {e}"))?),
        None => None,
    };
    let gossip = Gossip::start(GossipConfig {
        bind: SocketAddr::new(config.bind_addr, serf_port),
        identity,
        keyring,
    })
    .await
    .with_context(|| format!("binding serf LAN on {}:{serf_port}", config.bind_addr))?;

    let agent = Arc::new(Agent::new(
        config.clone(),
        node_id.clone(),
        data_dir.clone(),
        catalog.clone(),
        consensus.clone(),
        log_store,
        metrics,
        gossip.clone(),
    )?);

    crate::dns::start(agent.clone())
        .await
        .context("starting DNS server")?;
    crate::http::start(agent.clone())
        .await
        .context("starting HTTP server")?;

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

    tokio::spawn(crate::agent::check_sync::run(agent.clone()));
    crate::health::start(agent.clone());
    tokio::spawn(sync_loop(agent.clone()));
    tokio::spawn(gauges_loop(agent.clone()));
    tokio::spawn(crate::cluster::leader_loop(agent.clone(), gossip.clone()));
    tokio::spawn(crate::cluster::session_ttl_loop(agent.clone()));
    if config.server && config.bootstrap_expect > 1 {
        tokio::spawn(crate::cluster::bootstrap_expect(
            agent.clone(),
            gossip.clone(),
            config.bootstrap_expect,
        ));
    }
    let (join_failed_tx, mut join_failed) = tokio::sync::mpsc::channel::<String>(1);
    if !config.retry_join.is_empty() {
        let (g, targets) = (gossip.clone(), config.retry_join.clone());
        let (interval, max) = (config.retry_interval, config.retry_max);
        tokio::spawn(async move {
            if let Err(e) = crate::cluster::retry_join(g, targets, serf_port, interval, max).await {
                let _ = join_failed_tx.send(e).await;
            }
        });
    }
    let mut conflicts = gossip.conflicts();

    let mut shutdown = agent.shutdown_signal();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Consul's defaults: servers stay in the cluster on SIGINT/SIGTERM
    // (skip_leave_on_interrupt=true, leave_on_terminate=false), client agents
    // leave gracefully.
    let leave_on_int = !config.skip_leave_on_interrupt.unwrap_or(config.server);
    let leave_on_term = config.leave_on_terminate.unwrap_or(!config.server);
    let (leave, code) = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("caught interrupt, shutting down"); (leave_on_int, 0) }
        _ = sigterm.recv() => { tracing::info!("caught terminate, shutting down"); (leave_on_term, 0) }
        _ = shutdown.wait_for(|s| *s) => { tracing::info!("graceful leave requested"); (true, 0) }
        Some(e) = join_failed.recv() => { eprintln!("==> {e}"); (false, 1) }
        c = conflicts.wait_for(|c| c.is_some()) => {
            let msg = c.map(|c| c.clone().unwrap_or_default()).unwrap_or_default();
            eprintln!("==> {msg}");
            tracing::error!("{msg}");
            (false, 1)
        }
    };
    if leave {
        if let Err(e) = gossip.leave().await {
            tracing::warn!("leave: {e}");
        }
        // Give the intent a moment to spread before the socket goes quiet.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await;
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    drop(temp);
    Ok(code)
}

/// Registers this node once a leader exists, then runs anti-entropy: at
/// once after every leader change, and every minute as Consul does.
async fn sync_loop(agent: Arc<Agent>) {
    let mut metrics = agent.consensus.raft.metrics();
    let mut last_leader = None;
    let mut synced = false;
    loop {
        let leader = metrics.borrow().current_leader;
        if leader.is_some() && (!synced || leader != last_leader) {
            match agent.anti_entropy().await {
                Ok(()) => {
                    synced = true;
                    last_leader = leader;
                }
                Err(e) => tracing::warn!("anti-entropy: {e}"),
            }
        }
        let wait = if synced {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => { synced = synced && leader.is_some(); if synced { let _ = agent.anti_entropy().await; } }
            r = metrics.changed() => { if r.is_err() { return; } }
        }
    }
}

async fn gauges_loop(agent: Arc<Agent>) {
    loop {
        if let Ok(r) = agent.catalog.reader() {
            if let (Ok((nodes, instances, _checks)), Ok(services), Ok(kv)) =
                (r.counts(), r.service_tags(), r.kv_count())
            {
                crate::metrics::catalog_sizes(nodes, services.len() as u64, instances, kv);
            }
        }
        crate::metrics::is_leader(agent.consensus.is_leader());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
