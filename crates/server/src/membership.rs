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

/// Stops this node once the cluster has removed it.
///
/// Nobody tells a removed node: the leader stops replicating to it as soon as
/// it appends the membership without it, so the node usually never sees that
/// membership. A removed voter then stood for election for ever, its term
/// rising (#23 item 4). So a node that has heard from no leader for a while
/// asks the voters of the membership it holds (by `Identify`) who they count
/// as members. When a majority of those voters answer, each with a
/// membership that names this node neither as a voter nor as a learner, the
/// node was removed: it says so and stops as if it had been sent SIGTERM
/// (exit status 0, so a supervisor does not restart it).
///
/// A node that cannot reach its peers (a partition, a cluster still
/// starting) gets no such answers and keeps running; one answer naming it is
/// enough to keep running.
pub async fn run_removal_watch(node: Arc<Node>) {
    let quiet_for = Duration::from_millis(10 * node.config.raft.election_timeout_max_ms)
        .max(Duration::from_secs(3));
    let mut every = tokio::time::interval(quiet_for / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    loop {
        every.tick().await;
        let quiet = node.senders.since_led().unwrap_or(started.elapsed());
        if node.is_leader() || quiet < quiet_for {
            continue;
        }
        if let Some(holders) = node.removed_by().await {
            tracing::error!(
                node_id = node.id,
                "this node was removed from the cluster: nodes {holders:?} hold a membership \
                 without it. Stopping. Its data directory is of no further use; delete it before \
                 the machine serves a node again (docs/OPERATIONS.md, \"Removing a node\")"
            );
            node.drain.stop();
            return;
        }
    }
}

impl Node {
    /// The voters that hold a membership without this node, when they are a
    /// majority of the voters of the membership this node holds; `None` while
    /// this node may still be a member.
    async fn removed_by(&self) -> Option<Vec<u64>> {
        let (voters, peers) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            let peers: Vec<(u64, String)> = voters
                .iter()
                .filter(|v| **v != self.id)
                .filter_map(|v| Some((*v, membership.get_node(v)?.addr.clone())))
                .collect();
            (voters, peers)
        };
        if peers.is_empty() {
            return None;
        }
        let answers = futures::future::join_all(peers.iter().map(|(id, addr)| async move {
            let mut client = self.peers.client(addr).ok()?;
            let reply = client
                .identify(with_timeout(IdentifyRequest {}, Duration::from_secs(2)))
                .await
                .ok()?
                .into_inner();
            // An empty answer is a node that holds no membership (or runs a
            // version that does not say): it proves nothing.
            (reply.node_id == *id && !reply.voters.is_empty()).then_some((*id, reply))
        }))
        .await;
        let mut without_me = Vec::new();
        for (id, reply) in answers.into_iter().flatten() {
            if reply.voters.contains(&self.id) || reply.learners.contains(&self.id) {
                return None;
            }
            without_me.push(id);
        }
        (without_me.len() * 2 > voters.len()).then_some(without_me)
    }

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
        // A node that repairs belongs to a cluster whose log it is receiving
        // again; initializing it would start a second history (repair.rs).
        if self.repair.active() {
            return Err(NodeError::FailedPrecondition(
                "this node is repairing: it belongs to a cluster already and is receiving its \
                 log again; it initializes no cluster"
                    .into(),
            ));
        }
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

    /// Runs a membership change, waiting (up to the request timeout) while
    /// an earlier change is still being committed. openraft refuses a second
    /// change until the first commits, and after a leader change that takes
    /// until the new leader commits an entry of its term: an `add-learner`
    /// followed at once by a `promote` could fail for no reason an operator
    /// can act on.
    pub async fn change_members<F, Fut>(&self, change: F) -> NodeResult<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    openraft::raft::ClientWriteResponse<veritrail_store::TypeConfig>,
                    RaftError<u64, ClientWriteError<u64, NodeInfo>>,
                >,
            >,
    {
        use openraft::error::ChangeMembershipError;
        let deadline = Instant::now() + self.timeout();
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(self.membership_error(e)),
            }
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
