//! The raw protocol of kfastblock (LEGACY-PROTOCOL.md §11) against real monitors, driven by the
//! test-side client written from the wire description (`common::legacy::raw`): the answers
//! match what the gRPC API says, every refusal, the connection surviving bad requests, the body
//! limit, the port disabled, and standbys forwarding to the leader across a failover.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{boot_osds, keep_beating, uuid};
use common::legacy::raw::{
    self, RawClient, RawClientError, RawClusterMap, RawHeader, RawImageInfo, RawResponse, status,
};
use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::client::{MonitorClient, shard_ports};
use fastblock_monitor::proto::monitor as api;

const LONG: Duration = Duration::from_secs(60);

/// One request and its reply, which must echo `seq` with the response flag set.
async fn call(client: &mut RawClient, seq: u64, request: &[u8]) -> RawResponse {
    let reply = client.exchange(request).await.expect("a reply");
    assert_eq!(reply.header.seq, seq, "seq echoed");
    assert!(reply.header.is_response(), "response flag");
    assert_eq!(reply.header.magic, raw::MAGIC);
    assert_eq!(
        (reply.header.version_major, reply.header.service),
        (1, 1),
        "version and service"
    );
    assert_eq!(reply.header.body_len as usize, reply.body.len());
    reply
}

async fn cluster_map(
    client: &mut RawClient,
    seq: u64,
    osdmap: u64,
    pool: u32,
    pgmap: u64,
) -> RawResponse {
    call(client, seq, &raw::get_cluster_map(seq, osdmap, pool, pgmap)).await
}

async fn image_info(
    client: &mut RawClient,
    seq: u64,
    epoch: u64,
    pool: &str,
    image: &str,
) -> RawResponse {
    let request = raw::get_image_info(seq, epoch, pool, image).expect("short names");
    call(client, seq, &request).await
}

fn pool_request(name: &str, size: u32, count: u32) -> api::CreatePoolRequest {
    api::CreatePoolRequest {
        name: name.to_string(),
        pg_size: size,
        pg_count: count,
        failure_domain: "host".to_string(),
        root: String::new(),
    }
}

/// What the gRPC API says: the osdmap and one pool's pgmap.
struct GrpcView {
    osdmap: fastblock_monitor::proto::wire::OsdMapFields,
    pool_epoch: u64,
    pgs: Vec<api::PgInfo>,
}

async fn grpc_view(m: &MonitorClient, pool: u32) -> GrpcView {
    let osdmap = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .expect("osdmap")
        .osdmap
        .expect("a full osdmap")
        .into_fields();
    let pgmap = m
        .get_pg_map(api::GetPgMapRequest::default())
        .await
        .expect("pgmap")
        .pools
        .into_iter()
        .map(|p| p.into_fields())
        .find(|p| p.pool_id == pool)
        .expect("the pool's pgmap");
    GrpcView {
        osdmap,
        pool_epoch: pgmap.epoch,
        pgs: pgmap.pgs,
    }
}

/// The raw map of `pool` and the gRPC view of the same epochs (read again until both agree,
/// in case a map changed between the reads).
async fn consistent_maps(
    m: &MonitorClient,
    client: &mut RawClient,
    seq: &mut u64,
    pool: u32,
) -> (RawClusterMap, GrpcView) {
    let deadline = Instant::now() + LONG;
    loop {
        let before = grpc_view(m, pool).await;
        *seq += 1;
        let reply = cluster_map(client, *seq, 0, pool, 0).await;
        assert_eq!(reply.header.status, status::OK);
        let map = RawClusterMap::parse(&reply.body).expect("a well-formed cluster map");
        let after = grpc_view(m, pool).await;
        let same = |v: &GrpcView| (v.osdmap.epoch, v.pool_epoch);
        if same(&before) == same(&after) && (map.osdmap_epoch, map.pgmap_epoch) == same(&after) {
            return (map, after);
        }
        assert!(Instant::now() < deadline, "the maps never held still");
    }
}

