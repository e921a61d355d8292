//! Raft apart from clients: a node runs two tokio runtimes.
//!
//! One authorized reader that opened 600 `Tail` streams cost the leader its
//! leadership (issue #17): every stream's scans ran on the same worker
//! threads, and the same blocking pool, as openraft's core, its replication
//! and its log writes, so heartbeats waited behind reads until the followers
//! stood for election. Per-principal caps (`quota.rs`) bound one reader, not
//! ten. So:
//!
//! - **Raft's runtime** (`raft.threads` workers, named `veritrail-raft`)
//!   carries openraft's core, its replication and storage calls, the peer
//!   connections both ways (calls to peers from `Network`, and the connections
//!   whose certificate is a node of this cluster: `listener.rs` hands them to
//!   a server of their own), the batcher that turns appends into Raft entries,
//!   and checkpoint co-signing.
//! - **The clients' runtime** (the other threads, named `veritrail-client`)
//!   carries every client call, the tiles port and the metrics endpoint. Its
//!   threads run at a lower scheduling priority (`grpc.client_thread_nice`,
//!   a Unix nice value), and its blocking pool, where reads run, holds at most
//!   `grpc.client_blocking_threads` threads: under client load the kernel
//!   still gives Raft's threads their turn, instead of one in hundreds.
//!
//! A development node without TLS cannot tell a peer's connection from a
//! client's; its peers' calls are served on the clients' runtime, while its
//! own Raft work stays on Raft's.

use tokio::runtime::{Builder, Runtime};

use crate::config::Config;

/// The node's two runtimes. Dropped outside any runtime (`main`).
#[derive(Debug)]
pub struct Runtimes {
    pub clients: Runtime,
    pub raft: Runtime,
}

impl Runtimes {
    pub fn build(config: &Config) -> Result<Runtimes, String> {
        let raft = Builder::new_multi_thread()
            .worker_threads(config.raft.threads)
            .thread_name("veritrail-raft")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start Raft's runtime: {e}"))?;
        let nice = config.grpc.client_thread_nice;
        let clients = Builder::new_multi_thread()
            .max_blocking_threads(config.grpc.client_blocking_threads)
            .thread_name("veritrail-client")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the clients' runtime: {e}"))?;
        Ok(Runtimes { clients, raft })
    }
}

/// Makes the calling thread `nice` steps less favoured by the scheduler
/// (Linux sets a nice value per thread). A failure is logged and ignored: the
/// thread keeps the node's priority.
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(thread), current + i32::from(nice)) {
        tracing::warn!(error = %e, nice, "cannot lower a client thread's priority");
    }
}

/// The nice value of thread `tid` of this process, from procfs (for tests
/// and `status`: which threads run at which priority).
pub fn thread_nice(tid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name in parentheses may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 2..];
    // Field 19 (nice) is the 17th after the name.
    after_name.split(' ').nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_threads_run_at_a_lower_priority_and_raft_threads_at_the_nodes() {
        let mut config = Config::default();
        config.grpc.client_thread_nice = 3;
        let runtimes = Runtimes::build(&config).expect("runtimes");
        let tid = || rustix::thread::gettid().as_raw_nonzero().get();
        let base = thread_nice(tid()).expect("this thread's nice value");
        let client = runtimes.clients.block_on(async move {
            tokio::spawn(async move { thread_nice(tid()) })
                .await
                .expect("task")
        });
        let blocking = runtimes.clients.block_on(async move {
            tokio::task::spawn_blocking(move || thread_nice(tid()))
                .await
                .expect("task")
        });
        let raft = runtimes.raft.block_on(async move {
            tokio::spawn(async move { thread_nice(tid()) })
                .await
                .expect("task")
        });
        assert_eq!(client, Some(base + 3), "client worker");
        assert_eq!(blocking, Some(base + 3), "client blocking thread");
        assert_eq!(raft, Some(base), "Raft worker");
    }
}
