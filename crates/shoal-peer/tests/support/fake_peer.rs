//! A fake swarm peer that lies or fails as a test scripts it: a QUIC
//! endpoint with a certificate (the cluster's, or another CA's), registered
//! with a scheduler through a [`SchedulerLink`] as a daemon is, answering
//! peer streams per PROTOCOL.md: an `Interest` gets its `Hello`, a
//! `Bitfield` of the pieces it claims with the hashes it announces, a
//! `Have` per later piece, and `Complete` if it claims the whole blob; a
//! `GetPiece` gets a `PieceHeader` (with the hash it chooses) and the bytes
//! it chooses. It counts what it was asked, so a test can say "this peer
//! was never asked for a piece".
//!
//! [`FakeHost`] is the scheduler half alone: a host that tells the
//! scheduler what it holds, at an address where nothing (or a stranger)
//! answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use shoal_core::{HostId, PieceLayout, TaskId};
use shoal_peer::swarm::SchedulerLink;
use shoal_proto::{
    Bitfield, FinalMap, HaveState, HostLabels, HostLoad, OriginGrant, ParentInfo, PeerError, PeerErrorCode, PeerEvent,
    PeerRequest, PieceHeader, PieceMap, PieceReply, SchedulerRequest, SchedulerResponse, read_frame, write_frame,
};
use shoal_transport::{Endpoint, Identity};

/// What a fake peer claims, announces and sends for one task.
#[derive(Clone)]
pub struct Script {
    /// The blob geometry it announces.
    pub layout: PieceLayout,
    /// The bytes it sends: piece `i` is `bytes[layout.range(i)]`.
    pub bytes: Arc<Vec<u8>>,
    /// Pieces its bitfield claims.
    pub claims: Vec<u32>,
    /// Pieces it announces with a `Have` right after the bitfield.
    pub haves: Vec<u32>,
    /// The hash it announces for each piece (bitfield and `Have`), by index.
    /// Each `PieceHeader` carries the BLAKE3 of the bytes it sends, so the
    /// header always "matches" them.
    pub announced: Vec<[u8; 32]>,
    /// It sends `Complete` after its announcements (and otherwise keeps the
    /// availability stream open, as a peer still downloading does).
    pub complete: bool,
    /// Pieces sent spoiled (first byte flipped, under a header matching the
    /// spoiled bytes) the first time they are asked for, right after.
    pub spoiled_once: Arc<Mutex<Vec<u32>>>,
}

impl Script {
    /// An honest holder of `bytes`: claims every piece, announces their true
    /// hashes, sends them, says `Complete`.
    pub fn holding(bytes: &[u8]) -> Script {
        let layout = PieceLayout::for_blob(bytes.len() as u64);
        Script {
            layout,
            claims: (0..layout.count()).collect(),
            haves: Vec::new(),
            announced: piece_map(layout, bytes),
            bytes: Arc::new(bytes.to_vec()),
            complete: true,
            spoiled_once: Arc::default(),
        }
    }

    /// Sends each of `pieces` spoiled the first time it is asked for it,
    /// and right from then on (a bit flipped on the way, once).
    pub fn spoiling_once(self, pieces: Vec<u32>) -> Script {
        *self.spoiled_once.lock().unwrap() = pieces;
        self
    }

    /// Sends `bytes` (same length) instead, still announcing the hashes it
    /// announced before.
    pub fn sending(mut self, bytes: &[u8]) -> Script {
        assert_eq!(bytes.len() as u64, self.layout.blob_size, "a script's bytes keep the geometry");
        self.bytes = Arc::new(bytes.to_vec());
        self
    }

    /// Announces `hashes` (one per piece) instead.
    pub fn announcing(mut self, hashes: Vec<[u8; 32]>) -> Script {
        assert_eq!(hashes.len() as u32, self.layout.count());
        self.announced = hashes;
        self
    }

    /// Claims `claims` in its bitfield and `haves` with a `Have` each
    /// after it.
    pub fn claiming(mut self, claims: Vec<u32>, haves: Vec<u32>) -> Script {
        self.claims = claims;
        self.haves = haves;
        self
    }

    /// Says `Complete` after its announcements, or not.
    pub fn complete(mut self, complete: bool) -> Script {
        self.complete = complete;
        self
    }

    fn holds(&self, index: u32) -> bool {
        self.claims.contains(&index) || self.haves.contains(&index)
    }
}

/// The BLAKE3 of each piece of `bytes` under `layout`.
pub fn piece_map(layout: PieceLayout, bytes: &[u8]) -> PieceMap {
    (0..layout.count())
        .map(|i| {
            let r = layout.range(i);
            *blake3::hash(&bytes[r.start as usize..r.end as usize]).as_bytes()
        })
        .collect()
}

/// An identity for `host` issued by a CA that is not the cluster's.
pub fn stranger_identity(host: &str) -> Identity {
    let ca = shoal_transport::new_ca("a stranger's CA").unwrap();
    let cert = shoal_transport::issue(&ca, host, &["127.0.0.1".to_string()]).unwrap();
    Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
}

