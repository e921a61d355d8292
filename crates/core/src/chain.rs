//! Replaying entries in order and checking that they form one unbroken chain.
//!
//! The same checker serves the auditor verifying a bundle, the CLI verifying a range
//! fetched from a node, and a node checking its own disk: whoever holds entries in
//! order pushes their canonical bytes and learns the first place where the chain is
//! broken, by sequence number and kind.

use std::fmt;

use crate::merkle::Frontier;
use crate::{Entry, Error, Hash, entry_hash, genesis_hash};

/// What is wrong at the first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The bytes are not a canonical entry.
    Undecodable { reason: String },
    /// The entry carries another sequence number than its position.
    SeqMismatch { found: u64 },
    /// The entry's `prev_hash` is not the hash of the entry before it.
    PrevHashMismatch { expected: Hash, found: Hash },
    /// The entry's timestamp is older than the entry before it.
    TimestampBackwards { previous_ns: u64, found_ns: u64 },
    /// The entry carries an event signature (format version 2) that does not
    /// verify: the event was changed after its service signed it, or the
    /// signature was never its service's.
    BadEventSignature { reason: String },
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFault::Undecodable { reason } => write!(f, "entry bytes do not decode: {reason}"),
            ChainFault::SeqMismatch { found } => write!(f, "entry carries seq {found}"),
            ChainFault::PrevHashMismatch { expected, found } => write!(
                f,
                "prev_hash {found} is not the hash {expected} of the entry before it \
                 (this entry or the one before was altered, or one is missing)"
            ),
            ChainFault::TimestampBackwards {
                previous_ns,
                found_ns,
            } => write!(
                f,
                "timestamp {found_ns} ns is older than the previous entry's {previous_ns} ns"
            ),
            ChainFault::BadEventSignature { reason } => write!(f, "{reason}"),
        }
    }
}

/// Checks entries pushed in sequence order: dense sequence numbers, `prev_hash`
/// links, timestamps that never go backwards, event signatures that verify for
/// the log's origin and, when it knows the Merkle frontier at its starting
/// point, the Merkle root as it goes.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    origin: String,
    next_seq: u64,
    head: Option<Hash>,
    last_timestamp_ns: Option<u64>,
    frontier: Option<Frontier>,
}

impl ChainVerifier {
    /// Starts at the beginning of the log named `origin`.
    pub fn from_genesis(origin: &str) -> Self {
        ChainVerifier {
            origin: origin.to_owned(),
            next_seq: 0,
            head: Some(genesis_hash(origin)),
            last_timestamp_ns: None,
            frontier: Some(Frontier::new()),
        }
    }

    /// Starts at `next_seq` of the log named `origin`, knowing as much about the
    /// entries before as the caller does: the hash of the entry at `next_seq - 1`,
    /// its timestamp, and the Merkle frontier of the first `next_seq` leaves. What
    /// is `None` is not checked for the first entry pushed; everything after it is
    /// checked in full.
    pub fn resume(
        origin: &str,
        next_seq: u64,
        head: Option<Hash>,
        last_timestamp_ns: Option<u64>,
        frontier: Option<Frontier>,
    ) -> Result<Self, Error> {
        if let Some(f) = &frontier
            && f.size() != next_seq
        {
            return Err(Error::FrontierShape {
                size: next_seq,
                expected: next_seq.count_ones() as usize,
                found: f.nodes().len(),
            });
        }
        Ok(ChainVerifier {
            origin: origin.to_owned(),
            next_seq,
            head,
            last_timestamp_ns,
            frontier,
        })
    }

    /// Checks the next entry, given its canonical bytes, and returns it decoded.
    pub fn push(&mut self, canonical: &[u8]) -> Result<Entry, Error> {
        let seq = self.next_seq;
        let entry = Entry::decode(canonical).map_err(|e| Error::ChainBroken {
            seq,
            fault: ChainFault::Undecodable {
                reason: e.to_string(),
            },
        })?;
        if entry.seq != seq {
            return Err(Error::ChainBroken {
                seq,
                fault: ChainFault::SeqMismatch { found: entry.seq },
            });
        }
        // A tree holds at most u64::MAX leaves, so seq u64::MAX is never a leaf
        // index: refuse it rather than overflow the seq and the frontier's size.
        let Some(next_seq) = seq.checked_add(1) else {
            return Err(Error::IndexOutOfRange {
                index: seq,
                size: u64::MAX,
            });
        };
        if let Some(expected) = self.head
            && entry.prev_hash != expected
        {
            return Err(Error::ChainBroken {
                seq,
                fault: ChainFault::PrevHashMismatch {
                    expected,
                    found: entry.prev_hash,
                },
            });
        }
        if let Some(previous_ns) = self.last_timestamp_ns
            && entry.timestamp_ns < previous_ns
        {
            return Err(Error::ChainBroken {
                seq,
                fault: ChainFault::TimestampBackwards {
                    previous_ns,
                    found_ns: entry.timestamp_ns,
                },
            });
        }
        if let Err(e) = entry.verify_signature(&self.origin) {
            return Err(Error::ChainBroken {
                seq,
                fault: ChainFault::BadEventSignature {
                    reason: e.to_string(),
                },
            });
        }
        let hash = entry_hash(canonical);
        if let Some(frontier) = &mut self.frontier {
            frontier.push(hash, |_, _| {});
        }
        self.next_seq = next_seq;
        self.head = Some(hash);
        self.last_timestamp_ns = Some(entry.timestamp_ns);
        Ok(entry)
    }

