//! Who belongs to the cluster: identifying a peer before it joins, the first
//! members' initialization (by hand or at bootstrap), and the errors a
//! membership change can meet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use veritrail_core::note::NoteKey;
use veritrail_proto::raft::IdentifyRequest;
use veritrail_store::NodeInfo;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::peers::with_timeout;

/// With `initial_members` set, the member with the smallest id initializes the
/// cluster once every member answers, unless one of them already belongs to a
/// cluster. Idempotent: an initialized node does nothing, so restarts and
/// re-runs are safe, and a first member that lost its data does not start a
/// second history.
pub async fn run_bootstrap(node: Arc<Node>, members: Vec<(u64, String)>) {
    let Some(first) = members.iter().map(|(id, _)| *id).min() else {
        return;
    };
    if first != node.id {
        return;
    }
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        match node.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "bootstrap: raft stopped");
                return;
            }
        }
        match node.initialize(&members).await {
            Ok(()) => {
                tracing::info!(members = ?members, "bootstrap: cluster initialized");
                return;
            }
            Err(crate::error::NodeError::FailedPrecondition(reason)) => {
                // Either another start won the race (nothing to say), or the
                // members disagree about who they are: that needs an operator.
                if !matches!(node.raft.is_initialized().await, Ok(true)) {
                    tracing::error!(%reason, "bootstrap: not initializing the cluster");
                }
                return;
            }
            Err(e) => {
                if logged.elapsed() > Duration::from_secs(5) {
                    tracing::info!(error = %e, "bootstrap: waiting for every initial member to answer");
                    logged = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Node {
    /// Asks the node at `addr` who it is, checking it belongs to this log.
    pub async fn identify(&self, id: u64, addr: &str) -> NodeResult<NodeInfo> {
        if id == self.id {
            return Ok(self.info());
        }
        Ok(self.ask_identity(id, addr).await?.0)
    }

    /// [`Node::identify`], and whether that node already belongs to a cluster.
    async fn ask_identity(&self, id: u64, addr: &str) -> NodeResult<(NodeInfo, bool)> {
        let mut client = self
            .peers
            .client(addr)
            .map_err(NodeError::InvalidArgument)?;
        let reply = client
            .identify(with_timeout(IdentifyRequest {}, Duration::from_secs(3)))
            .await
            .map_err(|s| {
                NodeError::unavailable(
                    format!("node {id} at {addr} does not answer: {}", s.message()),
                    None,
                )
            })?
            .into_inner();
        if reply.node_id != id {
            return Err(NodeError::FailedPrecondition(format!(
                "{addr} is node {}, not node {id}",
                reply.node_id
            )));
        }
        if reply.origin != self.reader.origin() {
            return Err(NodeError::FailedPrecondition(format!(
                "{addr} serves log {:?}, not {:?}",
                reply.origin,
                self.reader.origin()
            )));
        }
        NoteKey::parse(&reply.public_key)
            .map_err(|e| NodeError::FailedPrecondition(format!("node {id}'s key: {e}")))?;
        let info = NodeInfo {
            addr: addr.to_owned(),
            public_key: reply.public_key,
        };
        Ok((info, reply.initialized))
    }

    /// Makes `members` the first voters. `FailedPrecondition` if already done.
    pub async fn initialize(&self, members: &[(u64, String)]) -> NodeResult<()> {
        let mut nodes = BTreeMap::new();
        for (id, addr) in members {
            if *id == self.id {
                nodes.insert(*id, self.info());
                continue;
            }
            let (info, initialized) = self.ask_identity(*id, addr).await?;
            // A member that already belongs to a cluster means that cluster
            // exists and this node has lost its data (or was wiped). Starting a
            // second history beside it would fork the log under the same
            // origin: the node must rejoin under a new id instead.
            if initialized {
                return Err(NodeError::FailedPrecondition(format!(
                    "node {id} at {addr} already belongs to an initialized cluster, \
                     and this node holds none: it may have lost its data. Not \
                     initializing a second cluster; add this node to the existing \
                     one under a new id (docs/OPERATIONS.md, replacing a node)"
                )));
            }
            nodes.insert(*id, info);
        }
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Err(
                NodeError::FailedPrecondition("the cluster is already initialized".into()),
            ),
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                Err(NodeError::InvalidArgument(e.to_string()))
            }
            Err(e) => Err(NodeError::Internal(e.to_string())),
        }
    }

    /// Maps a membership-change error.
    pub fn membership_error(
        &self,
        e: RaftError<u64, ClientWriteError<u64, NodeInfo>>,
    ) -> NodeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                NodeError::unavailable("membership changes run on the leader", self.leader())
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                NodeError::FailedPrecondition(e.to_string())
            }
            RaftError::Fatal(e) => NodeError::Internal(e.to_string()),
        }
    }
}
