//! Who may send this node Raft messages: a leader's AppendEntries and
//! InstallSnapshot, and a candidate's vote request.
//!
//! TLS already proves which node a message comes from (`peer_service`). What
//! this room decides is whether that node may lead this one. A node
//! certificate alone is not enough: any node certificate of the cluster,
//! including one of a node that never was a member or was removed, could
//! otherwise write membership entries and forged entries into every node's log,
//! or depose leaders with higher terms (issue #17).
//!
//! # The rule
//!
//! Let `M` be this node's current membership, the latest one in its log (both
//! halves of a joint one), and `S` the sender.
//!
//! 1. `S` is a voter of `M`: Raft decides, as it always did.
//! 2. `M` is empty: this node holds no log at all (a node started to be added
//!    to a cluster, or one of the first members before the first election).
//!    It takes the first leader that replicates to it, and Raft decides on a
//!    vote request.
//! 3. Otherwise this node asks the voters of `M` (by `Identify`, over TLS to
//!    the addresses `M` records) whether `S` is a voter of *their* current
//!    membership, and takes `S`'s AppendEntries and InstallSnapshot once one of
//!    them says yes. Answers are remembered briefly, yes and no alike, so a
//!    lagging node asks once per few seconds and a stranger cannot make it
//!    flood its peers.
//! 4. A vote request from a node that is not a voter of `M` gets the answer of
//!    a node that does not grant it: a normal rejection carrying this node's
//!    own vote, which leaves its term untouched and does not send a candidate
//!    with a lower term back to follower.
//!
//! # Why a learner still catches up, and an outsider does not get in
//!
//! A node replaying the log holds, at every moment, some membership `M_k`
//! that the cluster once had. The leader `S` it replicates from is a voter of
//! the latest membership, which the voters of `M_k` decided: every change from
//! `M_k` onwards was committed by a quorum that includes voters of `M_k` (joint
//! consensus needs a quorum of the old configuration too). So a voter of `M_k`
//! that is still a member has seen `S` become a voter, and says so; rule 3
//! lets the leader in. Each message then moves `M` forwards, until `S` is a
//! voter of `M` and rule 1 applies.
//!
//! An outsider gains nothing from rule 3: a voter of `M` that vouches for it
//! could as well have sent the messages itself, since rule 1 already lets
//! every voter of `M` lead this node. No vouching raises the trust this node
//! already places in `M`. A certificate of a node that never was a member, or
//! was removed, therefore gets `PERMISSION_DENIED` from every node whose
//! membership is current, and nothing it sends reaches the log.
//!
//! # What the rule does not cover
//!
//! - Rule 2 trusts on first use: a node that holds no log accepts whichever
//!   node of the cluster replicates to it first, or asks for its vote.
//!   Start a node only to add it right away (`veritrail cluster add-learner`
//!   checks it catches up).
//! - A lagging node whose every voter of `M` is gone (all of them replaced
//!   since) cannot verify the leader; it catches up once the leader's log
//!   before that point is compacted into a snapshot and the node is restarted
//!   empty.
//! - A voter that lags behind a membership change will not vote for a new
//!   voter it does not know yet. That matters only when its vote is needed, and
//!   then the cluster waits until a voter it knows is back.
//! - A member itself is trusted with membership: a current voter holding a
//!   valid certificate can still lead with any entries (docs/SECURITY.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::raft::{VoteRequest, VoteResponse};
use veritrail_proto::raft::IdentifyRequest;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::peers::with_timeout;

/// How long a voter's answer about a sender is remembered.
const VOUCHED_FOR: Duration = Duration::from_secs(10);
const REFUSED_FOR: Duration = Duration::from_secs(2);
/// How long one voter has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// No leader's AppendEntries has been taken since this process started.
const UNHEARD: u8 = 0;
/// The log ended before the commit index the last AppendEntries announced.
const BEHIND: u8 = 1;
/// The log reached the commit index the last AppendEntries announced.
const CAUGHT_UP: u8 = 2;

