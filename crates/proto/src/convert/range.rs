//! A node's report on a range of its own log.

use veritrail_core::RangeReport;

use super::{WireError, hash_from_wire, hash_to_wire};
use crate::v1;

impl From<&RangeReport> for v1::VerifyRangeResponse {
    fn from(report: &RangeReport) -> Self {
        v1::VerifyRangeResponse {
            ok: report.ok,
            entries_checked: report.entries_checked,
            first_bad_seq: report.first_bad_seq,
            problem: report.problem.clone(),
            root_hash: hash_to_wire(&report.root),
        }
    }
}

impl TryFrom<v1::VerifyRangeResponse> for RangeReport {
    type Error = WireError;

    fn try_from(r: v1::VerifyRangeResponse) -> Result<Self, WireError> {
        Ok(RangeReport {
            ok: r.ok,
            entries_checked: r.entries_checked,
            first_bad_seq: r.first_bad_seq,
            problem: r.problem,
            root: hash_from_wire("root_hash", &r.root_hash)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veritrail_core::Hash;

    #[test]
    fn reports_round_trip() {
        let report = RangeReport {
            ok: false,
            entries_checked: 10,
            first_bad_seq: Some(9),
            problem: "chain broken".into(),
            root: Hash([2; 32]),
        };
        let wire = v1::VerifyRangeResponse::from(&report);
        assert_eq!(RangeReport::try_from(wire), Ok(report));
    }
}
