//! [`Producer`]: high-throughput appends, batched over one `AppendStream`.
//!
//! `send` validates the event, gives it an idempotency key and queues it; a
//! worker task cuts the queue into batches (bounded by events, bytes and linger
//! time) and keeps up to `in_flight_max_batches` of them on the stream. Memory is
//! bounded: a full queue makes `send` wait (backpressure), so at most
//! `queue_max_events + (in_flight_max_batches + 1) * batch_max_events` events are
//! held.
//!
//! Failures: when the stream breaks, a request times out, or a node answers that
//! it does not lead, the worker reconnects (at the leader when named) and resends
//! every unanswered batch with the same event ids: the cluster deduplicates, so
//! each event lands once. When a batch is refused for its content (one bad event
//! fails its whole batch) the worker resends its events one by one, so only the
//! culprit fails.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};
use veritrail_core::Event;
use veritrail_proto::v1::audit_log_client::AuditLogClient;
use veritrail_proto::v1::{self, AppendStreamRequest, AppendStreamResponse};

use crate::append::prepare;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::receipt::Receipt;
use crate::retry::{LEADER_ADDR_METADATA, Next, Retry, RetryState};
use crate::transport::Transport;

/// How a [`Producer`] batches. Every limit names its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long the first event of a batch waits for others.
    pub linger_ms: u64,
    /// Most events in one request.
    pub batch_max_events: usize,
    /// Most encoded event bytes in one request (keep under the server's
    /// `grpc.max_message_bytes`).
    pub batch_max_bytes: usize,
    /// Most requests awaiting an answer on the stream.
    pub in_flight_max_batches: usize,
    /// Most events queued before `send` waits.
    pub queue_max_events: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger_ms: 2,
            batch_max_events: 512,
            batch_max_bytes: 1 << 20,
            in_flight_max_batches: 8,
            queue_max_events: 8_192,
        }
    }
}

/// Batches appends over `AppendStream`. Cheap to share behind an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct Producer {
    /// The client's signing key, if it has one: events are signed as they
    /// are queued.
    signing: Option<crate::config::EventSigning>,
    tx: mpsc::Sender<Command>,
    worker: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The receipt of a queued event, once the cluster committed it.
#[derive(Debug)]
pub struct PendingReceipt {
    event_id: String,
    rx: oneshot::Receiver<Result<Receipt>>,
}

impl PendingReceipt {
    /// The event's idempotency key: known at once, before the receipt.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
}

impl Future for PendingReceipt {
    type Output = Result<Receipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ProducerClosed)))
    }
}

enum Command {
    Send(Box<Item>),
    Flush(oneshot::Sender<()>),
}