/// What this node recently learnt about senders it does not know as voters,
/// and when a leader last reached it.
#[derive(Debug)]
pub struct Senders {
    answers: Mutex<HashMap<u64, Answer>>,
    led_at: Mutex<Option<Instant>>,
    /// A commit index a leader announced that this node had not applied yet,
    /// and when it was first announced (`freshness` reads it).
    pub(crate) target: Mutex<Option<(Instant, u64)>>,
    /// How this node's log, after the last AppendEntries it took, compared
    /// with the commit index that message announced (`Node::note_log_held`):
    /// one of `UNHEARD`, `BEHIND`, `CAUGHT_UP`.
    log_held: AtomicU8,
    pub(crate) started: Instant,
}

impl Default for Senders {
    fn default() -> Self {
        Senders {
            answers: Mutex::default(),
            led_at: Mutex::default(),
            target: Mutex::default(),
            log_held: AtomicU8::new(UNHEARD),
            started: Instant::now(),
        }
    }
}

#[derive(Debug, Clone)]
struct Answer {
    /// The voter that vouched for the sender, or why none did.
    verdict: Result<u64, String>,
    until: Instant,
}

impl Senders {
    /// Notes that a leader's message was admitted just now, with the commit
    /// index it announced (an AppendEntries carries one) and the index this
    /// node has applied.
    pub fn led(&self, leader_commit: Option<u64>, applied: Option<u64>) {
        let now = Instant::now();
        *self.led_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        if let Some(commit) = leader_commit
            && applied.is_none_or(|a| a < commit)
        {
            self.target
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert((now, commit));
        }
    }

    /// Whether this node's log lacks entries a leader announced committed.
    pub fn behind(&self) -> bool {
        self.log_held.load(Ordering::Relaxed) == BEHIND
    }

    /// Whether no leader's AppendEntries has reached this node since it
    /// started.
    pub fn unheard(&self) -> bool {
        self.log_held.load(Ordering::Relaxed) == UNHEARD
    }

    /// How long since a leader's message was last admitted (`None`: never,
    /// since this process started).
    pub fn since_led(&self) -> Option<Duration> {
        self.led_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }

    fn remembered(&self, sender: u64) -> Option<Result<u64, String>> {
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(&sender)
            .filter(|a| a.until > Instant::now())
            .map(|a| a.verdict.clone())
    }

    fn remember(&self, sender: u64, verdict: Result<u64, String>) {
        let lasts = if verdict.is_ok() {
            VOUCHED_FOR
        } else {
            REFUSED_FOR
        };
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        answers.retain(|_, a| a.until > now);
        answers.insert(
            sender,
            Answer {
                verdict,
                until: now + lasts,
            },
        );
    }
}

impl Node {
    /// Notes how far this node's log reaches after taking a leader's
    /// AppendEntries (`held`, the last index it holds) and the commit index
    /// that message announced; stops or resumes standing for election when
    /// that changes whether the log lacks committed entries.
    ///
    /// A voter whose log lacks a committed entry cannot win an election:
    /// every majority holds a voter with that entry, which refuses a
    /// candidate whose log is less up to date (Raft's election restriction).
    /// Standing anyway only raises its term, and the leader that learns the
    /// higher term from its next answer steps down. A voter catching up
    /// under load misses heartbeats (its AppendEntries take longer than the
    /// leader waits for them), so it used to stand again and again, deposing
    /// every leader before it caught up (docs/FAULTS.md, "Flakes"). Holding
    /// it back until its log reaches the announced commit index costs no
    /// election it could have won.
    ///
    /// The first AppendEntries after a start ends the quiet of a node that
    /// has just started (`Node::start_quiet`) as soon as it arrives:
    /// `note_leader_reached`.
    pub(crate) fn note_log_held(&self, held: Option<u64>, leader_commit: Option<u64>) {
        let behind = match leader_commit {
            Some(commit) => held.is_none_or(|h| h < commit),
            None => false,
        };
        let now = if behind { BEHIND } else { CAUGHT_UP };
        if self.senders.log_held.swap(now, Ordering::Relaxed) != now {
            tracing::debug!(
                held,
                leader_commit,
                "this node's log {} the leader's commit index: it {} for election",
                if behind { "ends before" } else { "reaches" },
                if behind {
                    "stands no more"
                } else {
                    "may stand again"
                },
            );
            self.refresh_elections();
        }
    }

