//! Channels to the nodes, the leader the SDK believes in, and the retry loop
//! every unary call and stream opening goes through.
//!
//! The SDK keeps one lazily connected channel per node and a preferred node: the
//! leader when it is known. A failure moves the preference: to the leader a node
//! named, or away from a node that cannot answer. How long to wait before the
//! next attempt, and when to stop, is the [`RetryState`]'s business.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::retry::{Next, Retry, RetryState, Verdict};

/// How long a call fails before the SDK logs, once, that it is retrying.
const RETRYING_SAID_AFTER: Duration = Duration::from_secs(2);

/// A channel to one node that sends the client's credentials with each call.
pub(crate) type Conn = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub(crate) struct Credentials {
    bearer: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, Status> {
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

#[derive(Debug, Clone)]
struct Node {
    addr: String,
    channel: Conn,
}

#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) config: ClientConfig,
    nodes: RwLock<Vec<Node>>,
    preferred: AtomicUsize,
}

impl Transport {
    pub(crate) fn new(config: ClientConfig) -> Result<Transport> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidRequest(
                "no endpoints: give at least one node address (host:port)".into(),
            ));
        }
        if config.token.is_some() && config.tls.is_none() {
            return Err(Error::InvalidRequest(
                "a bearer token is only sent over TLS: configure the cluster's CA too".into(),
            ));
        }
        let mut nodes = Vec::new();
        for addr in &config.endpoints {
            let addr = normalize(addr, config.tls.is_some())?;
            if nodes.iter().any(|n: &Node| n.addr == addr) {
                continue;
            }
            let channel = lazy_channel(&config, &addr)?;
            nodes.push(Node { addr, channel });
        }
        Ok(Transport {
            config,
            nodes: RwLock::new(nodes),
            preferred: AtomicUsize::new(0),
        })
    }

    /// The preferred node: its index and channel.
    pub(crate) fn pick(&self) -> (usize, Conn) {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let i = self.preferred.load(Ordering::Relaxed) % nodes.len();
        (i, nodes[i].channel.clone())
    }

    /// Every known node's address, in the order they were learnt.
    pub(crate) fn addrs(&self) -> Vec<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The channel to node `i`.
    pub(crate) fn channel(&self, i: usize) -> Option<Conn> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.get(i).map(|n| n.channel.clone())
    }

    /// The channel to `addr`, learning the node if it is new.
    pub(crate) fn channel_to(&self, addr: &str) -> Result<Conn> {
        let i = self.learn(addr)?;
        self.channel(i)
            .ok_or_else(|| Error::InvalidRequest(format!("unknown node {addr}")))
    }

    /// `addr` as this client names nodes (with its scheme).
    pub(crate) fn normalize(&self, addr: &str) -> Result<String> {
        normalize(addr, self.config.tls.is_some())
    }

    fn learn(&self, addr: &str) -> Result<usize> {
        let addr = self.normalize(addr)?;
        if let Some(i) = self.position(&addr) {
            return Ok(i);
        }
        let channel = lazy_channel(&self.config, &addr)?;
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = nodes.iter().position(|n| n.addr == addr) {
            return Ok(i);
        }
        nodes.push(Node { addr, channel });
        Ok(nodes.len() - 1)
    }

    fn position(&self, addr: &str) -> Option<usize> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.iter().position(|n| n.addr == addr)
    }

    /// Asks the preferred node who leads and prefers the leader. A follower
    /// would forward every append (one more hop, and one more place to queue);
    /// streams, which carry most of the traffic, go to the leader directly.
    /// Best effort: on any failure the preference stays as it was.
    pub(crate) async fn prefer_leader(&self) {
        let (_, channel) = self.pick();
        let mut admin = veritrail_proto::v1::admin_client::AdminClient::new(channel);
        if let Ok(status) = self
            .bounded(admin.status(veritrail_proto::v1::StatusRequest {}))
            .await
            && !status.get_ref().leader_addr.is_empty()
            && let Ok(i) = self.learn(&status.get_ref().leader_addr)
        {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Learns from a failed attempt at node `used`: follows a leader hint, or
    /// moves away from a node that cannot answer. Only the first of several
    /// concurrent failures at one node moves the preference.
    pub(crate) fn on_failure(&self, used: usize, status: &Status) -> Retry {
        match Verdict::of(status) {
            Verdict::Final => Retry::No,
            Verdict::Later => Retry::Backoff,
            Verdict::Elsewhere { leader } => {
                if let Some(hint) = leader
                    && let Ok(i) = self.learn(&hint)
                    && i != used
                {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Retry::Redirected;
                }
                self.rotate_from(used);
                Retry::Backoff
            }
        }
    }

    fn rotate_from(&self, used: usize) {
        let n = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            .max(1);
        let _ = self.preferred.compare_exchange(
            used,
            (used + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Runs one attempt at one node, for at most the connect and request
    /// timeouts together. A node that accepts the TCP connection and then
    /// says nothing (a frozen process: the kernel still accepts) would
    /// otherwise hold the call in its TLS handshake, which no other timeout
    /// covers.
    pub(crate) async fn bounded<T>(
        &self,
        attempt: impl Future<Output = std::result::Result<T, Status>>,
    ) -> std::result::Result<T, Status> {
        let limit = Duration::from_millis(
            self.config
                .connect_timeout_ms
                .saturating_add(self.config.request_timeout_ms),
        );
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "the node did not answer within {} ms",
                    limit.as_millis()
                )))
            })
    }

    /// Runs `attempt` against the preferred node until it succeeds, fails for
    /// good, or the retry policy runs out. Returns the value and the node that
    /// gave it.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<(T, usize)>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let mut state = RetryState::new(self.config.retry).starting_now();
        // What each node said last, for the error when every attempt failed.
        let mut tried: BTreeMap<usize, (String, bool)> = BTreeMap::new();
        let mut said_retrying = false;
        loop {
            let (i, channel) = self.pick();
            let status = match self.bounded(attempt(channel)).await {
                Ok(value) => return Ok((value, i)),
                Err(status) => status,
            };
            tried.insert(i, (describe(&status), is_unresolvable(&status)));
            // A name that does not resolve will not resolve on the next
            // attempt either: once no known node's name does, stop.
            let nodes = self.addrs();
            if tried.len() == nodes.len() && tried.values().all(|(_, unresolvable)| *unresolvable) {
                return Err(Error::Unresolvable {
                    tried: named(&nodes, &tried),
                });
            }
            let retry = self.on_failure(i, &status);
            tracing::debug!(what, attempt = state.failures() + 1, code = ?status.code(), message = status.message(), ?retry, "attempt failed");
            match state.after_failure(retry, &status) {
                Next::Now => {}
                Next::After(delay) => {
                    // An election passes within a second or two, quietly. A
                    // call still failing after that says so, once, so that a
                    // person watching a tool knows it is retrying, and why.
                    if !said_retrying && state.elapsed() >= RETRYING_SAID_AFTER {
                        said_retrying = true;
                        tracing::warn!(
                            "{what}: no node has answered for {} ms ({}); retrying for up to {} ms in all",
                            state.elapsed().as_millis(),
                            named(&self.addrs(), &tried).join("; "),
                            self.config.retry.deadline_ms
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
                Next::Final(error) => return Err(error),
                Next::Exhausted(mut error) => {
                    if let Error::RetriesExhausted {
                        tried: named_tried, ..
                    } = &mut error
                    {
                        *named_tried = named(&self.addrs(), &tried);
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// A failure in words, with the causes tonic keeps beneath its status: "tcp
/// connect error" alone does not say that the connection was refused.
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Whether the attempt failed because the node's name did not resolve. hyper
/// reports it as a connect error whose text says so; its type is private.
fn is_unresolvable(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && describe(status).contains("dns error")
}

/// `addr: reason` for each node tried, in the order the nodes were learnt.
fn named(addrs: &[String], tried: &BTreeMap<usize, (String, bool)>) -> Vec<String> {
    tried
        .iter()
        .map(|(i, (reason, _))| {
            let addr = addrs.get(*i).map_or("?", String::as_str);
            format!("{addr}: {reason}")
        })
        .collect()
}

/// `host:port` and `http://host:port` (`https://` with TLS) name the same node.
/// With TLS every address must be `https`: a plaintext endpoint, or a leader
/// hint naming one, would carry the bearer token in the clear.
fn normalize(addr: &str, tls: bool) -> Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    let scheme = if tls { "https" } else { "http" };
    match addr.split_once("://") {
        None => Ok(format!("{scheme}://{addr}")),
        Some((given, _)) if given.eq_ignore_ascii_case(scheme) => Ok(addr.to_owned()),
        Some((given, _)) => Err(Error::InvalidRequest(format!(
            "endpoint {addr:?} is {given}, but this client {}",
            if tls {
                "uses TLS: give host:port or https://host:port"
            } else {
                "has no TLS settings: give the cluster's CA to talk to https endpoints"
            }
        ))),
    }
}

fn lazy_channel(config: &ClientConfig, addr: &str) -> Result<Conn> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| Error::InvalidRequest(format!("endpoint {addr:?} is not an address: {e}")))?;
    if let Some(tls) = &config.tls {
        let mut settings =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            settings = settings.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &tls.domain_name {
            settings = settings.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(settings)
            .map_err(|e| Error::InvalidRequest(format!("TLS settings for {addr}: {e}")))?;
    }
    // The token only ever rides on TLS (normalize refuses other schemes when
    // TLS is configured, and a token without TLS is refused in `new`).
    let bearer = match &config.token {
        Some(token) if addr.starts_with("https://") => {
            Some(format!("Bearer {token}").parse().map_err(|_| {
                Error::InvalidRequest("the bearer token must be printable ASCII".into())
            })?)
        }
        _ => None,
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        Credentials { bearer },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::LEADER_ADDR_METADATA;
    use tonic::Code;
    use tonic::metadata::MetadataValue;

    fn transport() -> Transport {
        Transport::new(ClientConfig::new(["127.0.0.1:1", "http://127.0.0.1:2/"])).expect("t")
    }

    #[tokio::test]
    async fn follows_leader_hints_and_learns_new_nodes() {
        let t = transport();
        assert_eq!(t.addrs(), ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        let mut status = Status::unavailable("not the leader");
        status.metadata_mut().insert(
            LEADER_ADDR_METADATA,
            MetadataValue::from_static("127.0.0.1:3"),
        );
        assert_eq!(t.on_failure(0, &status), Retry::Redirected);
        assert_eq!(t.pick().0, 2);
        assert_eq!(t.addrs().len(), 3);
        // A hint naming the node that answered is no news.
        assert_eq!(t.on_failure(2, &status), Retry::Backoff);
    }

    #[tokio::test]
    async fn with_tls_no_address_or_leader_hint_may_be_plaintext() {
        let mut config = ClientConfig::new(["127.0.0.1:1"]);
        config.tls = Some(crate::TlsSettings {
            ca_pem: Vec::new(),
            identity: None,
            domain_name: None,
        });
        config.token = Some("s3cret".into());
        let t = Transport::new(config.clone()).expect("transport");
        assert_eq!(t.addrs(), ["https://127.0.0.1:1"]);
        let mut status = Status::unavailable("not the leader");
        status.metadata_mut().insert(
            LEADER_ADDR_METADATA,
            MetadataValue::from_static("http://attacker.example:80"),
        );
        // The hint is not followed: the token never goes to a plaintext address.
        t.on_failure(0, &status);
        assert_eq!(t.addrs(), ["https://127.0.0.1:1"]);
        config.endpoints = vec!["http://127.0.0.1:2".into()];
        assert!(Transport::new(config).is_err());
    }

    #[tokio::test]
    async fn rotates_away_from_failing_nodes_once_per_failure() {
        let t = transport();
        assert_eq!(
            t.on_failure(0, &Status::unavailable("down")),
            Retry::Backoff
        );
        assert_eq!(t.pick().0, 1);
        // A late failure from node 0 must not move the preference off node 1.
        assert_eq!(
            t.on_failure(0, &Status::unavailable("down")),
            Retry::Backoff
        );
        assert_eq!(t.pick().0, 1);
        assert_eq!(t.on_failure(1, &Status::invalid_argument("bad")), Retry::No);
        assert_eq!(
            t.on_failure(1, &Status::resource_exhausted("busy")),
            Retry::Backoff
        );
        assert_eq!(t.pick().0, 1);
    }

    #[tokio::test]
    async fn gives_up_within_the_policy() {
        let mut config = ClientConfig::new(["127.0.0.1:1"]);
        config.retry.call_max_attempts = 4;
        config.retry.backoff_initial_ms = 1;
        config.retry.backoff_max_ms = 2;
        let t = Transport::new(config).expect("t");
        let mut calls = 0;
        let result: Result<((), usize)> = t
            .call("test", |_| {
                calls += 1;
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(calls, 4);
        match result {
            Err(Error::RetriesExhausted {
                attempts: 4, last, ..
            }) => {
                assert_eq!(last.code(), Some(Code::Unavailable))
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut calls = 0;
        let result: Result<((), usize)> = t
            .call("test", |_| {
                calls += 1;
                async { Err(Status::already_exists("dup")) }
            })
            .await;
        assert_eq!(calls, 1);
        assert_eq!(
            result.err().and_then(|e| e.code()),
            Some(Code::AlreadyExists)
        );
    }

    #[tokio::test]
    async fn rejects_empty_and_malformed_endpoints() {
        assert!(Transport::new(ClientConfig::new(Vec::<String>::new())).is_err());
        assert!(Transport::new(ClientConfig::new(["not a uri"])).is_err());
    }
}
