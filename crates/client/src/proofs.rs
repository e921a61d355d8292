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
    ///
    /// The latest is the cluster's: a node behind the others refuses, and the
    /// SDK asks another, unless this client reads with local consistency.
    pub async fn checkpoint(&self, tree_size: Option<u64>) -> Result<SignedCheckpoint> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetCheckpoint", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_checkpoint(v1::GetCheckpointRequest {
                            tree_size,
                            consistency,
                        })
                        .await
                }
            })
            .await?;
        Ok(SignedCheckpoint::try_from(response.into_inner())?)
    }

    /// The current voters' keys as a key-set note (docs/FORMAT.md section
    /// 6.1), signed by the voters that answered, and its epoch. Unverified:
    /// [`crate::Verifier::learn_key_set`] adopts it when a quorum of the
    /// trusted keys signed it.
    pub async fn key_set(&self) -> Result<(String, u64)> {
        let (response, _) = self
            .transport
            .call("GetKeySet", |channel| {
                let mut client = self.audit(channel);
                async move { client.get_key_set(v1::GetKeySetRequest {}).await }
            })
            .await?;
        let r = response.into_inner();
        Ok((r.signed_note, r.epoch))
    }

    /// The latest checkpoint node `node` holds, asked of it alone, once, with
    /// local consistency: its own view is what is asked for.
    pub(crate) async fn checkpoint_at(&self, node: usize) -> Result<SignedCheckpoint> {
        let channel = self
            .transport
            .channel(node)
            .ok_or_else(|| Error::InvalidRequest(format!("no node {node}")))?;
        let mut client = self.audit(channel);
        let r = self
            .transport
            .bounded(client.get_checkpoint(v1::GetCheckpointRequest {
                tree_size: None,
                consistency: v1::ReadConsistency::Local as i32,
            }))
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
                let mut client = self.audit(channel);
                self.transport
                    .bounded(client.get_consistency_proof(request))
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
