//! Co-signed checkpoints, inclusion and consistency proofs, frontiers, and a
//! node's check of its own range. Nothing here is verified: the caller checks
//! it against what it trusts (see [`crate::Verifier`]).

use veritrail_core::{ConsistencyProof, Hash, InclusionProof, RangeReport, SignedCheckpoint};
use veritrail_proto::frontier_from_wire;
use veritrail_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// The latest co-signed checkpoint, or the one of `tree_size`.
    pub async fn checkpoint(&self, tree_size: Option<u64>) -> Result<SignedCheckpoint> {
        let (response, _) = self
            .transport
            .call("GetCheckpoint", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_checkpoint(v1::GetCheckpointRequest { tree_size })
                        .await
                }
            })
            .await?;
        Ok(SignedCheckpoint::try_from(response.into_inner())?)
    }

    /// The latest checkpoint node `node` holds, asked of it alone, once.
    pub(crate) async fn checkpoint_at(&self, node: usize) -> Result<SignedCheckpoint> {
        let channel = self
            .transport
            .channel(node)
            .ok_or_else(|| Error::InvalidRequest(format!("no node {node}")))?;
        let r = self
            .audit(channel)
            .get_checkpoint(v1::GetCheckpointRequest { tree_size: None })
            .await?
            .into_inner();
        Ok(SignedCheckpoint::try_from(r)?)
    }

    /// The inclusion proof of entry `seq` in the tree of `tree_size` entries.
    pub async fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetInclusionProof", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_inclusion_proof(v1::GetInclusionProofRequest {
                            seq,
                            tree_size,
                            consistency,
                        })
                        .await
                }
            })
            .await?;
        Ok(InclusionProof::try_from(response.into_inner())?)
    }

    /// The consistency proof from the tree of `from_size` to that of `to_size`.
    pub async fn consistency_proof(
        &self,
        from_size: u64,
        to_size: u64,
    ) -> Result<ConsistencyProof> {
        self.consistency_proof_inner(from_size, to_size, None).await
    }

    /// The same proof, asked of node `node` only, without retries: used to get
    /// a second opinion before calling two checkpoints a fork.
    pub(crate) async fn consistency_proof_at(
        &self,
        node: usize,
        from_size: u64,
        to_size: u64,
    ) -> Result<ConsistencyProof> {
        self.consistency_proof_inner(from_size, to_size, Some(node))
            .await
    }

    async fn consistency_proof_inner(
        &self,
        from_size: u64,
        to_size: u64,
        node: Option<usize>,
    ) -> Result<ConsistencyProof> {
        let consistency = self.consistency() as i32;
        let request = v1::GetConsistencyProofRequest {
            from_size,
            to_size,
            consistency,
        };
        let r = match node {
            Some(i) => {
                let channel = self
                    .transport
                    .channel(i)
                    .ok_or_else(|| Error::InvalidRequest(format!("no node {i}")))?;
                self.audit(channel)
                    .get_consistency_proof(request)
                    .await?
                    .into_inner()
            }
            None => self
                .transport
                .call("GetConsistencyProof", |channel| {
                    let mut client = self.audit(channel);
                    async move { client.get_consistency_proof(request).await }
                })
                .await?
                .0
                .into_inner(),
        };
        Ok(ConsistencyProof::try_from(r)?)
    }

    /// The Merkle frontier of the tree of `tree_size` entries (unverified: it is
    /// checked by the root it leads to).
    pub async fn frontier(&self, tree_size: u64) -> Result<Vec<Hash>> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetFrontier", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_frontier(v1::GetFrontierRequest {
                            tree_size,
                            consistency,
                        })
                        .await
                }
            })
            .await?;
        let hashes = frontier_from_wire(response.into_inner())?;
        if hashes.len() != tree_size.count_ones() as usize {
            return Err(Error::Protocol(format!(
                "a frontier of size {tree_size} has {} hashes, not {}",
                hashes.len(),
                tree_size.count_ones()
            )));
        }
        Ok(hashes)
    }

    /// Asks a node to recompute `[from_seq, to_seq)` of its own log.
    pub async fn verify_range(&self, from_seq: u64, to_seq: Option<u64>) -> Result<RangeReport> {
        let (response, _) = self
            .transport
            .call("VerifyRange", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .verify_range(v1::VerifyRangeRequest { from_seq, to_seq })
                        .await
                }
            })
            .await?;
        Ok(RangeReport::try_from(response.into_inner())?)
    }
}
