//! [`Resumable`]: a scan or a tail that resumes after the last entry it
//! returned when its node fails or leadership moves.

use futures::stream::{self, BoxStream, StreamExt};
use tonic::{Code, Streaming};
use veritrail_core::{LogEntry, ScanQuery, TailQuery};
use veritrail_proto::scan_to_wire;
use veritrail_proto::v1;

use crate::client::Client;
use crate::error::Result;
use crate::read::log_entry;
use crate::retry::{Next, Retry, RetryState};

/// What a read stream reads, moved past each entry it returns.
pub(crate) enum Cursor {
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

/// A read stream that resumes where it broke.
pub(crate) struct Resumable {
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
    pub(crate) fn new(client: Client, cursor: Cursor) -> Resumable {
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

    pub(crate) fn into_stream(self) -> BoxStream<'static, Result<LogEntry>> {
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
