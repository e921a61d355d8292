//! Events, entries and receipts.

use veritrail_core::{
    Entry, Event, EventSignature, Hash, LogEntry, Receipt, SubmittedEvent, entry_hash,
};

use super::{WireError, hash_from_wire, hash_to_wire};
use crate::v1;

impl From<v1::Event> for Event {
    /// Field rules are checked later, by [`Event::validate`], with the limits
    /// of whoever receives the event: the wire only carries it. The
    /// signature, if any, is not part of an [`Event`]: appends read a
    /// [`SubmittedEvent`], which keeps it.
    fn from(event: v1::Event) -> Event {
        Event {
            source: event.source,
            event_id: event.event_id,
            actor: event.actor,
            action: event.action,
            resource: event.resource,
            outcome: event.outcome,
            event_time_ns: event.event_time_ns,
            trace_id: event.trace_id,
            attributes: event.attributes,
            payload: event.payload,
        }
    }
}

impl TryFrom<v1::Event> for SubmittedEvent {
    type Error = WireError;

    /// The event and its signature, which must have the lengths of an Ed25519
    /// key and signature; whether it verifies is checked by the node.
    fn try_from(mut wire: v1::Event) -> Result<SubmittedEvent, WireError> {
        let signature = wire.signature.take().map(signature_from_wire).transpose()?;
        Ok(SubmittedEvent {
            event: Event::from(wire),
            signature,
        })
    }
}

impl From<&SubmittedEvent> for v1::Event {
    fn from(submitted: &SubmittedEvent) -> v1::Event {
        v1::Event {
            signature: submitted.signature.as_ref().map(signature_to_wire),
            ..v1::Event::from(&submitted.event)
        }
    }
}

fn signature_from_wire(wire: v1::EventSignature) -> Result<EventSignature, WireError> {
    let bad = || WireError::BadEventSignature {
        key_len: wire.public_key.len(),
        sig_len: wire.signature.len(),
    };
    Ok(EventSignature {
        public_key: wire.public_key.as_slice().try_into().map_err(|_| bad())?,
        signature: wire.signature.as_slice().try_into().map_err(|_| bad())?,
    })
}

fn signature_to_wire(signature: &EventSignature) -> v1::EventSignature {
    v1::EventSignature {
        public_key: signature.public_key.to_vec(),
        signature: signature.signature.to_vec(),
    }
}

impl From<&Event> for v1::Event {
    fn from(event: &Event) -> v1::Event {
        v1::Event {
            source: event.source.clone(),
            event_id: event.event_id.clone(),
            actor: event.actor.clone(),
            action: event.action.clone(),
            resource: event.resource.clone(),
            outcome: event.outcome.clone(),
            event_time_ns: event.event_time_ns,
            trace_id: event.trace_id.clone(),
            attributes: event.attributes.clone(),
            payload: event.payload.clone(),
            signature: None,
        }
    }
}

/// The wire form of a receipt, with whether the event was already held.
pub fn receipt_to_wire(receipt: &Receipt, duplicate: bool) -> v1::Receipt {
    v1::Receipt {
        seq: receipt.seq,
        entry_hash: hash_to_wire(&receipt.entry_hash),
        timestamp_ns: receipt.timestamp_ns,
        duplicate,
    }
}

/// A receipt from the wire, and whether the cluster already held the event. A
/// function, not `TryFrom`: the flag is not part of the core receipt.
pub fn receipt_from_wire(receipt: v1::Receipt) -> Result<(Receipt, bool), WireError> {
    Ok((
        Receipt {
            seq: receipt.seq,
            entry_hash: hash_from_wire("receipt.entry_hash", &receipt.entry_hash)?,
            timestamp_ns: receipt.timestamp_ns,
        },
        receipt.duplicate,
    ))
}

/// The wire form of an entry, with its canonical bytes and hash. The decoded
/// fields ride along for readers that do not decode; a client trusts only
/// the canonical bytes.
pub fn entry_to_wire(entry: &Entry, canonical: &[u8], hash: &Hash) -> v1::Entry {
    v1::Entry {
        seq: entry.seq,
        timestamp_ns: entry.timestamp_ns,
        prev_hash: hash_to_wire(&entry.prev_hash),
        principal: entry.principal.clone(),
        event: Some(v1::Event {
            signature: entry.signature.as_ref().map(signature_to_wire),
            ..v1::Event::from(&entry.event)
        }),
        canonical: canonical.to_vec(),
        entry_hash: hash_to_wire(hash),
    }
}

