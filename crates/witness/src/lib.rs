//! `veritrail-witness`: a C2SP `tlog-witness`. It follows the logs named in
//! its configuration, keeps the latest size and root it cosigned for each,
//! and answers `add-checkpoint` with a `tlog-cosignature` v1 only for a
//! checkpoint signed by a quorum of the log's keys that extends what it
//! cosigned before by a valid consistency proof. A fork or a rollback is
//! refused with the spec's status codes and logged as evidence.
//!
//! It shares no code with a node but the core's formats: a witness is
//! somebody else's, run apart from the cluster it watches.

pub mod config;
pub mod http;
pub mod protocol;
pub mod state;
