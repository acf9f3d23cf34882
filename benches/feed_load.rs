//! Simulates N client agents' catalog subscriptions from one process, for
//! benches/subscribers.py. Each subscription speaks the real feed protocol
//! (the RPC port's feed protocol byte, a `Subscribe` frame, then frames in),
//! decodes every frame and tracks its position, as a client agent does, but
//! keeps no view (the point is the servers' cost, not the subscribers').
//!
//! Usage: feed_load <N> <server rpc addr>...
//! Subscription i connects from 127.0.61.(1 + i/50), so no source address
//! holds more than 50 of them (the servers cap connections per client IP,
//! as real client agents each have their own address).
//! Prints one JSON line a second: how many subscriptions are synced, the
//! frames and bytes received so far, and the lowest and highest position.

use cairn::feed::{Frame, Refusal, Subscribe, VERSION};
use cairn::rpc::{frame, Protocol};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;

struct Stats {
    synced: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
    positions: Vec<AtomicU64>,
}

async fn subscribe(i: usize, servers: Arc<Vec<String>>, stats: Arc<Stats>) {
    let mut pos: Option<cairn::catalog::LogPos> = None;
    // Like a client agent's server list: a random first choice, and another
    // at random after a refusal.
    let mut attempt: usize = rand::random_range(0..servers.len());
    let mut counted = false;
    loop {
        let addr = &servers[attempt % servers.len()];
        attempt += 1 + rand::random_range(0..servers.len().max(2) - 1);
        let from = std::net::IpAddr::from([127, 0, 61, 1 + (i / 50) as u8]);
        let Ok(sock) = cairn::rpc::Dialer::plain(Some(from))
            .dial(addr, Protocol::Feed)
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (rd, mut wr) = tokio::io::split(sock);
        let mut rd = BufReader::with_capacity(256 << 10, rd);
        let sub = Subscribe {
            version: VERSION,
            node: format!("load-{i}"),
            from: pos,
            accept_leader: false,
        };
        if frame::write_frame(&mut wr, &sub).await.is_err() {
            continue;
        }
        let mut snapshot_pos = None;
        loop {
            let Ok(payload) = frame::read_raw(&mut rd).await else {
                break;
            };
            stats.frames.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes
                .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
            let Ok(f) = frame::decode::<Frame>(&payload) else {
                eprintln!("feed_load: undecodable frame from {addr}");
                break;
            };
            let f = match f {
                Frame::Packed(data) => match cairn::feed::unpack(&data) {
                    Ok(entries) => Frame::Batch(entries),
                    Err(e) => {
                        eprintln!("feed_load: {e}");
                        break;
                    }
                },
                other => other,
            };
            match f {
                Frame::Packed(_) => {}
                Frame::Batch(entries) => {
                    if let Some(last) = entries.last() {
                        pos = Some(last.pos);
                        stats.positions[i].store(last.pos.index, Ordering::Relaxed);
                    }
                }
                Frame::Snapshot {
                    pos: p,
                    total,
                    offset,
                    data,
                } => {
                    if offset + data.len() as u64 >= total {
                        snapshot_pos = Some(p);
                    }
                }
                Frame::Heartbeat(_) => {}
                Frame::Refused(Refusal::Leader) | Frame::Moved => break,
                Frame::Refused(r) => {
                    eprintln!("feed_load: refused by {addr}: {r:?}");
                    break;
                }
            }
            if let Some(p) = snapshot_pos.take() {
                pos = Some(p);
                stats.positions[i].store(p.index, Ordering::Relaxed);
            }
            if pos.is_some() && !counted {
                counted = true;
                stats.synced.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), servers) = (
        args.first().and_then(|n| n.parse::<usize>().ok()),
        &args[1.min(args.len())..],
    ) else {
        eprintln!("usage: feed_load <N> <server rpc addr>...");
        std::process::exit(2);
    };
    if servers.is_empty() {
        eprintln!("usage: feed_load <N> <server rpc addr>...");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let servers = Arc::new(servers.to_vec());
        let stats = Arc::new(Stats {
            synced: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            positions: (0..n).map(|_| AtomicU64::new(0)).collect(),
        });
        for i in 0..n {
            tokio::spawn(subscribe(i, servers.clone(), stats.clone()));
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let positions: Vec<u64> = stats
                .positions
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .collect();
            println!(
                "{{\"synced\":{},\"frames\":{},\"bytes\":{},\"reconnects\":{},\"min_index\":{},\"max_index\":{}}}",
                stats.synced.load(Ordering::Relaxed),
                stats.frames.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.reconnects.load(Ordering::Relaxed),
                positions.iter().min().copied().unwrap_or(0),
                positions.iter().max().copied().unwrap_or(0),
            );
        }
    });
}
