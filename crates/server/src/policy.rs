//! The authorization policy: a TOML file of grants. Whatever no grant allows is
//! denied. Example (docs/SECURITY.md has the full description):
//!
//! ```toml
//! # Every service appends to the source named after it, and nothing else.
//! [[grant]]
//! principals = ["spiffe://veritrail.local/service/*"]
//! append = ["{name}"]
//!
//! [[grant]]
//! principals = ["spiffe://veritrail.local/service/auditor"]
//! read = true
//! proofs = true
//!
//! [[grant]]
//! principals = ["spiffe://veritrail.local/service/ops"]
//! admin = true
//! ```
//!
//! A pattern is either exact or ends in `*`, which matches any rest. In
//! `append`, `{name}` stands for the principal's name: what the `*` of the
//! grant's principal pattern matched, or, under an exact pattern, the last
//! `/`-separated segment of a SPIFFE ID (the whole principal otherwise).
//!
//! A `[[signer]]` table registers the keys a service signs its events with
//! (docs/SECURITY.md, "Client-signed events"):
//!
//! ```toml
//! [[signer]]
//! principal = "spiffe://veritrail.local/service/billing"
//! keys = ["billing+6e2d3f1a+AQ...="]   # verifier keys, `veritrail keygen` prints them
//! required = true                     # the default: unsigned events are refused
//! ```
//!
//! The leader checks every append against it before it proposes, whichever
//! node received it: a member cannot forward, in a signing service's name, an
//! event that service did not sign.

use std::path::Path;

