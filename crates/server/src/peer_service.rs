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
    Ok(Response::new(RaftPayload { postcard }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    #[tracing::instrument(level = "trace", skip_all)]
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.node.raft.append_entries(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<u64> = decode(request.get_ref())?;
        encode(&self.node.raft.vote(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
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
        Ok(Response::new(IdentifyResponse {
            node_id: self.node.id,
            public_key: self.node.signer.public().to_string(),
            origin: self.node.reader.origin().to_owned(),
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
