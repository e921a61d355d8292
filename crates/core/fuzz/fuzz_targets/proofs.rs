//! RFC 6962 / RFC 9162 inclusion and consistency proofs with sizes, indices,
//! hashes and proof paths taken from the input.
//!
//! Input layout (short inputs are padded with zeros), so that seeds are easy to
//! write by hand:
//!
//! | bytes   | field                                   |
//! |---------|-----------------------------------------|
//! | 0       | `mode`                                  |
//! | 1..9    | `a`, big-endian u64                     |
//! | 9..17   | `b`, big-endian u64                     |
//! | 17..49  | `h1`, a hash                            |
//! | 49..81  | `h2`, a hash                            |
//! | 81..    | `proof`, 32 bytes per hash (at most 256)|
//!
//! Every mode feeds the raw values to the verifiers, which must never panic.
//! `mode % 3` then picks a check with a known answer:
//! - 0: sizes, indices and ranges at any magnitude: the proof planners and
//!   `range_nodes` against an in-memory tree of a few leaves, which must refuse
//!   (not panic) anything outside it;
//! - 1: a real tree of 1 to 256 leaves: its proofs verify, and a fuzzed proof
//!   verifies only if it is the real one;
//! - 2: a tree of up to 2^64 - 1 equal leaves, whose every perfect node is known
//!   without storing it: proofs at extreme sizes verify, and the planners only ask
//!   for nodes inside the tree.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use veritrail_core::merkle::{
    Frontier, MemoryTree, NodeId, NodeSource, consistency_proof, empty_root, inclusion_proof,
    leaf_hash, node_hash, range_nodes, root_at, root_from_inclusion_proof, verify_consistency,
    verify_inclusion,
};
use veritrail_core::{Error, Hash};

const PROOF_MAX_HASHES: usize = 256;

#[derive(Debug)]
struct Input {
    mode: u8,
    a: u64,
    b: u64,
    h1: Hash,
    h2: Hash,
    proof: Vec<Hash>,
}

fn take<const N: usize>(u: &mut Unstructured<'_>) -> arbitrary::Result<[u8; N]> {
    let mut buf = [0u8; N];
    u.fill_buffer(&mut buf)?;
    Ok(buf)
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let [mode] = take::<1>(u)?;
        let a = u64::from_be_bytes(take(u)?);
        let b = u64::from_be_bytes(take(u)?);
        let h1 = Hash(take(u)?);
        let h2 = Hash(take(u)?);
        let rest = u.bytes(u.len())?;
        let proof = rest
            .chunks_exact(32)
            .take(PROOF_MAX_HASHES)
            .map(|c| Hash::from_slice(c).expect("32-byte chunk"))
            .collect();
        Ok(Input {
            mode,
            a,
            b,
            h1,
            h2,
            proof,
        })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// A tree of `size` leaves that all hash to `leaf`: the perfect node of level `k`
/// is the same wherever it sits, so every node of any size is known. It checks that
/// the planners only ask for nodes inside the tree.
struct Uniform {
    size: u64,
    levels: Vec<Hash>,
}

impl Uniform {
    fn new(size: u64, leaf: Hash) -> Self {
        let mut levels = vec![leaf];
        for _ in 0..64 {
            let below = *levels.last().expect("non-empty");
            levels.push(node_hash(&below, &below));
        }
        Uniform { size, levels }
    }

    /// The RFC 6962 root of the first `size` leaves, computed from the bits of
    /// `size` alone: one perfect subtree per set bit, folded right to left.
    fn root(&self, size: u64) -> Hash {
        let mut acc: Option<Hash> = None;
        for level in 0..64 {
            if size >> level & 1 == 1 {
                let node = self.levels[level];
                acc = Some(match acc {
                    None => node,
                    Some(right) => node_hash(&node, &right),
                });
            }
        }
        acc.unwrap_or_else(empty_root)
    }
}

impl NodeSource for Uniform {
    type Error = Error;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        ids.iter()
            .map(|id| {
                assert!(id.level < 64, "node {id:?} is above any tree");
                let end = (u128::from(id.index) + 1) << id.level;
                assert!(
                    end <= u128::from(self.size),
                    "planner asked for {id:?}, outside the tree of size {}",
                    self.size
                );
                Ok(self.levels[usize::from(id.level)])
            })
            .collect()
    }
}

/// The raw values, straight into the verifiers: errors are fine, panics are not.
fn raw(input: &Input) {
    let Input {
        a,
        b,
        h1,
        h2,
        proof,
        ..
    } = input;
    let _ = verify_inclusion(*a, *b, h1, proof, h2);
    let _ = verify_inclusion(*b, *a, h1, proof, h2);
    let _ = root_from_inclusion_proof(*a, *b, h1, proof);
    let _ = verify_consistency(*a, *b, h1, h2, proof);
    let _ = verify_consistency(*b, *a, h1, h2, proof);
    let _ = verify_consistency(*a, *a, h1, h1, proof);
    let _ = verify_consistency(0, *b, &empty_root(), h2, proof);
}

