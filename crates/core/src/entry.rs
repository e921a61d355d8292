//! The log entry: an event as the cluster recorded it, and its canonical bytes.
//!
//! The canonical encoding is specified byte for byte in docs/FORMAT.md, section
//! "Entry". It is the only form that is ever hashed; protobuf and JSON forms of an
//! entry exist for transport and display but are never hashed, since neither is
//! canonical across languages.

use crate::encoding::{Reader, Writer};
use crate::limits::{
    FORMAT_ATTRIBUTES_MAX_COUNT, FORMAT_ENTRY_MAX_BYTES, FORMAT_FIELD_MAX_BYTES,
    FORMAT_PAYLOAD_MAX_BYTES,
};
use crate::signature::EVENT_SIGNATURE_ALG_ED25519;
use crate::{Error, Event, EventSignature, Hash, merkle};

/// An event as the log stores it: placed at a dense sequence number, stamped with
/// the cluster's timestamp and the authenticated principal, and chained to the
/// entry before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 0, without gaps. Also the entry's leaf index
    /// in the Merkle tree.
    pub seq: u64,
    /// Cluster time, unix nanoseconds. Never smaller than the previous entry's.
    pub timestamp_ns: u64,
    /// Hash of the previous entry, or the log's genesis hash for `seq` 0.
    pub prev_hash: Hash,
    /// The identity the server authenticated for the request that carried the
    /// event. Set by the server, never by the request.
    pub principal: String,
    /// The event as the service submitted it.
    pub event: Event,
    /// The service's signature over the event, when it signed it: the entry is
    /// then written in format version 2.
    pub signature: Option<EventSignature>,
}

/// What the log answers an append with: where the event landed, and the hash that
/// an inclusion proof for it will prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub seq: u64,
    pub entry_hash: Hash,
    pub timestamp_ns: u64,
}

impl Entry {
    /// The version byte of an entry without an event signature.
    pub const FORMAT_VERSION: u8 = 1;
    /// The version byte of an entry that carries an event signature.
    pub const FORMAT_VERSION_SIGNED: u8 = 2;