/// A loopback address where nothing listens (a port just freed).
pub fn dead_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// Aborts its tasks when dropped.
struct Jobs(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Jobs {
    fn drop(&mut self) {
        self.0.iter().for_each(|j| j.abort());
    }
}

/// The scheduler half of a fake peer: registered (and heartbeating) at
/// `addr`, it says what it holds of which task when the test tells it to.
pub struct FakeHost {
    pub host: HostId,
    pub addr: SocketAddr,
    pub task: TaskId,
    link: Arc<dyn SchedulerLink>,
    _heartbeat: Jobs,
}

impl FakeHost {
    /// Registers `host` at `addr` and heartbeats every 500 ms until dropped.
    pub async fn register(link: Arc<dyn SchedulerLink>, host: &str, addr: SocketAddr, task: TaskId) -> FakeHost {
        let host: HostId = host.parse().unwrap();
        let req = SchedulerRequest::Register {
            host: host.clone(),
            addr,
            labels: HostLabels { node: host.to_string(), zone: None, rack: None },
            upload_capacity: 1 << 30,
            max_uploads: 16,
        };
        let answer = link.call(None, req).await.unwrap();
        assert!(matches!(answer, SchedulerResponse::Registered { .. }), "{answer:?}");
        let beat = {
            let (link, host) = (link.clone(), host.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let req = SchedulerRequest::Heartbeat { host: host.clone(), load: HostLoad::default() };
                    let _ = link.call(None, req).await;
                }
            })
        };
        FakeHost { host, addr, task, link, _heartbeat: Jobs(vec![beat]) }
    }

    /// One request about the task.
    pub async fn call(&self, req: SchedulerRequest) -> SchedulerResponse {
        self.link.call(Some(self.task.digest()), req).await.unwrap()
    }

    /// Joins the task holding `have` (asking for the final map).
    pub async fn join(&self, have: HaveState) -> JoinAnswer {
        let req = SchedulerRequest::Join { host: self.host.clone(), task: self.task.clone(), have, want_map: true };
        JoinAnswer::from(self.call(req).await)
    }

    /// Joins holding nothing and must get the origin grant: the scheduler
    /// makes it an authority of the task.
    pub async fn take_origin_grant(&self) {
        let answer = self.join(HaveState::default()).await;
        assert_eq!(answer.origin, OriginGrant::Granted, "{} wanted the origin grant", self.host);
    }

    /// Reports holding `have`, with `map` (kept as the final map only from
    /// an authority that says it is complete).
    pub async fn report(&self, have: HaveState, map: Option<PieceMap>) {
        let req = SchedulerRequest::Progress { host: self.host.clone(), task: self.task.clone(), have, map };
        assert_eq!(self.call(req).await, SchedulerResponse::Ack);
    }

    /// Reports holding the whole blob of `pieces` pieces, with `map`.
    pub async fn report_complete(&self, pieces: u32, map: Option<PieceMap>) {
        let have = HaveState { pieces_done: pieces, pieces_total: Some(pieces), complete: true };
        self.report(have, map).await;
    }

    /// Leaves the task.
    pub async fn leave(&self) {
        let req = SchedulerRequest::Leave { host: self.host.clone(), task: self.task.clone() };
        assert_eq!(self.call(req).await, SchedulerResponse::Ack);
    }

    /// What a joiner would be told about this host.
    pub fn as_parent(&self, pieces: u32) -> ParentInfo {
        ParentInfo { host: self.host.clone(), addr: self.addr, pieces_done: pieces, complete: true }
    }
}

/// A scheduler's answer to a join, taken apart.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub parents: Vec<ParentInfo>,
    pub origin: OriginGrant,
    pub authorities: Vec<ParentInfo>,
    pub map: Option<FinalMap>,
}

impl JoinAnswer {
    /// Whether `host` is offered as a parent.
    pub fn offers(&self, host: &HostId) -> bool {
        self.parents.iter().any(|p| &p.host == host)
    }

    /// Whether `host` is named an authority.
    pub fn trusts(&self, host: &HostId) -> bool {
        self.authorities.iter().any(|p| &p.host == host)
    }
}

impl From<SchedulerResponse> for JoinAnswer {
    fn from(r: SchedulerResponse) -> JoinAnswer {
        match r {
            SchedulerResponse::Parents { parents, origin, authorities, map } => {
                JoinAnswer { parents, origin, authorities, map }
            }
            other => panic!("not an answer to a join: {other:?}"),
        }
    }
}

/// What a fake peer was asked.
#[derive(Debug, Default, Clone)]
pub struct Asked {
    /// `Interest` streams opened to it.
    pub interests: usize,
    /// Pieces asked of it, in order, with when each request arrived.
    pub pieces: Vec<(u32, Instant)>,
}

