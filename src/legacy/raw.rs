//! The raw binary protocol of the kernel client kfastblock on `raw_monitor_port` (3334 by
//! default), LEGACY-PROTOCOL.md §11; docs/legacy-raw.md says what we answer and why.
//!
//! Every message, both ways, is a 28-byte little-endian [`Header`] followed by `body_len` bytes.
//! Two requests exist: GET_IMAGE_INFO (opcode 1) and GET_CLUSTER_MAP (opcode 2). This file is
//! the pure part: the header, the request checks and both answers, built from a
//! [`ClusterState`] with no I/O. [`server`] reads requests off a connection, answers them from
//! the term's current snapshot, and runs the accept loop (a standby forwards the connection to
//! the leader, as for the framed protocol: [`super::route`]).
//!
//! Decisions the doc leaves open (docs/legacy-raw.md):
//! - The image epoch hashes its numbers as **decimal ASCII text**
//!   (`rbd\0vm\01\01073741824\04194304`).
//! - "No OSDs" means no OSD record at all (applied or booted; the Go monitor's `noOsdsExist`):
//!   the osdmap epoch is then reported as `u64::MAX` (−1 cast), and compared as such for
//!   STALE_EPOCH. Otherwise our epochs are ≥ 1, so a client starting from 0 gets a full answer.
//! - A value that does not fit its wire field is never cut: the answer is INTERNAL_ERROR
//!   with an empty body. The one exception is a shard's `core_id`, a field the design doc
//!   calls reserved, which is clamped to 65535.
//! - A body over [`MAX_BODY_LEN`] (the longest legal request) is refused from the header
//!   alone, before any allocation, and the connection is closed after the reply: its bytes
//!   cannot be skipped without reading them.

pub mod server;

pub use server::{OsdSectionCache, serve, serve_connection};

use crate::cluster::{ClusterState, Image, Osd, Pool, Shard};

/// `magic`: "WRBF" read as a little-endian u32 (bytes `57 52 42 46` on the wire).
pub const MAGIC: u32 = 0x4642_5257;
/// The major version we speak; a request of another major version is refused.
pub const VERSION_MAJOR: u8 = 1;
/// The minor version we answer with (any minor version of major 1 is accepted).
pub const VERSION_MINOR: u8 = 0;
/// `service`: the monitor.
pub const SERVICE_MONITOR: u8 = 1;
/// `flags` bit 0: the message is a response.
pub const FLAG_RESPONSE: u32 = 1;
/// Bytes of every message's header.
pub const HEADER_LEN: usize = 28;

/// Opcode 1: an image's size, object size and epoch.
pub const OP_GET_IMAGE_INFO: u8 = 1;
/// Opcode 2: every OSD and one pool's PGs.
pub const OP_GET_CLUSTER_MAP: u8 = 2;

/// Bytes of a GET_CLUSTER_MAP request body.
pub const CLUSTER_MAP_REQUEST_LEN: usize = 24;
/// Bytes of a GET_IMAGE_INFO request body before the two names.
pub const IMAGE_INFO_REQUEST_FIXED_LEN: usize = 12;
/// Bytes of a GET_IMAGE_INFO answer body (OK and NOT_FOUND).
pub const IMAGE_INFO_LEN: usize = 32;
/// The block size every GET_IMAGE_INFO answer carries.
pub const BLOCK_SIZE: u32 = 4096;

/// The largest request body accepted: the longest legal one, a GET_IMAGE_INFO with two names
/// of 65,535 bytes (12 + 2 × 65,535 = 131,082 bytes). A longer body cannot be a valid request
/// of any opcode, so a header announcing one is answered INVALID_REQUEST from the header alone
/// (nothing allocated, nothing read) and the connection is closed.
pub const MAX_BODY_LEN: u32 = IMAGE_INFO_REQUEST_FIXED_LEN as u32 + 2 * u16::MAX as u32;

/// A response status (§11). Only OK, INVALID_REQUEST, NOT_FOUND, STALE_EPOCH and
/// INTERNAL_ERROR are produced; the others are listed for completeness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    InvalidRequest = 1,
    NotFound = 2,
    StaleEpoch = 3,
    RetryLater = 4,
    NotLeader = 5,
    PgInitializing = 6,
    OsdDown = 7,
    InternalError = 8,
}