    /// The canonical bytes of this entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the canonical bytes of this entry to `buf`: version 1 for an
    /// unsigned event, version 2 (version 1's fields, then the signature) for a
    /// signed one.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let mut w = Writer::new(buf);
        w.u8(self.version());
        w.u64(self.seq);
        w.u64(self.timestamp_ns);
        w.raw(self.prev_hash.as_bytes());
        w.bytes(self.principal.as_bytes());
        encode_event_fields(&mut w, &self.event);
        if let Some(signature) = &self.signature {
            w.u8(EVENT_SIGNATURE_ALG_ED25519);
            w.raw(&signature.public_key);
            w.raw(&signature.signature);
        }
    }

    /// The format version of this entry's encoding: 2 when it carries an event
    /// signature, 1 otherwise.
    pub fn version(&self) -> u8 {
        if self.signature.is_some() {
            Self::FORMAT_VERSION_SIGNED
        } else {
            Self::FORMAT_VERSION
        }
    }

    /// Checks the event signature, if the entry carries one, for the log named
    /// `origin`. An unsigned (version 1) entry passes: whether its principal
    /// had to sign is the signer list's question, not the format's.
    pub fn verify_signature(&self, origin: &str) -> Result<(), Error> {
        match &self.signature {
            Some(signature) => signature.verify(origin, &self.event),
            None => Ok(()),
        }
    }

    /// Decodes canonical bytes. Total: any input either decodes to the one entry
    /// whose encoding it is, or gives an error naming the byte offset and reason.
    pub fn decode(bytes: &[u8]) -> Result<Entry, Error> {
        if bytes.len() > FORMAT_ENTRY_MAX_BYTES {
            return Err(Error::Decode {
                offset_bytes: 0,
                reason: "entry is larger than the format maximum",
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != Self::FORMAT_VERSION && version != Self::FORMAT_VERSION_SIGNED {
            return Err(Error::UnsupportedVersion {
                version,
                supported: Self::FORMAT_VERSION_SIGNED,
            });
        }
        let seq = r.u64()?;
        let timestamp_ns = r.u64()?;
        let prev_hash = Hash(r.array32()?);
        let principal = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let source = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let event_id = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let actor = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let action = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let resource = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let outcome = r.string(FORMAT_FIELD_MAX_BYTES)?;
        let event_time_ns = if r.presence()? { Some(r.u64()?) } else { None };
        let trace_id = if r.presence()? {
            Some(r.string(FORMAT_FIELD_MAX_BYTES)?)
        } else {
            None
        };
        let count = r.u32()? as usize;
        if count > FORMAT_ATTRIBUTES_MAX_COUNT {
            return Err(r.error("attribute count exceeds the format maximum"));
        }
        let mut attributes = std::collections::BTreeMap::new();
        let mut previous_key: Option<String> = None;
        for _ in 0..count {
            let key_offset = r.offset_bytes();
            let key = r.string(FORMAT_FIELD_MAX_BYTES)?;
            if previous_key
                .as_ref()
                .is_some_and(|p| p.as_bytes() >= key.as_bytes())
            {
                return Err(Error::Decode {
                    offset_bytes: key_offset,
                    reason: "attribute keys must be unique and in ascending byte order",
                });
            }
            let value = r.string(FORMAT_FIELD_MAX_BYTES)?;
            previous_key = Some(key.clone());
            attributes.insert(key, value);
        }
        let payload = r.bytes(FORMAT_PAYLOAD_MAX_BYTES)?.to_vec();
        let signature = if version == Self::FORMAT_VERSION_SIGNED {
            if r.u8()? != EVENT_SIGNATURE_ALG_ED25519 {
                return Err(Error::Decode {
                    offset_bytes: r.offset_bytes() - 1,
                    reason: "signature algorithm must be 0x01 (Ed25519)",
                });
            }
            let public_key = r.array32()?;
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&r.array32()?);
            signature[32..].copy_from_slice(&r.array32()?);
            Some(EventSignature {
                public_key,
                signature,
            })
        } else {
            None
        };
        r.finish()?;
        Ok(Entry {
            seq,
            timestamp_ns,
            prev_hash,
            principal,
            event: Event {
                source,
                event_id,
                actor,
                action,
                resource,
                outcome,
                event_time_ns,
                trace_id,
                attributes,
                payload,
            },
            signature,
        })
    }

    /// The entry hash: the RFC 6962 leaf hash of the canonical bytes. The next
    /// entry carries it as `prev_hash`, and it is this entry's leaf in the Merkle
    /// tree, so one hash serves both the chain and the tree.
    pub fn hash(&self) -> Hash {
        entry_hash(&self.encode())
    }

    /// The receipt an append of this entry answers with.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            seq: self.seq,
            entry_hash: self.hash(),
            timestamp_ns: self.timestamp_ns,
        }
    }

    fn encoded_len_hint(&self) -> usize {
        let e = &self.event;
        let attributes: usize = e
            .attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        1 + 8
            + 8
            + 32
            + 4 * 8
            + 1
            + 8
            + 1
            + 4
            + 4
            + self.principal.len()
            + e.source.len()
            + e.event_id.len()
            + e.actor.len()
            + e.action.len()
            + e.resource.len()
            + e.outcome.len()
            + e.trace_id.as_ref().map_or(0, String::len)
            + attributes
            + e.payload.len()
            + self.signature.map_or(0, |_| 1 + 32 + 64)
    }
}

