//! Proof verification, RFC 9162 sections 2.1.3.2 and 2.1.4.2.
//!
//! These run on an auditor's machine against hashes from an untrusted node, so
//! every malformed input (wrong length, wrong sizes) is a verification failure,
//! never a panic.

use super::node_hash;
use crate::{Error, Hash};

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose root is
/// `root`, given the inclusion proof `proof`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    let computed = root_from_inclusion_proof(index, size, leaf, proof)?;
    if &computed != root {
        return Err(Error::ProofInvalid(
            "inclusion proof leads to a different root",
        ));
    }
    Ok(())
}

/// The root an inclusion proof leads to, RFC 9162 section 2.1.3.2 steps 1-5.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(Error::ProofInvalid(
                "inclusion proof is longer than the tree is deep",
            ));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(Error::ProofInvalid(
            "inclusion proof is shorter than the tree is deep",
        ));
    }
    Ok(r)
}

/// Checks that the tree of `to_size` leaves with root `to_root` extends the tree of
/// `from_size` leaves with root `from_root`, given the consistency proof `proof`.
///
/// Equal sizes need an empty proof and equal roots. From size 0 (whose root must be
/// `SHA-256("")`) any tree is an extension, and the proof must be empty.
pub fn verify_consistency(
    from_size: u64,
    to_size: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if from_size > to_size {
        return Err(Error::SizesReversed { from_size, to_size });
    }
    if from_size == 0 || from_size == to_size {
        if !proof.is_empty() {
            return Err(Error::ProofInvalid(
                "consistency proof must be empty for these sizes",
            ));
        }
        if from_size == 0 && from_root != &super::empty_root() {
            return Err(Error::ProofInvalid(
                "the root of the empty tree is SHA-256 of nothing",
            ));
        }
        if from_size == to_size && from_root != to_root {
            return Err(Error::ProofInvalid(
                "two different roots for the same tree size",
            ));
        }
        return Ok(());
    }
    let Some((&first, rest)) = proof.split_first() else {
        return Err(Error::ProofInvalid("consistency proof is empty"));
    };
    // Step 2: when the old tree is a perfect subtree, its root is the proof's
    // implicit first element.
    let (seed, rest) = if from_size.is_power_of_two() {
        (*from_root, proof)
    } else {
        (first, rest)
    };
    let mut fnode = from_size - 1;
    let mut snode = to_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = seed;
    let mut sr = seed;
    for c in rest {
        if snode == 0 {
            return Err(Error::ProofInvalid(
                "consistency proof is longer than needed",
            ));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(Error::ProofInvalid(
            "consistency proof is shorter than needed",
        ));
    }
    if &fr != from_root {
        return Err(Error::ProofInvalid(
            "consistency proof does not lead to the old root",
        ));
    }
    if &sr != to_root {
        return Err(Error::ProofInvalid(
            "consistency proof does not lead to the new root",
        ));
    }
    Ok(())
}
