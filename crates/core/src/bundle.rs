//! Evidence bundles: a self-contained file an auditor verifies offline.
//!
//! A bundle is a text file of `1 + count` lines. The first is a JSON header
//! ([`BundleHeader`]): the origin, the range, a quorum-signed checkpoint, the node
//! keys, the Merkle frontier left of the range and a consistency proof from the end
//! of the range to the checkpoint. Each following line is the standard base64 of
//! one entry's canonical bytes, in sequence order. The layout lets a verifier
//! stream a bundle of any size in memory bounded by the tree's height, and lets
//! anyone reimplement the check from docs/FORMAT.md alone.
//!
//! What verification proves: every entry in the range is, byte for byte, the entry
//! at that position of the log whose checkpoint a quorum of the given keys signed.
//! The frontier and the entries give the root at the end of the range; the
//! consistency proof ties that root to the signed one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointVerifier, VerifiedCheckpoint};
use crate::merkle::{Frontier, verify_consistency};
use crate::note::NoteKey;
use crate::{ChainVerifier, Error, Hash, SignerList};

/// The `format` value of the bundles this build writes and reads.
pub const BUNDLE_FORMAT: &str = "veritrail-evidence-bundle/1";
/// Longest header line we parse, in bytes. A header holds a checkpoint (under
/// 64 KiB), keys and two lists of at most 64 hashes each.
pub const BUNDLE_HEADER_MAX_BYTES: usize = 256 * 1024;

/// The first line of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The log's origin; the checkpoint must name the same one.
    pub origin: String,
    /// Sequence number of the first entry in the bundle.
    pub start: u64,
    /// Number of entries in the bundle.
    pub count: u64,
    /// The signed checkpoint, as signed-note text.
    pub checkpoint: String,
    /// The node keys that signed checkpoints when the bundle was made, as
    /// verifier-key strings. Informational: an auditor should verify against keys
    /// obtained independently.
    pub keys: Vec<String>,
    /// How many of `keys` must have signed.
    pub quorum: usize,
    /// Merkle frontier of the first `start` entries: the perfect subtree roots that
    /// tile `[0, start)`, left to right.
    pub left_frontier: Vec<Hash>,
    /// Consistency proof from size `start + count` to the checkpoint's size.
    pub consistency_proof: Vec<Hash>,
}

impl BundleHeader {
    /// The header as one line of JSON, ending in a newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Parses the header line (with or without its newline).
    pub fn parse(line: &str) -> Result<Self, Error> {
        if line.len() > BUNDLE_HEADER_MAX_BYTES {
            return Err(Error::MalformedBundle(format!(
                "header is {} bytes; the limit is {BUNDLE_HEADER_MAX_BYTES}",
                line.len()
            )));
        }
        let header: BundleHeader = serde_json::from_str(line.trim_end_matches('\n'))
            .map_err(|e| Error::MalformedBundle(format!("header is not valid: {e}")))?;
        if header.format != BUNDLE_FORMAT {
            return Err(Error::MalformedBundle(format!(
                "format {:?} is not {BUNDLE_FORMAT:?}",
                header.format
            )));
        }
        Ok(header)
    }

    /// The keys the header lists, parsed.
    pub fn parse_keys(&self) -> Result<Vec<NoteKey>, Error> {
        self.keys.iter().map(|k| NoteKey::parse(k)).collect()
    }
}

/// One entry line: standard base64 of the canonical bytes, and a newline.
pub fn entry_line(canonical: &[u8]) -> String {
    let mut line = BASE64.encode(canonical);
    line.push('\n');
    line
}

/// Why a bundle failed, and the first bad sequence number when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFailure {
    pub seq: Option<u64>,
    pub reason: String,
}

impl BundleFailure {
    fn at(seq: u64, reason: impl Into<String>) -> Self {
        BundleFailure {
            seq: Some(seq),
            reason: reason.into(),
        }
    }

    fn whole(reason: impl Into<String>) -> Self {
        BundleFailure {
            seq: None,
            reason: reason.into(),
        }
    }
}

impl From<Error> for BundleFailure {
    fn from(error: Error) -> Self {
        let seq = match &error {
            Error::ChainBroken { seq, .. } => Some(*seq),
            _ => None,
        };
        BundleFailure {
            seq,
            reason: error.to_string(),
        }
    }
}

