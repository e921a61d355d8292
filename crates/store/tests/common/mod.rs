//! Shared fixtures for the store's tests: a store in a temporary directory, Raft
//! entries built by hand, and signing keys for checkpoints.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use tempfile::TempDir;
use veritrail_core::Event;
use veritrail_core::note::NoteSigner;
use veritrail_store::{
    AppendRequest, Command, CommandResponse, NodeInfo, Proposal, RequestOutcome, Store,
    StoreConfig, TypeConfig,
};

pub const ORIGIN: &str = "store-test.example/log";

/// The store's column families, per the layout documented in `db.rs`: what a
/// test opening the database raw must name.
pub const COLUMN_FAMILIES: [&str; 8] = [
    "raft_log",
    "raft_meta",
    "entries",
    "event_ids",
    "by_field",
    "merkle_nodes",
    "checkpoints",
    "sm_meta",
];

pub fn event(source: &str, event_id: &str) -> Event {
    Event {
        source: source.into(),
        event_id: event_id.into(),
        actor: "alice".into(),
        action: "read".into(),
        resource: format!("doc/{event_id}"),
        outcome: "success".into(),
        ..Event::default()
    }
}

pub fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

pub fn signers() -> Vec<NoteSigner> {
    (1u8..=3)
        .map(|i| NoteSigner::from_seed(&format!("{ORIGIN}/node-{i}"), &[i; 32]).expect("signer"))
        .collect()
}

/// A membership of three voters whose checkpoint keys are `signers()`.
pub fn membership_with_keys() -> Membership<u64, NodeInfo> {
    let nodes: BTreeMap<u64, NodeInfo> = signers()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = i as u64 + 1;
            (
                id,
                NodeInfo {
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    public_key: s.public().to_string(),
                },
            )
        })
        .collect();
    Membership::new(vec![nodes.keys().copied().collect::<BTreeSet<_>>()], nodes)
}

/// A store in a temporary directory, fed Raft entries by hand.
pub struct Harness {
    pub dir: TempDir,
    pub store: Option<Store>,
    pub next_index: u64,
    pub clock_ns: u64,
}

impl Harness {
    pub fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let store = Store::open(dir.path(), &StoreConfig::new(ORIGIN)).expect("open");
        Harness {
            dir,
            store: Some(store),
            next_index: 1,
            clock_ns: 1_000_000_000,
        }
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    /// Closes and reopens the store, as a restart would.
    pub fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(self.dir.path(), &StoreConfig::new(ORIGIN)).expect("reopen"));
    }

    pub fn close(&mut self) {
        self.store = None;
    }

    pub async fn apply_payloads(
        &mut self,
        payloads: Vec<EntryPayload<TypeConfig>>,
    ) -> Vec<CommandResponse> {
        let entries: Vec<Entry<TypeConfig>> = payloads
            .into_iter()
            .map(|payload| {
                let entry = Entry {
                    log_id: log_id(self.next_index),
                    payload,
                };
                self.next_index += 1;
                entry
            })
            .collect();
        let mut sm = self.store().state_machine.clone();
        sm.apply(entries).await.expect("apply")
    }

    pub async fn apply(&mut self, command: Command) -> CommandResponse {
        self.apply_payloads(vec![EntryPayload::Normal(command)])
            .await
            .remove(0)
    }

    /// Proposes requests at the harness clock, which then advances by 1 ms.
    pub async fn propose(&mut self, requests: Vec<AppendRequest>) -> Vec<RequestOutcome> {
        let proposal = Proposal {
            proposed_at_ns: self.clock_ns,
            requests,
        };
        self.clock_ns += 1_000_000;
        match self.apply(Command::Append(proposal)).await {
            CommandResponse::Appended(outcomes) => outcomes,
            other => panic!("unexpected response {other:?}"),
        }
    }

    pub async fn append(&mut self, principal: &str, events: Vec<Event>) -> RequestOutcome {
        self.propose(vec![AppendRequest {
            principal: principal.into(),
            events,
        }])
        .await
        .remove(0)
    }

    /// Appends `n` events from `source` in proposals of `per_proposal`.
    pub async fn fill(&mut self, source: &str, n: u64, per_proposal: u64) {
        let mut i = 0;
        while i < n {
            let events = (i..(i + per_proposal).min(n))
                .map(|k| event(source, &format!("e{k}")))
                .collect();
            match self.append(source, events).await {
                RequestOutcome::Accepted(_) => {}
                other => panic!("fill failed: {other:?}"),
            }
            i += per_proposal;
        }
    }

    pub async fn install_membership_with_keys(&mut self) {
        self.apply_payloads(vec![EntryPayload::Membership(membership_with_keys())])
            .await;
    }
}
