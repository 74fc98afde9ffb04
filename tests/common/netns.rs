//! Network namespaces for tests that cut links: every monitor (with its etcd member, its child)
//! runs in a namespace of its own, routed through a hub namespace that can silently drop the
//! traffic between chosen monitors (a partition) while the test process still reaches them all.
//!
//! Layout, for a claimed private subnet 10.a.b.0/24 and monitor i (0-based):
//!
//! ```text
//!  monitor namespace i            hub namespace (router)           test process (root ns)
//!  eth0 10.a.b.(4i+2)/30  <veth>  m<i> 10.a.b.(4i+1)/30
//!                                 host 10.a.b.(4n+1)/30   <veth>  fbn… 10.a.b.(4n+2)/30
//!  default via 10.a.b.(4i+1)                                       10.a.b.0/24 via 10.a.b.(4n+1)
//! ```
//!
//! A partition is a pair of `blackhole` policy rules in the hub per cut link (one per
//! direction): forwarded packets are dropped without an answer, as on a cut link. A host that
//! is down (crashed machine) has every packet to or from its address dropped, the test
//! process's included. Names carry the test process's pid,
//! so concurrent test processes never collide; namespaces left by a killed test process are
//! removed by the next one. Dropping the topology deletes the namespaces, which takes the veth
//! pairs and the route along.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// Every namespace this module creates starts with this.
const PREFIX: &str = "fbnet-";

/// A private subnet per topology, out of 10.200.0.0 – 10.249.255.0.
const SUBNET_FIRST_OCTET: std::ops::RangeInclusive<u8> = 200..=249;

/// Topologies created by this process so far (part of the names).
static CREATED: AtomicU32 = AtomicU32::new(0);

/// A set of monitor namespaces behind one router namespace.
pub struct Topology {
    /// `fbnet-<pid>-<n>`: the prefix of every namespace of this topology.
    tag: String,
    /// The root namespace's end of the link to the hub (at most 15 bytes).
    host_link: String,
    /// `10.a.b`: the claimed /24.
    net: String,
    monitors: usize,
    /// The selectors (`from A to B`, `from A`, `to A`) of the hub's blackhole rules in place.
    dropped: Mutex<Vec<Vec<String>>>,
    _claim: nix::fcntl::Flock<std::fs::File>,
}

impl Topology {
    /// Creates the namespaces and links of `monitors` monitors. Panics with the reason when it
    /// cannot: the tests that need it must fail, not skip, without `ip` (iproute2) or root.
    pub fn create(monitors: usize) -> Topology {
        check_ip_available();
        remove_stale_namespaces();
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let (net, claim) = claim_subnet();
        let topology = Topology {
            tag: format!("{PREFIX}{pid}-{n}"),
            host_link: format!("fbn{pid:x}-{n}"),
            net,
            monitors,
            dropped: Mutex::new(Vec::new()),
            _claim: claim,
        };
        // Built after the value exists, so a failure half-way is cleaned up by Drop.
        topology.build();
        topology
    }

    /// The address of monitor `i` (0-based).
    pub fn monitor_ip(&self, i: usize) -> String {
        format!("{}.{}", self.net, 4 * i + 2)
    }

