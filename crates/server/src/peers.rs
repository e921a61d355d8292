//! Connections to other nodes: one lazily connected gRPC channel per address,
//! shared by Raft replication, append forwarding and checkpoint signing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use veritrail_proto::raft::raft_peer_client::RaftPeerClient;

/// A pool of peer channels. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    max_message_bytes: usize,
    /// This node's CA and certificate; `None` on a development node.
    tls: Option<ClientTlsConfig>,
}

impl Peers {
    pub fn new(max_message_bytes: usize, tls: Option<ClientTlsConfig>) -> Self {
        Peers {
            channels: Arc::default(),
            max_message_bytes,
            tls,
        }
    }

    /// A client for the node at `addr`. Connecting happens on first use, so this
    /// never blocks; a peer that is down shows up as `UNAVAILABLE` on the call.
    pub fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(addr) {
                Some(channel) => channel.clone(),
                None => {
                    let scheme = if self.tls.is_some() { "https" } else { "http" };
                    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
                        .map_err(|e| format!("peer address {addr:?}: {e}"))?;
                    if let Some(tls) = &self.tls {
                        endpoint = endpoint
                            .tls_config(tls.clone())
                            .map_err(|e| format!("peer {addr}: TLS: {e}"))?;
                    }
                    let endpoint = endpoint
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .keep_alive_timeout(Duration::from_secs(5));
                    let channel = endpoint.connect_lazy();
                    channels.insert(addr.to_owned(), channel.clone());
                    channel
                }
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
    }
}

/// A request with a deadline, which tonic sends as `grpc-timeout` too.
pub fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}
