//! A standalone monitor with its embedded etcd: election, fbclient, clean stop, kill -9, a
//! member left over from a previous instance, etcd dying under a running monitor, no etcd.

mod common;

fn flag(
    f: fastblock_monitor::proto::monitor::ClusterFlag,
) -> fastblock_monitor::proto::monitor::SetFlagRequest {
    fastblock_monitor::proto::monitor::SetFlagRequest { flag: f as i32 }
}

use std::time::Duration;

use common::{ClusterOptions, TestCluster, die_with_parent, process_alive, run_bin, wait_until};
use fastblock_monitor::proto::monitor::ClusterFlag;
use nix::sys::signal::Signal;

const FBCLIENT: &str = env!("CARGO_BIN_EXE_fbclient");
const LONG: Duration = Duration::from_secs(60);

#[test]
fn starts_leads_answers_fbclient_and_stops_cleanly() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    assert_eq!(c.wait_leader(&[0], LONG), 0);
    let addr = c.monitors[0].grpc.clone();

    // Go-style flags.
    let (code, out, err) = run_bin(FBCLIENT, &["-op=leader", &format!("-mon={addr}")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("leader: m1 ({addr}) epoch ")),
        "{out}"
    );
    assert!(out.contains("m1") && out.contains("leader"), "{out}");
    // Ordinary flags, monitor from the environment, JSON output.
    let (code, out, err) = run_bin(
        FBCLIENT,
        &["--op", "leader", "--json"],
        &[("FASTBLOCK_MON", &addr)],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["leader"]["name"], "m1");
    assert_eq!(v["monitors"].as_array().unwrap().len(), 1);
    // The monitor list from the config file.
    let conf = format!("-conf={}", c.monitors[0].config.display());
    let (code, out, _) = run_bin(FBCLIENT, &["-op=leader", &conf], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("leader: m1"), "{out}");

    let etcd = c.etcd_pid(0).expect("etcd child running");
    c.signal(0, Signal::SIGTERM);
    let status = c.wait_exit(0, Duration::from_secs(30));
    assert!(status.success(), "clean exit expected, got {status}");
    wait_until(Duration::from_secs(10), "etcd child gone", || {
        !process_alive(etcd)
    });
    assert!(
        common::etcd_pids_under(c.dir.path()).is_empty(),
        "no orphan etcd"
    );
    assert!(c.log(0).contains("resigning leadership"));

    // An unknown op and an unreachable monitor fail with one line and a non-zero code.
    let (code, _, err) = run_bin(FBCLIENT, &["-op=nosuchop", &format!("-mon={addr}")], &[]);
    assert_eq!(code, 1);
    assert!(
        err.trim()
            .starts_with("fbclient: unknown op 'nosuchop' (known: leader, status,"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = run_bin(
        FBCLIENT,
        &["-op=leader", &format!("-mon={addr}"), "-timeout=1s"],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fbclient: no leader reachable within 1s"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_takes_etcd_along_and_a_restart_copes_with_a_leftover_member() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let r = c
        .client(0)
        .set_flag(flag(ClusterFlag::Noout))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 1);

    let etcd = c.etcd_pid(0).expect("etcd child");
    let cmdline = std::fs::read(format!("/proc/{etcd}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    c.kill9(0);
    wait_until(
        Duration::from_secs(10),
        "etcd to die with its monitor",
        || !process_alive(etcd),
    );

    // Leave a member running on the data dir, as a monitor that could not take it along would.
    let mut leftover = std::process::Command::new(&argv[0]);
    leftover
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    die_with_parent(&mut leftover);
    let mut leftover = leftover.spawn().unwrap();
    let leftover_pid = leftover.id();
    let etcd_client_url = c.monitors[0].etcd_client_url.clone();
    let mut probe = etcd_client::Client::connect([etcd_client_url], None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    while probe.get("probe", None).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "leftover etcd never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.start(0);
    c.wait_leader(&[0], LONG);
    let _ = leftover.wait();
    assert!(
        !process_alive(leftover_pid),
        "the leftover member was stopped"
    );
    let new_etcd = c.etcd_pid(0).expect("new etcd child");
    assert_ne!(new_etcd, leftover_pid);
    assert!(
        c.log(0)
            .contains("stopping an etcd member left running on our data dir")
    );
    // State survived, and the epoch went on from where it was.
    let r = c
        .client(0)
        .set_flag(flag(ClusterFlag::Norebalance))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 2);
    assert_eq!(
        r.flags,
        vec![ClusterFlag::Noout as i32, ClusterFlag::Norebalance as i32]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_under_a_running_monitor_is_restarted_and_leadership_recovers() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    c.client(0)
        .set_flag(flag(ClusterFlag::Noout))
        .await
        .unwrap();
    let etcd = c.etcd_pid(0).expect("etcd child");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(etcd as i32), Signal::SIGKILL).unwrap();

    wait_until(LONG, "a new etcd child", || {
        c.etcd_pid(0).is_some_and(|p| p != etcd)
    });
    wait_until(LONG, "the restart to be counted", || {
        c.metric(0, "fastblock_embedded_etcd_restarts_total") == Some(1.0)
    });
    c.wait_leader(&[0], LONG);
    let r = c.client(0).set_flag(flag(ClusterFlag::Noin)).await.unwrap();
    assert_eq!(
        r.flags,
        vec![ClusterFlag::Noout as i32, ClusterFlag::Noin as i32]
    );
    assert_eq!(c.metric(0, "fastblock_embedded_etcd_up"), Some(1.0));
    assert!(
        c.log(0)
            .contains("embedded etcd exited unexpectedly; restarting")
    );
}

#[test]
fn a_missing_etcd_binary_is_a_clear_error() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "etcd_binary = \"/nonexistent/bin/etcd\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let status = c.wait_exit(0, LONG);
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(c.monitors[0].data_dir.with_extension("stderr")).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "fastblock-mon: embedded etcd: the etcd binary '/nonexistent/bin/etcd' was not found; install it \
         (Debian/Ubuntu: apt-get install etcd-server), set etcd_binary in monitor.toml, or set \
         embedded_etcd = false to use an existing etcd cluster"
    );
}

#[test]
fn an_etcd_binary_that_is_not_etcd_is_a_one_line_error() {
    // /bin/true answers --version with eight lines of its own; none of them may reach the
    // error, and the monitor must exit instead of retrying.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "etcd_binary = \"/bin/true\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let status = c.wait_exit(0, LONG);
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(c.monitors[0].data_dir.with_extension("stderr")).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "fastblock-mon: embedded etcd: the etcd binary '/bin/true' is not etcd: its --version printed 'true "
        ),
        "{stderr}"
    );
    assert!(last.ends_with("', not 'etcd Version: …'"), "{last}");
    assert!(!stderr.contains("Copyright"), "{stderr}");
    assert!(!stderr.contains("NO WARRANTY"), "{stderr}");
}

