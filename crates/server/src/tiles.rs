//! The C2SP tlog-tiles read path: the latest co-signed checkpoint and the
//! Merkle tree's hash tiles over HTTP(S), on a port of their own
//! (`[tiles] listen_addr`), so that tools of the transparency ecosystem (Go's
//! `sumdb/tlog`, Tessera's and Sunlight's clients) can check the log
//! without Veritrail's gRPC API.
//!
//! - `GET /checkpoint`: the latest quorum-signed checkpoint, a signed note
//!   (docs/FORMAT.md sections 5 and 6), never cached.
//! - `GET /tile/<L>/<N>[.p/<W>]`: `W` (256 for a full tile) hashes of height
//!   `8 * L`, from node `N * 256` on, 32 bytes each; `N` in the spec's
//!   path form (`x001/x234/067`). A tile whose nodes the log does not hold yet
//!   is `404`. Tiles never change once they exist, and say so to caches.
//!
//! - `GET /tile/entries/<N>[.p/<W>]`: the entry bundle beside level-0 tile
//!   `N`: each entry's canonical bytes after a big-endian `uint16` length.
//!   An entry longer than 65,535 bytes cannot be written so: its bundle is
//!   `501`, naming it (docs/FORMAT.md section 10). Bundles hold the events
//!   themselves, so they need the policy's `read` grant even on an
//!   anonymous port.
//!
//! With TLS, connections are TLS as on the gRPC port (HTTP/1.1 or HTTP/2 by
//! ALPN) and the handshake is timed the same way. Unless `[tiles] anonymous`,
//! a caller authenticates as on the gRPC port (client certificate or bearer
//! token) and needs the policy's `proofs` grant for the checkpoint and hash
//! tiles. At most `tiles.max_connections` connections are held, and an idle
//! one is closed after `grpc.idle_timeout_ms` ([`serve`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::NodeError;
use crate::idle::{Activity, ActivityLayer};
use crate::listener::{ConnInfo, CurrentTls};
use crate::node::Node;
use crate::policy::Action;

/// A tile's hashes per full tile (C2SP tlog-tiles: tiles of height 8).
const TILE_WIDTH: u16 = 256;

/// A tile coordinate, as its path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
    /// 1 to 256; 256 is a full tile.
    pub width: u16,
}

impl TileId {
    /// Parses `<L>/<N>[.p/<W>]` (what follows `tile/`), refusing every
    /// spelling but the spec's one: no leading zeros, three digits per
    /// element of `N`, `x` before all but the last, and no `x000` first.
    pub fn parse(path: &str) -> Result<TileId, String> {
        let bad = |why: &str| format!("tile path {path:?}: {why}");
        let (level, rest) = path.split_once('/').unwrap_or((path, ""));
        let level: u8 = decimal(level)
            .and_then(|l| u8::try_from(l).ok())
            .filter(|l| *l <= 63)
            .ok_or_else(|| bad("the level must be a decimal from 0 to 63"))?;
        let (index, width) = index_and_width(rest).map_err(|why| bad(&why))?;
        Ok(TileId {
            level,
            index,
            width,
        })
    }

    /// Parses `<N>[.p/<W>]` (what follows `tile/entries/`), spelt as in
    /// [`TileId::parse`]: the entry bundle beside level-0 tile `N`.
    pub fn parse_bundle(path: &str) -> Result<TileId, String> {
        let (index, width) =
            index_and_width(path).map_err(|why| format!("entry bundle path {path:?}: {why}"))?;
        Ok(TileId {
            level: 0,
            index,
            width,
        })
    }
}