use serde::Deserialize;
use veritrail_core::{SignerEntry, SignerList, SubmittedEvent};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Append events of this source.
    Append { source: &'a str },
    /// Read entries: get, scan, tail (and so export).
    Read,
    /// Fetch checkpoints, proofs, frontiers and range checks.
    Proofs,
    /// Change the cluster or take a backup (which holds every entry).
    Admin,
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Append { source } => write!(f, "append to source {source:?}"),
            Action::Read => f.write_str("read entries"),
            Action::Proofs => f.write_str("fetch checkpoints and proofs"),
            Action::Admin => f.write_str("administer the cluster"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    grant: Vec<Grant>,
    #[serde(default)]
    signer: Vec<SignerEntry>,
}

/// One grant: these principals may do these things.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub principals: Vec<String>,
    /// Sources the principals may append to.
    #[serde(default)]
    pub append: Vec<String>,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub proofs: bool,
    #[serde(default)]
    pub admin: bool,
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
    signers: SignerList,
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// The principal's name under `pattern`, a principal pattern that matches it:
/// what the pattern's `*` matched (`team-x/billing` for
/// `spiffe://td/service/team-x/billing` under `spiffe://td/service/*`), or,
/// for an exact pattern, the last segment of a SPIFFE ID (or all of it).
///
/// Taking the last segment under a `*` would give `service/team-x/billing`
/// and `service/billing` the same name, and each the other's source.
pub fn principal_name<'p>(pattern: &str, principal: &'p str) -> &'p str {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return principal.strip_prefix(prefix).unwrap_or(principal);
    }
    if principal.starts_with("spiffe://") {
        principal.rsplit('/').next().unwrap_or(principal)
    } else {
        principal
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, String> {
        let file: PolicyFile = crate::config::load_toml_file("auth.policy_file", path)?;
        Policy::new(file.grant)
            .and_then(|p| p.with_signers(file.signer))
            .map_err(|e| format!("auth.policy_file {}: {e}", path.display()))
    }

    /// This policy with `entries` as its signer list.
    pub fn with_signers(mut self, entries: Vec<SignerEntry>) -> Result<Policy, String> {
        self.signers = SignerList::new(entries)?;
        Ok(self)
    }

    /// Whether `principal` may append `events` as they are signed, under the
    /// signer list ([`SignerList::check`]); the message names the event.
    /// Whether each signature verifies is checked before this.
    pub fn check_signatures(
        &self,
        principal: &str,
        events: &[SubmittedEvent],
    ) -> Result<(), String> {
        for (i, submitted) in events.iter().enumerate() {
            self.signers
                .check(principal, submitted.signature.as_ref())
                .map_err(|e| {
                    let hint = if submitted.signature.is_none() {
                        "configure the service's signing key in the SDK"
                    } else {
                        "register its verifier key in the principal's [[signer]] table"
                    };
                    if events.len() == 1 {
                        format!("{e}; {hint}")
                    } else {
                        format!("event {i}: {e}; {hint}")
                    }
                })?;
        }
        Ok(())
    }

    pub fn new(grants: Vec<Grant>) -> Result<Policy, String> {
        for (i, grant) in grants.iter().enumerate() {
            if grant.principals.is_empty() || grant.principals.iter().any(String::is_empty) {
                return Err(format!("grant {}: principals must be non-empty", i + 1));
            }
            let patterns = grant.principals.iter().chain(&grant.append);
            if let Some(bad) = patterns
                .clone()
                .find(|p| p.trim_end_matches('*').contains('*'))
            {
                return Err(format!(
                    "grant {}: {bad:?}: `*` may only end a pattern",
                    i + 1
                ));
            }
            if grant.append.is_empty() && !grant.read && !grant.proofs && !grant.admin {
                return Err(format!("grant {}: grants nothing", i + 1));
            }
        }
        Ok(Policy {
            grants,
            signers: SignerList::default(),
        })
    }

    /// Whether any grant lets `principal` do `action`.
    pub fn allows(&self, principal: &str, action: Action<'_>) -> bool {
        self.grants.iter().any(|g| {
            g.principals
                .iter()
                .filter(|p| matches(p, principal))
                .any(|matched| match action {
                    Action::Append { source } => g.append.iter().any(|pattern| {
                        let name = principal_name(matched, principal);
                        matches(&pattern.replace("{name}", name), source)
                    }),
                    Action::Read => g.read,
                    Action::Proofs => g.proofs,
                    Action::Admin => g.admin,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    fn policy(toml: &str) -> Result<Policy, String> {
        let file: PolicyFile = Figment::from(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())?;
        Policy::new(file.grant)?.with_signers(file.signer)
    }

    /// The `[[signer]]` tables are the core's `SignerList` (its rules are
    /// tested there); the policy names the event and says what to do.
    #[test]
    fn signer_tables_name_the_event_and_the_remedy() {
        use veritrail_core::note::NoteSigner;
        use veritrail_core::{Event, SubmittedEvent};
        let billing = NoteSigner::from_seed("billing", &[1; 32]).expect("key");
        let other = NoteSigner::from_seed("other", &[2; 32]).expect("key");
        let p = policy(&format!(
            "[[grant]]\nprincipals = [\"svc/*\"]\nappend = [\"{{name}}\"]\n\
             [[signer]]\nprincipal = \"svc/billing\"\nkeys = [\"{}\"]\n",
            billing.public()
        ))
        .expect("policy");
        let event = Event {
            source: "billing".into(),
            event_id: "e".into(),
            actor: "a".into(),
            action: "x".into(),
            resource: "r".into(),
            outcome: "ok".into(),
            ..Event::default()
        };
        let signed = SubmittedEvent::signed(&billing, "o", event.clone());
        let unsigned = SubmittedEvent::unsigned(event.clone());
        p.check_signatures("svc/billing", std::slice::from_ref(&signed))
            .expect("its own key");
        let e = p
            .check_signatures("svc/billing", &[signed, unsigned])
            .expect_err("unsigned");
        assert!(
            e.starts_with("event 1: ") && e.contains("signing key in the SDK"),
            "{e}"
        );
        let e = p
            .check_signatures("svc/billing", &[SubmittedEvent::signed(&other, "o", event)])
            .expect_err("another key");
        assert!(
            !e.starts_with("event") && e.contains("[[signer]] table"),
            "{e}"
        );
        assert!(
            policy("[[grant]]\nprincipals = [\"a\"]\nread = true\n[[signer]]\nprincipal = \"a*\"\nkeys = [\"x\"]\n")
                .is_err()
        );
    }

    #[test]
    fn a_service_appends_only_to_its_own_source() {
        let p = policy(
            "[[grant]]\nprincipals = [\"spiffe://td/service/*\"]\nappend = [\"{name}\", \"shared.*\"]\n\
             [[grant]]\nprincipals = [\"spiffe://td/service/auditor\"]\nread = true\nproofs = true\n",
        )
        .expect("policy");
        let billing = "spiffe://td/service/billing";
        assert!(p.allows(billing, Action::Append { source: "billing" }));
        assert!(p.allows(billing, Action::Append { source: "shared.x" }));
        assert!(!p.allows(billing, Action::Append { source: "payroll" }));
        assert!(!p.allows(billing, Action::Append { source: "billing2" }));
        assert!(!p.allows(billing, Action::Read));
        assert!(!p.allows(billing, Action::Admin));
        let auditor = "spiffe://td/service/auditor";
        assert!(p.allows(auditor, Action::Read) && p.allows(auditor, Action::Proofs));
        assert!(!p.allows(
            "spiffe://other/service/billing",
            Action::Append { source: "billing" }
        ));
        assert!(!p.allows("anonymous", Action::Read));
    }

    #[test]
    fn rejects_policies_that_cannot_mean_what_they_say() {
        assert!(policy("[[grant]]\nprincipals = []\nread = true\n").is_err());
        assert!(policy("[[grant]]\nprincipals = [\"a*b\"]\nread = true\n").is_err());
        assert!(policy("[[grant]]\nprincipals = [\"a\"]\n").is_err());
        assert!(policy("[[grant]]\nprincipals = [\"a\"]\nwrite = true\n").is_err());
        assert_eq!(
            principal_name("spiffe://td/service/x", "spiffe://td/service/x"),
            "x"
        );
        assert_eq!(principal_name("cn-only", "cn-only"), "cn-only");
    }

    /// `{name}` is what the grant's `*` matched: a hierarchical SPIFFE ID does
    /// not borrow the source of the service its last segment names.
    #[test]
    fn a_hierarchical_principal_is_named_by_its_whole_path_under_the_pattern() {
        let p =
            policy("[[grant]]\nprincipals = [\"spiffe://td/service/*\"]\nappend = [\"{name}\"]\n")
                .expect("policy");
        let nested = "spiffe://td/service/team-x/billing";
        assert!(!p.allows(nested, Action::Append { source: "billing" }));
        assert!(p.allows(
            nested,
            Action::Append {
                source: "team-x/billing"
            }
        ));
        assert!(p.allows(
            "spiffe://td/service/billing",
            Action::Append { source: "billing" }
        ));
    }
}
