//! Co-signed checkpoints.

use veritrail_core::{Hash, SignedCheckpoint};

use super::{WireError, hash_from_wire, hash_to_wire};
use crate::v1;

/// The wire form of a co-signed checkpoint. `root` is `None` when the stored
/// note does not parse as a checkpoint, which the store never accepts: the
/// field is then left empty, and a client refuses the answer rather than
/// trust a root nobody computed.
pub fn checkpoint_to_wire(
    tree_size: u64,
    signed_note: String,
    root: Option<&Hash>,
) -> v1::GetCheckpointResponse {
    v1::GetCheckpointResponse {
        signed_note,
        tree_size,
        root_hash: root.map(hash_to_wire).unwrap_or_default(),
    }
}

impl From<&SignedCheckpoint> for v1::GetCheckpointResponse {
    fn from(checkpoint: &SignedCheckpoint) -> Self {
        checkpoint_to_wire(
            checkpoint.tree_size,
            checkpoint.note.clone(),
            Some(&checkpoint.root),
        )
    }
}

impl TryFrom<v1::GetCheckpointResponse> for SignedCheckpoint {
    type Error = WireError;

    /// The root and size are the node's claim; only the note's signatures,
    /// checked by whoever trusts the keys, make them worth anything.
    fn try_from(r: v1::GetCheckpointResponse) -> Result<Self, WireError> {
        Ok(SignedCheckpoint {
            tree_size: r.tree_size,
            root: hash_from_wire("root_hash", &r.root_hash)?,
            note: r.signed_note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_an_unparsed_root_is_refused() {
        let checkpoint = SignedCheckpoint {
            tree_size: 3,
            root: Hash([1; 32]),
            note: "note".into(),
        };
        let wire = v1::GetCheckpointResponse::from(&checkpoint);
        assert_eq!(SignedCheckpoint::try_from(wire), Ok(checkpoint));
        assert_eq!(
            SignedCheckpoint::try_from(checkpoint_to_wire(3, "note".into(), None)),
            Err(WireError::BadHash {
                field: "root_hash",
                len: 0
            })
        );
    }
}
