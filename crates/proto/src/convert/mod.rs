//! Conversions between wire messages and core types, one module per family.
//!
//! From the wire they are `TryFrom` impls on the core types (allowed by the
//! orphan rules because the wire type, a parameter of the trait, is local
//! here), failing with a [`WireError`] that names the field. Where one message
//! is not one core value (a receipt carries a `duplicate` flag beside the core
//! receipt, a frontier is a bare list of hashes) they are `*_from_wire`
//! functions instead. To the wire they are `From` impls on the wire types, or
//! `*_to_wire` functions where the core value comes in parts.

mod checkpoint;
mod entry;
mod proof;
mod query;
mod range;

use veritrail_core::Hash;

pub use checkpoint::checkpoint_to_wire;
pub use entry::{entry_to_wire, receipt_from_wire, receipt_to_wire};
pub use proof::{frontier_from_wire, frontier_to_wire};
pub use query::scan_to_wire;

/// A wire message that cannot become a core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A required message field was absent.
    #[error("field `{0}` is required")]
    Missing(&'static str),
    /// A hash field did not hold 32 bytes.
    #[error("field `{field}` must hold 32 bytes, found {len}")]
    BadHash { field: &'static str, len: usize },
    /// An entry's `canonical` bytes do not decode.
    #[error("entry {seq} does not decode: {reason}")]
    EntryUndecodable { seq: u64, reason: String },
    /// An entry's `canonical` bytes hash to something other than its
    /// `entry_hash`.
    #[error("entry {seq}: its bytes hash to {computed}, not to the hash sent with them")]
    EntryHashMismatch { seq: u64, computed: Hash },
    /// An entry's `canonical` bytes carry another seq than its `seq` field.
    #[error("entry sent as seq {sent} carries seq {carried}")]
    EntrySeqMismatch { sent: u64, carried: u64 },
    /// An event signature whose key or signature has the wrong length.
    #[error(
        "event signature: the public key must hold 32 bytes and the signature 64, found {key_len} and {sig_len}"
    )]
    BadEventSignature { key_len: usize, sig_len: usize },
}

/// A hash from a bytes field.
pub fn hash_from_wire(field: &'static str, bytes: &[u8]) -> Result<Hash, WireError> {
    Hash::from_slice(bytes).map_err(|_| WireError::BadHash {
        field,
        len: bytes.len(),
    })
}

/// The wire form of a hash: its 32 bytes.
pub fn hash_to_wire(hash: &Hash) -> Vec<u8> {
    hash.as_bytes().to_vec()
}

/// Hashes from a repeated bytes field; one of the wrong length fails them all.
pub(crate) fn hashes_from_wire(
    field: &'static str,
    wire: &[Vec<u8>],
) -> Result<Vec<Hash>, WireError> {
    wire.iter().map(|h| hash_from_wire(field, h)).collect()
}

pub(crate) fn hashes_to_wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(hash_to_wire).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            hashes_from_wire("proof", &[vec![0; 32], vec![0; 33]]),
            Err(WireError::BadHash {
                field: "proof",
                len: 33
            })
        );
    }
}