impl Status {
    /// The value on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The `result` label of `fastblock_legacy_requests_total`: `ok` for an answer (a stale
    /// epoch is an answer: "nothing new"), `refused` for an error code about the request,
    /// `failed` when the monitor could not answer.
    pub fn result_label(self) -> &'static str {
        match self {
            Status::Ok | Status::StaleEpoch => "ok",
            Status::InternalError | Status::RetryLater | Status::NotLeader => "failed",
            Status::InvalidRequest
            | Status::NotFound
            | Status::PgInitializing
            | Status::OsdDown => "refused",
        }
    }
}

/// The 28-byte header, fields in wire order, each little-endian, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: u32,
    pub version_major: u8,
    pub version_minor: u8,
    pub service: u8,
    pub opcode: u8,
    pub flags: u32,
    pub seq: u64,
    pub status: u32,
    pub body_len: u32,
}

impl Header {
    /// Reads the fields of a header; judges none of them (see [`check_header`]).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[12..20]);
        Header {
            magic: u32_at(0),
            version_major: b[4],
            version_minor: b[5],
            service: b[6],
            opcode: b[7],
            flags: u32_at(8),
            seq: u64::from_le_bytes(seq),
            status: u32_at(20),
            body_len: u32_at(24),
        }
    }

    /// The header's 28 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4] = self.version_major;
        out[5] = self.version_minor;
        out[6] = self.service;
        out[7] = self.opcode;
        out[8..12].copy_from_slice(&self.flags.to_le_bytes());
        out[12..20].copy_from_slice(&self.seq.to_le_bytes());
        out[20..24].copy_from_slice(&self.status.to_le_bytes());
        out[24..28].copy_from_slice(&self.body_len.to_le_bytes());
        out
    }

    /// The header of our answer to `request`: our magic, version and service, the request's
    /// opcode and seq echoed, the response flag.
    pub fn response_to(request: &Header, status: Status, body_len: u32) -> Header {
        Header {
            magic: MAGIC,
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            service: SERVICE_MONITOR,
            opcode: request.opcode,
            flags: FLAG_RESPONSE,
            seq: request.seq,
            status: status.code(),
            body_len,
        }
    }
}

/// What a request asks, by its opcode; also the `kind` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GetImageInfo,
    GetClusterMap,
    /// A header refused before its opcode meant anything (bad magic, version, service, flag)
    /// or an unknown opcode.
    Invalid,
}

impl Kind {
    /// The `kind` label of `fastblock_legacy_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::GetImageInfo => "get_image_info",
            Kind::GetClusterMap => "get_cluster_map",
            Kind::Invalid => "invalid",
        }
    }
}

/// Why a header is refused (each answered INVALID_REQUEST with an empty body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    #[error("major version {0} (we speak 1)")]
    Version(u8),
    #[error("service {0} (the monitor is 1)")]
    Service(u8),
    #[error("the response flag is set on a request")]
    ResponseFlag,
    #[error("unknown opcode {0}")]
    Opcode(u8),
}

/// The request a header asks for, in the order §11 checks: magic, major version, service, the
/// response flag, then the opcode. The minor version and the status field are not judged.
pub fn check_header(h: &Header) -> Result<Kind, HeaderError> {
    if h.magic != MAGIC {
        return Err(HeaderError::Magic(h.magic));
    }
    if h.version_major != VERSION_MAJOR {
        return Err(HeaderError::Version(h.version_major));
    }
    if h.service != SERVICE_MONITOR {
        return Err(HeaderError::Service(h.service));
    }
    if h.flags & FLAG_RESPONSE != 0 {
        return Err(HeaderError::ResponseFlag);
    }
    match h.opcode {
        OP_GET_IMAGE_INFO => Ok(Kind::GetImageInfo),
        OP_GET_CLUSTER_MAP => Ok(Kind::GetClusterMap),
        other => Err(HeaderError::Opcode(other)),
    }
}

/// Whether a header announces a body over [`MAX_BODY_LEN`]: answered INVALID_REQUEST, then the
/// connection is closed (the body is never read).
pub fn body_too_large(h: &Header) -> bool {
    h.body_len > MAX_BODY_LEN
}

/// The answer to one request: its status and body, and what it was (for the metrics and log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Kind,
    pub status: Status,
    pub body: Vec<u8>,
    /// Why a request was refused or failed, for the debug log (empty for answers).
    pub why: String,
}

impl Reply {
    fn new(kind: Kind, status: Status, body: Vec<u8>) -> Reply {
        Reply {
            kind,
            status,
            body,
            why: String::new(),
        }
    }

    fn refused(kind: Kind, status: Status, why: impl Into<String>) -> Reply {
        Reply {
            kind,
            status,
            body: Vec::new(),
            why: why.into(),
        }
    }

