//! C2SP `tlog-cosignature` v1 with Ed25519: a witness's timestamped statement
//! that, as of that time, a checkpoint is the largest consistent tree head it
//! has seen for the checkpoint's origin.
//!
//! A cosignature is a signed-note signature line: `— <witness name>
//! base64(key id || u64 timestamp || Ed25519 signature)`, with the key id
//! `SHA-256(name || "\n" || 0x04 || public key)[:4]` and the signature taken
//! over `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint body.
//! Format: docs/FORMAT.md section 12. This module knows no clock: the witness
//! passes the time it signs at.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::Error;
use crate::note::{NoteSignature, key_string, named_key, parse_named_key, parse_signer_key};

/// The signature-type byte of Ed25519 cosignatures (v1) in key ids and keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Bytes of a cosignature after its key id: the timestamp and the signature.
const COSIGNATURE_BYTES: usize = 8 + 64;

/// What a v1 cosigner signs: its header line, the time line, then the whole
/// checkpoint body (its final newline included, no signature lines).
pub fn signed_message(body: &str, timestamp: u64) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(body.as_bytes());
    message
}

/// A witness's public key: its name and the Ed25519 key it cosigns with.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignerKey {
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, Error> {
        let (name, id, key) = named_key(name, ALG_COSIGNATURE_V1, public_key)?;
        Ok(CosignerKey { name, id, key })
    }

    /// Parses the verifier-key string `<name>+<8 hex key id>+<base64(0x04 || key)>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let what = format!("witness key {text:?}");
        let (name, id, key) = parse_named_key(text, ALG_COSIGNATURE_V1, &what)?;
        Ok(CosignerKey { name, id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is a line of this key: same name and key id.
    pub fn matches(&self, signature: &NoteSignature) -> bool {
        self.name == signature.name && self.id == signature.key_id
    }

    /// Checks this key's cosignature over a checkpoint body; the time it was
    /// made (POSIX seconds). `Err` when the line is not this key's, is not
    /// 72 bytes after its key id, or does not verify.
    pub fn verify(&self, body: &str, signature: &NoteSignature) -> Result<u64, Error> {
        let bad = || Error::BadSignature {
            name: signature.name.clone(),
            key_id: signature.key_id,
        };
        if !self.matches(signature) || signature.signature.len() != COSIGNATURE_BYTES {
            return Err(bad());
        }
        let (time, sig) = signature.signature.split_at(8);
        let timestamp = u64::from_be_bytes(time.try_into().map_err(|_| bad())?);
        if timestamp > i64::MAX as u64 {
            return Err(bad());
        }
        let sig: &[u8; 64] = sig.try_into().map_err(|_| bad())?;
        self.key
            .verify_strict(
                &signed_message(body, timestamp),
                &Signature::from_bytes(sig),
            )
            .map_err(|_| bad())?;
        Ok(timestamp)
    }
}

impl fmt::Display for CosignerKey {
    /// The verifier-key string, as [`CosignerKey::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = key_string(&self.name, self.id, ALG_COSIGNATURE_V1, self.key.as_bytes());
        f.write_str(&key)
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({self})")
    }
}

/// A witness's signing key.
pub struct Cosigner {
    public: CosignerKey,
    secret: SigningKey,
}

impl Cosigner {
    /// A cosigner for `name` from a 32-byte Ed25519 seed, which the caller
    /// draws from a cryptographic random source.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        let secret = SigningKey::from_bytes(seed);
        let public = CosignerKey::new(name, secret.verifying_key().as_bytes())?;
        Ok(Cosigner { public, secret })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64(0x04 || seed)>`, the signer-key
    /// form of signed notes with the cosignature type byte.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, seed) = parse_signer_key(text, ALG_COSIGNATURE_V1, "witness signer key")?;
        Cosigner::from_seed(&name, &seed)
    }

    /// The signer-key string, as [`Cosigner::parse`] reads it. Secret.
    pub fn to_signer_string(&self) -> String {
        let (name, id) = (&self.public.name, self.public.id);
        let seed = self.secret.to_bytes();
        format!(
            "PRIVATE+KEY+{}",
            key_string(name, id, ALG_COSIGNATURE_V1, &seed)
        )
    }

    pub fn public(&self) -> &CosignerKey {
        &self.public
    }

    /// Cosigns a checkpoint body at `timestamp` (POSIX seconds, at most
    /// 2^63 - 1).
    pub fn cosign(&self, body: &str, timestamp: u64) -> Result<NoteSignature, Error> {
        if timestamp > i64::MAX as u64 {
            return Err(Error::MalformedNote(format!(
                "cosignature time {timestamp} is beyond 2^63 - 1"
            )));
        }
        // A body the note format cannot carry is no checkpoint.
        crate::note::SignedNote::new(body)?;
        let signature = self.secret.sign(&signed_message(body, timestamp));
        let mut bytes = Vec::with_capacity(COSIGNATURE_BYTES);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&signature.to_bytes());
        Ok(NoteSignature {
            name: self.public.name.clone(),
            key_id: self.public.id,
            signature: bytes,
        })
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({}, secret elided)", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    const BODY: &str = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> Cosigner {
        Cosigner::from_seed("witness.example/w1", &[7; 32]).expect("cosigner")
    }

    #[test]
    fn a_cosignature_verifies_with_its_time_and_nothing_else_does() {
        let w = witness();
        let line = w.cosign(BODY, 1_679_315_147).expect("cosign");
        assert_eq!(line.signature.len(), 72);
        assert_eq!(w.public().verify(BODY, &line), Ok(1_679_315_147));

        let mut later = line.clone();
        later.signature[7] ^= 1;
        assert!(w.public().verify(BODY, &later).is_err(), "time altered");
        let other_body = BODY.replace('5', "6");
        assert!(
            w.public().verify(&other_body, &line).is_err(),
            "body altered"
        );
        let other = Cosigner::from_seed("witness.example/w1", &[8; 32]).expect("other");
        assert!(other.public().verify(BODY, &line).is_err(), "another key");
    }

    #[test]
    fn the_key_id_uses_type_4_so_a_note_key_never_passes_for_a_witness() {
        let w = witness();
        let same_seed = NoteSigner::from_seed("witness.example/w1", &[7; 32]).expect("signer");
        assert_eq!(same_seed.public().public_key(), w.public().public_key());
        assert_ne!(same_seed.public().id(), w.public().id());
        // A note signature by the same key is not a cosignature.
        let note_line = same_seed.sign(BODY).expect("sign");
        assert!(w.public().verify(BODY, &note_line).is_err());
    }

    #[test]
    fn keys_round_trip_and_a_note_key_string_is_refused() {
        let w = witness();
        let parsed = CosignerKey::parse(&w.public().to_string()).expect("vkey");
        assert_eq!(&parsed, w.public());
        let again = Cosigner::parse(&w.to_signer_string()).expect("skey");
        assert_eq!(again.public(), w.public());
        let note_key = NoteSigner::from_seed("n", &[1; 32]).expect("signer");
        let refused = CosignerKey::parse(&note_key.public().to_string()).expect_err("type 1");
        assert!(refused.to_string().contains("0x01"), "{refused}");
    }

    #[test]
    fn the_signed_message_is_the_specs() {
        assert_eq!(
            signed_message(BODY, 1_679_315_147),
            format!("cosignature/v1\ntime 1679315147\n{BODY}").into_bytes()
        );
    }
}
