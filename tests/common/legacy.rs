//! Test-side clients of fastblock's existing wire protocols (LEGACY-PROTOCOL.md), written from
//! the wire description alone and independent of any server code: a protocol is tested over
//! real sockets with a client that cannot share the server's mistakes.
//!
//! - [`protobuf`]: a hand-written protobuf encoder/decoder (no generated code);
//! - [`messages`]: the `msg.Request`/`msg.Response` envelopes and the messages tests use;
//! - [`framed`]: the 8-byte length framing of §6 and [`framed::LegacyClient`] (port 3333);
//! - [`raw`]: the 28-byte-header raw protocol of §11 and [`raw::RawClient`] (port 3334).

pub mod framed;
pub mod messages;
pub mod protobuf;
pub mod raw;

use std::collections::BTreeMap;
use std::net::IpAddr;

use framed::LegacyClient;
use messages::{BootRequest, ClusterMapReply, Request, Response, boot_result};

/// OSD `n`'s uuid in the legacy tests.
pub fn osd_uuid(n: u32) -> String {
    format!("6f1c5a2e-0000-4000-8000-{n:012}")
}

/// An address in the test's loopback range that the monitor records as OSD `n`'s, and that
/// the OSD's connection comes from (`LegacyClient::connect_from`).
pub fn osd_ip(cluster_ip: &str, n: u32) -> IpAddr {
    let mut parts: Vec<u8> = cluster_ip.split('.').map(|p| p.parse().unwrap()).collect();
    parts[3] = parts[3].wrapping_add(100 + n as u8).max(1);
    IpAddr::from([parts[0], parts[1], parts[2], parts[3]])
}

/// One request and its reply; a transport or framing failure fails the test.
pub async fn call(c: &mut LegacyClient, r: Request) -> Response {
    c.call(&r).await.unwrap_or_else(|e| panic!("{r:?}: {e}"))
}

/// The `ok` of a request answered with the plain ok reply.
pub async fn ok(c: &mut LegacyClient, r: Request) -> bool {
    match call(c, r).await {
        Response::Ok { ok, .. } => ok,
        other => panic!("not an ok reply: {other:?}"),
    }
}

/// The C++ OSD's poll: GetClusterMap with its id, the full osdmap, and the pools it holds.
pub async fn poll(c: &mut LegacyClient, osdid: i32, pools: BTreeMap<i32, i64>) -> ClusterMapReply {
    match call(c, Request::cpp_poll(osdid, pools)).await {
        Response::GetClusterMap(m) => m,
        other => panic!("not a cluster map: {other:?}"),
    }
}

/// Applies over `admin` for OSD `n`'s id (uuid [`osd_uuid`]), then boots it as the C++ OSD
/// does: on a connection of its own to `monitor` from its own address ([`osd_ip`]), host
/// `h<n>`, `cores` shards from port 7000. The id and the OSD's connection.
pub async fn apply_and_boot(
    admin: &mut LegacyClient,
    monitor: &str,
    cluster_ip: &str,
    n: u32,
    cores: u32,
) -> (i32, LegacyClient) {
    let id = match call(admin, Request::ApplyId { uuid: osd_uuid(n) }).await {
        Response::ApplyId(r) => {
            assert_eq!((r.errorcode, r.uuid.as_str()), (0, osd_uuid(n).as_str()));
            r.id
        }
        other => panic!("{other:?}"),
    };
    let ip = osd_ip(cluster_ip, n);
    let mut conn = LegacyClient::connect_from(monitor, ip).await.unwrap();
    let boot = BootRequest::like_cpp_osd(
        id,
        &osd_uuid(n),
        &ip.to_string(),
        &format!("h{n}"),
        cores,
        7000,
        0,
    );
    match call(&mut conn, Request::Boot(boot)).await {
        Response::Boot { result } => assert_eq!(result, boot_result::OK, "boot of {id}"),
        other => panic!("{other:?}"),
    }
    (id, conn)
}
