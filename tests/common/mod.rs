//! Test harness: real monitor processes with their embedded etcd members, on a loopback address
//! of their own (127.x.y.z) in a temp dir. Everything is killed when the harness is dropped, even
//! when the test panics, and monitors die with the test process (parent-death signal) so a
//! killed test leaves nothing behind. On failure the monitors' logs are printed.

#![allow(dead_code)]

pub mod api;
pub mod legacy;
pub mod netns;
pub mod spawned;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastblock_monitor::client::{ClientOptions, MonitorClient};

/// Options of a test cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    pub lease_ttl_secs: u64,
    /// Extra environment of every monitor (e.g. failpoints).
    pub env: Vec<(String, String)>,
    /// Extra monitor.toml lines.
    pub extra_config: String,
    /// Use this external etcd endpoint (or comma-separated endpoints) instead of embedded
    /// members.
    pub external_etcd: Option<String>,
    /// Embedded members: list every member's client URL in `etcd_server` (same order on every
    /// monitor) instead of the monitor's own member only.
    pub list_all_members: bool,
    /// Run monitor i in network namespace i of this topology, on its address there.
    pub network: Option<Arc<netns::Topology>>,
    /// The open-file limit, soft and hard, of every monitor process (set before exec, so the
    /// monitor cannot raise it), e.g. 1,024 as under a default shell and a lowered hard limit.
    pub open_file_limit: Option<u64>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lease_ttl_secs: 3,
            env: Vec::new(),
            extra_config: String::new(),
            external_etcd: None,
            list_all_members: false,
            network: None,
            open_file_limit: None,
        }
    }
}

/// One monitor of a test cluster.
pub struct Monitor {
    pub name: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub grpc: String,
    pub http: String,
    /// The raw protocol's address (kfastblock's port).
    pub raw: String,
    pub etcd_client_url: String,
    child: Option<Child>,
}

impl Monitor {
    /// The pid of the running monitor process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A set of monitors forming one etcd cluster.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ip: String,
    _ip_claim: IpClaim,
    pub monitors: Vec<Monitor>,
    options: ClusterOptions,
}

/// A loopback address claimed by this test process alone: concurrent tests never share ports.
/// The claim is an exclusive lock on a per-address file, released when the claim is dropped
/// or the process dies.
pub struct IpClaim {
    pub ip: String,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Claims a random 127.x.y.z address that no other test process holds.
pub fn claim_loopback_ip() -> IpClaim {
    use std::hash::{BuildHasher, Hasher};
    let dir = std::env::temp_dir().join("fastblock-test-ips");
    std::fs::create_dir_all(&dir).expect("lock dir");
    // RandomState is seeded randomly per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let mut x = hasher.finish();
    for _ in 0..1000 {
        x = x
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
        let ip = format!(
            "127.{}.{}.{}",
            1 + (x >> 40) % 250,
            (x >> 24) % 256,
            1 + (x >> 8) % 254
        );
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(&ip))
            .expect("lock file");
        if let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            return IpClaim { ip, _lock: lock };
        }
    }
    panic!("no free loopback address found");
}

