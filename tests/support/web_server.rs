//! A tiny server for tests that run containers: it answers every HTTP
//! request on its TCP ports, and every datagram on its UDP ports, with its
//! name. Only the standard library, so it links statically and runs in a
//! `FROM scratch` image.
//!
//! - `LISTEN`: comma-separated ports, `8080` for TCP or `5353/udp` (default `80`);
//! - `NAME`: what it answers with (default `$HOSTNAME`, which Docker sets to
//!   the container's short ID).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;

fn main() {
    let name = std::env::var("NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "web".to_string());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "80".to_string());
    let mut threads = Vec::new();
    for spec in listen.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (port, udp) = match spec.strip_suffix("/udp") {
            Some(p) => (p, true),
            None => (spec.strip_suffix("/tcp").unwrap_or(spec), false),
        };
        let addr = format!("0.0.0.0:{port}");
        let own = name.clone();
        threads.push(if udp {
            let socket = UdpSocket::bind(&addr).unwrap_or_else(|e| fail(&addr, e));
            thread::spawn(move || serve_udp(socket, &own))
        } else {
            let listener = TcpListener::bind(&addr).unwrap_or_else(|e| fail(&addr, e));
            thread::spawn(move || serve_tcp(listener, &own))
        });
        eprintln!("web_server: {name} listening on {spec}");
    }
    for t in threads {
        let _ = t.join();
    }
}

fn fail(addr: &str, e: std::io::Error) -> ! {
    eprintln!("web_server: cannot listen on {addr}: {e}");
    std::process::exit(1);
}

fn serve_tcp(listener: TcpListener, name: &str) {
    for stream in listener.incoming().flatten() {
        let name = name.to_string();
        thread::spawn(move || answer(stream, &name));
    }
}

/// Reads the request head (up to 8 KiB) and answers `200` with the name.
fn answer(mut stream: TcpStream, name: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("{name}\n");
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn serve_udp(socket: UdpSocket, name: &str) {
    let mut buf = [0u8; 1500];
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to(format!("{name}\n").as_bytes(), from);
    }
}
