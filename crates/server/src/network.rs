//! openraft's network over gRPC: the client side of the `RaftPeer` service.
//!
//! openraft's requests and responses travel as postcard bytes inside a
//! `RaftPayload`. A remote `Err(RaftError)` comes back as a value and becomes
//! `RPCError::RemoteError`; transport failures become `Unreachable` (connection
//! refused: openraft backs off) or `Network` (anything else).
//!
//! # AppendEntries always makes progress
//!
//! openraft 0.9 waits one heartbeat interval for an AppendEntries answer and,
//! when that runs out, asks again for the same range. A backlog of large
//! entries made every message too big to cross in one heartbeat, so a follower
//! that fell behind never caught up (issue #22). Three things prevent that:
//!
//! - the store hands replication at most `raft.append_entries_max_bytes` of
//!   entries per message (`LogStore::limited_get_log_entries`);
//! - a message keeps going when openraft stops waiting for it, in a task of its
//!   own, up to `raft.append_entries_timeout_ms`; openraft's next attempt from
//!   the same point (same vote, same previous log id) waits for that message
//!   instead of sending another, and is answered for what the follower took;
//! - each target's byte budget adapts: a message slower than a heartbeat
//!   halves it (down to one entry per message), a quick one doubles it back up
//!   to the configured bound. A longer request is cut to the budget and
//!   answered `PartialSuccess`, so openraft sends the rest next;
//! - a heartbeat from another point than the message in flight travels on its
//!   own instead of aborting it (a follower whose log went back, repair.rs).
//!
//! The per-target state of all this is shared with the replication monitor
//! ([`ReplicationHealth`]), which reports lag and stuck members.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use veritrail_proto::raft::RaftPayload;
use veritrail_proto::raft::raft_peer_client::RaftPeerClient;
use veritrail_store::{NodeInfo, TypeConfig};

use crate::peers::{PEER_FORMAT, PEER_FORMAT_UNSIGNED, Peers, peer_format, with_timeout};

/// The smallest byte budget an adapting target goes down to. One entry is
/// always sent, whatever its size.
const APPEND_ENTRIES_MIN_BYTES: usize = 64 * 1024;
/// Room for a request's fields other than the entries.
const FRAMING_BYTES: usize = 1024;

/// Creates one [`PeerNetwork`] per replication target.
#[derive(Debug, Clone)]
pub struct Network {
    pub peers: Peers,
    /// Largest message a peer accepts.
    pub message_max_bytes: usize,
    /// Bytes of entries per AppendEntries message, at most.
    pub append_entries_max_bytes: usize,
    /// How long one AppendEntries message may take in all.
    pub append_entries_timeout: Duration,
    pub health: ReplicationHealth,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerNetwork {
        let health = self.health.target(target);
        PeerNetwork {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            message_max_bytes: self.message_max_bytes,
            append_entries_max_bytes: self.append_entries_max_bytes,
            append_entries_timeout: self.append_entries_timeout,
            budget_bytes: self.append_entries_max_bytes,
            in_flight: None,
            health,
        }
    }
}

/// What this node last saw of its AppendEntries to each target.
#[derive(Debug, Clone, Default)]
pub struct ReplicationHealth {
    targets: Arc<Mutex<BTreeMap<u64, Arc<Mutex<TargetHealth>>>>>,
}

/// One target's replication, as its sender sees it.
#[derive(Debug, Clone, Default)]
pub struct TargetHealth {
    /// The message under way: its entries, bytes and when it left.
    pub in_flight: Option<(usize, usize, Instant)>,
    /// The last failure, until a message gets through.
    pub last_error: Option<String>,
    /// openraft's deadline for one attempt: a message under way for longer
    /// is worth naming.
    pub heartbeat: Duration,
}

