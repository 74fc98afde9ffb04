//! The raw binary protocol of LEGACY-PROTOCOL.md §11 (kfastblock, port 3334): the 28-byte
//! little-endian header built and parsed field by field, the GET_CLUSTER_MAP and
//! GET_IMAGE_INFO requests, parsers of their response bodies, the image epoch (FNV-1a 64), and
//! a client over one TCP connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `magic`: "WRBF" read as a little-endian u32 (bytes `57 52 42 46`).
pub const MAGIC: u32 = 0x4642_5257;
/// `version_major`: a different major version is refused.
pub const VERSION_MAJOR: u8 = 1;
/// `version_minor`.
pub const VERSION_MINOR: u8 = 0;
/// `service`: the monitor.
pub const SERVICE_MONITOR: u8 = 1;
/// `flags` bit 0: the message is a response.
pub const FLAG_RESPONSE: u32 = 1;
/// Bytes of the header of every message.
pub const HEADER_BYTES: usize = 28;

/// Opcode 1: an image's size, object size and epoch.
pub const OP_GET_IMAGE_INFO: u8 = 1;
/// Opcode 2: every OSD and one pool's PGs.
pub const OP_GET_CLUSTER_MAP: u8 = 2;

/// Bytes of a GET_CLUSTER_MAP request body.
pub const CLUSTER_MAP_REQUEST_BYTES: usize = 24;
/// Bytes of a GET_IMAGE_INFO response body (OK and NOT_FOUND alike).
pub const IMAGE_INFO_BYTES: usize = 32;
/// The block size every GET_IMAGE_INFO answer carries.
pub const BLOCK_SIZE: u32 = 4096;

/// The largest response body this client reads: far above any test cluster's map.
pub const MAX_BODY_BYTES: u32 = 64 << 20;

/// Response status codes (only 0, 1, 2, 3 and 8 are produced).
pub mod status {
    pub const OK: u32 = 0;
    pub const INVALID_REQUEST: u32 = 1;
    pub const NOT_FOUND: u32 = 2;
    pub const STALE_EPOCH: u32 = 3;
    pub const RETRY_LATER: u32 = 4;
    pub const NOT_LEADER: u32 = 5;
    pub const PG_INITIALIZING: u32 = 6;
    pub const OSD_DOWN: u32 = 7;
    pub const INTERNAL_ERROR: u32 = 8;
}

/// FNV-1a 64 offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`: start at the offset basis; for each byte, xor it in, then multiply by
/// the prime (wrapping).
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The epoch GET_IMAGE_INFO reports for an image: FNV-1a 64 of
/// `pool \0 image \0 imageID \0 size \0 objectsize`. The doc does not spell out how the numbers
/// are written; this takes them as decimal text (the image's JSON record holds them as numbers),
/// as the server does (docs/legacy-raw.md; `tests/legacy_raw.rs` checks that they agree).
pub fn image_epoch(pool: &str, image: &str, image_id: i32, size: i64, object_size: i64) -> u64 {
    let text = format!("{pool}\0{image}\0{image_id}\0{size}\0{object_size}");
    fnv1a_64(text.as_bytes())
}

