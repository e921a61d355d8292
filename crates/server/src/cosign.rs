//! Checkpoints co-signed by the voters: the leader cuts one at its applied
//! size, every voter signs only the body it computes itself, and a quorum of
//! signatures is recorded through Raft.

use std::sync::Arc;
use std::time::Duration;

use veritrail_core::Checkpoint;
use veritrail_core::note::{NoteKey, SignedNote};
use veritrail_proto::raft::SignCheckpointRequest;
use veritrail_store::{CheckpointRecord, Command, CommandResponse, NodeInfo};

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::peers::with_timeout;

/// On the leader, cut and co-sign a checkpoint every `checkpoint.interval_ms`
/// when the log has grown.
pub async fn run_checkpoints(node: Arc<Node>) {
    let mut ticker =
        tokio::time::interval(Duration::from_millis(node.config.checkpoint.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !node.is_leader() {
            continue;
        }
        match node.checkpoint_round().await {
            Ok(Some(size)) => tracing::debug!(size, "checkpoint co-signed and recorded"),
            Ok(None) => {}
            Err(e) => {
                node.metrics.checkpoint_failures.inc();
                tracing::warn!(error = %e, "checkpoint round failed");
            }
        }
    }
}

impl Node {
    /// Signs a checkpoint body if, and only if, it is exactly the body this node
    /// computes from its own applied log at that size.
    pub async fn sign_checkpoint(&self, body: &str) -> NodeResult<String> {
        let claimed = Checkpoint::parse(body)?;
        if claimed.origin != self.reader.origin() {
            return Err(NodeError::FailedPrecondition(format!(
                "checkpoint is for origin {:?}",
                claimed.origin
            )));
        }
        let mut sizes = self.reader.watch_size();
        let wait = Duration::from_millis(self.config.checkpoint.catch_up_timeout_ms);
        let reached = tokio::time::timeout(wait, async {
            sizes
                .wait_for(|size| *size >= claimed.size)
                .await
                .map(|_| ())
        })
        .await;
        if !matches!(reached, Ok(Ok(()))) {
            return Err(NodeError::FailedPrecondition(format!(
                "this node has not applied {} entries yet; it signs only what it holds",
                claimed.size
            )));
        }
        let size = claimed.size;
        let mine = self.reader.checkpoint_at(size).await?;
        if mine != claimed {
            tracing::error!(size, claimed = %claimed.root, mine = %mine.root, "asked to sign a checkpoint this node disagrees with");
            return Err(NodeError::FailedPrecondition(format!(
                "refusing to sign: at size {size} this node computes root {}, not {}",
                mine.root, claimed.root
            )));
        }
        Ok(mine.sign(&self.signer)?.to_string())
    }

    /// One checkpoint round, on the leader: cut a checkpoint at the applied size,
    /// gather voters' signatures, and record it through Raft once a quorum signed.
    pub async fn checkpoint_round(&self) -> NodeResult<Option<u64>> {
        let (size, latest) = self
            .reader
            .read(|reader| {
                Ok((
                    reader.tail().size,
                    reader.latest_signed_checkpoint()?.map(|c| c.0),
                ))
            })
            .await?;
        if size == 0 || latest.is_some_and(|l| l >= size) {
            return Ok(None);
        }
        let checkpoint = self.reader.checkpoint_at(size).await?;
        let body = checkpoint.body();
        let membership = self.raft_metrics().membership_config.membership().clone();
        let voters: Vec<(u64, NodeInfo)> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect();
        let quorum = voters.len() / 2 + 1;
        let timeout = Duration::from_millis(self.config.checkpoint.catch_up_timeout_ms + 1000);
        let (merged, keys) = self
            .gather_signatures(Signing::Checkpoint, &body, &voters, timeout)
            .await?;
        if merged.verify(&keys, quorum).is_err() {
            return Err(NodeError::Unavailable {
                message: format!(
                    "checkpoint at size {size}: {} of {} voters signed, {quorum} needed",
                    merged.signatures().len(),
                    voters.len()
                ),
                leader: None,
            });
        }
        let record = CheckpointRecord {
            signed_note: merged.to_string(),
        };
        match self.raft.client_write(Command::Checkpoint(record)).await {
            Ok(r) => match r.data {
                CommandResponse::CheckpointRecorded { size } => Ok(Some(size)),
                CommandResponse::CheckpointRejected { reason } => {
                    Err(NodeError::Internal(format!("checkpoint refused: {reason}")))
                }
                other => Err(NodeError::Internal(format!(
                    "unexpected response {other:?}"
                ))),
            },
            Err(e) => Err(NodeError::unavailable(e.to_string(), self.leader())),
        }
    }

    /// Asks each of `voters` (this node directly, the others over the peer
    /// service) to sign `body`, and merges the signatures made by those
    /// voters' keys into one note. Voters that refuse or do not answer within
    /// `timeout` are logged and left out; the caller checks the quorum it
    /// needs against the keys returned beside the note.
    pub(crate) async fn gather_signatures(
        &self,
        what: Signing,
        body: &str,
        voters: &[(u64, NodeInfo)],
        timeout: Duration,
    ) -> NodeResult<(SignedNote, Vec<NoteKey>)> {
        let requests = voters.iter().map(|(id, info)| async move {
            if *id == self.id {
                let mine = match what {
                    Signing::Checkpoint => self.sign_checkpoint(body).await,
                    Signing::KeySet => self.sign_key_set(body),
                };
                return mine
                    .inspect_err(|e| tracing::warn!(error = %e, "this node did not sign the {what}"))
                    .ok();
            }
            let mut client = self.peers.client(&info.addr).ok()?;
            let request = with_timeout(
                SignCheckpointRequest {
                    body: body.to_owned(),
                },
                timeout,
            );
            let answer = match what {
                Signing::Checkpoint => client.sign_checkpoint(request).await,
                Signing::KeySet => client.sign_key_set(request).await,
            };
            match answer {
                Ok(r) => Some(r.into_inner().signed_note),
                Err(status) => {
                    tracing::warn!(node = id, error = %status.message(), "voter did not sign the {what}");
                    None
                }
            }
        });
        let notes = futures::future::join_all(requests).await;
        let keys: Vec<NoteKey> = voters
            .iter()
            .filter_map(|(_, n)| NoteKey::parse(&n.public_key).ok())
            .collect();
        let mut merged = SignedNote::new(body)?;
        for note in notes.into_iter().flatten() {
            let Ok(note) = SignedNote::parse(&note) else {
                continue;
            };
            if note.text() != body {
                continue;
            }
            for signature in note.signatures() {
                if keys
                    .iter()
                    .any(|k| k.name() == signature.name && k.id() == signature.key_id)
                {
                    merged.add_signature(signature.clone())?;
                }
            }
        }
        Ok((merged, keys))
    }
}

/// What voters are asked to co-sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signing {
    Checkpoint,
    KeySet,
}

impl std::fmt::Display for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signing::Checkpoint => "checkpoint",
            Signing::KeySet => "key set",
        })
    }
}
