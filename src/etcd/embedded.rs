//! The embedded etcd member: a supervised child process of the `etcd` binary.
//!
//! Start-up: find the binary (clear error if missing), stop a member left running on our data
//! dir by a previous monitor instance, spawn etcd with flags from monitor.toml, then wait
//! (bounded) until it answers a linearizable read and proves it is *our* member. Afterwards a
//! supervisor task restarts it with back-off whenever it dies. The child gets SIGKILL when the
//! monitor dies, even on `kill -9` (Linux parent-death signal), and its log lines are forwarded
//! into ours under the `etcd` target.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::endpoints::{EtcdFailure, within};
use crate::config::{EmbeddedEtcdConfig, url_text};
use crate::metrics::Metrics;
use crate::text::shown;
use crate::timing;

/// Lines of etcd output kept to explain a failed start.
const TAIL_LINES: usize = 20;
/// The most of `etcd --version` output read: etcd prints four short lines; anything else
/// is not etcd, and need not be read to the end.
const VERSION_OUTPUT_MAX: u64 = 4096;
/// The oldest etcd the monitor works with (major, minor).
const MIN_ETCD_VERSION: (u32, u32) = (3, 4);

/// Why the embedded member could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedEtcdError {
    /// The path is given quoted and cut (see [`shown`]).
    #[error(
        "the etcd binary {0} was not found; install it (Debian/Ubuntu: apt-get install etcd-server), \
         set etcd_binary in monitor.toml, or set embedded_etcd = false to use an existing etcd cluster"
    )]
    BinaryMissing(String),
    /// The binary exists but cannot serve as etcd: not executable, not etcd, too old. One line.
    #[error("the etcd binary {binary} {problem}")]
    NotUsable { binary: String, problem: String },
    #[error("cannot prepare the etcd data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start etcd: {0}")]
    Spawn(std::io::Error),
    #[error("etcd exited during start-up ({status}); last output: {tail}")]
    ExitedEarly { status: String, tail: String },
    #[error(
        "etcd member '{name}' did not become healthy within {timeout:?} ({detail}); \
         with {cluster_size} members a quorum of {quorum} must be running"
    )]
    NotHealthy {
        name: String,
        timeout: Duration,
        /// The last probe's failure.
        detail: ProbeFailure,
        cluster_size: usize,
        quorum: usize,
    },
    #[error("cannot create a client for the embedded etcd member at {url}: {failure}")]
    Client { url: String, failure: EtcdFailure },
    #[error(
        "the etcd answering at {url} is not member '{name}' started by this monitor (member id differs)"
    )]
    WrongMember { url: String, name: String },
    #[error("shutdown requested during etcd start-up")]
    Cancelled,
}

/// Why the member did not pass a health probe: the request that failed, and how.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {failure}")]
pub struct ProbeFailure {
    /// "linearizable read", "status" or "member list".
    pub step: &'static str,
    pub failure: EtcdFailure,
}

/// A running child and what is needed to watch it.
struct Child {
    pid: u32,
    exited: oneshot::Receiver<std::io::Result<ExitStatus>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// Handle on the supervised member. Dropping it does not stop etcd; call [`EmbeddedEtcd::stop`].
pub struct EmbeddedEtcd {
    pid: watch::Receiver<Option<u32>>,
    stop: CancellationToken,
    supervisor: tokio::task::JoinHandle<()>,
}

impl EmbeddedEtcd {
    /// Starts the member and waits until it is healthy, then supervises it.
    pub async fn start(
        cfg: EmbeddedEtcdConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<EmbeddedEtcd, EmbeddedEtcdError> {
        let binary = resolve_binary(&cfg.binary)?;
        check_version(&binary, timing::ETCD_VERSION_TIMEOUT).await?;
        prepare_data_dir(&cfg.data_dir)?;
        stop_leftover_member(&cfg.data_dir).await;

        let child = spawn(&binary, &cfg)?;
        let (pid_tx, pid_rx) = watch::channel(Some(child.pid));
        metrics.etcd_up.set(1);
        let child = match wait_healthy(&cfg, child, &shutdown).await {
            Ok(c) => c,
            Err(e) => {
                metrics.etcd_up.set(0);
                return Err(e);
            }
        };
        tracing::info!(member = %cfg.name, pid = pid_rx.borrow().unwrap_or(0), "embedded etcd member is healthy");

        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(cfg, binary, child, pid_tx, metrics, stop.clone()));
        Ok(EmbeddedEtcd {
            pid: pid_rx,
            stop,
            supervisor,
        })
    }

