//! The legacy `msg.Request` / `msg.Response` envelopes, built and read field by field from the
//! table of LEGACY-PROTOCOL.md (oneof numbers of §6, field numbers of "Messages and fields"):
//! every request kind, and every response kind with the fields the tests assert on.

use std::collections::BTreeMap;

use super::protobuf::{Encoder, Field, WireError, each_field, map_entry};

/// Oneof field numbers of the Request/Response envelopes (§6): the same number for a request
/// and its response.
pub mod kind {
    pub const BOOT: u32 = 1;
    pub const OSD_STOP: u32 = 2;
    pub const HEARTBEAT: u32 = 3;
    pub const GET_OSDMAP: u32 = 4;
    pub const LIST_POOLS: u32 = 5;
    pub const APPLY_ID: u32 = 6;
    pub const CREATE_POOL: u32 = 7;
    pub const GET_PGMAP: u32 = 8;
    pub const DELETE_POOL: u32 = 9;
    pub const GET_CLUSTER_MAP: u32 = 10;
    pub const CREATE_IMAGE: u32 = 11;
    pub const REMOVE_IMAGE: u32 = 12;
    pub const RESIZE_IMAGE: u32 = 13;
    pub const GET_IMAGE_INFO: u32 = 14;
    pub const LEADER_BE_ELECTED: u32 = 15;
    pub const PG_MEMBER_CHANGE_FINISH: u32 = 16;
    pub const OSD_OUT: u32 = 17;
    pub const OSD_IN: u32 = 18;
    pub const NO_REBLANCE: u32 = 19;
    pub const NO_OUT: u32 = 20;
    pub const GET_CLUSTER_STATUS: u32 = 21;
    pub const DATA_STATISTICS: u32 = 22;
    pub const OSD_CONFIG: u32 = 23;
    pub const PG_OSD_INFO: u32 = 24;
}

/// `ApplyIDErrorCode` values.
pub mod apply_id_code {
    pub const OK: i32 = 0;
    pub const UUID_ALREADY_EXISTS: i32 = 1;
    pub const INVALID_UUID: i32 = 2;
    pub const INTERNAL_ERROR: i32 = 3;
}

/// `CreatePoolErrorCode` values.
pub mod create_pool_code {
    pub const OK: i32 = 0;
    pub const POOL_NAME_EXISTS: i32 = 1;
    pub const FAILURE_DOMAIN_NEED_NOT_SATISFIED: i32 = 2;
    pub const NO_ENOUGH_OSD: i32 = 3;
    pub const INTERNAL_ERROR: i32 = 4;
}

/// `OsdMapErrorCode` values.
pub mod osdmap_code {
    pub const OK: i32 = 0;
    pub const CLIENT_VERSION_HIGHER: i32 = 1;
    pub const CLIENT_VERSION_INVALID: i32 = 2;
    pub const NO_OSDS_EXIST: i32 = 3;
}

/// `GetPgMapErrorCode` values.
pub mod pgmap_code {
    pub const OK: i32 = 0;
    pub const CLIENT_VERSION_HIGHER: i32 = 1;
    pub const CLUSTER_NO_POOLS: i32 = 2;
    pub const SAME_VERSION: i32 = 3;
}

/// `CreateImageErrorCode` values.
pub mod create_image_code {
    pub const OK: i32 = 0;
    pub const IMAGE_EXISTS: i32 = 1;
    pub const UNKNOWN_POOL_NAME: i32 = 2;
    pub const MARSHAL_IMAGE_CONTEXT_ERROR: i32 = 3;
    pub const PUT_ETCD_ERROR: i32 = 4;
    pub const IMAGE_NAME_TOO_LONG: i32 = 5;
}

/// `RemoveImageErrorCode` values.
pub mod remove_image_code {
    pub const OK: i32 = 0;
    pub const IMAGE_NOT_FOUND: i32 = 1;
    pub const REMOVE_IMAGE_FAIL: i32 = 2;
}

/// `ResizeImageErrorCode` values.
pub mod resize_image_code {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const MARSHAL_RESIZE_IMAGE_CONTEXT_ERROR: i32 = 2;
    pub const PUT_RESIZE_IMAGE_ETCD_ERROR: i32 = 3;
}

