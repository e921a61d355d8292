//! Client-signed events: a service's Ed25519 signature over what it submitted.
//!
//! A service that holds a signing key signs each event's *statement* (the log's
//! origin and the event's fields, docs/FORMAT.md section 1.1) before it sends
//! it. The log stores the signature in the entry (format version 2), so a
//! node, even the leader, that writes an event in a signing service's name
//! without its key writes an entry every verifier refuses. Which principals
//! must sign, and with which keys, is the policy's (the server's door) and
//! the auditor's (the verifier's signer list) to say; this module only
//! answers whether a signature is the one its key made over an event.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::encoding::Writer;
use crate::note::{NoteKey, NoteSigner};
use crate::{Error, Event};

/// The domain-separation prefix of every event statement: 29 ASCII bytes that
/// end in one newline, so that no other Veritrail signature (a checkpoint, a
/// key set) is ever a valid event signature or the reverse.
pub const EVENT_STATEMENT_CONTEXT: &[u8] = b"veritrail/event-signature/v1\n";

/// The signature-algorithm byte an entry stores: Ed25519, as in key strings.
pub const EVENT_SIGNATURE_ALG_ED25519: u8 = crate::note::ALG_ED25519;

/// An Ed25519 signature over an event's statement, with the public key that
/// made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSignature {
    /// The signer's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The signature over [`event_statement`].
    pub signature: [u8; 64],
}

impl fmt::Debug for EventSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EventSignature(key {}, sig {}..)",
            hex::encode(self.public_key),
            hex::encode(&self.signature[..8])
        )
    }
}

/// The bytes a service signs for `event` in the log named `origin`:
/// `"veritrail/event-signature/v1\n" || string(origin) || fields 6 to 15 of
/// the entry encoding`. The cluster's fields (seq, timestamp, chain link,
/// principal) are not in it: the service signs before the log places the
/// event, and a key is bound to its principal by the signer list.
pub fn event_statement(origin: &str, event: &Event) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + origin.len() + event.payload.len());
    let mut w = Writer::new(&mut buf);
    w.raw(EVENT_STATEMENT_CONTEXT);
    w.bytes(origin.as_bytes());
    crate::entry::encode_event_fields(&mut w, event);
    buf
}

impl EventSignature {
    /// Signs `event` for the log `origin` with `signer`'s key. Ed25519 is
    /// deterministic: the same event signed twice gives the same bytes, so a
    /// retried append is the same append.
    pub fn sign(signer: &NoteSigner, origin: &str, event: &Event) -> EventSignature {
        EventSignature {
            public_key: signer.public().public_key(),
            signature: signer.sign_bytes(&event_statement(origin, event)),
        }
    }

    /// Checks the signature over `event`'s statement for `origin`, strictly
    /// (`verify_strict`, as checkpoints are): a non-canonical or small-order key
    /// or signature is refused.
    pub fn verify(&self, origin: &str, event: &Event) -> Result<(), Error> {
        let key = VerifyingKey::from_bytes(&self.public_key).map_err(|_| {
            Error::EventSignature("the signer's public key is not an Ed25519 point".into())
        })?;
        key.verify_strict(
            &event_statement(origin, event),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| {
            Error::EventSignature(format!(
                "the signature by key {} does not verify over the event for origin {origin:?}",
                hex::encode(self.public_key)
            ))
        })
    }

    /// Whether `key` (a verifier key of the signer list) made this signature.
    pub fn is_by(&self, key: &NoteKey) -> bool {
        key.public_key() == self.public_key
    }
}

/// An event as a service submits it: the event, and its signature when the
/// service signs. The log stores a signed event as an entry of format version
/// 2, an unsigned one as version 1.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SubmittedEvent {
    pub event: Event,
    pub signature: Option<EventSignature>,
}

impl SubmittedEvent {
    /// An event the service did not sign.
    pub fn unsigned(event: Event) -> Self {
        SubmittedEvent {
            event,
            signature: None,
        }
    }

    /// `event`, signed by `signer` for the log `origin`.
    pub fn signed(signer: &NoteSigner, origin: &str, event: Event) -> Self {
        let signature = EventSignature::sign(signer, origin, &event);
        SubmittedEvent {
            event,
            signature: Some(signature),
        }
    }
}

impl From<Event> for SubmittedEvent {
    fn from(event: Event) -> Self {
        SubmittedEvent::unsigned(event)
    }
}

impl serde::Serialize for EventSignature {
    /// 96 bytes, the key then the signature, as one byte string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = [0u8; 96];
        bytes[..32].copy_from_slice(&self.public_key);
        bytes[32..].copy_from_slice(&self.signature);
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> serde::Deserialize<'de> for EventSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = EventSignature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("96 bytes: an Ed25519 public key and signature")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                let bytes: &[u8; 96] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                let mut public_key = [0u8; 32];
                let mut signature = [0u8; 64];
                public_key.copy_from_slice(&bytes[..32]);
                signature.copy_from_slice(&bytes[32..]);
                Ok(EventSignature {
                    public_key,
                    signature,
                })
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                self.visit_bytes(&v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::with_capacity(96);
                while let Some(b) = seq.next_element::<u8>()? {
                    if bytes.len() == 96 {
                        return Err(serde::de::Error::invalid_length(97, &self));
                    }
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        deserializer.deserialize_bytes(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::event::test_event as event;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("billing", &[7; 32]).expect("key")
    }

    #[test]
    fn a_signature_verifies_for_its_event_and_origin_only() {
        let sig = EventSignature::sign(&signer(), "log.example/prod", &event());
        sig.verify("log.example/prod", &event()).expect("verifies");
        assert!(sig.is_by(signer().public()));
        let err = sig
            .verify("log.example/test", &event())
            .expect_err("origin");
        assert!(err.to_string().contains("does not verify"), "{err}");
        let changed = Event {
            outcome: "denied".into(),
            ..event()
        };
        assert!(sig.verify("log.example/prod", &changed).is_err());
        let mut flipped = sig;
        flipped.signature[3] ^= 1;
        assert!(flipped.verify("log.example/prod", &event()).is_err());
    }

    #[test]
    fn the_statement_is_the_context_the_origin_and_the_entry_fields() {
        let statement = event_statement("o", &event());
        assert!(statement.starts_with(b"veritrail/event-signature/v1\n\x00\x00\x00\x01o"));
        assert_eq!(EVENT_STATEMENT_CONTEXT.len(), 29);
    }

    #[test]
    fn serde_round_trips_as_96_bytes() {
        let sig = EventSignature::sign(&signer(), "o", &event());
        let json = serde_json::to_vec(&sig).expect("serialize");
        let back: EventSignature = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(back, sig);
    }
}
