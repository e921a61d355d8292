//! The `AuditLog` service: appends, reads, streams and proofs.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use veritrail_core::{ConsistencyProof, SubmittedEvent, TailQuery};
use veritrail_proto::v1;
use veritrail_proto::v1::audit_log_server::AuditLog;
use veritrail_proto::v1::get_entry_request::Key;
use veritrail_proto::v1::{
    AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, AppendStreamRequest,
    AppendStreamResponse, GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetEntryRequest, GetEntryResponse, GetFrontierRequest,
    GetFrontierResponse, GetInclusionProofRequest, GetInclusionProofResponse, GetKeySetRequest,
    GetKeySetResponse, ReadConsistency, ScanRequest, ScanResponse, StreamError, TailRequest,
    TailResponse, VerifyRangeRequest, VerifyRangeResponse,
};
use veritrail_proto::{checkpoint_to_wire, entry_to_wire, frontier_to_wire, receipt_to_wire};
use veritrail_store::{AppendReceipt, ScanQuery, StoredEntry};

use crate::drain::Drain;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::policy::Action;

/// Entries read from the store per page when streaming.
const STREAM_PAGE_ENTRIES: u64 = 256;
/// Entries buffered between the reader task and the client.
const STREAM_BUFFER_ENTRIES: usize = 512;
/// How often a waiting tail checks that its node is not behind the cluster.
const FRESHNESS_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct AuditService {
    pub node: Arc<Node>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn receipts(receipts: &[AppendReceipt]) -> Vec<veritrail_proto::v1::Receipt> {
    receipts
        .iter()
        .map(|r| receipt_to_wire(&r.receipt, r.duplicate))
        .collect()
}

fn wire(entry: &StoredEntry) -> veritrail_proto::v1::Entry {
    entry_to_wire(&entry.entry, &entry.canonical, &entry.hash)
}

fn consistency_of(consistency: i32) -> NodeResult<ReadConsistency> {
    ReadConsistency::try_from(consistency)
        .map_err(|_| NodeError::InvalidArgument(format!("unknown read consistency {consistency}")))
}

impl AuditService {
    async fn read_fence(&self, consistency: i32) -> NodeResult<()> {
        match consistency_of(consistency)? {
            ReadConsistency::Local => Ok(()),
            ReadConsistency::Linearizable => self.node.linearize().await,
        }
    }

    /// The entry `key` names, if this node holds it.
    async fn lookup(&self, key: &Key) -> NodeResult<Option<StoredEntry>> {
        let reader = &self.node.reader;
        Ok(match key {
            Key::Seq(seq) => reader.entry(*seq).await?,
            Key::Event(k) => reader.entry_by_event_id(&k.source, &k.event_id).await?,
        })
    }

    /// The fence for a read that the first `size` entries determine: a proof or
    /// frontier at a named tree size. Committed entries never change, so once
    /// this node holds `size` entries its answer is the one every node gives,
    /// now and later, and a linearizable read needs no quorum round. Otherwise
    /// it waits as [`Self::read_fence`] does.
    async fn size_fence(&self, consistency: i32, size: u64) -> NodeResult<()> {
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Linearizable) if size <= self.node.reader.tail().size => Ok(()),
            _ => self.read_fence(consistency).await,
        }
    }

    /// Streams the entries of `query` (all pages), then, with `follow`, every new
    /// entry as it is applied, until the client goes away.
    fn stream_entries<T: Send + 'static>(
        &self,
        mut query: ScanQuery,
        follow: bool,
        total_limit: Option<u64>,
        wrap: fn(veritrail_proto::v1::Entry) -> T,
        held: crate::quota::Held,
    ) -> BoxStream<T> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_ENTRIES);
        let reader = self.node.reader.clone();
        let mut sizes = reader.watch_size();
        let drain = self.node.drain.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            // The stream counts against the caller's cap until it ends.
            let _held = held;
            let mut sent = 0u64;
            loop {
                if drain.is_draining() {
                    let _ = tx.send(Err(Drain::status(Some(query.from_seq)))).await;
                    return;
                }
                // Every entry below this size is covered by the scan that follows.
                let size_before = *sizes.borrow_and_update();
                query.limit = STREAM_PAGE_ENTRIES;
                let page = match reader.scan(&query).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(NodeError::from(e)))).await;
                        return;
                    }
                };
                for entry in &page.entries {
                    if total_limit.is_some_and(|limit| sent >= limit)
                        || tx.send(Ok(wrap(wire(entry)))).await.is_err()
                    {
                        return;
                    }
                    sent += 1;
                }
                if let Some(next) = page.next_seq {
                    query.from_seq = next;
                    continue;
                }
                if !follow {
                    return;
                }
                // Caught up: go on after both what was sent and what was scanned,
                // so nothing is sent twice or skipped.
                let after_last = page.entries.last().map_or(0, |e| e.entry.seq + 1);
                query.from_seq = query.from_seq.max(size_before).max(after_last);
                // While it waits, a tail checks now and then that this node is
                // not behind the cluster: a node cut off or left behind would
                // keep its followers waiting for entries the others already
                // hold. It ends the stream instead, naming the leader when it
                // knows one, and the client resumes there (`freshness`).
                tokio::select! {
                    changed = sizes.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    // Checked at the top of the loop: the stream ends there.
                    () = drain.started() => {}
                    () = tokio::time::sleep(FRESHNESS_CHECK) => {
                        if let Some(why) = node.behind() {
                            let leader = node.leader().filter(|l| l.id != node.id);
                            let error = NodeError::unavailable(
                                format!("this node is behind the cluster ({why}): resume the tail on another node"),
                                leader,
                            );
                            let _ = tx.send(Err(Status::from(error))).await;
                            return;
                        }
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

/// Events from the wire, with their signatures; a signature of the wrong
/// shape is `INVALID_ARGUMENT`, naming the event.
fn submitted(events: Vec<v1::Event>) -> NodeResult<Vec<SubmittedEvent>> {
    let many = events.len() > 1;
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            SubmittedEvent::try_from(e).map_err(|e| {
                NodeError::InvalidArgument(if many {
                    format!("event {i}: {e}")
                } else {
                    e.to_string()
                })
            })
        })
        .collect()
}