/// Why raw-protocol bytes are not what the doc describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// Fewer bytes than a header, or a body shorter than its fields.
    #[error("{what}: need {need} bytes at offset {offset}, have {have}")]
    Short {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// Bytes left after the last field of a body.
    #[error("{what}: {extra} bytes after the end")]
    Trailing { what: &'static str, extra: usize },
    /// A name longer than its u16 length field can say.
    #[error("{what} is {len} bytes, over the u16 length field")]
    NameTooLong { what: &'static str, len: usize },
    /// An OSD address that is not UTF-8.
    #[error("OSD {osd} address is not UTF-8")]
    BadAddress { osd: i32 },
}

/// The 28-byte header, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
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

impl RawHeader {
    /// A valid request header; tests change fields to make bad ones.
    pub fn request(opcode: u8, seq: u64, body_len: u32) -> Self {
        RawHeader {
            magic: MAGIC,
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            service: SERVICE_MONITOR,
            opcode,
            flags: 0,
            seq,
            status: 0,
            body_len,
        }
    }

    /// The header's 28 bytes: each field little-endian, no padding.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&self.magic.to_le_bytes());
        out.push(self.version_major);
        out.push(self.version_minor);
        out.push(self.service);
        out.push(self.opcode);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(&out);
        header
    }

    /// Parses a header from the first 28 bytes of `bytes` (it does not judge the values: the
    /// tests assert on them).
    pub fn parse(bytes: &[u8]) -> Result<Self, RawError> {
        let mut cursor = Cursor::new("header", bytes);
        let header = RawHeader {
            magic: cursor.u32()?,
            version_major: cursor.u8()?,
            version_minor: cursor.u8()?,
            service: cursor.u8()?,
            opcode: cursor.u8()?,
            flags: cursor.u32()?,
            seq: cursor.u64()?,
            status: cursor.u32()?,
            body_len: cursor.u32()?,
        };
        Ok(header)
    }

    /// True when the response bit of `flags` is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }
}

/// A GET_CLUSTER_MAP request: header and its 24-byte body
/// (`osdmap_epoch u64, pool_id u32, reserved u32, pgmap_epoch u64`).
pub fn get_cluster_map(seq: u64, osdmap_epoch: u64, pool_id: u32, pgmap_epoch: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(CLUSTER_MAP_REQUEST_BYTES);
    body.extend_from_slice(&osdmap_epoch.to_le_bytes());
    body.extend_from_slice(&pool_id.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&pgmap_epoch.to_le_bytes());
    message(RawHeader::request(OP_GET_CLUSTER_MAP, seq, 0), &body)
}

/// A GET_IMAGE_INFO request: header and body
/// (`image_epoch u64, pool_name_len u16, image_name_len u16`, the pool name, the image name).
pub fn get_image_info(
    seq: u64,
    image_epoch: u64,
    pool: &str,
    image: &str,
) -> Result<Vec<u8>, RawError> {
    let pool_len = name_len("pool name", pool)?;
    let image_len = name_len("image name", image)?;
    let mut body = Vec::with_capacity(12 + pool.len() + image.len());
    body.extend_from_slice(&image_epoch.to_le_bytes());
    body.extend_from_slice(&pool_len.to_le_bytes());
    body.extend_from_slice(&image_len.to_le_bytes());
    body.extend_from_slice(pool.as_bytes());
    body.extend_from_slice(image.as_bytes());
    Ok(message(
        RawHeader::request(OP_GET_IMAGE_INFO, seq, 0),
        &body,
    ))
}

fn name_len(what: &'static str, name: &str) -> Result<u16, RawError> {
    u16::try_from(name.len()).map_err(|_| RawError::NameTooLong {
        what,
        len: name.len(),
    })
}

/// `header` (with `body_len` set to the body's length) followed by `body`.
pub fn message(mut header: RawHeader, body: &[u8]) -> Vec<u8> {
    header.body_len = body.len() as u32;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    out
}

/// A GET_IMAGE_INFO answer body (OK, or NOT_FOUND with every field zero but the block size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawImageInfo {
    pub epoch: u64,
    pub pool_id: u32,
    pub block_size: u32,
    pub object_size: u32,
    pub flags: u32,
    pub size: u64,
}

impl RawImageInfo {
    /// Parses exactly 32 bytes.
    pub fn parse(body: &[u8]) -> Result<Self, RawError> {
        let mut cursor = Cursor::new("image info", body);
        let info = RawImageInfo {
            epoch: cursor.u64()?,
            pool_id: cursor.u32()?,
            block_size: cursor.u32()?,
            object_size: cursor.u32()?,
            flags: cursor.u32()?,
            size: cursor.u64()?,
        };
        cursor.finish()?;
        Ok(info)
    }
}

/// One shard of an OSD in a GET_CLUSTER_MAP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawShard {
    pub shard_id: u32,
    /// The raw port if the OSD has one, else the RDMA port.
    pub port: u16,
    pub core_id: u16,
}

/// One OSD of a GET_CLUSTER_MAP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOsd {
    pub id: i32,
    /// Bit 0 in, bit 1 up.
    pub flags: u32,
    pub address: String,
    pub shards: Vec<RawShard>,
}

impl RawOsd {
    /// Flag bit 0: the OSD is in.
    pub fn is_in(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Flag bit 1: the OSD is up.
    pub fn is_up(&self) -> bool {
        self.flags & 2 != 0
    }
}

/// One PG of the requested pool in a GET_CLUSTER_MAP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPg {
    pub pool: i32,
    pub pg: i32,
    pub version: i64,
    pub state: u32,
    /// The PG's `coreindex`.
    pub primary_shard: u32,
    pub replicas: Vec<i32>,
}

/// A GET_CLUSTER_MAP answer body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawClusterMap {
    pub osdmap_epoch: u64,
    pub pgmap_epoch: u64,
    pub osds: Vec<RawOsd>,
    pub pgs: Vec<RawPg>,
}

