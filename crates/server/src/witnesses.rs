//! Submitting checkpoints to external witnesses (C2SP `tlog-witness`), and
//! keeping the cosignatures they return for the checkpoints this node serves.
//!
//! Every node submits the latest co-signed checkpoint it holds to each
//! witness in its `[[witness]]` list, every `checkpoint.interval_ms` while
//! the witness has not cosigned it: `old` is the size this node last saw the
//! witness cosign (0 at first), with the consistency proof from there. A
//! `409` with `text/x.tlog.size` says where the witness is; the node retries
//! from that size at once. Every node does this on its own, so a follower
//! serves cosigned checkpoints too, and a witness sees each checkpoint once
//! per node (cosigning a checkpoint again is allowed and cheap).
//!
//! A witness that refuses a checkpoint (a fork, a proof it cannot verify) is
//! logged at `ERROR` once and not asked about that checkpoint again; the next
//! checkpoint is submitted as usual.
//!
//! A cosignature is kept only after it verifies against the configured key
//! over the exact body submitted; only the latest per witness is kept, in
//! memory (a restarted node submits again). Served notes carry the lines of
//! the witnesses that cosigned that very size (`Node::with_cosignatures`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use veritrail_core::cosignature::CosignerKey;
use veritrail_core::note::{NoteSignature, SignedNote};

use crate::config::WitnessConfig;
use crate::node::Node;

/// Deadline of one submission, connection included.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a witness.
const ANSWER_MAX_BYTES: usize = 64 * 1024;

/// A witness this node submits to.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// `host:port` of its submission prefix (plain HTTP).
    pub addr: String,
    /// The path prefix before `/add-checkpoint`, without a trailing `/`.
    pub prefix: String,
    pub key: CosignerKey,
}

impl WitnessTarget {
    pub fn from_config(config: &WitnessConfig) -> Result<WitnessTarget, String> {
        let key = CosignerKey::parse(&config.key).map_err(|e| format!("witness key: {e}"))?;
        let rest = config.url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "witness url {:?}: only http:// is spoken; put the witness behind a local TLS \
                 proxy to reach it over TLS",
                config.url
            )
        })?;
        let (addr, prefix) = match rest.split_once('/') {
            Some((addr, path)) => (addr, format!("/{}", path.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        if addr.is_empty() {
            return Err(format!("witness url {:?} names no host", config.url));
        }
        Ok(WitnessTarget {
            addr: addr.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            key,
        })
    }

    fn name(&self) -> &str {
        self.key.name()
    }
}

/// The latest cosignature of each witness, by witness name: the tree size
/// it covers, and the line.
#[derive(Debug, Default)]
pub struct Cosignatures(RwLock<HashMap<String, (u64, NoteSignature)>>);

impl Cosignatures {
    /// The lines of every witness that cosigned the checkpoint of `size`.
    pub fn for_size(&self, size: u64) -> Vec<NoteSignature> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<_> = map
            .values()
            .filter(|(s, _)| *s == size)
            .map(|(_, line)| line.clone())
            .collect();
        lines.sort_by(|a, b| a.name.cmp(&b.name));
        lines
    }

    fn set(&self, witness: &str, size: u64, line: NoteSignature) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(witness.to_owned(), (size, line));
    }

    fn size(&self, witness: &str) -> Option<u64> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(witness).map(|(size, _)| *size)
    }
}

impl Node {
    /// `note` (a co-signed checkpoint of `size`) with the cosignatures this
    /// node holds for that size appended. A note that does not parse, or
    /// would exceed the signed-note limits, is served as it is.
    pub fn with_cosignatures(&self, size: u64, note: String) -> String {
        let lines = self.cosignatures.for_size(size);
        if lines.is_empty() {
            return note;
        }
        let Ok(mut signed) = SignedNote::parse(&note) else {
            return note;
        };
        for line in lines {
            if signed.add_signature(line).is_err() {
                return note;
            }
        }
        signed.to_string()
    }
}