/// `<N>[.p/<W>]`: the index and the width (256 unless partial).
fn index_and_width(path: &str) -> Result<(u64, u16), String> {
    let mut parts = path.split('/');
    let mut index: u64 = 0;
    let mut width = TILE_WIDTH;
    let mut first = true;
    loop {
        let element = parts.next().ok_or("the tile index ends early")?;
        let (digits, last) = match element.strip_prefix('x') {
            Some(digits) => (digits, false),
            None => (element, true),
        };
        let (digits, partial) = match digits.strip_suffix(".p") {
            Some(digits) if last => (digits, true),
            _ => (digits, false),
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("each element of the index is three digits".into());
        }
        if first && !last && digits == "000" {
            return Err("the index has a leading x000".into());
        }
        first = false;
        let value: u64 = digits.parse().map_err(|_| "not a number")?;
        index = index
            .checked_mul(1000)
            .and_then(|i| i.checked_add(value))
            .ok_or("the index is too large")?;
        if last {
            if partial {
                let w = parts.next().ok_or("`.p` without a width")?;
                width = decimal(w)
                    .and_then(|w| u16::try_from(w).ok())
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or("a partial width is a decimal from 1 to 255")?;
            }
            break;
        }
    }
    if parts.next().is_some() {
        return Err("elements after the tile index".into());
    }
    Ok((index, width))
}

/// A canonical decimal: digits, no leading zero (but `0` itself).
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[derive(Clone)]
struct Tiles {
    node: Arc<Node>,
    anonymous: bool,
}

impl Tiles {
    /// Unless anonymous: the caller, as the gRPC port would know it, with
    /// the policy's `proofs` grant.
    fn admit(&self, conn: &ConnInfo, headers: &HeaderMap) -> Result<(), NodeError> {
        if self.anonymous {
            return Ok(());
        }
        self.admit_to(conn, headers, Action::Proofs)
    }

    /// The caller, as the gRPC port would know it, with `action`'s grant,
    /// whatever `tiles.anonymous` says.
    fn admit_to(
        &self,
        conn: &ConnInfo,
        headers: &HeaderMap,
        action: Action<'_>,
    ) -> Result<(), NodeError> {
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(conn.clone());
        if let Some(value) = headers.get(header::AUTHORIZATION)
            && let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes())
        {
            request.metadata_mut().insert("authorization", value);
        }
        self.node.require(&request, action).map(|_| ())
    }

    fn refuse(&self, error: &NodeError) -> Response {
        let status = match error {
            NodeError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            NodeError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            NodeError::NotFound(_) | NodeError::OutOfRange(_) => StatusCode::NOT_FOUND,
            NodeError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            NodeError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.counted(status);
        (status, format!("{error}\n")).into_response()
    }

    fn counted(&self, status: StatusCode) {
        self.node
            .metrics
            .tiles_requests
            .get_or_create(&vec![("status".to_owned(), status.as_u16().to_string())])
            .inc();
    }

    /// Cache-Control for what never changes: public only when anyone may
    /// read it.
    fn immutable(&self) -> HeaderValue {
        HeaderValue::from_static(if self.anonymous {
            "public, max-age=31536000, immutable"
        } else {
            "private, max-age=31536000, immutable"
        })
    }
}

async fn checkpoint(
    State(tiles): State<Tiles>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = tiles.admit(&conn, &headers) {
        return tiles.refuse(&refused);
    }
    match tiles.node.reader.latest_signed_checkpoint().await {
        Ok(Some((size, note))) => {
            tiles.counted(StatusCode::OK);
            let note = tiles.node.with_cosignatures(size, note);
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                note,
            )
                .into_response()
        }
        Ok(None) => tiles.refuse(&NodeError::NotFound(
            "no co-signed checkpoint yet; checkpoints are cut every checkpoint.interval_ms".into(),
        )),
        Err(e) => tiles.refuse(&NodeError::from(e)),
    }
}

