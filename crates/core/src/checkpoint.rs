//! Checkpoints: the C2SP `tlog-checkpoint` body with Veritrail's one extension
//! line, and their verification against a quorum of cluster keys.
//!
//! A checkpoint body is a pure function of a log's state at one size: the origin,
//! the size, the Merkle root, the chain head and the last entry's timestamp. Every
//! node can compute the body for any size it has applied, which is what lets each
//! voter co-sign only a body it computed itself.

use std::fmt;

use crate::merkle::empty_root;
use crate::note::{NoteKey, NoteSigner, SignedNote};
use crate::policy::WitnessRule;
use crate::{Error, Hash, genesis_hash};

/// The keyword that starts Veritrail's extension line.
pub const EXTENSION_KEYWORD: &str = "veritrail-head";
/// Longest origin we accept, in bytes.
pub const ORIGIN_MAX_BYTES: usize = 256;

/// A log's state at one tree size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, e.g. `audit.example.com/prod`.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: Hash,
    /// Hash of entry `size - 1`, or the genesis hash when `size` is 0: the
    /// `prev_hash` the next entry will carry.
    pub head: Hash,
    /// Timestamp of entry `size - 1` in unix nanoseconds, or 0 when `size` is 0.
    pub timestamp_ns: u64,
}

/// An origin is printable ASCII without spaces or `+`, so it can double as a key
/// name prefix and appear in a note without escaping.
pub fn validate_origin(origin: &str) -> Result<(), Error> {
    if origin.is_empty() || origin.len() > ORIGIN_MAX_BYTES {
        return Err(Error::MalformedCheckpoint(format!(
            "origin must be 1 to {ORIGIN_MAX_BYTES} bytes"
        )));
    }
    if let Some(c) = origin.chars().find(|c| !c.is_ascii_graphic() || *c == '+') {
        return Err(Error::MalformedCheckpoint(format!(
            "origin {origin:?} contains {c:?}; origins hold printable ASCII without spaces or '+'"
        )));
    }
    Ok(())
}

impl Checkpoint {
    /// The checkpoint of the empty log named `origin`.
    pub fn empty(origin: &str) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size: 0,
            root: empty_root(),
            head: genesis_hash(origin),
            timestamp_ns: 0,
        }
    }

    /// The note text: four lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{EXTENSION_KEYWORD} {} {}\n",
            self.origin,
            self.size,
            self.root.to_base64(),
            self.head.to_base64(),
            self.timestamp_ns
        )
    }

    /// Parses a body. Strict: exactly the four lines [`Checkpoint::body`] writes,
    /// decimal numbers without leading zeros and canonical base64, so that each
    /// checkpoint has exactly one body.
    pub fn parse(body: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::MalformedCheckpoint(why);
        let Some(lines) = body.strip_suffix('\n') else {
            return Err(bad("body must end in a newline".into()));
        };
        let lines: Vec<&str> = lines.split('\n').collect();
        let [origin, size, root, extension] = lines.as_slice() else {
            return Err(bad(format!(
                "expected 4 lines (origin, size, root, {EXTENSION_KEYWORD}), found {}",
                lines.len()
            )));
        };
        validate_origin(origin)?;
        let size = parse_decimal(size)
            .ok_or_else(|| bad(format!("tree size {size:?} is not a canonical decimal")))?;
        let root = Hash::from_base64(root).map_err(|e| bad(format!("root hash: {e}")))?;
        let mut words = extension.split(' ');
        let (Some(EXTENSION_KEYWORD), Some(head), Some(timestamp), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad(format!(
                "fourth line must be `{EXTENSION_KEYWORD} <base64 head> <timestamp ns>`"
            )));
        };
        let head = Hash::from_base64(head).map_err(|e| bad(format!("chain head: {e}")))?;
        let timestamp_ns = parse_decimal(timestamp).ok_or_else(|| {
            bad(format!(
                "timestamp {timestamp:?} is not a canonical decimal"
            ))
        })?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            head,
            timestamp_ns,
        })
    }

    /// An unsigned note over this checkpoint's body.
    pub fn to_note(&self) -> Result<SignedNote, Error> {
        validate_origin(&self.origin)?;
        SignedNote::new(&self.body())
    }

    /// A note over this checkpoint signed by `signer`.
    pub fn sign(&self, signer: &NoteSigner) -> Result<SignedNote, Error> {
        let mut note = self.to_note()?;
        note.sign(signer)?;
        Ok(note)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} @ {} root {}", self.origin, self.size, self.root)
    }
}

/// ASCII decimal without sign or leading zeros, within `u64`.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// What an auditor trusts: which log, which node keys, and how many of them must
/// co-sign a checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    origin: String,
    keys: Vec<NoteKey>,
    quorum: usize,
    /// The witnesses a checkpoint needs cosignatures from, if any (a trust
    /// policy's: `policy.rs`).
    witnesses: Option<WitnessRule>,
}

/// A checkpoint whose signatures verified, with who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: SignedNote,
    /// Names of the keys whose signatures verified.
    pub signers: Vec<String>,
    /// Policy names of the witnesses whose cosignatures verified (empty
    /// without a witness rule).
    pub witnesses: Vec<String>,
}

