//! Whether an append may enter: the one place a client's events are checked
//! against this node's limits and the caller's rights and rate.
//!
//! Validation happens once, here, at the door. What passes becomes an
//! [`Admitted`] request, and the rest of the write path (routing, forwarding,
//! the batcher) trusts it. Apply checks the format maxima and event
//! signatures again on every replica: those checks are the replicated ones,
//! and they stay. The one check the leader repeats is the signer list's
//! (`Node::append_forwarded`): a member must not be able to forward, in a
//! signing service's name, an event that service did not sign.

use std::sync::Arc;

use veritrail_core::{Event, SubmittedEvent};
use veritrail_store::{AppendReceipt, SignedRequest};

use crate::auth::Caller;
use crate::batcher::submitted_size;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::policy::Action;

/// The source of the events a node records about its own security decisions.
pub const SECURITY_SOURCE: &str = "veritrail.security";

/// An append that passed admission: at least one event, each valid under this
/// node's limits, and all of them small enough to travel in one Raft entry.
/// Built only by [`Node::admit_append`], by the node for its own records, and
/// on the leader for a request a member forwarded after admitting it.
#[derive(Debug, Clone)]
pub struct Admitted(SignedRequest);

impl Admitted {
    /// A request a member of this cluster admitted at its own door and
    /// forwarded to this node, the leader, which checks it against its own
    /// signer list before it proposes it (`Node::append_forwarded`).
    pub(crate) fn forwarded(principal: String, events: Vec<SubmittedEvent>) -> Admitted {
        Admitted(SignedRequest { principal, events })
    }

    pub fn principal(&self) -> &str {
        &self.0.principal
    }

    pub fn events(&self) -> &[SubmittedEvent] {
        &self.0.events
    }

    pub(crate) fn request(&self) -> &SignedRequest {
        &self.0
    }

    pub(crate) fn into_request(self) -> SignedRequest {
        self.0
    }
}

impl Node {
    /// Admits `caller`'s append of `events` at the door: valid, allowed for
    /// every source it names, and within the caller's rate. A denial is itself
    /// recorded in the log (at most `auth.denial_records_per_s` per principal).
    /// The caller's principal was checked by the gate.
    pub fn admit_append(
        self: &Arc<Self>,
        caller: &Caller,
        events: Vec<SubmittedEvent>,
    ) -> NodeResult<Admitted> {
        let admitted = self.validate_append(caller.principal.clone(), events)?;
        let events = admitted.events();
        if caller.node_id.is_none() && events.iter().any(|e| e.event.source == SECURITY_SOURCE) {
            self.metrics.denied.inc();
            return Err(NodeError::PermissionDenied(format!(
                "source {SECURITY_SOURCE:?} is reserved for the nodes' own records"
            )));
        }
        let mut sources: Vec<&str> = events.iter().map(|e| e.event.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        for source in sources {
            if let Err(e) = self.authorize(caller, Action::Append { source }) {
                self.record_denial(caller, source, events.len());
                return Err(e);
            }
        }
        self.auth
            .check_signatures(&caller.principal, events)
            .inspect_err(|e| self.count(e))?;
        self.auth
            .charge_events(caller, events.len())
            .inspect_err(|e| self.count(e))?;
        Ok(admitted)
    }

    /// Appends `events` for `caller`, stamped with its principal, once admitted.
    pub async fn append_as(
        self: &Arc<Self>,
        caller: &Caller,
        events: Vec<SubmittedEvent>,
    ) -> NodeResult<Vec<AppendReceipt>> {
        let admitted = self.admit_append(caller, events)?;
        self.append(admitted).await
    }

    /// One request of an `AppendStream`: charged against the request rate
    /// like a call of its own, then appended as [`Self::append_as`].
    pub async fn append_streamed(
        self: &Arc<Self>,
        caller: &Caller,
        events: Vec<SubmittedEvent>,
    ) -> NodeResult<Vec<AppendReceipt>> {
        self.auth
            .charge_request(caller)
            .inspect_err(|e| self.count(e))?;
        self.append_as(caller, events).await
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
        let admitted = match self.validate_append(self.principal.clone(), vec![event.into()]) {
            Ok(admitted) => admitted,
            Err(e) => {
                tracing::warn!(error = %e, "the record of a denied append is itself invalid");
                return;
            }
        };
        let node = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = node.append(admitted).await {
                tracing::warn!(error = %e, "recording a denied append failed");
            }
        });
    }

    /// Checks events against this node's limits, and their signatures, if
    /// signed, against this log's origin. Nothing that fails here reaches Raft.
    fn validate_append(
        &self,
        principal: String,
        events: Vec<SubmittedEvent>,
    ) -> NodeResult<Admitted> {
        if events.is_empty() {
            return Err(NodeError::InvalidArgument(
                "an append needs at least one event".into(),
            ));
        }
        let max = self.config.grpc.request_max_events;
        if events.len() > max {
            return Err(NodeError::InvalidArgument(format!(
                "{} events in one request; the limit is {max} (grpc.request_max_events)",
                events.len()
            )));
        }
        for (i, submitted) in events.iter().enumerate() {
            let event = &submitted.event;
            event
                .validate_new(&self.limits)
                .and_then(|()| match &submitted.signature {
                    Some(s) => s.verify(&self.config.origin, event),
                    None => Ok(()),
                })
                .map_err(|e| {
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
        let bytes = events.iter().map(submitted_size).sum::<usize>() + principal.len();
        let max = self.config.batch.entry_max_bytes;
        if bytes > max {
            return Err(NodeError::InvalidArgument(format!(
                "these {} events take about {bytes} bytes; one request is appended as one \
                 Raft entry of at most {max} bytes (batch.entry_max_bytes): split it into smaller requests",
                events.len()
            )));
        }
        Ok(Admitted(SignedRequest { principal, events }))
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
