//! Three monitors on loopback ports: one etcd cluster, exactly one leader, standby hints and
//! health, graceful handover by resignation, and crash failover by lease expiry.

mod common;

fn flag(
    f: fastblock_monitor::proto::monitor::ClusterFlag,
) -> fastblock_monitor::proto::monitor::SetFlagRequest {
    fastblock_monitor::proto::monitor::SetFlagRequest { flag: f as i32 }
}

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::client::leader_hint;
use fastblock_monitor::proto::monitor::{ClusterFlag, SetFlagRequest};
use fastblock_monitor::service::status::reason;
use nix::sys::signal::Signal;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const LONG: Duration = Duration::from_secs(90);
const TTL: u64 = 6;

fn etcdctl(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.etcd_endpoints()))
        .args(args)
        .args(["-w", "json"])
        .output()
        .expect("etcdctl (Debian package etcd-client) must be installed");
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("etcdctl JSON")
}

async fn monitor_health(addr: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "fastblock.monitor.v1.Monitor".to_string(),
        })
        .await
        .unwrap();
    r.into_inner().status
}

async fn reflected_services(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_monitors_one_etcd_cluster_one_leader_and_failover() {
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            lease_ttl_secs: TTL,
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let leader_addr = c.monitors[leader].grpc.clone();

    // ONE etcd cluster of three members, not three clusters of one.
    let members = etcdctl(&c, &["member", "list"]);
    let mut names: Vec<String> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["m1", "m2", "m3"]);
    let statuses = etcdctl(&c, &["endpoint", "status"]);
    let cluster_ids: std::collections::BTreeSet<u64> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"]["header"]["cluster_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        cluster_ids.len(),
        1,
        "all endpoints in one cluster: {statuses}"
    );

    // Exactly one leader: the standbys are ready and name it.
    let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    wait_until(LONG, "standbys ready and pointing at the leader", || {
        standbys.iter().all(|&i| {
            c.readyz(i).is_some_and(|v| {
                v["role"] == "standby" && v["ready"] == true && v["leader"] == leader_addr.as_str()
            })
        })
    });
    // Registrations are eventually visible everywhere: wait for every monitor to list all three.
    for i in 0..3 {
        let client = c.client(i);
        let deadline = Instant::now() + LONG;
        let r = loop {
            let r = client.get_leader().await.unwrap();
            if r.monitors.len() == 3 {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "m{} lists {:?}",
                i + 1,
                r.monitors
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            r.leader.as_ref().unwrap().address,
            leader_addr,
            "as seen by m{}",
            i + 1
        );
        assert_eq!(r.answered_by, c.monitors[i].name);
    }
    assert_eq!(
        monitor_health(&leader_addr).await,
        ServingStatus::Serving as i32
    );
    let standby = standbys[0];
    let standby_addr = c.monitors[standby].grpc.clone();
    assert_eq!(
        monitor_health(&standby_addr).await,
        ServingStatus::NotServing as i32
    );
    let services = reflected_services(&standby_addr).await;
    assert!(
        services.contains(&"fastblock.monitor.v1.Monitor".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );

    // A leader-only call on a standby: UNAVAILABLE, NOT_LEADER, and the leader's address.
    let err = c
        .client(standby)
        .raw(&standby_addr)
        .unwrap()
        .set_flag(SetFlagRequest {
            flag: ClusterFlag::Noout as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&err).as_deref(), Some("NOT_LEADER"));
    assert_eq!(
        err.metadata()
            .get("x-fastblock-leader")
            .unwrap()
            .to_str()
            .unwrap(),
        leader_addr
    );
    assert_eq!(leader_hint(&err).as_deref(), Some(leader_addr.as_str()));
    // The client library follows the hint.
    let mut via_standby = c.client(standby);
    let r = via_standby
        .set_flag(flag(ClusterFlag::Noout))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 1);
    let first_epoch = r.leader_epoch;
    drop(via_standby.raw(&leader_addr));
    via_standby = c.cluster_client();

    // Graceful stop of the leader: it resigns, so a standby leads long before the lease (6s)
    // could have expired.
    c.signal(leader, Signal::SIGTERM);
    let started = Instant::now();
    let second = c.wait_leader(&standbys, Duration::from_secs(TTL / 2));
    eprintln!("graceful handover took {:?}", started.elapsed());
    assert!(c.wait_exit(leader, Duration::from_secs(30)).success());
    let r = via_standby
        .set_flag(flag(ClusterFlag::Norebalance))
        .await
        .unwrap();
    assert!(r.leader_epoch > first_epoch, "epochs only grow");
    assert_eq!(r.osdmap_epoch, 2, "state carried over");
    let second_epoch = r.leader_epoch;

    // Bring the stopped monitor back (its member rejoins) so the etcd cluster keeps quorum.
    c.start(leader);
    wait_until(LONG, "the restarted monitor to be a ready standby", || {
        c.readyz(leader)
            .is_some_and(|v| v["role"] == "standby" && v["ready"] == true)
    });

    // Crash of the leader: another leads once the lease expires.
    c.kill9(second);
    let started = Instant::now();
    let remaining: Vec<usize> = (0..3).filter(|&i| i != second).collect();
    let third = c.wait_leader(&remaining, Duration::from_secs(TTL + 15));
    eprintln!(
        "crash failover took {:?} (lease TTL {TTL}s)",
        started.elapsed()
    );
    assert_ne!(third, second);
    let r = c
        .cluster_client()
        .set_flag(flag(ClusterFlag::Noin))
        .await
        .unwrap();
    assert!(r.leader_epoch > second_epoch);
    assert_eq!(r.osdmap_epoch, 3);
    assert_eq!(
        r.flags,
        vec![
            ClusterFlag::Noout as i32,
            ClusterFlag::Norebalance as i32,
            ClusterFlag::Noin as i32
        ]
    );
}