/// Mode 0: arbitrary magnitudes against a small in-memory tree.
fn planners(input: &Input) {
    let tree = MemoryTree::from_leaves((0u8..5).map(|i| leaf_hash(&[i])));
    let (a, b) = (input.a, input.b);
    // An inclusion proof reads every leaf but its own, so a 5-leaf tree answers
    // for sizes up to 5, and for the last leaf of size 6.
    for (index, size) in [(a, b), (b, a), (a, a), (0, a), (a, 0)] {
        let result = inclusion_proof(&tree, index, size);
        let answerable = index < size && (size <= 5 || (size == 6 && index == 5));
        assert_eq!(
            result.is_ok(),
            answerable,
            "proof of {index} in {size} from a 5-leaf tree: {result:?}"
        );
    }
    // A consistency proof between different non-zero sizes reads the new tree's
    // last leaf; otherwise it is empty.
    for (from, to) in [(a, b), (b, a), (0, a), (a, a)] {
        let result = consistency_proof(&tree, from, to);
        let answerable = from <= to && (from == 0 || from == to || to <= 5);
        assert_eq!(
            result.is_ok(),
            answerable,
            "proof {from} -> {to} from a 5-leaf tree: {result:?}"
        );
    }
    assert_eq!(root_at(&tree, a).is_ok(), a <= 5);

    // range_nodes tiles [start, end) with aligned perfect nodes, left to right.
    let (start, end) = (a.min(b), a.max(b));
    let tiles = range_nodes(start, end);
    assert!(
        tiles.len() <= 128,
        "{} tiles for [{start}, {end})",
        tiles.len()
    );
    let mut at = u128::from(start);
    for id in &tiles {
        assert!(id.level < 64);
        assert_eq!(
            u128::from(id.index) << id.level,
            at,
            "gap or overlap at {id:?}"
        );
        at += 1u128 << id.level;
    }
    assert_eq!(at, u128::from(end));
    assert!(range_nodes(end, start).is_empty() || start == end);
    assert_eq!(Frontier::node_ids(a).len(), a.count_ones() as usize);
}

/// Mode 1: a real tree of 1 to 256 leaves.
fn small_tree(input: &Input) {
    let n = input.a % 256 + 1;
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[input.h1.as_bytes().as_slice(), &i.to_be_bytes()].concat()))
        .collect();
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    let root = tree.root();

    let index = input.b % n;
    let leaf = leaves[index as usize];
    let real = inclusion_proof(&tree, index, n).expect("inclusion proof");
    verify_inclusion(index, n, &leaf, &real, &root).expect("real inclusion proof verifies");
    if verify_inclusion(index, n, &leaf, &input.proof, &root).is_ok() {
        assert_eq!(input.proof, real, "a forged inclusion proof verified");
    }

    let m = (input.b >> 32) % (n + 1);
    let old_root = root_at(&tree, m).expect("old root");
    assert_eq!(
        old_root,
        MemoryTree::from_leaves(leaves[..m as usize].iter().copied()).root()
    );
    let real = consistency_proof(&tree, m, n).expect("consistency proof");
    verify_consistency(m, n, &old_root, &root, &real).expect("real consistency proof verifies");
    if verify_consistency(m, n, &old_root, &root, &input.proof).is_ok() {
        assert_eq!(input.proof, real, "a forged consistency proof verified");
    }

    // A frontier restored at m and extended to n gives the same root.
    let ids = Frontier::node_ids(m);
    let nodes = tree.nodes(&ids).expect("frontier nodes");
    let mut frontier = Frontier::from_parts(m, nodes).expect("frontier");
    assert_eq!(frontier.root(), old_root);
    for leaf in &leaves[m as usize..] {
        frontier.push(*leaf, |_, _| {});
    }
    assert_eq!(frontier.root(), root);
}

/// Mode 2: a tree of `a` equal leaves, up to 2^64 - 1 of them.
fn huge_tree(input: &Input) {
    let size = input.a;
    let tree = Uniform::new(size, input.h1);
    let root = root_at(&tree, size).expect("root");
    assert_eq!(root, tree.root(size));

    if size > 0 {
        let index = input.b % size;
        let proof = inclusion_proof(&tree, index, size).expect("inclusion proof");
        assert!(proof.len() <= 64);
        verify_inclusion(index, size, &input.h1, &proof, &root)
            .expect("real inclusion proof verifies");
        if verify_inclusion(index, size, &input.h1, &input.proof, &root).is_ok() {
            assert_eq!(input.proof, proof, "a forged inclusion proof verified");
        }
    }
    assert!(inclusion_proof(&tree, size, size).is_err());

    let from = if size == u64::MAX {
        input.b
    } else {
        input.b % (size + 1)
    };
    let old_root = tree.root(from);
    assert_eq!(root_at(&tree, from).expect("old root"), old_root);
    let proof = consistency_proof(&tree, from, size).expect("consistency proof");
    assert!(proof.len() <= 128);
    verify_consistency(from, size, &old_root, &root, &proof)
        .expect("real consistency proof verifies");
    if verify_consistency(from, size, &old_root, &root, &input.proof).is_ok() {
        assert_eq!(input.proof, proof, "a forged consistency proof verified");
    }
    if from < size {
        assert!(consistency_proof(&tree, size, from).is_err());
    }
}

fuzz_target!(|input: Input| {
    raw(&input);
    match input.mode % 3 {
        0 => planners(&input),
        1 => small_tree(&input),
        _ => huge_tree(&input),
    }
});
