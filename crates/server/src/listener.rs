//! The listener: a connection is handed to gRPC only once it has finished its
//! TLS handshake and sent the HTTP/2 preface, each within its own time.
//!
//! tonic's own TLS times the handshake only. A client that completed it (TLS
//! asks for a client certificate but cannot demand one: token clients have
//! none) and then sent nothing held its connection, a file descriptor and
//! about 33 KB for as long as it liked: 300 of them were all still open after
//! two minutes (issue #17). Here each accepted connection gets a task of its
//! own that runs the handshake under `grpc.tls_handshake_timeout_ms`, then
//! reads the 24 bytes of the HTTP/2 client preface under
//! `grpc.preface_timeout_ms`, and drops the connection when either runs out or
//! the preface is not HTTP/2's. Accepting never waits on a slow client.
//!
//! The preface bytes read are given back in front of the stream
//! ([`Conn`]), so the HTTP/2 server sees the connection as the client sent it.
//! Once admitted, a connection with no call open for `grpc.idle_timeout_ms`
//! is ended (`idle.rs`).
//! The verified client certificate chain travels with the connection
//! ([`ConnInfo`]), where `auth.rs` reads the caller's identity.
//!
//! A connection whose certificate is a node certificate of this cluster goes
//! to the [`PeerLane`]: a server of its own on Raft's runtime, so that peers'
//! calls never wait behind clients' (`runtimes.rs`). Which calls it may make
//! is still the services' business (`gate.rs`, `senders.rs`): the lane only
//! decides where the work runs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::idle::Activity;
use crate::metrics::Metrics;
use crate::tls::{CertIdentity, ClusterName};

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The TLS settings new connections are accepted with. Cheap to clone;
/// clones share them, and [`CurrentTls::replace`] changes them for every
/// connection accepted after it (`reload.rs`); open connections keep theirs.
#[derive(Clone)]
pub struct CurrentTls(Arc<RwLock<TlsAcceptor>>);

impl CurrentTls {
    pub fn new(acceptor: TlsAcceptor) -> Self {
        CurrentTls(Arc::new(RwLock::new(acceptor)))
    }

    pub fn replace(&self, acceptor: TlsAcceptor) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
    }

    fn get(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The same settings, offering HTTP/1.1 as well as HTTP/2 (ALPN), for
    /// the tiles port (`tiles.rs`): its clients are HTTP clients of any kind.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        let mut config = self.get().config().as_ref().clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

impl std::fmt::Debug for CurrentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentTls")
    }
}

/// How long each step of a new connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub handshake: Duration,
    pub preface: Duration,
    /// How long an admitted connection may have no call open.
    pub idle: Duration,
}

/// Who is at the other end of a connection, as the request extensions carry
/// it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The client's certificate chain (DER, leaf first) that rustls verified
    /// against the cluster's CA; `None` without TLS or without a certificate.
    pub peer_certs: Option<Arc<Vec<Vec<u8>>>>,
    /// The calls open on the connection (`idle.rs`).
    pub activity: Arc<Activity>,
}

/// An admitted connection: the preface bytes already read, then the stream.
pub struct Conn {
    info: ConnInfo,
    replay: Vec<u8>,
    replayed: usize,
    io: Box<dyn Io>,
    idle: Duration,
    /// When to look again whether the connection has been idle for `idle`.
    idle_check: Pin<Box<tokio::time::Sleep>>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Where connections of this cluster's nodes go.
#[derive(Debug, Clone)]
pub struct PeerLane {
    pub cluster: ClusterName,
    pub to: mpsc::Sender<io::Result<Conn>>,
}

impl PeerLane {
    /// The lane and the connections it receives.
    pub fn new(cluster: ClusterName) -> (PeerLane, ReceiverStream<io::Result<Conn>>) {
        let (to, rx) = mpsc::channel(64);
        (PeerLane { cluster, to }, ReceiverStream::new(rx))
    }

