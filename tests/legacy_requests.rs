//! The request kinds of the framed protocol that tests/legacy_framed.rs does not cover, each
//! against a real standalone monitor with the answer LEGACY-PROTOCOL.md §7 documents: ListPools,
//! DeletePool (and what a poll says of the deleted pool), CreatePool's error codes, the image
//! kinds, OsdConfig, GetPgOsdInfo, DataStatistics, Heartbeat, OsdStop and the two flags. The
//! client is the test-side one written from the wire description (`common::legacy`).
//!
//! Liveness is not the subject here: the monitors mark no silent OSD down within a test
//! (`osd_down_after = "1h"`), so the booted OSDs need not poll.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use common::api::fingerprint;
use common::legacy::framed::LegacyClient;
use common::legacy::messages::{
    BootRequest, CreatePoolReply, DataStatistics, ImageInfo, ImageReply, PgOsdInfo, PoolInfo,
    Request, Response, boot_result, create_image_code, create_pool_code, get_image_code,
    pgmap_code, remove_image_code, resize_image_code,
};
use common::legacy::{call, ok, osd_ip, osd_uuid, poll};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::proto::monitor as api;

const LONG: Duration = Duration::from_secs(60);
const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;

/// The config text OSD `id` boots with (the C++ OSD sends a dump of its RDMA options).
fn config_text(id: i32) -> String {
    format!(
        "rdma_server_port = {}\nrdma_mtu = 4096\n# osd {id}\n",
        7000 + id
    )
}

