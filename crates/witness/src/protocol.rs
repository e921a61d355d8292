//! The `add-checkpoint` call of C2SP `tlog-witness`: reading a request, the
//! checks in the spec's order, and the answer each failure gets.
//!
//! Everything here is decided by [`Witness::add_checkpoint`] under one lock,
//! from the check of the old size to the synced state file, so two requests
//! can never both advance from the same size (the spec's rollback race).

use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use veritrail_core::Hash;
use veritrail_core::cosignature::Cosigner;
use veritrail_core::merkle::{empty_root, verify_consistency};
use veritrail_core::note::{NoteKey, SignedNote};

use crate::state::{Latest, StateFile};

/// Most consistency proof lines a request may carry (the spec's bound).
pub const PROOF_LINES_MAX: usize = 63;

/// A log this witness follows: its origin, the keys its checkpoints are
/// signed with, and how many of them must sign.
#[derive(Debug, Clone)]
pub struct TrustedLog {
    pub origin: String,
    pub keys: Vec<NoteKey>,
    pub quorum: usize,
}

/// What an `add-checkpoint` request gets: the HTTP status, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 400: the request does not follow the protocol.
    BadRequest(String),
    /// 403: no quorum of the log's keys signed the checkpoint.
    Forbidden(String),
    /// 404: this witness does not follow the checkpoint's origin.
    UnknownLog(String),
    /// 409 with `text/x.tlog.size`: the old size is not the latest cosigned
    /// size, which the body gives.
    OldSizeMismatch(u64),
    /// 409: the same size with another root: a fork.
    Fork(String),
    /// 422: the consistency proof does not verify.
    BadProof(String),
    /// 500: the state could not be saved; nothing was cosigned.
    Failed(String),
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Cosigned(_) => 200,
            Answer::BadRequest(_) => 400,
            Answer::Forbidden(_) => 403,
            Answer::UnknownLog(_) => 404,
            Answer::OldSizeMismatch(_) | Answer::Fork(_) => 409,
            Answer::BadProof(_) => 422,
            Answer::Failed(_) => 500,
        }
    }
}

/// A parsed request: the old size, the proof, the checkpoint note.
#[derive(Debug)]
struct Request {
    old: u64,
    proof: Vec<Hash>,
    note: SignedNote,
}

/// The first three lines of a checkpoint body (tlog-checkpoint): origin,
/// size, root. Extension lines may follow; they are cosigned, not read.
#[derive(Debug)]
struct Head<'a> {
    origin: &'a str,
    size: u64,
    root: Hash,
}

/// A canonical ASCII decimal: no sign, no leading zero unless it is `0`.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_request(body: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the request is not UTF-8".to_owned())?;
    let (first, mut rest) = text
        .split_once('\n')
        .ok_or("the request must start with an `old <size>` line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(decimal)
        .ok_or_else(|| {
            format!("first line {first:?}: expected `old <size>`, the size in canonical decimal")
        })?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or("no empty line between the proof and the checkpoint")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == PROOF_LINES_MAX {
            return Err(format!(
                "more than {PROOF_LINES_MAX} consistency proof lines"
            ));
        }
        let hash = BASE64
            .decode(line)
            .ok()
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
            .ok_or_else(|| format!("proof line {line:?} is not one base64 SHA-256 hash"))?;
        proof.push(Hash(hash));
    }
    let note = SignedNote::parse(rest).map_err(|e| format!("the checkpoint: {e}"))?;
    Ok(Request { old, proof, note })
}

fn parse_head(text: &str) -> Result<Head<'_>, String> {
    let mut lines = text.split('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err("a checkpoint has an origin, a size and a root line".into());
    };
    if origin.is_empty() {
        return Err("the checkpoint's origin line is empty".into());
    }
    let size = decimal(size)
        .ok_or_else(|| format!("the checkpoint's size {size:?} is not a canonical decimal"))?;
    let root = Hash::from_base64(root).map_err(|e| format!("the checkpoint's root: {e}"))?;
    Ok(Head { origin, size, root })
}

