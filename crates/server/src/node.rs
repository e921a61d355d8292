//! A running node: Raft, the store, the batcher and the node's key, and the
//! operations the gRPC services are built from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{Raft, RaftMetrics, ServerState};
use veritrail_core::note::{NoteKey, NoteSigner, SignedNote};
use veritrail_core::{Checkpoint, Event, Limits, validate_principal};
use veritrail_proto::raft::{
    ForwardAppendRequest, IdentifyRequest, ReadIndexRequest, SignCheckpointRequest,
};
use veritrail_store::{
    AppendReceipt, AppendRequest, AuditReader, CheckpointRecord, Command, CommandResponse,
    NodeInfo, RejectionKind, RequestOutcome, TypeConfig,
};

use crate::auth::{Auth, Caller};
use crate::batcher::{BatchError, Batcher, event_size};
use crate::config::Config;
use crate::error::{LeaderHint, NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::peers::{Peers, with_timeout};
use crate::policy::Action;

/// The source of the events a node records about its own security decisions.
pub const SECURITY_SOURCE: &str = "veritrail.security";

/// Everything one node runs. Shared by the services behind an `Arc`.
pub struct Node {
    pub id: u64,
    pub config: Config,
    pub limits: Limits,
    pub raft: Raft<TypeConfig>,
    pub reader: AuditReader,
    pub signer: NoteSigner,
    pub peers: Peers,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    /// The principal of what this node appends itself (its SPIFFE ID).
    pub principal: String,
    /// Members' replication lag, as leader.
    pub replication: Arc<crate::replication::Replication>,
    /// Set when the node is stopping: streams end and send clients elsewhere.
    pub drain: crate::drain::Drain,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("key", self.signer.public())
            .finish_non_exhaustive()
    }
}

/// The node id a [`Gate`] found in a peer's certificate (`None` on a
/// development node).
#[derive(Debug, Clone, Copy)]
pub struct PeerNode(pub Option<u64>);

/// Authenticates every call from its headers and TLS session, before tonic
/// reads and decodes its body: a caller without credentials cannot make the
/// node buffer a message of `grpc.max_message_bytes`. The identity travels to
/// the service method in the request's extensions.
#[derive(Debug, Clone)]
pub struct Gate {
    node: Arc<Node>,
    /// Peers (`RaftPeer`) must present a node certificate; clients any
    /// credential.
    peers: bool,
}

impl Gate {
    pub fn clients(node: Arc<Node>) -> Gate {
        Gate { node, peers: false }
    }

    pub fn peers(node: Arc<Node>) -> Gate {
        Gate { node, peers: true }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if self.peers {
            let id = self
                .node
                .auth
                .member(&request)
                .inspect_err(|e| self.node.count(e))?;
            request.extensions_mut().insert(PeerNode(id));
        } else {
            let caller = self.node.authenticate(&request)?;
            request.extensions_mut().insert(caller);
        }
        Ok(request)
    }
}

/// Cuts `text` to at most `max_bytes`, on a character boundary.
fn truncate(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Runs blocking store reads off the async workers.
pub async fn blocking<T, F>(f: F) -> NodeResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> NodeResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Internal(format!("read task failed: {e}")))?
}

impl Node {
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
    async fn wait_for_leader(&self, deadline: Instant) -> NodeResult<LeaderHint> {
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

    /// Who made `request` (`UNAUTHENTICATED` when nobody we know): inside a
    /// service method, the caller the [`Gate`] authenticated before the
    /// request's body was read.
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> NodeResult<Caller> {
        match request.extensions().get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => self.authenticate(request),
        }
    }

    fn authenticate<T>(&self, request: &tonic::Request<T>) -> NodeResult<Caller> {
        let caller = self
            .auth
            .authenticate(request)
            .inspect_err(|e| self.count(e))?;
        // An identity that cannot be recorded is refused at the door, not at
        // every append.
        validate_principal(&caller.principal, &self.limits).map_err(|e| {
            self.metrics.unauthenticated.inc();
            NodeError::Unauthenticated(format!("the caller's identity cannot be a principal: {e}"))
        })?;
        Ok(caller)
    }

    /// The caller of `request`, once it is known to be allowed `action`.
    pub fn require<T>(
        &self,
        request: &tonic::Request<T>,
        action: Action<'_>,
    ) -> NodeResult<Caller> {
        let caller = self.caller(request)?;
        self.authorize(&caller, action)?;
        Ok(caller)
    }

    /// Whether `caller` may do `action` (`PERMISSION_DENIED` otherwise).
    pub fn authorize(&self, caller: &Caller, action: Action<'_>) -> NodeResult<()> {
        self.auth
            .authorize(caller, action)
            .inspect_err(|e| self.count(e))
    }

