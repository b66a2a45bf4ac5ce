//! Piece transfer between two processes on loopback, QUIC (shoal-transport,
//! mutual TLS) and plain TCP side by side in one run.
//!
//! The bench re-executes itself as the serving process
//! (`SHOAL_TRANSFER_ROLE=quic|tcp`), so sender and receiver are separate
//! processes as between two daemons. The client fetches `SHOAL_BENCH_MIB`
//! (default 1024) MiB as 4 MiB pieces, `SHOAL_BENCH_STREAMS` (default 8)
//! requests in flight: over QUIC one bi-stream per piece on one
//! connection; over TCP one connection per in-flight request, the same
//! framing (4-byte request, 40-byte header {index, len, blake3}, body).
//! The server sends one in-memory body (zero-copy `Bytes` clones) and the
//! client does not hash, so this measures the transport alone.
//!
//! Run: `cargo bench -p shoal-benches --bench transfer`. Knobs (both
//! processes read them): `SHOAL_BENCH_RUNS` (3; the median is reported),
//! `SHOAL_BENCH_PROFILE=untuned` (quinn's defaults, for comparison) or
//! `default` (`TransportTuning::default()`, sized for 1500-byte networks;
//! the bench's own default is `TransportTuning::loopback()`),
//! `SHOAL_BENCH_MTU` (the datagram size: initial, floor and ceiling),
//! `SHOAL_BENCH_MIN_MTU` (the floor alone), `SHOAL_BENCH_SOCKBUF`
//! (socket buffers, bytes), `SHOAL_BENCH_GSO` (true/false),
//! `SHOAL_BENCH_RECV=exact` (receive into one buffer with `recv_exact`
//! instead of taking quinn's chunks with `recv_chunks`: one more copy),
//! `SHOAL_BENCH_THREADS` (tokio workers per process; 1 = current-thread),
//! `SHOAL_BENCH_ONLY=quic` (skip TCP), `SHOAL_BENCH_STATS=1` (print quinn's
//! per-connection datagram, loss and MTU counters from both ends).
//! Besides GB/s it prints CPU seconds per GB of each process, which a busy
//! machine disturbs less. Writes `target/bench/transfer.json`.
//!
//! `SHOAL_BENCH_NET=veth` (root) runs the two processes in network
//! namespaces of their own joined by a veth pair with a 1500-byte MTU, as
//! two hosts on an Ethernet LAN, instead of on loopback's 64 KiB MTU; use
//! it with `SHOAL_BENCH_PROFILE=default` (1452-byte datagrams). Writes
//! `target/bench/transfer-veth.json`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use shoal_transport::{Endpoint, Identity, RateLimiter, TransportTuning, recv_chunks, recv_exact, send_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const PIECE: usize = 4 << 20;
const HEADER: usize = 40;
const LONG: Duration = Duration::from_secs(60);

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The tuning both processes use, from the profile and knobs.
fn tuning() -> TransportTuning {
    let mut t = if std::env::var("SHOAL_BENCH_PROFILE").as_deref() == Ok("untuned") {
        // quinn 0.11's own defaults.
        TransportTuning {
            stream_receive_window: 1_250_000,
            receive_window: (1 << 62) - 1,
            send_window: 10_000_000,
            max_concurrent_bidi_streams: 100,
            initial_mtu: 1200,
            min_mtu: 1200,
            mtu_discovery_upper_bound: Some(1452),
            max_udp_payload_size: 1472,
            socket_send_buffer: 0,
            socket_recv_buffer: 0,
            send_fairness: true,
            ..TransportTuning::default()
        }
    } else if std::env::var("SHOAL_BENCH_PROFILE").as_deref() == Ok("default") {
        TransportTuning::default() // the 1500-byte-network settings
    } else {
        TransportTuning::loopback()
    };
    if let Some(mtu) = env("SHOAL_BENCH_MTU") {
        t.initial_mtu = mtu;
        t.min_mtu = mtu.min(shoal_transport::tuning::MAX_MIN_MTU);
        t.mtu_discovery_upper_bound = Some(mtu);
    }
    if let Some(gso) = env("SHOAL_BENCH_GSO") {
        t.segmentation_offload = gso;
    }
    if let Some(mtu) = env("SHOAL_BENCH_MIN_MTU") {
        t.min_mtu = mtu;
    }
    if let Some(buf) = env("SHOAL_BENCH_SOCKBUF") {
        t.socket_send_buffer = buf;
        t.socket_recv_buffer = buf;
    }
    t
}

