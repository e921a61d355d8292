//! Property tests: the efficient, node-source based proofs equal the naive RFC 6962
//! recursion and verify; anything else fails to verify.

use proptest::prelude::*;

use super::{
    MemoryTree, consistency_proof, inclusion_proof, leaf_hash, reference, root_at,
    verify_consistency, verify_inclusion,
};
use crate::Hash;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inclusion_proofs_match_reference_and_verify(n in 1usize..3000, seed in any::<u64>()) {
        let leaves = leaves(n);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        // A sample of indices and sizes: all would be quadratic.
        for j in 0..16u64 {
            let size = 1 + (seed.wrapping_mul(j + 1).rotate_left(j as u32) % n as u64);
            let index = seed.wrapping_add(j * 7919) % size;
            let proof = inclusion_proof(&tree, index, size).expect("proof");
            let naive = reference::path(index as usize, &leaves[..size as usize]);
            prop_assert_eq!(&proof, &naive);
            let root = root_at(&tree, size).expect("root");
            prop_assert_eq!(root, reference::root(&leaves[..size as usize]));
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root).is_ok());
        }
    }

    #[test]
    fn consistency_proofs_match_reference_and_verify(n in 1usize..3000, seed in any::<u64>()) {
        let leaves = leaves(n);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        for j in 0..16u64 {
            let to = 1 + (seed.rotate_left(j as u32 * 3) % n as u64);
            let from = seed.wrapping_mul(j + 3) % (to + 1);
            let proof = consistency_proof(&tree, from, to).expect("proof");
            prop_assert_eq!(&proof, &reference::consistency(from as usize, &leaves[..to as usize]));
            let from_root = root_at(&tree, from).expect("root");
            let to_root = root_at(&tree, to).expect("root");
            prop_assert!(verify_consistency(from, to, &from_root, &to_root, &proof).is_ok());
        }
    }

    #[test]
    fn any_single_bit_flip_in_a_proof_fails(n in 2usize..600, pick in any::<u64>(), bit in 0usize..256) {
        let leaves = leaves(n);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        let size = 2 + pick % (n as u64 - 1);
        let index = pick.rotate_left(17) % size;
        let root = root_at(&tree, size).expect("root");
        let mut proof = inclusion_proof(&tree, index, size).expect("proof");
        let element = (pick as usize) % proof.len();
        proof[element].0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root).is_err());

        let from = 1 + pick.rotate_left(5) % (size - 1);
        let from_root = root_at(&tree, from).expect("root");
        let mut proof = consistency_proof(&tree, from, size).expect("proof");
        let element = (pick as usize) % proof.len();
        proof[element].0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(from, size, &from_root, &root, &proof).is_err());
    }

    #[test]
    fn proofs_for_other_positions_fail(n in 3usize..400, pick in any::<u64>()) {
        let leaves = leaves(n);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        let size = 3 + pick % (n as u64 - 2);
        let index = pick.rotate_left(9) % size;
        let root = root_at(&tree, size).expect("root");
        let proof = inclusion_proof(&tree, index, size).expect("proof");
        for wrong in [index + 1, index.wrapping_sub(1), index ^ 2] {
            if wrong < size && wrong != index {
                prop_assert!(verify_inclusion(wrong, size, &leaves[index as usize], &proof, &root).is_err());
            }
        }
        prop_assert!(verify_inclusion(index, size * 2, &leaves[index as usize], &proof, &root).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &longer, &root).is_err());
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof[1..], &root).is_err());
        }
    }
}