impl TryFrom<v1::Entry> for LogEntry {
    type Error = WireError;

    /// Decodes the canonical bytes, never the convenience fields beside them,
    /// and refuses an entry whose bytes do not match the hash or the seq sent
    /// with them: a node that sends one is broken or lying.
    fn try_from(wire: v1::Entry) -> Result<LogEntry, WireError> {
        let entry = Entry::decode(&wire.canonical).map_err(|e| WireError::EntryUndecodable {
            seq: wire.seq,
            reason: e.to_string(),
        })?;
        let hash = entry_hash(&wire.canonical);
        if wire.entry_hash != hash.as_bytes() {
            return Err(WireError::EntryHashMismatch {
                seq: wire.seq,
                computed: hash,
            });
        }
        if entry.seq != wire.seq {
            return Err(WireError::EntrySeqMismatch {
                sent: wire.seq,
                carried: entry.seq,
            });
        }
        Ok(LogEntry {
            entry,
            hash,
            canonical: wire.canonical,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut event = Event {
            source: "s".into(),
            event_id: "e".into(),
            actor: "a".into(),
            action: "x".into(),
            resource: "r".into(),
            outcome: "ok".into(),
            event_time_ns: Some(5),
            trace_id: None,
            payload: vec![1, 2, 3],
            ..Event::default()
        };
        event.attributes.insert("k".into(), "v".into());
        event
    }

    #[test]
    fn events_round_trip() {
        let event = event();
        assert_eq!(Event::from(v1::Event::from(&event)), event);
    }

    #[test]
    fn signed_events_round_trip_and_bad_lengths_are_refused() {
        let signer = veritrail_core::note::NoteSigner::from_seed("s", &[3; 32]).expect("key");
        let signed = SubmittedEvent::signed(&signer, "o", event());
        let wire = v1::Event::from(&signed);
        assert_eq!(SubmittedEvent::try_from(wire.clone()), Ok(signed));
        let mut short = wire;
        if let Some(s) = short.signature.as_mut() {
            s.signature.pop();
        }
        assert_eq!(
            SubmittedEvent::try_from(short),
            Err(WireError::BadEventSignature {
                key_len: 32,
                sig_len: 63
            })
        );
    }

    #[test]
    fn receipts_round_trip() {
        let receipt = Receipt {
            seq: 7,
            entry_hash: Hash([3; 32]),
            timestamp_ns: 11,
        };
        assert_eq!(
            receipt_from_wire(receipt_to_wire(&receipt, true)),
            Ok((receipt, true))
        );
    }

    #[test]
    fn entries_are_read_from_their_canonical_bytes_and_checked() {
        let entry = Entry {
            seq: 4,
            timestamp_ns: 9,
            prev_hash: Hash([1; 32]),
            principal: "p".into(),
            event: event(),
            signature: None,
        };
        let canonical = entry.encode();
        let hash = entry_hash(&canonical);
        let wire = entry_to_wire(&entry, &canonical, &hash);
        let read = LogEntry::try_from(wire.clone()).expect("a good entry");
        assert_eq!((read.entry, read.hash), (entry, hash));

        let mut bad = wire.clone();
        bad.entry_hash = vec![0; 32];
        assert!(matches!(
            LogEntry::try_from(bad),
            Err(WireError::EntryHashMismatch { seq: 4, .. })
        ));
        let mut bad = wire.clone();
        bad.seq = 5;
        assert_eq!(
            LogEntry::try_from(bad),
            Err(WireError::EntrySeqMismatch {
                sent: 5,
                carried: 4
            })
        );
        let mut bad = wire;
        bad.canonical.truncate(3);
        assert!(matches!(
            LogEntry::try_from(bad),
            Err(WireError::EntryUndecodable { seq: 4, .. })
        ));
    }
}