/// `GetImageErrorCode` values.
pub mod get_image_code {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
}

/// Boot results (`ERRNUM`, §7.2).
pub mod boot_result {
    pub const OK: i32 = 0;
    pub const NOT_APPLY: i32 = -156;
    pub const ID_CONFLICT: i32 = -157;
    pub const ADDRESS_INVALID: i32 = -158;
    pub const UPDATE_STATE_FAILED: i32 = -159;
    pub const CORE_NUM: i32 = -160;
}

/// One shard of a booting OSD (`ShardCore`), keyed by shard index in [`BootRequest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCore {
    pub coreid: u32,
    pub port: u32,
    pub raw_port: u32,
}

impl ShardCore {
    fn encode(&self) -> Encoder {
        let mut message = Encoder::new();
        message
            .uint32(1, self.coreid)
            .uint32(2, self.port)
            .uint32(3, self.raw_port);
        message
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut shard = ShardCore::default();
        each_field(bytes, |field| {
            match field.number {
                1 => shard.coreid = field.uint32()?,
                2 => shard.port = field.uint32()?,
                3 => shard.raw_port = field.uint32()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(shard)
    }
}

/// `BootRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootRequest {
    pub osd_id: i32,
    pub uuid: String,
    pub size: i64,
    pub sharded_ports: BTreeMap<u32, ShardCore>,
    pub address: String,
    pub host: String,
    pub core_num: u32,
    pub config: String,
}

impl BootRequest {
    /// A Boot as the C++ OSD sends it: 1 MiB size, one shard per core (shard i on core i, RDMA
    /// port `first_port + i`, raw port `first_raw_port + i`, or none when that is 0).
    pub fn like_cpp_osd(
        osd_id: i32,
        uuid: &str,
        address: &str,
        host: &str,
        cores: u32,
        first_port: u32,
        first_raw_port: u32,
    ) -> Self {
        let sharded_ports = (0..cores)
            .map(|shard| {
                let raw_port = if first_raw_port == 0 {
                    0
                } else {
                    first_raw_port + shard
                };
                let core = ShardCore {
                    coreid: shard,
                    port: first_port + shard,
                    raw_port,
                };
                (shard, core)
            })
            .collect();
        BootRequest {
            osd_id,
            uuid: uuid.to_string(),
            size: 1 << 20,
            sharded_ports,
            address: address.to_string(),
            host: host.to_string(),
            core_num: cores,
            config: String::new(),
        }
    }
}

/// `GetOsdMapRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOsdMapRequest {
    pub osdid: i32,
    pub currentversion: i64,
}

/// `GetPgMapRequest`: the pools the client knows, with the pgmap version it has of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetPgMapRequest {
    pub pool_versions: BTreeMap<i32, i64>,
}

/// `LeaderBeElectedRequest` (`PgMemberChangeFinishRequest` has the same first fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderBeElectedRequest {
    pub leader_id: i32,
    pub pool_id: u64,
    pub pg_id: u64,
    pub osd_list: Vec<i32>,
    pub new_osd_list: Vec<i32>,
}

/// `PgMemberChangeFinishRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgMemberChangeFinishRequest {
    pub result: i32,
    pub pool_id: u64,
    pub pg_id: u64,
    pub osd_list: Vec<i32>,
}

/// `CreateImageRequest` (and the `ImageInfo` of the image replies: the same four fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub poolname: String,
    pub imagename: String,
    pub size: i64,
    pub object_size: i64,
}

