//! `veritrail cluster`: status and membership changes.

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;
use veritrail_client::Client;
use veritrail_client::proto::{MemberStatus, StatusResponse};

use crate::output::{self, CmdResult, Format};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every member's own view side by side (role, term, log and applied index,
    /// tree size, root), its lag as the leader measures it, and whether it is
    /// behind the cluster; members and leader as the leader reports them
    Status,
    /// The voters' checkpoint verifier keys, one per line: what an auditor pins
    /// with `--keys @FILE`.
    Keys,
    /// Add a node as a learner, and wait until it holds every entry the
    /// leader held when it was added (progress on stderr).
    AddLearner {
        /// The new node's id (never one a node had before).
        #[arg(long)]
        id: u64,
        /// The node's address as the other nodes reach it (host:port).
        #[arg(long)]
        addr: String,
        /// Return once it is a learner, without waiting for it to catch up.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds (the node stays a learner
        /// and keeps catching up).
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        #[arg(long)]
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter to lead.
        #[arg(long)]
        to: u64,
    },
    /// Write a consistent backup of one node (the leader by default) to a
    /// file, checked as it arrives. `veritraild restore` puts it back.
    Backup {
        /// Where to write it; an existing file is replaced. `-o` and
        /// `--output-file`, as for `export` (`--out` still works).
        #[arg(long = "output-file", short = 'o', alias = "out")]
        out: std::path::PathBuf,
        /// Back up this node instead of the leader.
        #[arg(long)]
        node: Option<u64>,
    },
}

fn voters(status: &StatusResponse) -> Vec<u64> {
    status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect()
}

fn print_members(format: Format, members: &[MemberStatus]) {
    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "members": members.iter().map(|m| json!({
                "node_id": m.node_id,
                "addr": m.addr,
                "voter": m.voter,
                "public_key": m.public_key,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            for m in members {
                println!(
                    "node {:<4} {:<22} {:<8} {}",
                    m.node_id,
                    m.addr,
                    if m.voter { "voter" } else { "learner" },
                    m.public_key
                );
            }
        }
    }
}

pub async fn run(client: &Client, format: Format, command: &ClusterCommand) -> CmdResult {
    match command {
        ClusterCommand::Status => status(client, format).await,
        ClusterCommand::Keys => {
            let status = client.status().await?;
            let keys: Vec<&str> = status
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.public_key.as_str())
                .collect();
            match format {
                Format::Json => output::print_json(&json!({
                    "ok": true,
                    "origin": status.origin,
                    "keys": keys,
                })),
                Format::Text => {
                    for key in keys {
                        println!("{key}");
                    }
                }
            }
            Ok(())
        }
        ClusterCommand::AddLearner {
            id,
            addr,
            no_wait,
            timeout,
        } => {
            // What the leader holds (a lagging node's answer would say less).
            let first = client.status().await?;
            let target = match client.status_of(&first.leader_addr).await {
                Ok(leader) => leader.tree_size,
                Err(_) => first.tree_size,
            };
            let mut members = client.add_learner(*id, addr, false).await?;
            if !no_wait {
                wait_caught_up(client, format, *id, addr, target, *timeout).await?;
                members = client.status().await?.members;
            }
            print_members(format, &members);
            Ok(())
        }
        ClusterCommand::Promote { id } => {
            let status = client.status().await?;
            if !status.members.iter().any(|m| m.node_id == *id) {
                return Err(anyhow::anyhow!(
                    "node {id} is not a member; add it with `cluster add-learner` first"
                )
                .into());
            }
            let mut voters = voters(&status);
            if !voters.contains(id) {
                voters.push(*id);
            }
            let members = client.change_membership(voters, true).await?;
            print_members(format, &members);
            Ok(())
        }
        ClusterCommand::Remove { id } => {
            let status = client.status().await?;
            let voters: Vec<u64> = voters(&status).into_iter().filter(|v| v != id).collect();
            if voters.is_empty() {
                return Err(anyhow::anyhow!("removing node {id} would leave no voters").into());
            }
            let members = client.change_membership(voters, false).await?;
            print_members(format, &members);
            Ok(())
        }
        ClusterCommand::TransferLeader { to } => {
            let leader = client.transfer_leader(*to).await?;
            match format {
                Format::Json => output::print_json(&json!({ "ok": true, "leader_id": leader })),
                Format::Text => println!("leader is now node {leader}"),
            }
            Ok(())
        }
        ClusterCommand::Backup { out, node } => {
            let status = client.status().await.context("no node answered")?;
            let id = match node.or(status.leader_id) {
                Some(id) => id,
                None => {
                    return Err(anyhow::anyhow!("no leader; name a node with --node").into());
                }
            };
            let Some(member) = status.members.iter().find(|m| m.node_id == id) else {
                return Err(anyhow::anyhow!("node {id} is not a member").into());
            };
            let info = client
                .backup(&member.addr, out)
                .await
                .with_context(|| format!("backing up node {id} at {}", member.addr))?;
            match format {
                Format::Json => output::print_json(&json!({
                    "ok": true,
                    "node_id": info.node_id,
                    "file": out.display().to_string(),
                    "bytes": info.bytes,
                    "tree_size": info.tree_size,
                    "root": hex::encode(&info.root_hash),
                    "last_log_index": info.last_log_index,
                    "origin": info.origin,
                })),
                Format::Text => println!(
                    "backup of node {} ({}): {} entries, root {}, Raft index {}, {} bytes, in {}",
                    info.node_id,
                    info.origin,
                    info.tree_size,
                    hex::encode(&info.root_hash),
                    info.last_log_index,
                    info.bytes,
                    out.display()
                ),
            }
            Ok(())
        }
    }
}

