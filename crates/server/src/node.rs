//! A running node: the parts it runs (Raft, the store's reader, the batcher,
//! its key, its peers) held together in one hub that the gRPC services share.
//!
//! What a node does with those parts lives in rooms of its own, each an
//! `impl Node` block beside the types it needs:
//!
//! - `gate`: who is calling, checked before a request's body is read;
//! - `senders`: which nodes may lead this one (send it Raft messages);
//! - `freshness`: whether this node's view is current or behind the cluster's;
//! - `admission`: whether an append may enter, checked once at the door;
//! - `routing`: an admitted append to the leader's batcher, forwarded one hop
//!   when this node does not lead;
//! - `linearize`: reads that see every acknowledged append;
//! - `cosign`: checkpoints signed by every voter and recorded through Raft;
//! - `key_sets`: the voters' keys, signed by the voters, for auditors;
//! - `membership`: identifying peers, initializing and changing the cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Raft, RaftMetrics, ServerState};
use veritrail_core::Limits;
use veritrail_core::note::NoteSigner;
use veritrail_store::{AsyncReader, NodeInfo, TypeConfig};

use crate::auth::Auth;
use crate::batcher::Batcher;
use crate::config::Config;
use crate::error::{LeaderHint, NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::peers::Peers;

/// Everything one node runs. Shared by the services behind an `Arc`.
pub struct Node {
    pub id: u64,
    pub config: Config,
    pub limits: Limits,
    pub raft: Raft<TypeConfig>,
    /// The store's reads, which run on tokio's blocking pool.
    pub reader: AsyncReader,
    pub signer: NoteSigner,
    /// Connections to peers for forwarding, co-signing and the like.
    pub peers: Peers,
    /// Raft's own connections to its peers, made on Raft's runtime
    /// (`runtimes.rs`).
    pub raft_peers: Peers,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    /// The principal of what this node appends itself (its SPIFFE ID),
    /// checked to be a valid principal when the node starts.
    pub principal: String,
    /// Members' replication lag, as leader.
    pub replication: Arc<crate::replication::Replication>,
    /// Set when the node is stopping: streams end and send clients elsewhere.
    pub drain: crate::drain::Drain,
    /// What this node learnt from its voters about leaders it does not know.
    pub senders: crate::senders::Senders,
    /// What each principal holds open here: streams and reads.
    pub quotas: crate::quota::Quotas,
    /// Whether the data directory's disk has room for new appends.
    pub disk: crate::disk::DiskRoom,
    /// Whether the node is repairing, and may not vote or stand (`repair.rs`).
    pub repair: crate::repair::Repair,
    /// The witnesses' latest cosignatures (`witnesses.rs`).
    pub cosignatures: crate::witnesses::Cosignatures,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("key", self.signer.public())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Lets openraft stand this node for election unless it repairs
    /// (repair.rs), its disk is below the reserve (disk.rs), its log lacks
    /// entries it was told are committed (`note_log_held`), or it has just
    /// started and a leader may still reach it (`start_quiet`): any way it
    /// could not hold the log a leader needs, or would stand for nothing. (A follower that refuses the
    /// leader's entries for want of disk misses heartbeats while the leader
    /// backs off; standing, it would raise its term for nothing and depose
    /// the leader once it took entries again.)
    pub(crate) fn refresh_elections(&self) {
        let _one_at_a_time = self
            .repair
            .elections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.raft
            .runtime_config()
            .elect(self.may_stand_for_election());
    }

    /// Whether this node could lead: not repairing, its disk above the
    /// reserve, and its log holding every entry a leader told it was
    /// committed (`note_log_held`).
    pub(crate) fn may_stand_for_election(&self) -> bool {
        self.why_not_stand().is_none()
    }

    /// Why this node stands for no election now, in words; `None` when it
    /// may.
    pub(crate) fn why_not_stand(&self) -> Option<&'static str> {
        if self.repair.active() {
            Some("it is repairing and holds too little of the log to lead")
        } else if self.disk.short().is_some() {
            Some("its disk is below its reserve, so it could not take the log a leader writes")
        } else if self.senders.behind() {
            Some(
                "it is still catching up: its log ends before the commit index its leader \
                 announced, so no majority would elect it",
            )
        } else if self.senders.unheard()
            && self.senders.started.elapsed() < self.start_quiet()
            && self.has_other_voters()
        {
            Some("it has just started and no leader has reached it yet")
        } else {
            None
        }
    }

    /// How long a node that has just started, and that shares its membership
    /// with other voters, waits for a leader before it may stand.
    ///
    /// A restarted voter is most often behind, and a leader reaches it only
    /// after its next retry (openraft retries an unreachable peer every
    /// 500 ms) and a first message. openraft's own timer may run out before
    /// that, most of all in a busy process; the voter then stands without
    /// a chance of winning, and the higher term it sends back to the leader's
    /// next AppendEntries deposes that leader: one needless election per
    /// restart, in every rolling restart. Two maximum election timeouts
    /// leave a leader time to reach it; when none does (the whole cluster
    /// restarted, or no leader is left), it stands when they have passed.
    pub(crate) fn start_quiet(&self) -> Duration {
        Duration::from_millis(2 * self.config.raft.election_timeout_max_ms)
    }

    /// Whether this node's membership holds a voter other than itself: a
    /// single voter has no leader to wait for.
    fn has_other_voters(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v != self.id)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.grpc.request_timeout_ms)
    }

    /// This node's membership entry.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            addr: self.config.advertise(),
            public_key: self.signer.public().to_string(),
        }
    }

    pub fn raft_metrics(&self) -> RaftMetrics<u64, NodeInfo> {
        self.raft.metrics().borrow().clone()
    }

    /// Where the leader is, as far as this node knows.
    pub fn leader(&self) -> Option<LeaderHint> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some(LeaderHint { id, addr })
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Waits (bounded) for a known leader.
    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> NodeResult<LeaderHint> {
        if let Some(leader) = self.leader() {
            return Ok(leader);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .raft
            .wait(Some(left.min(Duration::from_secs(3))))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await;
        self.leader().ok_or_else(|| {
            NodeError::unavailable("no leader is elected right now; retry shortly", None)
        })
    }

    /// Counts a refusal in the metric an operator watches for it.
    pub(crate) fn count(&self, error: &NodeError) {
        match error {
            NodeError::Unauthenticated(_) => self.metrics.unauthenticated.inc(),
            NodeError::PermissionDenied(_) => self.metrics.denied.inc(),
            NodeError::ResourceExhausted(_) => self.metrics.rate_limited.inc(),
            _ => 0,
        };
    }
}