impl ImageInfo {
    fn encode(&self) -> Encoder {
        let mut message = Encoder::new();
        message
            .string(1, &self.poolname)
            .string(2, &self.imagename)
            .int64(3, self.size)
            .int64(4, self.object_size);
        message
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut info = ImageInfo::default();
        each_field(bytes, |field| {
            match field.number {
                1 => info.poolname = field.string()?,
                2 => info.imagename = field.string()?,
                3 => info.size = field.int64()?,
                4 => info.object_size = field.int64()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(info)
    }
}

/// One PG's I/O counters of a `DataStatisticsRequest` (`DataStatistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataStatistics {
    pub read_ios: u64,
    pub read_bytes: u64,
    pub write_ios: u64,
    pub write_bytes: u64,
    pub objects: i64,
    pub recovery_bytes: u64,
    pub recovery_obs: u64,
}

impl DataStatistics {
    fn encode(&self) -> Encoder {
        let mut message = Encoder::new();
        message
            .uint64(1, self.read_ios)
            .uint64(2, self.read_bytes)
            .uint64(3, self.write_ios)
            .uint64(4, self.write_bytes)
            .int64(5, self.objects)
            .uint64(6, self.recovery_bytes)
            .uint64(7, self.recovery_obs);
        message
    }
}

/// A request of the framed protocol; [`Request::encode`] gives the `msg.Request` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Boot(BootRequest),
    OsdStop {
        id: i32,
    },
    Heartbeat {
        id: i32,
    },
    GetOsdMap(GetOsdMapRequest),
    ListPools,
    ApplyId {
        uuid: String,
    },
    CreatePool {
        name: String,
        pgsize: i32,
        pgcount: i32,
        failuredomain: String,
        root: String,
    },
    GetPgMap(GetPgMapRequest),
    DeletePool {
        name: String,
    },
    /// GetClusterMap; either half may be absent, as on the wire.
    GetClusterMap {
        osdmap: Option<GetOsdMapRequest>,
        pgmap: Option<GetPgMapRequest>,
    },
    /// CreateImage: `{poolname, imagename, size, object_size}`, the fields of [`ImageInfo`].
    CreateImage(ImageInfo),
    RemoveImage {
        poolname: String,
        imagename: String,
    },
    ResizeImage {
        poolname: String,
        imagename: String,
        size: i64,
    },
    GetImageInfo {
        poolname: String,
        imagename: String,
    },
    LeaderBeElected(LeaderBeElectedRequest),
    PgMemberChangeFinish(PgMemberChangeFinishRequest),
    OsdOut {
        osdid: i32,
    },
    OsdIn {
        osdid: i32,
    },
    NoReblance {
        set: bool,
    },
    NoOut {
        set: bool,
    },
    GetClusterStatus,
    /// DataStatistics: per PG name (`"<poolid>.<pgid>"`), its counters.
    DataStatistics(BTreeMap<String, DataStatistics>),
    OsdConfig {
        osdid: i32,
    },
    /// GetPgOsdInfo: the pools asked about (empty: every pool).
    GetPgOsdInfo {
        pool_ids: Vec<i32>,
    },
}

impl Request {
    /// The GetClusterMap the C++ client polls with every 3 s: its own id (−1 for a block
    /// client), `currentversion = −1`, and the pools it knows with their versions.
    pub fn cpp_poll(osdid: i32, pool_versions: BTreeMap<i32, i64>) -> Self {
        Request::GetClusterMap {
            osdmap: Some(GetOsdMapRequest {
                osdid,
                currentversion: -1,
            }),
            pgmap: Some(GetPgMapRequest { pool_versions }),
        }
    }

    /// The oneof field number of this request (and of its response).
    pub fn kind(&self) -> u32 {
        match self {
            Request::Boot(_) => kind::BOOT,
            Request::OsdStop { .. } => kind::OSD_STOP,
            Request::Heartbeat { .. } => kind::HEARTBEAT,
            Request::GetOsdMap(_) => kind::GET_OSDMAP,
            Request::ListPools => kind::LIST_POOLS,
            Request::ApplyId { .. } => kind::APPLY_ID,
            Request::CreatePool { .. } => kind::CREATE_POOL,
            Request::GetPgMap(_) => kind::GET_PGMAP,
            Request::DeletePool { .. } => kind::DELETE_POOL,
            Request::GetClusterMap { .. } => kind::GET_CLUSTER_MAP,
            Request::CreateImage(_) => kind::CREATE_IMAGE,
            Request::RemoveImage { .. } => kind::REMOVE_IMAGE,
            Request::ResizeImage { .. } => kind::RESIZE_IMAGE,
            Request::GetImageInfo { .. } => kind::GET_IMAGE_INFO,
            Request::LeaderBeElected(_) => kind::LEADER_BE_ELECTED,
            Request::PgMemberChangeFinish(_) => kind::PG_MEMBER_CHANGE_FINISH,
            Request::OsdOut { .. } => kind::OSD_OUT,
            Request::OsdIn { .. } => kind::OSD_IN,
            Request::NoReblance { .. } => kind::NO_REBLANCE,
            Request::NoOut { .. } => kind::NO_OUT,
            Request::GetClusterStatus => kind::GET_CLUSTER_STATUS,
            Request::DataStatistics(_) => kind::DATA_STATISTICS,
            Request::OsdConfig { .. } => kind::OSD_CONFIG,
            Request::GetPgOsdInfo { .. } => kind::PG_OSD_INFO,
        }
    }