/// What was checked, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub ok: bool,
    pub origin: Option<String>,
    pub start: Option<u64>,
    pub count: Option<u64>,
    pub tree_size: Option<u64>,
    pub root: Option<Hash>,
    /// Names of the keys whose signatures on the checkpoint verified.
    pub signers: Vec<String>,
    /// True when no trusted keys were given and the bundle's own keys were used:
    /// the bundle is then only shown to be internally consistent.
    pub keys_from_bundle: bool,
    /// The checks that passed, in the order they ran.
    pub checks: Vec<String>,
    pub failure: Option<BundleFailure>,
}

/// Verifies a bundle streamed line by line: [`BundleVerifier::start`] with the
/// header, [`BundleVerifier::push_line`] for each entry line, then
/// [`BundleVerifier::finish`].
#[derive(Debug)]
pub struct BundleVerifier {
    header: BundleHeader,
    verified: VerifiedCheckpoint,
    chain: ChainVerifier,
    checks: Vec<String>,
    /// The auditor's signer list, when it gave one.
    signers: Option<SignerList>,
    /// Entries that carry an event signature (each verified by the chain).
    signed: u64,
}

impl BundleVerifier {
    /// Checks the header: the checkpoint's signatures against `trust`, its origin,
    /// the range against the checkpoint's size, and the frontier's shape.
    pub fn start(header: BundleHeader, trust: &CheckpointVerifier) -> Result<Self, BundleFailure> {
        let mut checks = Vec::new();
        if header.origin != trust.origin() {
            return Err(BundleFailure::whole(format!(
                "bundle is for origin {:?}, the trusted log is {:?}",
                header.origin,
                trust.origin()
            )));
        }
        let verified = trust.verify(&header.checkpoint)?;
        let checkpoint = &verified.checkpoint;
        checks.push(format!(
            "checkpoint at size {} signed by {} of {} keys (quorum {}): {}",
            checkpoint.size,
            verified.signers.len(),
            trust.keys().len(),
            trust.quorum(),
            verified.signers.join(", ")
        ));
        let end = header.start.checked_add(header.count).ok_or_else(|| {
            BundleFailure::whole("start + count overflows a 64-bit sequence number")
        })?;
        if end > checkpoint.size {
            return Err(BundleFailure::whole(format!(
                "range [{}, {end}) reaches past the checkpoint's tree size {}",
                header.start, checkpoint.size
            )));
        }
        checks.push(format!(
            "range [{}, {end}) lies within the checkpoint",
            header.start
        ));
        let chain = if header.start == 0 {
            if !header.left_frontier.is_empty() {
                return Err(BundleFailure::whole(
                    "a bundle starting at 0 has an empty frontier",
                ));
            }
            ChainVerifier::from_genesis(&header.origin)
        } else {
            let frontier = Frontier::from_parts(header.start, header.left_frontier.clone())?;
            ChainVerifier::resume(&header.origin, header.start, None, None, Some(frontier))?
        };
        Ok(BundleVerifier {
            header,
            verified,
            chain,
            checks,
            signers: None,
            signed: 0,
        })
    }

    /// Also checks every entry against the auditor's signer list: each entry
    /// of a registered principal is signed by one of its keys, and no other
    /// entry is signed ([`SignerList::check_entry`]).
    pub fn with_signers(mut self, signers: SignerList) -> Self {
        self.signers = Some(signers);
        self
    }

    /// Checks the next entry line (with or without its newline).
    pub fn push_line(&mut self, line: &str) -> Result<(), BundleFailure> {
        let seq = self.chain.next_seq();
        if seq - self.header.start >= self.header.count {
            return Err(BundleFailure::at(
                seq,
                "more entry lines than the header's count",
            ));
        }
        let bytes = BASE64
            .decode(line.trim_end_matches('\n'))
            .map_err(|e| BundleFailure::at(seq, format!("entry line is not base64: {e}")))?;
        let entry = self.chain.push(&bytes)?;
        if entry.signature.is_some() {
            self.signed += 1;
        }
        if let Some(signers) = &self.signers {
            signers
                .check(&entry.principal, entry.signature.as_ref())
                .map_err(|e| BundleFailure::at(seq, e))?;
        }
        Ok(())
    }

