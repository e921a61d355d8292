//! [`Client`]: the hub every call of the `AuditLog` and `Admin` services goes
//! through. It holds the retrying transport and the settings; the calls live
//! by service, each in its own file: appends (`append.rs`), entries and read
//! streams (`read.rs`, `read_stream.rs`), checkpoints and proofs (`proofs.rs`),
//! and cluster administration (`admin.rs`).

use std::sync::Arc;

use veritrail_proto::v1::ReadConsistency;
use veritrail_proto::v1::admin_client::AdminClient;
use veritrail_proto::v1::audit_log_client::AuditLogClient;

use crate::config::ClientConfig;
use crate::error::Result;
use crate::transport::{Conn, Transport};

/// A connection to a Veritrail cluster. Cheap to clone; clones share channels
/// and what they learnt about the leader.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) transport: Arc<Transport>,
}

impl Client {
    /// A client of the cluster reachable at `endpoints`, with default settings.
    /// Connects lazily: this fails only on malformed addresses. Must be called
    /// inside a tokio runtime.
    pub fn connect(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Result<Client> {
        Client::with_config(ClientConfig::new(endpoints))
    }

    pub fn with_config(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            transport: Arc::new(Transport::new(config)?),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    /// Every node address the client knows: the configured ones and leaders it
    /// was pointed to.
    pub fn endpoints(&self) -> Vec<String> {
        self.transport.addrs()
    }

    pub(crate) fn consistency(&self) -> ReadConsistency {
        if self.transport.config.local_reads {
            ReadConsistency::Local
        } else {
            ReadConsistency::Linearizable
        }
    }

    pub(crate) fn audit(&self, channel: Conn) -> AuditLogClient<Conn> {
        AuditLogClient::new(channel)
            .max_decoding_message_size(self.transport.config.response_max_bytes)
    }

    pub(crate) fn admin_client(channel: Conn) -> AdminClient<Conn> {
        AdminClient::new(channel)
    }
}
