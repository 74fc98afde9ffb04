//! Oversized and malformed requests against a real monitor: string fields over their limit get
//! the field's error with a short message; requests over their call's size limit are refused
//! before the monitor buffers them; request bodies that are not protobuf or not gRPC framing are
//! INVALID_ARGUMENT. Every refusal asserts the code, the ErrorInfo reason, a bounded message and
//! details, and that nothing a client can read changed.

mod common;

use std::time::Duration;

use common::api::{Fingerprint, boot_osds, boot_request, fingerprint, grpc_frame, raw_grpc_call};
use common::{ClusterOptions, TestCluster, proc_memory};
use fastblock_monitor::client::{ClientError, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::service::status::reason;
use prost::Message;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);
/// The per-call limits of docs/api.md.
const SMALL_LIMIT: usize = 64 << 10;
const BOOT_LIMIT: usize = 1 << 20;
/// A value that fits a 64 KiB call with room for the other fields.
const FITS_SMALL: usize = 60_000;
/// A value that fits Boot's 1 MiB with room for the other fields.
const FITS_BOOT: usize = 1_000_000;
const MIB: usize = 1 << 20;
/// The bound on a refusal's message and on its encoded details; gRPC clients refuse response
/// headers of more than a few KiB.
const SHORT: usize = 400;
const MONITOR: &str = "/fastblock.monitor.v1.Monitor";

/// A single-monitor cluster with 3 OSDs on 3 hosts, pool "rbd" and image "rbd"/"vm".
async fn cluster_with_data() -> (TestCluster, MonitorClient, Fingerprint) {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 3, 3).await;
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 8,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
    m.create_image(api::CreateImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm".to_string(),
        size: 1 << 30,
        object_size: 0,
    })
    .await
    .unwrap();
    let before = fingerprint(&m, &[("rbd", "vm")]).await;
    (c, m, before)
}

/// Asserts a refusal's code and reason, that its message and details are short, and, when
/// `quoted`, that the message quotes the value as a prefix plus its length.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, ClientError>,
    code: Code,
    want: &str,
    quoted: Option<usize>,
) -> tonic::Status {
    let status = match r {
        Ok(v) => panic!("{what}: expected {code:?}/{want}, got Ok({v:?})"),
        Err(ClientError::Status(s)) => s,
        Err(e) => panic!("{what}: expected an answer, got {e}"),
    };
    check_status(what, &status, code, want);
    if let Some(len) = quoted {
        let marker = format!("…({len} bytes)");
        assert!(
            status.message().contains(&marker),
            "{what}: no {marker} in {}",
            status.message()
        );
    }
    status
}

