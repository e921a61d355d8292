//! Connections to other nodes: one lazily connected gRPC channel per address,
//! shared by Raft replication, append forwarding and checkpoint signing; and
//! the version of the formats peers exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Uri};
use veritrail_proto::raft::raft_peer_client::RaftPeerClient;

use crate::tls::PeerConnector;

/// A pool of peer channels. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    message_max_bytes: usize,
    /// Verifies peers and presents this node's certificate; `None` on a
    /// development node.
    tls: Arc<RwLock<Option<PeerConnector>>>,
}

impl Peers {
    pub fn new(message_max_bytes: usize, tls: Option<PeerConnector>) -> Self {
        Peers {
            channels: Arc::default(),
            message_max_bytes,
            tls: Arc::new(RwLock::new(tls)),
        }
    }

    /// Calls peers with `tls` from now on: channels are made anew on their
    /// next use (calls under way on the old ones finish on them).
    pub fn replace_tls(&self, tls: PeerConnector) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(tls);
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A client for the node at `addr`. Connecting happens on first use, so this
    /// never blocks; a peer that is down shows up as `UNAVAILABLE` on the call.
    pub fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(addr) {
                Some(channel) => channel.clone(),
                None => {
                    let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
                    // With TLS the connector below does the handshake, so
                    // tonic sees a plain `http` URI.
                    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                        .map_err(|e| format!("peer address {addr:?}: {e}"))?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .keep_alive_timeout(Duration::from_secs(5));
                    let channel = match tls {
                        None => endpoint.connect_lazy(),
                        Some(tls) => endpoint.connect_with_connector_lazy(tower::service_fn(
                            move |uri: Uri| {
                                let tls = tls.clone();
                                async move {
                                    let host = uri.host().unwrap_or_default();
                                    // `[::1]` in a URI is `::1` to a resolver.
                                    let host = host.trim_start_matches('[').trim_end_matches(']');
                                    let port = uri.port_u16().unwrap_or(443);
                                    let stream = tokio::time::timeout(
                                        Duration::from_secs(2),
                                        tls.connect(host, port),
                                    )
                                    .await
                                    .map_err(|_| {
                                        std::io::Error::new(
                                            std::io::ErrorKind::TimedOut,
                                            "connecting to the peer took over 2 s",
                                        )
                                    })??;
                                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                                }
                            },
                        )),
                    };
                    channels.insert(addr.to_owned(), channel.clone());
                    channel
                }
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(self.message_max_bytes)
            .max_encoding_message_size(self.message_max_bytes))
    }
}

/// A request with a deadline, which tonic sends as `grpc-timeout` too.
pub fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// The version of the postcard formats in `RaftPayload` and `ForwardAppend`
/// messages: openraft's requests and answers, the Raft entries inside them,
/// forwarded events and their outcome. Their bytes are pinned by golden
/// fixtures (`crates/store/testdata/formats`); a change to them gets a new
/// version here, and decoding of every earlier one is kept.
///
/// During a rolling upgrade a node must still send what its peers read: a new
/// version is sent only once every member reads it (docs/OPERATIONS.md, "What
/// an upgrade may rely on").
///
/// Format 2 adds signed events (`Command::AppendSigned` and forwarded
/// `SubmittedEvent`s); everything else is as in format 1. A node tags a
/// message 2 only when it carries one of them, so a cluster whose services do
/// not sign talks format 1, which every earlier release reads.
pub const PEER_FORMAT: u32 = 2;

/// The format of a message that carries no signed event.
pub const PEER_FORMAT_UNSIGNED: u32 = 1;

/// The format a peer message names, refused when this node cannot read it.
/// `0` is version 1: version 0.1.0 did not tag its messages.
pub fn peer_format(format: u32) -> Result<u32, String> {
    match format {
        0 | 1 => Ok(1),
        2 => Ok(2),
        newer => Err(format!(
            "the peer sent format {newer}, and this node reads formats up to {PEER_FORMAT}: \
             it runs an older version than the peer; upgrade it (docs/OPERATIONS.md, rolling upgrade)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_current_formats_are_read_and_newer_ones_refused_by_name() {
        assert_eq!(peer_format(0), Ok(1));
        assert_eq!(peer_format(PEER_FORMAT_UNSIGNED), Ok(1));
        assert_eq!(peer_format(PEER_FORMAT), Ok(PEER_FORMAT));
        let refused = peer_format(PEER_FORMAT + 1).expect_err("newer");
        assert!(refused.contains("format 3"), "{refused}");
        assert!(refused.contains("up to 2"), "{refused}");
    }
}
