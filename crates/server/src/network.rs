//! openraft's network over gRPC: the client side of the `RaftPeer` service.
//!
//! openraft's requests and responses travel as postcard bytes inside a
//! `RaftPayload`. A remote `Err(RaftError)` comes back as a value and becomes
//! `RPCError::RemoteError`; transport failures become `Unreachable` (connection
//! refused: openraft backs off) or `Network` (anything else). Every call carries
//! openraft's own deadline for it.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use veritrail_proto::raft::RaftPayload;
use veritrail_store::{NodeInfo, TypeConfig};

use crate::peers::{Peers, with_timeout};

/// Creates one [`PeerNetwork`] per replication target.
#[derive(Debug, Clone)]
pub struct Network {
    pub peers: Peers,
    /// Largest message a peer accepts; AppendEntries above it are split.
    pub max_message_bytes: usize,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerNetwork {
        PeerNetwork {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    target: u64,
    addr: String,
    peers: Peers,
    max_message_bytes: usize,
}

type RpcResult<T, E> = Result<T, RPCError<u64, NodeInfo, E>>;

/// Decodes and maps a transport error the way openraft expects.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> RPCError<u64, NodeInfo, E> {
    let io = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&io)),
        _ => RPCError::Network(NetworkError::new(&io)),
    }
}

impl PeerNetwork {
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
        let payload = RaftPayload {
            postcard: postcard::to_stdvec(request)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
            to_node_id: self.target,
        };
        if payload.postcard.len() + 1024 > self.max_message_bytes {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(0),
            ));
        }
        let mut client = self
            .peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
        let request = with_timeout(payload, timeout);
        let response = match kind {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        }
        .map_err(transport_error)?;
        let result: Result<Resp, E> = postcard::from_bytes(&response.into_inner().postcard)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        let entries = rpc.entries.len() as u64;
        match self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await {
            // Too big for one message: ask openraft to send half as many entries.
            Err(RPCError::PayloadTooLarge(_)) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            other => other,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
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
