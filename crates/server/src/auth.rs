//! Who is calling, and whether they may.
//!
//! **The principal comes from the connection, never from the request.** With
//! TLS it is the identity in the client certificate rustls verified against the
//! cluster's CA (the SPIFFE ID, or the common name), or, for a client without a
//! certificate, the principal its bearer token is registered to. Without either
//! the call is refused (`UNAUTHENTICATED`). A development node without TLS
//! records everyone as `anonymous`.
//!
//! Nodes are callers whose certificate carries a node SPIFFE ID of this
//! cluster's trust domain; only they may use the `RaftPeer` service, and a
//! Raft message must name the node its certificate names.
//!
//! Authorization asks the policy (`policy.rs`) when one is configured, and
//! allows every authenticated principal everything otherwise. Rate limits are
//! per principal (GCRA, governor).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, RwLock};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::config::{Config, load_toml_file};
use crate::error::{NodeError, NodeResult};
use crate::policy::{Action, Policy};
use crate::tls::{CertIdentity, ClusterName};

/// The principal of every call to a development node without TLS.
pub const ANONYMOUS: &str = "anonymous";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What entries it appends are stamped with.
    pub principal: String,
    /// Set when the caller presented a node certificate of this cluster.
    pub node_id: Option<u64>,
}

type Limiter = DefaultKeyedRateLimiter<String>;

/// SHA-256 of each bearer token, and the principal it stands for.
type Tokens = HashMap<[u8; 32], String>;

/// The files `auth.tokens_file` and `auth.policy_file` hold, replaced
/// together when they are reloaded (`reload.rs`).
#[derive(Debug)]
pub struct Grants {
    tokens: Tokens,
    policy: Option<Policy>,
}

impl Grants {
    /// Reads and checks both files; nothing is put in force yet.
    pub fn load(config: &Config) -> Result<Grants, String> {
        let tokens = match &config.auth.tokens_file {
            Some(path) => load_tokens(path)?,
            None => HashMap::new(),
        };
        let policy = match &config.auth.policy_file {
            Some(path) => Some(Policy::load(path)?),
            None => None,
        };
        Ok(Grants { tokens, policy })
    }
}

/// Authentication, authorization and per-principal limits of one node.
#[derive(Debug)]
pub struct Auth {
    /// The trust domain and origin node certificates must name; `None` on a
    /// development node without TLS.
    cluster: Option<ClusterName>,
    /// Swapped whole on reload; a call reads one version of both.
    grants: RwLock<Arc<Grants>>,
    requests: Option<Limiter>,
    events: Option<Limiter>,
    denials: Option<Limiter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    /// Hex SHA-256 of the token: the file holds no secret.
    sha256: String,
}

fn limiter(per_s: u32, burst: u32) -> Option<Limiter> {
    let per_s = NonZeroU32::new(per_s)?;
    let burst = NonZeroU32::new(burst).unwrap_or(per_s);
    Some(RateLimiter::keyed(
        Quota::per_second(per_s).allow_burst(burst),
    ))
}

fn load_tokens(path: &Path) -> Result<HashMap<[u8; 32], String>, String> {
    let file: TokensFile = load_toml_file("auth.tokens_file", path)?;
    let mut tokens = HashMap::new();
    for (i, entry) in file.token.into_iter().enumerate() {
        let digest: [u8; 32] = hex::decode(entry.sha256.trim())
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "auth.tokens_file {}: token {}: sha256 is not 64 hex digits",
                    path.display(),
                    i + 1
                )
            })?;
        if entry.principal.is_empty()
            || entry.principal.chars().any(char::is_control)
            || entry.principal.contains("://")
            || entry.principal.contains('*')
        {
            return Err(format!(
                "auth.tokens_file {}: token {}: the principal must be non-empty text without `*` or `://` (a token cannot pass for a certificate's SPIFFE ID)",
                path.display(),
                i + 1
            ));
        }
        if tokens.insert(digest, entry.principal).is_some() {
            return Err(format!(
                "auth.tokens_file {}: token {} is listed twice",
                path.display(),
                i + 1
            ));
        }
    }
    Ok(tokens)
}

/// The token of an `authorization: Bearer <token>` header, if any.
fn bearer<T>(request: &Request<T>) -> Result<Option<&str>, NodeError> {
    let Some(value) = request.metadata().get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| NodeError::Unauthenticated("the authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(NodeError::Unauthenticated(
            "the authorization header must be `Bearer <token>`".into(),
        )),
    }
}

