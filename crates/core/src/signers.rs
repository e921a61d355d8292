//! The signer list: which principals sign their events, and with which keys.
//!
//! The cluster's policy holds one (its `[[signer]]` tables), and the leader
//! refuses an append that breaks it; an auditor holds its own, obtained
//! independently of the cluster, and checks every entry against it. That
//! second check is what makes a signing service's entries unforgeable: a
//! node, even every node, that writes an entry in that service's name
//! without its key writes an entry the auditor refuses.

use std::collections::BTreeMap;

use crate::note::NoteKey;
use crate::{Entry, EventSignature};

/// One principal's registration, as a policy's or an auditor's `[[signer]]`
/// table spells it in TOML.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerEntry {
    /// The principal, exactly (no pattern).
    pub principal: String,
    /// Its verifier keys (`name+id+base64`, docs/FORMAT.md section 6).
    pub keys: Vec<String>,
    /// Whether every event of the principal must be signed (the default).
    /// `false` registers keys a service may sign with while it moves to
    /// signing: its unsigned events still pass.
    #[serde(default = "signing_required")]
    pub required: bool,
}

fn signing_required() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Registration {
    keys: Vec<NoteKey>,
    required: bool,
}

/// Principals and the keys they sign with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignerList {
    principals: BTreeMap<String, Registration>,
}

impl SignerList {
    /// A list from its tables; a malformed key, a pattern for a principal or a
    /// principal named twice is an error naming the table.
    pub fn new(entries: Vec<SignerEntry>) -> Result<SignerList, String> {
        let mut principals = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("signer {} ({:?})", i + 1, entry.principal);
            if entry.principal.is_empty() || entry.principal.contains('*') {
                return Err(format!("{at}: principal must be one exact principal"));
            }
            if entry.keys.is_empty() {
                return Err(format!("{at}: keys must name at least one verifier key"));
            }
            let keys = entry
                .keys
                .iter()
                .map(|k| NoteKey::parse(k).map_err(|e| format!("{at}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let registration = Registration {
                keys,
                required: entry.required,
            };
            if principals.insert(entry.principal, registration).is_some() {
                return Err(format!("{at}: the principal has two [[signer]] tables"));
            }
        }
        Ok(SignerList { principals })
    }

    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// Whether `principal` may have an event signed as `signature` says: a
    /// registered principal signs with one of its keys (or not at all when
    /// its registration does not require it), and an unregistered one does not
    /// sign, since nothing binds its key to it. The error is a sentence about
    /// "the event"; callers say which.
    pub fn check(&self, principal: &str, signature: Option<&EventSignature>) -> Result<(), String> {
        match (self.principals.get(principal), signature) {
            (Some(r), None) if r.required => Err(format!(
                "{principal} must sign its events (a [[signer]] of the signer list), and the \
                 event carries no signature"
            )),
            (Some(r), Some(sig)) if !r.keys.iter().any(|k| sig.is_by(k)) => Err(format!(
                "the event is signed by key {}, which the signer list does not register for \
                 {principal}",
                hex::encode(sig.public_key)
            )),
            (None, Some(sig)) => Err(format!(
                "the event is signed by key {}, but the signer list registers no key for \
                 {principal}",
                hex::encode(sig.public_key)
            )),
            _ => Ok(()),
        }
    }

    /// [`SignerList::check`] for a stored entry. The signature itself is
    /// checked by decoding and chaining the entry ([`crate::ChainVerifier`]).
    pub fn check_entry(&self, entry: &Entry) -> Result<(), String> {
        self.check(&entry.principal, entry.signature.as_ref())
            .map_err(|e| format!("seq {}: {e}", entry.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubmittedEvent;
    use crate::note::NoteSigner;

    use crate::event::test_event as event;

    #[test]
    fn a_registered_principal_signs_with_its_own_keys_and_no_one_else_signs() {
        let billing = NoteSigner::from_seed("billing", &[1; 32]).expect("key");
        let other = NoteSigner::from_seed("other", &[2; 32]).expect("key");
        let list = SignerList::new(vec![SignerEntry {
            principal: "svc/billing".into(),
            keys: vec![billing.public().to_string()],
            required: true,
        }])
        .expect("list");
        let own = SubmittedEvent::signed(&billing, "o", event()).signature;
        let foreign = SubmittedEvent::signed(&other, "o", event()).signature;
        list.check("svc/billing", own.as_ref())
            .expect("its own key");
        let e = list.check("svc/billing", None).expect_err("unsigned");
        assert!(e.contains("carries no signature"), "{e}");
        let e = list
            .check("svc/billing", foreign.as_ref())
            .expect_err("another key");
        assert!(e.contains("does not register"), "{e}");
        list.check("svc/payroll", None)
            .expect("unregistered, unsigned");
        let e = list
            .check("svc/payroll", foreign.as_ref())
            .expect_err("a key bound to nobody");
        assert!(e.contains("registers no key"), "{e}");

        let optional = SignerList::new(vec![SignerEntry {
            principal: "svc/billing".into(),
            keys: vec![billing.public().to_string()],
            required: false,
        }])
        .expect("list");
        optional.check("svc/billing", None).expect("not required");
        assert!(optional.check("svc/billing", foreign.as_ref()).is_err());
    }

    #[test]
    fn refuses_lists_that_cannot_mean_what_they_say() {
        let key = NoteSigner::from_seed("k", &[1; 32])
            .expect("key")
            .public()
            .to_string();
        let entry = |principal: &str, keys: Vec<String>| SignerEntry {
            principal: principal.into(),
            keys,
            required: true,
        };
        assert!(SignerList::new(vec![entry("svc/*", vec![key.clone()])]).is_err());
        assert!(SignerList::new(vec![entry("svc/a", vec![])]).is_err());
        assert!(SignerList::new(vec![entry("svc/a", vec!["k+00000000+AQ==".into()])]).is_err());
        assert!(
            SignerList::new(vec![
                entry("svc/a", vec![key.clone()]),
                entry("svc/a", vec![key])
            ])
            .is_err()
        );
    }
}