impl CheckpointVerifier {
    /// Trust checkpoints of `origin` signed by at least `quorum` of `keys`.
    pub fn new(origin: &str, keys: Vec<NoteKey>, quorum: usize) -> Result<Self, Error> {
        validate_origin(origin)?;
        if quorum == 0 || quorum > keys.len() {
            return Err(Error::InvalidQuorum {
                quorum,
                keys: keys.len(),
            });
        }
        Ok(CheckpointVerifier {
            origin: origin.to_owned(),
            keys,
            quorum,
            witnesses: None,
        })
    }

    /// The same verifier, also requiring the witness cosignatures `rule`
    /// asks for.
    pub fn with_witnesses(mut self, rule: WitnessRule) -> Self {
        self.witnesses = Some(rule);
        self
    }

    /// The witness rule, when this verifier has one.
    pub fn witness_rule(&self) -> Option<&WitnessRule> {
        self.witnesses.as_ref()
    }

    /// Trust checkpoints signed by a majority of `keys`: the quorum that makes two
    /// conflicting checkpoints need at least one key that signed both.
    pub fn majority(origin: &str, keys: Vec<NoteKey>) -> Result<Self, Error> {
        let quorum = keys.len() / 2 + 1;
        CheckpointVerifier::new(origin, keys, quorum)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn keys(&self) -> &[NoteKey] {
        &self.keys
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Parses and verifies a signed checkpoint.
    pub fn verify(&self, signed_note: &str) -> Result<VerifiedCheckpoint, Error> {
        let note = SignedNote::parse(signed_note)?;
        let signers = note.verify(&self.keys, self.quorum)?;
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin != self.origin {
            return Err(Error::WrongOrigin {
                expected: self.origin.clone(),
                found: checkpoint.origin,
            });
        }
        let witnesses = match &self.witnesses {
            Some(rule) => rule.check(&note)?,
            None => Vec::new(),
        };
        Ok(VerifiedCheckpoint {
            checkpoint,
            note,
            signers,
            witnesses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "audit.example.com/prod".into(),
            size: 8,
            root: Hash([1; 32]),
            head: Hash([2; 32]),
            timestamp_ns: 1_700_000_000_000_000_000,
        }
    }

    fn signers() -> Vec<NoteSigner> {
        (1u8..=3)
            .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("signer"))
            .collect()
    }

    #[test]
    fn body_round_trips() {
        let c = checkpoint();
        assert_eq!(Checkpoint::parse(&c.body()), Ok(c.clone()));
        assert!(c.body().starts_with("audit.example.com/prod\n8\nAQEB"));
        let empty = Checkpoint::empty("log");
        assert_eq!(Checkpoint::parse(&empty.body()), Ok(empty));
    }

    #[test]
    fn rejects_non_canonical_bodies() {
        let body = checkpoint().body();
        let bad = [
            body.trim_end().to_owned(),
            body.replacen("\n8\n", "\n08\n", 1),
            body.replacen("\n8\n", "\n+8\n", 1),
            body.replacen("veritrail-head", "veritrail-tail", 1),
            format!("{body}extra\n"),
            body.replacen("audit.example.com/prod", "audit example", 1),
            body.replacen(" 1700000000000000000", " 1700000000000000000 x", 1),
            body.replacen("AQEB", "AQE=", 1),
        ];
        for b in bad {
            assert!(Checkpoint::parse(&b).is_err(), "accepted {b:?}");
        }
    }

    #[test]
    fn quorum_verification() {
        let signers = signers();
        let keys: Vec<NoteKey> = signers.iter().map(|s| s.public().clone()).collect();
        let verifier = CheckpointVerifier::majority("audit.example.com/prod", keys).expect("v");
        assert_eq!(verifier.quorum(), 2);
        let mut note = checkpoint().sign(&signers[0]).expect("sign");
        assert_eq!(
            verifier.verify(&note.to_string()).map(|v| v.signers),
            Err(Error::QuorumNotMet {
                valid: 1,
                quorum: 2
            })
        );
        note.sign(&signers[2]).expect("sign");
        let verified = verifier.verify(&note.to_string()).expect("quorum met");
        assert_eq!(verified.checkpoint, checkpoint());
        assert_eq!(
            verified.signers,
            vec!["node-1".to_owned(), "node-3".to_owned()]
        );

        let other = CheckpointVerifier::majority(
            "other.example.com/log",
            signers.iter().map(|s| s.public().clone()).collect(),
        )
        .expect("v");
        assert!(matches!(
            other.verify(&note.to_string()),
            Err(Error::WrongOrigin { .. })
        ));
    }

    #[test]
    fn any_single_bit_flip_fails_verification() {
        let signers = signers();
        let keys: Vec<NoteKey> = signers.iter().map(|s| s.public().clone()).collect();
        let verifier = CheckpointVerifier::new("audit.example.com/prod", keys, 3).expect("v");
        let mut note = checkpoint().to_note().expect("note");
        for s in &signers {
            note.sign(s).expect("sign");
        }
        let text = note.to_string();
        verifier.verify(&text).expect("valid");
        let bytes = text.as_bytes();
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.to_vec();
            flipped[i / 8] ^= 1 << (i % 8);
            if let Ok(s) = std::str::from_utf8(&flipped) {
                assert!(
                    verifier.verify(s).is_err(),
                    "bit {i} flipped and still verified"
                );
            }
        }
    }
}