    /// Whether the connection's certificate names a node of this cluster.
    fn takes(&self, conn: &Conn) -> bool {
        conn.info
            .peer_certs
            .as_ref()
            .and_then(|chain| chain.first())
            .and_then(|leaf| CertIdentity::from_der(leaf).ok())
            .is_some_and(|identity| self.cluster.node_id(&identity).is_some())
    }
}

/// Accepts connections on `listener` until the returned stream is dropped.
/// `tls` is `None` on a development node. Nodes' connections go to `peers`
/// when given, every other one to the returned stream.
pub fn incoming(
    listener: TcpListener,
    tls: Option<CurrentTls>,
    deadlines: Deadlines,
    metrics: Arc<Metrics>,
    peers: Option<PeerLane>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait rather
                        // than spin, and let open connections finish.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            // TCP_NODELAY: without it, small answers (a receipt, an
            // AppendEntries reply) waited ~40 ms for the peer's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let tls = tls.as_ref().map(CurrentTls::get);
            let (tx, metrics, peers) = (tx.clone(), Arc::clone(&metrics), peers.clone());
            tokio::spawn(async move {
                match admit(tcp, remote, tls, deadlines).await {
                    Ok(conn) => match peers.filter(|lane| lane.takes(&conn)) {
                        Some(lane) => {
                            let _ = lane.to.send(Ok(conn)).await;
                        }
                        None => {
                            let _ = tx.send(Ok(conn)).await;
                        }
                    },
                    Err(refusal) => {
                        metrics
                            .connections_dropped
                            .get_or_create(&vec![(
                                "reason".to_owned(),
                                refusal.reason().to_owned(),
                            )])
                            .inc();
                        tracing::debug!(%remote, reason = %refusal, "connection dropped");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Why a new connection was dropped before gRPC saw it.
#[derive(Debug)]
enum Refusal {
    Handshake(String),
    HandshakeTimeout,
    PrefaceTimeout,
    NotHttp2,
    Closed(io::Error),
}

impl Refusal {
    /// The `reason` label of `veritrail_connections_dropped_total`.
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Handshake(_) => "tls_handshake_failed",
            Refusal::HandshakeTimeout => "tls_handshake_timeout",
            Refusal::PrefaceTimeout => "preface_timeout",
            Refusal::NotHttp2 => "not_http2",
            Refusal::Closed(_) => "closed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            Refusal::HandshakeTimeout => f.write_str("no TLS handshake within its time"),
            Refusal::PrefaceTimeout => f.write_str("no HTTP/2 preface within its time"),
            Refusal::NotHttp2 => f.write_str("the client does not speak HTTP/2"),
            Refusal::Closed(e) => write!(f, "closed before it spoke: {e}"),
        }
    }
}

async fn admit(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    deadlines: Deadlines,
) -> Result<Conn, Refusal> {
    let (mut io, peer_certs): (Box<dyn Io>, _) = match tls {
        None => (Box::new(tcp), None),
        Some(acceptor) => {
            let stream = tokio::time::timeout(deadlines.handshake, acceptor.accept(tcp))
                .await
                .map_err(|_| Refusal::HandshakeTimeout)?
                .map_err(|e| Refusal::Handshake(e.to_string()))?;
            let certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| Arc::new(chain.iter().map(|c| c.as_ref().to_vec()).collect()));
            (Box::new(stream), certs)
        }
    };
    let mut preface = vec![0u8; PREFACE.len()];
    tokio::time::timeout(deadlines.preface, io.read_exact(&mut preface))
        .await
        .map_err(|_| Refusal::PrefaceTimeout)?
        .map_err(Refusal::Closed)?;
    if preface != PREFACE {
        return Err(Refusal::NotHttp2);
    }
    Ok(Conn {
        info: ConnInfo {
            remote,
            peer_certs,
            activity: Activity::new(),
        },
        replay: preface,
        replayed: 0,
        io,
        idle: deadlines.idle,
        idle_check: Box::pin(tokio::time::sleep(deadlines.idle)),
    })
}

impl Conn {
    /// Whether the connection has had no call open for its idle timeout;
    /// otherwise the timer is set for the earliest time it could have.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_check.as_mut().poll(cx).is_ready() {
            let wait = match self.info.activity.idle_for() {
                Some(idle) if idle >= self.idle => return true,
                Some(idle) => self.idle - idle,
                None => self.idle,
            };
            let at = tokio::time::Instant::now() + wait;
            self.idle_check.as_mut().reset(at);
        }
        false
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if this.idle_expired(cx) => {
                // End of stream: the HTTP/2 server closes the connection.
                tracing::debug!(remote = %this.info.remote, "closing an idle connection");
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
