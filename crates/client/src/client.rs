//! [`Client`]: every call of the `AuditLog` and `Admin` services, through the
//! retrying transport.

use std::sync::Arc;

use crate::transport::Conn;
use futures::stream::{self, BoxStream, StreamExt};
use tonic::{Code, Streaming};
use veritrail_core::{
    ConsistencyProof, Event, Hash, InclusionProof, Limits, LogEntry, RangeReport, ScanQuery,
    SignedCheckpoint, TailQuery,
};
use veritrail_proto::v1::admin_client::AdminClient;
use veritrail_proto::v1::audit_log_client::AuditLogClient;
use veritrail_proto::v1::{self, ReadConsistency};
use veritrail_proto::{frontier_from_wire, scan_to_wire};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::retry::{Next, Retry, RetryState};
use crate::transport::Transport;
use crate::types::{Receipt, log_entry};

/// A connection to a Veritrail cluster. Cheap to clone; clones share channels
/// and what they learnt about the leader.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) transport: Arc<Transport>,
}

/// A validated event ready for the wire, with the idempotency key it will keep
/// through every retry.
pub(crate) fn prepare(mut event: Event) -> Result<v1::Event> {
    if event.event_id.is_empty() {
        // UUIDv7: unique without coordination, and time-ordered, which keeps the
        // cluster's idempotency index append-mostly.
        event.event_id = uuid::Uuid::now_v7().to_string();
    }
    // The format's own maxima: the cluster may be configured tighter, and then
    // says so, but nothing that could never be stored leaves the client.
    event
        .validate(&Limits::format_maximum())
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    Ok(v1::Event::from(&event))
}

fn receipts(events: &[v1::Event], wire: Vec<v1::Receipt>) -> Result<Vec<Receipt>> {
    if wire.len() != events.len() {
        return Err(Error::Protocol(format!(
            "{} receipts for {} events",
            wire.len(),
            events.len()
        )));
    }
    wire.into_iter()
        .zip(events)
        .map(|(r, e)| Receipt::from_wire(r, e.event_id.clone()))
        .collect()
}