/// Fields 6 to 15 of the entry encoding: the event as submitted. An event
/// statement (what a service signs) is these bytes after its prefix.
pub(crate) fn encode_event_fields(w: &mut Writer<'_>, event: &Event) {
    w.bytes(event.source.as_bytes());
    w.bytes(event.event_id.as_bytes());
    w.bytes(event.actor.as_bytes());
    w.bytes(event.action.as_bytes());
    w.bytes(event.resource.as_bytes());
    w.bytes(event.outcome.as_bytes());
    match event.event_time_ns {
        Some(t) => {
            w.u8(1);
            w.u64(t);
        }
        None => w.u8(0),
    }
    match &event.trace_id {
        Some(id) => {
            w.u8(1);
            w.bytes(id.as_bytes());
        }
        None => w.u8(0),
    }
    // A BTreeMap iterates in ascending key order, which for `String` is
    // ascending UTF-8 byte order: exactly the order the format requires.
    w.u32(event.attributes.len() as u32);
    for (key, value) in &event.attributes {
        w.bytes(key.as_bytes());
        w.bytes(value.as_bytes());
    }
    w.bytes(&event.payload);
}

/// The hash of an entry given its canonical bytes: `SHA-256(0x00 || bytes)`.
pub fn entry_hash(canonical_bytes: &[u8]) -> Hash {
    merkle::leaf_hash(canonical_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Entry {
        let mut event = Event {
            source: "billing".into(),
            event_id: "evt-1".into(),
            actor: "alice".into(),
            action: "invoice.refund".into(),
            resource: "invoice/42".into(),
            outcome: "success".into(),
            event_time_ns: Some(1_700_000_000_000_000_000),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            payload: b"{\"amount\":42}".to_vec(),
            ..Event::default()
        };
        event.attributes.insert("ip".into(), "10.0.0.1".into());
        event.attributes.insert("env".into(), "prod".into());
        Entry {
            seq: 7,
            timestamp_ns: 1_700_000_000_123_456_789,
            prev_hash: Hash([0xab; 32]),
            principal: "spiffe://example.org/billing".into(),
            event,
            signature: None,
        }
    }

    fn signed_sample() -> Entry {
        let entry = sample();
        let signer = crate::note::NoteSigner::from_seed("billing", &[9; 32]).expect("key");
        Entry {
            signature: Some(EventSignature::sign(&signer, "log.example", &entry.event)),
            ..entry
        }
    }

    #[test]
    fn a_signed_entry_is_version_2_and_round_trips() {
        let entry = signed_sample();
        let bytes = entry.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes.len(), sample().encode().len() + 97);
        assert_eq!(bytes.len(), entry.encoded_len_hint());
        // Version 2 is version 1's bytes, then the signature.
        assert_eq!(&bytes[1..bytes.len() - 97], &sample().encode()[1..]);
        assert_eq!(Entry::decode(&bytes), Ok(entry.clone()));
        entry.verify_signature("log.example").expect("verifies");
        assert!(entry.verify_signature("log.other").is_err());
        sample()
            .verify_signature("log.example")
            .expect("unsigned passes");
        for len in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..len]).is_err(), "prefix of {len}");
        }
        let mut bad_alg = bytes.clone();
        bad_alg[bytes.len() - 97] = 2;
        assert!(matches!(
            Entry::decode(&bad_alg),
            Err(Error::Decode {
                reason: "signature algorithm must be 0x01 (Ed25519)",
                ..
            })
        ));
        // A version 1 entry relabelled 2 lacks its signature, and the reverse
        // leaves 97 trailing bytes.
        let mut relabelled = sample().encode();
        relabelled[0] = 2;
        assert!(Entry::decode(&relabelled).is_err());
        let mut unsigned = bytes;
        unsigned[0] = 1;
        assert!(Entry::decode(&unsigned).is_err());
    }

    #[test]
    fn round_trips() {
        let entry = sample();
        let bytes = entry.encode();
        assert_eq!(bytes.len(), entry.encoded_len_hint());
        assert_eq!(Entry::decode(&bytes), Ok(entry));
    }

    #[test]
    fn rejects_trailing_bytes_and_truncation() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(Entry::decode(&bytes), Err(Error::Decode { .. })));
        bytes.pop();
        for len in 0..bytes.len() {
            assert!(
                Entry::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn rejects_unknown_version() {
        let mut bytes = sample().encode();
        bytes[0] = 3;
        assert_eq!(
            Entry::decode(&bytes),
            Err(Error::UnsupportedVersion {
                version: 3,
                supported: 2
            })
        );
    }

    #[test]
    fn rejects_unsorted_attributes_and_bad_tags() {
        let entry = sample();
        let bytes = entry.encode();
        // The encoding writes "env" before "ip"; swapping the two keys' bytes (same
        // length is not needed: rebuild by hand) must be refused.
        let env = bytes
            .windows(3)
            .position(|w| w == b"env")
            .expect("env key present");
        let ip = bytes
            .windows(2)
            .position(|w| w == b"ip")
            .expect("ip key present");
        assert!(env < ip);
        let mut swapped = bytes.clone();
        swapped[env..env + 3].copy_from_slice(b"zzz");
        assert!(matches!(
            Entry::decode(&swapped),
            Err(Error::Decode {
                reason: "attribute keys must be unique and in ascending byte order",
                ..
            })
        ));
        // The event-time presence tag sits right after the outcome string.
        let tag = bytes
            .windows(7)
            .position(|w| w == b"success")
            .expect("outcome present")
            + 7;
        let mut bad = bytes.clone();
        bad[tag] = 2;
        assert!(matches!(
            Entry::decode(&bad),
            Err(Error::Decode {
                reason: "presence tag must be 0 or 1",
                ..
            })
        ));
    }

    #[test]
    fn rejects_invalid_utf8() {
        let bytes = sample().encode();
        let at = bytes
            .windows(5)
            .position(|w| w == b"alice")
            .expect("actor present");
        let mut bad = bytes.clone();
        bad[at] = 0xff;
        assert!(matches!(
            Entry::decode(&bad),
            Err(Error::Decode {
                reason: "string field is not valid UTF-8",
                ..
            })
        ));
    }

    #[test]
    fn every_single_bit_flip_changes_the_hash_or_fails_to_decode() {
        let entry = sample();
        let bytes = entry.encode();
        let hash = entry_hash(&bytes);
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            assert_ne!(entry_hash(&flipped), hash);
            if let Ok(decoded) = Entry::decode(&flipped) {
                assert_ne!(
                    decoded, entry,
                    "bit {i} flipped yet decoded to the same entry"
                );
            }
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    prop_compose! {
        fn arb_entry()(
            seq in any::<u64>(), ts in any::<u64>(), prev in any::<[u8; 32]>(),
            principal in arb_text(), source in arb_text(), event_id in arb_text(),
            actor in arb_text(), action in arb_text(), resource in arb_text(),
            outcome in arb_text(), event_time_ns in any::<Option<u64>>(),
            trace_id in proptest::option::of(arb_text()),
            attributes in proptest::collection::btree_map(arb_text(), arb_text(), 0..5),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            signature in proptest::option::of((any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>())),
        ) -> Entry {
            // Decoding checks structure only, so any 96 bytes make a signature here.
            let signature = signature.map(|(public_key, r, s)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&r);
                signature[32..].copy_from_slice(&s);
                EventSignature { public_key, signature }
            });
            Entry { seq, timestamp_ns: ts, prev_hash: Hash(prev), principal, event: Event {
                source, event_id, actor, action, resource, outcome, event_time_ns, trace_id,
                attributes, payload }, signature }
        }
    }

    proptest! {
        #[test]
        fn any_entry_round_trips(entry in arb_entry()) {
            let bytes = entry.encode();
            prop_assert_eq!(Entry::decode(&bytes), Ok(entry));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_is_canonical(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            if let Ok(entry) = Entry::decode(&bytes) {
                prop_assert_eq!(entry.encode(), bytes);
            }
        }

        #[test]
        fn mutated_valid_entries_never_panic_and_stay_canonical(
            entry in arb_entry(), at in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let mut bytes = entry.encode();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(decoded) = Entry::decode(&bytes) {
                prop_assert_eq!(decoded.encode(), bytes);
            }
        }
    }
}