async fn create_pool(
    c: &mut LegacyClient,
    name: &str,
    pgsize: i32,
    pgcount: i32,
    failuredomain: &str,
) -> CreatePoolReply {
    let r = Request::CreatePool {
        name: name.to_string(),
        pgsize,
        pgcount,
        failuredomain: failuredomain.to_string(),
        root: "defaultroot".to_string(),
    };
    match call(c, r).await {
        Response::CreatePool(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn list_pools(c: &mut LegacyClient) -> Vec<PoolInfo> {
    match call(c, Request::ListPools).await {
        Response::ListPools(mut pools) => {
            pools.sort_by_key(|p| p.poolid);
            pools
        }
        other => panic!("{other:?}"),
    }
}

async fn image(c: &mut LegacyClient, r: Request) -> ImageReply {
    let expected = r.kind();
    match call(c, r).await {
        Response::Image { kind, reply } => {
            assert_eq!(kind, expected);
            reply
        }
        other => panic!("not an image reply: {other:?}"),
    }
}

async fn get_image(c: &mut LegacyClient, pool: &str, name: &str) -> ImageReply {
    image(
        c,
        Request::GetImageInfo {
            poolname: pool.to_string(),
            imagename: name.to_string(),
        },
    )
    .await
}

async fn status(c: &mut LegacyClient) -> common::legacy::messages::ClusterStatusReply {
    match call(c, Request::GetClusterStatus).await {
        Response::GetClusterStatus(s) => s,
        other => panic!("{other:?}"),
    }
}

/// One legacy OSD: its id, address and the connection it booted on.
struct Osd {
    id: i32,
    ip: IpAddr,
    conn: LegacyClient,
}

/// A standalone monitor serving as leader, and an admin connection (from an address that is
/// no OSD's).
async fn start() -> (TestCluster, LegacyClient) {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    (c, admin)
}

/// Applies for `n` ids over `admin` and boots each OSD on its own connection from its own
/// address, OSD i on host `h<(i - 1) % hosts + 1>`, 2 cores, with [`config_text`].
async fn boot_legacy_osds(
    c: &TestCluster,
    admin: &mut LegacyClient,
    n: u32,
    hosts: u32,
) -> Vec<Osd> {
    let mut osds = Vec::new();
    for i in 1..=n {
        let id = match call(admin, Request::ApplyId { uuid: osd_uuid(i) }).await {
            Response::ApplyId(r) => {
                assert_eq!(r.errorcode, 0, "{r:?}");
                r.id
            }
            other => panic!("{other:?}"),
        };
        let ip = osd_ip(&c.ip, i);
        let mut conn = LegacyClient::connect_from(&c.monitors[0].grpc, ip)
            .await
            .unwrap();
        let host = format!("h{}", (i - 1) % hosts + 1);
        let mut boot =
            BootRequest::like_cpp_osd(id, &osd_uuid(i), &ip.to_string(), &host, 2, 7000, 0);
        boot.config = config_text(id);
        match call(&mut conn, Request::Boot(boot)).await {
            Response::Boot { result } => assert_eq!(result, boot_result::OK, "boot of {id}"),
            other => panic!("{other:?}"),
        }
        osds.push(Osd { id, ip, conn });
    }
    osds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pools_reports_every_field_of_every_pool() {
    let (c, mut admin) = start().await;
    assert_eq!(list_pools(&mut admin).await, Vec::new(), "no pools yet");
    let _osds = boot_legacy_osds(&c, &mut admin, 4, 2).await;
    assert_eq!(
        create_pool(&mut admin, "rbd", 2, 16, "host").await,
        CreatePoolReply {
            errorcode: create_pool_code::OK,
            poolid: 1
        }
    );
    assert_eq!(
        create_pool(&mut admin, "flat", 3, 8, "osd").await,
        CreatePoolReply {
            errorcode: create_pool_code::OK,
            poolid: 2
        }
    );
    let pools = list_pools(&mut admin).await;
    assert_eq!(
        pools,
        vec![
            PoolInfo {
                poolid: 1,
                name: "rbd".to_string(),
                pgsize: 2,
                pgcount: 16,
                failuredomain: "host".to_string(),
                // The CLI's "defaultroot" is the default root, which the monitor calls
                // "default" (gRPC shows the same name).
                root: "default".to_string(),
            },
            PoolInfo {
                poolid: 2,
                name: "flat".to_string(),
                pgsize: 3,
                pgcount: 8,
                failuredomain: "osd".to_string(),
                root: "default".to_string(),
            },
        ]
    );
    // gRPC lists the same pools.
    let grpc = c
        .client(0)
        .list_pools(api::ListPoolsRequest {})
        .await
        .unwrap()
        .pools;
    let mut seen: Vec<(u32, String, u32, u32, String)> = grpc
        .iter()
        .map(|p| (p.id, p.name.clone(), p.pg_size, p.pg_count, p.root.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (1, "rbd".to_string(), 2, 16, "default".to_string()),
            (2, "flat".to_string(), 3, 8, "default".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pool_answers_ok_and_polls_leave_the_pool_out_but_answer_unknown_ids() {
    let (c, mut admin) = start().await;
    let _osds = boot_legacy_osds(&c, &mut admin, 3, 3).await;
    assert_eq!(
        create_pool(&mut admin, "keep", 3, 8, "host").await.poolid,
        1
    );
    assert_eq!(
        create_pool(&mut admin, "gone", 3, 8, "host").await.poolid,
        2
    );
    let before = poll(&mut admin, -1, BTreeMap::new()).await.pgmap.unwrap();
    assert_eq!(before.pgs[&2].len(), 8);
    let versions = before.poolid_pgmapversion.clone();

    assert!(
        ok(
            &mut admin,
            Request::DeletePool {
                name: "gone".into()
            }
        )
        .await
    );
    // Unknown names, including the one just deleted: false.
    for name in ["gone", "never-was", ""] {
        assert!(
            !ok(&mut admin, Request::DeletePool { name: name.into() }).await,
            "{name:?}"
        );
    }

    // A client that knows both pools, and one pool id the monitor never had.
    let listed = BTreeMap::from([(1, versions[&1]), (2, versions[&2]), (99, 1)]);
    let pm = poll(&mut admin, -1, listed).await.pgmap.unwrap();
    assert_eq!(pm.errorcode.get(&1), Some(&pgmap_code::SAME_VERSION));
    // The deleted pool is left out of every map: the C++ client reads that as "deleted".
    assert!(!pm.errorcode.contains_key(&2), "{pm:?}");
    assert!(!pm.poolid_pgmapversion.contains_key(&2), "{pm:?}");
    assert!(!pm.pgs.contains_key(&2), "{pm:?}");
    assert!(!pm.pools.contains_key(&2), "{pm:?}");
    // A pool id never seen is answered, never omitted (omission would make OSDs drop data).
    assert_eq!(
        pm.errorcode.get(&99),
        Some(&pgmap_code::CLIENT_VERSION_HIGHER),
        "{pm:?}"
    );
    assert!(!pm.pgs.contains_key(&99));

    // A bootstrap poll (no pools listed) and ListPools no longer see it either.
    let pm = poll(&mut admin, -1, BTreeMap::new()).await.pgmap.unwrap();
    assert_eq!(pm.pools, BTreeMap::from([(1, "keep".to_string())]));
    assert_eq!(pm.pgs.keys().copied().collect::<Vec<_>>(), vec![1]);
    let pools = list_pools(&mut admin).await;
    assert_eq!(
        pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["keep"]
    );
    // Pool ids are never reused: the next pool is 3.
    assert_eq!(
        create_pool(&mut admin, "gone", 3, 8, "host").await.poolid,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_pool_errors_have_their_codes_and_create_nothing() {
    let (c, mut admin) = start().await;
    // Four OSDs on two hosts.
    let _osds = boot_legacy_osds(&c, &mut admin, 4, 2).await;
    assert_eq!(
        create_pool(&mut admin, "rbd", 2, 16, "host").await,
        CreatePoolReply {
            errorcode: create_pool_code::OK,
            poolid: 1
        }
    );
    let grpc = c.client(0);
    let before = fingerprint(&grpc, &[]).await;

    let refused = |errorcode| CreatePoolReply {
        errorcode,
        poolid: -1,
    };
    // The name is taken.
    assert_eq!(
        create_pool(&mut admin, "rbd", 2, 16, "host").await,
        refused(create_pool_code::POOL_NAME_EXISTS)
    );
    // Three replicas on distinct hosts, with two hosts: enough OSDs, not enough domains.
    assert_eq!(
        create_pool(&mut admin, "wide", 3, 8, "host").await,
        refused(create_pool_code::FAILURE_DOMAIN_NEED_NOT_SATISFIED)
    );
    // Five replicas with four OSDs: not enough OSDs, whatever the failure domain.
    for domain in ["osd", "host"] {
        assert_eq!(
            create_pool(&mut admin, "wider", 5, 8, domain).await,
            refused(create_pool_code::NO_ENOUGH_OSD),
            "{domain}"
        );
    }
    // Negative sizes and counts: no code says "invalid"; internalError.
    assert_eq!(
        create_pool(&mut admin, "neg", -3, 8, "host").await,
        refused(create_pool_code::INTERNAL_ERROR)
    );
    assert_eq!(
        create_pool(&mut admin, "neg", 2, -8, "host").await,
        refused(create_pool_code::INTERNAL_ERROR)
    );

    // Nothing was created, and no pool id was used up.
    assert_eq!(fingerprint(&grpc, &[]).await, before);
    let pools = list_pools(&mut admin).await;
    assert_eq!(
        pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["rbd"]
    );
    assert_eq!(
        create_pool(&mut admin, "second", 2, 8, "host").await,
        CreatePoolReply {
            errorcode: create_pool_code::OK,
            poolid: 2
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_created_read_resized_and_removed_with_their_codes() {
    let (c, mut admin) = start().await;
    let _osds = boot_legacy_osds(&c, &mut admin, 3, 3).await;
    assert_eq!(create_pool(&mut admin, "rbd", 3, 8, "host").await.poolid, 1);

    let request = ImageInfo {
        poolname: "rbd".to_string(),
        imagename: "img1".to_string(),
        size: GIB,
        object_size: 4 * MIB,
    };
    let created = image(&mut admin, Request::CreateImage(request.clone())).await;
    assert_eq!(
        created,
        ImageReply {
            errorcode: create_image_code::OK,
            info: Some(request.clone()),
        }
    );
    // The same name again: imageExists, the request echoed.
    let again = ImageInfo {
        size: 2 * GIB,
        ..request.clone()
    };
    assert_eq!(
        image(&mut admin, Request::CreateImage(again.clone())).await,
        ImageReply {
            errorcode: create_image_code::IMAGE_EXISTS,
            info: Some(again),
        }
    );
    // An unknown pool.
    let nowhere = ImageInfo {
        poolname: "nope".to_string(),
        ..request.clone()
    };
    assert_eq!(
        image(&mut admin, Request::CreateImage(nowhere.clone())).await,
        ImageReply {
            errorcode: create_image_code::UNKNOWN_POOL_NAME,
            info: Some(nowhere),
        }
    );
    // A name over 512 bytes is refused; 512 bytes is fine.
    let long = ImageInfo {
        imagename: "n".repeat(513),
        ..request.clone()
    };
    assert_eq!(
        image(&mut admin, Request::CreateImage(long.clone())).await,
        ImageReply {
            errorcode: create_image_code::IMAGE_NAME_TOO_LONG,
            info: Some(long),
        }
    );
    let longest = ImageInfo {
        imagename: "n".repeat(512),
        ..request.clone()
    };
    assert_eq!(
        image(&mut admin, Request::CreateImage(longest.clone()))
            .await
            .errorcode,
        create_image_code::OK
    );

    // GetImageInfo: found, and not found (with an empty info).
    assert_eq!(
        get_image(&mut admin, "rbd", "img1").await,
        ImageReply {
            errorcode: get_image_code::OK,
            info: Some(request.clone()),
        }
    );
    for (pool, name) in [("rbd", "img2"), ("nope", "img1")] {
        let r = get_image(&mut admin, pool, name).await;
        assert_eq!(r.errorcode, get_image_code::NOT_FOUND, "{pool}/{name}");
        assert_eq!(r.info.unwrap_or_default(), ImageInfo::default());
    }

    // ResizeImage: the new info; then not found.
    let resized = ImageInfo {
        size: 3 * GIB,
        ..request.clone()
    };
    assert_eq!(
        image(
            &mut admin,
            Request::ResizeImage {
                poolname: "rbd".into(),
                imagename: "img1".into(),
                size: 3 * GIB,
            }
        )
        .await,
        ImageReply {
            errorcode: resize_image_code::OK,
            info: Some(resized.clone()),
        }
    );
    assert_eq!(
        get_image(&mut admin, "rbd", "img1").await.info,
        Some(resized.clone())
    );
    let missing = image(
        &mut admin,
        Request::ResizeImage {
            poolname: "rbd".into(),
            imagename: "img2".into(),
            size: GIB,
        },
    )
    .await;
    assert_eq!(missing.errorcode, resize_image_code::NOT_FOUND);

    // gRPC sees the images the legacy requests made.
    let grpc = c.client(0);
    let seen = grpc
        .get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".into(),
            image_name: "img1".into(),
        })
        .await
        .unwrap()
        .image
        .expect("image");
    assert_eq!((seen.size, seen.object_size), (3 << 30, 4 << 20));
    assert!(
        grpc.get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".into(),
            image_name: "n".repeat(512),
        })
        .await
        .is_ok()
    );

    // RemoveImage: the removed image's info; then not found, with an empty info.
    let remove = || Request::RemoveImage {
        poolname: "rbd".into(),
        imagename: "img1".into(),
    };
    assert_eq!(
        image(&mut admin, remove()).await,
        ImageReply {
            errorcode: remove_image_code::OK,
            info: Some(resized),
        }
    );
    let r = image(&mut admin, remove()).await;
    assert_eq!(r.errorcode, remove_image_code::IMAGE_NOT_FOUND);
    assert_eq!(r.info.unwrap_or_default(), ImageInfo::default());
    assert_eq!(
        get_image(&mut admin, "rbd", "img1").await.errorcode,
        get_image_code::NOT_FOUND
    );
    // The other image is still there.
    assert_eq!(
        get_image(&mut admin, "rbd", &"n".repeat(512))
            .await
            .errorcode,
        get_image_code::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_image_name_is_refused_before_the_pool_is_looked_up() {
    let (_c, mut admin) = start().await;
    // §7.11, checks in order: the name's length, then the pool, then whether it exists.
    let long = ImageInfo {
        poolname: "no-such-pool".to_string(),
        imagename: "n".repeat(513),
        size: GIB,
        object_size: 4 * MIB,
    };
    let reply = image(&mut admin, Request::CreateImage(long.clone())).await;
    assert_eq!(reply.errorcode, create_image_code::IMAGE_NAME_TOO_LONG);
    assert!(reply.info == Some(long), "the request is echoed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osd_config_returns_the_text_sent_at_boot() {
    let (c, mut admin) = start().await;
    let osds = boot_legacy_osds(&c, &mut admin, 2, 2).await;
    for o in &osds {
        match call(&mut admin, Request::OsdConfig { osdid: o.id }).await {
            Response::OsdConfig { config } => assert_eq!(config, config_text(o.id)),
            other => panic!("{other:?}"),
        }
    }
    // An id that applied but never booted, an unknown id, a negative one: "".
    let pending = match call(&mut admin, Request::ApplyId { uuid: osd_uuid(50) }).await {
        Response::ApplyId(r) => r.id,
        other => panic!("{other:?}"),
    };
    for osdid in [pending, 99, -1, 0] {
        match call(&mut admin, Request::OsdConfig { osdid }).await {
            Response::OsdConfig { config } => assert_eq!(config, "", "osd {osdid}"),
            other => panic!("{other:?}"),
        }
    }
    // A second boot of the same run with another text: the new text.
    let mut o = osds.into_iter().next().unwrap();
    let mut boot =
        BootRequest::like_cpp_osd(o.id, &osd_uuid(1), &o.ip.to_string(), "h1", 2, 7000, 0);
    boot.config = "rdma_mtu = 1024\n".to_string();
    match call(&mut o.conn, Request::Boot(boot)).await {
        Response::Boot { result } => assert_eq!(result, boot_result::OK),
        other => panic!("{other:?}"),
    }
    match call(&mut admin, Request::OsdConfig { osdid: o.id }).await {
        Response::OsdConfig { config } => assert_eq!(config, "rdma_mtu = 1024\n"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pg_osd_info_lists_every_pool_or_the_known_ones_asked_for() {
    let (c, mut admin) = start().await;
    let _osds = boot_legacy_osds(&c, &mut admin, 3, 3).await;
    let pg_osd_info = |pool_ids: Vec<i32>| Request::GetPgOsdInfo { pool_ids };
    // No pools: nothing.
    match call(&mut admin, pg_osd_info(vec![])).await {
        Response::PgOsdInfo(pools) => assert!(pools.is_empty(), "{pools:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(create_pool(&mut admin, "a", 3, 8, "host").await.poolid, 1);
    assert_eq!(create_pool(&mut admin, "b", 2, 4, "host").await.poolid, 2);

    // What the pgmap says of each PG: (pgid, coreindex, members).
    let pm = poll(&mut admin, -1, BTreeMap::new()).await.pgmap.unwrap();
    let expected: BTreeMap<i32, Vec<PgOsdInfo>> = pm
        .pgs
        .iter()
        .map(|(&pool, pgs)| {
            let mut list: Vec<PgOsdInfo> = pgs
                .iter()
                .map(|pg| PgOsdInfo {
                    pgid: pg.pgid,
                    coreindex: pg.coreindex,
                    osdid: pg.osdid.clone(),
                })
                .collect();
            list.sort_by_key(|p| p.pgid);
            (pool, list)
        })
        .collect();
    assert_eq!(expected[&1].len(), 8);
    assert_eq!(expected[&2].len(), 4);

    let sorted = |mut pools: BTreeMap<i32, Vec<PgOsdInfo>>| {
        for pgs in pools.values_mut() {
            pgs.sort_by_key(|p| p.pgid);
        }
        pools
    };
    // An empty list: every pool.
    match call(&mut admin, pg_osd_info(vec![])).await {
        Response::PgOsdInfo(pools) => assert_eq!(sorted(pools), expected),
        other => panic!("{other:?}"),
    }
    // The listed pools; unknown and invalid ids skipped.
    match call(&mut admin, pg_osd_info(vec![2, 99, -1, 0])).await {
        Response::PgOsdInfo(pools) => {
            assert_eq!(sorted(pools), BTreeMap::from([(2, expected[&2].clone())]));
        }
        other => panic!("{other:?}"),
    }
    match call(&mut admin, pg_osd_info(vec![99])).await {
        Response::PgOsdInfo(pools) => assert!(pools.is_empty(), "{pools:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_statistics_count_from_an_osds_own_connection_only() {
    let (c, mut admin) = start().await;
    let mut osds = boot_legacy_osds(&c, &mut admin, 3, 3).await;
    assert_eq!(create_pool(&mut admin, "rbd", 3, 8, "host").await.poolid, 1);
    let pm = poll(&mut admin, -1, BTreeMap::new()).await.pgmap.unwrap();
    let first = osds[0].id;
    let held: Vec<String> = pm.pgs[&1]
        .iter()
        .filter(|pg| pg.osdid.contains(&first))
        .map(|pg| format!("1.{}", pg.pgid))
        .collect();
    assert!(!held.is_empty());
    let report = |n: u64| {
        Request::DataStatistics(
            held.iter()
                .map(|name| {
                    (
                        name.clone(),
                        DataStatistics {
                            read_ios: n,
                            read_bytes: n * 4096,
                            write_ios: n,
                            write_bytes: n * 8192,
                            objects: 1,
                            ..DataStatistics::default()
                        },
                    )
                })
                .collect(),
        )
    };
    // From the OSD's own connection, for PGs it holds: counted.
    assert!(ok(&mut osds[0].conn, report(10)).await);
    assert!(ok(&mut osds[0].conn, report(20)).await);
    // From a connection that booted no OSD (and comes from no OSD's address): refused.
    assert!(!ok(&mut admin, report(30)).await);
    let mut stranger = LegacyClient::connect_from(&c.monitors[0].grpc, osd_ip(&c.ip, 60))
        .await
        .unwrap();
    assert!(!ok(&mut stranger, report(30)).await);
    assert!(
        !ok(
            &mut stranger,
            Request::DataStatistics(BTreeMap::from([(
                "1.0".to_string(),
                DataStatistics::default()
            )]))
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_is_answered_and_osd_stop_marks_the_osd_down_in_the_next_map() {
    let (c, mut admin) = start().await;
    let mut osds = boot_legacy_osds(&c, &mut admin, 3, 3).await;
    // Heartbeat: answered true, from anyone, for any id.
    for id in [osds[0].id, 99, -1] {
        assert!(ok(&mut admin, Request::Heartbeat { id }).await, "{id}");
    }
    let own = osds[1].id;
    assert!(ok(&mut osds[1].conn, Request::Heartbeat { id: own }).await);

    let stopped = osds[2].id;
    let before = poll(&mut admin, -1, BTreeMap::new()).await.osdmap.unwrap();
    assert!(before.osds.iter().all(|o| o.isup && o.isin));
    assert!(ok(&mut admin, Request::OsdStop { id: stopped }).await);
    let after = poll(&mut admin, -1, BTreeMap::new()).await.osdmap.unwrap();
    assert!(after.osdmapversion > before.osdmapversion);
    let o = after.osds.iter().find(|o| o.osdid == stopped).unwrap();
    assert!(!o.isup, "{o:?}");
    assert!(
        after
            .osds
            .iter()
            .filter(|o| o.osdid != stopped)
            .all(|o| o.isup)
    );
    assert_eq!(status(&mut admin).await.up_osd_num, 2);
    // Already down: true, nothing changes. Unknown: false.
    assert!(ok(&mut admin, Request::OsdStop { id: stopped }).await);
    assert!(!ok(&mut admin, Request::OsdStop { id: 99 }).await);
    let again = poll(&mut admin, -1, BTreeMap::new()).await.osdmap.unwrap();
    assert_eq!(again.osdmapversion, after.osdmapversion);
    // gRPC sees it down too.
    let grpc = c
        .client(0)
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap()
        .osdmap
        .unwrap();
    assert!(
        !grpc
            .osds
            .iter()
            .find(|o| o.id == stopped as u32)
            .unwrap()
            .up
    );

    // The stopped OSD boots again on its connection: up.
    let o = &mut osds[2];
    let boot = BootRequest::like_cpp_osd(o.id, &osd_uuid(3), &o.ip.to_string(), "h3", 2, 7000, 0);
    match call(&mut o.conn, Request::Boot(boot)).await {
        Response::Boot { result } => assert_eq!(result, boot_result::OK),
        other => panic!("{other:?}"),
    }
    let m = poll(&mut admin, -1, BTreeMap::new()).await.osdmap.unwrap();
    assert!(m.osds.iter().all(|o| o.isup), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_set_and_unset_show_in_cluster_status() {
    let (c, mut admin) = start().await;
    let grpc = c.client(0);
    let grpc_flags = || async {
        let mut flags = grpc
            .get_cluster_status(api::GetClusterStatusRequest::default())
            .await
            .unwrap()
            .flags;
        flags.sort();
        flags
    };
    let flags = |s: &common::legacy::messages::ClusterStatusReply| (s.no_reblance, s.no_out);
    assert_eq!(flags(&status(&mut admin).await), (false, false));

    let steps = [
        (Request::NoReblance { set: true }, (true, false)),
        // Setting it again changes nothing and is still ok.
        (Request::NoReblance { set: true }, (true, false)),
        (Request::NoOut { set: true }, (true, true)),
        (Request::NoReblance { set: false }, (false, true)),
        (Request::NoOut { set: false }, (false, false)),
        (Request::NoOut { set: false }, (false, false)),
    ];
    for (request, expected) in steps {
        let k = request.kind();
        assert!(ok(&mut admin, request).await, "kind {k}");
        assert_eq!(flags(&status(&mut admin).await), expected, "after kind {k}");
        let mut want = Vec::new();
        if expected.1 {
            want.push(api::ClusterFlag::Noout as i32);
        }
        if expected.0 {
            want.push(api::ClusterFlag::Norebalance as i32);
        }
        want.sort();
        assert_eq!(grpc_flags().await, want, "after kind {k}");
    }
}
