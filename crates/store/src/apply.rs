//! Deterministic apply: turning committed commands into audit entries.
//!
//! Every node runs this on the same Raft entries in the same order and must end
//! with byte-identical state, so nothing here may depend on anything but the
//! entries and the state before them: no clock, no configuration, no randomness.
//! Validation uses the format's hard maxima ([`Limits::format_maximum`]), not a
//! node's configured limits, for the same reason; the leader enforces the
//! configured policy before it proposes.
//!
//! A [`Batch`] accumulates one apply call's writes in one RocksDB write batch,
//! with an in-memory overlay so that later entries of the call see earlier ones
//! (their event ids, their Merkle nodes) before anything reaches the disk.
//! Snapshot install writes through the same [`Batch`], so this layer sits below
//! the snapshots and never names openraft's type configuration: the loop over
//! Raft entries is the state machine's (`state_machine::apply_entries`).

use std::collections::HashMap;

use openraft::{LogId, StoredMembership};
use rocksdb::WriteBatch;
use veritrail_core::merkle::{self, NodeId, NodeSource};
use veritrail_core::note::{NoteKey, SignedNote};
use veritrail_core::{
    Checkpoint, Entry, Event, EventSignature, Hash, Limits, Receipt, SubmittedEvent, entry_hash,
    validate_principal,
};

use crate::db::{
    CF_BY_FIELD, CF_CHECKPOINTS, CF_ENTRIES, CF_EVENT_IDS, CF_MERKLE, CF_SM_META, Db, Field,
    KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_TAIL, event_id_key, field_key, merkle_key_ending_at,
    read_u64_key, to_postcard, u64_key,
};
use crate::error::{Result, StoreError};
use crate::stored::{DbNodes, stored_entry};
use crate::tail::Tail;
use crate::types::{
    AppendReceipt, CheckpointRecord, CommandResponse, NodeInfo, Proposal, Rejection, RejectionKind,
    RequestOutcome, SignedProposal,
};

/// An event as a request carries it: a proposal of format 1 carries bare
/// events, one of format 2 events with their signatures.
pub(crate) trait Submission {
    fn event(&self) -> &Event;
    fn signature(&self) -> Option<&EventSignature>;
}

impl Submission for Event {
    fn event(&self) -> &Event {
        self
    }
    fn signature(&self) -> Option<&EventSignature> {
        None
    }
}

impl Submission for SubmittedEvent {
    fn event(&self) -> &Event {
        &self.event
    }
    fn signature(&self) -> Option<&EventSignature> {
        self.signature.as_ref()
    }
}

/// What one request's event will become, decided before anything is written.
enum Plan {
    New,
    /// Already in the log: answer with the original receipt.
    Stored(Receipt),
    /// Repeats an earlier event of the same request.
    SameAs(usize),
}

