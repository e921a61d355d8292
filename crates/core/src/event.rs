//! The audit event a service submits, and its validation.

use std::collections::BTreeMap;

use crate::{Error, Limits};

/// What a service submits: who did what to which resource, when, with what outcome.
///
/// `source` names the submitting service and `event_id` is that service's
/// idempotency key: the log holds at most one entry per `(source, event_id)`, so a
/// client may retry an append as often as it likes.
///
/// `Event` derives serde so that the Raft log can carry it in a compact binary
/// form; no serde form of an event is ever hashed (only [`crate::Entry`]'s
/// canonical bytes are).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The service that records the event, e.g. `billing`. Identifier rules.
    pub source: String,
    /// The caller's idempotency key, unique within `source`. Identifier rules.
    pub event_id: String,
    /// Who acted: a user, a service account. Text rules.
    pub actor: String,
    /// What was done, e.g. `invoice.refund`. Text rules.
    pub action: String,
    /// What it was done to, e.g. `invoice/2024-0042`. Text rules.
    pub resource: String,
    /// How it ended, e.g. `success`, `denied`, `error`. Text rules.
    pub outcome: String,
    /// When the caller says it happened, unix nanoseconds by the caller's clock.
    /// Recorded as given; the log's own ordering uses the cluster timestamp.
    pub event_time_ns: Option<u64>,
    /// A distributed-tracing id to correlate with. Identifier rules.
    pub trace_id: Option<String>,
    /// Free-form labels, sorted by key. Keys follow identifier rules, values text rules.
    pub attributes: BTreeMap<String, String>,
    /// Opaque bytes: a request body, a diff. Never interpreted by the log.
    pub payload: Vec<u8>,
}

/// Identifier fields hold printable ASCII without spaces, so they can be used in
/// keys, URLs and log lines without quoting.
const IDENTIFIER_RULE: &str = "identifiers may only hold printable ASCII without spaces";
/// Text fields hold any Unicode except control characters, so that a log line or a
/// terminal showing them cannot be forged with newlines or escape sequences.
const TEXT_RULE: &str = "text fields may not hold control characters";

impl Event {
    /// Checks every field against `limits` and the character rules.
    ///
    /// Errors name the first offending field, in the order the fields are encoded.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_identifier("source", &self.source, limits.source_max_bytes)?;
        check_identifier("event_id", &self.event_id, limits.event_id_max_bytes)?;
        check_text("actor", &self.actor, limits.actor_max_bytes)?;
        check_text("action", &self.action, limits.action_max_bytes)?;
        check_text("resource", &self.resource, limits.resource_max_bytes)?;
        check_text("outcome", &self.outcome, limits.outcome_max_bytes)?;
        if let Some(trace_id) = &self.trace_id {
            check_identifier("trace_id", trace_id, limits.trace_id_max_bytes)?;
        }
        if self.attributes.len() > limits.attributes_max_count {
            return Err(Error::TooManyAttributes {
                count: self.attributes.len(),
                max: limits.attributes_max_count,
            });
        }
        for (key, value) in &self.attributes {
            check_identifier("attributes.key", key, limits.attribute_key_max_bytes)?;
            check_length("attributes.value", value, limits.attribute_value_max_bytes)?;
            check_characters("attributes.value", value, is_text_char, TEXT_RULE)?;
        }
        if self.payload.len() > limits.payload_max_bytes {
            return Err(Error::PayloadTooLarge {
                len_bytes: self.payload.len(),
                max_bytes: limits.payload_max_bytes,
            });
        }
        Ok(())
    }
}

/// New events follow a stricter rule than the format: besides control
/// characters, their text may not hold the Unicode characters that reorder or
/// break a line when shown (bidirectional controls such as U+202E, and the
/// line and paragraph separators U+2028 and U+2029). A node checks it when an
/// event arrives ([`Event::validate_new`]); apply and readers keep the format's
/// rule, so entries written before it was added still replay the same on every
/// node. Readers that print text escape these characters all the same.
const NEW_TEXT_RULE: &str = "text may not hold bidirectional controls or line separators, which would reorder or break the line it is shown in";

/// Whether `c` reorders or breaks the text it is shown in: a bidirectional
/// control (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) or a
/// line or paragraph separator (U+2028, U+2029).
pub fn is_display_hazard(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

impl Event {
    /// [`Event::validate`], and the stricter text rule for new events
    /// ([`is_display_hazard`]). Nodes check appends with this at the door.
    pub fn validate_new(&self, limits: &Limits) -> Result<(), Error> {
        self.validate(limits)?;
        let texts = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
            ("outcome", &self.outcome),
        ];
        for (field, value) in texts
            .into_iter()
            .chain(self.attributes.values().map(|v| ("attributes.value", v)))
        {
            check_characters(field, value, |c| !is_display_hazard(c), NEW_TEXT_RULE)?;
        }
        Ok(())
    }
}

/// Validates the principal the server authenticated; it follows text rules.
pub fn validate_principal(principal: &str, limits: &Limits) -> Result<(), Error> {
    check_text("principal", principal, limits.principal_max_bytes)
}