    /// The current child's pid (None between a crash and its restart).
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Stops the member: SIGTERM, then SIGKILL after a grace period. Waits for it to exit.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.supervisor.await {
            tracing::error!(error = %e, "etcd supervisor task failed");
        }
    }
}

/// Keeps the member running until `stop` is cancelled.
async fn supervise(
    cfg: EmbeddedEtcdConfig,
    binary: PathBuf,
    mut child: Child,
    pid_tx: watch::Sender<Option<u32>>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut backoff = timing::ETCD_RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => {
                terminate(child).await;
                pid_tx.send_replace(None);
                metrics.etcd_up.set(0);
                return;
            }
            status = &mut child.exited => {
                pid_tx.send_replace(None);
                metrics.etcd_up.set(0);
                metrics.etcd_restarts.inc();
                let status = describe_exit(status);
                tracing::error!(
                    member = %cfg.name,
                    %status,
                    last_output = %tail_text(&child.tail),
                    restart_in_ms = backoff.as_millis() as u64,
                    "embedded etcd exited unexpectedly; restarting"
                );
            }
        }
        if started.elapsed() >= timing::ETCD_STABLE_AFTER {
            backoff = timing::ETCD_RESTART_BACKOFF_MIN;
        }
        // Restart until one attempt sticks or we are told to stop.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(timing::ETCD_RESTART_BACKOFF_MAX);
            stop_leftover_member(&cfg.data_dir).await;
            match spawn(&binary, &cfg) {
                Ok(c) => {
                    tracing::info!(member = %cfg.name, pid = c.pid, "embedded etcd restarted");
                    pid_tx.send_replace(Some(c.pid));
                    metrics.etcd_up.set(1);
                    child = c;
                    break;
                }
                Err(e) => {
                    tracing::error!(member = %cfg.name, error = %e, "cannot restart embedded etcd");
                }
            }
        }
    }
}

/// Asks the child to stop, and kills it if it does not within the grace period.
async fn terminate(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    match tokio::time::timeout(timing::ETCD_STOP_GRACE, &mut child.exited).await {
        Ok(status) => {
            tracing::info!(pid = child.pid, status = %describe_exit(status), "embedded etcd stopped")
        }
        Err(_) => {
            tracing::warn!(pid = child.pid, "embedded etcd ignored SIGTERM; killing it");
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.exited.await;
        }
    }
}