#[tonic::async_trait]
impl AuditLog for AuditService {
    #[tracing::instrument(skip_all)]
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let caller = self.node.caller(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| NodeError::InvalidArgument("field `event` is required".into()))?;
        let mut out = self
            .node
            .append_as(&caller, submitted(vec![event])?)
            .await?;
        let receipt = out
            .pop()
            .ok_or_else(|| NodeError::Internal("no receipt".into()))?;
        Ok(Response::new(AppendResponse {
            receipt: Some(receipt_to_wire(&receipt.receipt, receipt.duplicate)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn append_batch(
        &self,
        request: Request<AppendBatchRequest>,
    ) -> Result<Response<AppendBatchResponse>, Status> {
        let caller = self.node.caller(&request)?;
        let events = submitted(request.into_inner().events)?;
        let out = self.node.append_as(&caller, events).await?;
        Ok(Response::new(AppendBatchResponse {
            receipts: receipts(&out),
        }))
    }

    type AppendStreamStream = BoxStream<AppendStreamResponse>;

    #[tracing::instrument(skip_all)]
    async fn append_stream(
        &self,
        request: Request<Streaming<AppendStreamRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let caller = self.node.caller(&request)?;
        let held = self.node.hold_stream(&caller)?;
        let mut incoming = request.into_inner();
        let max_inflight = self.node.config.grpc.stream_max_inflight;
        let (tx, rx) = mpsc::channel(max_inflight);
        let node = Arc::clone(&self.node);
        let drain = self.node.drain.clone();
        tokio::spawn(async move {
            // The stream counts against the caller's cap until it ends.
            let _held = held;
            // Bounded in-flight appends per stream: when all slots are taken the
            // stream stops reading, and HTTP/2 flow control pushes back.
            let slots = Arc::new(Semaphore::new(max_inflight));
            loop {
                let message = tokio::select! {
                    message = incoming.next() => message,
                    () = drain.started() => {
                        // The node is stopping: read no more, let the requests
                        // already taken answer, then send the client elsewhere.
                        let all = u32::try_from(max_inflight).unwrap_or(u32::MAX);
                        let _ = slots.acquire_many(all).await;
                        let _ = tx.send(Err(Drain::status(None))).await;
                        break;
                    }
                };
                let Some(message) = message else { break };
                let message = match message {
                    Ok(m) => m,
                    Err(status) => {
                        // Tell the client why (an oversized or undecodable
                        // message), rather than ending the stream as if done.
                        tracing::debug!(error = %status, "append stream ended with an error");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let (node, tx, caller) = (Arc::clone(&node), tx.clone(), caller.clone());
                tokio::spawn(async move {
                    let result = match submitted(message.events) {
                        Ok(events) => node.append_streamed(&caller, events).await,
                        Err(e) => Err(e),
                    };
                    let response = match result {
                        Ok(out) => AppendStreamResponse {
                            request_id: message.request_id,
                            receipts: receipts(&out),
                            error: None,
                        },
                        Err(e) => {
                            let leader_hint = match &e {
                                NodeError::Unavailable {
                                    leader: Some(l), ..
                                } => l.addr.clone(),
                                _ => String::new(),
                            };
                            AppendStreamResponse {
                                request_id: message.request_id,
                                receipts: Vec::new(),
                                error: Some(StreamError {
                                    code: e.code() as i32,
                                    message: e.to_string(),
                                    leader_hint,
                                }),
                            }
                        }
                    };
                    let _ = tx.send(Ok(response)).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn get_entry(
        &self,
        request: Request<GetEntryRequest>,
    ) -> Result<Response<GetEntryResponse>, Status> {
        let caller = self.node.require(&request, Action::Read)?;
        let _held = self.node.hold_read(&caller)?;
        let request = request.into_inner();
        let Some(key) = request.key else {
            return Err(
                NodeError::InvalidArgument("give a seq or a (source, event_id)".into()).into(),
            );
        };
        // An entry never changes once applied, so one this node holds is what
        // a linearizable read returns too: only "not found" needs the fence.
        let linearizable = consistency_of(request.consistency)? == ReadConsistency::Linearizable;
        let mut entry = if linearizable {
            self.lookup(&key).await?
        } else {
            None
        };
        if entry.is_none() {
            self.read_fence(request.consistency).await?;
            entry = self.lookup(&key).await?;
        }
        let entry = entry.ok_or_else(|| match &key {
            Key::Seq(seq) => NodeError::NotFound(format!("no entry at seq {seq}")),
            Key::Event(k) => NodeError::NotFound(format!(
                "no entry with event id {:?} from source {:?}",
                k.event_id, k.source
            )),
        })?;
        Ok(Response::new(GetEntryResponse {
            entry: Some(wire(&entry)),
        }))
    }

    type ScanStream = BoxStream<ScanResponse>;

    #[tracing::instrument(skip_all)]
    async fn scan(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        let caller = self.node.require(&request, Action::Read)?;
        let held = self.node.hold_stream(&caller)?;
        let r = request.into_inner();
        self.read_fence(r.consistency).await?;
        if let Some(to) = r.to_seq
            && to < r.from_seq
        {
            return Err(NodeError::InvalidArgument(format!(
                "scan range is reversed: from seq {} to seq {to}",
                r.from_seq
            ))
            .into());
        }
        let size = self.node.reader.tail().size;
        let end = r.to_seq.unwrap_or(size);
        if r.from_seq > size || end > size {
            return Err(NodeError::OutOfRange(format!(
                "scan range [{}, {end}) reaches beyond the log, which holds {size} entries",
                r.from_seq
            ))
            .into());
        }
        if let (Some(since), Some(until)) = (r.since_ns, r.until_ns)
            && until < since
        {
            return Err(NodeError::InvalidArgument(format!(
                "time range is reversed: since {since} until {until}"
            ))
            .into());
        }
        let limit = (r.limit > 0).then_some(r.limit);
        let query = ScanQuery {
            limit: STREAM_PAGE_ENTRIES,
            ..ScanQuery::from(r)
        };
        Ok(Response::new(self.stream_entries(
            query,
            false,
            limit,
            |entry| ScanResponse { entry: Some(entry) },
            held,
        )))
    }

    type TailStream = BoxStream<TailResponse>;

    #[tracing::instrument(skip_all)]
    async fn tail(
        &self,
        request: Request<TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        let caller = self.node.require(&request, Action::Read)?;
        let held = self.node.hold_stream(&caller)?;
        let r = request.into_inner();
        let query = ScanQuery {
            limit: STREAM_PAGE_ENTRIES,
            ..ScanQuery::from(TailQuery::from(r))
        };
        Ok(Response::new(self.stream_entries(
            query,
            true,
            None,
            |entry| TailResponse { entry: Some(entry) },
            held,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_key_set(
        &self,
        request: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        // A node behind the cluster would offer a key set the voters no
        // longer hold: it refuses, and the client asks another.
        self.node.linearize().await?;
        let (signed_note, epoch) = self.node.key_set_note().await?;
        Ok(Response::new(GetKeySetResponse { signed_note, epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        let r = request.into_inner();
        let size = r.tree_size;
        // "The latest" must be the cluster's latest: a node behind it refuses
        // (a checkpoint of a named size is the same on every node that has it).
        if size.is_none() {
            self.read_fence(r.consistency).await?;
        }
        let reader = &self.node.reader;
        let found = match size {
            Some(size) => reader
                .signed_checkpoint(size)
                .await
                .map_err(NodeError::from)?
                .map(|note| (size, note)),
            None => reader
                .latest_signed_checkpoint()
                .await
                .map_err(NodeError::from)?,
        };
        let (tree_size, signed_note) = found.map(|(size, note)| (size, self.node.with_cosignatures(size, note))).ok_or_else(|| match size {
            Some(size) => NodeError::NotFound(format!("no co-signed checkpoint of size {size}; checkpoints are cut every {} ms at the size reached then", self.node.config.checkpoint.interval_ms)),
            None => NodeError::NotFound("no co-signed checkpoint yet: the log is empty or the voters have not signed one".into()),
        })?;
        let root = veritrail_core::note::SignedNote::parse(&signed_note)
            .ok()
            .and_then(|n| veritrail_core::Checkpoint::parse(n.text()).ok())
            .map(|c| c.root);
        Ok(Response::new(checkpoint_to_wire(
            tree_size,
            signed_note,
            root.as_ref(),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        let r = request.into_inner();
        self.size_fence(r.consistency, r.tree_size).await?;
        let (seq, size) = (r.seq, r.tree_size);
        let proof = self
            .node
            .reader
            .inclusion_proof_with_root(seq, size)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(GetInclusionProofResponse::from(&proof)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        let r = request.into_inner();
        self.size_fence(r.consistency, r.to_size).await?;
        let (from, to) = (r.from_size, r.to_size);
        let (proof, from_root, to_root) = self
            .node
            .reader
            .read(move |reader| {
                let proof = reader.consistency_proof(from, to)?;
                Ok((proof, reader.root_at(from)?, reader.root_at(to)?))
            })
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(GetConsistencyProofResponse::from(
            &ConsistencyProof {
                from_size: from,
                to_size: to,
                proof,
                from_root,
                to_root,
            },
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_frontier(
        &self,
        request: Request<GetFrontierRequest>,
    ) -> Result<Response<GetFrontierResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        let r = request.into_inner();
        self.size_fence(r.consistency, r.tree_size).await?;
        let size = r.tree_size;
        let hashes = self
            .node
            .reader
            .frontier_at(size)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(frontier_to_wire(size, &hashes)))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_range(
        &self,
        request: Request<VerifyRangeRequest>,
    ) -> Result<Response<VerifyRangeResponse>, Status> {
        let caller = self.node.require(&request, Action::Proofs)?;
        let _held = self.node.hold_read(&caller)?;
        let r = request.into_inner();
        let report = self
            .node
            .reader
            .verify_range(r.from_seq, r.to_seq)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(VerifyRangeResponse::from(&report)))
    }
}