    /// The inner request message, without the envelope.
    pub fn encode_inner(&self) -> Vec<u8> {
        let mut message = Encoder::new();
        match self {
            Request::Boot(boot) => {
                message
                    .int32(1, boot.osd_id)
                    .string(2, &boot.uuid)
                    .int64(3, boot.size);
                for (&shard, core) in &boot.sharded_ports {
                    message.map_entry(
                        4,
                        |key| {
                            key.uint32(1, shard);
                        },
                        |value| {
                            value.message(2, core.encode());
                        },
                    );
                }
                message
                    .string(5, &boot.address)
                    .string(6, &boot.host)
                    .uint32(7, boot.core_num)
                    .string(8, &boot.config);
            }
            Request::OsdStop { id } | Request::Heartbeat { id } => {
                message.int32(1, *id);
            }
            Request::GetOsdMap(osdmap) => message = encode_get_osdmap(osdmap),
            Request::ListPools | Request::GetClusterStatus => {}
            Request::ApplyId { uuid } => {
                message.string(1, uuid);
            }
            Request::CreatePool {
                name,
                pgsize,
                pgcount,
                failuredomain,
                root,
            } => {
                message
                    .string(1, name)
                    .int32(2, *pgsize)
                    .int32(3, *pgcount)
                    .string(4, failuredomain)
                    .string(5, root);
            }
            Request::GetPgMap(pgmap) => message = encode_get_pgmap(pgmap),
            Request::DeletePool { name } => {
                message.string(1, name);
            }
            Request::GetClusterMap { osdmap, pgmap } => {
                if let Some(osdmap) = osdmap {
                    message.message(1, encode_get_osdmap(osdmap));
                }
                if let Some(pgmap) = pgmap {
                    message.message(2, encode_get_pgmap(pgmap));
                }
            }
            Request::CreateImage(image) => message = image.encode(),
            Request::RemoveImage {
                poolname,
                imagename,
            }
            | Request::GetImageInfo {
                poolname,
                imagename,
            } => {
                message.string(1, poolname).string(2, imagename);
            }
            Request::ResizeImage {
                poolname,
                imagename,
                size,
            } => {
                message
                    .string(1, poolname)
                    .string(2, imagename)
                    .int64(3, *size);
            }
            Request::LeaderBeElected(elected) => {
                message
                    .int32(1, elected.leader_id)
                    .uint64(2, elected.pool_id)
                    .uint64(3, elected.pg_id)
                    .packed_int32(4, &elected.osd_list)
                    .packed_int32(5, &elected.new_osd_list);
            }
            Request::PgMemberChangeFinish(finish) => {
                message
                    .int32(1, finish.result)
                    .uint64(2, finish.pool_id)
                    .uint64(3, finish.pg_id)
                    .packed_int32(4, &finish.osd_list);
            }
            Request::OsdOut { osdid } | Request::OsdIn { osdid } | Request::OsdConfig { osdid } => {
                message.int32(1, *osdid);
            }
            Request::NoReblance { set } | Request::NoOut { set } => {
                message.boolean(1, *set);
            }
            Request::DataStatistics(data) => {
                for (name, counters) in data {
                    message.map_entry(
                        1,
                        |key| {
                            key.string(1, name);
                        },
                        |value| {
                            value.message(2, counters.encode());
                        },
                    );
                }
            }
            Request::GetPgOsdInfo { pool_ids } => {
                message.packed_int32(1, pool_ids);
            }
        }
        message.finish()
    }

