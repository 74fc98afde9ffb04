//! Leader fencing: a leader frozen (SIGSTOP) past its lease while a write is in flight resumes
//! to find its write rejected by the fence; it steps down and etcd holds only the new leader's
//! writes.

mod common;

fn flag(
    f: fastblock_monitor::proto::monitor::ClusterFlag,
) -> fastblock_monitor::proto::monitor::SetFlagRequest {
    fastblock_monitor::proto::monitor::SetFlagRequest { flag: f as i32 }
}

use std::time::Duration;

use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::cluster::{Record, RecordKey, decode_record};
use fastblock_monitor::etcd::KeyLayout;
use fastblock_monitor::proto::monitor::{ClusterFlag, SetFlagRequest};
use fastblock_monitor::service::status::reason;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leaders_pending_write_is_rejected_by_the_fence() {
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            lease_ttl_secs: 3,
            // Every commit pauses 5 s after the local lease check, before the transaction.
            env: vec![(
                "FASTBLOCK_FAILPOINTS".to_string(),
                "commit.before_txn=sleep(5000)".to_string(),
            )],
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let old = c.wait_leader(&[0, 1, 2], LONG);

    // Start a write on the leader and freeze the leader while it is in flight. A raw call: the
    // client library would follow the NOT_LEADER hint and retry on the new leader.
    let mut raw = c.client(old).raw(&c.monitors[old].grpc).unwrap();
    let pending = tokio::spawn(async move {
        raw.set_flag(SetFlagRequest {
            flag: ClusterFlag::Noout as i32,
        })
        .await
    });
    wait_until(LONG, "the write to reach the failpoint", || {
        c.log(old).contains("failpoint hit")
    });
    c.signal(old, Signal::SIGSTOP);

    // Another monitor takes over once the frozen leader's lease expires, and commits.
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = c.wait_leader(&others, LONG);
    let r = c
        .client(new)
        .set_flag(flag(ClusterFlag::Norebalance))
        .await
        .unwrap();
    assert_eq!(r.osdmap_epoch, 1);

    // Thaw the old leader: its transaction goes out and the fence rejects it.
    c.signal(old, Signal::SIGCONT);
    let err = pending
        .await
        .unwrap()
        .expect_err("the stale write must fail");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert_eq!(reason(&err).as_deref(), Some("NOT_LEADER"), "{err}");
    wait_until(
        LONG,
        "the old leader to count the fenced transaction",
        || c.metric(old, "fastblock_etcd_txn_failures_total{reason=\"fenced\"}") == Some(1.0),
    );
    wait_until(LONG, "the old leader to step down", || {
        c.readyz(old).is_some_and(|v| v["role"] == "standby")
            && c.metric(old, "fastblock_leader") == Some(0.0)
    });
    assert!(c.log(old).contains("commit rejected by the leader fence"));

    // etcd holds only the new leader's write.
    let keys = KeyLayout::new("/fastblock", "fastblock_master");
    let resp = c.etcd_get(keys.record(&RecordKey::OsdMapMeta)).await;
    let kv = &resp.kvs()[0];
    let Record::OsdMapMeta(meta) = decode_record(&RecordKey::OsdMapMeta, kv.value()).unwrap()
    else {
        panic!("not an osdmap meta record");
    };
    assert_eq!(meta.epoch.0, 1);
    assert_eq!(meta.flags.to_string(), "norebalance");
    assert_eq!(kv.version(), 1, "written exactly once");
    assert!(c.is_serving_leader(new));
}