/// A witness: its key, the logs it follows and what it last cosigned.
pub struct Witness {
    cosigner: Cosigner,
    logs: Vec<TrustedLog>,
    state: Mutex<StateFile>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", self.cosigner.public())
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

impl Witness {
    pub fn new(cosigner: Cosigner, logs: Vec<TrustedLog>, state: StateFile) -> Self {
        Witness {
            cosigner,
            logs,
            state: Mutex::new(state),
        }
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The latest cosigned checkpoint of `origin`, if any.
    pub fn latest(&self, origin: &str) -> Option<Latest> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.latest(origin).cloned()
    }

    /// Answers one `add-checkpoint` request, cosigning at `now` (POSIX
    /// seconds). Blocking: it syncs the state file before it cosigns.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Answer {
        let request = match parse_request(body) {
            Ok(request) => request,
            Err(why) => return Answer::BadRequest(why),
        };
        let text = request.note.text();
        let head = match parse_head(text) {
            Ok(head) => head,
            Err(why) => return Answer::BadRequest(why),
        };
        let Some(log) = self.logs.iter().find(|l| l.origin == head.origin) else {
            return Answer::UnknownLog(format!(
                "this witness does not follow the log {:?}",
                head.origin
            ));
        };
        if let Err(e) = request.note.verify(&log.keys, log.quorum) {
            return Answer::Forbidden(format!(
                "the checkpoint is not signed by {} of the log's {} keys: {e}",
                log.quorum,
                log.keys.len()
            ));
        }
        if request.old > head.size {
            return Answer::BadRequest(format!(
                "old size {} is beyond the checkpoint's size {}",
                request.old, head.size
            ));
        }
        // From here to the synced state file, no other request runs.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let latest = state.latest(head.origin).cloned();
        let (latest_size, latest_root) = latest
            .as_ref()
            .map_or((0, empty_root()), |l| (l.size, l.root));
        if request.old != latest_size {
            return Answer::OldSizeMismatch(latest_size);
        }
        if request.old == head.size && head.root != latest_root {
            tracing::warn!(
                origin = head.origin,
                size = head.size,
                checkpoint = %request.note,
                "a fork: a checkpoint of the size last cosigned, with another root (kept here as evidence)"
            );
            return Answer::Fork(format!(
                "a fork: size {} was cosigned with root {}, and this checkpoint has another root, {}",
                head.size,
                latest_root.to_base64(),
                head.root.to_base64()
            ));
        }
        if let Err(e) = verify_consistency(
            request.old,
            head.size,
            &latest_root,
            &head.root,
            &request.proof,
        ) {
            tracing::warn!(
                origin = head.origin,
                old = request.old,
                size = head.size,
                error = %e,
                checkpoint = %request.note,
                "a consistency proof that does not verify (kept here as evidence)"
            );
            return Answer::BadProof(format!(
                "the consistency proof from size {} to {} does not verify: {}",
                request.old, head.size, e
            ));
        }
        let cosignature = match self.cosigner.cosign(text, now) {
            Ok(c) => c,
            Err(e) => return Answer::BadRequest(format!("the checkpoint cannot be cosigned: {e}")),
        };
        let advanced = Latest {
            size: head.size,
            root: head.root,
        };
        if let Err(e) = state.set(head.origin, advanced) {
            tracing::error!(error = %e, "saving the witness state failed; nothing was cosigned");
            return Answer::Failed(format!("the witness could not save its state: {e}"));
        }
        tracing::info!(origin = head.origin, size = head.size, "cosigned");
        Answer::Cosigned(format!("{cosignature}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_specs_layout_exactly() {
        let note = "log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} k AAAAAAA=\n";
        assert!(parse_request(format!("old 0\n\n{note}").as_bytes()).is_ok());
        for bad in [
            format!("old 00\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old 1\n{note}"),
            format!("new 0\n\n{note}"),
            format!("old 1\nnot-a-hash\n\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let lines = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64);
        let too_long = format!("old 1\n{lines}\n{note}");
        let refused = parse_request(too_long.as_bytes()).expect_err("64 lines");
        assert!(refused.contains("63"), "{refused}");
    }
}
