//! Reads that see every acknowledged append: the leader confirms its
//! leadership with a quorum, a follower asks the leader for a read index.

use std::time::Instant;

use openraft::error::{CheckIsLeaderError, RaftError};
use veritrail_proto::raft::ReadIndexRequest;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::peers::with_timeout;

impl Node {
    /// Makes a read linearizable: it will see every append acknowledged before
    /// it began. The leader confirms its leadership with a quorum; a follower asks
    /// the leader for that read index and waits until it has applied it.
    ///
    /// A node that knows it is behind (`freshness`) refuses at once, naming
    /// the leader when it knows one, rather than keep the caller waiting.
    pub async fn linearize(&self) -> NodeResult<()> {
        if let Some(why) = self.behind() {
            return Err(NodeError::unavailable(
                format!("this node is behind the cluster ({why}): ask another node"),
                self.leader().filter(|l| l.id != self.id),
            ));
        }
        let deadline = Instant::now() + self.timeout();
        let index = if self.is_leader() {
            self.read_index().await?
        } else {
            let leader = self.wait_for_leader(deadline).await?;
            if leader.id == self.id {
                self.read_index().await?
            } else {
                let mut client = self
                    .peers
                    .client(&leader.addr)
                    .map_err(|e| NodeError::unavailable(e, Some(leader.clone())))?;
                let left = deadline.saturating_duration_since(Instant::now());
                client
                    .read_index(with_timeout(ReadIndexRequest {}, left))
                    .await
                    .map_err(|s| {
                        NodeError::unavailable(
                            format!("asking the leader for a read index: {}", s.message()),
                            Some(leader.clone()),
                        )
                    })?
                    .into_inner()
                    .index
            }
        };
        if let Some(index) = index {
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "read index applied")
                .await
                .map_err(|_| NodeError::unavailable("this node is too far behind to serve a linearizable read; retry, or ask for a local read", self.leader()))?;
        }
        Ok(())
    }

    /// On the leader: the log index a linearizable read must wait for.
    pub async fn read_index(&self) -> NodeResult<Option<u64>> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(
                NodeError::unavailable("this node does not lead", self.leader()),
            ),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(
                NodeError::unavailable(format!("the leader cannot reach a quorum: {e}"), None),
            ),
            Err(e) => Err(NodeError::Internal(e.to_string())),
        }
    }
}
