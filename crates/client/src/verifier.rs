//! [`Verifier`]: what an auditor or a cautious service trusts, and how it moves
//! forward without trusting any node.
//!
//! The verifier holds the keys of the cluster's nodes, the quorum of them that
//! must sign, and the newest checkpoint it accepted. It accepts a newer
//! checkpoint only when a quorum of the keys signed it and a consistency proof
//! shows that it extends the trusted one: history can grow, never change. Two
//! quorum-signed checkpoints that cannot both be true are a fork, reported with
//! both signed notes as evidence.
//!
//! The state can live in a file (JSON, replaced atomically), so that repeated
//! audits are incremental and a rollback of the cluster is caught across runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veritrail_core::Hash;
use veritrail_core::checkpoint::{CheckpointVerifier, VerifiedCheckpoint};
use veritrail_core::merkle::verify_consistency;
use veritrail_core::note::NoteKey;

use crate::client::Client;
use crate::error::{Error, ForkEvidence, Result};
use crate::receipt::Receipt;

/// How far the chain of entries has been checked, one by one, by whoever owns
/// the trusted state (the CLI's `verify`). Lets the next audit start there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainState {
    /// Entries `[0, size)` were checked.
    pub size: u64,
    /// Hash of entry `size - 1`.
    pub head: Hash,
    pub last_timestamp_ns: u64,
    /// Merkle frontier of the first `size` entries.
    pub frontier: Vec<Hash>,
}

/// The file form of a verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedState {
    /// Always `veritrail-trusted-state/1`.
    pub format: String,
    pub origin: String,
    /// Verifier keys (`name+hash+base64`).
    pub keys: Vec<String>,
    pub quorum: usize,
    /// The newest accepted checkpoint, as signed-note text.
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainState>,
}

/// The `format` of trusted-state files this build writes and reads.
pub const TRUSTED_STATE_FORMAT: &str = "veritrail-trusted-state/1";

/// What [`Verifier::accept`] did with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Advance {
    /// The first checkpoint: trusted on its signatures alone.
    First { size: u64 },
    /// Proven to extend the trusted one, and now trusted.
    Advanced { from_size: u64, to_size: u64 },
    /// The same checkpoint as the trusted one.
    Unchanged { size: u64 },
    /// An older checkpoint, proven consistent; the trusted one stays.
    Older { size: u64 },
}

/// Holds a trusted checkpoint and moves it forward only along proven history.
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: CheckpointVerifier,
    trusted: Option<VerifiedCheckpoint>,
    chain: Option<ChainState>,
    path: Option<PathBuf>,
}

impl Verifier {
    /// Trusts nothing yet: the first checkpoint offered is accepted on its
    /// signatures.
    pub fn new(trust: CheckpointVerifier) -> Verifier {
        Verifier {
            trust,
            trusted: None,
            chain: None,
            path: None,
        }
    }

    /// Trusts checkpoints of `origin` signed by a majority of `keys`.
    pub fn majority(origin: &str, keys: Vec<NoteKey>) -> Result<Verifier> {
        Ok(Verifier::new(CheckpointVerifier::majority(origin, keys)?))
    }