    /// The `msg.Request` envelope: the inner message as the oneof member of its kind (present
    /// even when the inner message is empty, which is what selects the member).
    pub fn encode(&self) -> Vec<u8> {
        let mut envelope = Encoder::new();
        envelope.bytes_field(self.kind(), &self.encode_inner());
        envelope.finish()
    }
}

fn encode_get_osdmap(request: &GetOsdMapRequest) -> Encoder {
    let mut message = Encoder::new();
    message
        .int32(1, request.osdid)
        .int64(2, request.currentversion);
    message
}

fn encode_get_pgmap(request: &GetPgMapRequest) -> Encoder {
    let mut message = Encoder::new();
    for (&pool, &version) in &request.pool_versions {
        message.map_entry(
            1,
            |key| {
                key.int32(1, pool);
            },
            |value| {
                value.int64(2, version);
            },
        );
    }
    message
}

/// `ApplyIDResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyIdReply {
    pub uuid: String,
    pub id: i32,
    pub errorcode: i32,
}

/// `CreatePoolResponse`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreatePoolReply {
    pub errorcode: i32,
    pub poolid: i32,
}

/// One OSD of a `GetOsdMapResponse` (`OsdDynamicInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsdInfo {
    pub osdid: i32,
    pub address: String,
    pub sharded_ports: BTreeMap<u32, ShardCore>,
    pub isin: bool,
    pub isup: bool,
    pub ispendingcreate: bool,
}

/// `GetOsdMapResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsdMapReply {
    pub errorcode: i32,
    pub osdmapversion: i64,
    pub osds: Vec<OsdInfo>,
}

/// One PG of a `GetPgMapResponse` (`PGInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgInfo {
    pub pgid: i32,
    pub version: i64,
    pub state: i32,
    pub coreindex: u32,
    pub osdid: Vec<i32>,
    pub newcoreindex: u32,
    pub newosdid: Vec<i32>,
}

/// `GetPgMapResponse`: four maps keyed by pool id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgMapReply {
    pub errorcode: BTreeMap<i32, i32>,
    pub poolid_pgmapversion: BTreeMap<i32, i64>,
    pub pgs: BTreeMap<i32, Vec<PgInfo>>,
    pub pools: BTreeMap<i32, String>,
}

/// `GetClusterMapResponse`; a half the monitor left out is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMapReply {
    pub osdmap: Option<OsdMapReply>,
    pub pgmap: Option<PgMapReply>,
}

/// `PgStateInfo`: PG counts per state combination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgStateCounts {
    pub creating: i32,
    pub active: i32,
    pub undersize: i32,
    pub down: i32,
    pub remap: i32,
    pub creating_undersize: i32,
    pub creating_down: i32,
    pub undersize_remap: i32,
    pub down_remap: i32,
}

/// `GetClusterStatusResponse`, without the I/O rates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStatusReply {
    pub no_reblance: bool,
    pub no_out: bool,
    pub mon_names: Vec<String>,
    pub osd_num: i32,
    pub up_osd_num: i32,
    pub in_osd_num: i32,
    pub pool_num: i32,
    pub pg_num: i32,
    pub pg_state: PgStateCounts,
}

/// One pool of a `ListPoolsResponse` (`poolinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolInfo {
    pub poolid: i32,
    pub name: String,
    pub pgsize: i32,
    pub pgcount: i32,
    pub failuredomain: String,
    pub root: String,
}

/// The replies of CreateImage, RemoveImage, ResizeImage and GetImageInfo: an error code and
/// an `ImageInfo` (`None` when the monitor left the field out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageReply {
    pub errorcode: i32,
    pub info: Option<ImageInfo>,
}

/// One PG of a `GetPgOsdInfoResponse` (`PgOsdInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgOsdInfo {
    pub pgid: i32,
    pub coreindex: u32,
    pub osdid: Vec<i32>,
}

