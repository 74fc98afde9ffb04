//! Legacy clients on a 3-monitor cluster (LEGACY-PROTOCOL.md §12: the C++ client connects to
//! the first monitor of its list that accepts TCP and stays there; it has no "not leader"
//! answer). Clients connected to standbys are forwarded to the leader; when the leader is
//! killed with SIGKILL mid-workload, every client reconnects to the first monitor that accepts
//! and keeps working without a restart; no acknowledged ApplyID or CreatePool is lost or
//! duplicated, and the OSDs, which only poll, are not marked down by the failover.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::legacy::framed::LegacyClient;
use common::legacy::messages::{BootRequest, Request, Response, boot_result};
use common::legacy::{osd_ip, osd_uuid};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::proto::monitor as api;
use parking_lot::Mutex;

const LONG: Duration = Duration::from_secs(90);

/// The C++ client's way in: the first monitor of `list` that accepts TCP.
async fn connect_first(list: &[String], from: Option<IpAddr>) -> LegacyClient {
    let deadline = Instant::now() + LONG;
    loop {
        for address in list {
            let c = match from {
                Some(ip) => LegacyClient::connect_from(address, ip).await,
                None => LegacyClient::connect(address).await,
            };
            if let Ok(mut c) = c {
                c.set_reply_timeout(Duration::from_secs(20));
                return c;
            }
        }
        assert!(Instant::now() < deadline, "no monitor accepts connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request answered on some connection: retried on a new connection (first that accepts)
/// when the connection fails, as a client that reconnects does. Returns the reply and how
/// many reconnects it took.
async fn call_retrying(
    conn: &mut LegacyClient,
    list: &[String],
    from: Option<IpAddr>,
    r: &Request,
) -> (Response, u32) {
    let mut reconnects = 0;
    let deadline = Instant::now() + LONG;
    loop {
        match conn.call(r).await {
            Ok(reply) => return (reply, reconnects),
            Err(e) => {
                assert!(Instant::now() < deadline, "{r:?} never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                *conn = connect_first(list, from).await;
                reconnects += 1;
            }
        }
    }
}

async fn serving_leader(c: &TestCluster, among: &[usize]) -> usize {
    let deadline = Instant::now() + LONG;
    loop {
        let leaders: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| c.is_serving_leader(i))
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no leader among {among:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_clients_on_every_monitor_keep_working_across_a_leader_kill() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    let leader = serving_leader(&c, &[0, 1, 2]).await;
    let standby = (leader + 1) % 3;
    let addresses: Vec<String> = c.monitors.iter().map(|m| m.grpc.clone()).collect();
    // Each client's monitor list starts with a different monitor, so clients sit on the
    // leader and on both standbys.
    let list_from = |first: usize| -> Vec<String> {
        (0..3).map(|k| addresses[(first + k) % 3].clone()).collect()
    };

    // The admin (the Go CLI) on a standby: forwarded to the leader.
    let admin_list = list_from(standby);
    let mut admin = connect_first(&admin_list, None).await;
    let mut osds = Vec::new();
    for i in 1..=4u32 {
        let (reply, _) = call_retrying(
            &mut admin,
            &admin_list,
            None,
            &Request::ApplyId { uuid: osd_uuid(i) },
        )
        .await;
        let Response::ApplyId(r) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(r.errorcode, 0);
        let ip = osd_ip(&c.ip, i);
        let list = list_from(i as usize % 3);
        let mut conn = connect_first(&list, Some(ip)).await;
        let boot = BootRequest::like_cpp_osd(
            r.id,
            &osd_uuid(i),
            &ip.to_string(),
            &format!("h{i}"),
            1,
            7000,
            0,
        );
        match conn.call(&Request::Boot(boot)).await.unwrap() {
            Response::Boot { result } => assert_eq!(result, boot_result::OK),
            other => panic!("{other:?}"),
        }
        osds.push((r.id, ip, list, conn));
    }
    let (reply, _) = call_retrying(
        &mut admin,
        &admin_list,
        None,
        &Request::CreatePool {
            name: "rbd".into(),
            pgsize: 3,
            pgcount: 16,
            failuredomain: "host".into(),
            root: "defaultroot".into(),
        },
    )
    .await;
    let Response::CreatePool(created) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((created.errorcode, created.poolid), (0, 1));

    // The OSDs poll every second as the C++ client does (every 3 s there), reconnecting to
    // the first monitor that accepts when their connection fails.
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let mut pollers = Vec::new();
    for (id, ip, list, mut conn) in osds {
        let stop = stop.clone();
        let polls = polls.clone();
        pollers.push(tokio::spawn(async move {
            let mut reconnects = 0;
            while !stop.load(Ordering::Relaxed) {
                let (reply, r) = call_retrying(
                    &mut conn,
                    &list,
                    Some(ip),
                    &Request::cpp_poll(id, BTreeMap::new()),
                )
                .await;
                reconnects += r;
                let Response::GetClusterMap(m) = reply else {
                    panic!("{reply:?}")
                };
                assert!(m.osdmap.is_some_and(|o| o.osds.len() >= 4));
                polls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            reconnects
        }));
    }

    // ApplyIDs all along, from the admin on the standby: (uuid, id) acknowledged.
    let acked: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let applying = {
        let stop = stop.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (reply, _) = call_retrying(
                    &mut admin,
                    &admin_list,
                    None,
                    &Request::ApplyId { uuid: osd_uuid(n) },
                )
                .await;
                let Response::ApplyId(r) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(r.errorcode, 0, "{r:?}");
                acked.lock().push((osd_uuid(n), r.id));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_kill = acked.lock().len();
    assert!(before_kill > 0, "ApplyIDs are acknowledged before the kill");
    c.kill9(leader);
    let remaining: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = serving_leader(&c, &remaining).await;
    // The clients keep working after the failover: more polls and ApplyIDs succeed.
    let polls_after_election = polls.load(Ordering::Relaxed);
    let acked_after_election = acked.lock().len();
    let deadline = Instant::now() + LONG;
    while polls.load(Ordering::Relaxed) < polls_after_election + 12
        || acked.lock().len() < acked_after_election + 10
    {
        assert!(
            Instant::now() < deadline,
            "the legacy clients do not make progress"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut reconnects = 0;
    for p in pollers {
        reconnects += p.await.unwrap();
    }
    applying.await.unwrap();
    assert!(
        reconnects > 0,
        "some OSD sat on the killed leader or behind it"
    );

    // Nothing acknowledged was lost or duplicated: every acknowledged uuid has its id, ids
    // are distinct.
    let grpc = c.client(new_leader);
    let map = grpc
        .get_osd_map(api::GetOsdMapRequest::default())
        .await
        .unwrap()
        .osdmap
        .unwrap();
    let by_uuid: BTreeMap<String, u32> = map
        .osds
        .iter()
        .map(|o| (o.uuid.to_lowercase(), o.id))
        .collect();
    let acked = acked.lock().clone();
    let mut ids = BTreeSet::new();
    for (u, id) in &acked {
        assert_eq!(
            by_uuid.get(u),
            Some(&(*id as u32)),
            "acknowledged {u} → {id}"
        );
        assert!(ids.insert(*id), "id {id} acknowledged twice");
    }
    let pools = grpc
        .list_pools(api::ListPoolsRequest::default())
        .await
        .unwrap()
        .pools;
    assert_eq!(pools.len(), 1, "the acknowledged pool, once");
    // The polling OSDs were never marked down by the failover (their polls reached the new
    // leader before osd_down_after).
    for o in map.osds.iter().filter(|o| o.id <= 4) {
        assert!(o.up, "osd.{} is up", o.id);
    }
}