fn describe_exit(status: Result<std::io::Result<ExitStatus>, oneshot::error::RecvError>) -> String {
    match status {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(_) => "watcher thread ended".to_string(),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the binary on PATH when it is a bare name (the first executable one, as a shell
/// would); a given path must be an executable file.
fn resolve_binary(binary: &Path) -> Result<PathBuf, EmbeddedEtcdError> {
    let missing = || EmbeddedEtcdError::BinaryMissing(shown(&binary.display().to_string()));
    if binary.components().count() > 1 {
        if !binary.is_file() {
            return Err(missing());
        }
        if !is_executable(binary) {
            return Err(EmbeddedEtcdError::NotUsable {
                binary: shown(&binary.display().to_string()),
                problem: "is not executable (chmod +x it or point etcd_binary at etcd)".to_string(),
            });
        }
        return Ok(binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(missing)
}

/// Runs `binary --version` and checks that it is etcd 3.4 or newer. Reads at most
/// [`VERSION_OUTPUT_MAX`] bytes for at most `timeout`, then kills the program: whatever it is,
/// it cannot flood or hang the start-up, and the error quotes one cut line of what it printed.
async fn check_version(binary: &Path, timeout: Duration) -> Result<(), EmbeddedEtcdError> {
    use tokio::io::AsyncReadExt;
    let unusable = |problem: String| EmbeddedEtcdError::NotUsable {
        binary: shown(&binary.display().to_string()),
        problem,
    };
    let mut child = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unusable(format!("cannot be run ({e})")))?;
    let mut output = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => {
            let mut limited = stdout.take(VERSION_OUTPUT_MAX);
            tokio::time::timeout(timeout, limited.read_to_end(&mut output)).await
        }
        None => Ok(Ok(0)),
    };
    // Done with it either way; a program still running is not waited for.
    let _ = child.start_kill();
    let _ = child.wait().await;
    match read {
        Err(_) => {
            return Err(unusable(format!(
                "did not answer --version within {}",
                humantime::format_duration(timeout)
            )));
        }
        Ok(Err(e)) => return Err(unusable(format!("--version output unreadable ({e})"))),
        Ok(Ok(_)) => {}
    }
    let text = String::from_utf8_lossy(&output);
    let first = text.lines().next().unwrap_or_default();
    let Some(version) = first.strip_prefix("etcd Version:").map(str::trim) else {
        let printed = if first.trim().is_empty() {
            "nothing".to_string()
        } else {
            shown(first)
        };
        return Err(unusable(format!(
            "is not etcd: its --version printed {printed}, not 'etcd Version: …'"
        )));
    };
    match parse_major_minor(version) {
        Some(v) if v >= MIN_ETCD_VERSION => Ok(()),
        _ => Err(unusable(format!(
            "is etcd {}; the monitor needs etcd {}.{} or newer",
            shown(version),
            MIN_ETCD_VERSION.0,
            MIN_ETCD_VERSION.1
        ))),
    }
}

/// `3.4.30` → (3, 4), `3.5-rc.1` → (3, 5); None when the first two parts do not start with
/// digits.
fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let number = |part: Option<&str>| -> Option<u32> {
        let part = part?;
        let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        part[..digits].parse().ok()
    };
    let mut parts = version.split('.');
    Some((number(parts.next())?, number(parts.next())?))
}

fn prepare_data_dir(dir: &Path) -> Result<(), EmbeddedEtcdError> {
    let err = |source| EmbeddedEtcdError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // etcd insists on 0700 for its data directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

/// The `--data-dir=` argument: absolute, so leftover members can be recognised by it.
fn data_dir_arg(dir: &Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("--data-dir={}", abs.display())
}

/// Stops any etcd still running on our data dir (from a monitor instance that died without
/// taking its member along, e.g. when the parent-death signal could not be delivered).
async fn stop_leftover_member(data_dir: &Path) {
    let wanted = data_dir_arg(data_dir);
    for pid in find_processes_with_arg(&wanted) {
        tracing::warn!(pid, data_dir = %data_dir.display(), "stopping an etcd member left running on our data dir");
        let p = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timing::ETCD_STOP_GRACE;
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(timing::ETCD_LEFTOVER_EXIT_POLL).await;
        }
        if process_alive(pid) {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            while process_alive(pid) {
                tokio::time::sleep(timing::ETCD_LEFTOVER_KILL_POLL).await;
            }
        }
    }
}

/// Pids of etcd processes whose command line contains exactly `arg`.
fn find_processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|b| *b == 0);
            let is_etcd = args
                .next()
                .and_then(|a0| {
                    Path::new(std::str::from_utf8(a0).ok()?)
                        .file_name()
                        .map(|n| n.to_string_lossy().contains("etcd"))
                })
                .unwrap_or(false);
            is_etcd && args.any(|a| a == arg.as_bytes())
        })
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The full etcd command line for this member.
pub fn etcd_args(cfg: &EmbeddedEtcdConfig) -> Vec<String> {
    let join = |urls: &[url::Url]| urls.iter().map(url_text).collect::<Vec<_>>().join(",");
    let state = if cfg.data_dir.join("member").is_dir() {
        "existing"
    } else {
        "new"
    };
    vec![
        format!("--name={}", cfg.name),
        data_dir_arg(&cfg.data_dir),
        format!("--listen-client-urls={}", join(&cfg.listen_client_urls)),
        format!(
            "--advertise-client-urls={}",
            join(&cfg.advertise_client_urls)
        ),
        format!("--listen-peer-urls={}", join(&cfg.listen_peer_urls)),
        format!(
            "--initial-advertise-peer-urls={}",
            join(&cfg.advertise_peer_urls)
        ),
        format!("--initial-cluster={}", cfg.initial_cluster),
        format!("--initial-cluster-state={state}"),
        format!("--initial-cluster-token={}", cfg.initial_cluster_token),
        "--auto-compaction-mode=periodic".to_string(),
        format!(
            "--auto-compaction-retention={}s",
            cfg.auto_compaction_retention.as_secs().max(1)
        ),
        format!("--quota-backend-bytes={}", cfg.quota_backend_bytes),
        format!("--max-request-bytes={}", cfg.max_request_bytes),
        format!("--max-txn-ops={}", cfg.max_txn_ops),
        // A member rejoining after a partition asks before it campaigns, instead of deposing a
        // healthy raft leader with its higher term (etcd 3.4 leaves this off; 3.5 turns it on).
        "--pre-vote=true".to_string(),
        "--logger=zap".to_string(),
        "--log-outputs=stderr".to_string(),
    ]
}