impl Producer {
    /// Starts a producer on `client`'s cluster. Must be called inside a tokio
    /// runtime.
    pub fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        if config.batch_max_events == 0
            || config.in_flight_max_batches == 0
            || config.queue_max_events == 0
            || config.batch_max_bytes == 0
        {
            return Err(Error::InvalidRequest(
                "producer limits must all be at least 1".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(config.queue_max_events);
        let worker = Worker::new(client.transport.clone(), config, rx);
        let handle = tokio::spawn(worker.run());
        Ok(Producer {
            signing: client.config().signing.clone(),
            tx,
            worker: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// Queues an event, waiting while the queue is full. Fails at once, without
    /// queuing, when the event breaks a field rule. Await the returned
    /// [`PendingReceipt`] for the receipt.
    pub async fn send(&self, event: Event) -> Result<PendingReceipt> {
        let event = prepare(event, self.signing.as_ref())?;
        let (reply, rx) = oneshot::channel();
        let event_id = event.event_id.clone();
        let item = Item {
            ticket: 0,
            bytes: prost::Message::encoded_len(&event),
            event,
            reply,
        };
        self.tx
            .send(Command::Send(Box::new(item)))
            .await
            .map_err(|_| Error::ProducerClosed)?;
        Ok(PendingReceipt { event_id, rx })
    }

    /// Queues an event and waits for its receipt.
    pub async fn append(&self, event: Event) -> Result<Receipt> {
        self.send(event).await?.await
    }

    /// Sends what is queued without waiting for the linger time, and returns
    /// once every event queued before the call is answered (committed or failed).
    pub async fn flush(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| Error::ProducerClosed)?;
        rx.await.map_err(|_| Error::ProducerClosed)
    }

    /// Flushes, then stops the worker.
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(self.tx);
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        flushed
    }
}

struct Item {
    /// Order of arrival, for `flush`.
    ticket: u64,
    event: v1::Event,
    bytes: usize,
    reply: oneshot::Sender<Result<Receipt>>,
}

struct InFlight {
    items: Vec<Item>,
    sent_at: Instant,
    /// The leader's answers that it was too busy, once it gave one.
    refusals: Option<RetryState>,
}

struct Connection {
    requests: mpsc::Sender<AppendStreamRequest>,
    responses: Streaming<AppendStreamResponse>,
    node: usize,
}

struct Worker {
    transport: Arc<Transport>,
    config: ProducerConfig,
    rx: mpsc::Receiver<Command>,
    closed: bool,
    batch: Vec<Item>,
    batch_bytes: usize,
    /// An event that would have pushed the batch past `batch_max_bytes`: it
    /// opens the next batch.
    carried: Option<Item>,
    batch_deadline: Option<tokio::time::Instant>,
    in_flight: BTreeMap<u64, InFlight>,
    next_request_id: u64,
    next_ticket: u64,
    /// Tickets of events not yet answered.
    outstanding: BTreeSet<u64>,
    /// Flush waiters and the last ticket each waits for.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    connection: Option<Connection>,
    /// Requests the leader was too busy to queue, and when to send them again
    /// on the same stream.
    delayed: Vec<(tokio::time::Instant, u64)>,
    /// Consecutive failures of the stream without an answer.
    retry: RetryState,
}

/// Builds a transient error for every event a failure affects.
fn copy_error(error: &Error) -> Error {
    Error::Status {
        code: error.code().unwrap_or(Code::Unavailable),
        message: error.to_string(),
    }
}

impl Worker {
    fn new(transport: Arc<Transport>, config: ProducerConfig, rx: mpsc::Receiver<Command>) -> Self {
        Worker {
            config,
            rx,
            closed: false,
            batch: Vec::new(),
            batch_bytes: 0,
            carried: None,
            batch_deadline: None,
            in_flight: BTreeMap::new(),
            next_request_id: 1,
            next_ticket: 1,
            outstanding: BTreeSet::new(),
            flushes: Vec::new(),
            connection: None,
            delayed: Vec::new(),
            // Bounded by the deadline alone: see `on_broken`.
            retry: RetryState::new(transport.config.retry).without_attempt_limit(),
            transport,
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.transport.config.request_timeout_ms)
    }

    async fn run(mut self) {
        loop {
            if self.closed
                && self.batch.is_empty()
                && self.carried.is_none()
                && self.in_flight.is_empty()
            {
                break;
            }
            let has_work = !self.batch.is_empty() || !self.in_flight.is_empty();
            if has_work && self.connection.is_none() && !self.connect().await {
                continue;
            }
            let flushing = !self.flushes.is_empty();
            let batch_full = self.batch.len() >= self.config.batch_max_events
                || self.batch_bytes >= self.config.batch_max_bytes
                || self.carried.is_some();
            let window_open = self.in_flight.len() < self.config.in_flight_max_batches;
            if !self.batch.is_empty() && window_open && (batch_full || flushing || self.closed) {
                self.send_batch().await;
                continue;
            }
            let can_read = !self.closed && !batch_full;
            let linger = self.batch_deadline.filter(|_| window_open);
            let oldest = self.in_flight.values().map(|f| f.sent_at).min();
            let timeout =
                oldest.map(|t| tokio::time::Instant::from_std(t + self.request_timeout()));
            let retry_at = self.delayed.iter().map(|(at, _)| *at).min();
            tokio::select! {
                command = self.rx.recv(), if can_read => match command {
                    Some(Command::Send(item)) => self.enqueue(*item),
                    Some(Command::Flush(done)) => self.flush(done),
                    None => self.closed = true,
                },
                _ = sleep_until(linger.unwrap_or_else(far_future)), if linger.is_some() => {
                    self.send_batch().await;
                }
                response = next_response(&mut self.connection) => self.on_response(response).await,
                _ = sleep_until(retry_at.unwrap_or_else(far_future)), if retry_at.is_some() => {
                    self.resend_due().await;
                }
                _ = sleep_until(timeout.unwrap_or_else(far_future)), if timeout.is_some() => {
                    let status = tonic::Status::deadline_exceeded(format!(
                        "no answer on the append stream within {} ms",
                        self.transport.config.request_timeout_ms
                    ));
                    self.on_broken(status).await;
                }
            }
        }
    }

    fn enqueue(&mut self, mut item: Item) {
        item.ticket = self.next_ticket;
        self.next_ticket += 1;
        self.outstanding.insert(item.ticket);
        self.add_to_batch(item);
    }

    fn add_to_batch(&mut self, item: Item) {
        if !self.batch.is_empty() && self.batch_bytes + item.bytes > self.config.batch_max_bytes {
            self.carried = Some(item);
            return;
        }
        if self.batch.is_empty() {
            self.batch_deadline =
                Some(tokio::time::Instant::now() + Duration::from_millis(self.config.linger_ms));
        }
        self.batch_bytes += item.bytes;
        self.batch.push(item);
    }

    fn flush(&mut self, done: oneshot::Sender<()>) {
        let last = self.next_ticket - 1;
        if self.outstanding.first().is_none_or(|first| *first > last) {
            let _ = done.send(());
        } else {
            self.flushes.push((last, done));
        }
    }

    fn settle(&mut self, item: Item, result: Result<Receipt>) {
        self.outstanding.remove(&item.ticket);
        let _ = item.reply.send(result);
        if !self.flushes.is_empty() {
            let first = self.outstanding.first().copied();
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
                .into_iter()
                .partition(|(last, _)| first.is_none_or(|f| f > *last));
            self.flushes = waiting;
            for (_, done) in ready {
                let _ = done.send(());
            }
        }
    }

    async fn send_batch(&mut self) {
        let items = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_deadline = None;
        if let Some(item) = self.carried.take() {
            self.add_to_batch(item);
        }
        if !items.is_empty() {
            self.submit(items).await;
        }
    }

    /// Puts a request on the stream, or, without a stream, keeps it in flight to
    /// be sent on the next connection.
    async fn submit(&mut self, items: Vec<Item>) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let request = AppendStreamRequest {
            request_id: id,
            events: items.iter().map(|i| i.event.clone()).collect(),
        };
        self.in_flight.insert(
            id,
            InFlight {
                items,
                sent_at: Instant::now(),
                refusals: None,
            },
        );
        if let Some(connection) = &self.connection
            && connection.requests.send(request).await.is_err()
        {
            self.connection = None;
        }
    }

    /// Opens a stream at the preferred node and resends everything unanswered.
    /// False when the retry policy ran out: the affected events then fail.
    async fn connect(&mut self) -> bool {
        self.transport.prefer_leader().await;
        let capacity = self.config.in_flight_max_batches * 2 + 8;
        let max_decoding = self.transport.config.response_max_bytes;
        let opened = self
            .transport
            .call("AppendStream", |channel| async move {
                let (requests, rx) = mpsc::channel(capacity);
                let mut client =
                    AuditLogClient::new(channel).max_decoding_message_size(max_decoding);
                let responses = client
                    .append_stream(ReceiverStream::new(rx))
                    .await?
                    .into_inner();
                Ok((requests, responses))
            })
            .await;
        match opened {
            Ok(((requests, responses), node)) => {
                self.delayed.clear();
                let mut resend = Vec::new();
                for (id, flight) in &mut self.in_flight {
                    flight.sent_at = Instant::now();
                    resend.push(AppendStreamRequest {
                        request_id: *id,
                        events: flight.items.iter().map(|i| i.event.clone()).collect(),
                    });
                }
                for request in resend {
                    if requests.send(request).await.is_err() {
                        self.on_broken(tonic::Status::unavailable(
                            "the new append stream closed before the resend",
                        ))
                        .await;
                        return false;
                    }
                }
                self.connection = Some(Connection {
                    requests,
                    responses,
                    node,
                });
                true
            }
            Err(error) => {
                tracing::warn!(%error, "append stream could not be opened; failing queued events");
                self.fail_all(&error);
                false
            }
        }
    }

    /// Sends again the busy-refused requests whose backoff is over.
    async fn resend_due(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.delayed.iter().partition(|(at, _)| *at <= now);
        self.delayed = later;
        for (_, id) in due {
            let Some(flight) = self.in_flight.get_mut(&id) else {
                continue;
            };
            flight.sent_at = Instant::now();
            let request = AppendStreamRequest {
                request_id: id,
                events: flight.items.iter().map(|i| i.event.clone()).collect(),
            };
            if let Some(connection) = &self.connection
                && connection.requests.send(request).await.is_err()
            {
                self.connection = None;
            }
        }
    }

    fn fail_all(&mut self, error: &Error) {
        let flights = std::mem::take(&mut self.in_flight);
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_deadline = None;
        self.delayed.clear();
        let carried = self.carried.take();
        for item in flights
            .into_values()
            .flat_map(|f| f.items)
            .chain(batch)
            .chain(carried)
        {
            self.settle(item, Err(copy_error(error)));
        }
        self.retry.reset();
    }

    async fn on_response(
        &mut self,
        response: Option<std::result::Result<AppendStreamResponse, tonic::Status>>,
    ) {
        let response = match response {
            Some(Ok(response)) => response,
            Some(Err(status)) => return self.on_broken(status).await,
            None => {
                return self
                    .on_broken(tonic::Status::unavailable("the append stream ended"))
                    .await;
            }
        };
        let Some(mut flight) = self.in_flight.remove(&response.request_id) else {
            // An answer to a request resent after a reconnect, answered twice.
            return;
        };
        let Some(error) = response.error else {
            self.retry.reset();
            if response.receipts.len() != flight.items.len() {
                let error = Error::Protocol(format!(
                    "{} receipts for {} events",
                    response.receipts.len(),
                    flight.items.len()
                ));
                for item in flight.items {
                    self.settle(item, Err(copy_error(&error)));
                }
                return;
            }
            for (item, receipt) in flight.items.into_iter().zip(response.receipts) {
                let result = Receipt::from_wire(receipt, item.event.event_id.clone());
                self.settle(item, result);
            }
            return;
        };
        let mut status = tonic::Status::new(Code::from_i32(error.code), error.message);
        if !error.leader_hint.is_empty()
            && let Ok(value) = error.leader_hint.parse()
        {
            status.metadata_mut().insert(LEADER_ADDR_METADATA, value);
        }
        if status.code() == Code::ResourceExhausted {
            // The leader is busy, the stream is fine: send this request again
            // after a backoff, alone, instead of resending everything, for as
            // long as the retry policy's deadline allows.
            let policy = self.transport.config.retry;
            let refusals = flight
                .refusals
                .get_or_insert_with(|| RetryState::new(policy).without_attempt_limit());
            let delay = match refusals.after_failure(Retry::Backoff, &status) {
                Next::Now => Duration::ZERO,
                Next::After(delay) => delay,
                Next::Final(error) | Next::Exhausted(error) => {
                    for item in flight.items {
                        self.settle(item, Err(copy_error(&error)));
                    }
                    return;
                }
            };
            flight.sent_at = Instant::now() + delay;
            self.in_flight.insert(response.request_id, flight);
            self.delayed
                .push((tokio::time::Instant::now() + delay, response.request_id));
            return;
        }
        let node = self.connection.as_ref().map_or(0, |c| c.node);
        match self.transport.on_failure(node, &status) {
            Retry::No if flight.items.len() > 1 => {
                // One event spoilt the batch: find it by sending each alone.
                for item in flight.items {
                    self.submit(vec![item]).await;
                }
            }
            Retry::No => {
                for item in flight.items {
                    self.settle(item, Err(status.clone().into()));
                }
            }
            _ => {
                self.in_flight.insert(response.request_id, flight);
                self.on_broken(status).await;
            }
        }
    }

    /// The stream is unusable, or the node cannot take appends: drop it, wait a
    /// backoff, and let the loop reconnect and resend.
    ///
    /// The budget is the retry policy's deadline, counted from the first of a run
    /// of failures: an election takes a few rounds of "not the leader" answers,
    /// and each must not eat an attempt. A redirect to a named leader is followed
    /// at once, but only a few times in a row: a node that names a leader which
    /// has just died would otherwise send us round in a tight loop.
    async fn on_broken(&mut self, status: tonic::Status) {
        let retry = match &self.connection {
            Some(c) => self.transport.on_failure(c.node, &status),
            None => Retry::Backoff,
        };
        self.connection = None;
        if self.in_flight.is_empty() && self.batch.is_empty() && self.carried.is_none() {
            // Nothing was waiting on this stream (an idle stream closed): the
            // next send opens another, with a fresh budget.
            self.retry.reset();
            return;
        }
        let delay = match self.retry.after_failure(retry, &status) {
            Next::Final(error) => {
                // Retrying cannot help (the stream itself was refused).
                tracing::warn!(code = ?status.code(), message = status.message(), "append stream refused; failing unanswered events");
                self.fail_all(&error);
                return;
            }
            Next::Exhausted(error) => {
                tracing::warn!(%error, "append stream keeps failing; failing unanswered events");
                self.fail_all(&error);
                return;
            }
            Next::Now => None,
            Next::After(delay) => Some(delay),
        };
        tracing::debug!(code = ?status.code(), message = status.message(), "append stream broke; reconnecting");
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
}

async fn next_response(
    connection: &mut Option<Connection>,
) -> Option<std::result::Result<AppendStreamResponse, tonic::Status>> {
    match connection {
        Some(c) => c.responses.next().await,
        None => std::future::pending().await,
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}
