//! Per-principal caps on what one caller holds open on a node at once: its
//! streams (`Scan`, `Tail`, `AppendStream`) and its reads in progress.
//!
//! Rate limits (`auth.rs`) bound how fast a principal asks; they do not bound
//! how much it holds. One authorized reader that opened 600 `Tail` streams
//! kept the leader's runtime busy enough to cost it its leadership, and appends
//! stopped for seconds (issue #17). With these caps a principal holds at most
//! `grpc.principal_max_streams` streams and `grpc.principal_max_reads` reads on
//! each node; one more is refused at once with `RESOURCE_EXHAUSTED`, and what
//! it held is given back when the stream or the read ends (the [`Held`] guard).
//! Nodes calling `RaftPeer` are not counted: that service is not gated here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{NodeError, NodeResult};

/// The caps of one node.
#[derive(Debug)]
pub struct Quotas {
    pub streams: Cap,
    pub reads: Cap,
}

impl Quotas {
    pub fn new(max_streams: usize, max_reads: usize) -> Self {
        Quotas {
            streams: Cap::new("open streams", "grpc.principal_max_streams", max_streams),
            reads: Cap::new("reads in progress", "grpc.principal_max_reads", max_reads),
        }
    }
}

type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// How many of one kind of thing each principal may hold at once.
#[derive(Debug)]
pub struct Cap {
    what: &'static str,
    setting: &'static str,
    max: usize,
    held: Counts,
}

impl Cap {
    fn new(what: &'static str, setting: &'static str, max: usize) -> Self {
        Cap {
            what,
            setting,
            max,
            held: Arc::default(),
        }
    }

    /// Takes one for `principal`, or `RESOURCE_EXHAUSTED` when it holds the
    /// most it may.
    pub fn take(&self, principal: &str) -> NodeResult<Held> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(principal.to_owned()).or_insert(0);
        if *count >= self.max {
            return Err(NodeError::ResourceExhausted(format!(
                "{principal} already holds {} {} on this node ({} = {}): close one, or use another node",
                self.max, self.what, self.setting, self.max
            )));
        }
        *count += 1;
        Ok(Held {
            principal: principal.to_owned(),
            held: Arc::clone(&self.held),
        })
    }

    /// What `principal` holds now.
    pub fn held_by(&self, principal: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(principal).copied().unwrap_or(0)
    }
}

/// One stream or read a principal holds; given back when dropped.
#[derive(Debug)]
pub struct Held {
    principal: String,
    held: Counts,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_holds_at_most_the_cap_and_gets_each_back_when_done() {
        let cap = Quotas::new(2, 1).streams;
        let a = cap.take("reader").expect("first");
        let _b = cap.take("reader").expect("second");
        let refused = cap.take("reader").expect_err("third");
        assert!(
            refused.to_string().contains("grpc.principal_max_streams"),
            "{refused}"
        );
        // Another principal is not held back by this one.
        let _other = cap.take("someone-else").expect("another principal");
        drop(a);
        assert_eq!(cap.held_by("reader"), 1);
        let _c = cap.take("reader").expect("after one ended");
        assert_eq!(cap.held_by("reader"), 2);
    }

    #[test]
    fn nothing_is_kept_for_a_principal_that_holds_nothing() {
        let cap = Quotas::new(1, 1).reads;
        drop(cap.take("gone").expect("take"));
        assert!(cap.held.lock().expect("lock").is_empty());
    }
}