/// Spawns etcd from a dedicated thread that waits for it. The parent-death signal is tied to
/// the thread that forked, so the forking thread must outlive the child: this one does, since
/// it only ends once the child has exited.
fn spawn(binary: &Path, cfg: &EmbeddedEtcdConfig) -> Result<Child, EmbeddedEtcdError> {
    let args = etcd_args(cfg);
    tracing::info!(member = %cfg.name, binary = %binary.display(), args = %args.join(" "), "starting embedded etcd");
    let mut cmd = Command::new(binary);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a Ctrl-C in the terminal reaches the monitor only, which then
        // stops etcd after resigning, in order.
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(k);
        }
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe libc
    // functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }

    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("etcd-child".to_string())
        .spawn(move || match cmd.spawn() {
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
            Ok(mut child) => {
                let pipes = (child.id(), child.stdout.take(), child.stderr.take());
                let _ = started_tx.send(Ok(pipes));
                let _ = exit_tx.send(child.wait());
            }
        })
        .map_err(EmbeddedEtcdError::Spawn)?;
    let (pid, stdout, stderr) = started_rx
        .recv()
        .map_err(|_| EmbeddedEtcdError::Spawn(std::io::Error::other("spawner thread died")))?
        .map_err(EmbeddedEtcdError::Spawn)?;

    let pid_file = cfg.data_dir.with_extension("pid");
    if let Err(e) = std::fs::write(&pid_file, format!("{pid}\n")) {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot write etcd pid file");
    }
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    if let Some(out) = stdout {
        forward_output(out, cfg.name.clone(), tail.clone());
    }
    if let Some(err) = stderr {
        forward_output(err, cfg.name.clone(), tail.clone());
    }
    Ok(Child {
        pid,
        exited: exit_rx,
        tail,
    })
}

/// Forwards etcd's (zap JSON) log lines into our log, keeping the last few for error reports.
fn forward_output(
    pipe: impl std::io::Read + Send + 'static,
    member: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let spawned = std::thread::Builder::new()
        .name("etcd-log".to_string())
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let (level, text) = parse_etcd_log_line(&line);
                {
                    let mut t = tail.lock();
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(text.clone());
                }
                match level {
                    EtcdLevel::Error => tracing::error!(target: "etcd", member = %member, "{text}"),
                    EtcdLevel::Warn => tracing::warn!(target: "etcd", member = %member, "{text}"),
                    EtcdLevel::Info => tracing::info!(target: "etcd", member = %member, "{text}"),
                    EtcdLevel::Debug => tracing::debug!(target: "etcd", member = %member, "{text}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the etcd log forwarder");
    }
}

