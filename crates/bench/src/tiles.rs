//! `veritrail-bench tiles`: what serving C2SP tlog-tiles costs a node.
//!
//! A three-node cluster (plaintext, each node serving tiles anonymously on a
//! port of its own) is filled, then five runs of the same length, one after
//! the other:
//!
//! 1. appends alone (16 SDK streams, as in `compare`);
//! 2. full hash tiles (`tile/0/<N>`, 8 KiB each) from one node, closed loop;
//! 3. full entry bundles (`tile/entries/<N>`, 256 entries each) from the same
//!    node;
//! 4. appends again, while an auditor reads every entry bundle of the log
//!    from the leader, in order, over and over: the append rate with a
//!    reader, and the reader's rate with appends;
//! 5. appends alone once more, so the auditor's cost is read against the
//!    two runs around it.
//!
//! Requests go over HTTP/1.1 with keep-alive (hyper's pooled client), one
//! connection per reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use veritrail_core::merkle::tile_index_path;

use crate::load::{Op, OpSource};

/// Reads tiles from one node: operation `n` of worker `w` fetches path
/// `(n * workers + w) mod paths`, so the workers sweep the paths together.
pub struct TilesOps {
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    base: String,
    paths: Arc<Vec<String>>,
    workers: usize,
    /// Body bytes received, and the requests they came in (warm-up
    /// included): their ratio is the mean tile size.
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl TilesOps {
    /// Full tiles of `level` (`None`: entry bundles) of a log of `size`
    /// entries, from the tiles port at `addr`.
    pub fn new(addr: &str, level: Option<u8>, size: u64, workers: usize) -> anyhow::Result<Self> {
        let full = size / 256;
        if full == 0 {
            bail!("a log of {size} entries has no full tile");
        }
        let level = level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
        let paths = (0..full)
            .map(|n| format!("tile/{level}/{}", tile_index_path(n)))
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(TilesOps {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            base: format!("http://{addr}"),
            paths: Arc::new(paths),
            workers: workers.max(1),
            bytes: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A handle on the mean bytes per tile read so far.
    pub fn sizes(&self) -> TileSizes {
        TileSizes {
            bytes: Arc::clone(&self.bytes),
            requests: Arc::clone(&self.requests),
        }
    }
}

/// The mean size of the tiles a [`TilesOps`] read.
pub struct TileSizes {
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl TileSizes {
    pub fn mean_bytes(&self) -> f64 {
        let requests = self.requests.load(Ordering::Relaxed);
        self.bytes.load(Ordering::Relaxed) as f64 / requests.max(1) as f64
    }
}

impl OpSource for TilesOps {
    fn op(&self, worker: usize, n: u64) -> Op {
        let i = (n as usize * self.workers + worker) % self.paths.len();
        let uri = format!("{}/{}", self.base, self.paths[i]);
        let http = self.http.clone();
        let bytes = Arc::clone(&self.bytes);
        let requests = Arc::clone(&self.requests);
        Box::pin(async move {
            let uri: hyper::Uri = uri.parse().context("a tile URI")?;
            let response = http
                .get(uri.clone())
                .await
                .with_context(|| format!("GET {uri}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .with_context(|| format!("reading {uri}"))?
                .to_bytes();
            if !status.is_success() {
                bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body));
            }
            bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            requests.fetch_add(1, Ordering::Relaxed);
            Ok(1)
        })
    }
}
