//! The HTTP face of the witness: `POST /add-checkpoint`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::protocol::{Answer, PROOF_LINES_MAX, Witness};

/// Largest request: a signed note (64 KiB at most) and a full proof.
const REQUEST_MAX_BYTES: usize = veritrail_core::note::NOTE_MAX_BYTES + 16 + PROOF_LINES_MAX * 45;

pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(REQUEST_MAX_BYTES))
        .with_state(witness)
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The state file is synced under the witness's lock: off the async threads.
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now))
        .await
        .unwrap_or_else(|e| Answer::Failed(format!("the request's task failed: {e}")));
    respond(answer)
}

fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer {
        Answer::Cosigned(lines) => (status, lines).into_response(),
        Answer::OldSizeMismatch(size) => (
            status,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Answer::BadRequest(why)
        | Answer::Forbidden(why)
        | Answer::UnknownLog(why)
        | Answer::Fork(why)
        | Answer::BadProof(why)
        | Answer::Failed(why) => (status, format!("{why}\n")).into_response(),
    }
}
