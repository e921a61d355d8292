//! Who is calling: every request is authenticated from its headers and TLS
//! session before its body is read, and the identity travels with it.

use std::sync::Arc;

use veritrail_core::validate_principal;

use crate::auth::Caller;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::policy::Action;

/// The node id a [`Gate`] found in a peer's certificate (`None` on a
/// development node).
#[derive(Debug, Clone, Copy)]
pub struct PeerNode(pub Option<u64>);

/// Authenticates every call from its headers and TLS session, before tonic
/// reads and decodes its body: a caller without credentials cannot make the
/// node buffer a message of `grpc.message_max_bytes`. The identity travels to
/// the service method in the request's extensions.
#[derive(Debug, Clone)]
pub struct Gate {
    node: Arc<Node>,
    /// Peers (`RaftPeer`) must present a node certificate; clients any
    /// credential.
    peers: bool,
}

impl Gate {
    pub fn clients(node: Arc<Node>) -> Gate {
        Gate { node, peers: false }
    }

    pub fn peers(node: Arc<Node>) -> Gate {
        Gate { node, peers: true }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if self.peers {
            let id = self
                .node
                .auth
                .member(&request)
                .inspect_err(|e| self.node.count(e))?;
            request.extensions_mut().insert(PeerNode(id));
        } else {
            let caller = self.node.authenticate(&request)?;
            request.extensions_mut().insert(caller);
        }
        Ok(request)
    }
}

impl Node {
    /// Who made `request` (`UNAUTHENTICATED` when nobody we know): inside a
    /// service method, the caller the [`Gate`] authenticated before the
    /// request's body was read.
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> NodeResult<Caller> {
        match request.extensions().get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => self.authenticate(request),
        }
    }

    /// The one place a caller's identity is checked, the principal included:
    /// what comes after trusts a [`Caller`].
    fn authenticate<T>(&self, request: &tonic::Request<T>) -> NodeResult<Caller> {
        let caller = self
            .auth
            .authenticate(request)
            .inspect_err(|e| self.count(e))?;
        // An identity that cannot be recorded is refused at the door, not at
        // every append.
        validate_principal(&caller.principal, &self.limits).map_err(|e| {
            self.metrics.unauthenticated.inc();
            NodeError::Unauthenticated(format!("the caller's identity cannot be a principal: {e}"))
        })?;
        Ok(caller)
    }

    /// The caller of `request`, once it is known to be allowed `action`.
    pub fn require<T>(
        &self,
        request: &tonic::Request<T>,
        action: Action<'_>,
    ) -> NodeResult<Caller> {
        let caller = self.caller(request)?;
        self.authorize(&caller, action)?;
        Ok(caller)
    }

    /// Whether `caller` may do `action` (`PERMISSION_DENIED` otherwise).
    pub fn authorize(&self, caller: &Caller, action: Action<'_>) -> NodeResult<()> {
        self.auth
            .authorize(caller, action)
            .inspect_err(|e| self.count(e))
    }

    /// The node that made `request`, by its certificate: Raft and peer calls
    /// come from nodes of this cluster's trust domain only
    /// (`PERMISSION_DENIED` otherwise). `None` on a development node.
    pub fn member<T>(&self, request: &tonic::Request<T>) -> NodeResult<Option<u64>> {
        match request.extensions().get::<PeerNode>() {
            Some(PeerNode(id)) => Ok(*id),
            None => self.auth.member(request).inspect_err(|e| self.count(e)),
        }
    }

    /// Holds one of `caller`'s streams until the guard is dropped (`quota`).
    pub fn hold_stream(&self, caller: &Caller) -> NodeResult<crate::quota::Held> {
        self.quotas
            .streams
            .take(&caller.principal)
            .inspect_err(|e| self.count(e))
    }

    /// Holds one of `caller`'s reads until the guard is dropped (`quota`).
    pub fn hold_read(&self, caller: &Caller) -> NodeResult<crate::quota::Held> {
        self.quotas
            .reads
            .take(&caller.principal)
            .inspect_err(|e| self.count(e))
    }
}