    /// Loads the state saved at `path`; later accepted checkpoints are saved
    /// there too.
    pub fn load(path: &Path) -> Result<Verifier> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.display().to_string(),
            source,
        })?;
        let state: TrustedState = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidRequest(format!("{}: not a trusted-state file: {e}", path.display()))
        })?;
        let mut verifier = Verifier::from_state(state)?;
        verifier.path = Some(path.to_owned());
        Ok(verifier)
    }

    /// A verifier from its saved form. The checkpoint in it is verified again.
    pub fn from_state(state: TrustedState) -> Result<Verifier> {
        if state.format != TRUSTED_STATE_FORMAT {
            return Err(Error::InvalidRequest(format!(
                "trusted state format {:?} is not {TRUSTED_STATE_FORMAT:?}",
                state.format
            )));
        }
        let keys = state
            .keys
            .iter()
            .map(|k| NoteKey::parse(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let trust = CheckpointVerifier::new(&state.origin, keys, state.quorum)?;
        let trusted = state
            .checkpoint
            .as_deref()
            .map(|note| trust.verify(note))
            .transpose()?;
        if let (Some(chain), Some(t)) = (&state.chain, &trusted)
            && chain.size > t.checkpoint.size
        {
            return Err(Error::InvalidRequest(format!(
                "trusted state checked entries up to {}, past its checkpoint of size {}",
                chain.size, t.checkpoint.size
            )));
        }
        Ok(Verifier {
            trust,
            trusted,
            chain: state.chain,
            path: None,
        })
    }

    /// The saved form.
    pub fn state(&self) -> TrustedState {
        TrustedState {
            format: TRUSTED_STATE_FORMAT.to_owned(),
            origin: self.trust.origin().to_owned(),
            keys: self.trust.keys().iter().map(|k| k.to_string()).collect(),
            quorum: self.trust.quorum(),
            checkpoint: self.trusted.as_ref().map(|t| t.note.to_string()),
            chain: self.chain.clone(),
        }
    }

    /// Saves the state at `path` from now on (and now).
    pub fn persist_to(&mut self, path: &Path) -> Result<()> {
        self.path = Some(path.to_owned());
        self.save()
    }

    /// Writes the state to its file, atomically and durably: a crash leaves the
    /// old state or the new one, never a torn file.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| Error::File {
            path: path.display().to_string(),
            source,
        };
        let mut text = serde_json::to_string_pretty(&self.state())
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        text.push('\n');
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    pub fn trust(&self) -> &CheckpointVerifier {
        &self.trust
    }

    /// The newest accepted checkpoint.
    pub fn trusted(&self) -> Option<&VerifiedCheckpoint> {
        self.trusted.as_ref()
    }

    /// How far the chain was checked entry by entry.
    pub fn chain(&self) -> Option<&ChainState> {
        self.chain.as_ref()
    }

    /// Records that entries up to `chain.size` were checked against the trusted
    /// checkpoint (the caller did the checking).
    pub fn set_chain(&mut self, chain: ChainState) -> Result<()> {
        let size = self.trusted.as_ref().map_or(0, |t| t.checkpoint.size);
        if chain.size > size {
            return Err(Error::InvalidRequest(format!(
                "entries up to {} cannot be checked against a checkpoint of size {size}",
                chain.size
            )));
        }
        self.chain = Some(chain);
        Ok(())
    }

    /// Offers a signed checkpoint. `proof` is the consistency proof from the
    /// smaller of the two trees to the larger (empty when there is no trusted
    /// checkpoint yet, or the sizes are equal).
    pub fn accept(&mut self, signed_note: &str, proof: &[Hash]) -> Result<Advance> {
        let offered = self.trust.verify(signed_note)?;
        let Some(trusted) = &self.trusted else {
            let size = offered.checkpoint.size;
            self.trusted = Some(offered);
            return Ok(Advance::First { size });
        };
        let (old, new) = (&trusted.checkpoint, &offered.checkpoint);
        let fork = |reason: String| {
            Error::Fork(Box::new(ForkEvidence {
                trusted: trusted.note.to_string(),
                offered: offered.note.to_string(),
                reason,
            }))
        };
        if new.size == old.size {
            if new.root != old.root {
                return Err(fork(format!(
                    "two checkpoints of size {} with different roots",
                    new.size
                )));
            }
            return Ok(Advance::Unchanged { size: new.size });
        }
        let (small, large) = if new.size > old.size {
            (old, new)
        } else {
            (new, old)
        };
        verify_consistency(small.size, large.size, &small.root, &large.root, proof).map_err(
            |e| {
                fork(format!(
                    "the checkpoint of size {} does not extend the one of size {}: {e}",
                    large.size, small.size
                ))
            },
        )?;
        if new.size < old.size {
            return Ok(Advance::Older { size: new.size });
        }
        let from_size = old.size;
        let to_size = new.size;
        self.trusted = Some(offered);
        Ok(Advance::Advanced { from_size, to_size })
    }

    /// Fetches the latest checkpoint and accepts it (see [`Verifier::accept`]),
    /// saving the state when it advanced.
    ///
    /// A consistency proof that fails is asked again of every other node before
    /// the two checkpoints are called a fork: one lying node cannot make an
    /// honest cluster look forked.
    pub async fn update(&mut self, client: &Client) -> Result<Advance> {
        let mut latest = client.checkpoint(None).await?;
        let trusted_size = self.trusted.as_ref().map(|t| t.checkpoint.size);
        if trusted_size.is_some_and(|t| latest.tree_size < t) {
            // The answering node may lag: take the newest any node holds.
            for node in 0..client.endpoints().len() {
                if let Ok(other) = client.checkpoint_at(node).await
                    && other.tree_size > latest.tree_size
                {
                    latest = other;
                }
            }
        }
        self.offer_from(client, &latest.note).await
    }

    /// Accepts `signed_note`, fetching the proof it needs from the cluster.
    pub async fn offer_from(&mut self, client: &Client, signed_note: &str) -> Result<Advance> {
        let offered = self.trust.verify(signed_note)?;
        let old = self.trusted.as_ref().map(|t| t.checkpoint.size);
        let new = offered.checkpoint.size;
        let advance = match old {
            Some(old) if old != new => {
                let (small, large) = (old.min(new), old.max(new));
                let proof = match client.consistency_proof(small, large).await {
                    Ok(proof) => proof.proof,
                    // The cluster no longer holds the trusted tree: it lost or
                    // rolled back history that a quorum had signed. Only the
                    // answers that say so count; a timeout or an election is
                    // passed through as it is, not called tampering.
                    Err(e)
                        if new < old
                            && matches!(
                                e.code(),
                                Some(tonic::Code::OutOfRange | tonic::Code::NotFound)
                            ) =>
                    {
                        return Err(Error::Verification(format!(
                            "the cluster's newest checkpoint has {new} entries, fewer than the \
                             {old} of the trusted one, and no node can prove that the trusted \
                             one extends it ({e}): history signed by a quorum was rolled back"
                        )));
                    }
                    Err(e) => return Err(e),
                };
                match self.accept(signed_note, &proof) {
                    Err(Error::Fork(evidence)) => {
                        self.second_opinions(client, signed_note, small, large, *evidence)
                            .await?
                    }
                    other => other?,
                }
            }
            _ => self.accept(signed_note, &[])?,
        };
        if matches!(advance, Advance::First { .. } | Advance::Advanced { .. }) {
            self.save()?;
        }
        Ok(advance)
    }

    async fn second_opinions(
        &mut self,
        client: &Client,
        signed_note: &str,
        small: u64,
        large: u64,
        evidence: ForkEvidence,
    ) -> Result<Advance> {
        for node in 0..client.endpoints().len() {
            let Ok(proof) = client.consistency_proof_at(node, small, large).await else {
                continue;
            };
            if let Ok(advance) = self.accept(signed_note, &proof.proof) {
                return Ok(advance);
            }
        }
        Err(Error::Fork(Box::new(evidence)))
    }

    /// Checks that the entry of `receipt` is in the log the trusted checkpoint
    /// commits to, first moving the checkpoint forward when the receipt is newer.
    pub async fn verify_receipt(&mut self, client: &Client, receipt: &Receipt) -> Result<()> {
        let size = self.trusted.as_ref().map_or(0, |t| t.checkpoint.size);
        if receipt.seq >= size {
            self.update(client).await?;
        }
        let trusted = self
            .trusted
            .as_ref()
            .ok_or_else(|| Error::Verification("no checkpoint is trusted yet".into()))?;
        let size = trusted.checkpoint.size;
        if receipt.seq >= size {
            return Err(Error::Verification(format!(
                "seq {} is not yet covered by a co-signed checkpoint (latest size {size}); \
                 checkpoints are cut periodically, try again shortly",
                receipt.seq
            )));
        }
        let root = trusted.checkpoint.root;
        let proof = client.inclusion_proof(receipt.seq, size).await?;
        if proof.leaf != receipt.entry_hash {
            return Err(Error::Verification(format!(
                "seq {}: the log holds entry {}, the receipt names {}",
                receipt.seq, proof.leaf, receipt.entry_hash
            )));
        }
        veritrail_core::merkle::verify_inclusion(
            receipt.seq,
            size,
            &receipt.entry_hash,
            &proof.proof,
            &root,
        )
        .map_err(|e| {
            Error::Verification(format!(
                "seq {} is not in the checkpointed tree of size {size}: {e}",
                receipt.seq
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veritrail_core::Checkpoint;
    use veritrail_core::merkle::{MemoryTree, consistency_proof, root_at};
    use veritrail_core::note::NoteSigner;

    const ORIGIN: &str = "test.example/log";

    fn signers() -> Vec<NoteSigner> {
        (1u8..=3)
            .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("signer"))
            .collect()
    }

    fn verifier() -> Verifier {
        let keys = signers().iter().map(|s| s.public().clone()).collect();
        Verifier::majority(ORIGIN, keys).expect("verifier")
    }

    /// A checkpoint of the first `size` leaves of `tree`, signed by two nodes.
    fn signed(tree: &MemoryTree, size: u64) -> String {
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: root_at(tree, size).expect("root"),
            head: Hash([size as u8; 32]),
            timestamp_ns: size,
        };
        let signers = signers();
        let mut note = checkpoint.sign(&signers[0]).expect("sign");
        note.sign(&signers[2]).expect("sign");
        note.to_string()
    }

    fn tree(leaves: u8, salt: u8) -> MemoryTree {
        MemoryTree::from_leaves((0..leaves).map(|i| Hash([i ^ salt; 32])))
    }

    #[test]
    fn advances_only_along_proven_history() {
        let log = tree(20, 0);
        let mut v = verifier();
        assert_eq!(
            v.accept(&signed(&log, 5), &[]).expect("first"),
            Advance::First { size: 5 }
        );
        let proof = consistency_proof(&log, 5, 13).expect("proof");
        assert_eq!(
            v.accept(&signed(&log, 13), &proof).expect("advance"),
            Advance::Advanced {
                from_size: 5,
                to_size: 13
            }
        );
        assert_eq!(
            v.accept(&signed(&log, 13), &[]).expect("same"),
            Advance::Unchanged { size: 13 }
        );
        let back = consistency_proof(&log, 7, 13).expect("proof");
        assert_eq!(
            v.accept(&signed(&log, 7), &back).expect("older"),
            Advance::Older { size: 7 }
        );
        assert_eq!(v.trusted().map(|t| t.checkpoint.size), Some(13));
        // A proof for other sizes does not do.
        assert!(v.accept(&signed(&log, 20), &proof).is_err());
        assert_eq!(v.trusted().map(|t| t.checkpoint.size), Some(13));
    }

    #[test]
    fn reports_a_fork_with_both_notes() {
        let log = tree(20, 0);
        let forked = tree(20, 0x55);
        let mut v = verifier();
        v.accept(&signed(&log, 8), &[]).expect("first");
        match v.accept(&signed(&forked, 8), &[]) {
            Err(Error::Fork(evidence)) => {
                assert_eq!(evidence.trusted, signed(&log, 8));
                assert_eq!(evidence.offered, signed(&forked, 8));
            }
            other => panic!("expected a fork, got {other:?}"),
        }
        let proof = consistency_proof(&forked, 8, 12).expect("proof");
        assert!(matches!(
            v.accept(&signed(&forked, 12), &proof),
            Err(Error::Fork(_))
        ));
        assert_eq!(v.trusted().map(|t| t.checkpoint.size), Some(8));
    }

    #[test]
    fn refuses_checkpoints_without_a_quorum() {
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: 4,
            root: Hash([0; 32]),
            head: Hash([0; 32]),
            timestamp_ns: 4,
        };
        let note = checkpoint.sign(&signers()[1]).expect("sign").to_string();
        let mut v = verifier();
        assert!(matches!(v.accept(&note, &[]), Err(Error::Verification(_))));
        assert!(v.trusted().is_none());
    }

    #[test]
    fn state_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("trusted.json");
        let log = tree(10, 0);
        let mut v = verifier();
        v.accept(&signed(&log, 6), &[]).expect("first");
        v.set_chain(ChainState {
            size: 6,
            head: Hash([6; 32]),
            last_timestamp_ns: 6,
            frontier: vec![Hash([1; 32]), Hash([2; 32])],
        })
        .expect("chain");
        v.persist_to(&path).expect("save");
        let loaded = Verifier::load(&path).expect("load");
        assert_eq!(loaded.state(), v.state());
        // A tampered file fails to load rather than lowering the bar.
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"quorum\": 2", "\"quorum\": 0")).expect("write");
        assert!(Verifier::load(&path).is_err());
    }
}
