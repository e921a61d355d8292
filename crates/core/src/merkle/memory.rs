//! An in-memory tree: every perfect node kept in a vector per level.

use super::{Frontier, NodeId, NodeSource};
use crate::{Error, Hash};

/// A Merkle tree held wholly in memory. Used by tests, by tools that build small
/// trees (golden vectors, bundles in tests) and as the reference [`NodeSource`]
/// that a database-backed source must agree with.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// Builds a tree from leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, |id, hash| {
            let level = id.level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            debug_assert_eq!(levels[level].len() as u64, id.index);
            levels[level].push(*hash);
        });
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = Error;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        ids.iter()
            .map(|id| {
                self.levels
                    .get(id.level as usize)
                    .and_then(|level| level.get(id.index as usize))
                    .copied()
                    .ok_or(Error::IndexOutOfRange {
                        index: id.end_leaf() - 1,
                        size: self.size(),
                    })
            })
            .collect()
    }
}
