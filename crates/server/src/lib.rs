//! `veritrail-server`: a Veritrail cluster node (`veritraild`).
//!
//! Wires openraft to the RocksDB store and to gRPC: Raft's RPCs travel over the
//! `RaftPeer` service on the same port as the public `AuditLog` and `Admin`
//! services. The leader batches appends into Raft entries (`batcher`), every
//! node serves reads and proofs from its own store, and the voters co-sign
//! checkpoints (`cosign`). `node` is the hub that holds a node's parts; the rooms
//! around it (`gate`, `senders`, `freshness`, `admission`, `routing`, `linearize`,
//! `cosign`, `key_sets`, `membership`) each add one kind of operation to it.
//!
//! **Architecture invariant:** every append is acknowledged only after the
//! Raft entry carrying it is committed on a majority (each member syncs its log
//! before acknowledging) and applied with a synced write on the leader.

pub mod admin_service;
pub mod admission;
pub mod audit_service;
pub mod auth;
pub mod background;
pub mod batcher;
pub mod certs;
pub mod config;
pub mod cosign;
pub mod disk;
pub mod drain;
pub mod error;
pub mod freshness;
pub mod gate;
pub mod idle;
pub mod key_sets;
pub mod keys;
pub mod linearize;
pub mod listener;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod peers;
pub mod policy;
pub mod quota;
pub mod reload;
pub mod repair;
pub mod replication;
pub mod routing;
pub mod runtimes;
pub mod senders;
pub mod server;
pub mod tiles;
pub mod tls;
pub mod witnesses;

pub use config::Config;
pub use server::run;