#[derive(Debug, PartialEq, Eq)]
enum EtcdLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Splits a zap JSON line into a level and `msg {other fields}`; plain lines pass through.
fn parse_etcd_log_line(line: &str) -> (EtcdLevel, String) {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_str::<serde_json::Value>(line)
    else {
        return (EtcdLevel::Info, line.to_string());
    };
    let level = match obj.remove("level").as_ref().and_then(|v| v.as_str()) {
        Some("error" | "fatal" | "panic" | "dpanic") => EtcdLevel::Error,
        Some("warn") => EtcdLevel::Warn,
        Some("debug") => EtcdLevel::Debug,
        _ => EtcdLevel::Info,
    };
    let msg = obj
        .remove("msg")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    obj.remove("ts");
    obj.remove("caller");
    if obj.is_empty() {
        (level, msg)
    } else {
        (level, format!("{msg} {}", serde_json::Value::Object(obj)))
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let t = tail.lock();
    let lines: Vec<&str> = t.iter().rev().take(3).rev().map(String::as_str).collect();
    if lines.is_empty() {
        "(none)".to_string()
    } else {
        lines.join(" | ")
    }
}

/// Waits until the member serves linearizable reads and is the member we started.
async fn wait_healthy(
    cfg: &EmbeddedEtcdConfig,
    mut child: Child,
    shutdown: &CancellationToken,
) -> Result<Child, EmbeddedEtcdError> {
    let url = cfg
        .advertise_client_urls
        .first()
        .map(url_text)
        .unwrap_or_default();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut detail;
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(timing::ETCD_START_CONNECT_TIMEOUT)
        .with_require_leader(true);
    let client = etcd_client::Client::connect([url.clone()], Some(options))
        .await
        .map_err(|e| EmbeddedEtcdError::Client {
            url: url.clone(),
            failure: EtcdFailure::from_client(&e),
        })?;
    loop {
        if shutdown.is_cancelled() {
            terminate(child).await;
            return Err(EmbeddedEtcdError::Cancelled);
        }
        if let Ok(status) = child.exited.try_recv() {
            return Err(EmbeddedEtcdError::ExitedEarly {
                status: describe_exit(Ok(status)),
                tail: tail_text(&child.tail),
            });
        }
        match probe(&client, &cfg.name).await {
            Ok(true) => return Ok(child),
            Ok(false) => {
                terminate(child).await;
                return Err(EmbeddedEtcdError::WrongMember {
                    url,
                    name: cfg.name.clone(),
                });
            }
            Err(e) => detail = e,
        }
        if started.elapsed() >= cfg.start_timeout {
            terminate(child).await;
            return Err(EmbeddedEtcdError::NotHealthy {
                name: cfg.name.clone(),
                timeout: cfg.start_timeout,
                detail,
                cluster_size: cfg.cluster_size,
                quorum: cfg.cluster_size / 2 + 1,
            });
        }
        if last_report.elapsed() >= timing::ETCD_START_REPORT_EVERY {
            last_report = Instant::now();
            tracing::info!(
                member = %cfg.name,
                waited_s = started.elapsed().as_secs(),
                members = cfg.cluster_size,
                quorum = cfg.cluster_size / 2 + 1,
                last_error = %detail,
                "waiting for the embedded etcd member to become healthy (the other members of the \
                 cluster must be started too)"
            );
        }
        tokio::time::sleep(timing::ETCD_HEALTH_POLL).await;
    }
}

/// Ok(true): healthy and ours. Ok(false): healthy but another member answers. Err: not healthy.
async fn probe(client: &etcd_client::Client, name: &str) -> Result<bool, ProbeFailure> {
    let mut c = client.clone();
    let t = timing::ETCD_START_PROBE_TIMEOUT;
    let failed = |step| move |failure| ProbeFailure { step, failure };
    within(t, c.get("/fastblock-health-probe", None))
        .await
        .map_err(failed("linearizable read"))?;
    let status = within(t, c.status()).await.map_err(failed("status"))?;
    let members = within(t, c.member_list())
        .await
        .map_err(failed("member list"))?;
    let answering = status.header().map(|h| h.member_id()).unwrap_or(0);
    Ok(members
        .members()
        .iter()
        .any(|m| m.name() == name && m.id() == answering))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_lines_are_split() {
        let (l, t) = parse_etcd_log_line(
            r#"{"level":"warn","ts":"2026-01-01","caller":"x.go:1","msg":"slow fdatasync","took":"1s"}"#,
        );
        assert_eq!(l, EtcdLevel::Warn);
        assert_eq!(t, r#"slow fdatasync {"took":"1s"}"#);
        let (l, t) = parse_etcd_log_line("plain text");
        assert_eq!(l, EtcdLevel::Info);
        assert_eq!(t, "plain text");
    }

    #[test]
    fn missing_binary_is_explained() {
        let e = resolve_binary(Path::new("definitely-not-an-etcd-binary")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("apt-get install etcd-server"), "{text}");
        let e = resolve_binary(Path::new("/nonexistent/etcd")).unwrap_err();
        assert!(matches!(e, EmbeddedEtcdError::BinaryMissing(_)));
    }

    /// A program in a temp dir: `#!/bin/sh` and `body`, with `mode`.
    fn program(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// The one-line error of `check_version` on `binary`.
    async fn version_error(binary: &Path, timeout: Duration) -> String {
        let e = check_version(binary, timeout).await.unwrap_err();
        assert!(matches!(e, EmbeddedEtcdError::NotUsable { .. }), "{e:?}");
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        text
    }

    #[test]
    fn a_binary_that_is_not_executable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = program(dir.path(), "etcd", "echo 'etcd Version: 3.4.30'", 0o644);
        let e = resolve_binary(&etcd).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "the etcd binary '{}' is not executable (chmod +x it or point etcd_binary at etcd)",
                etcd.display()
            )
        );
    }

    #[tokio::test]
    async fn a_program_that_is_not_etcd_is_named_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let other = program(
            dir.path(),
            "other",
            "echo 'other 1.0 (a tool)'; echo 'Copyright: nobody'; echo 'etcd Version: 3.4.30'",
            0o755,
        );
        assert_eq!(
            version_error(&other, Duration::from_secs(30)).await,
            format!(
                "the etcd binary '{}' is not etcd: its --version printed 'other 1.0 (a tool)', not 'etcd Version: …'",
                other.display()
            )
        );
        let silent = program(dir.path(), "silent", "exit 0", 0o755);
        assert!(
            version_error(&silent, Duration::from_secs(30))
                .await
                .ends_with("is not etcd: its --version printed nothing, not 'etcd Version: …'")
        );
    }

    #[tokio::test]
    async fn endless_output_is_cut_and_a_hanging_program_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // One endless line: only the first bytes are read, and only a few are quoted.
        let flood = program(dir.path(), "flood", "exec tr '\\0' x < /dev/zero", 0o755);
        let e = version_error(&flood, Duration::from_secs(30)).await;
        assert!(
            e.contains("is not etcd: its --version printed 'xxxx"),
            "{e}"
        );
        assert!(e.contains("'…(4096 bytes)"), "{e}");
        assert!(e.len() < 300, "{e}");
        let hang = program(dir.path(), "hang", "exec sleep 600", 0o755);
        assert!(
            version_error(&hang, Duration::from_millis(300))
                .await
                .ends_with("did not answer --version within 300ms"),
        );
    }

    #[tokio::test]
    async fn etcd_older_than_3_4_is_refused_and_newer_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let old = program(
            dir.path(),
            "etcd-old",
            "echo 'etcd Version: 3.3.25'; echo 'Git SHA: 0'",
            0o755,
        );
        assert_eq!(
            version_error(&old, Duration::from_secs(30)).await,
            format!(
                "the etcd binary '{}' is etcd '3.3.25'; the monitor needs etcd 3.4 or newer",
                old.display()
            )
        );
        let garbled = program(dir.path(), "etcd-x", "echo 'etcd Version: x.y'", 0o755);
        assert!(
            version_error(&garbled, Duration::from_secs(30))
                .await
                .ends_with("is etcd 'x.y'; the monitor needs etcd 3.4 or newer")
        );
        for (name, version) in [
            ("a", "3.4.0"),
            ("b", "3.10.2"),
            ("c", "3.5.0-rc.1"),
            ("d", "4.0"),
        ] {
            let etcd = program(
                dir.path(),
                name,
                &format!("echo 'etcd Version: {version}'"),
                0o755,
            );
            check_version(&etcd, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{version}: {e}"));
        }
        // And the real one the tests run against.
        let real = resolve_binary(Path::new("etcd")).unwrap();
        check_version(&real, Duration::from_secs(30)).await.unwrap();
    }

    #[test]
    fn args_follow_config_and_data_dir_state() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "hostname = \"m1\"\ndata_dir = \"{}\"\n",
            dir.path().display()
        );
        let cfg = crate::config::Config::parse("t", &text, &Default::default())
            .unwrap()
            .etcd
            .embedded
            .unwrap();
        let args = etcd_args(&cfg);
        assert!(args.contains(&"--name=m1".to_string()));
        assert!(args.contains(&"--initial-cluster-state=new".to_string()));
        assert!(args.contains(&"--max-txn-ops=128".to_string()));
        assert!(args.contains(&"--pre-vote=true".to_string()));
        assert!(args.contains(&"--auto-compaction-retention=600s".to_string()));
        std::fs::create_dir_all(cfg.data_dir.join("member")).unwrap();
        assert!(etcd_args(&cfg).contains(&"--initial-cluster-state=existing".to_string()));
    }
}
