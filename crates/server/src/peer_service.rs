//! The `RaftPeer` service: what other nodes call on this one.

use std::sync::Arc;

use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use veritrail_core::{Event, SubmittedEvent};
use veritrail_proto::raft::raft_peer_server::RaftPeer;
use veritrail_proto::raft::{
    ForwardAppendRequest, ForwardAppendResponse, IdentifyRequest, IdentifyResponse, RaftPayload,
    ReadIndexRequest, ReadIndexResponse, SignCheckpointRequest, SignCheckpointResponse,
    StartElectionRequest, StartElectionResponse,
};
use veritrail_store::TypeConfig;

use crate::admission::Admitted;
use crate::error::NodeError;
use crate::node::Node;
use crate::peers::{PEER_FORMAT_UNSIGNED, peer_format};

/// Whether `rpc` is shaped as a leader's AppendEntries always is: entries at
/// consecutive indexes right after `prev_log_id`, their terms never above the
/// sender's and never going down. openraft takes that for granted (a debug
/// assertion, then its log bookkeeping): a member's certificate that sent
/// anything else stopped the node's Raft core, so one stolen credential could
/// stop every node it reached.
fn well_formed(rpc: &AppendEntriesRequest<TypeConfig>) -> Result<(), String> {
    let term = rpc.vote.leader_id().term;
    let first = rpc.prev_log_id.map_or(0, |l| l.index + 1);
    let mut last_term = rpc.prev_log_id.map_or(0, |l| l.leader_id.term);
    for (index, entry) in (first..).zip(&rpc.entries) {
        let id = entry.log_id;
        if id.index != index {
            return Err(format!("entry at index {} where {index} is next", id.index));
        }
        if id.leader_id.term > term || id.leader_id.term < last_term {
            return Err(format!(
                "entry {} of term {}, after term {last_term}, from a leader of term {term}",
                id.index, id.leader_id.term
            ));
        }
        last_term = id.leader_id.term;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PeerService {
    pub node: Arc<Node>,
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    peer_format(payload.format).map_err(Status::failed_precondition)?;
    postcard::from_bytes(&payload.postcard)
        .map_err(|e| Status::invalid_argument(format!("raft payload does not decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let postcard = postcard::to_stdvec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload {
        postcard,
        to_node_id: 0,
        format: PEER_FORMAT_UNSIGNED,
    }))
}

impl PeerService {
    /// Admits a peer call: the caller presented a node certificate of this
    /// cluster's CA and trust domain. Returns its node id (`None` on a
    /// development node without TLS, which admits anyone).
    ///
    /// Membership is checked by the calls themselves: a leader's messages by
    /// [`Self::may_lead`], a vote request in `vote`, the calls only members
    /// make by [`Self::admit_member`]. What TLS adds is that a node speaks
    /// only for itself ([`Self::speaks_for`]).
    fn admit_node<T>(&self, request: &Request<T>) -> Result<Option<u64>, Status> {
        Ok(self.node.member(request)?)
    }

    /// Admits a call that only a current member may make: the caller's node
    /// is in this node's membership, in any configuration of a joint one,
    /// learners included (issue #17). `ForwardAppend`, `SignCheckpoint`,
    /// `ReadIndex` and `StartElection` come from nodes that already hold the
    /// membership that names them, so no lagging node is kept out; a node
    /// certificate of a node that never was a member, or was removed, is.
    fn admit_member<T>(&self, request: &Request<T>) -> Result<Option<u64>, Status> {
        let caller = self.admit_node(request)?;
        if let Some(id) = caller {
            let metrics = self.node.raft_metrics();
            let membership = metrics.membership_config.membership();
            if !membership.nodes().any(|(member, _)| *member == id) {
                return Err(self.refuse(format!(
                    "node {id} is not a member of this cluster's current membership"
                )));
            }
        }
        Ok(caller)
    }

    fn refuse(&self, message: String) -> Status {
        self.node.metrics.denied.inc();
        NodeError::PermissionDenied(message).into()
    }

    /// Refuses a Raft message that claims to come from another node than the
    /// certificate's: a leader's appends and snapshots, and a candidate's vote
    /// request, name their sender.
    fn speaks_for(&self, caller: Option<u64>, claimed: Option<u64>) -> Result<(), Status> {
        match caller {
            Some(id) if claimed != Some(id) => {
                self.node.metrics.denied.inc();
                Err(NodeError::PermissionDenied(format!(
                    "node {id} may not send Raft messages in the name of node {}",
                    claimed.map_or("none".to_owned(), |c| c.to_string())
                ))
                .into())
            }
            _ => Ok(()),
        }
    }

    /// Refuses a leader's message from a node that may not lead this one
    /// (`senders`: a voter of this node's membership, or one its voters
    /// vouch for). `None` is a development node without TLS.
    async fn may_lead(&self, caller: Option<u64>) -> Result<(), Status> {
        match caller {
            Some(id) => Ok(self.node.admit_leader(id).await?),
            None => Ok(()),
        }
    }

    /// Refuses a Raft message meant for another node id. When a node is
    /// replaced at the same address under a new id, the leader may still send
    /// to the old id there until membership changes; answering for it would
    /// let a fresh node vote, or acknowledge entries, in a dead voter's name.
    fn addressed_to_me(&self, payload: &RaftPayload) -> Result<(), Status> {
        if payload.to_node_id != self.node.id {
            return Err(NodeError::FailedPrecondition(format!(
                "this is node {}, not node {}: the address now belongs to another node",
                self.node.id, payload.to_node_id
            ))
            .into());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    #[tracing::instrument(level = "trace", skip_all)]
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = self.admit_node(&request)?;
        self.addressed_to_me(request.get_ref())?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        self.speaks_for(caller, rpc.vote.leader_id().voted_for())?;
        self.may_lead(caller).await?;
        well_formed(&rpc).map_err(|why| {
            Status::invalid_argument(format!("a malformed AppendEntries, refused: {why}"))
        })?;
        let applied = self
            .node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index);
        self.node
            .senders
            .led(rpc.leader_commit.map(|l| l.index), applied);
        // Below the disk's reserve, no new entries (disk.rs); heartbeats and
        // commits of entries already held still pass, so the leader keeps
        // its lease and this node applies what it has.
        if !rpc.entries.is_empty() {
            self.node.disk_room()?;
        }
        let leader_commit = rpc.leader_commit.map(|l| l.index);
        self.node.note_leader_reached(leader_commit);
        let sent_up_to = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        let answer = self.node.raft.append_entries(rpc).await;
        if let Ok(response) = &answer {
            let matched = match response {
                AppendEntriesResponse::Success => sent_up_to,
                AppendEntriesResponse::PartialSuccess(m) => m.map(|l| l.index),
                _ => None,
            };
            let held = matched.max(self.node.raft_metrics().last_log_index);
            self.node.note_log_held(held, leader_commit);
        }
        encode(&answer)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = self.admit_node(&request)?;
        self.addressed_to_me(request.get_ref())?;
        let rpc: VoteRequest<u64> = decode(request.get_ref())?;
        self.speaks_for(caller, rpc.vote.leader_id().voted_for())?;
        if caller.is_some_and(|id| !self.node.may_stand(id)) {
            return encode(&Ok::<_, RaftError<u64>>(self.node.decline_vote(&rpc)));
        }
        if self.node.repair.active() {
            tracing::info!(
                candidate = rpc.vote.leader_id().voted_for(),
                term = rpc.vote.leader_id().term,
                "declined a vote: this node is repairing and votes only once it holds its \
                 leader's log (repair.rs)"
            );
            return encode(&Ok::<_, RaftError<u64>>(self.node.vote_not_granted()));
        }
        // The same shape as openraft's own answer, which the candidate's
        // network layer decodes (`Result<VoteResponse, RaftError>`): the two
        // declines above once went out bare, and a candidate read them as a
        // message that does not decode instead of a vote not granted.
        encode(&self.node.raft.vote(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = self.admit_node(&request)?;
        self.addressed_to_me(request.get_ref())?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        self.speaks_for(caller, rpc.vote.leader_id().voted_for())?;
        self.may_lead(caller).await?;
        self.node.senders.led(None, None);
        self.node.disk_room()?;
        encode(&self.node.raft.install_snapshot(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn sign_checkpoint(
        &self,
        request: Request<SignCheckpointRequest>,
    ) -> Result<Response<SignCheckpointResponse>, Status> {
        self.admit_member(&request)?;
        let signed_note = self
            .node
            .sign_checkpoint(&request.into_inner().body)
            .await?;
        Ok(Response::new(SignCheckpointResponse { signed_note }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn sign_key_set(
        &self,
        request: Request<SignCheckpointRequest>,
    ) -> Result<Response<SignCheckpointResponse>, Status> {
        self.admit_member(&request)?;
        let signed_note = self.node.sign_key_set(&request.into_inner().body)?;
        Ok(Response::new(SignCheckpointResponse { signed_note }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn forward_append(
        &self,
        request: Request<ForwardAppendRequest>,
    ) -> Result<Response<ForwardAppendResponse>, Status> {
        self.admit_member(&request)?;
        let request = request.into_inner();
        let format = peer_format(request.format).map_err(Status::failed_precondition)?;
        let undecodable = |e: postcard::Error| {
            Status::invalid_argument(format!("forwarded events do not decode: {e}"))
        };
        let events: Vec<SubmittedEvent> = if format >= 2 {
            postcard::from_bytes(&request.events).map_err(undecodable)?
        } else {
            postcard::from_bytes::<Vec<Event>>(&request.events)
                .map_err(undecodable)?
                .into_iter()
                .map(SubmittedEvent::unsigned)
                .collect()
        };
        let outcome = self
            .node
            .append_forwarded(Admitted::forwarded(request.principal, events))
            .await?;
        let outcome = postcard::to_stdvec(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardAppendResponse {
            outcome,
            format: PEER_FORMAT_UNSIGNED,
        }))
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        self.admit_node(&request)?;
        // A node repairing belongs to a cluster even before it holds a log:
        // no first member may take it for a reason to start a second one.
        let initialized = self.node.repair.active()
            || self
                .node
                .raft
                .is_initialized()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        let metrics = self.node.raft_metrics();
        let membership = metrics.membership_config.membership();
        Ok(Response::new(IdentifyResponse {
            node_id: self.node.id,
            public_key: self.node.signer.public().to_string(),
            origin: self.node.reader.origin().to_owned(),
            initialized,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }))
    }

    async fn start_election(
        &self,
        request: Request<StartElectionRequest>,
    ) -> Result<Response<StartElectionResponse>, Status> {
        self.admit_member(&request)?;
        if let Some(why) = self.node.why_not_stand() {
            return Err(NodeError::FailedPrecondition(format!(
                "this node takes no leadership now: {why}"
            ))
            .into());
        }
        self.node
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::from(NodeError::Internal(e.to_string())))?;
        Ok(Response::new(StartElectionResponse {}))
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.admit_member(&request)?;
        let index = self.node.read_index().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::*;

    fn at(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn rpc(prev: Option<LogId<u64>>, ids: &[LogId<u64>]) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(5, 1),
            prev_log_id: prev,
            entries: ids
                .iter()
                .map(|&log_id| Entry {
                    log_id,
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: None,
        }
    }

    #[test]
    fn only_the_shape_a_leader_sends_is_taken() {
        well_formed(&rpc(None, &[at(1, 0), at(1, 1), at(5, 2)])).expect("from the start");
        well_formed(&rpc(Some(at(2, 9)), &[at(3, 10)])).expect("after a point");
        well_formed(&rpc(Some(at(2, 9)), &[])).expect("a heartbeat");
        let gap = well_formed(&rpc(Some(at(2, 9)), &[at(3, 12)])).expect_err("gap");
        assert!(gap.contains("index 12 where 10 is next"), "{gap}");
        assert!(
            well_formed(&rpc(None, &[at(1, 1)])).is_err(),
            "index 0 first"
        );
        assert!(well_formed(&rpc(Some(at(2, 9)), &[at(3, 10), at(3, 10)])).is_err());
        assert!(
            well_formed(&rpc(Some(at(2, 9)), &[at(6, 10)])).is_err(),
            "above the vote"
        );
        assert!(
            well_formed(&rpc(Some(at(4, 9)), &[at(3, 10)])).is_err(),
            "term backwards"
        );
    }
}
