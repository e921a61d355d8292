//! Appends: one event, or several all together or not at all.

use veritrail_core::{Event, Limits, SubmittedEvent};
use veritrail_proto::v1;

use crate::client::Client;
use crate::config::EventSigning;
use crate::error::{Error, Result};
use crate::receipt::Receipt;

/// A validated event ready for the wire, with the idempotency key it will keep
/// through every retry, signed when the client holds a signing key (the same
/// bytes on every retry: Ed25519 signatures are deterministic).
pub(crate) fn prepare(mut event: Event, signing: Option<&EventSigning>) -> Result<v1::Event> {
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
    let submitted = match signing {
        Some(signing) => signing.sign(event),
        None => SubmittedEvent::unsigned(event),
    };
    Ok(v1::Event::from(&submitted))
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
    /// Appends one event and returns once it is committed on a majority and
    /// applied. An empty `event_id` is filled with a fresh UUIDv7 that every retry
    /// reuses, so a retried append yields exactly one entry.
    pub async fn append(&self, event: Event) -> Result<Receipt> {
        let event = prepare(event, self.config().signing.as_ref())?;
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
                prepare(e, self.config().signing.as_ref()).map_err(|e| match e {
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
}