#[track_caller]
fn check_status(what: &str, status: &tonic::Status, code: Code, want: &str) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(reason(status).as_deref(), Some(want), "{what}: {status:?}");
    assert!(
        status.message().len() < SHORT,
        "{what}: a message of {} bytes",
        status.message().len()
    );
    assert!(
        status.details().len() < SHORT,
        "{what}: details of {} bytes",
        status.details().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_string_fields_get_their_error_with_a_short_message() {
    let (_cluster, m, before) = cluster_with_data().await;
    let small = "s".repeat(FITS_SMALL);
    let inv = Code::InvalidArgument;

    // Values over their field's limit, as large as the call accepts.
    refused(
        "ApplyId uuid",
        m.apply_id(api::ApplyIdRequest {
            uuid: small.clone(),
        })
        .await,
        inv,
        "INVALID_UUID",
        Some(FITS_SMALL),
    );
    for field in ["host", "rack", "root"] {
        let mut r = api::SetOsdLocationRequest {
            osd_id: 1,
            ..Default::default()
        };
        *match field {
            "host" => &mut r.host,
            "rack" => &mut r.rack,
            _ => &mut r.root,
        } = Some(small.clone());
        let s = refused(
            field,
            m.set_osd_location(r).await,
            inv,
            "INVALID_LOCATION",
            None,
        );
        assert_eq!(s.message(), format!("{field}: is longer than 255 bytes"));
    }
    let pool = |name: &str, failure_domain: &str, root: &str| api::CreatePoolRequest {
        name: name.to_string(),
        pg_size: 3,
        pg_count: 8,
        failure_domain: failure_domain.to_string(),
        root: root.to_string(),
    };
    refused(
        "pool name",
        m.create_pool(pool(&small, "host", "")).await,
        inv,
        "INVALID_POOL_NAME",
        None,
    );
    refused(
        "failure domain",
        m.create_pool(pool("p2", &small, "")).await,
        inv,
        "UNKNOWN_FAILURE_DOMAIN",
        Some(FITS_SMALL),
    );
    refused(
        "pool root",
        m.create_pool(pool("p2", "host", &small)).await,
        inv,
        "INVALID_LOCATION",
        None,
    );
    refused(
        "DeletePool name",
        m.delete_pool(api::DeletePoolRequest {
            name: small.clone(),
        })
        .await,
        inv,
        "INVALID_POOL_NAME",
        None,
    );
    for (pool_name, image_name, want) in [
        (small.as_str(), "vm", "INVALID_POOL_NAME"),
        ("rbd", small.as_str(), "IMAGE_NAME_TOO_LONG"),
    ] {
        let (p, i) = (pool_name.to_string(), image_name.to_string());
        refused(
            "CreateImage",
            m.create_image(api::CreateImageRequest {
                pool_name: p.clone(),
                image_name: i.clone(),
                size: 1 << 30,
                object_size: 0,
            })
            .await,
            inv,
            want,
            None,
        );
        refused(
            "ResizeImage",
            m.resize_image(api::ResizeImageRequest {
                pool_name: p.clone(),
                image_name: i.clone(),
                size: 2 << 30,
                allow_shrink: false,
            })
            .await,
            inv,
            want,
            None,
        );
        refused(
            "RemoveImage",
            m.remove_image(api::RemoveImageRequest {
                pool_name: p.clone(),
                image_name: i.clone(),
            })
            .await,
            inv,
            want,
            None,
        );
        refused(
            "GetImageInfo",
            m.get_image_info(api::GetImageInfoRequest {
                pool_name: p,
                image_name: i,
            })
            .await,
            inv,
            want,
            None,
        );
    }

    // Boot's fields, as large as Boot accepts.
    let big = "b".repeat(FITS_BOOT);
    let good = || boot_request(1, &common::api::uuid(1), "host1", 1001, 4);
    let boots: Vec<(&str, api::BootRequest, &str, Option<usize>)> = vec![
        (
            "uuid",
            api::BootRequest {
                uuid: big.clone(),
                ..good()
            },
            "INVALID_UUID",
            Some(FITS_BOOT),
        ),
        (
            "address",
            api::BootRequest {
                address: big.clone(),
                ..good()
            },
            "INVALID_ADDRESS",
            Some(FITS_BOOT),
        ),
        (
            "host",
            api::BootRequest {
                host: big.clone(),
                ..good()
            },
            "INVALID_LOCATION",
            None,
        ),
        (
            "rack",
            api::BootRequest {
                rack: big.clone(),
                ..good()
            },
            "INVALID_LOCATION",
            None,
        ),
        (
            "root",
            api::BootRequest {
                root: big.clone(),
                ..good()
            },
            "INVALID_LOCATION",
            None,
        ),
        (
            "config",
            api::BootRequest {
                config: big.clone(),
                ..good()
            },
            "CONFIG_TOO_LARGE",
            None,
        ),
    ];
    for (what, request, want, quoted) in boots {
        assert!(request.encoded_len() < BOOT_LIMIT, "{what} fits Boot");
        refused(what, m.boot(request).await, inv, want, quoted);
    }

    // A 1 MiB PG name in a DataStatistics report (which accepts MiBs).
    let counters = api::PgIoCounters::default();
    refused(
        "PG name",
        m.data_statistics(api::DataStatisticsRequest {
            osd_id: 1,
            pgs: [("9".repeat(MIB), counters)].into_iter().collect(),
        })
        .await,
        inv,
        "INVALID_PG_NAME",
        Some(MIB),
    );

    // Values within their field's limit but longer than an error quotes.
    refused(
        "unknown pool",
        m.delete_pool(api::DeletePoolRequest {
            name: "q".repeat(255),
        })
        .await,
        Code::NotFound,
        "UNKNOWN_POOL_NAME",
        Some(255),
    );
    refused(
        "unknown image",
        m.get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: "i".repeat(512),
        })
        .await,
        Code::NotFound,
        "IMAGE_NOT_FOUND",
        Some(512),
    );
    refused(
        "root without OSDs",
        m.create_pool(pool("p3", "host", &"r".repeat(255))).await,
        Code::FailedPrecondition,
        "NO_ENOUGH_OSD",
        Some(255),
    );

    assert_eq!(
        fingerprint(&m, &[("rbd", "vm")]).await,
        before,
        "refusals changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_their_call_limit_are_refused_before_they_are_buffered() {
    let (c, m, before) = cluster_with_data().await;
    let pid = c.monitors[0].pid().expect("monitor running");

    // Four concurrent 60 MiB uuids, each on its own connection: refused at their first frame,
    // so the monitor's peak memory grows by far less than what was sent.
    const HUGE: usize = 60 * MIB;
    let rss_before = proc_memory(pid, "VmRSS");
    let calls = (0..4).map(|i| {
        let client = c.client(0);
        let uuid = char::from(b'a' + i).to_string().repeat(HUGE);
        async move { client.apply_id(api::ApplyIdRequest { uuid }).await }
    });
    for (i, r) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        let s = refused(
            &format!("60 MiB uuid {i}"),
            r,
            Code::ResourceExhausted,
            "REQUEST_TOO_LARGE",
            None,
        );
        assert!(
            s.message().contains("ApplyId") && s.message().contains("65536"),
            "{}",
            s.message()
        );
    }
    let peak_growth = proc_memory(pid, "VmHWM").saturating_sub(rss_before);
    eprintln!(
        "monitor RSS before {} MiB; peak growth {} MiB for {} MiB sent",
        rss_before >> 20,
        peak_growth >> 20,
        (4 * HUGE) >> 20
    );
    assert!(
        peak_growth < (4 * HUGE as u64) / 8,
        "peak RSS grew by {peak_growth} bytes for {} bytes of requests",
        4 * HUGE
    );

    // Every call refuses a message over its limit, naming the call and the limit.
    let over = "o".repeat(MIB);
    let too_large = |what: &str, r: Result<_, ClientError>, call: &str, limit: usize| {
        let s = refused(what, r, Code::ResourceExhausted, "REQUEST_TOO_LARGE", None);
        assert!(
            s.message().contains(call) && s.message().contains(&limit.to_string()),
            "{what}: {}",
            s.message()
        );
    };
    too_large(
        "ApplyId",
        m.apply_id(api::ApplyIdRequest { uuid: over.clone() })
            .await
            .map(|_| ()),
        "ApplyId",
        SMALL_LIMIT,
    );
    too_large(
        "CreatePool",
        m.create_pool(api::CreatePoolRequest {
            name: over.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        "CreatePool",
        SMALL_LIMIT,
    );
    too_large(
        "DeletePool",
        m.delete_pool(api::DeletePoolRequest { name: over.clone() })
            .await
            .map(|_| ()),
        "DeletePool",
        SMALL_LIMIT,
    );
    too_large(
        "SetOsdLocation",
        m.set_osd_location(api::SetOsdLocationRequest {
            osd_id: 1,
            host: Some(over.clone()),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        "SetOsdLocation",
        SMALL_LIMIT,
    );
    too_large(
        "GetImageInfo",
        m.get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: over.clone(),
        })
        .await
        .map(|_| ()),
        "GetImageInfo",
        SMALL_LIMIT,
    );
    too_large(
        "LeaderBeElected",
        m.leader_be_elected(api::LeaderBeElectedRequest {
            leader_id: 1,
            pool_id: 1,
            pg_id: 0,
            members: vec![1; MIB / 4],
            new_members: Vec::new(),
        })
        .await
        .map(|_| ()),
        "LeaderBeElected",
        SMALL_LIMIT,
    );
    too_large(
        "Boot",
        m.boot(api::BootRequest {
            config: "c".repeat(2 * MIB),
            ..boot_request(1, &common::api::uuid(1), "host1", 1001, 4)
        })
        .await
        .map(|_| ()),
        "Boot",
        BOOT_LIMIT,
    );

    // A frame header declaring 100 MiB, over even DataStatistics' 64 MiB, is refused at once.
    let mut header = vec![0u8];
    header.extend_from_slice(&(100u32 << 20).to_be_bytes());
    header.extend_from_slice(b"partial");
    let s = raw_grpc_call(
        &c.monitors[0].grpc,
        &format!("{MONITOR}/DataStatistics"),
        header,
    )
    .await
    .unwrap_err();
    check_status(
        "100 MiB DataStatistics",
        &s,
        Code::ResourceExhausted,
        "REQUEST_TOO_LARGE",
    );
    assert!(s.message().contains("67108864"), "{}", s.message());

    // The health service has a limit too.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.monitors[0].grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let s = health
        .check(tonic_health::pb::HealthCheckRequest { service: over })
        .await
        .unwrap_err();
    check_status(
        "health check",
        &s,
        Code::ResourceExhausted,
        "REQUEST_TOO_LARGE",
    );
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fastblock.monitor.v1.Monitor".to_string(),
        })
        .await
        .expect("a normal health check still works")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    assert_eq!(
        fingerprint(&m, &[("rbd", "vm")]).await,
        before,
        "refusals changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_that_are_not_protobuf_are_invalid_arguments() {
    let (c, m, before) = cluster_with_data().await;
    let addr = c.monitors[0].grpc.clone();

    // The raw client itself works: a well-formed GetLeader answers.
    let reply = raw_grpc_call(
        &addr,
        &format!("{MONITOR}/GetLeader"),
        grpc_frame(&api::GetLeaderRequest {}.encode_to_vec()),
    )
    .await
    .expect("a well-formed raw call");
    let leader = api::GetLeaderResponse::decode(&reply[5..]).expect("a GetLeader reply");
    assert_eq!(leader.answered_by, "m1");

    // ApplyIdRequest.uuid (field 1, length 2) holding bytes that are not UTF-8.
    let not_utf8 = [0x0a, 0x02, 0xc3, 0x28];
    // CreatePoolRequest.name the same way, after a valid pg_size.
    let pool_not_utf8 = [0x10, 0x03, 0x0a, 0x03, b'a', 0xff, b'b'];
    // A field of wire type 7, which does not exist.
    let bad_wire_type = [0x0f, 0x00];
    // A varint that never ends.
    let endless_varint = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let two_messages = [grpc_frame(&[]), grpc_frame(&[])].concat();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("ApplyId", "invalid UTF-8", grpc_frame(&not_utf8)),
        ("CreatePool", "invalid UTF-8", grpc_frame(&pool_not_utf8)),
        ("ApplyId", "wire type 7", grpc_frame(&bad_wire_type)),
        ("Heartbeat", "endless varint", grpc_frame(&endless_varint)),
        ("WatchClusterMap", "wire type 7", grpc_frame(&bad_wire_type)),
        (
            "ApplyId",
            "no gRPC framing",
            b"this is not gRPC at all".to_vec(),
        ),
        (
            "ApplyId",
            "cut message",
            grpc_frame(b"\x0a\x10abc")[..8].to_vec(),
        ),
        ("ApplyId", "empty body", Vec::new()),
        ("ApplyId", "two messages", two_messages),
    ];
    for (call, what, body) in cases {
        let s = raw_grpc_call(&addr, &format!("{MONITOR}/{call}"), body)
            .await
            .unwrap_err();
        check_status(
            &format!("{call} {what}"),
            &s,
            Code::InvalidArgument,
            "INVALID_MESSAGE",
        );
    }
    let s = raw_grpc_call(&addr, &format!("{MONITOR}/ApplyId"), grpc_frame(&not_utf8))
        .await
        .unwrap_err();
    assert!(s.message().contains("UTF-8"), "{}", s.message());

    assert_eq!(
        fingerprint(&m, &[("rbd", "vm")]).await,
        before,
        "refusals changed nothing"
    );
}