impl Auth {
    /// `cluster` is the node's own (from its certificate), `None` without TLS.
    pub fn new(config: &Config, cluster: Option<ClusterName>) -> Result<Auth, String> {
        let grants = Grants::load(config)?;
        let r = &config.rate_limit;
        Ok(Auth {
            cluster,
            grants: RwLock::new(Arc::new(grants)),
            requests: limiter(r.requests_per_s, r.requests_burst),
            events: limiter(r.events_per_s, r.events_burst),
            denials: limiter(config.auth.denial_records_per_s, 0),
        })
    }

    /// Puts tokens and policy read by [`Grants::load`] in force, both at
    /// once: a call sees the old pair or the new one.
    pub fn replace_grants(&self, grants: Grants) {
        *self.grants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(grants);
    }

    /// The cluster this node's certificate names (`None` without TLS).
    pub fn cluster(&self) -> Option<&ClusterName> {
        self.cluster.as_ref()
    }

    fn grants(&self) -> Arc<Grants> {
        Arc::clone(&self.grants.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn tls(&self) -> bool {
        self.cluster.is_some()
    }

    /// Who made `request`, charged one request against its rate limit.
    pub fn authenticate<T>(&self, request: &Request<T>) -> NodeResult<Caller> {
        let caller = self.identify(request)?;
        self.charge_request(&caller)?;
        Ok(caller)
    }

    /// Charges one request against the caller's request rate: each call, and
    /// each request on an `AppendStream`.
    pub fn charge_request(&self, caller: &Caller) -> NodeResult<()> {
        match &self.requests {
            Some(limiter) if limiter.check_key(&caller.principal).is_err() => {
                Err(NodeError::ResourceExhausted(format!(
                    "{} is over its request rate limit; retry in a moment",
                    caller.principal
                )))
            }
            _ => Ok(()),
        }
    }

    fn identify<T>(&self, request: &Request<T>) -> NodeResult<Caller> {
        let Some(cluster) = &self.cluster else {
            // A development node: tokens still name their holder.
            return Ok(
                match bearer(request)?.and_then(|t| self.token_principal(t)) {
                    Some(principal) => Caller {
                        principal,
                        node_id: None,
                    },
                    None => Caller {
                        principal: ANONYMOUS.into(),
                        node_id: None,
                    },
                },
            );
        };
        let certs = request
            .extensions()
            .get::<crate::listener::ConnInfo>()
            .and_then(|info| info.peer_certs.clone());
        if let Some(certs) = certs
            && let Some(leaf) = certs.first()
        {
            // rustls has verified the chain to our CA during the handshake.
            let identity = CertIdentity::from_der(leaf).map_err(NodeError::Unauthenticated)?;
            let principal = identity.principal().ok_or_else(|| {
                NodeError::Unauthenticated(
                    "the client certificate has neither a SPIFFE ID nor a common name".into(),
                )
            })?;
            // A common name that reads like a SPIFFE ID would pass for one, and
            // `*` would turn a policy's `{name}` into a wildcard.
            let lookalike = identity.spiffe_id.is_none() && principal.contains("://");
            if lookalike || principal.contains('*') {
                return Err(NodeError::Unauthenticated(format!(
                    "the client certificate's identity {principal:?} cannot be a principal: no `*`, and a URI only as a SPIFFE ID SAN"
                )));
            }
            let node_id = cluster.node_id(&identity);
            // A node certificate of another cluster of this CA, or one issued
            // before node identities named the origin, is nobody here: not a
            // member, and not a client either (`/veritrail/` is reserved).
            if node_id.is_none() && identity.claims_a_node() {
                return Err(NodeError::Unauthenticated(format!(
                    "{principal} is not a node of this cluster: its nodes are {}",
                    cluster.node_spiffe_id_pattern()
                )));
            }
            return Ok(Caller {
                principal: principal.to_owned(),
                node_id,
            });
        }
        match bearer(request)? {
            Some(token) => self
                .token_principal(token)
                .map(|principal| Caller {
                    principal,
                    node_id: None,
                })
                .ok_or_else(|| NodeError::Unauthenticated("unknown bearer token".into())),
            None => Err(NodeError::Unauthenticated(
                "authenticate with a client certificate of this cluster's CA or a bearer token"
                    .into(),
            )),
        }
    }

    fn token_principal(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.grants().tokens.get(&digest).cloned()
    }

    /// Whether `caller` may do `action`: `PERMISSION_DENIED` otherwise.
    pub fn authorize(&self, caller: &Caller, action: Action<'_>) -> NodeResult<()> {
        match &self.grants().policy {
            Some(policy) if !policy.allows(&caller.principal, action) => Err(
                NodeError::PermissionDenied(format!("{} may not {action}", caller.principal)),
            ),
            _ => Ok(()),
        }
    }

    /// Whether `principal` may append `events` as they are signed, under the
    /// policy's signer list (`PERMISSION_DENIED` otherwise). Without a policy
    /// every principal may sign or not.
    pub fn check_signatures(
        &self,
        principal: &str,
        events: &[veritrail_core::SubmittedEvent],
    ) -> NodeResult<()> {
        match &self.grants().policy {
            Some(policy) => policy
                .check_signatures(principal, events)
                .map_err(NodeError::PermissionDenied),
            None => Ok(()),
        }
    }

    /// Charges `events` appended events against the caller's rate limit.
    pub fn charge_events(&self, caller: &Caller, events: usize) -> NodeResult<()> {
        let (Some(limiter), Some(n)) = (&self.events, NonZeroU32::new(events as u32)) else {
            return Ok(());
        };
        match limiter.check_key_n(&caller.principal, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NodeError::ResourceExhausted(format!(
                "{} is over its append rate limit; retry in a moment",
                caller.principal
            ))),
            Err(_) => Err(NodeError::ResourceExhausted(format!(
                "{events} events in one request exceed the burst of the append rate limit"
            ))),
        }
    }

    /// Whether a denial of `principal` may be recorded in the log now.
    pub fn may_record_denial(&self, principal: &str) -> bool {
        self.denials
            .as_ref()
            .is_some_and(|l| l.check_key(&principal.to_owned()).is_ok())
    }

    /// The caller's node id when it presented a node certificate of this
    /// cluster's trust domain. Without TLS (a development node) any caller is
    /// let through.
    pub fn member<T>(&self, request: &Request<T>) -> NodeResult<Option<u64>> {
        if self.cluster.is_none() {
            return Ok(None);
        }
        let caller = self.identify(request)?;
        match caller.node_id {
            Some(id) => Ok(Some(id)),
            None => Err(NodeError::PermissionDenied(format!(
                "{} is not a node of this cluster: Raft and peer calls need a node certificate",
                caller.principal
            ))),
        }
    }

    /// Forgets limiter state of principals not seen lately (bounded memory).
    pub fn housekeeping(&self) {
        for limiter in [&self.requests, &self.events, &self.denials]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        let mut request = Request::new(());
        assert_eq!(bearer(&request).expect("none"), None);
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().expect("value"));
        assert_eq!(bearer(&request).expect("token"), Some("s3cret"));
        request
            .metadata_mut()
            .insert("authorization", "Basic abc".parse().expect("value"));
        assert!(bearer(&request).is_err());
    }