/// One apply call's writes, not yet on disk, and the overlay that lets later
/// entries of the call see them.
pub(crate) struct Batch<'a> {
    db: &'a Db,
    origin: &'a str,
    pub(crate) batch: WriteBatch,
    pub(crate) tail: Tail,
    /// Entries appended in this batch, by `seq - first_new_seq`.
    new_entries: Vec<(Entry, Hash)>,
    first_new_seq: u64,
    new_ids: HashMap<(String, String), u64>,
    new_nodes: HashMap<NodeId, Hash>,
    new_checkpoints: HashMap<u64, String>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(db: &'a Db, origin: &'a str, tail: Tail) -> Self {
        Batch {
            db,
            origin,
            batch: WriteBatch::default(),
            first_new_seq: tail.size,
            tail,
            new_entries: Vec::new(),
            new_ids: HashMap::new(),
            new_nodes: HashMap::new(),
            new_checkpoints: HashMap::new(),
        }
    }

    /// Adds the state-machine metadata and writes everything in one atomic
    /// batch, **not synced**. The entries it applies are already synced in the
    /// Raft log on a majority, and that log shares this database's WAL: the next
    /// synced write of any kind (the next Raft append, a vote, a snapshot record,
    /// a purge) makes this one durable too, since a synced WAL write persists
    /// every record before it. A crash before that loses only state that
    /// applying the still-present Raft log rebuilds byte for byte (apply is
    /// deterministic), and the log is purged only after a snapshot record,
    /// itself synced, so never past what is durable here.
    pub(crate) fn commit(
        mut self,
        last_applied: Option<LogId<u64>>,
        membership: &StoredMembership<u64, NodeInfo>,
    ) -> Result<Tail> {
        let meta = self.db.cf(CF_SM_META);
        self.batch
            .put_cf(meta, KEY_LAST_APPLIED, to_postcard(&last_applied));
        self.batch
            .put_cf(meta, KEY_MEMBERSHIP, to_postcard(membership));
        self.batch.put_cf(meta, KEY_TAIL, self.tail.encode());
        self.db.write_unsynced(self.batch)?;
        Ok(self.tail)
    }

    /// Writes the tail and the batch so far without sync, and starts a new batch.
    /// Used by snapshot install to bound memory; the state on disk after each
    /// flush is a consistent, shorter log.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.batch
            .put_cf(self.db.cf(CF_SM_META), KEY_TAIL, self.tail.encode());
        let batch = std::mem::take(&mut self.batch);
        self.db.write_unsynced(batch)?;
        self.first_new_seq = self.tail.size;
        self.new_entries.clear();
        self.new_ids.clear();
        self.new_nodes.clear();
        self.new_checkpoints.clear();
        Ok(())
    }

    /// Applies a proposal's requests in order, each all or nothing.
    pub(crate) fn apply_proposal(&mut self, proposal: &Proposal) -> Result<Vec<RequestOutcome>> {
        let requests = proposal.requests.iter();
        self.apply_requests(
            proposal.proposed_at_ns,
            requests.map(|r| (&*r.principal, &r.events[..])),
        )
    }

    /// Applies a proposal whose events may carry their services' signatures.
    pub(crate) fn apply_signed_proposal(
        &mut self,
        proposal: &SignedProposal,
    ) -> Result<Vec<RequestOutcome>> {
        let requests = proposal.requests.iter();
        self.apply_requests(
            proposal.proposed_at_ns,
            requests.map(|r| (&*r.principal, &r.events[..])),
        )
    }

    fn apply_requests<'r, S: Submission + 'r>(
        &mut self,
        proposed_at_ns: u64,
        requests: impl Iterator<Item = (&'r str, &'r [S])>,
    ) -> Result<Vec<RequestOutcome>> {
        // One timestamp for the whole proposal, never behind the previous entry.
        let timestamp_ns = proposed_at_ns.max(self.tail.last_timestamp_ns);
        requests
            .map(|(principal, events)| self.apply_request(principal, events, timestamp_ns))
            .collect()
    }

    /// Applies one all-or-nothing request: decides every event's fate first, and
    /// writes only when none is refused.
    ///
    /// An event that carries a signature is refused unless it verifies for this
    /// log's origin: the check depends on the entry alone, so every node makes
    /// it the same way, and a node that proposes a signed event it changed
    /// writes nothing. Whether a principal had to sign is the policy's
    /// question, asked by the leader before it proposes (never here: apply reads
    /// no configuration).
    fn apply_request<S: Submission>(
        &mut self,
        principal: &str,
        events: &[S],
        timestamp_ns: u64,
    ) -> Result<RequestOutcome> {
        let limits = Limits::format_maximum();
        let reject = |event_index: usize, kind, message: String| {
            Ok(RequestOutcome::Rejected(Rejection {
                event_index: event_index as u32,
                kind,
                message,
            }))
        };
        if let Err(e) = validate_principal(principal, &limits) {
            return reject(0, RejectionKind::Invalid, format!("principal: {e}"));
        }
        if events.is_empty() {
            return reject(
                0,
                RejectionKind::Invalid,
                "a request must carry at least one event".into(),
            );
        }
        let mut plans = Vec::with_capacity(events.len());
        let mut first_in_request: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, submitted) in events.iter().enumerate() {
            let (event, signature) = (submitted.event(), submitted.signature());
            if let Err(e) = event.validate(&limits) {
                return reject(i, RejectionKind::Invalid, format!("event {i}: {e}"));
            }
            if let Some(Err(e)) = signature.map(|s| s.verify(self.origin, event)) {
                return reject(i, RejectionKind::Invalid, format!("event {i}: {e}"));
            }
            let key = (event.source.as_str(), event.event_id.as_str());
            if let Some(&j) = first_in_request.get(&key) {
                if events[j].event() != event || events[j].signature() != signature {
                    return reject(
                        i,
                        RejectionKind::Conflict,
                        format!(
                            "event {i} reuses event id {:?} of source {:?} from event {j} of the same request, with different content",
                            event.event_id, event.source
                        ),
                    );
                }
                plans.push(Plan::SameAs(j));
                continue;
            }
            match self.lookup(&event.source, &event.event_id)? {
                Some((stored, hash)) => {
                    if stored.principal != principal
                        || stored.event != *event
                        || stored.signature.as_ref() != signature
                    {
                        return reject(
                            i,
                            RejectionKind::Conflict,
                            format!(
                                "event {i}: event id {:?} of source {:?} already names a different event (seq {}); an event id is used once",
                                event.event_id, event.source, stored.seq
                            ),
                        );
                    }
                    plans.push(Plan::Stored(Receipt {
                        seq: stored.seq,
                        entry_hash: hash,
                        timestamp_ns: stored.timestamp_ns,
                    }));
                }
                None => {
                    first_in_request.insert(key, i);
                    plans.push(Plan::New);
                }
            }
        }
        let mut receipts: Vec<AppendReceipt> = Vec::with_capacity(plans.len());
        for (submitted, plan) in events.iter().zip(plans) {
            let receipt = match plan {
                Plan::New => AppendReceipt {
                    receipt: self.append_event(principal, submitted, timestamp_ns)?,
                    duplicate: false,
                },
                Plan::Stored(receipt) => AppendReceipt {
                    receipt,
                    duplicate: true,
                },
                Plan::SameAs(j) => AppendReceipt {
                    receipt: receipts[j].receipt,
                    duplicate: true,
                },
            };
            receipts.push(receipt);
        }
        Ok(RequestOutcome::Accepted(receipts))
    }

    /// The stored or pending entry holding `(source, event_id)`, with its hash.
    fn lookup(&self, source: &str, event_id: &str) -> Result<Option<(Entry, Hash)>> {
        if let Some(&seq) = self.new_ids.get(&(source.to_owned(), event_id.to_owned())) {
            return Ok(Some(
                self.new_entries[(seq - self.first_new_seq) as usize].clone(),
            ));
        }
        let Some(seq_bytes) = self.db.get(CF_EVENT_IDS, &event_id_key(source, event_id))? else {
            return Ok(None);
        };
        let seq = read_u64_key(&seq_bytes, CF_EVENT_IDS)?;
        let bytes = self.db.get(CF_ENTRIES, &u64_key(seq))?.ok_or_else(|| {
            StoreError::corrupt(
                CF_EVENT_IDS,
                format!("({source}, {event_id}) points at missing seq {seq}"),
            )
        })?;
        let stored = stored_entry(seq, bytes)?;
        Ok(Some((stored.entry, stored.hash)))
    }

    fn append_event<S: Submission>(
        &mut self,
        principal: &str,
        submitted: &S,
        timestamp_ns: u64,
    ) -> Result<Receipt> {
        let entry = Entry {
            seq: self.tail.size,
            timestamp_ns,
            prev_hash: self.tail.head,
            principal: principal.to_owned(),
            event: submitted.event().clone(),
            signature: submitted.signature().copied(),
        };
        let bytes = entry.encode();
        let hash = entry_hash(&bytes);
        let receipt = Receipt {
            seq: entry.seq,
            entry_hash: hash,
            timestamp_ns,
        };
        self.write_entry(entry, &bytes, hash)?;
        Ok(receipt)
    }

    /// Writes an entry that extends the tail, with its indexes and Merkle nodes.
    ///
    /// The callers build or check the entry so that it does; this checks it
    /// once more right before the write, in release builds too: an entry at
    /// the wrong seq, off the chain or back in time would break the log for
    /// good, so it is refused (and the whole apply with it) instead.
    pub(crate) fn write_entry(&mut self, entry: Entry, bytes: &[u8], hash: Hash) -> Result<()> {
        let refuse = |detail: String| {
            Err(StoreError::WouldBreakLog {
                seq: entry.seq,
                detail,
            })
        };
        if entry.seq != self.tail.size {
            return refuse(format!("the next seq is {}", self.tail.size));
        }
        if entry.prev_hash != self.tail.head {
            return refuse(format!(
                "its prev_hash is not the head {}",
                self.tail.head.to_hex()
            ));
        }
        if entry.timestamp_ns < self.tail.last_timestamp_ns {
            return refuse(format!(
                "its timestamp {} is before the last one, {}",
                entry.timestamp_ns, self.tail.last_timestamp_ns
            ));
        }
        let seq = entry.seq;
        let e = &entry.event;
        self.batch
            .put_cf(self.db.cf(CF_ENTRIES), u64_key(seq), bytes);
        self.batch.put_cf(
            self.db.cf(CF_EVENT_IDS),
            event_id_key(&e.source, &e.event_id),
            u64_key(seq),
        );
        let by_field = self.db.cf(CF_BY_FIELD);
        self.batch
            .put_cf(by_field, field_key(Field::Source, &e.source, seq), []);
        self.batch
            .put_cf(by_field, field_key(Field::Actor, &e.actor, seq), []);
        self.batch
            .put_cf(by_field, field_key(Field::Action, &e.action, seq), []);
        let merkle_cf = self.db.cf(CF_MERKLE);
        let (batch, new_nodes) = (&mut self.batch, &mut self.new_nodes);
        // Every node this leaf completes ends at it.
        let leaf = self.tail.frontier.size();
        self.tail.frontier.push(hash, |id, node| {
            batch.put_cf(
                merkle_cf,
                merkle_key_ending_at(leaf, id.level),
                node.as_bytes(),
            );
            new_nodes.insert(id, *node);
        });
        self.tail.size += 1;
        self.tail.head = hash;
        self.tail.last_timestamp_ns = entry.timestamp_ns;
        self.new_ids
            .insert((e.source.clone(), e.event_id.clone()), seq);
        self.new_entries.push((entry, hash));
        Ok(())
    }

    /// Records a co-signed checkpoint, merging its signatures with any recorded
    /// for the same size.
    ///
    /// A checkpoint that does not carry a quorum of the current voters'
    /// signatures is refused without writing. One that does, but whose body is not
    /// what this node computes for that size, means this node's copy of the log
    /// differs from what a quorum holds: that is an error, and the node stops.
    pub(crate) fn apply_checkpoint(
        &mut self,
        record: &CheckpointRecord,
        membership: &StoredMembership<u64, NodeInfo>,
    ) -> Result<CommandResponse> {
        let rejected = |reason: String| Ok(CommandResponse::CheckpointRejected { reason });
        let note = match SignedNote::parse(&record.signed_note) {
            Ok(note) => note,
            Err(e) => return rejected(e.to_string()),
        };
        let checkpoint = match Checkpoint::parse(note.text()) {
            Ok(c) => c,
            Err(e) => return rejected(e.to_string()),
        };
        if checkpoint.origin != self.origin {
            return rejected(format!("checkpoint is for origin {:?}", checkpoint.origin));
        }
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        let keys: Vec<NoteKey> = voters
            .iter()
            .filter_map(|id| membership.membership().get_node(id))
            .filter_map(|node| NoteKey::parse(&node.public_key).ok())
            .collect();
        let quorum = voters.len() / 2 + 1;
        if keys.len() < quorum {
            return rejected(format!(
                "only {} of {} voters have a known key; a quorum of {quorum} cannot sign",
                keys.len(),
                voters.len()
            ));
        }
        let signers = match note.verify(&keys, quorum) {
            Ok(signers) => signers,
            Err(e) => return rejected(e.to_string()),
        };
        if checkpoint.size > self.tail.size {
            return Err(StoreError::Integrity {
                seq: Some(self.tail.size),
                detail: format!(
                    "a checkpoint of size {} signed by {} was committed after this node applied only {} entries",
                    checkpoint.size,
                    signers.join(", "),
                    self.tail.size
                ),
            });
        }
        let mine = self.checkpoint_at(checkpoint.size)?;
        if mine != checkpoint {
            return Err(StoreError::Integrity {
                seq: None,
                detail: format!(
                    "the checkpoint at size {} signed by {} says root {}, this node computes {}: its copy of the log differs from the quorum's",
                    checkpoint.size,
                    signers.join(", "),
                    checkpoint.root,
                    mine.root
                ),
            });
        }
        let merged = match self.recorded_checkpoint(checkpoint.size)? {
            None => note,
            Some(existing) => {
                let mut existing = SignedNote::parse(&existing).map_err(|e| {
                    StoreError::corrupt(format!("checkpoints/{}", checkpoint.size), e)
                })?;
                for signature in note.signatures() {
                    if !existing
                        .signatures()
                        .iter()
                        .any(|s| s.name == signature.name && s.key_id == signature.key_id)
                    {
                        existing.add_signature(signature.clone())?;
                    }
                }
                existing
            }
        };
        self.put_checkpoint(checkpoint.size, &merged.to_string());
        Ok(CommandResponse::CheckpointRecorded {
            size: checkpoint.size,
        })
    }

    /// Records a signed note for `size`, replacing any recorded before.
    pub(crate) fn put_checkpoint(&mut self, size: u64, note: &str) {
        self.batch
            .put_cf(self.db.cf(CF_CHECKPOINTS), u64_key(size), note.as_bytes());
        self.new_checkpoints.insert(size, note.to_owned());
    }

    fn recorded_checkpoint(&self, size: u64) -> Result<Option<String>> {
        if let Some(text) = self.new_checkpoints.get(&size) {
            return Ok(Some(text.clone()));
        }
        self.db
            .get(CF_CHECKPOINTS, &u64_key(size))?
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|e| StoreError::corrupt(format!("checkpoints/{size}"), e))
            })
            .transpose()
    }

    /// The checkpoint body at `size` as this node computes it, seeing pending
    /// writes. `size` is at most the tail's size.
    pub(crate) fn checkpoint_at(&self, size: u64) -> Result<Checkpoint> {
        let root = merkle::root_at(self, size)?;
        let (head, timestamp_ns) = match size.checked_sub(1) {
            None => (veritrail_core::genesis_hash(self.origin), 0),
            Some(last) if last >= self.first_new_seq => {
                let (entry, hash) = &self.new_entries[(last - self.first_new_seq) as usize];
                (*hash, entry.timestamp_ns)
            }
            Some(last) => {
                let bytes = self
                    .db
                    .get(CF_ENTRIES, &u64_key(last))?
                    .ok_or_else(|| StoreError::corrupt(format!("entries/{last}"), "missing"))?;
                let stored = stored_entry(last, bytes)?;
                (stored.hash, stored.entry.timestamp_ns)
            }
        };
        Ok(Checkpoint {
            origin: self.origin.to_owned(),
            size,
            root,
            head,
            timestamp_ns,
        })
    }
}

