//! Scan and tail requests.

use veritrail_core::{ScanQuery, TailQuery};

use crate::v1;

/// The wire form of a scan. A function, not `From`: the read consistency is
/// the client's setting, not part of the query.
pub fn scan_to_wire(query: &ScanQuery, consistency: v1::ReadConsistency) -> v1::ScanRequest {
    v1::ScanRequest {
        from_seq: query.from_seq,
        to_seq: query.to_seq,
        source: query.source.clone(),
        actor: query.actor.clone(),
        action: query.action.clone(),
        since_ns: query.since_ns,
        until_ns: query.until_ns,
        limit: query.limit,
        consistency: consistency as i32,
        resource: query.resource.clone(),
        outcome: query.outcome.clone(),
        principal: query.principal.clone(),
    }
}

impl From<v1::ScanRequest> for ScanQuery {
    /// Ranges are checked by whoever answers, against the log it holds; the
    /// read consistency is left on the request, for the read fence.
    fn from(r: v1::ScanRequest) -> ScanQuery {
        ScanQuery {
            from_seq: r.from_seq,
            to_seq: r.to_seq,
            source: r.source,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome,
            principal: r.principal,
            since_ns: r.since_ns,
            until_ns: r.until_ns,
            limit: r.limit,
        }
    }
}

impl From<&TailQuery> for v1::TailRequest {
    fn from(query: &TailQuery) -> Self {
        v1::TailRequest {
            from_seq: query.from_seq,
            source: query.source.clone(),
            actor: query.actor.clone(),
            action: query.action.clone(),
            resource: query.resource.clone(),
            outcome: query.outcome.clone(),
            principal: query.principal.clone(),
        }
    }
}

impl From<v1::TailRequest> for TailQuery {
    fn from(r: v1::TailRequest) -> TailQuery {
        TailQuery {
            from_seq: r.from_seq,
            source: r.source,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome,
            principal: r.principal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip() {
        let scan = ScanQuery {
            from_seq: 1,
            to_seq: Some(9),
            source: Some("s".into()),
            actor: Some("a".into()),
            action: Some("x".into()),
            resource: Some("r".into()),
            outcome: Some("o".into()),
            principal: Some("p".into()),
            since_ns: Some(3),
            until_ns: Some(4),
            limit: 5,
        };
        let wire = scan_to_wire(&scan, v1::ReadConsistency::Local);
        assert_eq!(wire.consistency, v1::ReadConsistency::Local as i32);
        assert_eq!(ScanQuery::from(wire), scan);

        let tail = TailQuery {
            from_seq: 2,
            source: None,
            actor: Some("a".into()),
            action: None,
            resource: None,
            outcome: Some("denied".into()),
            principal: None,
        };
        assert_eq!(TailQuery::from(v1::TailRequest::from(&tail)), tail);
    }
}
