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
//!
//! When the cluster's voters change, the verifier learns the new keys from a
//! key-set note (docs/FORMAT.md section 6.1) that a quorum of the keys it
//! already trusts signed, never from a node's word alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veritrail_core::checkpoint::{CheckpointVerifier, VerifiedCheckpoint};
use veritrail_core::merkle::verify_consistency;
use veritrail_core::note::NoteKey;
use veritrail_core::policy::WitnessRule;
use veritrail_core::{Hash, KeySet, LogEntry, SignerList};

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
    /// The epoch of the key set `keys` came from, once one was learnt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_set_epoch: Option<u64>,
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

/// What [`Verifier::learn_key_set`] did with a key-set note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum KeySetChange {
    /// The key set names exactly the trusted keys.
    Unchanged { epoch: u64 },
    /// The trusted keys and quorum are now the key set's.
    Adopted {
        epoch: u64,
        added: Vec<String>,
        removed: Vec<String>,
        /// The trusted keys that vouched for the new set.
        signers: Vec<String>,
        quorum: usize,
    },
    /// A quorum of the trusted keys signed the key set, but the trusted
    /// checkpoint is not signed by a quorum of the new keys: the set is
    /// adopted after a newer checkpoint is accepted.
    Deferred { epoch: u64 },
}

/// How long [`Verifier::update`] waits for the witnesses' cosignatures of the
/// latest checkpoint, when its trust asks for them.
const WITNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Holds a trusted checkpoint and moves it forward only along proven history.
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: CheckpointVerifier,
    trusted: Option<VerifiedCheckpoint>,
    chain: Option<ChainState>,
    path: Option<PathBuf>,
    key_set_epoch: Option<u64>,
    /// What the last [`Verifier::update`] learnt about the key set.
    key_set_news: Option<KeySetChange>,
    /// The auditor's signer list, when it holds one: which principals sign
    /// their events, with which keys (docs/FORMAT.md section 9). Not part of
    /// the trusted state: it is the auditor's, given at every run.
    signers: Option<SignerList>,
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
            key_set_epoch: None,
            key_set_news: None,
            signers: None,
        }
    }

    /// Also requires, of every checkpoint it accepts from now on, the witness
    /// cosignatures `rule` asks for (a trust policy's, which the trusted-state
    /// file does not hold: give it at every run).
    pub fn with_witness_rule(mut self, rule: WitnessRule) -> Verifier {
        self.trust = self.trust.with_witnesses(rule);
        self
    }

    /// Also holds every entry checked by [`Verifier::verify_entry`] to the
    /// auditor's signer list.
    pub fn with_signers(mut self, signers: SignerList) -> Verifier {
        self.signers = Some(signers);
        self
    }

    /// Checks an entry read from the cluster the way an auditor must before
    /// believing its principal: a signed entry's signature verifies for this
    /// log's origin, and, with a signer list, a listed principal's entry is
    /// signed by one of its keys and no other entry is signed. A node, even
    /// every node, that wrote an entry in a signing service's name without its
    /// key fails here. Where the entry sits in the log is the business of
    /// [`Verifier::verify_receipt`] and the chain.
    pub fn verify_entry(&self, entry: &LogEntry) -> Result<()> {
        let e = &entry.entry;
        e.verify_signature(self.trust.origin())
            .map_err(|err| Error::Verification(format!("seq {}: {err}", e.seq)))?;
        if let Some(signers) = &self.signers {
            signers.check_entry(e).map_err(Error::Verification)?;
        }
        Ok(())
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
            key_set_epoch: state.key_set_epoch,
            key_set_news: None,
            signers: None,
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
            key_set_epoch: self.key_set_epoch,
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

    /// The epoch of the key set the trusted keys came from, once one was
    /// learnt.
    pub fn key_set_epoch(&self) -> Option<u64> {
        self.key_set_epoch
    }

    /// What the last [`Verifier::update`] did about the cluster's key set:
    /// `None` when the cluster's voters hold the trusted keys, or when their
    /// key set could not be fetched.
    pub fn key_set_news(&self) -> Option<&KeySetChange> {
        self.key_set_news.as_ref()
    }

    /// Offers a key-set note (docs/FORMAT.md section 6.1). It is adopted,
    /// replacing the trusted keys, when a quorum of the trusted keys signed it
    /// and its epoch is not older than the last one adopted. The new quorum is
    /// a majority of the new keys, or the trusted quorum if that is higher and
    /// the new set has that many keys.
    ///
    /// The caller saves the state (`update` does).
    pub fn learn_key_set(&mut self, signed_note: &str) -> Result<KeySetChange> {
        let verified = KeySet::verify(signed_note, &self.trust).map_err(|e| {
            Error::Verification(format!(
                "the cluster's key set is not signed by a quorum of the trusted keys ({e}); \
                 check the new voters' keys out of band and pin them by hand \
                 (docs/OPERATIONS.md, \"Replacing a node\")"
            ))
        })?;
        let set = verified.key_set;
        if let Some(known) = self.key_set_epoch
            && set.epoch < known
        {
            return Err(Error::Verification(format!(
                "the key set offered is of epoch {}, older than the adopted one of epoch \
                 {known}: an old membership is not taken back",
                set.epoch
            )));
        }
        if set.same_keys(self.trust.keys()) {
            self.key_set_epoch = Some(set.epoch);
            return Ok(KeySetChange::Unchanged { epoch: set.epoch });
        }
        if self.key_set_epoch == Some(set.epoch) {
            return Err(Error::Verification(format!(
                "two different key sets of epoch {}, both signed by a quorum of trusted keys",
                set.epoch
            )));
        }
        let n = set.keys().len();
        let quorum = set.majority().max(self.trust.quorum().min(n));
        let mut trust = CheckpointVerifier::new(self.trust.origin(), set.keys().to_vec(), quorum)?;
        if let Some(rule) = self.trust.witness_rule() {
            trust = trust.with_witnesses(rule.clone());
        }
        // The trusted checkpoint is stored beside the keys, and checked
        // against them when the state is loaded.
        if let Some(t) = &self.trusted
            && trust.verify(&t.note.to_string()).is_err()
        {
            return Ok(KeySetChange::Deferred { epoch: set.epoch });
        }
        let names =
            |keys: &[NoteKey]| -> Vec<String> { keys.iter().map(|k| k.to_string()).collect() };
        let (old, new) = (names(self.trust.keys()), names(set.keys()));
        let added = new.iter().filter(|k| !old.contains(k)).cloned().collect();
        let removed = old.iter().filter(|k| !new.contains(k)).cloned().collect();
        self.trust = trust;
        self.key_set_epoch = Some(set.epoch);
        Ok(KeySetChange::Adopted {
            epoch: set.epoch,
            added,
            removed,
            signers: verified.signers,
            quorum,
        })
    }

    /// Learns the cluster's key set when its voters' keys are not the trusted
    /// ones. Best effort: a key set that cannot be fetched (a membership
    /// change under way, an election) leaves the trusted keys as they are, and
    /// the checkpoint that follows tells whether they still suffice. A key
    /// set that was fetched and does not verify is an error.
    async fn follow_key_set(&mut self, client: &Client) -> Result<Option<KeySetChange>> {
        let Ok(status) = client.status().await else {
            return Ok(None);
        };
        let voters: Vec<NoteKey> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .filter_map(|m| NoteKey::parse(&m.public_key).ok())
            .collect();
        let current = self.trust.keys();
        let same = voters.len() == current.len() && voters.iter().all(|k| current.contains(k));
        if same {
            return Ok(None);
        }
        match client.key_set().await {
            Ok((note, _)) => self.learn_key_set(&note).map(Some),
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's key set could not be fetched; keeping the trusted keys");
                Ok(None)
            }
        }
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
    ///
    /// First, when the cluster's voters hold other keys than the trusted ones,
    /// it learns their key set ([`Verifier::learn_key_set`]); what it learnt
    /// is in [`Verifier::key_set_news`].
    pub async fn update(&mut self, client: &Client) -> Result<Advance> {
        self.key_set_news = self.follow_key_set(client).await?;
        let advance = self.update_checkpoint(client).await?;
        if let Some(KeySetChange::Deferred { .. }) = self.key_set_news {
            // The newer checkpoint may be what the new keys needed.
            self.key_set_news = self.follow_key_set(client).await?;
        }
        if matches!(
            self.key_set_news,
            Some(KeySetChange::Adopted { .. } | KeySetChange::Unchanged { .. })
        ) {
            self.save()?;
        }
        Ok(advance)
    }

    async fn update_checkpoint(&mut self, client: &Client) -> Result<Advance> {
        let mut latest = client.checkpoint(None).await?;
        // Witnesses cosign a checkpoint after it is recorded: a policy that
        // asks for their cosignatures waits a little for the latest one's.
        let deadline = tokio::time::Instant::now() + WITNESS_WAIT;
        while self
            .trust
            .witness_rule()
            .is_some_and(|rule| rule.requires_cosignatures())
            && matches!(
                self.trust.verify(&latest.note),
                Err(veritrail_core::Error::WitnessQuorumNotMet { .. })
            )
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            latest = client.checkpoint(None).await?;
        }
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

    /// An entry in a signing service's name, unsigned or altered, fails an
    /// auditor's check; signed as it was, it passes.
    #[test]
    fn verify_entry_holds_entries_to_their_signatures_and_the_signer_list() {
        let billing = NoteSigner::from_seed("billing", &[9; 32]).expect("key");
        let entry_of = |submitted: veritrail_core::SubmittedEvent| {
            let entry = veritrail_core::Entry {
                seq: 4,
                timestamp_ns: 1,
                prev_hash: Hash::ZERO,
                principal: "svc/billing".into(),
                event: submitted.event,
                signature: submitted.signature,
            };
            let canonical = entry.encode();
            LogEntry {
                hash: veritrail_core::entry_hash(&canonical),
                entry,
                canonical,
            }
        };
        let event = veritrail_core::Event {
            source: "billing".into(),
            event_id: "e".into(),
            actor: "a".into(),
            action: "x".into(),
            resource: "r".into(),
            outcome: "ok".into(),
            ..veritrail_core::Event::default()
        };
        let signed = veritrail_core::SubmittedEvent::signed(&billing, ORIGIN, event.clone());
        let mut altered = signed.clone();
        altered.event.outcome = "denied".into();
        let unsigned = veritrail_core::SubmittedEvent::unsigned(event);

        let trusting = verifier();
        trusting
            .verify_entry(&entry_of(signed.clone()))
            .expect("signed");
        trusting
            .verify_entry(&entry_of(unsigned.clone()))
            .expect("no signer list: unsigned entries are not judged");
        let e = trusting
            .verify_entry(&entry_of(altered))
            .expect_err("altered after signing");
        assert!(e.to_string().contains("seq 4"), "{e}");

        let list = SignerList::new(vec![veritrail_core::SignerEntry {
            principal: "svc/billing".into(),
            keys: vec![billing.public().to_string()],
            required: true,
        }])
        .expect("list");
        let auditing = verifier().with_signers(list);
        auditing.verify_entry(&entry_of(signed)).expect("signed");
        let e = auditing
            .verify_entry(&entry_of(unsigned))
            .expect_err("billing must sign");
        assert!(e.to_string().contains("must sign"), "{e}");
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

    /// The key set of nodes `which` (1-based, up to 5) at `epoch`, signed by
    /// nodes `by`.
    fn key_set(epoch: u64, which: &[u8], by: &[u8]) -> String {
        let all: Vec<NoteSigner> = (1u8..=5)
            .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("signer"))
            .collect();
        let keys = which
            .iter()
            .map(|i| all[*i as usize - 1].public().clone())
            .collect();
        let set = KeySet::new(ORIGIN, epoch, keys).expect("set");
        let mut note = set.to_note().expect("note");
        for i in by {
            note.sign(&all[*i as usize - 1]).expect("sign");
        }
        note.to_string()
    }

    #[test]
    fn learns_a_key_set_only_from_a_quorum_of_trusted_keys() {
        // No checkpoint trusted yet: none has to verify under the new keys.
        let mut v = verifier();
        // Node 2 replaced by node 4, vouched for by nodes 1 and 3.
        match v.learn_key_set(&key_set(10, &[1, 3, 4], &[1, 3, 4])) {
            Ok(KeySetChange::Adopted {
                epoch: 10,
                added,
                removed,
                signers,
                quorum: 2,
            }) => {
                assert_eq!(added.len(), 1);
                assert!(added[0].starts_with("node-4+"));
                assert!(removed[0].starts_with("node-2+"));
                assert_eq!(signers, ["node-1", "node-3"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v.key_set_epoch(), Some(10));
        // The next replacement is vouched for by the keys learnt.
        assert!(matches!(
            v.learn_key_set(&key_set(20, &[1, 4, 5], &[1, 4, 5])),
            Ok(KeySetChange::Adopted { epoch: 20, .. })
        ));
        // Signed by one trusted key and new ones: refused, keys unchanged.
        let before = v.state();
        assert!(matches!(
            v.learn_key_set(&key_set(30, &[1, 2, 3], &[1, 2, 3])),
            Err(Error::Verification(_))
        ));
        // An older key set, though its signers were trusted then.
        assert!(matches!(
            v.learn_key_set(&key_set(10, &[1, 4, 5], &[1, 4, 5])),
            Err(Error::Verification(_))
        ));
        // Another key set of an epoch already adopted.
        assert!(matches!(
            v.learn_key_set(&key_set(20, &[1, 4, 3], &[1, 4, 5])),
            Err(Error::Verification(_))
        ));
        assert_eq!(v.state(), before);
        assert!(matches!(
            v.learn_key_set(&key_set(20, &[1, 4, 5], &[4, 5])),
            Ok(KeySetChange::Unchanged { epoch: 20 })
        ));
    }

    #[test]
    fn a_key_set_waits_for_a_checkpoint_the_new_keys_signed() {
        let mut v = verifier();
        // Signed by nodes 1 and 3, and both are replaced.
        v.accept(&signed(&tree(4, 0), 4), &[]).expect("first");
        assert_eq!(
            v.learn_key_set(&key_set(7, &[1, 4, 5], &[1, 2, 4, 5]))
                .expect("learn"),
            KeySetChange::Deferred { epoch: 7 }
        );
        assert_eq!(v.key_set_epoch(), None);
        assert_eq!(v.trust().keys().len(), 3);
    }

    #[test]
    fn a_learnt_key_set_survives_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("trusted.json");
        let mut v = verifier();
        v.accept(&signed(&tree(4, 0), 4), &[]).expect("first");
        v.learn_key_set(&key_set(10, &[1, 3, 4], &[1, 3]))
            .expect("learn");
        v.persist_to(&path).expect("save");
        let loaded = Verifier::load(&path).expect("load");
        assert_eq!(loaded.state(), v.state());
        assert_eq!(loaded.key_set_epoch(), Some(10));
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