fn check_identifier(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Error> {
    check_non_empty(field, value)?;
    check_length(field, value, max_bytes)?;
    check_characters(field, value, |c| c.is_ascii_graphic(), IDENTIFIER_RULE)
}

fn check_text(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Error> {
    check_non_empty(field, value)?;
    check_length(field, value, max_bytes)?;
    check_characters(field, value, is_text_char, TEXT_RULE)
}

fn is_text_char(c: char) -> bool {
    !c.is_control()
}

fn check_non_empty(field: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::EmptyField { field });
    }
    Ok(())
}

fn check_length(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Error> {
    if value.len() > max_bytes {
        return Err(Error::FieldTooLong {
            field,
            len_bytes: value.len(),
            max_bytes,
        });
    }
    Ok(())
}

fn check_characters(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
    rule: &'static str,
) -> Result<(), Error> {
    match value.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((offset_bytes, found)) => Err(Error::ForbiddenCharacter {
            field,
            found,
            offset_bytes,
            rule,
        }),
        None => Ok(()),
    }
}

/// A plain valid event, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_event() -> Event {
    Event {
        source: "billing".into(),
        event_id: "evt-1".into(),
        actor: "alice@example.com".into(),
        action: "invoice.refund".into(),
        resource: "invoice/42".into(),
        outcome: "success".into(),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_event as event;

    #[test]
    fn accepts_a_plain_event() {
        event().validate(&Limits::default()).expect("valid");
    }

    #[test]
    fn new_events_may_not_reorder_or_break_the_lines_they_are_shown_in() {
        for (hazard, field) in [('\u{202E}', "resource"), ('\u{2028}', "attributes.value")] {
            let mut e = event();
            if field == "resource" {
                e.resource = format!("invoice/{hazard}24");
            } else {
                e.attributes.insert("note".into(), format!("a{hazard}b"));
            }
            // The format (what apply and readers check) still allows it...
            e.validate(&Limits::default()).expect("the format's rule");
            // ...and a new event is refused, naming the field and the character.
            match e.validate_new(&Limits::default()) {
                Err(Error::ForbiddenCharacter {
                    field: f, found, ..
                }) => assert_eq!((f, found), (field, hazard)),
                other => panic!("{hazard:?} in {field}: {other:?}"),
            }
        }
        event()
            .validate_new(&Limits::default())
            .expect("plain text, right-to-left letters included");
        Event {
            actor: "\u{5D0}\u{5D1}\u{5D2}".into(),
            ..event()
        }
        .validate_new(&Limits::default())
        .expect("Hebrew letters are text");
    }

    #[test]
    fn names_the_empty_field() {
        let e = Event {
            actor: String::new(),
            ..event()
        };
        assert_eq!(
            e.validate(&Limits::default()),
            Err(Error::EmptyField { field: "actor" })
        );
    }

    #[test]
    fn rejects_spaces_in_identifiers_and_controls_in_text() {
        let e = Event {
            source: "bill ing".into(),
            ..event()
        };
        assert!(matches!(
            e.validate(&Limits::default()),
            Err(Error::ForbiddenCharacter {
                field: "source",
                offset_bytes: 4,
                found: ' ',
                ..
            })
        ));
        let e = Event {
            resource: "a\nb".into(),
            ..event()
        };
        assert!(matches!(
            e.validate(&Limits::default()),
            Err(Error::ForbiddenCharacter {
                field: "resource",
                found: '\n',
                ..
            })
        ));
        // Non-ASCII text is fine.
        let e = Event {
            actor: "zoë".into(),
            ..event()
        };
        assert!(e.validate(&Limits::default()).is_ok());
    }

    #[test]
    fn enforces_every_limit() {
        let limits = Limits::default();
        let e = Event {
            resource: "r".repeat(limits.resource_max_bytes + 1),
            ..event()
        };
        assert!(matches!(
            e.validate(&limits),
            Err(Error::FieldTooLong {
                field: "resource",
                ..
            })
        ));
        let e = Event {
            payload: vec![0; limits.payload_max_bytes + 1],
            ..event()
        };
        assert!(matches!(
            e.validate(&limits),
            Err(Error::PayloadTooLarge { .. })
        ));
        let mut e = event();
        for i in 0..=limits.attributes_max_count {
            e.attributes.insert(format!("k{i}"), "v".into());
        }
        assert!(matches!(
            e.validate(&limits),
            Err(Error::TooManyAttributes { .. })
        ));
        let mut e = event();
        e.attributes
            .insert("k".into(), "v".repeat(limits.attribute_value_max_bytes + 1));
        assert!(matches!(
            e.validate(&limits),
            Err(Error::FieldTooLong {
                field: "attributes.value",
                ..
            })
        ));
        let e = Event {
            trace_id: Some(String::new()),
            ..event()
        };
        assert_eq!(
            e.validate(&limits),
            Err(Error::EmptyField { field: "trace_id" })
        );
    }

    #[test]
    fn attribute_values_may_be_empty() {
        let mut e = event();
        e.attributes.insert("flag".into(), String::new());
        assert!(e.validate(&Limits::default()).is_ok());
    }
}