/// The failure count of a term task on monitor `i` (None when unreachable).
fn task_failures(c: &TestCluster, i: usize, task: &str) -> Option<f64> {
    c.metric(
        i,
        &format!("fastblock_term_task_failures_total{{task=\"{task}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_task_that_panics_ends_the_term_and_detection_goes_on() {
    // Every monitor's failure check panics at its first run (failpoint `panic(1)`). A leader
    // whose check panics must not serve on without it: it logs and counts the panic, steps
    // down, and another monitor leads; once a leader runs a check that does not panic, silent
    // OSDs are marked down again.
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            env: vec![(
                "FASTBLOCK_FAILPOINTS".to_string(),
                "failure_check.check=panic(1)".to_string(),
            )],
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let first = c.wait_leader(&[0, 1, 2], LONG);
    wait_until(LONG, "the first leader's failure check panicked", || {
        task_failures(&c, first, "failure_check") == Some(1.0)
    });
    // The term ends right after the failure is counted: its own counter follows.
    wait_until(LONG, "the term ended for the failed task", || {
        c.metric(
            first,
            "fastblock_leadership_changes_total{reason=\"task_failed\"}",
        ) == Some(1.0)
    });
    let log = c.log(first);
    assert!(log.contains("term task failed; ending the term"), "{log}");
    assert!(log.contains("failure_check"), "{log}");
    // Leadership moves: the monitors that were already campaigning come before the one that
    // stepped down and campaigns again.
    let mut second = first;
    wait_until(LONG, "another monitor leads", || {
        second = (0..3)
            .find(|&i| i != first && c.is_serving_leader(i))
            .unwrap_or(first);
        second != first
    });

    // Each monitor panics once, at its first term only: wait for a leader that already has.
    let mut stable = None;
    wait_until(LONG, "a leader whose check no longer panics", || {
        stable = (0..3).find(|&i| {
            c.is_serving_leader(i) && task_failures(&c, i, "failure_check") == Some(1.0)
        });
        stable.is_some()
    });
    let stable = stable.unwrap();
    let m = std::sync::Arc::new(c.client(stable));
    let osds = common::api::boot_osds(&m, 1, 4, 2).await;
    let beat = common::api::keep_beating(m.clone(), osds[..3].to_vec());
    let silent = osds[3].id;
    let deadline = Instant::now() + LONG;
    loop {
        let map = m
            .get_osd_map(fastblock_monitor::proto::monitor::GetOsdMapRequest {
                osd_id: 0,
                epoch: 0,
            })
            .await
            .unwrap();
        let osds = &map.osdmap.as_ref().unwrap().osds;
        let down: Vec<u32> = osds.iter().filter(|o| !o.up).map(|o| o.id).collect();
        if down == [silent] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "osd.{silent} was not marked down (down: {down:?})\n{}",
            c.log(stable)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.is_serving_leader(stable), "the same leader detected it");
    beat.abort();
}