    /// The node that made `request`, by its certificate: Raft and peer calls
    /// come from nodes of this cluster's trust domain only
    /// (`PERMISSION_DENIED` otherwise). `None` on a development node.
    pub fn member<T>(&self, request: &tonic::Request<T>) -> NodeResult<Option<u64>> {
        match request.extensions().get::<PeerNode>() {
            Some(PeerNode(id)) => Ok(*id),
            None => self.auth.member(request).inspect_err(|e| self.count(e)),
        }
    }

    fn count(&self, error: &NodeError) {
        match error {
            NodeError::Unauthenticated(_) => self.metrics.unauthenticated.inc(),
            NodeError::PermissionDenied(_) => self.metrics.denied.inc(),
            NodeError::ResourceExhausted(_) => self.metrics.rate_limited.inc(),
            _ => 0,
        };
    }

    /// Admits `caller`'s append of `events` at the door: valid, allowed for
    /// every source it names, and within the caller's rate. A denial is itself
    /// recorded in the log (at most `auth.denial_records_per_s` per principal).
    pub fn admit_append(self: &Arc<Self>, caller: &Caller, events: &[Event]) -> NodeResult<()> {
        self.validate_append(&caller.principal, events)?;
        if caller.node_id.is_none() && events.iter().any(|e| e.source == SECURITY_SOURCE) {
            self.metrics.denied.inc();
            return Err(NodeError::PermissionDenied(format!(
                "source {SECURITY_SOURCE:?} is reserved for the nodes' own records"
            )));
        }
        let mut sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        for source in sources {
            if let Err(e) = self.authorize(caller, Action::Append { source }) {
                self.record_denial(caller, source, events.len());
                return Err(e);
            }
        }
        self.auth
            .charge_events(caller, events.len())
            .inspect_err(|e| self.count(e))
    }

    /// Appends `events` for `caller`, stamped with its principal, once admitted.
    pub async fn append_as(
        self: &Arc<Self>,
        caller: &Caller,
        events: Vec<Event>,
    ) -> NodeResult<Vec<AppendReceipt>> {
        self.admit_append(caller, &events)?;
        self.append(caller.principal.clone(), events).await
    }

    /// One request of an `AppendStream`: charged against the request rate
    /// like a call of its own, then appended as [`Self::append_as`].
    pub async fn append_streamed(
        self: &Arc<Self>,
        caller: &Caller,
        events: Vec<Event>,
    ) -> NodeResult<Vec<AppendReceipt>> {
        self.auth
            .charge_request(caller)
            .inspect_err(|e| self.count(e))?;
        self.admit_append(caller, &events)?;
        self.append(caller.principal.clone(), events).await
    }

