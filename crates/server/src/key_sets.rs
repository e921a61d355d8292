//! Key sets: the voters' keys as a note the voters sign, so that an auditor
//! learns a replacement's key from the keys it already trusts (issue #23,
//! item 2; docs/FORMAT.md section 6.1).
//!
//! A node's key set is the keys of the voters of the membership it holds,
//! once that membership is committed (this node applied it) and not joint.
//! Its epoch is the Raft log index of that membership. A voter signs a key
//! set only when it is exactly the one it computes itself, the way it signs
//! only the checkpoint body it computes: no node, not even the leader, can
//! make the others vouch for a key the cluster never made a voter.
//!
//! Nothing is stored: any node gathers the signatures of the current voters
//! on request. An auditor who trusts a quorum of the keys of some earlier
//! membership adopts the current key set when a quorum of its keys signed it.
//! Voters replaced one at a time, with an audit between replacements, keep
//! that quorum; docs/OPERATIONS.md says what to do when they were not.

use std::time::Duration;

use veritrail_core::KeySet;
use veritrail_core::note::NoteKey;
use veritrail_store::NodeInfo;

use crate::cosign::Signing;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;

impl Node {
    /// This node's key set and the voters it names (id, member record).
    pub fn current_key_set(&self) -> NodeResult<(KeySet, Vec<(u64, NodeInfo)>)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let stored = &m.membership_config;
        let membership = stored.membership();
        let epoch = stored.log_id().map_or(0, |l| l.index);
        let settling = || {
            NodeError::unavailable(
                "a membership change is under way; the key set is settled once it is committed",
                None,
            )
        };
        if membership.get_joint_config().len() != 1 {
            return Err(settling());
        }
        if m.last_applied.is_none_or(|a| a.index < epoch) {
            return Err(settling());
        }
        let mut voters = Vec::new();
        let mut keys = Vec::new();
        for id in membership.voter_ids() {
            let info = membership.get_node(&id).cloned().unwrap_or_default();
            let key = NoteKey::parse(&info.public_key).map_err(|e| {
                NodeError::FailedPrecondition(format!(
                    "voter {id} has no valid key in the membership: {e}"
                ))
            })?;
            keys.push(key);
            voters.push((id, info));
        }
        if keys.is_empty() {
            return Err(NodeError::unavailable(
                "this node holds no membership yet",
                None,
            ));
        }
        Ok((KeySet::new(self.reader.origin(), epoch, keys)?, voters))
    }

    /// Signs `body` if, and only if, it is this node's own key set.
    pub fn sign_key_set(&self, body: &str) -> NodeResult<String> {
        let claimed = KeySet::parse(body)?;
        let (mine, _) = self.current_key_set()?;
        if claimed != mine {
            return Err(NodeError::FailedPrecondition(format!(
                "refusing to sign {claimed}: this node's committed voters are {mine}"
            )));
        }
        Ok(mine.sign(&self.signer)?.to_string())
    }

    /// The current key set, signed by every voter that answers; at least a
    /// majority of them, or `UNAVAILABLE`.
    pub async fn key_set_note(&self) -> NodeResult<(String, u64)> {
        let (key_set, voters) = self.current_key_set()?;
        let timeout = Duration::from_millis(self.config.grpc.request_timeout_ms / 2);
        let (note, keys) = self
            .gather_signatures(Signing::KeySet, &key_set.body(), &voters, timeout)
            .await?;
        let quorum = key_set.majority();
        if note.verify(&keys, quorum).is_err() {
            return Err(NodeError::unavailable(
                format!(
                    "{}: {} of {} voters signed, {quorum} needed (a voter that holds another \
                     membership refuses; retry once the change is everywhere)",
                    key_set,
                    note.signatures().len(),
                    voters.len()
                ),
                None,
            ));
        }
        Ok((note.to_string(), key_set.epoch))
    }
}