    /// The whole response message: header (seq and opcode of `request`) and body. A body
    /// that cannot be announced in a u32 becomes an INTERNAL_ERROR with an empty body.
    pub fn encode(&self, request: &Header) -> Vec<u8> {
        let (status, body) = match u32::try_from(self.body.len()) {
            Ok(_) => (self.status, &self.body[..]),
            Err(_) => (Status::InternalError, &[][..]),
        };
        let header = Header::response_to(request, status, body.len() as u32);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(body);
        out
    }
}

/// Answers one request whose header passed the size check, from `state`. `osds`: the OSD
/// section of GET_CLUSTER_MAP answers (see [`osd_section`]), computed when asked for, so that
/// the caller can reuse it across requests at the same osdmap epoch.
pub fn answer(
    header: &Header,
    body: &[u8],
    state: &ClusterState,
    osds: impl FnOnce() -> Result<OsdSection, Unrepresentable>,
) -> Reply {
    match check_header(header) {
        Err(e) => Reply::refused(Kind::Invalid, Status::InvalidRequest, e.to_string()),
        Ok(Kind::GetImageInfo) => image_info(body, state),
        Ok(Kind::GetClusterMap) => cluster_map(body, state, osds),
        Ok(Kind::Invalid) => Reply::refused(Kind::Invalid, Status::InvalidRequest, "invalid"),
    }
}

/// A value that does not fit its wire field: the answer is INTERNAL_ERROR rather than a wrong
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value} does not fit its {field} field")]
pub struct Unrepresentable {
    pub what: String,
    pub value: u64,
    pub field: &'static str,
}

fn fit<T: TryFrom<u64>>(
    value: u64,
    field: &'static str,
    what: impl FnOnce() -> String,
) -> Result<T, Unrepresentable> {
    T::try_from(value).map_err(|_| Unrepresentable {
        what: what(),
        value,
        field,
    })
}

// ---- GET_CLUSTER_MAP --------------------------------------------------------------------------

/// A GET_CLUSTER_MAP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterMapRequest {
    pub osdmap_epoch: u64,
    pub pool_id: u32,
    /// Not judged (any value is accepted).
    pub reserved: u32,
    pub pgmap_epoch: u64,
}

impl ClusterMapRequest {
    /// Exactly 24 bytes, else None.
    pub fn parse(body: &[u8]) -> Option<ClusterMapRequest> {
        let b: &[u8; CLUSTER_MAP_REQUEST_LEN] = body.try_into().ok()?;
        let mut u64s = [[0u8; 8]; 2];
        u64s[0].copy_from_slice(&b[0..8]);
        u64s[1].copy_from_slice(&b[16..24]);
        Some(ClusterMapRequest {
            osdmap_epoch: u64::from_le_bytes(u64s[0]),
            pool_id: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            reserved: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            pgmap_epoch: u64::from_le_bytes(u64s[1]),
        })
    }
}

/// The osdmap epoch GET_CLUSTER_MAP reports: the current one, or `u64::MAX` (−1 cast, as the
/// Go monitor answered `noOsdsExist`) while no OSD exists at all.
pub fn reported_osdmap_epoch(state: &ClusterState) -> u64 {
    if state.osd_count() == 0 {
        u64::MAX
    } else {
        state.osdmap_epoch().0
    }
}

/// The encoded OSDs of a GET_CLUSTER_MAP answer: the same for every request at one osdmap
/// epoch, whatever pool it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdSection {
    pub count: u32,
    pub bytes: bytes::Bytes,
}

/// Every OSD, sorted by id: `id i32, flags u32 (bit0 in, bit1 up), addr_len u16,
/// shard_count u16`, the address text, then the shards by shard id (`shard_id u32, port u16,
/// core_id u16`). An OSD that never booted has an empty address and no shards.
pub fn osd_section(state: &ClusterState) -> Result<OsdSection, Unrepresentable> {
    let mut out = Vec::new();
    let mut count = 0u32;
    // The state keeps OSDs in a map ordered by id.
    for osd in state.osds() {
        encode_osd(osd, &mut out)?;
        count = fit(u64::from(count) + 1, "osd_count", || "OSD count".into())?;
    }
    Ok(OsdSection {
        count,
        bytes: out.into(),
    })
}

