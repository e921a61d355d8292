//! The example audited service against a real cluster: every request leaves an
//! event naming its caller, method and outcome, and a refund is recorded in
//! domain terms exactly once however often it is retried.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use tower::ServiceExt as _;
use veritrail_client::{Producer, ProducerConfig, ScanQuery};
use veritrail_example_audited_service::{CALLER_HEADER, app};
use veritrail_tests::{Cluster, ClusterOptions};

async fn call(router: &axum::Router, method: &str, path: &str, user: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(CALLER_HEADER, user)
        .body(Body::empty())
        .expect("request");
    router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_each_refund_is_audited() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    let producer = Arc::new(Producer::new(&client, ProducerConfig::default()).expect("producer"));
    let router = app(producer, "invoicing");

    assert_eq!(
        call(&router, "GET", "/invoices/7", "carl@example.com").await,
        StatusCode::OK
    );
    assert_eq!(
        call(&router, "GET", "/invoices/x", "carl@example.com").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&router, "POST", "/invoices/7/refund", "carl@example.com").await,
        StatusCode::FORBIDDEN
    );
    for _ in 0..3 {
        assert_eq!(
            call(
                &router,
                "POST",
                "/invoices/7/refund",
                "ann@finance.example.com"
            )
            .await,
            StatusCode::OK
        );
    }

    let entries: Vec<_> = client
        .scan(ScanQuery {
            source: Some("invoicing".into()),
            ..ScanQuery::default()
        })
        .map(|e| e.expect("entry").entry.event)
        .collect()
        .await;
    let summary: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e.actor.clone(),
                e.action.clone(),
                e.resource.clone(),
                e.outcome.clone(),
            )
        })
        .collect();
    let row = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned())
    };
    assert_eq!(
        summary,
        vec![
            row("carl@example.com", "http.get", "/invoices/7", "success"),
            row("carl@example.com", "http.get", "/invoices/x", "rejected"),
            // The denied refund: the domain event, then the request.
            row("carl@example.com", "invoice.refund", "invoice/7", "denied"),
            row(
                "carl@example.com",
                "http.post",
                "/invoices/7/refund",
                "denied"
            ),
            // Three refund requests, one refund.
            row(
                "ann@finance.example.com",
                "invoice.refund",
                "invoice/7",
                "success"
            ),
            row(
                "ann@finance.example.com",
                "http.post",
                "/invoices/7/refund",
                "success"
            ),
            row(
                "ann@finance.example.com",
                "http.post",
                "/invoices/7/refund",
                "success"
            ),
            row(
                "ann@finance.example.com",
                "http.post",
                "/invoices/7/refund",
                "success"
            ),
        ]
    );
    assert_eq!(
        entries[0].attributes.get("http.status").map(String::as_str),
        Some("200")
    );
    assert_eq!(entries[4].event_id, "refund-7");
}
