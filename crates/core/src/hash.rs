//! The 32-byte SHA-256 digest every structure in the log is built from.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::Error;

/// Length of every hash in the log, in bytes.
pub const HASH_LEN_BYTES: usize = 32;

/// A SHA-256 digest: an entry hash, a Merkle node, a root or a chain head.
///
/// Text forms are lowercase hex in JSON documents and standard padded base64 in
/// checkpoints, as the C2SP tlog-checkpoint format requires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_LEN_BYTES]);

impl Hash {
    /// The all-zero hash. Never a valid digest of anything in the log; useful as a
    /// placeholder in tests.
    pub const ZERO: Hash = Hash([0; HASH_LEN_BYTES]);

    /// SHA-256 over the concatenation of `parts`, without copying them together.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN_BYTES] {
        &self.0
    }

    /// Reads a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Hash, Error> {
        let array: [u8; HASH_LEN_BYTES] = bytes.try_into().map_err(|_| {
            Error::MalformedHash(format!(
                "expected {HASH_LEN_BYTES} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Hash(array))
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<Hash, Error> {
        let bytes = hex::decode(text)
            .map_err(|e| Error::MalformedHash(format!("{text:?} is not hex: {e}")))?;
        Hash::from_slice(&bytes)
    }

    /// Standard padded base64, 44 characters.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses standard padded base64; any other spelling of the same bytes is
    /// rejected so that every hash has exactly one text form.
    pub fn from_base64(text: &str) -> Result<Hash, Error> {
        let bytes = BASE64
            .decode(text)
            .map_err(|e| Error::MalformedHash(format!("{text:?} is not base64: {e}")))?;
        let hash = Hash::from_slice(&bytes)?;
        if hash.to_base64() != text {
            return Err(Error::MalformedHash(format!(
                "{text:?} is not canonical base64"
            )));
        }
        Ok(hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Domain-separation prefix of the genesis hash. See docs/FORMAT.md, "Genesis".
const GENESIS_PREFIX: &[u8] = b"veritrail/genesis/v1\n";

/// The `prev_hash` of the first entry of the log named `origin`.
///
/// Deriving it from the origin means two logs never share a chain, and an entry
/// copied from one log into another breaks the chain at once.
pub fn genesis_hash(origin: &str) -> Hash {
    Hash::digest_parts(&[GENESIS_PREFIX, origin.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let h = Hash::digest_parts(&[b"abc"]);
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
    }

    #[test]
    fn rejects_wrong_lengths_and_non_canonical_base64() {
        assert!(Hash::from_hex("abcd").is_err());
        assert!(Hash::from_slice(&[0; 31]).is_err());
        // Unpadded base64 of 32 bytes is not the canonical spelling.
        let text = Hash::ZERO.to_base64();
        assert!(Hash::from_base64(text.trim_end_matches('=')).is_err());
    }

    #[test]
    fn genesis_depends_on_origin() {
        assert_ne!(genesis_hash("a.example/log"), genesis_hash("b.example/log"));
    }
}