/// A fake peer: [`FakeHost`] plus an endpoint answering per its [`Script`].
pub struct FakePeer {
    pub sched: FakeHost,
    asked: Arc<Mutex<Asked>>,
    _server: Jobs,
}

impl FakePeer {
    /// A fake `host` with the cluster's certificate, registered with the
    /// cluster's scheduler.
    pub async fn start(cluster: &super::Cluster, host: &str, task: TaskId, script: Script) -> FakePeer {
        let link: Arc<dyn SchedulerLink> = Arc::new(cluster.scheduler.clone());
        FakePeer::start_as(cluster.identity(host), link, host, task, script).await
    }

    /// A fake `host` with `identity`, registered through `link`.
    pub async fn start_as(
        identity: Identity,
        link: Arc<dyn SchedulerLink>,
        host: &str,
        task: TaskId,
        script: Script,
    ) -> FakePeer {
        let endpoint = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &identity, &Default::default()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Asked::default()));
        let me: HostId = host.parse().unwrap();
        let server = tokio::spawn(serve(endpoint, me, task.clone(), Arc::new(script), asked.clone()));
        let sched = FakeHost::register(link, host, addr, task).await;
        FakePeer { sched, asked, _server: Jobs(vec![server]) }
    }

    pub fn host(&self) -> &HostId {
        &self.sched.host
    }

    /// What it was asked so far.
    pub fn asked(&self) -> Asked {
        self.asked.lock().unwrap().clone()
    }

    /// How many pieces it was asked for so far.
    pub fn gets(&self) -> usize {
        self.asked.lock().unwrap().pieces.len()
    }
}

async fn serve(endpoint: Endpoint, me: HostId, task: TaskId, script: Arc<Script>, asked: Arc<Mutex<Asked>>) {
    while let Some(incoming) = endpoint.accept().await {
        let (me, task, script, asked) = (me.clone(), task.clone(), script.clone(), asked.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.handshake().await else { return };
            while let Ok((send, recv)) = conn.connection.accept_bi().await {
                let (me, task, script, asked) = (me.clone(), task.clone(), script.clone(), asked.clone());
                tokio::spawn(async move {
                    let _ = stream(send, recv, &me, &task, &script, &asked).await;
                });
            }
        });
    }
}

/// One stream: their hello and request, our hello, then the answer.
async fn stream(
    mut send: shoal_transport::quinn::SendStream,
    mut recv: shoal_transport::quinn::RecvStream,
    me: &HostId,
    task: &TaskId,
    script: &Script,
    asked: &Mutex<Asked>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _: shoal_proto::Hello = read_frame(&mut recv).await?.ok_or("no hello")?;
    let request: PeerRequest = read_frame(&mut recv).await?.ok_or("no request")?;
    write_frame(&mut send, &shoal_proto::Hello::ours(me.clone())).await?;
    match request {
        PeerRequest::Interest { task: t } => {
            asked.lock().unwrap().interests += 1;
            if &t != task {
                write_frame(&mut send, &PeerEvent::Gone).await?;
                let _ = send.finish();
                return Ok(());
            }
            let mut have = Bitfield::new(script.layout.count());
            script.claims.iter().for_each(|&i| have.set(i));
            let hashes = have.iter().map(|i| script.announced[i as usize]).collect();
            let (size, piece_size) = (script.layout.blob_size, script.layout.piece_size);
            write_frame(&mut send, &PeerEvent::Bitfield { size, piece_size, have, hashes }).await?;
            for &index in &script.haves {
                write_frame(&mut send, &PeerEvent::Have { index, blake3: script.announced[index as usize] }).await?;
            }
            if script.complete {
                write_frame(&mut send, &PeerEvent::Complete).await?;
                let _ = send.finish();
            }
            // Keep the stream open until the child closes it, as a peer
            // still downloading does.
            let _ = send.stopped().await;
        }
        PeerRequest::GetPiece { task: t, index } => {
            asked.lock().unwrap().pieces.push((index, Instant::now()));
            if &t != task || !script.holds(index) || index >= script.layout.count() {
                let e = PeerError { code: PeerErrorCode::NotFound, message: format!("no piece {index} here") };
                write_frame(&mut send, &PieceReply::Error(e)).await?;
                let _ = send.finish();
                return Ok(());
            }
            let r = script.layout.range(index);
            let mut bytes = script.bytes[r.start as usize..r.end as usize].to_vec();
            let spoil = {
                let mut once = script.spoiled_once.lock().unwrap();
                let at = once.iter().position(|&p| p == index);
                at.map(|at| once.swap_remove(at)).is_some()
            };
            if spoil {
                bytes[0] ^= 0xFF;
            }
            let bytes = &bytes[..];
            let header = PieceHeader { index, len: bytes.len() as u32, blake3: *blake3::hash(bytes).as_bytes() };
            write_frame(&mut send, &PieceReply::Piece(header)).await?;
            send.write_all(bytes).await?;
            let _ = send.finish();
            let _ = send.stopped().await;
        }
    }
    Ok(())
}
