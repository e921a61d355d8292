//! Size limits on events: the configurable policy and the format's hard maxima.
//!
//! Two layers, on purpose. The *format maxima* are what the canonical encoding may
//! ever carry; a decoder accepts anything within them so that an entry written under
//! a generous policy stays readable under a strict one. The *policy* ([`Limits`]) is
//! what a cluster accepts from clients today; operators may lower it, never raise it
//! above the format maxima.

use crate::Error;

/// Hard maximum for any one text field of an entry, in bytes.
pub const FORMAT_FIELD_MAX_BYTES: usize = 4 * 1024;
/// Hard maximum for the opaque payload of one event, in bytes.
pub const FORMAT_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// Hard maximum number of attributes on one event.
pub const FORMAT_ATTRIBUTES_MAX_COUNT: usize = 256;
/// Hard maximum size of one canonical entry, in bytes. Derived so that an entry that
/// respects every other hard maximum always fits; the decoder refuses anything larger
/// before looking inside it.
pub const FORMAT_ENTRY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What a cluster accepts in one event. Every limit is in bytes unless its name says
/// otherwise; string limits count UTF-8 bytes, not characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub source_max_bytes: usize,
    pub event_id_max_bytes: usize,
    pub actor_max_bytes: usize,
    pub action_max_bytes: usize,
    pub resource_max_bytes: usize,
    pub outcome_max_bytes: usize,
    pub trace_id_max_bytes: usize,
    pub principal_max_bytes: usize,
    pub attributes_max_count: usize,
    pub attribute_key_max_bytes: usize,
    pub attribute_value_max_bytes: usize,
    pub payload_max_bytes: usize,
}

impl Default for Limits {
    /// Defaults sized for audit events: identifiers short, a resource may be a long
    /// path, and a payload (a diff, a request body) up to 64 KiB.
    fn default() -> Self {
        Limits {
            source_max_bytes: 128,
            event_id_max_bytes: 128,
            actor_max_bytes: 256,
            action_max_bytes: 128,
            resource_max_bytes: 1024,
            outcome_max_bytes: 64,
            trace_id_max_bytes: 128,
            principal_max_bytes: 256,
            attributes_max_count: 64,
            attribute_key_max_bytes: 128,
            attribute_value_max_bytes: 1024,
            payload_max_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// The format's hard maxima as a policy: what any node accepts when applying
    /// replicated entries, whatever its own configured policy. Applying with these
    /// (not with a node's configuration) keeps apply deterministic across nodes
    /// whose operators chose different limits.
    pub fn format_maximum() -> Self {
        Limits {
            source_max_bytes: FORMAT_FIELD_MAX_BYTES,
            event_id_max_bytes: FORMAT_FIELD_MAX_BYTES,
            actor_max_bytes: FORMAT_FIELD_MAX_BYTES,
            action_max_bytes: FORMAT_FIELD_MAX_BYTES,
            resource_max_bytes: FORMAT_FIELD_MAX_BYTES,
            outcome_max_bytes: FORMAT_FIELD_MAX_BYTES,
            trace_id_max_bytes: FORMAT_FIELD_MAX_BYTES,
            principal_max_bytes: FORMAT_FIELD_MAX_BYTES,
            attributes_max_count: FORMAT_ATTRIBUTES_MAX_COUNT,
            attribute_key_max_bytes: FORMAT_FIELD_MAX_BYTES,
            attribute_value_max_bytes: FORMAT_FIELD_MAX_BYTES,
            payload_max_bytes: FORMAT_PAYLOAD_MAX_BYTES,
        }
    }

    /// Checks that no limit exceeds what the entry format can carry.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [
            ("source_max_bytes", self.source_max_bytes),
            ("event_id_max_bytes", self.event_id_max_bytes),
            ("actor_max_bytes", self.actor_max_bytes),
            ("action_max_bytes", self.action_max_bytes),
            ("resource_max_bytes", self.resource_max_bytes),
            ("outcome_max_bytes", self.outcome_max_bytes),
            ("trace_id_max_bytes", self.trace_id_max_bytes),
            ("principal_max_bytes", self.principal_max_bytes),
            ("attribute_key_max_bytes", self.attribute_key_max_bytes),
            ("attribute_value_max_bytes", self.attribute_value_max_bytes),
        ];
        for (limit, value) in fields {
            check_at_most(limit, value, FORMAT_FIELD_MAX_BYTES)?;
        }
        check_at_most(
            "payload_max_bytes",
            self.payload_max_bytes,
            FORMAT_PAYLOAD_MAX_BYTES,
        )?;
        check_at_most(
            "attributes_max_count",
            self.attributes_max_count,
            FORMAT_ATTRIBUTES_MAX_COUNT,
        )
    }

    /// The largest canonical entry these limits allow, in bytes. Used to size
    /// batches and message limits in the layers above.
    pub fn entry_max_bytes(&self) -> usize {
        // Fixed part: version, seq, timestamp, prev_hash, two option tags, the event
        // time, the attribute count and the length prefixes of nine strings and the
        // payload. See docs/FORMAT.md for the layout this mirrors.
        let fixed = 1 + 8 + 8 + 32 + 1 + 1 + 8 + 4 + 4 * 9;
        fixed
            + self.principal_max_bytes
            + self.source_max_bytes
            + self.event_id_max_bytes
            + self.actor_max_bytes
            + self.action_max_bytes
            + self.resource_max_bytes
            + self.outcome_max_bytes
            + self.trace_id_max_bytes
            + self.attributes_max_count
                * (8 + self.attribute_key_max_bytes + self.attribute_value_max_bytes)
            + self.payload_max_bytes
    }
}

fn check_at_most(limit: &'static str, value: usize, max: usize) -> Result<(), Error> {
    if value > max {
        return Err(Error::LimitAboveFormatMaximum { limit, value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default()
            .validate()
            .expect("defaults within format maxima");
    }

    #[test]
    fn format_maxima_fit_the_entry_maximum() {
        let max = Limits::format_maximum();
        max.validate().expect("maxima are valid");
        assert!(max.entry_max_bytes() <= FORMAT_ENTRY_MAX_BYTES);
    }

    #[test]
    fn rejects_limits_above_the_format() {
        let limits = Limits {
            payload_max_bytes: FORMAT_PAYLOAD_MAX_BYTES + 1,
            ..Limits::default()
        };
        assert!(matches!(
            limits.validate(),
            Err(Error::LimitAboveFormatMaximum {
                limit: "payload_max_bytes",
                ..
            })
        ));
    }
}