    #[test]
    fn tokens_map_to_principals_and_limits_apply_per_principal() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("tokens.toml");
        let digest = hex::encode(Sha256::digest(b"s3cret"));
        std::fs::write(
            &path,
            format!("[[token]]\nprincipal = \"batch-job\"\nsha256 = \"{digest}\"\n"),
        )
        .expect("write");
        let mut config = Config::default();
        config.auth.tokens_file = Some(path.clone());
        config.rate_limit.events_per_s = 10;
        config.rate_limit.events_burst = 20;
        let cluster = ClusterName {
            trust_domain: "td".into(),
            origin: "td/log".into(),
        };
        let auth = Auth::new(&config, Some(cluster)).expect("auth");
        let mut request = Request::new(());
        let refused = auth.authenticate(&request).expect_err("nothing presented");
        assert!(matches!(refused, NodeError::Unauthenticated(_)));
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().expect("value"));
        let caller = auth.authenticate(&request).expect("token");
        assert_eq!(
            (caller.principal.as_str(), caller.node_id),
            ("batch-job", None)
        );
        assert!(auth.member(&request).is_err());
        auth.charge_events(&caller, 20).expect("the burst");
        assert!(auth.charge_events(&caller, 1).is_err());
        let other = Caller {
            principal: "other".into(),
            node_id: None,
        };
        auth.charge_events(&other, 1)
            .expect("another principal's budget");
        assert!(auth.charge_events(&other, 21).is_err());
        request
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().expect("value"));
        assert!(auth.authenticate(&request).is_err());
        std::fs::write(&path, "[[token]]\nprincipal = \"x\"\nsha256 = \"zz\"\n").expect("write");
        assert!(Auth::new(&config, None).is_err());
    }
}