impl RawClusterMap {
    /// Parses a body: the counts, then that many OSDs and PGs, and nothing after them.
    pub fn parse(body: &[u8]) -> Result<Self, RawError> {
        let mut cursor = Cursor::new("cluster map", body);
        let osdmap_epoch = cursor.u64()?;
        let pgmap_epoch = cursor.u64()?;
        let osd_count = cursor.u32()?;
        let pg_count = cursor.u32()?;
        // Counts come from the peer: grow the vectors as entries parse, never by the count.
        let mut osds = Vec::new();
        for _ in 0..osd_count {
            let id = cursor.i32()?;
            let flags = cursor.u32()?;
            let addr_len = cursor.u16()?;
            let shard_count = cursor.u16()?;
            let address = String::from_utf8(cursor.bytes(usize::from(addr_len))?.to_vec())
                .map_err(|_| RawError::BadAddress { osd: id })?;
            let mut shards = Vec::new();
            for _ in 0..shard_count {
                shards.push(RawShard {
                    shard_id: cursor.u32()?,
                    port: cursor.u16()?,
                    core_id: cursor.u16()?,
                });
            }
            osds.push(RawOsd {
                id,
                flags,
                address,
                shards,
            });
        }
        let mut pgs = Vec::new();
        for _ in 0..pg_count {
            let pool = cursor.i32()?;
            let pg = cursor.i32()?;
            let version = cursor.i64()?;
            let state = cursor.u32()?;
            let primary_shard = cursor.u32()?;
            let replica_count = cursor.u32()?;
            let mut replicas = Vec::new();
            for _ in 0..replica_count {
                replicas.push(cursor.i32()?);
            }
            pgs.push(RawPg {
                pool,
                pg,
                version,
                state,
                primary_shard,
                replicas,
            });
        }
        cursor.finish()?;
        Ok(RawClusterMap {
            osdmap_epoch,
            pgmap_epoch,
            osds,
            pgs,
        })
    }
}

/// Reads little-endian fields in order from a byte slice.
struct Cursor<'a> {
    what: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Cursor {
            what,
            bytes,
            offset: 0,
        }
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], RawError> {
        let have = self.bytes.len() - self.offset;
        if len > have {
            return Err(RawError::Short {
                what: self.what,
                offset: self.offset,
                need: len,
                have,
            });
        }
        let start = self.offset;
        self.offset += len;
        Ok(&self.bytes[start..self.offset])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RawError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RawError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RawError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RawError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RawError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RawError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RawError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn finish(self) -> Result<(), RawError> {
        let extra = self.bytes.len() - self.offset;
        if extra == 0 {
            Ok(())
        } else {
            Err(RawError::Trailing {
                what: self.what,
                extra,
            })
        }
    }
}

/// A response: its header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub header: RawHeader,
    pub body: Vec<u8>,
}

/// Why a raw-protocol exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RawClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The connection ended before a whole response.
    #[error("connection closed inside a response")]
    Closed,
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("response body of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    #[error("{0}")]
    Raw(#[from] RawError),
}

/// One connection to a monitor's raw port.
pub struct RawClient {
    stream: TcpStream,
    reply_timeout: Duration,
}

impl RawClient {
    /// Connects to `address` (`host:port`).
    pub async fn connect(address: &str) -> Result<Self, RawClientError> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            reply_timeout: super::framed::DEFAULT_REPLY_TIMEOUT,
        })
    }

    /// Sends `request` (whole messages, or deliberately broken bytes) and reads one response.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<RawResponse, RawClientError> {
        self.send(request).await?;
        self.recv().await
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RawClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one response: the header, then `body_len` bytes.
    pub async fn recv(&mut self) -> Result<RawResponse, RawClientError> {
        let timeout = self.reply_timeout;
        tokio::time::timeout(timeout, self.read_response())
            .await
            .map_err(|_| RawClientError::Timeout(timeout))?
    }

    /// Waits up to `within` for the monitor to close the connection, reading and dropping
    /// anything it sends first; true if it closed (end of stream or reset).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut sink = [0u8; 4096];
        let closing = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, closing).await.is_ok()
    }

    async fn read_response(&mut self) -> Result<RawResponse, RawClientError> {
        let mut header = [0u8; HEADER_BYTES];
        read_exact_or_closed(&mut self.stream, &mut header).await?;
        let header = RawHeader::parse(&header)?;
        if header.body_len > MAX_BODY_BYTES {
            return Err(RawClientError::TooLarge {
                len: header.body_len,
                max: MAX_BODY_BYTES,
            });
        }
        let mut body = vec![0u8; header.body_len as usize];
        read_exact_or_closed(&mut self.stream, &mut body).await?;
        Ok(RawResponse { header, body })
    }
}

async fn read_exact_or_closed(
    stream: &mut TcpStream,
    buffer: &mut [u8],
) -> Result<(), RawClientError> {
    match stream.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(RawClientError::Closed)
        }
        Err(error) => Err(error.into()),
    }
}