    /// Appends, in the background and under this node's own principal, the
    /// event that `caller` was denied an append to `source`.
    fn record_denial(self: &Arc<Self>, caller: &Caller, source: &str, events: usize) {
        if !self.auth.may_record_denial(&caller.principal) {
            return;
        }
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut actor = caller.principal.clone();
        truncate(&mut actor, self.limits.actor_max_bytes);
        let event = Event {
            source: SECURITY_SOURCE.into(),
            event_id: format!("append-denied-{}-{now_ns}-{n}", self.id),
            actor,
            action: "append.denied".into(),
            resource: format!("source/{source}"),
            outcome: "denied".into(),
            event_time_ns: Some(now_ns),
            attributes: [
                ("events".to_owned(), events.to_string()),
                ("node".to_owned(), self.id.to_string()),
            ]
            .into(),
            ..Event::default()
        };
        let node = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = node.append(node.principal.clone(), vec![event]).await {
                tracing::warn!(error = %e, "recording a denied append failed");
            }
        });
    }

    /// Validates a client's events against this node's limits. Nothing that
    /// fails here reaches Raft.
    pub fn validate_append(&self, principal: &str, events: &[Event]) -> NodeResult<()> {
        if events.is_empty() {
            return Err(NodeError::InvalidArgument(
                "an append needs at least one event".into(),
            ));
        }
        let max = self.config.grpc.max_batch_events;
        if events.len() > max {
            return Err(NodeError::InvalidArgument(format!(
                "{} events in one request; the limit is {max} (grpc.max_batch_events)",
                events.len()
            )));
        }
        validate_principal(principal, &self.limits)
            .map_err(|e| NodeError::InvalidArgument(format!("principal: {e}")))?;
        for (i, event) in events.iter().enumerate() {
            event.validate(&self.limits).map_err(|e| {
                if events.len() == 1 {
                    NodeError::InvalidArgument(e.to_string())
                } else {
                    NodeError::InvalidArgument(format!("event {i}: {e}"))
                }
            })?;
        }
        // A request is appended all or nothing, so it travels in one Raft
        // entry, and a Raft entry must fit one message to a follower: a larger
        // one could never replicate (issue #22).
        let bytes = events.iter().map(event_size).sum::<usize>() + principal.len();
        let max = self.config.batch.max_bytes;
        if bytes > max {
            return Err(NodeError::InvalidArgument(format!(
                "these {} events take about {bytes} bytes; one request is appended as one \
                 Raft entry of at most {max} bytes (batch.max_bytes): split it into smaller requests",
                events.len()
            )));
        }
        Ok(())
    }

    /// Appends events all together or not at all, from any node: the leader
    /// batches them, a follower forwards them to the leader (one hop).
    pub async fn append(
        &self,
        principal: String,
        events: Vec<Event>,
    ) -> NodeResult<Vec<AppendReceipt>> {
        self.validate_append(&principal, &events)?;
        let started = Instant::now();
        let deadline = started + self.timeout();
        let result = tokio::time::timeout_at(deadline.into(), self.append_routed(principal, events, deadline))
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
        principal: String,
        events: Vec<Event>,
        deadline: Instant,
    ) -> NodeResult<Vec<AppendReceipt>> {
        // Two routes at most: leadership may move once while we decide.
        for _ in 0..2 {
            let leader = self.wait_for_leader(deadline).await?;
            if leader.id == self.id {
                match self
                    .batcher
                    .submit(AppendRequest {
                        principal: principal.clone(),
                        events: events.clone(),
                    })
                    .await?
                {
                    Ok(outcome) => return outcome_to_result(outcome),
                    Err(BatchError::NotLeader) => continue,
                    Err(BatchError::Raft(e)) => {
                        return Err(NodeError::unavailable(format!("raft: {e}"), self.leader()));
                    }
                }
            }
            return self.forward(&leader, &principal, &events, deadline).await;
        }
        Err(NodeError::unavailable(
            "leadership is changing; retry with the same event ids",
            self.leader(),
        ))
    }

    async fn forward(
        &self,
        leader: &LeaderHint,
        principal: &str,
        events: &[Event],
        deadline: Instant,
    ) -> NodeResult<Vec<AppendReceipt>> {
        let mut client = self
            .peers
            .client(&leader.addr)
            .map_err(|e| NodeError::unavailable(e, Some(leader.clone())))?;
        let request = ForwardAppendRequest {
            principal: principal.to_owned(),
            events: postcard::to_stdvec(events).map_err(|e| NodeError::Internal(e.to_string()))?,
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
        let outcome: RequestOutcome = postcard::from_bytes(&response.into_inner().outcome)
            .map_err(|e| {
                NodeError::Internal(format!("the leader's answer does not decode: {e}"))
            })?;
        outcome_to_result(outcome)
    }

    /// A forwarded append, on the leader. Never forwards again.
    pub async fn append_forwarded(
        &self,
        principal: String,
        events: Vec<Event>,
    ) -> NodeResult<RequestOutcome> {
        self.validate_append(&principal, &events)?;
        if !self.is_leader() {
            return Err(NodeError::unavailable(
                "this node no longer leads",
                self.leader(),
            ));
        }
        match self
            .batcher
            .submit(AppendRequest { principal, events })
            .await?
        {
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

    /// Makes a read linearizable: it will see every append acknowledged before
    /// it began. The leader confirms its leadership with a quorum; a follower asks
    /// the leader for that read index and waits until it has applied it.
    pub async fn linearize(&self) -> NodeResult<()> {
        let deadline = Instant::now() + self.timeout();
        let index = if self.is_leader() {
            self.read_index().await?
        } else {
            let leader = self.wait_for_leader(deadline).await?;
            if leader.id == self.id {
                self.read_index().await?
            } else {
                let mut client = self
                    .peers
                    .client(&leader.addr)
                    .map_err(|e| NodeError::unavailable(e, Some(leader.clone())))?;
                let left = deadline.saturating_duration_since(Instant::now());
                client
                    .read_index(with_timeout(ReadIndexRequest {}, left))
                    .await
                    .map_err(|s| {
                        NodeError::unavailable(
                            format!("asking the leader for a read index: {}", s.message()),
                            Some(leader.clone()),
                        )
                    })?
                    .into_inner()
                    .index
            }
        };
        if let Some(index) = index {
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "read index applied")
                .await
                .map_err(|_| NodeError::unavailable("this node is too far behind to serve a linearizable read; retry, or ask for a local read", self.leader()))?;
        }
        Ok(())
    }

    /// On the leader: the log index a linearizable read must wait for.
    pub async fn read_index(&self) -> NodeResult<Option<u64>> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(
                NodeError::unavailable("this node does not lead", self.leader()),
            ),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(
                NodeError::unavailable(format!("the leader cannot reach a quorum: {e}"), None),
            ),
            Err(e) => Err(NodeError::Internal(e.to_string())),
        }
    }

    /// Signs a checkpoint body if, and only if, it is exactly the body this node
    /// computes from its own applied log at that size.
    pub async fn sign_checkpoint(&self, body: &str) -> NodeResult<String> {
        let claimed = Checkpoint::parse(body)?;
        if claimed.origin != self.reader.origin() {
            return Err(NodeError::FailedPrecondition(format!(
                "checkpoint is for origin {:?}",
                claimed.origin
            )));
        }
        let mut sizes = self.reader.watch_size();
        let wait = Duration::from_millis(self.config.checkpoint.catch_up_timeout_ms);
        let reached = tokio::time::timeout(wait, async {
            sizes
                .wait_for(|size| *size >= claimed.size)
                .await
                .map(|_| ())
        })
        .await;
        if !matches!(reached, Ok(Ok(()))) {
            return Err(NodeError::FailedPrecondition(format!(
                "this node has not applied {} entries yet; it signs only what it holds",
                claimed.size
            )));
        }
        let reader = self.reader.clone();
        let size = claimed.size;
        let mine = blocking(move || Ok(reader.checkpoint_at(size)?)).await?;
        if mine != claimed {
            tracing::error!(size, claimed = %claimed.root, mine = %mine.root, "asked to sign a checkpoint this node disagrees with");
            return Err(NodeError::FailedPrecondition(format!(
                "refusing to sign: at size {size} this node computes root {}, not {}",
                mine.root, claimed.root
            )));
        }
        Ok(mine.sign(&self.signer)?.to_string())
    }

    /// One checkpoint round, on the leader: cut a checkpoint at the applied size,
    /// gather voters' signatures, and record it through Raft once a quorum signed.
    pub async fn checkpoint_round(&self) -> NodeResult<Option<u64>> {
        let reader = self.reader.clone();
        let (size, latest) = blocking(move || {
            Ok((
                reader.tail().size,
                reader.latest_signed_checkpoint()?.map(|c| c.0),
            ))
        })
        .await?;
        if size == 0 || latest.is_some_and(|l| l >= size) {
            return Ok(None);
        }
        let reader = self.reader.clone();
        let checkpoint = blocking(move || Ok(reader.checkpoint_at(size)?)).await?;
        let body = checkpoint.body();
        let membership = self.raft_metrics().membership_config.membership().clone();
        let voters: Vec<(u64, NodeInfo)> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect();
        let quorum = voters.len() / 2 + 1;
        let timeout = Duration::from_millis(self.config.checkpoint.catch_up_timeout_ms + 1000);
        let requests = voters.iter().map(|(id, info)| {
            let body = body.clone();
            async move {
                if *id == self.id {
                    return self.sign_checkpoint(&body).await.ok();
                }
                let mut client = self.peers.client(&info.addr).ok()?;
                match client.sign_checkpoint(with_timeout(SignCheckpointRequest { body }, timeout)).await {
                    Ok(r) => Some(r.into_inner().signed_note),
                    Err(status) => {
                        tracing::warn!(node = id, error = %status.message(), "voter did not sign the checkpoint");
                        None
                    }
                }
            }
        });
        let notes = futures::future::join_all(requests).await;
        let keys: Vec<NoteKey> = voters
            .iter()
            .filter_map(|(_, n)| NoteKey::parse(&n.public_key).ok())
            .collect();
        let mut merged = SignedNote::new(&body)?;
        for note in notes.into_iter().flatten() {
            let Ok(note) = SignedNote::parse(&note) else {
                continue;
            };
            if note.text() != body {
                continue;
            }
            for signature in note.signatures() {
                if keys
                    .iter()
                    .any(|k| k.name() == signature.name && k.id() == signature.key_id)
                {
                    merged.add_signature(signature.clone())?;
                }
            }
        }
        if merged.verify(&keys, quorum).is_err() {
            return Err(NodeError::Unavailable {
                message: format!(
                    "checkpoint at size {size}: {} of {} voters signed, {quorum} needed",
                    merged.signatures().len(),
                    voters.len()
                ),
                leader: None,
            });
        }
        let record = CheckpointRecord {
            signed_note: merged.to_string(),
        };
        match self.raft.client_write(Command::Checkpoint(record)).await {
            Ok(r) => match r.data {
                CommandResponse::CheckpointRecorded { size } => Ok(Some(size)),
                CommandResponse::CheckpointRejected { reason } => {
                    Err(NodeError::Internal(format!("checkpoint refused: {reason}")))
                }
                other => Err(NodeError::Internal(format!(
                    "unexpected response {other:?}"
                ))),
            },
            Err(e) => Err(NodeError::unavailable(e.to_string(), self.leader())),
        }
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
