//! Group commit on the leader: concurrent appends become one Raft entry.
//!
//! Requests wait in a bounded queue. The batching task waits for one of
//! `max_inflight` replication slots, then takes every request queued meanwhile
//! (waiting up to `linger_us` for more when set), stops at `max_events` or
//! `max_bytes`, and proposes them as one `Proposal` stamped with the leader's
//! clock. At low load a request goes out at once; under load the slots are busy
//! and batches grow while they are. Each proposal answers its requests with
//! their outcomes once committed and applied (synced in the Raft log on a
//! majority, then applied by the state machine).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::Raft;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use veritrail_core::SubmittedEvent;
use veritrail_store::{
    AppendRequest, Command, CommandResponse, Proposal, RequestOutcome, SignedProposal,
    SignedRequest, TypeConfig,
};

use crate::config::BatchConfig;
use crate::error::{NodeError, NodeResult};
use crate::metrics::Metrics;

/// Why a batched request did not get an outcome.
#[derive(Debug)]
pub enum BatchError {
    /// This node stopped leading; the request was not committed by it (a
    /// proposal already replicated may still commit under the next leader,
    /// which is why clients retry with the same event ids).
    NotLeader,
    /// Raft failed.
    Raft(String),
}

struct Pending {
    request: SignedRequest,
    size_bytes: usize,
    reply: oneshot::Sender<Result<RequestOutcome, BatchError>>,
    /// This request's share of `queue_max_events`, returned when it is proposed.
    _queued: OwnedSemaphorePermit,
}

/// The queue into the batching task. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
    queue_max_requests: usize,
    /// Events waiting for a batch. Requests are bounded too, but one request
    /// can carry thousands of events: without this bound a few streams of large
    /// requests queue minutes of work, every request times out, and clients
    /// retry into a longer queue.
    queued_events: Arc<Semaphore>,
    queue_max_events: usize,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queue_max_requests", &self.queue_max_requests)
            .field("queue_max_events", &self.queue_max_events)
            .finish()
    }
}

impl Batcher {
    /// Starts the batching task.
    pub fn start(raft: Raft<TypeConfig>, config: BatchConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_max_requests);
        let queue_max_requests = config.queue_max_requests;
        let queue_max_events = config.queue_max_events;
        tokio::spawn(run(raft, config, metrics, rx));
        Batcher {
            tx,
            queue_max_requests,
            queued_events: Arc::new(Semaphore::new(queue_max_events)),
            queue_max_events,
        }
    }

    /// Queues a request and waits for its outcome.
    pub async fn submit(
        &self,
        request: SignedRequest,
    ) -> NodeResult<Result<RequestOutcome, BatchError>> {
        let size_bytes =
            request.events.iter().map(submitted_size).sum::<usize>() + request.principal.len();
        let events = u32::try_from(request.events.len()).unwrap_or(u32::MAX);
        let queued = Arc::clone(&self.queued_events)
            .try_acquire_many_owned(events)
            .map_err(|_| {
                NodeError::ResourceExhausted(format!(
                    "the leader's append queue is full (up to {} events wait for a batch); \
                     retry with backoff",
                    self.queue_max_events
                ))
            })?;
        let (reply, outcome) = oneshot::channel();
        self.tx
            .try_send(Pending {
                request,
                size_bytes,
                reply,
                _queued: queued,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NodeError::ResourceExhausted(format!(
                    "the leader's append queue is full ({} requests waiting); retry with backoff",
                    self.queue_max_requests
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    NodeError::unavailable("this node is shutting down", None)
                }
            })?;
        outcome
            .await
            .map_err(|_| NodeError::unavailable("this node is shutting down", None))
    }
}

/// [`event_size`], and the 97 bytes a signature adds (algorithm, key, signature).
pub fn submitted_size(e: &SubmittedEvent) -> usize {
    event_size(&e.event) + e.signature.map_or(0, |_| 97)
}

/// A close upper bound of an event's encoded size, for the batch byte limit.
pub fn event_size(e: &veritrail_core::Event) -> usize {
    64 + e.source.len()
        + e.event_id.len()
        + e.actor.len()
        + e.action.len()
        + e.resource.len()
        + e.outcome.len()
        + e.trace_id.as_ref().map_or(0, String::len)
        + e.attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
        + e.payload.len()
}

async fn run(
    raft: Raft<TypeConfig>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let inflight = Arc::new(Semaphore::new(config.inflight_max_entries));
    let linger = Duration::from_micros(config.linger_us);
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Wait for a replication slot first: while all slots are busy, requests
        // keep arriving and the next batch grows, which is the point.
        let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut events = batch[0].request.events.len();
        let mut bytes = batch[0].size_bytes;
        let deadline = Instant::now() + linger;
        while events < config.entry_max_events && bytes < config.entry_max_bytes {
            let next = if linger.is_zero() {
                rx.try_recv().ok()
            } else {
                tokio::time::timeout_at(deadline.into(), rx.recv())
                    .await
                    .ok()
                    .flatten()
            };
            let Some(p) = next else { break };
            if events + p.request.events.len() > config.entry_max_events
                || bytes + p.size_bytes > config.entry_max_bytes
            {
                carried = Some(p);
                break;
            }
            events += p.request.events.len();
            bytes += p.size_bytes;
            batch.push(p);
        }
        metrics.batch_events.observe(events as f64);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft<TypeConfig>, batch: Vec<Pending>) {
    let (requests, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.request, p.reply)).unzip();
    let proposed_at_ns = now_ns();
    // Format 1 unless an event is signed: a cluster whose services do not
    // sign keeps writing what every earlier release reads.
    let command = if requests.iter().any(SignedRequest::is_signed) {
        Command::AppendSigned(SignedProposal {
            proposed_at_ns,
            requests,
        })
    } else {
        Command::Append(Proposal {
            proposed_at_ns,
            requests: requests.into_iter().map(AppendRequest::from).collect(),
        })
    };
    match raft.client_write(command).await {
        Ok(response) => match response.data {
            CommandResponse::Appended(outcomes) if outcomes.len() == replies.len() => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            other => {
                let message = format!("unexpected apply response {other:?}");
                tracing::error!("{message}");
                for reply in replies {
                    let _ = reply.send(Err(BatchError::Raft(message.clone())));
                }
            }
        },
        Err(e) => {
            let not_leader = matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(_)));
            for reply in replies {
                let _ = reply.send(Err(if not_leader {
                    BatchError::NotLeader
                } else {
                    BatchError::Raft(e.to_string())
                }));
            }
        }
    }
}

/// The leader's clock, unix nanoseconds. Apply keeps entry timestamps from
/// going backwards whatever this says.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
