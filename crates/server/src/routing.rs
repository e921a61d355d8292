//! An admitted append on its way to the log: the leader hands it to its
//! batcher, a follower forwards it to the leader, one hop at most.

use std::time::Instant;

use veritrail_proto::raft::ForwardAppendRequest;
use veritrail_store::{AppendReceipt, RejectionKind, RequestOutcome};

use crate::admission::Admitted;
use crate::batcher::BatchError;
use crate::error::{LeaderHint, NodeError, NodeResult};
use crate::node::Node;
use crate::peers::{PEER_FORMAT, PEER_FORMAT_UNSIGNED, peer_format, with_timeout};

impl Node {
    /// Appends an admitted request all together or not at all, from any node:
    /// the leader batches it, a follower forwards it to the leader (one hop).
    pub async fn append(&self, admitted: Admitted) -> NodeResult<Vec<AppendReceipt>> {
        let started = Instant::now();
        let deadline = started + self.timeout();
        let result = tokio::time::timeout_at(deadline.into(), self.append_routed(admitted, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::DeadlineExceeded(format!(
                    "the append did not complete within {} ms; it may still commit, so retry with the same event ids",
                    self.config.grpc.request_timeout_ms
                )))
            });
        self.metrics.append_requests.inc();
        self.metrics
            .append_latency_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(receipts) => {
                self.metrics.append_events.inc_by(receipts.len() as u64);
            }
            Err(NodeError::InvalidArgument(_) | NodeError::AlreadyExists(_)) => {
                self.metrics.append_rejected.inc();
            }
            Err(_) => {
                self.metrics.append_errors.inc();
            }
        }
        result
    }

    async fn append_routed(
        &self,
        admitted: Admitted,
        deadline: Instant,
    ) -> NodeResult<Vec<AppendReceipt>> {
        // Two routes at most: leadership may move once while we decide.
        for _ in 0..2 {
            let leader = self.wait_for_leader(deadline).await?;
            if leader.id == self.id {
                self.disk_room()?;
                match self.batcher.submit(admitted.clone().into_request()).await? {
                    Ok(outcome) => return outcome_to_result(outcome),
                    Err(BatchError::NotLeader) => continue,
                    Err(BatchError::Raft(e)) => {
                        return Err(NodeError::unavailable(format!("raft: {e}"), self.leader()));
                    }
                }
            }
            return self.forward(&leader, &admitted, deadline).await;
        }
        Err(NodeError::unavailable(
            "leadership is changing; retry with the same event ids",
            self.leader(),
        ))
    }

    async fn forward(
        &self,
        leader: &LeaderHint,
        admitted: &Admitted,
        deadline: Instant,
    ) -> NodeResult<Vec<AppendReceipt>> {
        let mut client = self
            .peers
            .client(&leader.addr)
            .map_err(|e| NodeError::unavailable(e, Some(leader.clone())))?;
        // Format 1 (bare events) unless one is signed, so that a leader of an
        // earlier release still reads what a cluster without signing sends.
        let (events, format) = if admitted.request().is_signed() {
            (postcard::to_stdvec(admitted.events()), PEER_FORMAT)
        } else {
            let bare: Vec<&veritrail_core::Event> =
                admitted.events().iter().map(|e| &e.event).collect();
            (postcard::to_stdvec(&bare), PEER_FORMAT_UNSIGNED)
        };
        let request = ForwardAppendRequest {
            principal: admitted.principal().to_owned(),
            events: events.map_err(|e| NodeError::Internal(e.to_string()))?,
            format,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let response = client
            .forward_append(with_timeout(request, left))
            .await
            .map_err(|status| match status.code() {
                // The leader's own answer for this request: pass it on as it is.
                tonic::Code::InvalidArgument => {
                    NodeError::InvalidArgument(status.message().to_owned())
                }
                tonic::Code::AlreadyExists => NodeError::AlreadyExists(status.message().to_owned()),
                tonic::Code::ResourceExhausted => {
                    NodeError::ResourceExhausted(status.message().to_owned())
                }
                tonic::Code::DeadlineExceeded => {
                    NodeError::DeadlineExceeded(status.message().to_owned())
                }
                _ => NodeError::unavailable(
                    format!(
                        "forwarding to the leader (node {} at {}) failed: {}",
                        leader.id,
                        leader.addr,
                        status.message()
                    ),
                    Some(leader.clone()),
                ),
            })?;
        let response = response.into_inner();
        peer_format(response.format).map_err(NodeError::Internal)?;
        let outcome: RequestOutcome = postcard::from_bytes(&response.outcome).map_err(|e| {
            NodeError::Internal(format!("the leader's answer does not decode: {e}"))
        })?;
        outcome_to_result(outcome)
    }

    /// A forwarded append, on the leader. The member that forwarded it
    /// admitted it; this node never forwards it again.
    pub async fn append_forwarded(&self, admitted: Admitted) -> NodeResult<RequestOutcome> {
        if !self.is_leader() {
            return Err(NodeError::unavailable(
                "this node no longer leads",
                self.leader(),
            ));
        }
        // The member vouches for the principal, but not for a signing
        // service's signature: the leader's own signer list decides.
        self.auth
            .check_signatures(admitted.principal(), admitted.events())?;
        self.disk_room()?;
        match self.batcher.submit(admitted.into_request()).await? {
            Ok(outcome) => Ok(outcome),
            Err(BatchError::NotLeader) => Err(NodeError::unavailable(
                "this node no longer leads",
                self.leader(),
            )),
            Err(BatchError::Raft(e)) => {
                Err(NodeError::unavailable(format!("raft: {e}"), self.leader()))
            }
        }
    }
}

/// A request's outcome as the client sees it.
fn outcome_to_result(outcome: RequestOutcome) -> NodeResult<Vec<AppendReceipt>> {
    match outcome {
        RequestOutcome::Accepted(receipts) => Ok(receipts),
        RequestOutcome::Rejected(r) => Err(match r.kind {
            RejectionKind::Invalid => NodeError::InvalidArgument(r.message),
            RejectionKind::Conflict => NodeError::AlreadyExists(r.message),
        }),
    }
}