/// Submits the latest checkpoint to each witness, for as long as the node
/// runs.
pub async fn run_witnesses(node: Arc<Node>, witnesses: Vec<WitnessTarget>) {
    if witnesses.is_empty() {
        return;
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    // The size each witness last refused: not submitted again (a refusal is
    // logged once, not every round) until a newer checkpoint comes.
    let mut refused: HashMap<String, u64> = HashMap::new();
    let mut ticker =
        tokio::time::interval(Duration::from_millis(node.config.checkpoint.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let latest = match node.reader.latest_signed_checkpoint().await {
            Ok(Some(latest)) => latest,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the latest checkpoint for the witnesses");
                continue;
            }
        };
        for witness in &witnesses {
            let name = witness.name().to_owned();
            let cosigned = node.cosignatures.size(&name);
            let lag = latest.0.saturating_sub(cosigned.unwrap_or(0));
            node.metrics
                .witness_lag_entries
                .get_or_create(&vec![("witness".to_owned(), name.clone())])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
            if cosigned == Some(latest.0) || refused.get(&name) == Some(&latest.0) {
                continue;
            }
            let old = seen.get(&name).copied().unwrap_or(0);
            let outcome = match submit(&node, witness, old, &latest).await {
                Submitted::Cosigned => "cosigned",
                Submitted::Behind(size) => {
                    // The witness is elsewhere: try again from there, once.
                    seen.insert(name.clone(), size);
                    match submit(&node, witness, size, &latest).await {
                        Submitted::Cosigned => "cosigned",
                        other => other.record(&name),
                    }
                }
                other => other.record(&name),
            };
            if outcome == "refused" {
                refused.insert(name.clone(), latest.0);
            }
            if outcome == "cosigned" {
                seen.insert(name.clone(), latest.0);
                node.metrics
                    .witness_lag_entries
                    .get_or_create(&vec![("witness".to_owned(), name.clone())])
                    .set(0);
            }
            node.metrics
                .witness_submissions
                .get_or_create(&vec![
                    ("witness".to_owned(), name.clone()),
                    ("outcome".to_owned(), outcome.to_owned()),
                ])
                .inc();
        }
    }
}

/// What one submission came to.
#[derive(Debug)]
enum Submitted {
    Cosigned,
    /// 409 with the witness's size.
    Behind(u64),
    /// The witness could not be reached, or its answer was unusable.
    Unreachable(String),
    /// The witness refused: its status and what it said.
    Refused(u16, String),
    /// This node could not build the request.
    Local(String),
}

impl Submitted {
    /// Logs a failure; the `outcome` label it is counted under.
    fn record(self, witness: &str) -> &'static str {
        match self {
            Submitted::Cosigned => "cosigned",
            Submitted::Behind(size) => {
                tracing::warn!(
                    witness,
                    size,
                    "the witness is at another size after a retry"
                );
                "conflict"
            }
            Submitted::Unreachable(why) => {
                tracing::warn!(witness, error = %why, "submitting the checkpoint to the witness failed; retrying next round");
                "unreachable"
            }
            Submitted::Refused(status, why) => {
                tracing::error!(
                    witness,
                    status,
                    answer = %why.trim_end(),
                    "the witness refused the checkpoint (409 without a size means a fork: it cosigned another root at this size)"
                );
                "refused"
            }
            Submitted::Local(why) => {
                tracing::warn!(witness, error = %why, "could not build the witness request");
                "error"
            }
        }
    }
}

async fn submit(
    node: &Node,
    witness: &WitnessTarget,
    old: u64,
    (size, note): &(u64, String),
) -> Submitted {
    let old = if old > *size { 0 } else { old };
    let proof = if old == 0 || old == *size {
        Vec::new()
    } else {
        match node.reader.consistency_proof(old, *size).await {
            Ok(proof) => proof,
            Err(e) => return Submitted::Local(format!("consistency proof {old} -> {size}: {e}")),
        }
    };
    let mut body = format!("old {old}\n");
    for hash in &proof {
        body.push_str(&hash.to_base64());
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    let (status, content_type, answer) =
        match tokio::time::timeout(SUBMIT_TIMEOUT, post(witness, body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Submitted::Unreachable(e),
            Err(_) => {
                return Submitted::Unreachable(format!(
                    "no answer within {} s",
                    SUBMIT_TIMEOUT.as_secs()
                ));
            }
        };
    match status {
        200 => {
            let Ok(signed) = SignedNote::parse(note) else {
                return Submitted::Local("the checkpoint does not parse".into());
            };
            let text = signed.text();
            let line = SignedNote::parse(&format!("{text}\n{answer}"))
                .ok()
                .and_then(|n| {
                    n.signatures()
                        .iter()
                        .find(|l| witness.key.verify(text, l).is_ok())
                        .cloned()
                });
            match line {
                Some(line) => {
                    node.cosignatures.set(witness.name(), *size, line);
                    Submitted::Cosigned
                }
                None => Submitted::Unreachable(format!(
                    "the witness answered 200 without a cosignature that verifies with its key: {:?}",
                    answer.chars().take(200).collect::<String>()
                )),
            }
        }
        409 if content_type.as_deref() == Some("text/x.tlog.size") => {
            match answer.trim_end().parse() {
                Ok(size) => Submitted::Behind(size),
                Err(_) => Submitted::Refused(status, answer),
            }
        }
        status => Submitted::Refused(status, answer),
    }
}

/// POSTs `body` to the witness's `add-checkpoint` over HTTP/1.1: the status,
/// the content type and the body of the answer.
async fn post(
    witness: &WitnessTarget,
    body: String,
) -> Result<(u16, Option<String>, String), String> {
    let tcp = tokio::net::TcpStream::connect(&witness.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", witness.addr))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP with {}: {e}", witness.addr))?;
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("{}/add-checkpoint", witness.prefix))
        .header(hyper::header::HOST, &witness.addr)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending to {}: {e}", witness.addr))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limited = http_body_util::Limited::new(response.into_body(), ANSWER_MAX_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {}: {e}", witness.addr))?
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| format!("{} answered with bytes that are not UTF-8", witness.addr))?;
    Ok((status, content_type, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use veritrail_core::cosignature::Cosigner;

    fn config(url: &str) -> WitnessConfig {
        let key = Cosigner::from_seed("w.example/1", &[1; 32]).expect("cosigner");
        WitnessConfig {
            url: url.into(),
            key: key.public().to_string(),
        }
    }

    #[test]
    fn witness_urls_are_plain_http_with_an_optional_prefix() {
        let t = WitnessTarget::from_config(&config("http://127.0.0.1:7390")).expect("url");
        assert_eq!((t.addr.as_str(), t.prefix.as_str()), ("127.0.0.1:7390", ""));
        let t = WitnessTarget::from_config(&config("http://w.example:80/witness/")).expect("url");
        assert_eq!(
            (t.addr.as_str(), t.prefix.as_str()),
            ("w.example:80", "/witness")
        );
        for bad in ["https://w.example", "w.example:80", "http:///x"] {
            assert!(WitnessTarget::from_config(&config(bad)).is_err(), "{bad}");
        }
    }
}
