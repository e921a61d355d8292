//! Roots and proofs of any tree size, assembled from perfect nodes.
//!
//! Each function mirrors the recursive definition in RFC 6962 section 2.1
//! (MTH, PATH, SUBPROOF) over leaf ranges instead of leaf data. Every subtree the
//! recursion hashes is either perfect (one stored node) or a right-edge range
//! `[start, end)` whose hash is the fold of the perfect nodes that tile it. At most
//! one right-edge range per proof is not itself perfect, so a proof reads O(log n)
//! nodes in total.

use super::{NodeId, NodeSource, empty_root, fold_right, split_point};
use crate::{Error, Hash};

/// The perfect nodes that tile leaves `[start, end)`, left to right.
///
/// For the ranges RFC 6962 recursion produces (start aligned to a power of two at
/// least as large as the range), the tiles are largest first and their
/// [`fold_right`] is exactly the RFC 6962 hash of the range.
pub fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::with_capacity((end - start.min(end)).count_ones() as usize + 2);
    let mut at = start;
    while at < end {
        let level_by_length = 63 - (end - at).leading_zeros();
        let level_by_alignment = if at == 0 { 63 } else { at.trailing_zeros() };
        let level = level_by_length.min(level_by_alignment);
        nodes.push(NodeId::new(level as u8, at >> level));
        at += 1 << level;
    }
    nodes
}

/// The RFC 6962 root of the first `size` leaves.
pub fn root_at<S: NodeSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    let ids = range_nodes(0, size);
    let hashes = source.nodes(&ids)?;
    Ok(fold_right(&hashes).unwrap_or_else(empty_root))
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size` leaves,
/// ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof<S: NodeSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size }.into());
    }
    let mut plan = Vec::new();
    path(index, 0, size, &mut plan);
    assemble(source, &plan)
}

/// The consistency proof from the tree of `from_size` leaves to the tree of
/// `to_size` leaves. Empty when the sizes are equal or `from_size` is 0: every tree
/// extends the empty tree.
pub fn consistency_proof<S: NodeSource>(
    source: &S,
    from_size: u64,
    to_size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if from_size > to_size {
        return Err(Error::SizesReversed { from_size, to_size }.into());
    }
    let mut plan = Vec::new();
    if from_size > 0 && from_size < to_size {
        subproof(from_size, 0, to_size, true, &mut plan);
    }
    assemble(source, &plan)
}

/// RFC 6962 PATH(m, D[start:end]), pushing one node list per proof element.
fn path(m: u64, start: u64, end: u64, plan: &mut Vec<Vec<NodeId>>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(m, start, start + k, plan);
        plan.push(range_nodes(start + k, end));
    } else {
        path(m - k, start + k, end, plan);
        plan.push(range_nodes(start, start + k));
    }
}

/// RFC 6962 SUBPROOF(m, D[start:end], b).
fn subproof(m: u64, start: u64, end: u64, complete: bool, plan: &mut Vec<Vec<NodeId>>) {
    let n = end - start;
    if m == n {
        if !complete {
            plan.push(range_nodes(start, end));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, start, start + k, complete, plan);
        plan.push(range_nodes(start + k, end));
    } else {
        subproof(m - k, start + k, end, false, plan);
        plan.push(range_nodes(start, start + k));
    }
}

/// Reads every node of `plan` in one batch and folds each element's nodes.
fn assemble<S: NodeSource>(source: &S, plan: &[Vec<NodeId>]) -> Result<Vec<Hash>, S::Error> {
    let ids: Vec<NodeId> = plan.iter().flatten().copied().collect();
    let hashes = source.nodes(&ids)?;
    let mut proof = Vec::with_capacity(plan.len());
    let mut at = 0;
    for element in plan {
        let group = &hashes[at..at + element.len()];
        at += element.len();
        proof.push(fold_right(group).unwrap_or_else(empty_root));
    }
    Ok(proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_nodes_tile_exactly() {
        assert_eq!(range_nodes(0, 0), vec![]);
        assert_eq!(range_nodes(0, 1), vec![NodeId::new(0, 0)]);
        assert_eq!(
            range_nodes(0, 6),
            vec![NodeId::new(2, 0), NodeId::new(1, 2)]
        );
        assert_eq!(
            range_nodes(0, 7),
            vec![NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
        );
        assert_eq!(
            range_nodes(4, 7),
            vec![NodeId::new(1, 2), NodeId::new(0, 6)]
        );
        // An unaligned start is tiled by growing, then shrinking, nodes.
        assert_eq!(
            range_nodes(3, 9),
            vec![NodeId::new(0, 3), NodeId::new(2, 1), NodeId::new(0, 8)]
        );
        let big = range_nodes(0, u64::MAX);
        assert_eq!(big.len(), 64);
    }
}
