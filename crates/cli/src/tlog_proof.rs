//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): one entry's proof of
//! inclusion, checkable offline by any tlog-proof verifier that holds the
//! log's origin and keys (docs/FORMAT.md section 11).
//!
//! `veritrail proof inclusion --tlog-proof FILE` writes one;
//! `veritrail verify-proof FILE --keys ...` checks one without any network.
//! Veritrail puts the entry's canonical bytes in the proof's `extra` line,
//! so the file holds the entry too: its leaf hash is `SHA-256(0x00 || extra)`
//! and the proof is checked against it. `extra` is not trusted by itself;
//! the inclusion proof is what binds it to the signed root.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use serde_json::json;
use veritrail_core::merkle::{leaf_hash, verify_inclusion};
use veritrail_core::{Entry, Hash};

use crate::output::{self, CmdResult, Failure, Format};
use crate::{KeyArgs, trust};

/// The first line of every tlog-proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The entry's canonical bytes (the `extra` line).
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// From the leaf's sibling up to the root's child (RFC 6962 2.1.1).
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The text of the proof, as the specification lays it out.
    pub fn encode(&self) -> String {
        let mut text = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            text.push_str(&format!("{}\n", hash.to_base64()));
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a proof, refusing anything the specification does not allow.
    pub fn parse(text: &str) -> Result<TlogProof, String> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or("no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let mut line = lines.next().ok_or("no index line")?;
        let extra = match line.strip_prefix("extra ") {
            Some(b64) => {
                let bytes = STANDARD
                    .decode(b64)
                    .map_err(|e| format!("the extra line is not base64: {e}"))?;
                line = lines.next().ok_or("no index line")?;
                Some(bytes)
            }
            None => None,
        };
        let digits = line
            .strip_prefix("index ")
            .ok_or_else(|| format!("{line:?} is not an index line"))?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(format!(
                "index {digits:?} is not a decimal without leading zeros"
            ));
        }
        let index: u64 = digits
            .parse()
            .map_err(|_| format!("index {digits:?} is too large"))?;
        let proof = lines
            .map(|l| Hash::from_base64(l).map_err(|e| format!("proof line {l:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The `.tlog-proof` file.
    pub file: PathBuf,
    /// Node verifier keys (`name+hash+base64`), comma-separated, or `@FILE`
    /// with one per line: required, since the proof carries no keys.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The log's origin the proof must be for; the checkpoint's own by default.
    #[arg(long)]
    pub origin: Option<String>,
}

/// `veritrail verify-proof FILE`: offline, no network.
pub fn verify_proof(format: Format, args: &VerifyProofArgs) -> CmdResult {
    let fail = |seq: Option<u64>, reason: String| Failure::Verification {
        reason,
        first_bad_seq: seq,
        details: None,
    };
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.file.display()))?;
    let proof =
        TlogProof::parse(&text).map_err(|why| fail(None, format!("not a tlog-proof: {why}")))?;
    let origin = match &args.origin {
        Some(origin) => origin.clone(),
        None => proof
            .checkpoint
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let trust = trust::offline_verifier(&args.keys, &origin)?;
    let verified = trust
        .verify(&proof.checkpoint)
        .map_err(|e| fail(None, format!("the checkpoint does not verify: {e}")))?;
    let size = verified.checkpoint.size;
    let seq = proof.index;
    let canonical = proof.extra.as_deref().ok_or_else(|| {
        fail(
            Some(seq),
            "the proof carries no entry (no extra line): nothing to check it against".into(),
        )
    })?;
    let entry = Entry::decode(canonical).map_err(|e| {
        fail(
            Some(seq),
            format!("the extra line is not a Veritrail entry: {e}"),
        )
    })?;
    if entry.seq != seq {
        return Err(fail(
            Some(seq),
            format!("the entry carries seq {}, the proof index {seq}", entry.seq),
        ));
    }
    let leaf = leaf_hash(canonical);
    verify_inclusion(seq, size, &leaf, &proof.proof, &verified.checkpoint.root).map_err(|e| {
        fail(
            Some(seq),
            format!("entry {seq} is not in the signed tree of size {size}: {e}"),
        )
    })?;
    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "seq": seq,
            "tree_size": size,
            "leaf": leaf.to_hex(),
            "root": verified.checkpoint.root.to_hex(),
            "signers": verified.signers,
            "source": entry.event.source,
            "event_id": entry.event.event_id,
        })),
        Format::Text => println!(
            "entry {seq} ({}/{}) is in the tree of size {size}, root {} signed by {}",
            entry.event.source,
            entry.event.event_id,
            verified.checkpoint.root,
            verified.signers.join(", ")
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TlogProof {
        TlogProof {
            extra: Some(b"entry".to_vec()),
            index: 73894,
            proof: vec![Hash::default(), leaf_hash(b"x")],
            checkpoint: "example.com/log\n2\nAAAA\n\n\u{2014} example.com/log AAAA\n".into(),
        }
    }

    #[test]
    fn proofs_round_trip_in_the_specs_layout() {
        let proof = sample();
        let text = proof.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra ZW50cnk=\nindex 73894\n"));
        assert_eq!(TlogProof::parse(&text), Ok(proof.clone()));
        let bare = TlogProof {
            extra: None,
            proof: Vec::new(),
            ..proof
        };
        assert_eq!(TlogProof::parse(&bare.encode()), Ok(bare));
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let text = sample().encode();
        for (from, to) in [
            ("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
            ("index 73894", "index 073894"),
            ("index 73894", "index -1"),
            ("index 73894", "idx 73894"),
            ("extra ZW50cnk=", "extra !!"),
            ("\n\nexample.com", "\nexample.com"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert!(TlogProof::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }
}
