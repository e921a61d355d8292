//! `veritrail-client`: the SDK services and tools use to talk to a Veritrail
//! cluster.
//!
//! - [`Client`]: every call of the API. Give it any node addresses; it finds the
//!   leader, follows it when it moves, and retries `UNAVAILABLE` and timeouts
//!   with jittered exponential backoff ([`RetryPolicy`]). An event without an
//!   `event_id` gets a UUIDv7 before the first attempt, so a retried append
//!   lands exactly once.
//! - [`Producer`]: batched, pipelined appends over one `AppendStream`, with a
//!   linger time, bounded batches, bounded requests in flight and a bounded
//!   queue (backpressure), and `flush`.
//! - [`Verifier`]: a trusted checkpoint that moves forward only along proven
//!   history: quorum signatures of known keys plus a consistency proof. Checks
//!   receipts by inclusion proof; reports a fork with both signed notes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), veritrail_client::Error> {
//! use veritrail_client::{Client, Event, Producer, ProducerConfig};
//!
//! let client = Client::connect(["127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403"])?;
//! let receipt = client
//!     .append(Event {
//!         source: "billing".into(),
//!         actor: "alice@example.com".into(),
//!         action: "invoice.refund".into(),
//!         resource: "invoice/42".into(),
//!         outcome: "success".into(),
//!         ..Event::default()
//!     })
//!     .await?;
//! println!("seq {} hash {}", receipt.seq, receipt.entry_hash);
//!
//! let producer = Producer::new(&client, ProducerConfig::default())?;
//! let pending = producer.send(Event { source: "billing".into(), ..Event::default() }).await?;
//! producer.flush().await?;
//! let _receipt = pending.await?;
//! # Ok(()) }
//! ```
//!
//! **Architecture invariant:** the SDK depends on the core and the wire contract
//! only, never on the server or RocksDB: an auditor's verifier trusts no code
//! that runs on a node.

mod admin;
mod append;
mod client;
mod config;
mod error;
mod producer;
mod proofs;
mod read;
mod read_stream;
mod receipt;
mod retry;
mod transport;
mod verifier;

pub use client::Client;
pub use config::{ClientConfig, EventSigning, RetryPolicy, TlsSettings};
pub use error::{Error, ForkEvidence, Result};
pub use producer::{PendingReceipt, Producer, ProducerConfig};
pub use receipt::Receipt;
pub use retry::LEADER_ADDR_METADATA;
pub use verifier::{
    Advance, ChainState, KeySetChange, TRUSTED_STATE_FORMAT, TrustedState, Verifier,
};
/// What nodes serve: entries, checkpoints, proofs and range reports, the
/// core's types, converted from the wire in `veritrail-proto`.
pub use veritrail_core::{
    ConsistencyProof, InclusionProof, LogEntry, RangeReport, SignedCheckpoint,
};

/// The event and entry types, and the offline verification of the core.
pub use veritrail_core::{self as core, Entry, Event, Hash, SignerList, SubmittedEvent};
/// What a scan and a tail read: the core's queries, which the nodes answer.
pub use veritrail_core::{ScanQuery, TailQuery};
/// The generated wire types (admin responses are returned as they are).
pub use veritrail_proto::v1 as proto;