async fn tile(
    State(tiles): State<Tiles>,
    Extension(conn): Extension<ConnInfo>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(bundle) = path.strip_prefix("entries/") {
        // Entries are what the gRPC port's `read` grant guards: never
        // anonymous, whatever `tiles.anonymous` opens.
        if let Err(refused) = tiles.admit_to(&conn, &headers, Action::Read) {
            return tiles.refuse(&refused);
        }
        return entry_bundle(&tiles, bundle, accepts_gzip(&headers)).await;
    }
    if let Err(refused) = tiles.admit(&conn, &headers) {
        return tiles.refuse(&refused);
    }
    let id = match TileId::parse(&path) {
        Ok(id) => id,
        Err(why) => {
            tiles.counted(StatusCode::BAD_REQUEST);
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    match tiles
        .node
        .reader
        .tile_hashes(id.level, id.index, id.width)
        .await
    {
        Ok(hashes) => {
            tiles.counted(StatusCode::OK);
            let body: Vec<u8> = hashes.iter().flat_map(|h| *h.as_bytes()).collect();
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (header::CACHE_CONTROL, tiles.immutable()),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => tiles.refuse(&NodeError::from(e)),
    }
}

/// The largest entry a tlog-tiles entry bundle can carry: its length
/// prefix is a big-endian `uint16`.
const BUNDLE_ENTRY_MAX_BYTES: usize = u16::MAX as usize;

/// `tile/entries/<N>[.p/<W>]`: the canonical bytes of entries `256N` to
/// `256N + W - 1`, each after its length as a big-endian `uint16` (C2SP
/// tlog-tiles), so that a client recomputes each leaf hash and checks it
/// against the level-0 tile. A bundle holding an entry longer than the
/// prefix can say is `501`, naming the entry: it cannot be written in the
/// spec's format, and a shortened entry would not hash to its leaf.
async fn entry_bundle(tiles: &Tiles, path: &str, gzip: bool) -> Response {
    let id = match TileId::parse_bundle(path) {
        Ok(id) => id,
        Err(why) => {
            tiles.counted(StatusCode::BAD_REQUEST);
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let entries = match tiles.node.reader.entry_bundle(id.index, id.width).await {
        Ok(entries) => entries,
        Err(e) => return tiles.refuse(&NodeError::from(e)),
    };
    if let Some(long) = entries
        .iter()
        .find(|e| e.canonical.len() > BUNDLE_ENTRY_MAX_BYTES)
    {
        tiles.counted(StatusCode::NOT_IMPLEMENTED);
        return (
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "entry {} is {} bytes, longer than the {BUNDLE_ENTRY_MAX_BYTES} a tlog-tiles \
                 entry bundle can carry: read it through the gRPC API (Get), and check its \
                 leaf hash against tile/0/{}\n",
                long.seq(),
                long.canonical.len(),
                path
            ),
        )
            .into_response();
    }
    let mut body = Vec::with_capacity(entries.iter().map(|e| 2 + e.canonical.len()).sum());
    for entry in &entries {
        // Checked above: every length fits.
        let length = u16::try_from(entry.canonical.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&length.to_be_bytes());
        body.extend_from_slice(&entry.canonical);
    }
    // The spec asks for bundles compressed at the HTTP layer: gzip when the
    // client takes it, identity otherwise.
    let body = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 2),
            flate2::Compression::fast(),
        );
        match std::io::Write::write_all(&mut encoder, &body).and_then(|()| encoder.finish()) {
            Ok(compressed) => compressed,
            Err(e) => {
                return tiles.refuse(&NodeError::Internal(format!("compressing a bundle: {e}")));
            }
        }
    } else {
        body
    };
    tiles.counted(StatusCode::OK);
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            ),
            (header::VARY, HeaderValue::from_static("Accept-Encoding")),
        ],
        body,
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` takes gzip (named, with a non-zero weight).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            name.eq_ignore_ascii_case("gzip") && weight > 0.0
        })
}

/// Serves tiles on `listener` for as long as the node runs. `tls` is the
/// gRPC port's (reloaded with it), offered with HTTP/1.1 as well as HTTP/2.
///
/// At most `tiles.max_connections` connections are held: one more is closed
/// as soon as it is accepted. The TLS handshake and a request's headers are
/// timed as on the gRPC port (`grpc.tls_handshake_timeout_ms`), and a
/// connection with no request open for `grpc.idle_timeout_ms` is closed
/// (HTTP/1.1 keep-alive and HTTP/2 alike), so that idle clients give their
/// places back.
pub async fn serve(node: Arc<Node>, listener: TcpListener, tls: Option<CurrentTls>) {
    let anonymous = node.config.tiles.anonymous;
    let handshake = Duration::from_millis(node.config.grpc.tls_handshake_timeout_ms);
    let idle = Duration::from_millis(node.config.grpc.idle_timeout_ms);
    let places = Arc::new(Semaphore::new(node.config.tiles.max_connections));
    let app = Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .layer(ActivityLayer)
        .with_state(Tiles {
            node: Arc::clone(&node),
            anonymous,
        });
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a tiles connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tracing::debug!(%remote, "tiles: every connection place is taken; closed");
            node.metrics
                .tiles_requests
                .get_or_create(&vec![(
                    "status".to_owned(),
                    "connection_refused".to_owned(),
                )])
                .inc();
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.as_ref().map(CurrentTls::http_acceptor);
        let app = app.clone();
        tokio::spawn(async move {
            let _place = place;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client that never finishes its request headers is dropped.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake);
            let activity = Activity::new();
            let result = match acceptor {
                None => {
                    let info = ConnInfo {
                        remote,
                        peer_certs: None,
                        activity: Arc::clone(&activity),
                    };
                    let service = TowerToHyperService::new(app.layer(Extension(info)));
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    until_idle(conn, &activity, idle).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "tiles: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "tiles: no TLS handshake within its time");
                            return;
                        }
                    };
                    let peer_certs =
                        stream.get_ref().1.peer_certificates().map(|chain| {
                            Arc::new(chain.iter().map(|c| c.as_ref().to_vec()).collect())
                        });
                    let info = ConnInfo {
                        remote,
                        peer_certs,
                        activity: Arc::clone(&activity),
                    };
                    let service = TowerToHyperService::new(app.layer(Extension(info)));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    until_idle(conn, &activity, idle).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "tiles connection ended");
            }
        });
    }
}

/// Drives `conn` to its end, shutting it down gracefully once no request has
/// been open on it for `idle` (a request under way finishes first).
async fn until_idle<I>(
    conn: auto::Connection<'_, I, TowerToHyperService<Router>, TokioExecutor>,
    activity: &Activity,
    idle: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(conn);
    let mut wait = idle;
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => return ended,
            () = tokio::time::sleep(wait), if !closing => {
                match activity.idle_for() {
                    Some(quiet) if quiet >= idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Some(quiet) => wait = idle - quiet,
                    None => wait = idle,
                }
            }
        }
    }
}

/// Binds `addr` and serves tiles there in the background.
pub async fn spawn(
    node: Arc<Node>,
    addr: SocketAddr,
    tls: Option<CurrentTls>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("tiles: listening on {addr}: {e}"))?;
    tracing::info!(
        %addr,
        anonymous = node.config.tiles.anonymous,
        max_connections = node.config.tiles.max_connections,
        "serving tlog-tiles"
    );
    tokio::spawn(serve(node, listener, tls));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_parse_in_the_specs_one_spelling_only() {
        let t = |level, index, width| TileId {
            level,
            index,
            width,
        };
        assert_eq!(TileId::parse("0/000"), Ok(t(0, 0, 256)));
        assert_eq!(TileId::parse("0/x001/x234/067"), Ok(t(0, 1_234_067, 256)));
        assert_eq!(TileId::parse("2/005.p/17"), Ok(t(2, 5, 17)));
        assert_eq!(TileId::parse("1/x001/000.p/255"), Ok(t(1, 1000, 255)));
        for bad in [
            "",
            "0",
            "0/",
            "00/000",
            "64/000",
            "0/5",
            "0/0005",
            "0/x000/005",
            "0/x001",
            "0/001.p",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/017",
            "0/001/002",
            "0/x01a/000",
            "0/001.p/5/6",
            "-1/000",
            "0/x999/x999/x999/x999/x999/x999/x999",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad:?} parsed");
        }
        let accept = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).expect("value"),
            );
            accepts_gzip(&headers)
        };
        assert!(accept("gzip") && accept("br, GZIP;q=0.5") && accept("identity, gzip"));
        assert!(!accept("gzip;q=0") && !accept("identity") && !accept("x-gzip2"));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert_eq!(TileId::parse_bundle("000"), Ok(t(0, 0, 256)));
        assert_eq!(TileId::parse_bundle("x001/002.p/9"), Ok(t(0, 1002, 9)));
        for bad in ["", "0", "0/000", "000/", "003.p/0", "x000/001", "000.p"] {
            assert!(TileId::parse_bundle(bad).is_err(), "bundle {bad:?} parsed");
        }
    }
}