fn encode_osd(osd: &Osd, out: &mut Vec<u8>) -> Result<(), Unrepresentable> {
    let id: i32 = fit(u64::from(osd.id.0), "id i32", || "OSD id".into())?;
    let address = osd.address.map(|a| a.to_string()).unwrap_or_default();
    let addr_len: u16 = fit(address.len() as u64, "addr_len u16", || {
        format!("{} address length", osd.id)
    })?;
    let shard_count: u16 = fit(osd.shards.len() as u64, "shard_count u16", || {
        format!("{} shard count", osd.id)
    })?;
    let flags = u32::from(osd.is_in()) | (u32::from(osd.is_up()) << 1);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&addr_len.to_le_bytes());
    out.extend_from_slice(&shard_count.to_le_bytes());
    out.extend_from_slice(address.as_bytes());
    // Shard i is at index i; shard_count fits a u16, so every index fits a u32.
    for (i, shard) in osd.shards.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&shard_port(shard).to_le_bytes());
        out.extend_from_slice(&shard_core(shard).to_le_bytes());
    }
    Ok(())
}

/// The port a shard is reached on: its raw port if it has one, else its RDMA port.
pub fn shard_port(s: &Shard) -> u16 {
    if s.raw_port != 0 { s.raw_port } else { s.port }
}

/// A shard's core id in its u16 field, clamped to 65,535 (the design doc calls the field
/// reserved; no CPU has that many cores).
pub fn shard_core(s: &Shard) -> u16 {
    u16::try_from(s.core_id).unwrap_or(u16::MAX)
}

/// The PGs of `pool`, sorted by id: `pool i32, pg i32, version i64, state u32,
/// primary_shard u32 (the core index), replica_count u32`, then the member ids (i32 each).
/// A remapped PG's target (`newosdlist`) is not sent.
pub fn encode_pgs(pool: &Pool, out: &mut Vec<u8>) -> Result<u32, Unrepresentable> {
    let pool_id: i32 = fit(u64::from(pool.id.0), "pool i32", || "pool id".into())?;
    let mut count = 0u32;
    for (id, pg) in pool.pgs.iter() {
        let what = || format!("{}.{}", pool.id.0, id.0);
        let pg_id: i32 = fit(u64::from(id.0), "pg i32", what)?;
        let version: i64 = fit(pg.version.0, "version i64", what)?;
        let replicas: u32 = fit(pg.members.len() as u64, "replica_count u32", what)?;
        out.extend_from_slice(&pool_id.to_le_bytes());
        out.extend_from_slice(&pg_id.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&pg.state.0.to_le_bytes());
        out.extend_from_slice(&pg.core.to_le_bytes());
        out.extend_from_slice(&replicas.to_le_bytes());
        for m in &pg.members {
            let member: i32 = fit(u64::from(m.0), "replica i32", || {
                format!("{m} in {}", what())
            })?;
            out.extend_from_slice(&member.to_le_bytes());
        }
        count = fit(u64::from(count) + 1, "pg_count u32", || "PG count".into())?;
    }
    Ok(count)
}

/// GET_CLUSTER_MAP: pool 0 is INVALID_REQUEST, an unknown (or deleted) pool NOT_FOUND, both
/// epochs current STALE_EPOCH; otherwise every OSD and the pool's PGs.
fn cluster_map(
    body: &[u8],
    state: &ClusterState,
    osds: impl FnOnce() -> Result<OsdSection, Unrepresentable>,
) -> Reply {
    let kind = Kind::GetClusterMap;
    let Some(req) = ClusterMapRequest::parse(body) else {
        return Reply::refused(
            kind,
            Status::InvalidRequest,
            format!("body of {} bytes, 24 expected", body.len()),
        );
    };
    if req.pool_id == 0 {
        return Reply::refused(kind, Status::InvalidRequest, "pool 0");
    }
    let Some(pool) = state.pool(crate::cluster::PoolId(req.pool_id)) else {
        return Reply::refused(kind, Status::NotFound, format!("no pool {}", req.pool_id));
    };
    let osdmap_epoch = reported_osdmap_epoch(state);
    if req.osdmap_epoch == osdmap_epoch && req.pgmap_epoch == pool.epoch.0 {
        return Reply::new(kind, Status::StaleEpoch, Vec::new());
    }
    let built = osds().and_then(|section| {
        let mut pgs = Vec::new();
        let pg_count = encode_pgs(pool, &mut pgs)?;
        let mut out = Vec::with_capacity(24 + section.bytes.len() + pgs.len());
        out.extend_from_slice(&osdmap_epoch.to_le_bytes());
        out.extend_from_slice(&pool.epoch.0.to_le_bytes());
        out.extend_from_slice(&section.count.to_le_bytes());
        out.extend_from_slice(&pg_count.to_le_bytes());
        out.extend_from_slice(&section.bytes);
        out.extend_from_slice(&pgs);
        Ok(out)
    });
    match built {
        Ok(out) => Reply::new(kind, Status::Ok, out),
        Err(e) => Reply::refused(kind, Status::InternalError, e.to_string()),
    }
}

