//! What a read asks for: the entries of a scan and of a tail.
//!
//! These are plain values, not I/O: the SDK builds them, the wire carries them
//! (converted in `veritrail-proto`), and the store answers them. They live here
//! because the core is the one crate both ends depend on, so one type serves
//! both and the two can never drift apart.

/// Which entries a scan returns: a seq range narrowed by a time range and by
/// exact matches on fields. `source`, `actor` and `action` are indexed; the
/// others are checked on the entries the rest of the query selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanQuery {
    /// First seq to consider.
    pub from_seq: u64,
    /// One past the last seq to consider; the end of the log when `None`.
    pub to_seq: Option<u64>,
    pub source: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    /// The principal the cluster recorded for the entry (who appended it).
    pub principal: Option<String>,
    /// Only entries stamped at or after this time, unix nanoseconds.
    pub since_ns: Option<u64>,
    /// Only entries stamped before this time, unix nanoseconds.
    pub until_ns: Option<u64>,
    /// Most entries to return. The SDK and the wire read 0 as no limit; the
    /// store, which answers one bounded page at a time, refuses 0.
    pub limit: u64,
}

/// Which entries a tail follows: every entry from `from_seq` on that matches
/// the field filters, then each new one as it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailQuery {
    pub from_seq: u64,
    pub source: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    pub principal: Option<String>,
}

impl From<TailQuery> for ScanQuery {
    /// A tail reads what exists as a scan to the end of the log, without a time
    /// range or a limit; following new entries is the reader's business.
    fn from(tail: TailQuery) -> ScanQuery {
        ScanQuery {
            from_seq: tail.from_seq,
            source: tail.source,
            actor: tail.actor,
            action: tail.action,
            resource: tail.resource,
            outcome: tail.outcome,
            principal: tail.principal,
            ..ScanQuery::default()
        }
    }
}