impl TestCluster {
    /// Writes the configs of `n` monitors (not started).
    pub fn new(n: usize, options: ClusterOptions) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("fbmon-test-")
            .tempdir()
            .expect("temp dir");
        let claim = claim_loopback_ip();
        let ip = claim.ip.clone();
        let port = |i: usize, k: usize| 24000 + i * 10 + k;
        // Monitor i's address: its namespace's, or the claimed loopback address.
        let host = |i: usize| match &options.network {
            Some(net) => net.monitor_ip(i),
            None => ip.clone(),
        };
        let initial_cluster = (0..n)
            .map(|i| format!("m{}=http://{}:{}", i + 1, host(i), port(i, 3)))
            .collect::<Vec<_>>()
            .join(",");
        let every_member = (0..n)
            .map(|i| format!("\"{}:{}\"", host(i), port(i, 2)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut monitors = Vec::new();
        for i in 0..n {
            let name = format!("m{}", i + 1);
            let ip = host(i);
            let etcd_server = if options.list_all_members {
                every_member.clone()
            } else {
                format!("\"{ip}:{}\"", port(i, 2))
            };
            let data_dir = dir.path().join(&name);
            let log = dir.path().join(format!("{name}.log"));
            let config = dir.path().join(format!("{name}.toml"));
            let etcd = match &options.external_etcd {
                Some(urls) => {
                    let list = urls
                        .split(',')
                        .map(|u| format!("\"{u}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("embedded_etcd = false\netcd_server = [{list}]")
                }
                None => format!(
                    r#"etcd_server = [{etcd_server}]
etcd_name = "{name}"
etcd_initial_cluster = "{initial_cluster}"
etcd_listen_client_urls = ["http://{ip}:{client}"]
etcd_advertise_client_urls = ["http://{ip}:{client}"]
etcd_listen_peer_urls = ["http://{ip}:{peer}"]
etcd_advertise_peer_urls = ["http://{ip}:{peer}"]
etcd_start_timeout = "120s""#,
                    client = port(i, 2),
                    peer = port(i, 3),
                ),
            };
            let text = format!(
                r#"hostname = "{name}"
address = "{ip}"
port = {grpc}
prometheus_port = {http}
raw_monitor_port = {raw}
data_dir = "{data}"
log_path = "{log}"
log_level = "info"
{etcd}
election_lease_ttl = "{ttl}s"
{extra}
"#,
                grpc = port(i, 0),
                http = port(i, 1),
                raw = port(i, 4),
                data = data_dir.display(),
                log = log.display(),
                ttl = options.lease_ttl_secs,
                extra = options.extra_config,
            );
            std::fs::write(&config, text).expect("write config");
            monitors.push(Monitor {
                name,
                config,
                data_dir,
                log,
                grpc: format!("{ip}:{}", port(i, 0)),
                http: format!("{ip}:{}", port(i, 1)),
                raw: format!("{ip}:{}", port(i, 4)),
                etcd_client_url: options
                    .external_etcd
                    .as_deref()
                    .and_then(|u| u.split(',').next())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("http://{ip}:{}", port(i, 2))),
                child: None,
            });
        }
        TestCluster {
            dir,
            ip,
            _ip_claim: claim,
            monitors,
            options,
        }
    }

    /// Starts every monitor.
    pub fn start_all(&mut self) {
        for i in 0..self.monitors.len() {
            self.start(i);
        }
    }

    /// Starts monitor `i` (0-based).
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Starts monitor `i` with extra command-line arguments (e.g. `--maintenance`).
    pub fn start_with(&mut self, i: usize, args: &[&str]) {
        let env = self.options.env.clone();
        let m = &mut self.monitors[i];
        assert!(m.child.is_none(), "{} already running", m.name);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.data_dir.with_extension("stderr"))
            .expect("stderr file");
        let binary = env!("CARGO_BIN_EXE_fastblock-mon");
        let mut cmd = match &self.options.network {
            Some(net) => net.command(i, binary),
            None => Command::new(binary),
        };
        cmd.arg("--conf")
            .arg(&m.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        if let Some(limit) = self.options.open_file_limit {
            limit_open_files(&mut cmd, limit);
        }
        m.child = Some(cmd.spawn().expect("spawn fastblock-mon"));
    }

    /// Sends `signal` to monitor `i` (the monitor process only, not its etcd child).
    pub fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        let pid = self.monitors[i].pid().expect("monitor running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
    }

    /// Waits for monitor `i` to exit and forgets it.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> ExitStatus {
        let child = self.monitors[i].child.as_mut().expect("monitor running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.monitors[i].child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.monitors[i].name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills monitor `i` with SIGKILL and reaps it.
    pub fn kill9(&mut self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(i, Duration::from_secs(10));
    }

    /// The pid of monitor `i`'s etcd member, from the pid file the monitor writes.
    pub fn etcd_pid(&self, i: usize) -> Option<u32> {
        let pid_file = self.monitors[i].data_dir.join("etcd.pid");
        let pid: u32 = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        process_alive(pid).then_some(pid)
    }

    /// GET on monitor `i`'s HTTP port: (status, body), None if unreachable.
    pub fn http_get(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_get(&self.monitors[i].http, path)
    }

    /// Parsed /readyz of monitor `i`.
    pub fn readyz(&self, i: usize) -> Option<serde_json::Value> {
        let (_, body) = self.http_get(i, "/readyz")?;
        serde_json::from_str(&body).ok()
    }

    /// True when monitor `i` serves as leader.
    pub fn is_serving_leader(&self, i: usize) -> bool {
        self.monitors[i].child.is_some()
            && self
                .readyz(i)
                .is_some_and(|v| v["role"] == "leader" && v["ready"] == true)
    }

    /// Waits until exactly one of `among` serves as leader and returns it.
    pub fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        let mut found = None;
        wait_until(timeout, "a serving leader", || {
            let leaders: Vec<usize> = among
                .iter()
                .copied()
                .filter(|&i| self.is_serving_leader(i))
                .collect();
            found = (leaders.len() == 1).then(|| leaders[0]);
            found.is_some()
        });
        found.expect("leader")
    }

    /// A client of monitor `i` only (it does not follow leader hints elsewhere).
    pub fn client(&self, i: usize) -> MonitorClient {
        MonitorClient::new(
            &[self.monitors[i].grpc.clone()],
            ClientOptions {
                deadline: Duration::from_secs(20),
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    /// A client of every monitor, following the leader.
    pub fn cluster_client(&self) -> MonitorClient {
        let all: Vec<String> = self.monitors.iter().map(|m| m.grpc.clone()).collect();
        MonitorClient::new(
            &all,
            ClientOptions {
                deadline: Duration::from_secs(60),
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    /// Reads `key` through [`TestCluster::etcd`], retrying while etcd answers that it is
    /// between raft leaders (the monitors move raft leadership around as leaders change).
    pub async fn etcd_get(&self, key: String) -> etcd_client::GetResponse {
        let mut etcd = self.etcd().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match etcd.get(key.clone(), None).await {
                Ok(r) => return r,
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("reading {key} from etcd: {e}"),
            }
        }
    }

    /// An etcd client of the running members.
    pub async fn etcd(&self) -> etcd_client::Client {
        let endpoints: Vec<String> = self
            .monitors
            .iter()
            .map(|m| m.etcd_client_url.clone())
            .collect();
        etcd_client::Client::connect(endpoints, None)
            .await
            .expect("etcd client")
    }

    /// The value of a metric line `name` (exact series text) on monitor `i`.
    pub fn metric(&self, i: usize, series: &str) -> Option<f64> {
        let (_, body) = self.http_get(i, "/metrics")?;
        body.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Monitor `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.monitors[i].log).unwrap_or_default()
    }

    /// The etcd endpoints, comma-separated (for etcdctl).
    pub fn etcd_endpoints(&self) -> String {
        self.monitors
            .iter()
            .map(|m| m.etcd_client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for m in &mut self.monitors {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Members die with their monitors; make sure, since a stopped (SIGSTOP) monitor's
        // member would otherwise outlive it until the kernel delivers the death signal.
        for pid in etcd_pids_under(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::thread::panicking() {
            for m in &self.monitors {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let stderr = std::fs::read_to_string(m.data_dir.with_extension("stderr"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" etcd:"))
                    .rev()
                    .take(60)
                    .collect();
                eprintln!(
                    "===== {} log (last lines, etcd lines omitted) =====",
                    m.name
                );
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
                let stderr_tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                if !stderr_tail.is_empty() {
                    eprintln!("----- {} stderr (last lines) -----", m.name);
                    for l in stderr_tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// Makes a spawned process die when the test process dies.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: only async-signal-safe prctl between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// Sets a spawned process's open-file limit (soft and hard) to `limit`.
pub fn limit_open_files(cmd: &mut Command, limit: u64) {
    // SAFETY: only the async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CPU time (user + system) process `pid` has used so far, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3,
    // utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Pids of etcd processes whose data dir is under `dir`.
pub fn etcd_pids_under(dir: &Path) -> Vec<u32> {
    let needle = format!("--data-dir={}", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .any(|a| a.starts_with(needle.as_bytes()))
                })
                .unwrap_or(false)
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    fastblock_monitor::etcd::embedded::process_alive(pid)
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout`.
/// A standalone monitor serving as leader that marks no OSD down (benchmarks boot thousands of
/// OSDs that never send heartbeats).
pub fn standalone_for_bench() -> TestCluster {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"3600s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], Duration::from_secs(120));
    c
}

/// `n` separate connections to `addr`, connected on first use.
pub fn lazy_channels(addr: &str, n: usize) -> Vec<tonic::transport::Channel> {
    (0..n)
        .map(|_| {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect_lazy()
        })
        .collect()
}

pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Runs a binary of this package and returns (exit code, stdout, stderr).
pub fn run_bin(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A plain etcd server (for external mode) in `dir` on `ip`, returning it and its client URL.
pub fn start_external_etcd(dir: &Path, ip: &str) -> (Child, String) {
    let client = format!("http://{ip}:23790");
    let peer = format!("http://{ip}:23800");
    let mut cmd = Command::new("etcd");
    cmd.arg("--name=external")
        .arg(format!(
            "--data-dir={}",
            dir.join("external-etcd").display()
        ))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=external={peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    (cmd.spawn().expect("etcd must be installed"), client)
}

/// A plain etcd cluster of `n` members (for external mode) in `dir` on `ip`: the processes and
/// their client URLs, in member order.
pub fn start_external_etcd_cluster(dir: &Path, ip: &str, n: usize) -> (Vec<Child>, Vec<String>) {
    let peer = |k: usize| format!("http://{ip}:{}", 23810 + 10 * k);
    let client = |k: usize| format!("http://{ip}:{}", 23811 + 10 * k);
    let initial = (0..n)
        .map(|k| format!("ext{k}={}", peer(k)))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for k in 0..n {
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name=ext{k}"))
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("external-etcd-{k}")).display()
            ))
            .arg(format!("--listen-client-urls={}", client(k)))
            .arg(format!("--advertise-client-urls={}", client(k)))
            .arg(format!("--listen-peer-urls={}", peer(k)))
            .arg(format!("--initial-advertise-peer-urls={}", peer(k)))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-state=new")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        children.push(cmd.spawn().expect("etcd must be installed"));
    }
    (children, (0..n).map(client).collect())
}

/// A `/proc/<pid>/status` memory figure of a process (e.g. `VmRSS`, `VmHWM`), in bytes.
pub fn proc_memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib * 1024
}