/// A decoded `msg.Response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Boot {
        result: i32,
    },
    ApplyId(ApplyIdReply),
    CreatePool(CreatePoolReply),
    GetOsdMap(OsdMapReply),
    GetPgMap(PgMapReply),
    GetClusterMap(ClusterMapReply),
    /// `ListPoolsResponse`: the pools in the order received.
    ListPools(Vec<PoolInfo>),
    /// The image kinds (CreateImage, RemoveImage, ResizeImage, GetImageInfo), with the kind
    /// that answered.
    Image {
        kind: u32,
        reply: ImageReply,
    },
    /// `GetPgOsdInfoResponse`: per pool id, its PGs in the order received.
    PgOsdInfo(BTreeMap<i32, Vec<PgOsdInfo>>),
    OsdConfig {
        config: String,
    },
    GetClusterStatus(ClusterStatusReply),
    /// The kinds whose response is `{ok bool}` (OsdStop, Heartbeat, DeletePool,
    /// LeaderBeElected, PgMemberChangeFinish, OsdOut, OsdIn, NoReblance, NoOut,
    /// DataStatistics), with the kind that answered.
    Ok {
        kind: u32,
        ok: bool,
    },
}

/// Why a frame's payload is not a response this client can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("bad protobuf: {0}")]
    Wire(#[from] WireError),
    /// The envelope has no oneof member.
    #[error("response envelope has no member")]
    Empty,
    /// The envelope has a field number outside 1..=24, or more than one member.
    #[error("response envelope member {kind} is not one of the 24 kinds")]
    UnknownKind { kind: u32 },
}

impl Response {
    /// The oneof field number that carried this response.
    pub fn kind(&self) -> u32 {
        match self {
            Response::Boot { .. } => kind::BOOT,
            Response::ApplyId(_) => kind::APPLY_ID,
            Response::CreatePool(_) => kind::CREATE_POOL,
            Response::GetOsdMap(_) => kind::GET_OSDMAP,
            Response::GetPgMap(_) => kind::GET_PGMAP,
            Response::GetClusterMap(_) => kind::GET_CLUSTER_MAP,
            Response::ListPools(_) => kind::LIST_POOLS,
            Response::PgOsdInfo(_) => kind::PG_OSD_INFO,
            Response::OsdConfig { .. } => kind::OSD_CONFIG,
            Response::GetClusterStatus(_) => kind::GET_CLUSTER_STATUS,
            Response::Ok { kind, .. } | Response::Image { kind, .. } => *kind,
        }
    }

    /// Decodes a `msg.Response`. A oneof member seen twice is legal protobuf (the last one
    /// wins), so the last member is the answer.
    pub fn decode(bytes: &[u8]) -> Result<Self, ResponseError> {
        let mut member: Option<(u32, &[u8])> = None;
        let mut unknown = None;
        each_field(bytes, |field| {
            if (1..=kind::PG_OSD_INFO).contains(&field.number) {
                member = Some((field.number, field.len_bytes()?));
            } else {
                unknown = Some(field.number);
            }
            Ok(())
        })?;
        if let Some(kind) = unknown {
            return Err(ResponseError::UnknownKind { kind });
        }
        let Some((kind, inner)) = member else {
            return Err(ResponseError::Empty);
        };
        decode_member(kind, inner)
    }
}

