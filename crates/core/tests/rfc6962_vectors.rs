//! The public RFC 6962 reference vectors: Certificate Transparency's eight leaves,
//! the roots of every size from 0 to 8, and the inclusion and consistency proofs from
//! google/certificate-transparency `cpp/merkletree/merkle_tree_test.cc` and
//! transparency-dev/merkle `testonly/constants.go` (indices here are 0-based).

use veritrail_core::Hash;
use veritrail_core::merkle::{
    MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root_at, verify_consistency,
    verify_inclusion,
};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (index, size, path)
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (from size, to size, proof)
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn hash(hex: &str) -> Hash {
    Hash::from_hex(hex).expect("vector hex")
}

fn hashes(hexes: &[&str]) -> Vec<Hash> {
    hexes.iter().map(|h| hash(h)).collect()
}

fn leaf_hashes() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).expect("leaf hex")))
        .collect()
}

fn tree() -> MemoryTree {
    MemoryTree::from_leaves(leaf_hashes())
}

#[test]
fn roots_of_every_size() {
    let leaves = leaf_hashes();
    for (size, expected) in ROOTS.iter().enumerate() {
        let incremental = MemoryTree::from_leaves(leaves[..size].iter().copied()).root();
        assert_eq!(
            incremental,
            hash(expected),
            "incremental root at size {size}"
        );
        assert_eq!(
            root_at(&tree(), size as u64),
            Ok(hash(expected)),
            "stored root at size {size}"
        );
    }
}

#[test]
fn inclusion_proofs() {
    let tree = tree();
    let leaves = leaf_hashes();
    for (index, size, path) in INCLUSION {
        let expected = hashes(path);
        assert_eq!(
            inclusion_proof(&tree, index, size),
            Ok(expected.clone()),
            "({index}, {size})"
        );
        let root = hash(ROOTS[size as usize]);
        assert_eq!(
            verify_inclusion(index, size, &leaves[index as usize], &expected, &root),
            Ok(())
        );
    }
}

#[test]
fn consistency_proofs() {
    let tree = tree();
    for (from, to, path) in CONSISTENCY {
        let expected = hashes(path);
        assert_eq!(
            consistency_proof(&tree, from, to),
            Ok(expected.clone()),
            "({from}, {to})"
        );
        let (a, b) = (hash(ROOTS[from as usize]), hash(ROOTS[to as usize]));
        assert_eq!(
            verify_consistency(from, to, &a, &b, &expected),
            Ok(()),
            "({from}, {to})"
        );
    }
}

/// The negative probes the reference test suites run against every valid proof.
#[test]
fn inclusion_probes_fail() {
    let leaves = leaf_hashes();
    let empty = hash(ROOTS[0]);
    let random = hash("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in INCLUSION {
        let proof = hashes(path);
        let leaf = leaves[index as usize];
        let root = hash(ROOTS[size as usize]);
        let fails = |i: u64, s: u64, l: &Hash, p: &[Hash], r: &Hash| {
            verify_inclusion(i, s, l, p, r).is_err()
        };
        for i in [index.wrapping_sub(1), index + 1, index ^ 2] {
            if i != index {
                assert!(
                    fails(i, size, &leaf, &proof, &root),
                    "index {i} for ({index}, {size})"
                );
            }
        }
        assert!(fails(index, size * 2, &leaf, &proof, &root));
        if size / 2 != size {
            assert!(fails(index, size / 2, &leaf, &proof, &root));
        }
        assert!(fails(index, size, &leaf_hash(b"WrongLeaf"), &proof, &root));
        assert!(fails(index, size, &leaf, &proof, &empty));
        assert!(fails(index, size, &leaf, &proof, &random));
        for extra in [Hash::digest_parts(&[]), root] {
            let mut longer = proof.clone();
            longer.push(extra);
            assert!(fails(index, size, &leaf, &longer, &root));
            let mut longer = vec![extra];
            longer.extend_from_slice(&proof);
            assert!(fails(index, size, &leaf, &longer, &root));
        }
        for j in 0..proof.len() {
            let mut changed = proof.clone();
            changed[j] = empty;
            assert!(fails(index, size, &leaf, &changed, &root));
        }
        if !proof.is_empty() {
            assert!(fails(index, size, &leaf, &proof[..proof.len() - 1], &root));
        }
    }
    for (index, size) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
        assert!(verify_inclusion(index, size, &random, &[], &empty).is_err());
    }
}

#[test]
fn consistency_probes_fail() {
    for (from, to, path) in CONSISTENCY {
        let proof = hashes(path);
        let (a, b) = (hash(ROOTS[from as usize]), hash(ROOTS[to as usize]));
        let fails = |f: u64, t: u64, x: &Hash, y: &Hash, p: &[Hash]| {
            verify_consistency(f, t, x, y, p).is_err()
        };
        if from != to {
            for f in [from - 1, from + 1, from ^ 2] {
                if f != from && f <= to && f > 0 {
                    assert!(fails(f, to, &a, &b, &proof), "from {f} for ({from}, {to})");
                }
            }
            assert!(fails(from, to * 2, &a, &b, &proof));
            assert!(fails(from, to, &b, &a, &proof));
            assert!(fails(from, to, &a, &b, &[]));
            assert!(fails(from, to, &a, &a, &proof));
            for j in 0..proof.len() {
                let mut changed = proof.clone();
                changed[j] = hash(ROOTS[0]);
                assert!(fails(from, to, &a, &b, &changed));
            }
            assert!(fails(from, to, &a, &b, &proof[..proof.len() - 1]));
            let mut longer = proof.clone();
            longer.push(a);
            assert!(fails(from, to, &a, &b, &longer));
        } else {
            assert!(fails(from, to, &a, &hash(ROOTS[2]), &proof));
            assert!(fails(from, to, &a, &a, &[a]));
        }
    }
    // Reversed sizes never verify.
    assert!(verify_consistency(2, 1, &hash(ROOTS[2]), &hash(ROOTS[1]), &[]).is_err());
    // A growing tree needs a non-empty proof.
    assert!(verify_consistency(1, 2, &hash(ROOTS[1]), &hash(ROOTS[2]), &[]).is_err());
}
