//! A private network for a cluster: one Linux network namespace per node,
//! joined by veth pairs to a bridge the test process sits on, so that
//! partitions are real packet loss between real addresses.
//!
//! Node `i` gets `10.A.B.(i+1)` in namespace `vtX-i`; the test process reaches
//! every node through the bridge at `10.A.B.254`. A partition is a set of
//! `iptables` DROP rules inside the namespaces of the nodes it separates, in
//! both directions: peers see silence (timeouts), not refused connections, as
//! on a real network. The test process is never cut off, so clients can still
//! talk to a node on the minority side, which is the interesting case.
//!
//! Needs root (CAP_NET_ADMIN), `ip` and `iptables`; [`Network::create`] returns
//! `None` where they are missing, and callers fall back to loopback.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The namespaces, veths and bridge of one cluster. Dropping it removes them.
#[derive(Debug)]
pub struct Network {
    tag: String,
    subnet: String,
    nodes: usize,
    blocked: BTreeSet<(usize, usize)>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Network {
    /// A network for `nodes` nodes, or `None` (with the reason on stderr) when
    /// this machine cannot make one.
    pub fn create(nodes: usize) -> Option<Network> {
        // Unique per process and per call: tests run in parallel processes.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("vt{:x}{n:x}", pid % 0xfffff);
        // Distinct for any two live processes unless their pids differ by a
        // multiple of 37,500, and distinct within a process for 150 networks.
        let subnet = format!("10.{}.{}", 100 + (pid / 250 + n) % 150, pid % 250);
        let network = Network {
            tag,
            subnet,
            nodes,
            blocked: BTreeSet::new(),
        };
        match network.build() {
            Ok(()) => Some(network),
            Err(e) => {
                eprintln!("netns: cannot build a private network ({e}); using loopback");
                None
            }
        }
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    fn build(&self) -> Result<(), String> {
        let bridge = self.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        // Where Docker runs, bridged packets pass the host's FORWARD chain, whose
        // policy Docker sets to DROP: let this bridge's own traffic through.
        run(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}.254/24", self.subnet),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            let host = format!("{}h{i}", self.tag);
            let inner = format!("{}c{i}", self.tag);
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &inner,
            ])?;
            run(&["ip", "link", "set", &host, "master", &bridge])?;
            run(&["ip", "link", "set", &host, "up"])?;
            run(&["ip", "link", "set", &inner, "netns", &ns])?;
            let exec = |args: &[&str]| {
                let mut full = vec!["ip", "netns", "exec", ns.as_str()];
                full.extend_from_slice(args);
                run(&full)
            };
            exec(&["ip", "link", "set", "lo", "up"])?;
            exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", self.ip(i)),
                "dev",
                &inner,
            ])?;
            exec(&["ip", "link", "set", &inner, "up"])?;
            exec(&["iptables", "-L", "-n"])?;
        }
        Ok(())
    }

    /// The command prefix that runs a program inside node `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(i),
        ]
    }

    fn rules(&self, i: usize, j: usize, op: &str) -> Result<(), String> {
        let ns = self.namespace(i);
        let peer = self.ip(j);
        run(&[
            "ip", "netns", "exec", &ns, "iptables", op, "INPUT", "-s", &peer, "-j", "DROP",
        ])?;
        run(&[
            "ip", "netns", "exec", &ns, "iptables", op, "OUTPUT", "-d", &peer, "-j", "DROP",
        ])
    }

    /// Cuts every link between a node of `side` and a node outside it.
    pub fn partition(&mut self, side: &[usize]) {
        for &i in side {
            for j in 0..self.nodes {
                if !side.contains(&j) {
                    self.cut(i, j);
                }
            }
        }
    }

    /// Cuts the link between `i` and `j`, both ways.
    pub fn cut(&mut self, i: usize, j: usize) {
        let (a, b) = (i.min(j), i.max(j));
        if a == b || !self.blocked.insert((a, b)) {
            return;
        }
        self.rules(a, b, "-A").expect("iptables");
        self.rules(b, a, "-A").expect("iptables");
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for (a, b) in std::mem::take(&mut self.blocked) {
            self.rules(a, b, "-D").expect("iptables");
            self.rules(b, a, "-D").expect("iptables");
        }
    }

    /// How many nodes the network was made for.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Links cut right now.
    pub fn cut_links(&self) -> usize {
        self.blocked.len()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = run(&["ip", "netns", "del", &self.namespace(i)]);
        }
        let bridge = self.bridge();
        let _ = run(&[
            "iptables", "-D", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        let _ = run(&["ip", "link", "del", &bridge]);
    }
}
