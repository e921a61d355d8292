//! The `Admin` service: initializing the cluster, changing membership, status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tonic::{Request, Response, Status};
use veritrail_proto::hash_to_wire;
use veritrail_proto::raft::StartElectionRequest;
use veritrail_proto::v1::admin_server::Admin;
use veritrail_proto::v1::{
    AddLearnerRequest, BackupChunk, BackupInfo, BackupRequest, ChangeMembershipRequest,
    InitializeRequest, MemberStatus, MembershipResponse, StatusRequest, StatusResponse,
    TransferLeaderRequest, TransferLeaderResponse,
};

use crate::error::NodeError;

/// Bytes per backup message, at most; half the configured message limit when
/// that is smaller.
const BACKUP_CHUNK_MAX_BYTES: usize = 1 << 20;
use crate::node::Node;
use crate::peers::with_timeout;
use crate::policy::Action;

#[derive(Debug, Clone)]
pub struct AdminService {
    pub node: Arc<Node>,
}

impl AdminService {
    fn members(&self) -> Vec<MemberStatus> {
        let metrics = self.node.raft_metrics();
        let lags = self.node.replication.lags(&metrics);
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, info)| {
                let lag = lags.get(id).cloned().unwrap_or_default();
                MemberStatus {
                    node_id: *id,
                    addr: info.addr.clone(),
                    voter: voters.contains(id),
                    public_key: info.public_key.clone(),
                    matched_index: metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index),
                    lag_entries: lag.entries,
                    lag_bytes: lag.bytes,
                    lag_ms: lag.age.as_millis() as u64,
                    stuck: lag.stuck,
                    replication_error: if lag.entries > 0 {
                        lag.reason.unwrap_or_default()
                    } else {
                        String::new()
                    },
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[tracing::instrument(skip_all)]
    async fn initialize(
        &self,
        request: Request<InitializeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.node.require(&request, Action::Admin)?;
        let members: Vec<(u64, String)> = request
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.node_id, m.addr))
            .collect();
        if members.is_empty() {
            return Err(
                NodeError::InvalidArgument("initialize needs at least one member".into()).into(),
            );
        }
        self.node.initialize(&members).await?;
        Ok(Response::new(MembershipResponse {
            members: self.members(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.node.require(&request, Action::Admin)?;
        let request = request.into_inner();
        let member = request
            .member
            .ok_or_else(|| NodeError::InvalidArgument("member is required".into()))?;
        if !self.node.is_leader() {
            return Err(NodeError::unavailable(
                "membership changes run on the leader",
                self.node.leader(),
            )
            .into());
        }
        let info = self.node.identify(member.node_id, &member.addr).await?;
        self.node
            .change_members(|| {
                self.node
                    .raft
                    .add_learner(member.node_id, info.clone(), request.wait)
            })
            .await?;
        Ok(Response::new(MembershipResponse {
            members: self.members(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.node.require(&request, Action::Admin)?;
        let request = request.into_inner();
        let voters: BTreeSet<u64> = request.voters.into_iter().collect();
        if voters.is_empty() {
            return Err(
                NodeError::InvalidArgument("a cluster needs at least one voter".into()).into(),
            );
        }
        self.node
            .change_members(|| {
                self.node
                    .raft
                    .change_membership(voters.clone(), request.retain_removed)
            })
            .await?;
        Ok(Response::new(MembershipResponse {
            members: self.members(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        self.node.require(&request, Action::Admin)?;
        let to = request.into_inner().to_node_id;
        let metrics = self.node.raft_metrics();
        let membership = metrics.membership_config.membership();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(NodeError::FailedPrecondition(format!("node {to} is not a voter")).into());
        }
        if metrics.current_leader != Some(to) {
            let addr = membership
                .get_node(&to)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            let mut client = self
                .node
                .peers
                .client(&addr)
                .map_err(NodeError::InvalidArgument)?;
            client
                .start_election(with_timeout(
                    StartElectionRequest {},
                    Duration::from_secs(3),
                ))
                .await
                .map_err(|s| {
                    if s.code() == tonic::Code::FailedPrecondition {
                        NodeError::FailedPrecondition(format!("node {to}: {}", s.message()))
                    } else {
                        NodeError::unavailable(
                            format!("node {to} does not answer: {}", s.message()),
                            None,
                        )
                    }
                })?;
            self.node
                .raft
                .wait(Some(self.node.timeout()))
                .current_leader(to, "leadership transferred")
                .await
                .map_err(|_| {
                    NodeError::unavailable(
                        format!("node {to} did not win the election; its log may be behind"),
                        self.node.leader(),
                    )
                })?;
        }
        Ok(Response::new(TransferLeaderResponse { leader_id: to }))
    }

    type BackupStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<BackupChunk, Status>> + Send>>;

    #[tracing::instrument(skip_all)]
    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        self.node.require(&request, Action::Admin)?;
        let backup = self.node.reader.backup().await.map_err(NodeError::from)?;
        tracing::info!(
            bytes = backup.bytes,
            tree_size = backup.tree_size,
            last_log_index = backup.last_log_index,
            "backup written; streaming it"
        );
        let info = BackupInfo {
            node_id: self.node.id,
            bytes: backup.bytes,
            tree_size: backup.tree_size,
            root_hash: hash_to_wire(&backup.root),
            last_log_index: backup.last_log_index,
            origin: self.node.reader.origin().to_owned(),
        };
        // A blocking thread reads the file into a small channel: memory stays
        // bounded by the channel, whatever the log's size.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut file = backup.file;
        let chunk_bytes =
            (self.node.config.grpc.message_max_bytes / 2).clamp(4096, BACKUP_CHUNK_MAX_BYTES);
        tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut info = Some(info);
            loop {
                let mut buf = vec![0u8; chunk_bytes];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "reading the backup: {e}"
                        ))));
                        return;
                    }
                };
                if n == 0 && info.is_none() {
                    return;
                }
                buf.truncate(n);
                let chunk = BackupChunk {
                    info: info.take(),
                    data: buf,
                };
                if tx.blocking_send(Ok(chunk)).is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        // Any authenticated caller: the SDK finds the leader with it.
        self.node.caller(&request)?;
        let m = self.node.raft_metrics();
        let (tail, checkpoint_size) = self
            .node
            .reader
            .read(|reader| {
                Ok((
                    reader.tail(),
                    reader.latest_signed_checkpoint()?.map(|c| c.0),
                ))
            })
            .await
            .map_err(NodeError::from)?;
        let leader = self.node.leader();
        Ok(Response::new(StatusResponse {
            node_id: self.node.id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            term: m.current_term,
            leader_id: leader.as_ref().map(|l| l.id),
            leader_addr: leader.map(|l| l.addr).unwrap_or_default(),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            members: self.members(),
            tree_size: tail.size,
            root_hash: hash_to_wire(&tail.root()),
            chain_head: hash_to_wire(&tail.head),
            origin: self.node.reader.origin().to_owned(),
            public_key: self.node.signer.public().to_string(),
            checkpoint_size,
            snapshot_index: m.snapshot.map(|l| l.index),
            snapshot_tree_size: self.node.reader.snapshot_size(),
            purged_index: m.purged.map(|l| l.index),
            behind: self.node.behind().unwrap_or_default(),
            disk: self.node.disk.short().unwrap_or_default(),
        }))
    }
}