fn decode_member(member: u32, inner: &[u8]) -> Result<Response, ResponseError> {
    Ok(match member {
        kind::BOOT => {
            let mut result = 0;
            each_field(inner, |field| {
                if field.number == 1 {
                    result = field.int32()?;
                }
                Ok(())
            })?;
            Response::Boot { result }
        }
        kind::APPLY_ID => {
            let mut reply = ApplyIdReply::default();
            each_field(inner, |field| {
                match field.number {
                    1 => reply.uuid = field.string()?,
                    2 => reply.id = field.int32()?,
                    3 => reply.errorcode = field.int32()?,
                    _ => {}
                }
                Ok(())
            })?;
            Response::ApplyId(reply)
        }
        kind::CREATE_POOL => {
            let mut reply = CreatePoolReply::default();
            each_field(inner, |field| {
                match field.number {
                    1 => reply.errorcode = field.int32()?,
                    2 => reply.poolid = field.int32()?,
                    _ => {}
                }
                Ok(())
            })?;
            Response::CreatePool(reply)
        }
        kind::GET_OSDMAP => Response::GetOsdMap(decode_osdmap(inner)?),
        kind::GET_PGMAP => Response::GetPgMap(decode_pgmap(inner)?),
        kind::GET_CLUSTER_MAP => {
            let mut reply = ClusterMapReply::default();
            each_field(inner, |field| {
                match field.number {
                    1 => reply.osdmap = Some(decode_osdmap(field.len_bytes()?)?),
                    2 => reply.pgmap = Some(decode_pgmap(field.len_bytes()?)?),
                    _ => {}
                }
                Ok(())
            })?;
            Response::GetClusterMap(reply)
        }
        kind::OSD_CONFIG => {
            let mut config = String::new();
            each_field(inner, |field| {
                if field.number == 1 {
                    config = field.string()?;
                }
                Ok(())
            })?;
            Response::OsdConfig { config }
        }
        kind::GET_CLUSTER_STATUS => Response::GetClusterStatus(decode_cluster_status(inner)?),
        kind::LIST_POOLS => {
            let mut pools = Vec::new();
            each_field(inner, |field| {
                if field.number == 1 {
                    pools.push(decode_pool_info(field.len_bytes()?)?);
                }
                Ok(())
            })?;
            Response::ListPools(pools)
        }
        kind::CREATE_IMAGE | kind::REMOVE_IMAGE | kind::RESIZE_IMAGE | kind::GET_IMAGE_INFO => {
            let mut reply = ImageReply::default();
            each_field(inner, |field| {
                match field.number {
                    1 => reply.errorcode = field.int32()?,
                    2 => reply.info = Some(ImageInfo::decode(field.len_bytes()?)?),
                    _ => {}
                }
                Ok(())
            })?;
            Response::Image {
                kind: member,
                reply,
            }
        }
        kind::PG_OSD_INFO => {
            let mut pools = BTreeMap::new();
            each_field(inner, |field| {
                if field.number == 1 {
                    let (pool, pgs) = map_entry(field.len_bytes()?, Field::int32, |value| {
                        decode_pg_osd_infos(value.len_bytes()?)
                    })?;
                    pools.insert(pool, pgs);
                }
                Ok(())
            })?;
            Response::PgOsdInfo(pools)
        }
        kind::OSD_STOP
        | kind::HEARTBEAT
        | kind::DELETE_POOL
        | kind::LEADER_BE_ELECTED
        | kind::PG_MEMBER_CHANGE_FINISH
        | kind::OSD_OUT
        | kind::OSD_IN
        | kind::NO_REBLANCE
        | kind::NO_OUT
        | kind::DATA_STATISTICS => {
            let mut ok = false;
            each_field(inner, |field| {
                if field.number == 1 {
                    ok = field.boolean()?;
                }
                Ok(())
            })?;
            Response::Ok { kind: member, ok }
        }
        _ => return Err(ResponseError::UnknownKind { kind: member }),
    })
}