fn identity(dir: &Path, host: &str) -> Identity {
    Identity::load_files(&shoal_transport::IdentityFiles::named(dir, host)).expect("load bench identity")
}

fn header(index: u32, body: &[u8]) -> Bytes {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(&index.to_be_bytes());
    h.extend_from_slice(&(body.len() as u32).to_be_bytes());
    h.extend_from_slice(blake3::hash(body).as_bytes());
    h.into()
}

fn body() -> Bytes {
    (0..PIECE as u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect::<Vec<_>>().into()
}

// ---- server process -------------------------------------------------------

/// The address this process binds: its namespace's own under
/// `SHOAL_BENCH_NET=veth` (set by [`veth::Pair`]), else loopback.
fn bind_addr() -> SocketAddr {
    let ip = std::env::var("SHOAL_TRANSFER_IP").unwrap_or_else(|_| "127.0.0.1".into());
    SocketAddr::new(ip.parse().expect("SHOAL_TRANSFER_IP"), 0)
}

async fn serve(role: &str) {
    let body = body();
    let head = header(0, &body);
    let addr = bind_addr();
    let local = if role == "quic" {
        let certs = PathBuf::from(std::env::var("SHOAL_TRANSFER_CERTS").expect("certs dir"));
        let ep = Endpoint::bind(addr, &identity(&certs, "server"), &tuning()).expect("bind quic");
        let local = ep.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let (body, head) = (body.clone(), head.clone());
                tokio::spawn(async move {
                    let Ok(peer) = incoming.handshake().await else { return };
                    let conn = peer.connection.clone();
                    tokio::spawn(async move {
                        conn.closed().await;
                        if std::env::var_os("SHOAL_BENCH_STATS").is_some() {
                            eprintln!("server {}", stats(&conn));
                        }
                    });
                    while let Ok((mut send, mut recv)) = peer.connection.accept_bi().await {
                        let (body, head) = (body.clone(), head.clone());
                        tokio::spawn(async move {
                            let none = RateLimiter::unlimited();
                            if recv_exact(&mut recv, 4, LONG, &none).await.is_ok() {
                                let _ = send_bytes(&mut send, [head, body], &none, LONG).await;
                                let _ = send.finish();
                            }
                        });
                    }
                });
            }
        });
        local
    } else {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind tcp");
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (body, head) = (body.clone(), head.clone());
                sock.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut req = [0u8; 4];
                    while sock.read_exact(&mut req).await.is_ok() {
                        if sock.write_all(&head).await.is_err() || sock.write_all(&body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        local
    };
    println!("LISTEN {local}");
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin (or dies), at most 10 minutes.
    let eof = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
    let _ = tokio::time::timeout(Duration::from_secs(600), eof).await;
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

fn spawn_server(role: &str, certs: &Path) -> Server {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match std::env::var("SHOAL_TRANSFER_SERVER_NS") {
        Ok(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns]).arg(&exe).env("SHOAL_TRANSFER_IP", veth::SERVER_IP);
            c
        }
        Err(_) => Command::new(&exe),
    };
    let mut child = cmd
        .env("SHOAL_TRANSFER_ROLE", role)
        .env("SHOAL_TRANSFER_CERTS", certs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("LISTEN ").expect("server prints LISTEN addr").parse().unwrap();
    Server { child, addr }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---- client ---------------------------------------------------------------

async fn fetch_quic(ep: &Endpoint, server: SocketAddr, pieces: u32, streams: usize) -> u64 {
    let conn = ep.connect(server).await.expect("connect");
    let zero_copy = std::env::var("SHOAL_BENCH_RECV").as_deref() != Ok("exact");
    let total = stream::iter(0..pieces)
        .map(|i| {
            let conn = conn.clone();
            async move {
                let none = RateLimiter::unlimited();
                let (mut send, mut recv) = conn.open_bi().await.expect("open stream");
                send.write_all(&i.to_be_bytes()).await.expect("request");
                send.finish().unwrap();
                let head = recv_exact(&mut recv, HEADER, LONG, &none).await.expect("header");
                let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
                if zero_copy {
                    let chunks = recv_chunks(&mut recv, len, LONG, &none).await.expect("body");
                    chunks.iter().map(|c| c.len() as u64).sum()
                } else {
                    recv_exact(&mut recv, len, LONG, &none).await.expect("body").len() as u64
                }
            }
        })
        .buffer_unordered(streams)
        .fold(0u64, |acc, n| async move { acc + n })
        .await;
    if std::env::var_os("SHOAL_BENCH_STATS").is_some() {
        eprintln!("client {}", stats(&conn));
    }
    conn.close(0u32.into(), b"done");
    total
}

/// What explains a figure: datagram sizes, syscalls, losses, congestion.
fn stats(conn: &shoal_transport::quinn::Connection) -> String {
    let s = conn.stats();
    format!(
        "tx {} datagrams in {} sendmsg ({} B avg), rx {} datagrams in {} recvmsg; mtu {} cwnd {} rtt {:?} \
         lost {} pkts, {} congestion events",
        s.udp_tx.datagrams,
        s.udp_tx.ios,
        s.udp_tx.bytes / s.udp_tx.datagrams.max(1),
        s.udp_rx.datagrams,
        s.udp_rx.ios,
        s.path.current_mtu,
        s.path.cwnd,
        s.path.rtt,
        s.path.lost_packets,
        s.path.congestion_events,
    )
}

async fn fetch_tcp(server: SocketAddr, pieces: u32, streams: usize) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let workers = (0..streams).map(|_| {
        let next = next.clone();
        tokio::spawn(async move {
            let mut sock = tokio::net::TcpStream::connect(server).await.expect("tcp connect");
            sock.set_nodelay(true).unwrap();
            let (mut total, mut head) = (0u64, [0u8; HEADER]);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pieces {
                    return total;
                }
                sock.write_all(&i.to_be_bytes()).await.unwrap();
                sock.read_exact(&mut head).await.unwrap();
                let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
                // A fresh buffer per piece, as a piece fetcher would hand
                // on; not zeroed first (one copy, from the kernel).
                let mut buf = bytes::BytesMut::with_capacity(len);
                let mut body = (&mut sock).take(len as u64);
                while buf.len() < len {
                    assert!(body.read_buf(&mut buf).await.unwrap() > 0, "tcp body cut short");
                }
                total += buf.len() as u64;
            }
        })
    });
    let mut total = 0;
    for w in workers.collect::<Vec<_>>() {
        total += w.await.unwrap();
    }
    total
}

