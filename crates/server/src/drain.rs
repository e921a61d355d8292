//! Stopping in bounded time (issue #23).
//!
//! tonic's graceful shutdown waits for every open call to end, and a `Tail`
//! follower or an SDK producer's `AppendStream` never ends by itself: a node
//! asked to stop kept running as long as any consumer stayed connected. Now
//! the first SIGTERM or SIGINT starts a drain:
//!
//! - streams are told to go elsewhere: a tail ends with `UNAVAILABLE` naming
//!   the seq to continue from on another node; an append stream stops reading,
//!   answers the requests it already took, then ends with `UNAVAILABLE`;
//! - the node stops accepting connections and tells open ones to go away
//!   (HTTP/2 GOAWAY), and readiness reports not serving;
//! - whatever is still open after `grpc.shutdown_grace_ms` is closed.
//!
//! A second signal stops the process at once.

use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tonic::Status;

/// Whether this node is stopping. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Drain {
    tx: watch::Sender<bool>,
    /// Set when the node decides to stop by itself, as a signal would.
    stop: Arc<Notify>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::channel(false).0,
            stop: Arc::default(),
        }
    }
}

impl Drain {
    /// Asks the node to stop as SIGTERM does (a removed node stops itself).
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Resolves once [`Drain::stop`] was called.
    pub async fn stop_requested(&self) {
        self.stop.notified().await;
    }

    /// Starts draining; idempotent.
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// What a stream ends with when the node stops under it.
    pub fn status(continue_from_seq: Option<u64>) -> Status {
        Status::unavailable(match continue_from_seq {
            Some(seq) => {
                format!("this node is shutting down: continue from seq {seq} on another node")
            }
            None => "this node is shutting down: continue on another node".to_owned(),
        })
    }
}