#[test]
fn sighup_reopens_the_log_file() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let log = c.monitors[0].log.clone();
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    c.signal(0, Signal::SIGHUP);
    wait_until(LONG, "a fresh log file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("log file reopened"))
    });
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("serving as leader")
    );
    assert!(c.is_serving_leader(0), "SIGHUP does not stop the monitor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_monitors_share_an_external_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let claim = common::claim_loopback_ip();
    let (mut etcd, url) = common::start_external_etcd(dir.path(), &claim.ip);
    let mut c = TestCluster::new(
        2,
        ClusterOptions {
            external_etcd: Some(url),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1], LONG);
    let other = 1 - leader;
    wait_until(LONG, "the standby to know the leader", || {
        c.readyz(other).is_some_and(|v| v["ready"] == true)
    });
    // No embedded member, so no series about one (a 0 would read as a dead member).
    let (_, metrics) = c.http_get(leader, "/metrics").unwrap();
    assert!(!metrics.contains("fastblock_embedded_etcd"), "{metrics}");
    assert_eq!(c.metric(leader, "fastblock_leader"), Some(1.0));
    assert!(c.log(leader).contains("using an external etcd cluster"));
    assert!(
        common::etcd_pids_under(c.dir.path()).is_empty(),
        "no embedded member"
    );
    let r = c
        .cluster_client()
        .set_flag(flag(ClusterFlag::Noout))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 1);

    c.signal(leader, Signal::SIGTERM);
    assert_eq!(c.wait_leader(&[other], LONG), other);
    assert!(c.wait_exit(leader, LONG).success());
    let r = c
        .client(other)
        .set_flag(flag(ClusterFlag::Noin))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 2);
    drop(c);
    let _ = etcd.kill();
    let _ = etcd.wait();
}

#[test]
fn sigterm_while_waiting_for_quorum_is_a_clean_stop() {
    // One member of a three-member cluster cannot reach quorum on its own.
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start(0);
    wait_until(LONG, "the monitor to wait for its etcd member", || {
        c.etcd_pid(0).is_some() && c.log(0).contains("starting embedded etcd")
    });
    let etcd = c.etcd_pid(0).unwrap();
    c.signal(0, Signal::SIGTERM);
    let status = c.wait_exit(0, LONG);
    assert!(
        status.success(),
        "a stop during start-up is clean: {status}"
    );
    wait_until(LONG, "the etcd child to stop", || !process_alive(etcd));
    assert!(c.log(0).contains("stopped during start-up"));
}
