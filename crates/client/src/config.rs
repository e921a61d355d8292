//! How the SDK connects, waits and retries. Every limit names its unit.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Settings of a [`crate::Client`].
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more nodes (or `https://host:port` with TLS,
    /// `http://host:port` without). The SDK learns the leader from any of them.
    pub endpoints: Vec<String>,
    /// Longest wait for a TCP connection to a node.
    pub connect_timeout_ms: u64,
    /// Longest wait for one attempt's answer (for streams: for the stream to
    /// open). An append that times out may still commit; the retry is safe.
    pub request_timeout_ms: u64,
    /// Largest message the SDK accepts from a node.
    pub response_max_bytes: usize,
    /// Reads are linearizable unless this is set.
    pub local_reads: bool,
    pub retry: RetryPolicy,
    /// TLS to the nodes. Without it the SDK speaks plain HTTP/2, which only a
    /// development node (`tls.insecure_dev`) accepts.
    pub tls: Option<TlsSettings>,
    /// A bearer token sent with every call, for a client without a
    /// certificate (`veritraild token` makes one). Only sent over TLS.
    pub token: Option<String>,
    /// The service's event-signing key: every event appended through this
    /// client is signed with it (docs/SECURITY.md, "Client-signed events").
    pub signing: Option<EventSigning>,
}

/// A service's Ed25519 event-signing key and the log it signs for.
///
/// The key is a signer-key string (`PRIVATE+KEY+<name>+<id>+<base64>`, the
/// form `veritrail keygen` writes); its verifier key goes in the cluster
/// policy's `[[signer]]` table for the service's principal, and in the
/// auditors' signer list. Signatures name the log's origin, so an event
/// signed for one log is refused by another.
#[derive(Clone)]
pub struct EventSigning {
    signer: std::sync::Arc<veritrail_core::note::NoteSigner>,
    origin: String,
}

impl EventSigning {
    /// From a signer-key string, for the log named `origin`.
    pub fn new(signer_key: &str, origin: &str) -> crate::Result<Self> {
        let signer = veritrail_core::note::NoteSigner::parse(signer_key.trim_end())
            .map_err(|e| crate::Error::InvalidRequest(format!("signing key: {e}")))?;
        Ok(EventSigning {
            signer: std::sync::Arc::new(signer),
            origin: origin.to_owned(),
        })
    }

    /// From a file holding a signer-key string.
    pub fn from_file(path: &std::path::Path, origin: &str) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::Error::InvalidRequest(format!("signing key {}: {e}", path.display()))
        })?;
        Self::new(&text, origin)
    }

    /// The verifier key the policy and auditors register.
    pub fn verifier_key(&self) -> String {
        self.signer.public().to_string()
    }

    /// `event` signed for this log.
    pub fn sign(&self, event: veritrail_core::Event) -> veritrail_core::SubmittedEvent {
        veritrail_core::SubmittedEvent::signed(&self.signer, &self.origin, event)
    }
}

impl std::fmt::Debug for EventSigning {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSigning")
            .field("key", &self.verifier_key())
            .field("origin", &self.origin)
            .finish()
    }
}

impl std::fmt::Debug for ClientConfig {
    // Never print the bearer token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("response_max_bytes", &self.response_max_bytes)
            .field("local_reads", &self.local_reads)
            .field("retry", &self.retry)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("signing", &self.signing)
            .finish()
    }
}

/// The cluster's CA, and optionally this client's certificate, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_pem: Vec<u8>,
    /// Certificate and private key: the client's identity, whose SPIFFE ID (or
    /// common name) the cluster records as the principal of its appends.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to verify the nodes' certificates against, instead of the host
    /// of each endpoint.
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for TlsSettings {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("identity", &self.identity.is_some())
            .field("domain_name", &self.domain_name)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads the CA and, when both are given, the client's certificate and key.
    pub fn from_files(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> std::io::Result<TlsSettings> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(TlsSettings {
            ca_pem: read(ca)?,
            identity: match identity {
                Some((cert, key)) => Some((read(cert)?, read(key)?)),
                None => None,
            },
            domain_name: None,
        })
    }
}

impl ClientConfig {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 15_000,
            response_max_bytes: 64 << 20,
            local_reads: false,
            retry: RetryPolicy::default(),
            tls: None,
            token: None,
            signing: None,
        }
    }
}

/// Exponential backoff with full jitter between attempts, bounded both in
/// attempts and in total time. An answer naming the leader is followed at once,
/// without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one call (or of opening or resuming one stream), the
    /// first included. The producer, which sees many failures per election,
    /// is bounded by `deadline_ms` alone.
    pub call_max_attempts: u32,
    /// First backoff.
    pub backoff_initial_ms: u64,
    /// Longest backoff.
    pub backoff_max_ms: u64,
    /// No new attempt starts this long after the first one did.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Long enough to ride out a leader election (about a second with the
        // default election timeout) and a node restart, short enough that a dead
        // cluster is reported within half a minute.
        RetryPolicy {
            call_max_attempts: 30,
            backoff_initial_ms: 20,
            backoff_max_ms: 1_000,
            deadline_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure is returned at once.
    pub fn none() -> Self {
        RetryPolicy {
            call_max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delays between attempts, jittered.
    pub(crate) fn backoff(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.backoff_initial_ms.max(1)))
            .with_max_delay(Duration::from_millis(self.backoff_max_ms.max(1)))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}