fn decode_pool_info(bytes: &[u8]) -> Result<PoolInfo, WireError> {
    let mut pool = PoolInfo::default();
    each_field(bytes, |field| {
        match field.number {
            1 => pool.poolid = field.int32()?,
            2 => pool.name = field.string()?,
            3 => pool.pgsize = field.int32()?,
            4 => pool.pgcount = field.int32()?,
            5 => pool.failuredomain = field.string()?,
            6 => pool.root = field.string()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(pool)
}

fn decode_pg_osd_infos(bytes: &[u8]) -> Result<Vec<PgOsdInfo>, WireError> {
    let mut pgs = Vec::new();
    each_field(bytes, |field| {
        if field.number == 1 {
            let mut pg = PgOsdInfo::default();
            each_field(field.len_bytes()?, |f| {
                match f.number {
                    1 => pg.pgid = f.int32()?,
                    2 => pg.coreindex = f.uint32()?,
                    3 => f.push_int32s(&mut pg.osdid)?,
                    _ => {}
                }
                Ok(())
            })?;
            pgs.push(pg);
        }
        Ok(())
    })?;
    Ok(pgs)
}

fn decode_osdmap(bytes: &[u8]) -> Result<OsdMapReply, WireError> {
    let mut reply = OsdMapReply::default();
    each_field(bytes, |field| {
        match field.number {
            1 => reply.errorcode = field.int32()?,
            2 => reply.osdmapversion = field.int64()?,
            3 => reply.osds.push(decode_osd(field.len_bytes()?)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(reply)
}

fn decode_osd(bytes: &[u8]) -> Result<OsdInfo, WireError> {
    let mut osd = OsdInfo::default();
    each_field(bytes, |field| {
        match field.number {
            1 => osd.osdid = field.int32()?,
            2 => osd.address = field.string()?,
            3 => {
                let (shard, core) = map_entry(field.len_bytes()?, Field::uint32, |value| {
                    ShardCore::decode(value.len_bytes()?)
                })?;
                osd.sharded_ports.insert(shard, core);
            }
            4 => osd.isin = field.boolean()?,
            5 => osd.isup = field.boolean()?,
            6 => osd.ispendingcreate = field.boolean()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(osd)
}

fn decode_pgmap(bytes: &[u8]) -> Result<PgMapReply, WireError> {
    let mut reply = PgMapReply::default();
    each_field(bytes, |field| {
        let entry = field.len_bytes()?;
        match field.number {
            1 => {
                let (pool, code) = map_entry(entry, Field::int32, Field::int32)?;
                reply.errorcode.insert(pool, code);
            }
            2 => {
                let (pool, version) = map_entry(entry, Field::int32, Field::int64)?;
                reply.poolid_pgmapversion.insert(pool, version);
            }
            3 => {
                let (pool, pgs) = map_entry(entry, Field::int32, |value| {
                    decode_pg_infos(value.len_bytes()?)
                })?;
                reply.pgs.insert(pool, pgs);
            }
            4 => {
                let (pool, name) = map_entry(entry, Field::int32, Field::string)?;
                reply.pools.insert(pool, name);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(reply)
}

fn decode_pg_infos(bytes: &[u8]) -> Result<Vec<PgInfo>, WireError> {
    let mut pgs = Vec::new();
    each_field(bytes, |field| {
        if field.number == 1 {
            pgs.push(decode_pg(field.len_bytes()?)?);
        }
        Ok(())
    })?;
    Ok(pgs)
}

fn decode_pg(bytes: &[u8]) -> Result<PgInfo, WireError> {
    let mut pg = PgInfo::default();
    each_field(bytes, |field| {
        match field.number {
            1 => pg.pgid = field.int32()?,
            2 => pg.version = field.int64()?,
            3 => pg.state = field.int32()?,
            4 => pg.coreindex = field.uint32()?,
            5 => field.push_int32s(&mut pg.osdid)?,
            6 => pg.newcoreindex = field.uint32()?,
            7 => field.push_int32s(&mut pg.newosdid)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(pg)
}

fn decode_cluster_status(bytes: &[u8]) -> Result<ClusterStatusReply, WireError> {
    let mut reply = ClusterStatusReply::default();
    each_field(bytes, |field| {
        match field.number {
            1 => each_field(field.len_bytes()?, |flag| {
                match flag.number {
                    1 => reply.no_reblance = flag.boolean()?,
                    2 => reply.no_out = flag.boolean()?,
                    _ => {}
                }
                Ok(())
            })?,
            2 => reply.mon_names.push(field.string()?),
            3 => reply.osd_num = field.int32()?,
            4 => reply.up_osd_num = field.int32()?,
            5 => reply.in_osd_num = field.int32()?,
            6 => reply.pool_num = field.int32()?,
            7 => reply.pg_num = field.int32()?,
            9 => reply.pg_state = decode_pg_state(field.len_bytes()?)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(reply)
}

fn decode_pg_state(bytes: &[u8]) -> Result<PgStateCounts, WireError> {
    let mut counts = PgStateCounts::default();
    each_field(bytes, |field| {
        let slot = match field.number {
            1 => &mut counts.creating,
            2 => &mut counts.active,
            3 => &mut counts.undersize,
            4 => &mut counts.down,
            5 => &mut counts.remap,
            6 => &mut counts.creating_undersize,
            7 => &mut counts.creating_down,
            8 => &mut counts.undersize_remap,
            9 => &mut counts.down_remap,
            _ => return Ok(()),
        };
        *slot = field.int32()?;
        Ok(())
    })?;
    Ok(counts)
}