impl TargetHealth {
    /// Why replication to this target is not moving, in words, if known.
    pub fn reason(&self, now: Instant) -> Option<String> {
        if let Some((entries, bytes, since)) = self.in_flight {
            let under_way = now.saturating_duration_since(since);
            let ms = under_way.as_millis();
            if under_way > self.heartbeat {
                return Some(format!(
                    "an AppendEntries of {entries} entries ({bytes} bytes) has been under way for {ms} ms{}",
                    self.last_error
                        .as_ref()
                        .map(|e| format!("; before it: {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        self.last_error.clone()
    }
}

impl ReplicationHealth {
    fn target(&self, id: u64) -> Arc<Mutex<TargetHealth>> {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(targets.entry(id).or_default())
    }

    /// A copy of target `id`'s state, if this node has replicated to it.
    pub fn get(&self, id: u64) -> Option<TargetHealth> {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets
            .get(&id)
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// An AppendEntries message under way (or finished and not yet heard of).
#[derive(Debug)]
struct InFlight {
    vote: Vote<u64>,
    prev_log_id: Option<LogId<u64>>,
    /// The last log id the message carries (its `prev_log_id` when empty).
    last_log_id: Option<LogId<u64>>,
    /// Bytes of the message, 0 for a heartbeat.
    bytes: usize,
    task: tokio::task::JoinHandle<(Result<Vec<u8>, tonic::Status>, Duration)>,
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    target: u64,
    addr: String,
    peers: Peers,
    message_max_bytes: usize,
    append_entries_max_bytes: usize,
    append_entries_timeout: Duration,
    /// Bytes of entries the next message may carry.
    budget_bytes: usize,
    in_flight: Option<InFlight>,
    health: Arc<Mutex<TargetHealth>>,
}

impl Drop for PeerNetwork {
    fn drop(&mut self) {
        // Replication to this target stopped (leadership lost, member
        // removed): nobody waits for the message any more.
        if let Some(flight) = self.in_flight.take() {
            flight.task.abort();
            self.health().in_flight = None;
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<u64, NodeInfo, E>>;

/// Maps a transport error the way openraft expects.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> RPCError<u64, NodeInfo, E> {
    let io = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        // A member short of disk (disk.rs) refuses entries until space is
        // freed: openraft backs off as from one it cannot reach.
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
            RPCError::Unreachable(Unreachable::new(&io))
        }
        _ => RPCError::Network(NetworkError::new(&io)),
    }
}

fn network_error<E: std::error::Error>(
    e: impl std::error::Error + 'static,
) -> RPCError<u64, NodeInfo, E> {
    RPCError::Network(NetworkError::new(&e))
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// One call to a peer's `RaftPeer` service: request bytes in, response bytes
/// out, within `timeout`.
async fn exchange(
    mut client: RaftPeerClient<Channel>,
    kind: Rpc,
    payload: RaftPayload,
    timeout: Duration,
) -> Result<Vec<u8>, tonic::Status> {
    let request = with_timeout(payload, timeout);
    let call = async {
        match kind {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(response) => {
            let payload = response?.into_inner();
            // An answer in a format this node cannot read is the peer's
            // refusal to talk down to it, not bytes to guess at.
            peer_format(payload.format).map_err(tonic::Status::failed_precondition)?;
            Ok(payload.postcard)
        }
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The answer to a request whose entries end at `asked` (its `prev_log_id`
/// when it had none), from a message of the same leader, from the same point,
/// that ended at `sent`. Entries at the same index from the same leader are
/// the same entries, so what the follower took of one it took of the other.
fn answer_for(
    asked: Option<LogId<u64>>,
    sent: Option<LogId<u64>>,
    response: AppendEntriesResponse<u64>,
) -> AppendEntriesResponse<u64> {
    let matched = match response {
        AppendEntriesResponse::Success => sent,
        AppendEntriesResponse::PartialSuccess(matched) => matched,
        other => return other,
    };
    let index = |l: &Option<LogId<u64>>| l.map(|l| l.index);
    if index(&matched) >= index(&asked) {
        AppendEntriesResponse::Success
    } else {
        AppendEntriesResponse::PartialSuccess(matched)
    }
}

#[allow(
    clippy::result_large_err,
    reason = "openraft's RPCError is what RaftNetwork returns; these helpers hand it on as it is"
)]
impl PeerNetwork {
    fn health(&self) -> MutexGuard<'_, TargetHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `request` in postcard, tagged `format` (`PEER_FORMAT_UNSIGNED` unless
    /// it carries a signed batch).
    fn payload<Req: Serialize, E: std::error::Error>(
        &self,
        request: &Req,
        format: u32,
    ) -> RpcResult<RaftPayload, E> {
        Ok(RaftPayload {
            postcard: postcard::to_stdvec(request).map_err(network_error)?,
            to_node_id: self.target,
            format,
        })
    }

    /// A Vote, InstallSnapshot or lone heartbeat call, within openraft's
    /// deadline for it.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        request: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        // Votes, snapshots and lone heartbeats carry no entries: format 1.
        let payload = self.payload(request, PEER_FORMAT_UNSIGNED)?;
        if payload.postcard.len() + FRAMING_BYTES > self.message_max_bytes {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(0),
            ));
        }
        let client = self.client()?;
        let bytes = exchange(client, kind, payload, timeout)
            .await
            .map_err(transport_error)?;
        let result: Result<Resp, E> = postcard::from_bytes(&bytes).map_err(network_error)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn client<E: std::error::Error>(&self) -> RpcResult<RaftPeerClient<Channel>, E> {
        self.peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))
    }

    /// Sends `rpc`, cut to the byte budget, in a task of its own.
    fn launch(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
    ) -> RpcResult<InFlight, RaftError<u64>> {
        let mut keep = 0;
        let mut bytes = 0;
        for entry in &rpc.entries {
            let size = postcard::experimental::serialized_size(entry).map_err(network_error)?;
            if keep > 0 && bytes + size > self.budget_bytes {
                break;
            }
            keep += 1;
            bytes += size;
        }
        rpc.entries.truncate(keep);
        let last_log_id = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        let signed = rpc.entries.iter().any(|e| {
            matches!(
                e.payload,
                openraft::EntryPayload::Normal(veritrail_store::Command::AppendSigned(_))
            )
        });
        let format = if signed {
            PEER_FORMAT
        } else {
            PEER_FORMAT_UNSIGNED
        };
        let payload = self.payload(&rpc, format)?;
        if payload.postcard.len() + FRAMING_BYTES > self.message_max_bytes {
            // One entry larger than a message: configuration refuses batches
            // that large, so only a changed message limit gets here.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(0),
            ));
        }
        let client = self.client()?;
        self.health().in_flight = Some((keep, payload.postcard.len(), Instant::now()));
        let timeout = self.append_entries_timeout;
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = exchange(client, Rpc::AppendEntries, payload, timeout).await;
            (result, started.elapsed())
        });
        Ok(InFlight {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            last_log_id,
            bytes: if keep > 0 { bytes } else { 0 },
            task,
        })
    }

    /// Adapts the byte budget to how long a message of `bytes` took: one
    /// slower than a heartbeat halves it, a delivered one within half a
    /// heartbeat doubles it back (a refused connection says nothing about
    /// size, and changes nothing).
    fn adapt(&mut self, bytes: usize, took: Duration, heartbeat: Duration, delivered: bool) {
        tracing::debug!(
            target = self.target,
            bytes,
            took_ms = took.as_millis() as u64,
            budget = self.budget_bytes,
            "AppendEntries done"
        );
        if took > heartbeat && bytes > APPEND_ENTRIES_MIN_BYTES {
            self.budget_bytes = (self.budget_bytes / 2).max(APPEND_ENTRIES_MIN_BYTES);
        } else if delivered && took < heartbeat / 2 {
            self.budget_bytes = self
                .budget_bytes
                .saturating_mul(2)
                .min(self.append_entries_max_bytes);
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        let heartbeat = option.hard_ttl();
        // A heartbeat that does not leave from the in-flight message's point
        // travels on its own. openraft's heartbeats carry the last matching
        // log id it recorded, which stays behind while replication probes a
        // follower whose log went back (a member repairing, repair.rs):
        // aborting the probe for the heartbeat, as for any other message
        // from another point, kept such a follower from ever catching up.
        if rpc.entries.is_empty()
            && self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.vote == rpc.vote && f.prev_log_id != rpc.prev_log_id)
        {
            return self.call(Rpc::AppendEntries, &rpc, heartbeat).await;
        }
        let asked = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        // A message from an earlier attempt answers this one only if it left
        // from the same point under the same leader; otherwise replication
        // moved on (a conflict sent it back, or a new term began).
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.vote != rpc.vote || f.prev_log_id != rpc.prev_log_id)
            && let Some(stale) = self.in_flight.take()
        {
            stale.task.abort();
            self.health().in_flight = None;
        }
        self.health().heartbeat = heartbeat;
        if self.in_flight.is_none() {
            self.in_flight = Some(self.launch(rpc)?);
        }
        let Some(flight) = self.in_flight.as_mut() else {
            unreachable!("set above");
        };
        // openraft stops waiting after one heartbeat by dropping this future;
        // the task goes on and the next attempt picks its result up here.
        // (openraft 0.9.25 also records the attempt's start as the time the
        // follower acknowledged; that clock only feeds its metrics.)
        let joined = (&mut flight.task).await;
        let Some(flight) = self.in_flight.take() else {
            unreachable!("still set: only this method takes it");
        };
        self.health().in_flight = None;
        let (result, took) = joined.map_err(network_error)?;
        if flight.bytes > 0 {
            self.adapt(flight.bytes, took, heartbeat, result.is_ok());
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(status) => {
                self.health().last_error = Some(format!(
                    "AppendEntries failed after {} ms: {}: {}",
                    took.as_millis(),
                    status.code(),
                    status.message()
                ));
                return Err(transport_error(status));
            }
        };
        let response: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            postcard::from_bytes(&bytes).map_err(network_error)?;
        let response = response.map_err(|e| {
            self.health().last_error = Some(format!("refused: {e}"));
            RPCError::RemoteError(RemoteError::new(self.target, e))
        })?;
        self.health().last_error = None;
        Ok(answer_for(asked, flight.last_log_id, response))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        // One chunk per call (raft.snapshot_chunk_bytes), within
        // raft.install_snapshot_timeout_ms: openraft's deadline for it.
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(3, 1), index))
    }

    #[test]
    fn an_answer_covers_what_both_messages_carry() {
        use AppendEntriesResponse::{Conflict, PartialSuccess, Success};
        // The follower took a message up to 10; asked up to 10, 8 or 14.
        assert_eq!(answer_for(log_id(10), log_id(10), Success), Success);
        assert_eq!(answer_for(log_id(8), log_id(10), Success), Success);
        assert_eq!(
            answer_for(log_id(14), log_id(10), Success),
            PartialSuccess(log_id(10))
        );
        // A heartbeat from the same point is answered by the message.
        assert_eq!(answer_for(log_id(5), log_id(10), Success), Success);
        assert_eq!(
            answer_for(log_id(14), log_id(10), PartialSuccess(log_id(7))),
            PartialSuccess(log_id(7))
        );
        assert_eq!(answer_for(log_id(14), log_id(10), Conflict), Conflict);
        assert_eq!(answer_for(None, None, Success), Success);
    }
}
