//! The `RaftPeer` service: what other nodes call on this one.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use veritrail_core::Event;
use veritrail_proto::raft::raft_peer_server::RaftPeer;
use veritrail_proto::raft::{
    ForwardAppendRequest, ForwardAppendResponse, IdentifyRequest, IdentifyResponse, RaftPayload,
    ReadIndexRequest, ReadIndexResponse, SignCheckpointRequest, SignCheckpointResponse,
    StartElectionRequest, StartElectionResponse,
};
use veritrail_store::TypeConfig;

use crate::error::NodeError;
use crate::node::Node;

#[derive(Debug, Clone)]
pub struct PeerService {
    pub node: Arc<Node>,
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    postcard::from_bytes(&payload.postcard)
        .map_err(|e| Status::invalid_argument(format!("raft payload does not decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let postcard = postcard::to_stdvec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload {
        postcard,
        to_node_id: 0,
    }))
}

impl PeerService {
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
        self.addressed_to_me(request.get_ref())?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.node.raft.append_entries(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.addressed_to_me(request.get_ref())?;
        let rpc: VoteRequest<u64> = decode(request.get_ref())?;
        encode(&self.node.raft.vote(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.addressed_to_me(request.get_ref())?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.node.raft.install_snapshot(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn sign_checkpoint(
        &self,
        request: Request<SignCheckpointRequest>,
    ) -> Result<Response<SignCheckpointResponse>, Status> {
        let signed_note = self
            .node
            .sign_checkpoint(&request.into_inner().body)
            .await?;
        Ok(Response::new(SignCheckpointResponse { signed_note }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn forward_append(
        &self,
        request: Request<ForwardAppendRequest>,
    ) -> Result<Response<ForwardAppendResponse>, Status> {
        let request = request.into_inner();
        let events: Vec<Event> = postcard::from_bytes(&request.events).map_err(|e| {
            Status::invalid_argument(format!("forwarded events do not decode: {e}"))
        })?;
        let outcome = self
            .node
            .append_forwarded(request.principal, events)
            .await?;
        let outcome = postcard::to_stdvec(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardAppendResponse { outcome }))
    }

    async fn identify(
        &self,
        _request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let initialized = self
            .node
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(IdentifyResponse {
            node_id: self.node.id,
            public_key: self.node.signer.public().to_string(),
            origin: self.node.reader.origin().to_owned(),
            initialized,
        }))
    }

    async fn start_election(
        &self,
        _request: Request<StartElectionRequest>,
    ) -> Result<Response<StartElectionResponse>, Status> {
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
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self.node.read_index().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}
