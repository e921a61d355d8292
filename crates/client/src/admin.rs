//! Cluster administration: status, backups and membership.

use veritrail_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// The cluster's status as its leader reports it: the current members,
    /// leader and log size, not a lagging node's idea of them.
    ///
    /// The node asked first answers if it leads. Otherwise the leader it names
    /// is asked, and failing that every node this client knows of (its
    /// endpoints and the members the first answer lists); the answer of a node
    /// that leads wins (of the highest term, should two think they lead). When
    /// none leads, the first answer comes back as it is: `leader_id` unset, and
    /// `behind` saying why that node's view may be stale.
    pub async fn status(&self) -> Result<v1::StatusResponse> {
        let first = self.any_status().await?;
        if first.role == "leader" {
            return Ok(first);
        }
        if !first.leader_addr.is_empty()
            && let Ok(leader) = self.status_of(&first.leader_addr).await
            && leader.role == "leader"
        {
            return Ok(leader);
        }
        let mut addrs = self.transport.addrs();
        for member in &first.members {
            if let Ok(addr) = self.transport.normalize(&member.addr)
                && !addrs.contains(&addr)
            {
                addrs.push(addr);
            }
        }
        let answers =
            futures::future::join_all(addrs.iter().map(|addr| self.status_of(addr))).await;
        Ok(answers
            .into_iter()
            .flatten()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .unwrap_or(first))
    }

    /// The status of whichever node answers first (the preferred one).
    async fn any_status(&self) -> Result<v1::StatusResponse> {
        let (response, _) = self
            .transport
            .call("Status", |channel| {
                let mut client = Self::admin_client(channel);
                async move { client.status(v1::StatusRequest {}).await }
            })
            .await?;
        Ok(response.into_inner())
    }

    /// The status of the node at `addr`, asked once, without retries.
    pub async fn status_of(&self, addr: &str) -> Result<v1::StatusResponse> {
        let channel = self.transport.channel_to(addr)?;
        let mut admin = Self::admin_client(channel);
        Ok(self
            .transport
            .bounded(admin.status(v1::StatusRequest {}))
            .await?
            .into_inner())
    }

    /// Writes a consistent backup of the node at `addr` to `path` (through
    /// `path` with its extension replaced by `part`, synced, then renamed),
    /// checking the file's trailing SHA-256 and its length as it arrives. `veritraild restore` puts it back.
    pub async fn backup(&self, addr: &str, path: &std::path::Path) -> Result<v1::BackupInfo> {
        let part = path.with_extension("part");
        let result = self.backup_into(addr, path, &part).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    async fn backup_into(
        &self,
        addr: &str,
        path: &std::path::Path,
        part: &std::path::Path,
    ) -> Result<v1::BackupInfo> {
        use sha2::{Digest, Sha256};
        use std::io::Write as _;
        let file_error = |source| Error::File {
            path: path.display().to_string(),
            source,
        };
        let channel = self.transport.channel_to(addr)?;
        let mut stream = Self::admin_client(channel)
            .backup(v1::BackupRequest {})
            .await?
            .into_inner();
        let mut out = std::io::BufWriter::new(std::fs::File::create(part).map_err(file_error)?);
        let mut info = None;
        let mut hasher = Sha256::new();
        // The last 32 bytes seen so far: the digest, if the file ends here.
        let mut held: Vec<u8> = Vec::with_capacity(64);
        let mut written = 0u64;
        while let Some(chunk) = stream.message().await? {
            if let Some(i) = chunk.info {
                if info.is_some() {
                    return Err(Error::Protocol("a second backup header".into()));
                }
                info = Some(i);
            }
            if info.is_none() {
                return Err(Error::Protocol("backup data before its header".into()));
            }
            out.write_all(&chunk.data).map_err(file_error)?;
            written += chunk.data.len() as u64;
            held.extend_from_slice(&chunk.data);
            if held.len() > 32 {
                let spill = held.len() - 32;
                hasher.update(&held[..spill]);
                held.drain(..spill);
            }
        }
        let info = info.ok_or_else(|| Error::Protocol("an empty backup stream".into()))?;
        if written != info.bytes {
            return Err(Error::Verification(format!(
                "the backup stream ended after {written} of {} bytes",
                info.bytes
            )));
        }
        if held.len() != 32 || hasher.finalize().as_slice() != held.as_slice() {
            return Err(Error::Verification(
                "the backup's SHA-256 does not match its content".into(),
            ));
        }
        let file = out.into_inner().map_err(|e| file_error(e.into_error()))?;
        file.sync_all().map_err(file_error)?;
        std::fs::rename(part, path).map_err(file_error)?;
        Ok(info)
    }

    /// Forms the cluster from `members` (node id, address). Harmless to repeat:
    /// a second call fails with `FAILED_PRECONDITION`.
    pub async fn initialize(&self, members: Vec<(u64, String)>) -> Result<Vec<v1::MemberStatus>> {
        let members: Vec<v1::Member> = members
            .into_iter()
            .map(|(node_id, addr)| v1::Member { node_id, addr })
            .collect();
        let (response, _) = self
            .transport
            .call("Initialize", |channel| {
                let mut client = Self::admin_client(channel);
                let members = members.clone();
                async move { client.initialize(v1::InitializeRequest { members }).await }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Adds a node as a learner; with `wait`, returns once it caught up.
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: &str,
        wait: bool,
    ) -> Result<Vec<v1::MemberStatus>> {
        let member = v1::Member {
            node_id,
            addr: addr.to_owned(),
        };
        let (response, _) = self
            .transport
            .call("AddLearner", |channel| {
                let mut client = Self::admin_client(channel);
                let member = member.clone();
                async move {
                    client
                        .add_learner(v1::AddLearnerRequest {
                            member: Some(member),
                            wait,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Makes `voters` the voting members; others stay learners when
    /// `retain_removed`, and leave otherwise.
    pub async fn change_membership(
        &self,
        voters: Vec<u64>,
        retain_removed: bool,
    ) -> Result<Vec<v1::MemberStatus>> {
        let (response, _) = self
            .transport
            .call("ChangeMembership", |channel| {
                let mut client = Self::admin_client(channel);
                let voters = voters.clone();
                async move {
                    client
                        .change_membership(v1::ChangeMembershipRequest {
                            voters,
                            retain_removed,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().members)
    }

    /// Asks the leader to hand leadership to `node_id`. Returns the leader after.
    pub async fn transfer_leader(&self, node_id: u64) -> Result<u64> {
        let (response, _) = self
            .transport
            .call("TransferLeader", |channel| {
                let mut client = Self::admin_client(channel);
                async move {
                    client
                        .transfer_leader(v1::TransferLeaderRequest {
                            to_node_id: node_id,
                        })
                        .await
                }
            })
            .await?;
        Ok(response.into_inner().leader_id)
    }
}