    /// The namespace of monitor `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-m{}", self.tag, i + 1)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// A command that runs `program` inside monitor `i`'s namespace (`ip netns exec` execs it
    /// in place, so the child's pid is the program's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(i), program]);
        cmd
    }

    /// Cuts monitor `i` off from every other monitor (both directions); the test process still
    /// reaches it.
    pub fn isolate(&self, i: usize) {
        let me = self.monitor_ip(i);
        for j in (0..self.monitors).filter(|&j| j != i) {
            let other = self.monitor_ip(j);
            self.drop_traffic(&["from", &me, "to", &other]);
            self.drop_traffic(&["from", &other, "to", &me]);
        }
    }

    /// Drops every packet to or from monitor `i`, as if its host had crashed.
    pub fn host_down(&self, i: usize) {
        let me = self.monitor_ip(i);
        self.drop_traffic(&["from", &me]);
        self.drop_traffic(&["to", &me]);
    }

    /// Removes every drop of [`Topology::isolate`] and [`Topology::host_down`].
    pub fn heal(&self) {
        let rules = std::mem::take(&mut *self.rules());
        let hub = self.hub();
        for selector in rules {
            let mut args = vec!["-n", hub.as_str(), "rule", "del"];
            args.extend(selector.iter().map(String::as_str));
            args.push("blackhole");
            ip(&args);
        }
    }

    fn rules(&self) -> parking_lot::MutexGuard<'_, Vec<Vec<String>>> {
        self.dropped.lock()
    }

    fn drop_traffic(&self, selector: &[&str]) {
        let selector: Vec<String> = selector.iter().map(|s| s.to_string()).collect();
        let mut rules = self.rules();
        if rules.contains(&selector) {
            return;
        }
        let hub = self.hub();
        let mut args = vec!["-n", hub.as_str(), "rule", "add"];
        args.extend(selector.iter().map(String::as_str));
        args.push("blackhole");
        ip(&args);
        rules.push(selector);
    }

    fn build(&self) {
        let hub = self.hub();
        for ns in std::iter::once(hub.clone()).chain((0..self.monitors).map(|i| self.namespace(i)))
        {
            // A namespace of a dead earlier process with our pid would be in the way.
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        sh_in(&hub, "echo 1 > /proc/sys/net/ipv4/ip_forward");
        for i in 0..self.monitors {
            let ns = self.namespace(i);
            let port = format!("m{i}");
            let router = format!("{}.{}", self.net, 4 * i + 1);
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/30", self.monitor_ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                &hub,
                "addr",
                "add",
                &format!("{router}/30"),
                "dev",
                &port,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "route", "add", "default", "via", &router]);
        }
        let router = format!("{}.{}", self.net, 4 * self.monitors + 1);
        let host = format!("{}.{}", self.net, 4 * self.monitors + 2);
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "host",
            "netns",
            &hub,
        ]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &self.host_link]);
        ip(&["link", "set", &self.host_link, "up"]);
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{router}/30"),
            "dev",
            "host",
        ]);
        ip(&["-n", &hub, "link", "set", "host", "up"]);
        ip(&[
            "route",
            "add",
            &format!("{}.0/24", self.net),
            "via",
            &router,
        ]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth ends in it, hence both ends of each pair and
        // the root namespace's route through the hub.
        for ns in (0..self.monitors)
            .map(|i| self.namespace(i))
            .chain(std::iter::once(self.hub()))
        {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}

/// Runs `ip args`; panics with the command and its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {} (network namespaces need root)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs a shell command inside namespace `ns`.
fn sh_in(ns: &str, script: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{script}` in {ns}: {e}"));
    assert!(
        out.status.success(),
        "`{script}` in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn check_ip_available() {
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`ip -V` failed: {} (install iproute2)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "this test needs the `ip` command to create network namespaces: {e}; install it \
             with `apt-get install iproute2` (.ci/run does) and run as root"
        ),
    }
}

/// Deletes namespaces of this module whose test process is gone (killed before its Drop ran).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Claims a 10.a.b.0/24 that no other test process holds and that no interface or route of
/// this machine uses. The claim is an exclusive lock on a per-subnet file, released when the
/// claim is dropped or the process dies.
fn claim_subnet() -> (String, nix::fcntl::Flock<std::fs::File>) {
    use std::hash::{BuildHasher, Hasher};
    let dir = std::env::temp_dir().join("fastblock-test-nets");
    std::fs::create_dir_all(&dir).expect("lock dir");
    let in_use = {
        let addrs = Command::new("ip").args(["-4", "-o", "addr"]).output();
        let routes = Command::new("ip").args(["-4", "-o", "route"]).output();
        let mut text = String::new();
        for out in [addrs, routes].into_iter().flatten() {
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        text
    };
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let mut x = hasher.finish();
    let first = *SUBNET_FIRST_OCTET.start() as u64;
    let span = u64::from(SUBNET_FIRST_OCTET.end() - SUBNET_FIRST_OCTET.start()) + 1;
    for _ in 0..1000 {
        x = x
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
        let net = format!("10.{}.{}", first + (x >> 40) % span, (x >> 24) % 256);
        if in_use.contains(&format!("{net}.")) {
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(&net))
            .expect("lock file");
        if let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            return (net, lock);
        }
    }
    panic!("no free private subnet found for the test's network namespaces");
}