/// CPU seconds (user + system) process `pid` has used, from /proc (USER_HZ
/// is 100 on Linux). Efficiency per byte survives a busy machine better
/// than wall-clock speed does.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that closes the command name: state is 3rd, utime 14th, stime 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn run_client(quick: bool) {
    let mib: u32 = env("SHOAL_BENCH_MIB").unwrap_or(if quick { 64 } else { 1024 });
    let runs: usize = env("SHOAL_BENCH_RUNS").unwrap_or(if quick { 1 } else { 3 });
    let streams: usize = env("SHOAL_BENCH_STREAMS").unwrap_or(8);
    let pieces = (mib as usize * (1 << 20)).div_ceil(PIECE) as u32;
    let bytes = u64::from(pieces) * PIECE as u64;

    let certs = tempfile::tempdir().unwrap();
    let ca = shoal_transport::new_ca("bench").unwrap();
    for host in ["server", "client"] {
        let node = shoal_transport::issue(&ca, host, &[]).unwrap();
        shoal_transport::write_node(certs.path(), host, &node, &ca.cert_pem, shoal_transport::NodeLayout::Named)
            .unwrap();
    }
    let t = tuning();
    println!("transfer: {mib} MiB as {} KiB pieces, {streams} in flight, {runs} runs; tuning {t:?}", PIECE >> 10);

    let quic_server = spawn_server("quic", certs.path());
    let ep = Endpoint::bind(bind_addr(), &identity(certs.path(), "client"), &t).unwrap();
    let me = std::process::id();
    let (mut quic, cpu0) = (Vec::new(), (cpu_secs(me), cpu_secs(quic_server.child.id())));
    for _ in 0..runs {
        let start = Instant::now();
        assert_eq!(fetch_quic(&ep, quic_server.addr, pieces, streams).await, bytes);
        quic.push(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    let gb = (bytes * runs as u64) as f64 / 1e9;
    let quic_cpu = ((cpu_secs(me) - cpu0.0) / gb, (cpu_secs(quic_server.child.id()) - cpu0.1) / gb);
    ep.close(Duration::from_secs(1)).await;
    drop(quic_server);

    let tcp_server = spawn_server("tcp", certs.path());
    let (mut tcp, cpu0) = (Vec::new(), (cpu_secs(me), cpu_secs(tcp_server.child.id())));
    // SHOAL_BENCH_ONLY=quic skips TCP (for profiling the QUIC path).
    let tcp_runs = if std::env::var("SHOAL_BENCH_ONLY").as_deref() == Ok("quic") { 0 } else { runs };
    for _ in 0..tcp_runs {
        let start = Instant::now();
        assert_eq!(fetch_tcp(tcp_server.addr, pieces, streams).await, bytes);
        tcp.push(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    let tcp_cpu = ((cpu_secs(me) - cpu0.0) / gb, (cpu_secs(tcp_server.child.id()) - cpu0.1) / gb);
    drop(tcp_server);

    let (q, t) = (median(quic.clone()), median(tcp.clone()));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "QUIC (mTLS): {q:.3} GB/s  runs {quic:.3?}  CPU s/GB: receiver {:.2}, sender {:.2}",
        quic_cpu.0, quic_cpu.1
    );
    println!("TCP (plain): {t:.3} GB/s  runs {tcp:.3?}  CPU s/GB: receiver {:.2}, sender {:.2}", tcp_cpu.0, tcp_cpu.1);
    println!("QUIC/TCP:    {:.2}   (load average {})", q / t, load.trim());
    let report = serde_json::json!({
        "bytes": bytes, "piece": PIECE, "streams": streams, "runs": runs,
        "quic_gbps": q, "tcp_gbps": t, "ratio": q / t,
        "quic_runs": quic, "tcp_runs": tcp,
        "quic_cpu_s_per_gb": {"receiver": quic_cpu.0, "sender": quic_cpu.1},
        "tcp_cpu_s_per_gb": {"receiver": tcp_cpu.0, "sender": tcp_cpu.1},
        "gso": tuning().uses_gso(), "load_average": load.trim(),
        "profile": std::env::var("SHOAL_BENCH_PROFILE").unwrap_or_else(|_| "loopback".into()),
        "tuning": format!("{:?}", tuning()),
    });
    if quick {
        return; // a smoke pass does not overwrite a real report
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let name =
        if std::env::var_os("SHOAL_TRANSFER_SERVER_NS").is_some() { "transfer-veth.json" } else { "transfer.json" };
    std::fs::write(out.join(name), serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let threads: usize = env("SHOAL_BENCH_THREADS").unwrap_or(1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .unwrap();
    if std::env::var("SHOAL_BENCH_NET").as_deref() == Ok("veth") && std::env::var_os("SHOAL_TRANSFER_ROLE").is_none() {
        return veth::run_client_in_namespaces(&args);
    }
    match std::env::var("SHOAL_TRANSFER_ROLE").as_deref() {
        Ok("client") => rt.block_on(run_client(false)),
        Ok(role) => rt.block_on(serve(role)),
        // Without `--bench` (cargo test --benches) run a quick smoke pass.
        Err(_) => rt.block_on(run_client(!args.iter().any(|a| a == "--bench"))),
    }
}

mod veth {
    //! Two network namespaces joined by a veth pair (MTU 1500), made for
    //! one run and deleted after it (deleting a namespace deletes its end
    //! of the pair).

    use std::process::Command;

    pub(super) const SERVER_IP: &str = "10.78.0.2";
    const CLIENT_IP: &str = "10.78.0.1";

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
        assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// The namespaces; deleted on drop.
    struct Pair {
        client: String,
        server: String,
    }

    impl Pair {
        fn new() -> Pair {
            let id = std::process::id();
            let pair = Pair { client: format!("shxfer-c{id}"), server: format!("shxfer-s{id}") };
            for ns in [&pair.client, &pair.server] {
                ip(&["netns", "add", ns]);
                ip(&["-n", ns, "link", "set", "lo", "up"]);
            }
            let (a, b) = (format!("shxc{id}"), format!("shxs{id}"));
            ip(&[
                "-n",
                &pair.client,
                "link",
                "add",
                &a,
                "mtu",
                "1500",
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                &pair.server,
            ]);
            ip(&["-n", &pair.server, "link", "set", &b, "mtu", "1500"]);
            for (ns, dev, addr) in [(&pair.client, &a, CLIENT_IP), (&pair.server, &b, SERVER_IP)] {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
            pair
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            for ns in [&self.client, &self.server] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    /// Run the client half of the bench in one namespace, its servers in
    /// the other.
    pub(super) fn run_client_in_namespaces(args: &[String]) {
        let pair = Pair::new();
        let status = Command::new("ip")
            .args(["netns", "exec", &pair.client])
            .arg(std::env::current_exe().unwrap())
            .args(&args[1..])
            .env("SHOAL_TRANSFER_ROLE", "client")
            .env("SHOAL_TRANSFER_IP", CLIENT_IP)
            .env("SHOAL_TRANSFER_SERVER_NS", &pair.server)
            .status()
            .expect("run the client in its namespace");
        drop(pair);
        assert!(status.success(), "the client failed: {status}");
    }
}
