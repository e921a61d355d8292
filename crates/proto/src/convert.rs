//! Conversions between wire messages and core types.

use veritrail_core::{Entry, Event, Hash, Receipt};

use crate::v1;

/// A wire message that cannot become a core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A required message field was absent.
    #[error("field `{0}` is required")]
    Missing(&'static str),
    /// A hash field did not hold 32 bytes.
    #[error("field `{field}` must hold 32 bytes, found {len}")]
    BadHash { field: &'static str, len: usize },
}

/// A core event from the wire. Field rules are checked later by
/// [`Event::validate`], with the limits of whoever receives it.
pub fn event_from_wire(event: v1::Event) -> Event {
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

/// The wire form of a core event.
pub fn event_to_wire(event: &Event) -> v1::Event {
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
    }
}

/// The wire form of a receipt.
pub fn receipt_to_wire(receipt: &Receipt, duplicate: bool) -> v1::Receipt {
    v1::Receipt {
        seq: receipt.seq,
        entry_hash: receipt.entry_hash.as_bytes().to_vec(),
        timestamp_ns: receipt.timestamp_ns,
        duplicate,
    }
}

/// The wire form of an entry, with its canonical bytes and hash.
pub fn entry_to_wire(entry: &Entry, canonical: &[u8], hash: &Hash) -> v1::Entry {
    v1::Entry {
        seq: entry.seq,
        timestamp_ns: entry.timestamp_ns,
        prev_hash: entry.prev_hash.as_bytes().to_vec(),
        principal: entry.principal.clone(),
        event: Some(event_to_wire(&entry.event)),
        canonical: canonical.to_vec(),
        entry_hash: hash.as_bytes().to_vec(),
    }
}

/// A hash from a bytes field.
pub fn hash_from_wire(field: &'static str, bytes: &[u8]) -> Result<Hash, WireError> {
    Hash::from_slice(bytes).map_err(|_| WireError::BadHash {
        field,
        len: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
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
        assert_eq!(event_from_wire(event_to_wire(&event)), event);
    }

    #[test]
    fn hashes_need_32_bytes() {
        assert_eq!(
            hash_from_wire("h", &[0; 31]),
            Err(WireError::BadHash {
                field: "h",
                len: 31
            })
        );
        assert!(hash_from_wire("h", &[0; 32]).is_ok());
    }
}