impl Client {
    /// A client of the cluster reachable at `endpoints`, with default settings.
    /// Connects lazily: this fails only on malformed addresses. Must be called
    /// inside a tokio runtime.
    pub fn connect(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Result<Client> {
        Client::with_config(ClientConfig::new(endpoints))
    }

    pub fn with_config(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            transport: Arc::new(Transport::new(config)?),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    /// Every node address the client knows: the configured ones and leaders it
    /// was pointed to.
    pub fn endpoints(&self) -> Vec<String> {
        self.transport.addrs()
    }

    fn consistency(&self) -> ReadConsistency {
        if self.transport.config.local_reads {
            ReadConsistency::Local
        } else {
            ReadConsistency::Linearizable
        }
    }

    fn audit(&self, channel: Conn) -> AuditLogClient<Conn> {
        AuditLogClient::new(channel)
            .max_decoding_message_size(self.transport.config.max_decoding_message_bytes)
    }

    fn admin_client(channel: Conn) -> AdminClient<Conn> {
        AdminClient::new(channel)
    }

    /// Appends one event and returns once it is committed on a majority and
    /// applied. An empty `event_id` is filled with a fresh UUIDv7 that every retry
    /// reuses, so a retried append yields exactly one entry.
    pub async fn append(&self, event: Event) -> Result<Receipt> {
        let event = prepare(event)?;
        let (response, _) = self
            .transport
            .call("Append", |channel| {
                let request = v1::AppendRequest {
                    event: Some(event.clone()),
                };
                let mut client = self.audit(channel);
                async move { client.append(request).await }
            })
            .await?;
        let receipt = response
            .into_inner()
            .receipt
            .ok_or_else(|| Error::Protocol("append answered without a receipt".into()))?;
        Receipt::from_wire(receipt, event.event_id)
    }

    /// Appends events all together or not at all, in order.
    pub async fn append_batch(&self, events: Vec<Event>) -> Result<Vec<Receipt>> {
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                prepare(e).map_err(|e| match e {
                    Error::InvalidRequest(m) => Error::InvalidRequest(format!("event {i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (response, _) = self
            .transport
            .call("AppendBatch", |channel| {
                let request = v1::AppendBatchRequest {
                    events: events.clone(),
                };
                let mut client = self.audit(channel);
                async move { client.append_batch(request).await }
            })
            .await?;
        receipts(&events, response.into_inner().receipts)
    }

    /// The entry at `seq`.
    pub async fn get(&self, seq: u64) -> Result<LogEntry> {
        self.get_entry(v1::get_entry_request::Key::Seq(seq)).await
    }

    /// The entry of an event, by its source and idempotency key.
    pub async fn get_by_event_id(&self, source: &str, event_id: &str) -> Result<LogEntry> {
        self.get_entry(v1::get_entry_request::Key::Event(v1::EventKey {
            source: source.to_owned(),
            event_id: event_id.to_owned(),
        }))
        .await
    }

    async fn get_entry(&self, key: v1::get_entry_request::Key) -> Result<LogEntry> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetEntry", |channel| {
                let request = v1::GetEntryRequest {
                    key: Some(key.clone()),
                    consistency,
                };
                let mut client = self.audit(channel);
                async move { client.get_entry(request).await }
            })
            .await?;
        log_entry(response.into_inner().entry)
    }

    /// Entries matching `query`, in sequence order. A stream that breaks (a node
    /// fails, leadership moves) resumes after the last entry it returned.
    pub fn scan(&self, query: ScanQuery) -> BoxStream<'static, Result<LogEntry>> {
        let state = Resumable::new(self.clone(), Cursor::Scan(query));
        state.into_stream()
    }

    /// Entries from `query.from_seq` on, then each new one as it is applied: an
    /// export feed. Survives node failures by resuming after the last entry it
    /// returned; ends with an error only when no node answers within the retry
    /// policy.
    pub fn tail(&self, query: TailQuery) -> BoxStream<'static, Result<LogEntry>> {
        let state = Resumable::new(self.clone(), Cursor::Tail(query));
        state.into_stream()
    }

    /// The latest co-signed checkpoint, or the one of `tree_size`.
    pub async fn checkpoint(&self, tree_size: Option<u64>) -> Result<SignedCheckpoint> {
        let (response, _) = self
            .transport
            .call("GetCheckpoint", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_checkpoint(v1::GetCheckpointRequest { tree_size })
                        .await
                }
            })
            .await?;
        Ok(SignedCheckpoint::try_from(response.into_inner())?)
    }

    /// The latest checkpoint node `node` holds, asked of it alone, once.
    pub(crate) async fn checkpoint_at(&self, node: usize) -> Result<SignedCheckpoint> {
        let channel = self
            .transport
            .channel(node)
            .ok_or_else(|| Error::InvalidRequest(format!("no node {node}")))?;
        let r = self
            .audit(channel)
            .get_checkpoint(v1::GetCheckpointRequest { tree_size: None })
            .await?
            .into_inner();
        Ok(SignedCheckpoint::try_from(r)?)
    }

    /// The inclusion proof of entry `seq` in the tree of `tree_size` entries.
    pub async fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetInclusionProof", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_inclusion_proof(v1::GetInclusionProofRequest {
                            seq,
                            tree_size,
                            consistency,
                        })
                        .await
                }
            })
            .await?;
        Ok(InclusionProof::try_from(response.into_inner())?)
    }

    /// The consistency proof from the tree of `from_size` to that of `to_size`.
    pub async fn consistency_proof(
        &self,
        from_size: u64,
        to_size: u64,
    ) -> Result<ConsistencyProof> {
        self.consistency_proof_inner(from_size, to_size, None).await
    }

    /// The same proof, asked of node `node` only, without retries: used to get
    /// a second opinion before calling two checkpoints a fork.
    pub(crate) async fn consistency_proof_at(
        &self,
        node: usize,
        from_size: u64,
        to_size: u64,
    ) -> Result<ConsistencyProof> {
        self.consistency_proof_inner(from_size, to_size, Some(node))
            .await
    }

    async fn consistency_proof_inner(
        &self,
        from_size: u64,
        to_size: u64,
        node: Option<usize>,
    ) -> Result<ConsistencyProof> {
        let consistency = self.consistency() as i32;
        let request = v1::GetConsistencyProofRequest {
            from_size,
            to_size,
            consistency,
        };
        let r = match node {
            Some(i) => {
                let channel = self
                    .transport
                    .channel(i)
                    .ok_or_else(|| Error::InvalidRequest(format!("no node {i}")))?;
                self.audit(channel)
                    .get_consistency_proof(request)
                    .await?
                    .into_inner()
            }
            None => self
                .transport
                .call("GetConsistencyProof", |channel| {
                    let mut client = self.audit(channel);
                    async move { client.get_consistency_proof(request).await }
                })
                .await?
                .0
                .into_inner(),
        };
        Ok(ConsistencyProof::try_from(r)?)
    }

    /// The Merkle frontier of the tree of `tree_size` entries (unverified: it is
    /// checked by the root it leads to).
    pub async fn frontier(&self, tree_size: u64) -> Result<Vec<Hash>> {
        let consistency = self.consistency() as i32;
        let (response, _) = self
            .transport
            .call("GetFrontier", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .get_frontier(v1::GetFrontierRequest {
                            tree_size,
                            consistency,
                        })
                        .await
                }
            })
            .await?;
        let hashes = frontier_from_wire(response.into_inner())?;
        if hashes.len() != tree_size.count_ones() as usize {
            return Err(Error::Protocol(format!(
                "a frontier of size {tree_size} has {} hashes, not {}",
                hashes.len(),
                tree_size.count_ones()
            )));
        }
        Ok(hashes)
    }

    /// Asks a node to recompute `[from_seq, to_seq)` of its own log.
    pub async fn verify_range(&self, from_seq: u64, to_seq: Option<u64>) -> Result<RangeReport> {
        let (response, _) = self
            .transport
            .call("VerifyRange", |channel| {
                let mut client = self.audit(channel);
                async move {
                    client
                        .verify_range(v1::VerifyRangeRequest { from_seq, to_seq })
                        .await
                }
            })
            .await?;
        Ok(RangeReport::try_from(response.into_inner())?)
    }

    /// The status of whichever node answers first (the preferred one).
    pub async fn status(&self) -> Result<v1::StatusResponse> {
        let (response, _) = self
            .transport
            .call("Status", |channel| {
                let mut client = Self::admin_client(channel);
                async move { client.status(v1::StatusRequest {}).await }
            })
            .await?;
        Ok(response.into_inner())
    }

    /// The status of the node at `addr`, asked once, without retries.
    pub async fn status_of(&self, addr: &str) -> Result<v1::StatusResponse> {
        let channel = self.transport.channel_to(addr)?;
        Ok(Self::admin_client(channel)
            .status(v1::StatusRequest {})
            .await?
            .into_inner())
    }

    /// Writes a consistent backup of the node at `addr` to `path` (through
    /// `path` with its extension replaced by `part`, synced, then renamed),
    /// checking the file's trailing SHA-256 and its length as it arrives. `veritraild restore` puts it back.
    pub async fn backup(&self, addr: &str, path: &std::path::Path) -> Result<v1::BackupInfo> {
        let part = path.with_extension("part");
        let result = self.backup_into(addr, path, &part).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    async fn backup_into(
        &self,
        addr: &str,
        path: &std::path::Path,
        part: &std::path::Path,
    ) -> Result<v1::BackupInfo> {
        use sha2::{Digest, Sha256};
        use std::io::Write as _;
        let file_error = |source| Error::File {
            path: path.display().to_string(),
            source,
        };
        let channel = self.transport.channel_to(addr)?;
        let mut stream = Self::admin_client(channel)
            .backup(v1::BackupRequest {})
            .await?
            .into_inner();
        let mut out = std::io::BufWriter::new(std::fs::File::create(part).map_err(file_error)?);
        let mut info = None;
        let mut hasher = Sha256::new();
        // The last 32 bytes seen so far: the digest, if the file ends here.
        let mut held: Vec<u8> = Vec::with_capacity(64);
        let mut written = 0u64;
        while let Some(chunk) = stream.message().await? {
            if let Some(i) = chunk.info {
                if info.is_some() {
                    return Err(Error::Protocol("a second backup header".into()));
                }
                info = Some(i);
            }
            if info.is_none() {
                return Err(Error::Protocol("backup data before its header".into()));
            }
            out.write_all(&chunk.data).map_err(file_error)?;
            written += chunk.data.len() as u64;
            held.extend_from_slice(&chunk.data);
            if held.len() > 32 {
                let spill = held.len() - 32;
                hasher.update(&held[..spill]);
                held.drain(..spill);
            }
        }
        let info = info.ok_or_else(|| Error::Protocol("an empty backup stream".into()))?;
        if written != info.bytes {
            return Err(Error::Verification(format!(
                "the backup stream ended after {written} of {} bytes",
                info.bytes
            )));
        }
        if held.len() != 32 || hasher.finalize().as_slice() != held.as_slice() {
            return Err(Error::Verification(
                "the backup's SHA-256 does not match its content".into(),
            ));
        }
        let file = out.into_inner().map_err(|e| file_error(e.into_error()))?;
        file.sync_all().map_err(file_error)?;
        std::fs::rename(part, path).map_err(file_error)?;
        Ok(info)
    }

    /// Forms the cluster from `members` (node id, address). Harmless to repeat:
    /// a second call fails with `FAILED_PRECONDITION`.
    pub async fn initialize(&self, members: Vec<(u64, String)>) -> Result<Vec<v1::MemberStatus>> {
        let members: Vec<v1::Member> = members
            .into_iter()
            .map(|(node_id, addr)| v1::Member { node_id, addr })
            .collect();
        let (response, _) = self
            .transport
            .call("Initialize", |channel| {
                let mut client = Self::admin_client(channel);
                let members = members.clone();
                async move { client.initialize(v1::InitializeRequest { members }).await }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Adds a node as a learner; with `wait`, returns once it caught up.
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: &str,
        wait: bool,
    ) -> Result<Vec<v1::MemberStatus>> {
        let member = v1::Member {
            node_id,
            addr: addr.to_owned(),
        };
        let (response, _) = self
            .transport
            .call("AddLearner", |channel| {
                let mut client = Self::admin_client(channel);
                let member = member.clone();
                async move {
                    client
                        .add_learner(v1::AddLearnerRequest {
                            member: Some(member),
                            wait,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Makes `voters` the voting members; others stay learners when
    /// `retain_removed`, and leave otherwise.
    pub async fn change_membership(
        &self,
        voters: Vec<u64>,
        retain_removed: bool,
    ) -> Result<Vec<v1::MemberStatus>> {
        let (response, _) = self
            .transport
            .call("ChangeMembership", |channel| {
                let mut client = Self::admin_client(channel);
                let voters = voters.clone();
                async move {
                    client
                        .change_membership(v1::ChangeMembershipRequest {
                            voters,
                            retain_removed,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Asks the leader to hand leadership to `node_id`. Returns the leader after.
    pub async fn transfer_leader(&self, node_id: u64) -> Result<u64> {
        let (response, _) = self
            .transport
            .call("TransferLeader", |channel| {
                let mut client = Self::admin_client(channel);
                async move {
                    client
                        .transfer_leader(v1::TransferLeaderRequest {
                            to_node_id: node_id,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().leader_id)
    }
}

/// A read stream that resumes where it broke.
enum Cursor {
    Scan(ScanQuery),
    Tail(TailQuery),
}

enum Open {
    Scan(Streaming<v1::ScanResponse>),
    Tail(Streaming<v1::TailResponse>),
}

impl Open {
    async fn next(&mut self) -> std::result::Result<Option<Option<v1::Entry>>, tonic::Status> {
        match self {
            Open::Scan(s) => Ok(s.message().await?.map(|m| m.entry)),
            Open::Tail(s) => Ok(s.message().await?.map(|m| m.entry)),
        }
    }
}

struct Resumable {
    client: Client,
    cursor: Cursor,
    /// Entries still wanted, when the scan has a limit.
    remaining: Option<u64>,
    open: Option<(Open, usize)>,
    done: bool,
    /// Failures since the last entry returned.
    retry: RetryState,
}

impl Resumable {
    fn new(client: Client, cursor: Cursor) -> Resumable {
        let remaining = match &cursor {
            Cursor::Scan(q) if q.limit > 0 => Some(q.limit),
            _ => None,
        };
        let retry = RetryState::new(client.transport.config.retry);
        Resumable {
            client,
            cursor,
            remaining,
            open: None,
            done: false,
            retry,
        }
    }

    fn into_stream(self) -> BoxStream<'static, Result<LogEntry>> {
        stream::unfold(self, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed()
    }

    async fn open(&self) -> Result<(Open, usize)> {
        match &self.cursor {
            Cursor::Scan(q) => {
                let query = ScanQuery {
                    limit: self.remaining.unwrap_or(0),
                    ..q.clone()
                };
                let request = scan_to_wire(&query, self.client.consistency());
                let (s, node) = self
                    .client
                    .transport
                    .call("Scan", |channel| {
                        let mut client = self.client.audit(channel);
                        let request = request.clone();
                        async move { client.scan(request).await }
                    })
                    .await?;
                Ok((Open::Scan(s.into_inner()), node))
            }
            Cursor::Tail(q) => {
                let request = v1::TailRequest::from(q);
                let (s, node) = self
                    .client
                    .transport
                    .call("Tail", |channel| {
                        let mut client = self.client.audit(channel);
                        let request = request.clone();
                        async move { client.tail(request).await }
                    })
                    .await?;
                Ok((Open::Tail(s.into_inner()), node))
            }
        }
    }

    fn advance(&mut self, seq: u64) {
        match &mut self.cursor {
            Cursor::Scan(q) => q.from_seq = seq + 1,
            Cursor::Tail(q) => q.from_seq = seq + 1,
        }
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(1);
            if *r == 0 {
                self.done = true;
            }
        }
        self.retry.reset();
    }

    fn finished_range(&self) -> bool {
        matches!(&self.cursor, Cursor::Scan(q) if q.to_seq.is_some_and(|to| q.from_seq >= to))
    }

    async fn next(&mut self) -> Option<Result<LogEntry>> {
        loop {
            if self.done || self.finished_range() {
                return None;
            }
            let Some((open, node)) = self.open.as_mut() else {
                match self.open().await {
                    Ok(opened) => self.open = Some(opened),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            let node = *node;
            let status = match open.next().await {
                Ok(Some(entry)) => {
                    let entry = log_entry(entry);
                    match &entry {
                        Ok(e) => self.advance(e.seq()),
                        Err(_) => self.done = true,
                    }
                    return Some(entry);
                }
                // A scan that ends has returned its range; a tail only ends when
                // its node goes away, so it reconnects.
                Ok(None) if matches!(self.cursor, Cursor::Scan(_)) => return None,
                Ok(None) => tonic::Status::unavailable("the tail stream ended"),
                Err(status) => status,
            };
            self.open = None;
            let mut retry = self.client.transport.on_failure(node, &status);
            // A scan reaching beyond the log is the caller's mistake: asking
            // again cannot help.
            if status.code() == Code::OutOfRange && matches!(self.cursor, Cursor::Scan(_)) {
                retry = Retry::No;
            }
            let delay = match self.retry.after_failure(retry, &status) {
                Next::Final(error) | Next::Exhausted(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Next::Now => None,
                Next::After(delay) => Some(delay),
            };
            tracing::debug!(code = ?status.code(), message = status.message(), "read stream broke; resuming");
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
        }
    }
}
