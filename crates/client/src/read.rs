//! Entries: one by seq or by event id, and the scan and tail streams.

use futures::stream::BoxStream;
use veritrail_core::{LogEntry, ScanQuery, TailQuery};
use veritrail_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::read_stream::{Cursor, Resumable};

impl Client {
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
}

/// The entry a response carries, which every response that has the field must.
pub(crate) fn log_entry(wire: Option<v1::Entry>) -> Result<LogEntry> {
    let wire = wire.ok_or_else(|| Error::Protocol("response carries no entry".into()))?;
    Ok(LogEntry::try_from(wire)?)
}