/// Asserts the raw map carries exactly what the gRPC view says.
fn assert_same_map(map: &RawClusterMap, view: &GrpcView, pool: u32) {
    assert_eq!(map.osdmap_epoch, view.osdmap.epoch);
    assert_eq!(map.pgmap_epoch, view.pool_epoch);
    let mut osds = view.osdmap.osds.clone();
    osds.sort_by_key(|o| o.id);
    assert_eq!(map.osds.len(), osds.len());
    for (r, g) in map.osds.iter().zip(&osds) {
        assert_eq!(r.id, g.id as i32);
        assert_eq!((r.is_in(), r.is_up()), (g.r#in, g.up), "osd.{}", g.id);
        assert_eq!(r.flags & !3, 0);
        assert_eq!(r.address, g.address);
        let shards = g.shards.as_ref().map(shard_ports).unwrap_or_default();
        let expected: Vec<raw::RawShard> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| raw::RawShard {
                shard_id: i as u32,
                port: if s.raw_port != 0 { s.raw_port } else { s.port } as u16,
                core_id: s.core_id as u16,
            })
            .collect();
        assert_eq!(r.shards, expected, "osd.{}", g.id);
    }
    let mut pgs = view.pgs.clone();
    pgs.sort_by_key(|p| p.id);
    assert_eq!(map.pgs.len(), pgs.len());
    for (r, g) in map.pgs.iter().zip(&pgs) {
        assert_eq!((r.pool, r.pg), (pool as i32, g.id as i32));
        assert_eq!(r.version, g.version as i64);
        assert_eq!(r.state, g.state);
        assert_eq!(r.primary_shard, g.core);
        let members: Vec<i32> = g.members.iter().map(|&m| m as i32).collect();
        assert_eq!(r.replicas, members, "pg {}", g.id);
    }
}

/// A metric series of monitor `i` whose line contains every one of `parts`.
fn metric_with(c: &TestCluster, i: usize, name: &str, parts: &[&str]) -> f64 {
    let (_, body) = c.http_get(i, "/metrics").expect("metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_answers_like_the_api_and_refuses_bad_requests() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let osds = boot_osds(&m, 1, 4, 4).await;
    let beating = keep_beating(m.clone(), osds.clone());
    // An OSD that applied for an id and never booted: in the map, with no address.
    m.apply_id(api::ApplyIdRequest { uuid: uuid(99) })
        .await
        .expect("apply id");
    let pool = m
        .create_pool(pool_request("rbd", 3, 32))
        .await
        .expect("pool")
        .pool_id;
    m.create_pool(pool_request("other", 2, 8))
        .await
        .expect("second pool");
    let image = m
        .create_image(api::CreateImageRequest {
            pool_name: "rbd".into(),
            image_name: "vm".into(),
            size: 1 << 30,
            object_size: 0,
        })
        .await
        .expect("image")
        .image
        .expect("image info");

    let mut client = RawClient::connect(&c.monitors[0].raw)
        .await
        .expect("the raw port listens");
    let mut seq = 100;

    // GET_CLUSTER_MAP: every OSD and every PG of the pool, as the API says.
    let (map, view) = consistent_maps(&m, &mut client, &mut seq, pool).await;
    assert_same_map(&map, &view, pool);
    assert_eq!(map.osds.len(), 5);
    assert_eq!(map.pgs.len(), 32);
    let never_booted = map.osds.last().unwrap();
    assert_eq!(
        (
            never_booted.address.as_str(),
            never_booted.shards.len(),
            never_booted.flags
        ),
        ("", 0, 0)
    );
    assert!(
        map.osds[..4]
            .iter()
            .all(|o| o.flags == 3 && o.shards.len() == 4)
    );
    // Raw ports are preferred to RDMA ports (the harness boots raw ports 30000 + i).
    assert_eq!(map.osds[0].shards[1].port, 30_001);

    // The same epochs again: nothing new.
    seq += 1;
    let stale = cluster_map(&mut client, seq, map.osdmap_epoch, pool, map.pgmap_epoch).await;
    assert_eq!(
        (stale.header.status, stale.body.len()),
        (status::STALE_EPOCH, 0)
    );
    seq += 1;
    let behind = cluster_map(
        &mut client,
        seq,
        map.osdmap_epoch - 1,
        pool,
        map.pgmap_epoch,
    )
    .await;
    assert_eq!(behind.header.status, status::OK);
    seq += 1;
    let missing = cluster_map(&mut client, seq, 0, 4242, 0).await;
    assert_eq!(
        (missing.header.status, missing.body.len()),
        (status::NOT_FOUND, 0)
    );
    seq += 1;
    let zero = cluster_map(&mut client, seq, 0, 0, 0).await;
    assert_eq!(
        (zero.header.status, zero.body.len()),
        (status::INVALID_REQUEST, 0)
    );

    // GET_IMAGE_INFO: found, with the epoch the client computes (decimal numbers).
    let epoch = raw::image_epoch(
        "rbd",
        "vm",
        image.id as i32,
        image.size as i64,
        image.object_size as i64,
    );
    seq += 1;
    let found = image_info(&mut client, seq, 0, "rbd", "vm").await;
    assert_eq!(found.header.status, status::OK);
    assert_eq!(
        RawImageInfo::parse(&found.body).expect("32 bytes"),
        RawImageInfo {
            epoch,
            pool_id: pool,
            block_size: raw::BLOCK_SIZE,
            object_size: 4 << 20,
            flags: 0,
            size: 1 << 30,
        }
    );
    seq += 1;
    let stale = image_info(&mut client, seq, epoch, "rbd", "vm").await;
    assert_eq!(
        (stale.header.status, stale.body.len()),
        (status::STALE_EPOCH, 0)
    );
    seq += 1;
    let other = image_info(&mut client, seq, epoch ^ 1, "rbd", "vm").await;
    assert_eq!(other.header.status, status::OK);
    for (pool_name, image_name) in [("rbd", "nope"), ("other", "vm"), ("nopool", "vm")] {
        seq += 1;
        let r = image_info(&mut client, seq, 0, pool_name, image_name).await;
        assert_eq!(
            r.header.status,
            status::NOT_FOUND,
            "{pool_name}/{image_name}"
        );
        assert_eq!(
            RawImageInfo::parse(&r.body).expect("32 bytes"),
            RawImageInfo {
                epoch: 0,
                pool_id: 0,
                block_size: 4096,
                object_size: 0,
                flags: 0,
                size: 0,
            }
        );
    }

    // Bad headers and bodies: INVALID_REQUEST with an empty body, and the connection goes on.
    let good_body = {
        let whole = raw::get_cluster_map(0, 0, pool, 0);
        whole[raw::HEADER_BYTES..].to_vec()
    };
    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    type Edit = fn(&mut RawHeader);
    let variants: [(&str, Edit); 6] = [
        ("magic", |h| h.magic = 0x4642_5258),
        ("major version", |h| h.version_major = 2),
        ("service", |h| h.service = 2),
        ("response flag", |h| h.flags = raw::FLAG_RESPONSE),
        ("opcode 0", |h| h.opcode = 0),
        ("opcode 3", |h| h.opcode = 3),
    ];
    for (what, change) in variants {
        seq += 1;
        let mut h = RawHeader::request(raw::OP_GET_CLUSTER_MAP, seq, 0);
        change(&mut h);
        bad.push((what, raw::message(h, &good_body)));
    }
    for len in [0, 23, 25] {
        seq += 1;
        let mut body = good_body.clone();
        body.resize(len, 0);
        bad.push((
            "cluster map body length",
            raw::message(RawHeader::request(raw::OP_GET_CLUSTER_MAP, seq, 0), &body),
        ));
    }
    let image_body = {
        let whole = raw::get_image_info(0, 0, "rbd", "vm").unwrap();
        whole[raw::HEADER_BYTES..].to_vec()
    };
    for cut in [image_body.len() - 1, 11] {
        seq += 1;
        bad.push((
            "image body shorter than its names",
            raw::message(
                RawHeader::request(raw::OP_GET_IMAGE_INFO, seq, 0),
                &image_body[..cut],
            ),
        ));
    }
    seq += 1;
    let mut longer = image_body.clone();
    longer.push(b'x');
    bad.push((
        "image body longer than its names",
        raw::message(RawHeader::request(raw::OP_GET_IMAGE_INFO, seq, 0), &longer),
    ));
    for (what, request) in bad {
        let sent = RawHeader::parse(&request).unwrap().seq;
        let r = call(&mut client, sent, &request).await;
        assert_eq!(
            (r.header.status, r.body.len()),
            (status::INVALID_REQUEST, 0),
            "{what}"
        );
        seq += 1;
        let next = image_info(&mut client, seq, 0, "rbd", "vm").await;
        assert_eq!(next.header.status, status::OK, "the request after: {what}");
    }

    // Pipelined requests are answered in order.
    let mut both = raw::get_cluster_map(7001, 0, pool, 0);
    both.extend(raw::get_image_info(7002, 0, "rbd", "vm").unwrap());
    client.send(&both).await.unwrap();
    let first = client.recv().await.unwrap();
    let second = client.recv().await.unwrap();
    assert_eq!((first.header.seq, first.header.status), (7001, status::OK));
    assert_eq!(
        (second.header.seq, second.header.status),
        (7002, status::OK)
    );

    // A body over the limit: refused from the header alone, then the connection is closed.
    let mut huge = RawHeader::request(raw::OP_GET_IMAGE_INFO, 9001, 0);
    huge.body_len = u32::MAX;
    let r = call(&mut client, 9001, &huge.encode()).await;
    assert_eq!(
        (r.header.status, r.body.len()),
        (status::INVALID_REQUEST, 0)
    );
    assert!(
        client.closed_within(LONG).await,
        "closed after the oversized header"
    );
    // The limit is just above the longest legal request: two names of 65535 bytes answer.
    let mut client = RawClient::connect(&c.monitors[0].raw).await.unwrap();
    let long = "x".repeat(65_535);
    let r = image_info(&mut client, 1, 0, &long, &long).await;
    assert_eq!(r.header.status, status::NOT_FOUND);
    let mut over = RawHeader::request(raw::OP_GET_IMAGE_INFO, 2, 0);
    over.body_len = 12 + 2 * 65_535 + 1;
    let r = call(&mut client, 2, &over.encode()).await;
    assert_eq!(r.header.status, status::INVALID_REQUEST);
    assert!(client.closed_within(LONG).await);

    // Every request counted under protocol "raw".
    let name = "fastblock_legacy_requests_total";
    let raw_label = "protocol=\"raw\"";
    assert!(
        metric_with(
            &c,
            0,
            name,
            &[raw_label, "kind=\"get_cluster_map\"", "result=\"ok\""]
        ) >= 4.0
    );
    assert!(
        metric_with(
            &c,
            0,
            name,
            &[raw_label, "kind=\"get_image_info\"", "result=\"refused\""]
        ) >= 3.0
    );
    assert!(
        metric_with(
            &c,
            0,
            name,
            &[raw_label, "kind=\"invalid\"", "result=\"refused\""]
        ) >= 6.0
    );
    beating.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_monitor_port_zero_disables_the_raw_protocol() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    let config = std::fs::read_to_string(&c.monitors[0].config).unwrap();
    let disabled: String = config
        .lines()
        .map(|l| {
            if l.starts_with("raw_monitor_port") {
                "raw_monitor_port = 0".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(config, disabled);
    std::fs::write(&c.monitors[0].config, disabled).unwrap();
    c.start_all();
    c.wait_leader(&[0], LONG);
    assert!(
        tokio::net::TcpStream::connect(&c.monitors[0].raw)
            .await
            .is_err(),
        "nothing listens on the raw port"
    );
    assert!(c.log(0).contains("raw=disabled"), "{}", c.log(0));
}

/// Connects to `address` and asks for the cluster map until a full answer comes (the
/// connection may be refused, closed or unanswered during a failover).
async fn map_eventually(address: &str, pool: u32) -> (RawClient, RawClusterMap) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seq = 50_000;
    loop {
        seq += 1;
        let attempt = async {
            let mut client = RawClient::connect(address).await?;
            let reply = client
                .exchange(&raw::get_cluster_map(seq, 0, pool, 0))
                .await?;
            Ok::<_, RawClientError>((client, reply))
        };
        match attempt.await {
            Ok((client, reply)) if reply.header.status == status::OK => {
                assert_eq!(reply.header.seq, seq);
                let map = RawClusterMap::parse(&reply.body).expect("a well-formed map");
                return (client, map);
            }
            Ok((_, reply)) => eprintln!("status {} while waiting", reply.header.status),
            Err(e) => eprintln!("{e} while waiting"),
        }
        assert!(Instant::now() < deadline, "no raw answer from {address}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_forwards_raw_clients_to_the_leader_across_a_failover() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let leader_grpc = c.monitors[leader].grpc.clone();
    let standby = (0..3).find(|&i| i != leader).unwrap();
    wait_until(LONG, "the standby to know the leader", || {
        c.readyz(standby)
            .is_some_and(|v| v["role"] == "standby" && v["leader"] == leader_grpc.as_str())
    });
    let m = Arc::new(c.cluster_client());
    let osds = boot_osds(&m, 1, 3, 3).await;
    let beating = keep_beating(m.clone(), osds);
    let pool = m
        .create_pool(pool_request("rbd", 3, 16))
        .await
        .expect("pool")
        .pool_id;
    let image = m
        .create_image(api::CreateImageRequest {
            pool_name: "rbd".into(),
            image_name: "vm".into(),
            size: 1 << 30,
            object_size: 1 << 20,
        })
        .await
        .expect("image")
        .image
        .expect("image info");
    let epoch = raw::image_epoch(
        "rbd",
        "vm",
        image.id as i32,
        image.size as i64,
        image.object_size as i64,
    );

    // Through the standby: the leader's map and image.
    let mut client = RawClient::connect(&c.monitors[standby].raw)
        .await
        .expect("the standby's raw port listens");
    let mut seq = 0;
    let (map, view) = consistent_maps(&m, &mut client, &mut seq, pool).await;
    assert_same_map(&map, &view, pool);
    assert_eq!(map.osds.len(), 3);
    seq += 1;
    let found = image_info(&mut client, seq, 0, "rbd", "vm").await;
    assert_eq!(found.header.status, status::OK);
    assert_eq!(RawImageInfo::parse(&found.body).unwrap().epoch, epoch);
    // The leader answered: it counted the requests, the standby none.
    let counted = |i: usize| {
        metric_with(
            &c,
            i,
            "fastblock_legacy_requests_total",
            &["protocol=\"raw\""],
        )
    };
    assert!(counted(leader) >= 2.0);
    assert_eq!(counted(standby), 0.0);

    // The leader dies: the forwarded connection is closed, and a client reconnecting to the
    // standby gets answers again, from whichever monitor leads now.
    c.kill9(leader);
    assert!(
        client.closed_within(LONG).await,
        "the forwarded connection closed with the leader"
    );
    let remaining: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.wait_leader(&remaining, LONG);
    let (mut client, after) = map_eventually(&c.monitors[standby].raw, pool).await;
    assert!(after.osdmap_epoch >= map.osdmap_epoch);
    assert_eq!(
        after.osds.iter().map(|o| o.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(after.pgs.len(), 16);
    let found = image_info(&mut client, 1, 0, "rbd", "vm").await;
    assert_eq!(found.header.status, status::OK);
    assert_eq!(
        RawImageInfo::parse(&found.body).unwrap().epoch,
        epoch,
        "same image"
    );
    // And directly on the new leader too.
    let (_, direct) = map_eventually(&c.monitors[new_leader].raw, pool).await;
    assert_eq!(direct.osds.len(), 3);
    let by_id: BTreeMap<i32, u32> = direct.osds.iter().map(|o| (o.id, o.flags)).collect();
    assert_eq!(by_id.len(), 3);
    beating.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_raw_port_is_a_clear_start_up_error() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    let _taken = std::net::TcpListener::bind(&c.monitors[0].raw).expect("take the raw port");
    c.start_all();
    let exit = c.wait_exit(0, LONG);
    assert!(!exit.success());
    let stderr = std::fs::read_to_string(c.monitors[0].data_dir.with_extension("stderr")).unwrap();
    assert!(
        stderr.contains("cannot listen for the raw protocol")
            && stderr.contains("(raw_monitor_port)"),
        "{stderr}"
    );
}
