//! `etcd_server` listing every member of an etcd cluster: a dead member must cost at most one
//! failed request, then be avoided. Two monitors on an external 3-member etcd cluster; the
//! leader's host dies together with the member every monitor lists first, and the standby
//! must load the whole state (thousands of keys, many pages) without a failed load.

mod common;

use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, claim_loopback_ip, start_external_etcd_cluster};
use fastblock_monitor::proto::monitor as api;
use futures::stream::{self, StreamExt};

const LONG: Duration = Duration::from_secs(120);
const OSDS: u32 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_listed_first_does_not_fail_the_new_leaders_load() {
    let etcd_dir = tempfile::tempdir().unwrap();
    let etcd_ip = claim_loopback_ip();
    let (mut members, urls) = start_external_etcd_cluster(etcd_dir.path(), &etcd_ip.ip, 3);
    let mut c = TestCluster::new(
        2,
        ClusterOptions {
            external_etcd: Some(urls.join(",")),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1], LONG);
    let standby = 1 - leader;
    let m = c.cluster_client();
    // Thousands of OSD records: the new leader's load reads them in many pages.
    let applied: Vec<u32> = stream::iter(0..OSDS)
        .map(|n| {
            let m = &m;
            async move {
                m.apply_id(api::ApplyIdRequest {
                    uuid: common::api::uuid(n + 1),
                })
                .await
                .expect("apply id")
                .osd_id
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(applied.len(), OSDS as usize);

    // The leader's host dies: its monitor, and the etcd member every monitor lists first.
    let killed = Instant::now();
    members[0].kill().unwrap();
    c.kill9(leader);
    c.wait_leader(&[standby], LONG);
    let status = c
        .client(standby)
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap();
    eprintln!("serving after {:?}", killed.elapsed());
    assert_eq!(status.osds_total, OSDS);
    let log = c.log(standby);
    assert!(
        !log.contains("cannot load cluster state"),
        "a failed page failed the whole load:\n{log}"
    );
    // The dead member was noticed and avoided.
    assert!(log.contains("etcd endpoint unhealthy"), "{log}");
    for mut e in members {
        let _ = e.kill();
        let _ = e.wait();
    }
}
