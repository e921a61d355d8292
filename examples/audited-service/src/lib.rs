//! An invoicing service that audits at the domain level with the Veritrail SDK.
//!
//! Two ways to audit, both shown here:
//!
//! - [`AuditLayer`], a tower layer: every request the service answers becomes an
//!   audit event naming the caller, the method and route, the resource and the
//!   outcome. It works for any tower service over HTTP, axum routers and tonic
//!   servers alike.
//! - An explicit record inside a business operation ([`refund`]): the event
//!   says what happened in the domain's words (`invoice.refund`, the amount),
//!   its event id is the operation's own idempotency key, and the operation
//!   does not report success until the audit record is committed.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use veritrail_client::{Event, Producer};

/// The header an authenticating proxy sets to the caller's identity. A real
/// service takes it from its own authentication (a verified token or client
/// certificate), never from what the caller claims.
pub const CALLER_HEADER: &str = "x-authenticated-user";

/// Records every request as an audit event of `source`.
///
/// Fail closed: the response is released only once its audit event is
/// committed on a majority of the cluster. If the event cannot be recorded,
/// the caller gets `503 Service Unavailable` instead of the response, so no
/// data leaves the service unaudited. Operations that change state should also
/// record explicitly, before they commit (see [`refund`]); this layer then
/// adds the request-level trail.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    producer: Arc<Producer>,
    source: Arc<str>,
}

impl AuditLayer {
    pub fn new(producer: Arc<Producer>, source: &str) -> Self {
        AuditLayer {
            producer,
            source: source.into(),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuditLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

/// The caller, as the authentication in front of the service established it.
fn caller(headers: &HeaderMap) -> String {
    headers
        .get(CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("anonymous")
        .to_owned()
}

/// How a request ended, in audit words.
fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "success",
        401 | 403 => "denied",
        400..=499 => "rejected",
        _ => "failure",
    }
}

impl<S, B> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let actor = caller(request.headers());
        let method = request.method().as_str().to_owned();
        let resource = request.uri().path().to_owned();
        let trace_id = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let status = response.status();
            let event = Event {
                source: layer.source.to_string(),
                actor,
                action: format!("http.{}", method.to_ascii_lowercase()),
                resource,
                outcome: outcome(status).to_owned(),
                trace_id,
                attributes: [("http.status".to_owned(), status.as_u16().to_string())]
                    .into_iter()
                    .collect(),
                ..Event::default()
            };
            match layer.producer.append(event).await {
                Ok(_) => Ok(response),
                Err(error) => {
                    tracing::error!(%error, "audit record failed; withholding the response");
                    Ok(unavailable())
                }
            }
        })
    }
}

fn unavailable() -> Response<Body> {
    let mut response = Response::new(Body::from("audit log unavailable; try again\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// The service's state: its producer, shared with the layer.
#[derive(Debug, Clone)]
pub struct AppState {
    pub producer: Arc<Producer>,
    pub source: Arc<str>,
}

/// The invoicing API, audited by [`AuditLayer`].
pub fn app(producer: Arc<Producer>, source: &str) -> Router {
    let state = AppState {
        producer: producer.clone(),
        source: source.into(),
    };
    Router::new()
        .route("/invoices/{id}", get(show))
        .route("/invoices/{id}/refund", post(refund))
        .with_state(state)
        .layer(AuditLayer::new(producer, source))
}

async fn show(Path(id): Path<String>) -> Result<String, StatusCode> {
    if id.chars().all(|c| c.is_ascii_digit()) {
        Ok(format!("invoice {id}: 42.00 EUR\n"))
    } else {
        Err(StatusCode::NOT_FOUND)
    }
}

/// Refunds an invoice. Only the finance team may; the refund is recorded in
/// the audit log, in domain terms, before it is reported done. The event id is
/// the refund's own key, so a client retrying the request (or the SDK
/// retrying the append) records the refund once.
pub async fn refund(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<String, (StatusCode, String)> {
    let actor = caller(&headers);
    let allowed = actor.ends_with("@finance.example.com");
    let event = Event {
        source: state.source.to_string(),
        event_id: format!("refund-{id}"),
        actor,
        action: "invoice.refund".into(),
        resource: format!("invoice/{id}"),
        outcome: if allowed { "success" } else { "denied" }.into(),
        attributes: [("amount".to_owned(), "42.00 EUR".to_owned())]
            .into_iter()
            .collect(),
        ..Event::default()
    };
    let event = if allowed {
        event
    } else {
        // A denied attempt is recorded under its own id: one per attempt.
        Event {
            event_id: String::new(),
            ..event
        }
    };
    let receipt = state.producer.append(event).await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("refund not done: the audit log did not record it ({e})\n"),
        )
    })?;
    if !allowed {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "only finance may refund; attempt recorded at seq {}\n",
                receipt.seq
            ),
        ));
    }
    Ok(format!(
        "invoice {id} refunded; audit seq {} hash {}\n",
        receipt.seq, receipt.entry_hash
    ))
}