    /// Notes that a leader's AppendEntries has reached this node, before
    /// Raft takes it. The first one since this node started ends its quiet
    /// (`Node::start_quiet`) at once, judged by the log held before it: a
    /// restarted voter far behind may take seconds over its first message,
    /// and is behind all that time.
    pub(crate) fn note_leader_reached(&self, leader_commit: Option<u64>) {
        if self.senders.unheard() {
            self.note_log_held(self.raft_metrics().last_log_index, leader_commit);
        }
    }

    /// Whether this node takes a vote request from `sender` to Raft: the
    /// sender is a voter of its membership, or it holds none yet (the first
    /// members of a new cluster elect their first leader before any of them
    /// but the one that initialized it holds the membership).
    pub(crate) fn may_stand(&self, sender: u64) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership.nodes().next().is_none() || membership.voter_ids().any(|v| v == sender)
    }

    /// Admits a leader's AppendEntries or InstallSnapshot from `sender`
    /// (rules 1 to 3 of the module's documentation).
    pub(crate) async fn admit_leader(&self, sender: u64) -> NodeResult<()> {
        let (voters, empty) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            if membership.voter_ids().any(|v| v == sender) {
                return Ok(());
            }
            let voters: Vec<(u64, String)> = membership
                .voter_ids()
                .filter(|v| *v != self.id)
                .filter_map(|v| Some((v, membership.get_node(&v)?.addr.clone())))
                .collect();
            (voters, membership.nodes().next().is_none())
        };
        if empty {
            return Ok(());
        }
        let verdict = match self.senders.remembered(sender) {
            Some(verdict) => verdict,
            None => {
                let verdict = self.ask_voters(sender, &voters).await;
                if let Ok(voter) = &verdict {
                    tracing::info!(
                        sender,
                        voter,
                        "a voter vouches for a leader this node does not know yet"
                    );
                }
                self.senders.remember(sender, verdict.clone());
                verdict
            }
        };
        match verdict {
            Ok(_) => Ok(()),
            Err(why) => {
                self.metrics.denied.inc();
                Err(NodeError::PermissionDenied(format!(
                    "node {sender} is not a voter of this node's membership, and {why}: \
                     only members may send Raft messages"
                )))
            }
        }
    }

    /// Asks every voter at once whether `sender` is a voter of its current
    /// membership; the first yes wins.
    async fn ask_voters(&self, sender: u64, voters: &[(u64, String)]) -> Result<u64, String> {
        let mut asks: FuturesUnordered<_> = voters
            .iter()
            .filter(|(id, _)| *id != sender)
            .map(|(id, addr)| async move {
                let mut client = self.peers.client(addr)?;
                let reply = client
                    .identify(with_timeout(IdentifyRequest {}, ASK_TIMEOUT))
                    .await
                    .map_err(|s| format!("node {id} does not answer ({})", s.message()))?
                    .into_inner();
                if reply.node_id != *id {
                    return Err(format!(
                        "{addr} is now node {}, not node {id}",
                        reply.node_id
                    ));
                }
                if reply.voters.contains(&sender) {
                    Ok(*id)
                } else {
                    Err(format!("node {id} does not know it as a voter"))
                }
            })
            .collect();
        let mut why = Vec::new();
        while let Some(answer) = asks.next().await {
            match answer {
                Ok(voter) => return Ok(voter),
                Err(reason) => why.push(reason),
            }
        }
        if why.is_empty() {
            return Err("no other voter is known to ask".into());
        }
        Err(format!("no voter vouches for it: {}", why.join("; ")))
    }

    /// Rule 4: the answer to a vote request from a node that is not a voter
    /// here. Not granted, and this node's vote (its term) stays as it is.
    pub(crate) fn decline_vote(&self, request: &VoteRequest<u64>) -> VoteResponse<u64> {
        self.metrics.denied.inc();
        tracing::debug!(
            candidate = request.vote.leader_id().voted_for(),
            "declined a vote request from a node that is not a voter of this node's membership"
        );
        self.vote_not_granted()
    }

    /// A vote not granted, this node's vote (its term) left as it is: the
    /// answer of rule 4, and of a node that repairs (`repair.rs`).
    pub(crate) fn vote_not_granted(&self) -> VoteResponse<u64> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        VoteResponse {
            vote: m.vote,
            vote_granted: false,
            // What this node has applied: enough for the candidate to see a
            // log at least this long (openraft's own answer has the last log
            // id, which it does not expose).
            last_log_id: m.last_applied,
        }
    }
}
