//! Inclusion and consistency proofs, and frontiers.

use veritrail_core::{ConsistencyProof, Hash, InclusionProof};

use super::{WireError, hash_from_wire, hash_to_wire, hashes_from_wire, hashes_to_wire};
use crate::v1;

impl From<&InclusionProof> for v1::GetInclusionProofResponse {
    fn from(proof: &InclusionProof) -> Self {
        v1::GetInclusionProofResponse {
            seq: proof.seq,
            tree_size: proof.tree_size,
            leaf_hash: hash_to_wire(&proof.leaf),
            proof: hashes_to_wire(&proof.proof),
            root_hash: hash_to_wire(&proof.root),
        }
    }
}

impl TryFrom<v1::GetInclusionProofResponse> for InclusionProof {
    type Error = WireError;

    fn try_from(r: v1::GetInclusionProofResponse) -> Result<Self, WireError> {
        Ok(InclusionProof {
            seq: r.seq,
            tree_size: r.tree_size,
            leaf: hash_from_wire("leaf_hash", &r.leaf_hash)?,
            proof: hashes_from_wire("proof", &r.proof)?,
            root: hash_from_wire("root_hash", &r.root_hash)?,
        })
    }
}

impl From<&ConsistencyProof> for v1::GetConsistencyProofResponse {
    fn from(proof: &ConsistencyProof) -> Self {
        v1::GetConsistencyProofResponse {
            from_size: proof.from_size,
            to_size: proof.to_size,
            proof: hashes_to_wire(&proof.proof),
            from_root: hash_to_wire(&proof.from_root),
            to_root: hash_to_wire(&proof.to_root),
        }
    }
}

impl TryFrom<v1::GetConsistencyProofResponse> for ConsistencyProof {
    type Error = WireError;

    fn try_from(r: v1::GetConsistencyProofResponse) -> Result<Self, WireError> {
        Ok(ConsistencyProof {
            from_size: r.from_size,
            to_size: r.to_size,
            proof: hashes_from_wire("proof", &r.proof)?,
            from_root: hash_from_wire("from_root", &r.from_root)?,
            to_root: hash_from_wire("to_root", &r.to_root)?,
        })
    }
}

/// The wire form of the Merkle frontier of the tree of `tree_size` entries.
pub fn frontier_to_wire(tree_size: u64, hashes: &[Hash]) -> v1::GetFrontierResponse {
    v1::GetFrontierResponse {
        tree_size,
        hashes: hashes_to_wire(hashes),
    }
}

/// The hashes of a frontier from the wire. A function, not `TryFrom`: how
/// many there must be depends on the size the caller asked for, which the
/// caller checks, not on the size the answer claims.
pub fn frontier_from_wire(r: v1::GetFrontierResponse) -> Result<Vec<Hash>, WireError> {
    hashes_from_wire("hashes", &r.hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_round_trip_and_name_a_bad_field() {
        let inclusion = InclusionProof {
            seq: 2,
            tree_size: 5,
            leaf: Hash([1; 32]),
            proof: vec![Hash([2; 32]), Hash([3; 32])],
            root: Hash([4; 32]),
        };
        let wire = v1::GetInclusionProofResponse::from(&inclusion);
        assert_eq!(InclusionProof::try_from(wire.clone()), Ok(inclusion));
        let mut bad = wire;
        bad.proof[1].pop();
        assert_eq!(
            InclusionProof::try_from(bad),
            Err(WireError::BadHash {
                field: "proof",
                len: 31
            })
        );

        let consistency = ConsistencyProof {
            from_size: 3,
            to_size: 8,
            proof: vec![Hash([5; 32])],
            from_root: Hash([6; 32]),
            to_root: Hash([7; 32]),
        };
        let wire = v1::GetConsistencyProofResponse::from(&consistency);
        assert_eq!(ConsistencyProof::try_from(wire.clone()), Ok(consistency));
        let mut bad = wire;
        bad.to_root.clear();
        assert_eq!(
            ConsistencyProof::try_from(bad),
            Err(WireError::BadHash {
                field: "to_root",
                len: 0
            })
        );

        let frontier = vec![Hash([8; 32]), Hash([9; 32])];
        assert_eq!(
            frontier_from_wire(frontier_to_wire(6, &frontier)),
            Ok(frontier)
        );
    }
}