    /// The sequence number the next entry must carry; also the number of entries
    /// the log holds up to here.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last entry pushed (the next entry's `prev_hash`), if known.
    pub fn head(&self) -> Option<Hash> {
        self.head
    }

    /// The timestamp of the last entry pushed, if known.
    pub fn last_timestamp_ns(&self) -> Option<u64> {
        self.last_timestamp_ns
    }

    /// The Merkle root of the first `next_seq` entries, if the frontier is known.
    pub fn root(&self) -> Option<Hash> {
        self.frontier.as_ref().map(Frontier::root)
    }

    /// The Merkle frontier of the first `next_seq` entries, if known: with
    /// [`ChainVerifier::head`] and [`ChainVerifier::last_timestamp_ns`], what a
    /// later check needs to resume here.
    pub fn frontier(&self) -> Option<&Frontier> {
        self.frontier.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn chain(origin: &str, n: u64) -> Vec<Vec<u8>> {
        let mut prev = genesis_hash(origin);
        (0..n)
            .map(|seq| {
                let entry = Entry {
                    seq,
                    timestamp_ns: 1000 + seq,
                    prev_hash: prev,
                    principal: "svc".into(),
                    event: Event {
                        source: "s".into(),
                        event_id: format!("e{seq}"),
                        actor: "a".into(),
                        action: "x".into(),
                        resource: "r".into(),
                        outcome: "ok".into(),
                        ..Event::default()
                    },
                    signature: None,
                };
                let bytes = entry.encode();
                prev = entry_hash(&bytes);
                bytes
            })
            .collect()
    }

    #[test]
    fn accepts_a_valid_chain_and_tracks_the_root() {
        let entries = chain("log", 10);
        let mut v = ChainVerifier::from_genesis("log");
        for bytes in &entries {
            v.push(bytes).expect("valid");
        }
        let tree = crate::merkle::MemoryTree::from_leaves(entries.iter().map(|b| entry_hash(b)));
        assert_eq!(v.root(), Some(tree.root()));
        assert_eq!(v.next_seq(), 10);
    }

    #[test]
    fn refuses_an_entry_at_the_largest_seq_instead_of_overflowing() {
        // Found by the `entry_decode` fuzz target: an entry carrying seq u64::MAX,
        // pushed where that seq is due, overflowed `next_seq` (and the frontier's
        // size) instead of returning an error.
        let entry = Entry {
            seq: u64::MAX,
            timestamp_ns: 1,
            prev_hash: Hash::ZERO,
            principal: "svc".into(),
            event: Event::default(),
            signature: None,
        };
        let bytes = entry.encode();
        let full = Frontier::from_parts(u64::MAX, vec![Hash::ZERO; 64]).expect("frontier");
        for frontier in [None, Some(full)] {
            let mut v = ChainVerifier::resume("log", u64::MAX, Some(Hash::ZERO), Some(0), frontier)
                .expect("resume");
            let before = v.root();
            assert_eq!(
                v.push(&bytes),
                Err(Error::IndexOutOfRange {
                    index: u64::MAX,
                    size: u64::MAX
                })
            );
            assert_eq!(v.next_seq(), u64::MAX);
            assert_eq!(v.head(), Some(Hash::ZERO));
            assert_eq!(v.root(), before);
        }
    }

    #[test]
    fn a_signed_entry_whose_event_was_changed_breaks_the_chain_at_its_seq() {
        let signer = crate::note::NoteSigner::from_seed("svc", &[5; 32]).expect("key");
        let event = Event {
            source: "s".into(),
            event_id: "e0".into(),
            actor: "a".into(),
            action: "x".into(),
            resource: "r".into(),
            outcome: "ok".into(),
            ..Event::default()
        };
        let signed = Entry {
            seq: 0,
            timestamp_ns: 1,
            prev_hash: genesis_hash("log"),
            principal: "svc".into(),
            signature: Some(crate::EventSignature::sign(&signer, "log", &event)),
            event,
        };
        ChainVerifier::from_genesis("log")
            .push(&signed.encode())
            .expect("signed entry verifies");
        let mut forged = signed;
        forged.event.outcome = "denied".into();
        let err = ChainVerifier::from_genesis("log")
            .push(&forged.encode())
            .expect_err("changed after signing");
        assert!(matches!(
            err,
            Error::ChainBroken {
                seq: 0,
                fault: ChainFault::BadEventSignature { .. }
            }
        ));
    }

    #[test]
    fn names_the_first_break() {
        let entries = chain("log", 6);
        // Dropping entry 2 shows up at the position it should have held.
        let mut v = ChainVerifier::from_genesis("log");
        let err = [&entries[0], &entries[1], &entries[3]]
            .iter()
            .try_for_each(|b| v.push(b).map(|_| ()))
            .expect_err("gap");
        assert_eq!(
            err,
            Error::ChainBroken {
                seq: 2,
                fault: ChainFault::SeqMismatch { found: 3 }
            }
        );
        // An entry from another log breaks at seq 0.
        let mut v = ChainVerifier::from_genesis("other");
        assert!(matches!(
            v.push(&entries[0]),
            Err(Error::ChainBroken {
                seq: 0,
                fault: ChainFault::PrevHashMismatch { .. }
            })
        ));
    }
}