// ---- GET_IMAGE_INFO ---------------------------------------------------------------------------

/// A GET_IMAGE_INFO request body. The names are bytes: one that is not UTF-8 names no image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfoRequest<'a> {
    pub image_epoch: u64,
    pub pool: &'a [u8],
    pub image: &'a [u8],
}

impl<'a> ImageInfoRequest<'a> {
    /// `image_epoch u64, pool_name_len u16, image_name_len u16`, then exactly that many bytes
    /// of names; None when the length does not match exactly.
    pub fn parse(body: &'a [u8]) -> Option<ImageInfoRequest<'a>> {
        let fixed = body.get(..IMAGE_INFO_REQUEST_FIXED_LEN)?;
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&fixed[..8]);
        let pool_len = usize::from(u16::from_le_bytes([fixed[8], fixed[9]]));
        let image_len = usize::from(u16::from_le_bytes([fixed[10], fixed[11]]));
        let names = &body[IMAGE_INFO_REQUEST_FIXED_LEN..];
        if names.len() != pool_len + image_len {
            return None;
        }
        let (pool, image) = names.split_at(pool_len);
        Some(ImageInfoRequest {
            image_epoch: u64::from_le_bytes(epoch),
            pool,
            image,
        })
    }
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// An image's epoch: FNV-1a 64 of `pool \0 image \0 imageID \0 size \0 objectsize`, the numbers
/// written as decimal ASCII text. It changes when the image is resized, or removed and created
/// again (a new id).
pub fn image_epoch(pool: &str, image: &Image) -> u64 {
    let text = format!(
        "{pool}\0{}\0{}\0{}\0{}",
        image.name, image.id.0, image.size, image.object_size
    );
    fnv1a_64(text.as_bytes())
}

/// The 32-byte body of an image: `epoch u64, pool_id u32, block_size u32, object_size u32,
/// flags u32, size u64`.
pub fn image_body(epoch: u64, pool_id: u32, object_size: u32, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(IMAGE_INFO_LEN);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&pool_id.to_le_bytes());
    out.extend_from_slice(&BLOCK_SIZE.to_le_bytes());
    out.extend_from_slice(&object_size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out
}

/// GET_IMAGE_INFO: NOT_FOUND with a zero body (block size 4096) for an unknown image,
/// STALE_EPOCH when the client's non-zero epoch is current, else the image.
fn image_info(body: &[u8], state: &ClusterState) -> Reply {
    let kind = Kind::GetImageInfo;
    let Some(req) = ImageInfoRequest::parse(body) else {
        return Reply::refused(
            kind,
            Status::InvalidRequest,
            format!(
                "body of {} bytes does not match its name lengths",
                body.len()
            ),
        );
    };
    let found = match (
        std::str::from_utf8(req.pool),
        std::str::from_utf8(req.image),
    ) {
        (Ok(pool), Ok(image)) => state
            .pool_by_name(pool)
            .and_then(|p| state.image(p.id, image)),
        _ => None,
    };
    let Some(image) = found else {
        let mut reply = Reply::new(kind, Status::NotFound, image_body(0, 0, 0, 0));
        reply.why = "no such image".into();
        return reply;
    };
    let pool_name = state
        .pool(image.pool)
        .map(|p| p.name.as_str())
        .unwrap_or_default();
    image_reply(req.image_epoch, pool_name, image)
}

/// The answer for a found image to a client at `client_epoch` (0: none).
pub fn image_reply(client_epoch: u64, pool_name: &str, image: &Image) -> Reply {
    let kind = Kind::GetImageInfo;
    let epoch = image_epoch(pool_name, image);
    if client_epoch != 0 && client_epoch == epoch {
        return Reply::new(kind, Status::StaleEpoch, Vec::new());
    }
    let object_size: Result<u32, _> = fit(image.object_size, "object_size u32", || {
        format!("{} object size", image.id)
    });
    match object_size {
        Ok(object_size) => Reply::new(
            kind,
            Status::Ok,
            image_body(epoch, image.pool.0, object_size, image.size),
        ),
        Err(e) => Reply::refused(kind, Status::InternalError, e.to_string()),
    }
}

#[cfg(test)]
mod tests;