/// Waits until the node at `addr` has applied `target` entries, with a
/// progress bar on a terminal and a line on stderr every 10 s otherwise.
async fn wait_caught_up(
    client: &Client,
    format: Format,
    id: u64,
    addr: &str,
    target: u64,
    timeout_s: u64,
) -> CmdResult {
    let started = std::time::Instant::now();
    let bar = output::progress(format, target, &format!("node {id} catching up"));
    let mut said = started;
    let mut held = 0;
    loop {
        if let Ok(status) = client.status_of(addr).await {
            held = status.tree_size;
            bar.set_position(held.min(target));
        }
        if held >= target {
            bar.finish_and_clear();
            if format == Format::Text {
                eprintln!(
                    "node {id} holds all {target} entries, after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if started.elapsed().as_secs() >= timeout_s {
            bar.abandon();
            return Err(anyhow::anyhow!(
                "node {id} is a learner, but after {timeout_s} s it holds {held} of the \
                 {target} entries the leader held when it was added; it keeps catching up \
                 (watch `veritrail cluster status`, and promote it only once it holds them)"
            )
            .into());
        }
        if format == Format::Text && bar.is_hidden() && said.elapsed().as_secs() >= 10 {
            eprintln!("node {id} holds {held} of {target} entries");
            said = std::time::Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A member's replication lag as the leader reports it, in a few words.
fn describe_lag(lag: &MemberStatus) -> String {
    if lag.lag_entries == 0 {
        return "in sync".to_owned();
    }
    format!(
        "{} entries, {:.1} MiB, {:.1} s behind{}",
        lag.lag_entries,
        lag.lag_bytes as f64 / f64::from(1 << 20),
        lag.lag_ms as f64 / 1000.0,
        if lag.stuck { ", STUCK" } else { "" }
    )
}

/// Asks every member for its own view, so a lagging or partitioned node shows.
/// The members and the leader are the leader's view (`Client::status`).
async fn status(client: &Client, format: Format) -> CmdResult {
    let first = client.status().await.context("no node answered")?;
    // All at once: a dead member costs one timeout, not one per member.
    let answers = futures::future::join_all(
        first
            .members
            .iter()
            .map(|member| client.status_of(&member.addr)),
    )
    .await;
    let rows: Vec<_> = first.members.iter().cloned().zip(answers).collect();
    let leader = first.leader_id;
    // Replication lag is the leader's to measure: take it from the leader's
    // own answer.
    let lag_of = |id: u64| {
        rows.iter()
            .filter_map(|(_, own)| own.as_ref().ok())
            .find(|s| s.role == "leader")
            .and_then(|s| s.members.iter().find(|m| m.node_id == id))
    };
    // The leader's view of a member's replication, for JSON.
    let replication = |id: u64| {
        lag_of(id).map(|l| {
            json!({
                "matched_index": l.matched_index,
                "lag_entries": l.lag_entries,
                "lag_bytes": l.lag_bytes,
                "lag_ms": l.lag_ms,
                "stuck": l.stuck,
                "error": l.replication_error,
            })
        })
    };
    match format {
        Format::Json => {
            let nodes: Vec<_> = rows
                .iter()
                .map(|(m, own)| match own {
                    Ok(s) => json!({
                        "node_id": m.node_id,
                        "addr": m.addr,
                        "voter": m.voter,
                        "reachable": true,
                        "role": s.role,
                        "term": s.term,
                        "leader_id": s.leader_id,
                        "last_log_index": s.last_log_index,
                        "applied_index": s.applied_index,
                        "tree_size": s.tree_size,
                        "root": hex::encode(&s.root_hash),
                        "checkpoint_size": s.checkpoint_size,
                        "snapshot_index": s.snapshot_index,
                        "snapshot_tree_size": s.snapshot_tree_size,
                        "purged_index": s.purged_index,
                        "public_key": s.public_key,
                        "behind": (!s.behind.is_empty()).then_some(&s.behind),
                        "disk": (!s.disk.is_empty()).then_some(&s.disk),
                        "replication": replication(m.node_id),
                    }),
                    Err(e) => json!({
                        "node_id": m.node_id,
                        "addr": m.addr,
                        "voter": m.voter,
                        "reachable": false,
                        "error": e.to_string(),
                        "replication": replication(m.node_id),
                    }),
                })
                .collect();
            output::print_json(&json!({
                "ok": true,
                "origin": first.origin,
                "leader_id": leader,
                "voters": voters(&first).len(),
                "nodes": nodes,
            }));
        }
        Format::Text => {
            println!(
                "origin {}  leader {}  voters {}",
                first.origin,
                leader.map_or("none".to_owned(), |l| l.to_string()),
                voters(&first).len()
            );
            println!(
                "{:<6} {:<22} {:<8} {:<10} {:>6} {:>10} {:>10} {:>10}  {:<16}  lag",
                "node", "addr", "member", "role", "term", "log", "applied", "size", "root"
            );
            for (m, own) in &rows {
                let member = if m.voter { "voter" } else { "learner" };
                let lag = lag_of(m.node_id).map_or(String::new(), describe_lag);
                match own {
                    Ok(s) => println!(
                        "{:<6} {:<22} {:<8} {:<10} {:>6} {:>10} {:>10} {:>10}  {:<16}  {lag}",
                        m.node_id,
                        m.addr,
                        member,
                        s.role,
                        s.term,
                        s.last_log_index.map_or("-".into(), |i| i.to_string()),
                        s.applied_index.map_or("-".into(), |i| i.to_string()),
                        s.tree_size,
                        &hex::encode(&s.root_hash)[..16.min(s.root_hash.len() * 2)],
                    ),
                    Err(e) => println!(
                        "{:<6} {:<22} {:<8} unreachable: {e}  {lag}",
                        m.node_id, m.addr, member
                    ),
                }
            }
            if leader.is_none() {
                println!(
                    "no node leads (node {} answered for the cluster{})",
                    first.node_id,
                    if first.behind.is_empty() {
                        String::new()
                    } else {
                        format!("; it is behind: {}", first.behind)
                    }
                );
            }
            for (m, own) in &rows {
                if let Ok(s) = own
                    && !s.behind.is_empty()
                {
                    println!("node {}: behind the cluster: {}", m.node_id, s.behind);
                }
                if let Ok(s) = own
                    && !s.disk.is_empty()
                {
                    println!("node {}: disk: {}", m.node_id, s.disk);
                }
            }
            for (m, _) in &rows {
                if let Some(l) = lag_of(m.node_id).filter(|l| l.stuck) {
                    println!(
                        "node {}: replication stuck: {}",
                        m.node_id,
                        if l.replication_error.is_empty() {
                            "no error seen"
                        } else {
                            &l.replication_error
                        }
                    );
                }
            }
        }
    }
    Ok(())
}