    /// Checks that every entry arrived and that they lead to the signed root.
    pub fn finish(mut self) -> Result<(Vec<String>, VerifiedCheckpoint), BundleFailure> {
        let end = self.chain.next_seq();
        let expected_end = self.header.start + self.header.count;
        if end != expected_end {
            return Err(BundleFailure::at(
                end,
                format!(
                    "bundle ends at seq {end}; the header promises entries up to {expected_end}"
                ),
            ));
        }
        if self.header.count > 0 {
            self.checks.push(format!(
                "{} entries decode, carry dense seqs, chain by prev_hash and never go back in time",
                self.header.count
            ));
        }
        if self.signed > 0 {
            self.checks.push(format!(
                "{} entries carry their service's signature, and every one verifies",
                self.signed
            ));
        }
        if let Some(signers) = &self.signers {
            self.checks.push(if signers.is_empty() {
                "the signer list is empty: no entry may be signed, and none is".to_owned()
            } else {
                "every entry of a principal in the signer list is signed by one of its keys"
                    .to_owned()
            });
        }
        let checkpoint = &self.verified.checkpoint;
        let root = self.chain.root().unwrap_or_else(crate::merkle::empty_root);
        verify_consistency(
            end,
            checkpoint.size,
            &root,
            &checkpoint.root,
            &self.header.consistency_proof,
        )
        .map_err(|e| {
            BundleFailure::whole(format!(
                "entries up to seq {end} do not lead to the checkpoint's root: {e}"
            ))
        })?;
        self.checks.push(format!(
            "Merkle root at size {end} is consistent with the checkpoint's root at size {}",
            checkpoint.size
        ));
        if end == checkpoint.size && self.header.count > 0 {
            if self.chain.head() != Some(checkpoint.head) {
                return Err(BundleFailure::at(
                    end - 1,
                    "last entry's hash is not the checkpoint's head",
                ));
            }
            if self.chain.last_timestamp_ns() != Some(checkpoint.timestamp_ns) {
                return Err(BundleFailure::at(
                    end - 1,
                    "last entry's timestamp is not the checkpoint's timestamp",
                ));
            }
            self.checks
                .push("last entry is the checkpoint's chain head".to_owned());
        }
        Ok((self.checks, self.verified))
    }
}

/// Verifies a whole bundle held in memory.
///
/// With `trust` the checkpoint must be signed by its quorum of keys; without it the
/// bundle's own keys and quorum are used and the report says so.
pub fn verify_bundle(text: &str, trust: Option<&CheckpointVerifier>) -> BundleReport {
    let mut report = BundleReport {
        ok: false,
        origin: None,
        start: None,
        count: None,
        tree_size: None,
        root: None,
        signers: Vec::new(),
        keys_from_bundle: trust.is_none(),
        checks: Vec::new(),
        failure: None,
    };
    match run(text, trust, &mut report) {
        Ok(()) => report.ok = true,
        Err(failure) => report.failure = Some(failure),
    }
    report
}

fn run(
    text: &str,
    trust: Option<&CheckpointVerifier>,
    report: &mut BundleReport,
) -> Result<(), BundleFailure> {
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| BundleFailure::whole("bundle must end in a newline"))?;
    let mut lines = body.split('\n');
    let header = BundleHeader::parse(lines.next().unwrap_or_default())?;
    report.origin = Some(header.origin.clone());
    report.start = Some(header.start);
    report.count = Some(header.count);
    let own;
    let trust = match trust {
        Some(trust) => trust,
        None => {
            own = CheckpointVerifier::new(&header.origin, header.parse_keys()?, header.quorum)?;
            &own
        }
    };
    let mut verifier = BundleVerifier::start(header, trust)?;
    for line in lines {
        verifier.push_line(line)?;
    }
    let (checks, verified) = verifier.finish()?;
    report.tree_size = Some(verified.checkpoint.size);
    report.root = Some(verified.checkpoint.root);
    report.signers = verified.signers;
    report.checks = checks;
    Ok(())
}