/// Pending nodes first, then the database.
impl NodeSource for Batch<'_> {
    type Error = StoreError;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let missing: Vec<NodeId> = ids
            .iter()
            .filter(|id| !self.new_nodes.contains_key(id))
            .copied()
            .collect();
        let mut stored = DbNodes::new(self.db).nodes(&missing)?.into_iter();
        ids.iter()
            .map(|id| match self.new_nodes.get(id) {
                Some(hash) => Ok(*hash),
                None => stored
                    .next()
                    .ok_or_else(|| StoreError::corrupt("merkle", "node lookup count mismatch")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{Shared, StoreConfig};

    fn entry(seq: u64, timestamp_ns: u64, prev_hash: Hash) -> Entry {
        Entry {
            seq,
            timestamp_ns,
            prev_hash,
            principal: "spiffe://apply.test/service/t".into(),
            event: Event {
                source: "s".into(),
                event_id: format!("e{seq}"),
                actor: "a".into(),
                action: "act".into(),
                resource: "r".into(),
                outcome: "ok".into(),
                ..Event::default()
            },
            signature: None,
        }
    }

    /// The write-side checks hold in release builds: an entry that would
    /// break the log is a typed error before anything is written.
    #[test]
    fn an_entry_that_would_break_the_log_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let shared = Shared::open(dir.path(), &StoreConfig::new("apply.test/log")).expect("open");
        let tail = shared.state().tail.clone();
        let mut batch = Batch::new(&shared.db, &shared.origin, tail.clone());
        let mut write = |e: Entry| {
            let bytes = e.encode();
            batch.write_entry(e, &bytes, entry_hash(&bytes))
        };
        for (bad, why) in [
            (entry(1, 10, tail.head), "the next seq is 0"),
            (entry(0, 10, Hash::ZERO), "prev_hash is not the head"),
        ] {
            let refused = write(bad).expect_err("refused");
            assert!(
                matches!(&refused, StoreError::WouldBreakLog { seq: _, detail } if detail.contains(why)),
                "{refused}"
            );
        }
        let first = entry(0, 10, tail.head);
        let first_hash = entry_hash(&first.encode());
        write(first).expect("the right next entry is written");
        let refused = write(entry(1, 9, first_hash)).expect_err("back in time");
        assert!(
            refused.to_string().contains("before the last one"),
            "{refused}"
        );
        write(entry(1, 10, first_hash)).expect("the same timestamp is fine");
    }

    /// A signed event is stored as format 2 and its retry is a duplicate; a
    /// signature that does not verify, or a second event under its id that
    /// differs only by its signature, is refused and nothing is written.
    #[test]
    fn signed_events_are_held_to_their_signatures() {
        use crate::types::SignedRequest;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let shared = Shared::open(dir.path(), &StoreConfig::new("apply.test/log")).expect("open");
        let signer = veritrail_core::note::NoteSigner::from_seed("t", &[4; 32]).expect("key");
        let signed =
            SubmittedEvent::signed(&signer, "apply.test/log", entry(0, 0, Hash::ZERO).event);
        let mut altered = signed.clone();
        altered.event.outcome = "denied".into();
        let unsigned = SubmittedEvent::unsigned(signed.event.clone());
        let mut batch = Batch::new(&shared.db, &shared.origin, shared.state().tail.clone());
        let proposal = |events: Vec<SubmittedEvent>| SignedProposal {
            proposed_at_ns: 5,
            requests: vec![SignedRequest {
                principal: "spiffe://apply.test/service/t".into(),
                events,
            }],
        };
        let outcomes = batch
            .apply_signed_proposal(&proposal(vec![signed.clone(), signed.clone()]))
            .expect("apply");
        let RequestOutcome::Accepted(receipts) = &outcomes[0] else {
            panic!("{outcomes:?}");
        };
        assert!(
            !receipts[0].duplicate && receipts[1].duplicate,
            "{receipts:?}"
        );
        let (stored, _) = batch
            .lookup(&signed.event.source, &signed.event.event_id)
            .expect("lookup")
            .expect("stored");
        assert_eq!((stored.version(), stored.signature), (2, signed.signature));
        for (events, kind, why) in [
            (vec![altered], RejectionKind::Invalid, "does not verify"),
            (
                vec![unsigned],
                RejectionKind::Conflict,
                "already names a different event",
            ),
        ] {
            let outcomes = batch
                .apply_signed_proposal(&proposal(events))
                .expect("apply");
            match &outcomes[0] {
                RequestOutcome::Rejected(r) => {
                    assert_eq!(r.kind, kind, "{r:?}");
                    assert!(r.message.contains(why), "{r:?}");
                }
                other => panic!("accepted: {other:?}"),
            }
        }
        assert_eq!(batch.tail.size, 1, "only the signed event was written");
    }
}
