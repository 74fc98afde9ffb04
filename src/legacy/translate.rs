//! The 24 request kinds of the framed protocol (LEGACY-PROTOCOL.md §7), translated into the
//! same commands and snapshot reads the gRPC service uses, and their outcomes into the wire's
//! answers. Nothing is decided here that the core decides for gRPC: this file only converts
//! values (ids, names, error codes) and says which connection speaks for which OSD.
//!
//! **Which OSD a connection speaks for.** The C++ OSD never sends Heartbeat: its GetClusterMap
//! poll naming its own id every 3 s is its heartbeat (§8), and it sends its PG reports
//! (LeaderBeElected, PgMemberChangeFinish) and I/O statistics on the same connection. A
//! connection speaks for OSD X, for the run (boot instance) the osdmap holds, when
//! - it booted X (Boot carries no boot instance on this wire: each connection derives its own,
//!   so a Boot from another process is another run), or
//! - it comes from X's registered address: the OSD reconnected (after a failover, or to
//!   another monitor of its list) without booting again, which the C++ client does not do.
//!
//! Anything else naming X — another client polling with X's id, an admin CLI, a block client —
//! is served its map but keeps nothing alive and reports for no PG (SPEC §12: no client can
//! keep a dead OSD alive).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;

use super::frame::Payload;
use super::maps::{self, MapCache};
use crate::cluster::iostats::{IoCounters, IoReport};
use crate::cluster::placement::PlacementError;
use crate::cluster::{
    BootArgs, BootInstance, ClusterError, ClusterFlag, ClusterState, Command, OsdId, PgId, PgState,
    PoolArgs, PoolId, ShardArg, command,
};
use crate::commit::ProposeError;
use crate::node::Node;
use crate::proto::legacy as msg;
use crate::term::TermContext;

use msg::request::Union as Req;
use msg::response::Union as Resp;

/// Boot results (§7.2, `ERRNUM`).
pub mod boot_result {
    pub const OK: i32 = 0;
    /// The id was never applied for (or not with this uuid).
    pub const NOT_APPLY: i32 = -156;
    /// The OSD is up (another run of it).
    pub const ID_CONFLICT: i32 = -157;
    /// An address, port, host or config the monitor cannot take.
    pub const ADDRESS_INVALID: i32 = -158;
    /// The change could not be committed.
    pub const UPDATE_STATE_FAILED: i32 = -159;
    /// `core_num` differs from the cluster's (or is 0).
    pub const CORE_NUM: i32 = -160;
}

/// The root name the Go CLI sends for "the default root".
pub const GO_DEFAULT_ROOT: &str = "defaultroot";

/// How a request went, for the metrics and for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// Answered with an error code (bad input, or the state does not allow it).
    Refused,
    /// The monitor could not do it: the term ended, or the commit outcome is unknown. The
    /// connection is closed after the reply, so the client reconnects to the leader.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// A request's answer: the payload of its `msg.Response`.
pub struct Answer {
    pub payload: Payload,
    pub outcome: Outcome,
}

/// The per-connection side of the protocol, served by one term.
pub struct Session {
    node: Arc<Node>,
    term: Arc<TermContext>,
    maps: Arc<MapCache>,
    /// This connection's boot instance (never 0).
    instance: BootInstance,
    /// Where the connection comes from (None for a forwarded one whose origin is unknown).
    peer: Option<IpAddr>,
    /// The OSDs this connection speaks for, with the run it speaks for.
    attached: BTreeMap<OsdId, BootInstance>,
}

/// The metrics label of a request kind.
pub fn kind_name(r: &Req) -> &'static str {
    match r {
        Req::BootRequest(_) => "boot",
        Req::OsdStopRequest(_) => "osd_stop",
        Req::HeartbeatRequest(_) => "heartbeat",
        Req::GetOsdmapRequest(_) => "get_osdmap",
        Req::ListPoolsRequest(_) => "list_pools",
        Req::ApplyIdRequest(_) => "apply_id",
        Req::CreatePoolRequest(_) => "create_pool",
        Req::GetPgmapRequest(_) => "get_pgmap",
        Req::DeletePoolRequest(_) => "delete_pool",
        Req::GetClusterMapRequest(_) => "get_cluster_map",
        Req::CreateImageRequest(_) => "create_image",
        Req::RemoveImageRequest(_) => "remove_image",
        Req::ResizeImageRequest(_) => "resize_image",
        Req::GetImageInfoRequest(_) => "get_image_info",
        Req::LeaderBeElectedRequest(_) => "leader_be_elected",
        Req::PgMemberChangeFinishRequest(_) => "pg_member_change_finish",
        Req::OsdOutRequest(_) => "osd_out",
        Req::OsdInRequest(_) => "osd_in",
        Req::NoReblanceRequest(_) => "no_reblance",
        Req::NoOutRequest(_) => "no_out",
        Req::GetClusterStatusRequest(_) => "get_cluster_status",
        Req::DataStatisticsRequest(_) => "data_statistics",
        Req::OsdConfigRequest(_) => "osd_config",
        Req::PgOsdInfoRequest(_) => "pg_osd_info",
    }
}

/// An OSD id of the wire (`int32`): ids are positive.
fn osd_id(v: i32) -> Option<OsdId> {
    u32::try_from(v).ok().filter(|&i| i > 0).map(OsdId)
}

/// A member list of the wire; None when an id is not an OSD id.
fn osd_list(v: &[i32]) -> Option<Vec<OsdId>> {
    v.iter().map(|&i| osd_id(i)).collect()
}

/// A failed proposal: refused by the core (nothing changed), or not done by this term.
fn outcome_of(e: &ProposeError) -> Outcome {
    match e {
        ProposeError::Rejected(_) | ProposeError::TooLarge { .. } => Outcome::Refused,
        ProposeError::NotLeader | ProposeError::Indeterminate(_) => Outcome::Failed,
    }
}

fn reply(r: Resp, outcome: Outcome) -> Answer {
    Answer {
        payload: Payload::from(Bytes::from(
            msg::Response { union: Some(r) }.encode_to_vec(),
        )),
        outcome,
    }
}

/// `{ok}` answers: true when done, false otherwise.
fn ok_of<T>(r: &Result<T, ProposeError>) -> (bool, Outcome) {
    match r {
        Ok(_) => (true, Outcome::Ok),
        Err(e) => (false, outcome_of(e)),
    }
}

impl Session {
    pub fn new(
        node: Arc<Node>,
        term: Arc<TermContext>,
        maps: Arc<MapCache>,
        peer: Option<IpAddr>,
    ) -> Session {
        Session {
            node,
            term,
            maps,
            instance: BootInstance(fresh_instance()),
            peer,
            attached: BTreeMap::new(),
        }
    }

    /// The term serving this connection.
    pub fn term(&self) -> &Arc<TermContext> {
        &self.term
    }

    /// Answers one request.
    pub async fn answer(&mut self, request: Req) -> Answer {
        match request {
            Req::BootRequest(r) => self.boot(r).await,
            Req::OsdStopRequest(r) => {
                let result = match osd_id(r.id) {
                    Some(id) => self.propose(command::OsdStop { id }).await.map(drop),
                    None => Err(ProposeError::Rejected(ClusterError::OsdNotFound(OsdId(0)))),
                };
                let (ok, o) = ok_of(&result);
                reply(Resp::OsdStopResponse(msg::OsdStopResponse { ok }), o)
            }
            Req::HeartbeatRequest(r) => {
                // A no-op in the Go monitor; honoured here from a connection that speaks for
                // the OSD, like its polls.
                let outcome = self.alive(r.id).await;
                reply(
                    Resp::HeartbeatResponse(msg::HeartbeatResponse {
                        ok: outcome != Outcome::Failed,
                    }),
                    outcome,
                )
            }
            Req::GetOsdmapRequest(r) => {
                let outcome = self.alive(r.osdid).await;
                let snap = self.term.snapshot();
                Answer {
                    payload: maps::response_with(4, self.maps.osdmap_reply(&snap, &r).into()),
                    outcome,
                }
            }
            Req::GetPgmapRequest(r) => {
                let snap = self.term.snapshot();
                Answer {
                    payload: maps::response_with(8, self.maps.pgmap_reply(&snap, &r)),
                    outcome: Outcome::Ok,
                }
            }
            Req::GetClusterMapRequest(r) => {
                let gom = r.gom_request.unwrap_or_default();
                let outcome = self.alive(gom.osdid).await;
                let snap = self.term.snapshot();
                let gpm = r.gpm_request.unwrap_or_default();
                Answer {
                    payload: maps::cluster_map_response(
                        self.maps.osdmap_reply(&snap, &gom),
                        self.maps.pgmap_reply(&snap, &gpm),
                    ),
                    outcome,
                }
            }
            Req::ListPoolsRequest(_) => {
                let snap = self.term.snapshot();
                let pi = snap
                    .pools()
                    .map(|p| msg::Poolinfo {
                        poolid: p.id.0 as i32,
                        name: p.name.clone(),
                        pgsize: p.size as i32,
                        pgcount: p.pg_count as i32,
                        failuredomain: p.failure_domain.name().to_string(),
                        root: p.root.clone(),
                    })
                    .collect();
                reply(
                    Resp::ListPoolsResponse(msg::ListPoolsResponse { pi }),
                    Outcome::Ok,
                )
            }
            Req::ApplyIdRequest(r) => {
                // Idempotent (a retried ApplyID after a lost reply gets the same id); the Go
                // monitor answered UuidAlreadyExists.
                let result = self
                    .propose(command::ApplyId {
                        uuid: r.uuid.clone(),
                    })
                    .await;
                let (id, errorcode, outcome) = match result {
                    Ok(a) => (a.id.0 as i32, msg::ApplyIdErrorCode::ApplyIdOk, Outcome::Ok),
                    Err(ProposeError::Rejected(ClusterError::InvalidUuid(_))) => {
                        (-1, msg::ApplyIdErrorCode::InvalidUUid, Outcome::Refused)
                    }
                    Err(e) => (-1, msg::ApplyIdErrorCode::InternalError, outcome_of(&e)),
                };
                reply(
                    Resp::ApplyIdResponse(msg::ApplyIdResponse {
                        uuid: r.uuid,
                        id,
                        errorcode: errorcode as i32,
                    }),
                    outcome,
                )
            }
            Req::CreatePoolRequest(r) => self.create_pool(r).await,
            Req::DeletePoolRequest(r) => {
                let result = self.propose(command::DeletePool { name: r.name }).await;
                let (ok, o) = ok_of(&result);
                reply(Resp::DeletePoolResponse(msg::DeletePoolResponse { ok }), o)
            }
            Req::CreateImageRequest(r) => self.create_image(r).await,
            Req::RemoveImageRequest(r) => self.remove_image(r).await,
            Req::ResizeImageRequest(r) => self.resize_image(r).await,
            Req::GetImageInfoRequest(r) => {
                let snap = self.term.snapshot();
                let found = image_info(&snap, &r.poolname, &r.imagename);
                let outcome = if found.is_some() {
                    Outcome::Ok
                } else {
                    Outcome::Refused
                };
                reply(
                    Resp::GetImageInfoResponse(msg::GetImageInfoResponse {
                        errorcode: if found.is_some() {
                            msg::GetImageErrorCode::GetImageOk
                        } else {
                            msg::GetImageErrorCode::GetImageNotFound
                        } as i32,
                        image_info: Some(found.unwrap_or_default()),
                    }),
                    outcome,
                )
            }
            Req::LeaderBeElectedRequest(r) => {
                let result = match self.leader_report(&r) {
                    Some(c) => self.propose(c).await.map(drop),
                    None => Err(ProposeError::Rejected(ClusterError::ReporterMissing)),
                };
                let (ok, o) = ok_of(&result);
                reply(
                    Resp::LeaderBeElectedResponse(msg::LeaderBeElectedResponse { ok }),
                    o,
                )
            }
            Req::PgMemberChangeFinishRequest(r) => {
                let result = match self.change_report(&r) {
                    Some(c) => self.propose(c).await.map(drop),
                    None => Err(ProposeError::Rejected(ClusterError::ReporterMissing)),
                };
                let (ok, o) = ok_of(&result);
                reply(
                    Resp::PgMemberChangeFinishResponse(msg::PgMemberChangeFinishResponse { ok }),
                    o,
                )
            }
            Req::OsdOutRequest(r) => {
                let result = match osd_id(r.osdid) {
                    Some(id) => self.propose(command::OsdOut { id }).await.map(drop),
                    None => Err(ProposeError::Rejected(ClusterError::OsdNotFound(OsdId(0)))),
                };
                let (ok, o) = ok_of(&result);
                reply(Resp::OsdOutResponse(msg::OsdOutResponse { ok }), o)
            }
            Req::OsdInRequest(r) => {
                let result = match osd_id(r.osdid) {
                    Some(id) => self.propose(command::OsdIn { id }).await.map(drop),
                    None => Err(ProposeError::Rejected(ClusterError::OsdNotFound(OsdId(0)))),
                };
                let (ok, o) = ok_of(&result);
                reply(Resp::OsdInResponse(msg::OsdInResponse { ok }), o)
            }
            Req::NoReblanceRequest(r) => {
                let (ok, o) = self.flag(ClusterFlag::NoRebalance, r.set).await;
                reply(Resp::NoReblanceResponse(msg::NoReblanceResponse { ok }), o)
            }
            Req::NoOutRequest(r) => {
                let (ok, o) = self.flag(ClusterFlag::NoOut, r.set).await;
                reply(Resp::NoOutResponse(msg::NoOutResponse { ok }), o)
            }
            Req::GetClusterStatusRequest(_) => reply(
                Resp::GetClusterStatusResponse(self.cluster_status()),
                Outcome::Ok,
            ),
            Req::DataStatisticsRequest(r) => {
                let (ok, outcome) = self.statistics(&r);
                reply(
                    Resp::DataStatisticsResponse(msg::DataStatisticsResponse { ok }),
                    outcome,
                )
            }
            Req::OsdConfigRequest(r) => self.osd_config(r).await,
            Req::PgOsdInfoRequest(r) => {
                let snap = self.term.snapshot();
                reply(
                    Resp::PgOsdInfoResponse(pg_osd_info(&snap, &r.pool_ids)),
                    Outcome::Ok,
                )
            }
        }
    }

    async fn propose<C: Command>(&self, command: C) -> Result<C::Reply, ProposeError> {
        self.term.propose(command).await
    }

    /// The run of `id` this connection speaks for, attaching it when the connection comes
    /// from the OSD's registered address; None when it speaks for no run of `id`.
    fn speaks_for(&mut self, snap: &ClusterState, id: OsdId) -> Option<BootInstance> {
        let osd = snap.osd(id)?;
        let current = osd.boot_instance()?;
        if self.attached.get(&id) == Some(&current) {
            return Some(current);
        }
        if self.peer.is_some() && self.peer == osd.address {
            self.attached.insert(id, current);
            return Some(current);
        }
        None
    }

    /// The liveness meaning of a request naming OSD `raw` (§8), from a connection that speaks
    /// for it: the heartbeat actor hears it, and a run the failure detector marked down comes
    /// back up. Others naming it change nothing.
    async fn alive(&mut self, raw: i32) -> Outcome {
        let Some(id) = osd_id(raw) else {
            return Outcome::Ok;
        };
        let snap = self.term.snapshot();
        let Some(instance) = self.speaks_for(&snap, id) else {
            return Outcome::Ok;
        };
        if self.term.heartbeats.heard(id).await.is_err() {
            return Outcome::Failed;
        }
        match snap.heartbeat(id, instance) {
            Ok(Some(mark_up)) => match self.propose(mark_up).await {
                Err(e) if outcome_of(&e) == Outcome::Failed => Outcome::Failed,
                _ => Outcome::Ok,
            },
            _ => Outcome::Ok,
        }
    }

    async fn boot(&mut self, r: msg::BootRequest) -> Answer {
        let answer = |result: i32, outcome: Outcome| {
            reply(Resp::BootResponse(msg::BootResponse { result }), outcome)
        };
        let Some(id) = osd_id(r.osd_id) else {
            return answer(boot_result::NOT_APPLY, Outcome::Refused);
        };
        let args = BootArgs {
            id,
            uuid: r.uuid,
            // OSDs report their size in bytes; a negative one is no size.
            size: u64::try_from(r.size).unwrap_or(0),
            shards: r
                .sharded_ports
                .into_iter()
                .map(|(shard, c)| ShardArg {
                    shard,
                    core_id: c.coreid,
                    port: c.port,
                    raw_port: c.raw_port,
                })
                .collect(),
            address: r.address,
            host: r.host,
            core_num: r.core_num,
            config: r.config,
            instance: self.instance.0,
            rack: String::new(),
            root: String::new(),
        };
        match self.propose(command::Boot(args)).await {
            Ok(_) => {
                self.attached.insert(id, self.instance);
                // A boot is a sign of life.
                if self.term.heartbeats.heard(id).await.is_err() {
                    return answer(boot_result::UPDATE_STATE_FAILED, Outcome::Failed);
                }
                answer(boot_result::OK, Outcome::Ok)
            }
            Err(ProposeError::Rejected(e)) => answer(boot_code(&e), Outcome::Refused),
            Err(e) => answer(boot_result::UPDATE_STATE_FAILED, outcome_of(&e)),
        }
    }

    async fn create_pool(&mut self, r: msg::CreatePoolRequest) -> Answer {
        use msg::CreatePoolErrorCode as Code;
        let answer = |code: Code, poolid: i32, outcome: Outcome| {
            reply(
                Resp::CreatePoolResponse(msg::CreatePoolResponse {
                    errorcode: code as i32,
                    poolid,
                }),
                outcome,
            )
        };
        let (Ok(size), Ok(pg_count)) = (u32::try_from(r.pgsize), u32::try_from(r.pgcount)) else {
            return answer(Code::InternalError, -1, Outcome::Refused);
        };
        let root = if r.root == GO_DEFAULT_ROOT {
            String::new()
        } else {
            r.root
        };
        let result = self
            .propose(command::CreatePool(PoolArgs {
                name: r.name,
                size,
                pg_count,
                failure_domain: r.failuredomain,
                root,
            }))
            .await;
        match result {
            Ok(p) => answer(Code::CreatePoolOk, p.id.0 as i32, Outcome::Ok),
            Err(ProposeError::Rejected(e)) => {
                let code = match e {
                    ClusterError::PoolNameExists(_) => Code::PoolNameExists,
                    ClusterError::Placement(PlacementError::NoEnoughOsd { .. }) => {
                        Code::NoEnoughOsd
                    }
                    ClusterError::Placement(PlacementError::FailureDomainNotSatisfied {
                        ..
                    }) => Code::FailureDomainNeedNotSatisfied,
                    // No code says "invalid": a bad size, count, name or failure domain.
                    _ => Code::InternalError,
                };
                answer(code, -1, Outcome::Refused)
            }
            Err(e) => answer(Code::InternalError, -1, outcome_of(&e)),
        }
    }

    async fn create_image(&mut self, r: msg::CreateImageRequest) -> Answer {
        use msg::CreateImageErrorCode as Code;
        // The reply echoes the request whatever the outcome (§7.11).
        let echo = msg::ImageInfo {
            poolname: r.poolname.clone(),
            imagename: r.imagename.clone(),
            size: r.size,
            object_size: r.object_size,
        };
        let answer = |code: Code, outcome: Outcome| {
            reply(
                Resp::CreateImageResponse(msg::CreateImageResponse {
                    errorcode: code as i32,
                    image_info: Some(echo.clone()),
                }),
                outcome,
            )
        };
        let (Ok(size), Ok(object_size)) = (u64::try_from(r.size), u64::try_from(r.object_size))
        else {
            return answer(Code::MarshalImageContextError, Outcome::Refused);
        };
        let result = self
            .propose(command::CreateImage {
                pool: r.poolname,
                name: r.imagename,
                size,
                object_size,
            })
            .await;
        match result {
            Ok(_) => answer(Code::CreateImageOk, Outcome::Ok),
            Err(ProposeError::Rejected(e)) => answer(
                match e {
                    ClusterError::ImageNameTooLong(_) => Code::ImageNameTooLong,
                    ClusterError::UnknownPoolName(_) => Code::UnknownPoolName,
                    ClusterError::ImageExists(_) => Code::ImageExists,
                    // A name, size or object size the monitor does not take.
                    _ => Code::MarshalImageContextError,
                },
                Outcome::Refused,
            ),
            Err(e) => answer(Code::PutEtcdError, outcome_of(&e)),
        }
    }

    async fn remove_image(&mut self, r: msg::RemoveImageRequest) -> Answer {
        use msg::RemoveImageErrorCode as Code;
        let snap = self.term.snapshot();
        let Some(info) = image_info(&snap, &r.poolname, &r.imagename) else {
            return reply(
                Resp::RemoveImageResponse(msg::RemoveImageResponse {
                    errorcode: Code::ImageNotFound as i32,
                    image_info: Some(msg::ImageInfo::default()),
                }),
                Outcome::Refused,
            );
        };
        let result = self
            .propose(command::RemoveImage {
                pool: r.poolname,
                name: r.imagename,
            })
            .await;
        let (code, info, outcome) = match result {
            Ok(_) => (Code::RemoveImageOk, info, Outcome::Ok),
            Err(ProposeError::Rejected(ClusterError::ImageNotFound(_))) => (
                Code::ImageNotFound,
                msg::ImageInfo::default(),
                Outcome::Refused,
            ),
            Err(e) => (
                Code::RemoveImageFail,
                msg::ImageInfo::default(),
                outcome_of(&e),
            ),
        };
        reply(
            Resp::RemoveImageResponse(msg::RemoveImageResponse {
                errorcode: code as i32,
                image_info: Some(info),
            }),
            outcome,
        )
    }

    async fn resize_image(&mut self, r: msg::ResizeImageRequest) -> Answer {
        use msg::ResizeImageErrorCode as Code;
        let answer = |code: Code, info: msg::ImageInfo, outcome: Outcome| {
            reply(
                Resp::ResizeImageResponse(msg::ResizeImageResponse {
                    errorcode: code as i32,
                    image_info: Some(info),
                }),
                outcome,
            )
        };
        let Ok(size) = u64::try_from(r.size) else {
            return answer(
                Code::MarshalResizeImageContextError,
                msg::ImageInfo::default(),
                Outcome::Refused,
            );
        };
        let result = self
            .propose(command::ResizeImage {
                pool: r.poolname.clone(),
                name: r.imagename.clone(),
                size,
                // The Go CLI's resize has no way to confirm a shrink; it always was allowed.
                allow_shrink: true,
            })
            .await;
        match result {
            Ok(image) => answer(
                Code::ResizeImageOk,
                msg::ImageInfo {
                    poolname: r.poolname,
                    imagename: image.0.name.clone(),
                    size: image.0.size as i64,
                    object_size: image.0.object_size as i64,
                },
                Outcome::Ok,
            ),
            Err(ProposeError::Rejected(
                ClusterError::ImageNotFound(_) | ClusterError::UnknownPoolName(_),
            )) => answer(
                Code::ResizeImageNotFound,
                msg::ImageInfo::default(),
                Outcome::Refused,
            ),
            Err(ProposeError::Rejected(_)) => answer(
                Code::MarshalResizeImageContextError,
                msg::ImageInfo::default(),
                Outcome::Refused,
            ),
            Err(e) => answer(
                Code::PutResizeImageEtcdError,
                msg::ImageInfo::default(),
                outcome_of(&e),
            ),
        }
    }

    /// LeaderBeElected as a command, when the named leader is an OSD this connection speaks
    /// for and every id is one.
    fn leader_report(
        &mut self,
        r: &msg::LeaderBeElectedRequest,
    ) -> Option<command::LeaderBeElected> {
        let leader = osd_id(r.leader_id)?;
        let snap = self.term.snapshot();
        self.speaks_for(&snap, leader)?;
        Some(command::LeaderBeElected {
            leader,
            pool: PoolId(u32::try_from(r.pool_id).ok()?),
            pg: PgId(u32::try_from(r.pg_id).ok()?),
            members: osd_list(&r.osd_list)?,
            new_members: osd_list(&r.new_osd_list)?,
        })
    }

    /// PgMemberChangeFinish as a command. The request names no reporter: it is the OSD this
    /// connection speaks for that holds the PG.
    fn change_report(
        &mut self,
        r: &msg::PgMemberChangeFinishRequest,
    ) -> Option<command::MemberChangeFinish> {
        let pool = PoolId(u32::try_from(r.pool_id).ok()?);
        let pg = PgId(u32::try_from(r.pg_id).ok()?);
        let snap = self.term.snapshot();
        let held = snap.pool(pool)?.pgs.get(pg)?;
        let ids: Vec<OsdId> = self.attached.keys().copied().collect();
        let reporter = ids
            .into_iter()
            .find(|&id| held.involves(id) && self.speaks_for(&snap, id).is_some())?;
        Some(command::MemberChangeFinish {
            reporter: Some(reporter),
            result: r.result,
            pool,
            pg,
            members: osd_list(&r.osd_list)?,
        })
    }

    async fn flag(&self, flag: ClusterFlag, set: bool) -> (bool, Outcome) {
        let result = if set {
            self.propose(command::SetFlag(flag)).await
        } else {
            self.propose(command::UnsetFlag(flag)).await
        };
        ok_of(&result)
    }

    /// DataStatistics names no OSD: the report counts for the OSD this connection speaks for
    /// (the lowest id when it booted several), checked like a gRPC report. A connection that
    /// speaks for none is answered false and nothing is counted.
    fn statistics(&mut self, r: &msg::DataStatisticsRequest) -> (bool, Outcome) {
        let snap = self.term.snapshot();
        let ids: Vec<OsdId> = self.attached.keys().copied().collect();
        let Some(reporter) = ids
            .into_iter()
            .find(|&id| self.speaks_for(&snap, id).is_some())
        else {
            return (false, Outcome::Refused);
        };
        let entries = r.data.iter().map(|(name, d)| {
            (
                name.as_str(),
                IoCounters {
                    read_bytes: d.read_bytes,
                    write_bytes: d.write_bytes,
                    read_ops: d.read_ios,
                    write_ops: d.write_ios,
                },
            )
        });
        match IoReport::check(&snap, reporter, entries) {
            Ok(report) => {
                self.term
                    .iostats
                    .with(|io| io.record(report, &snap, Instant::now()));
                (true, Outcome::Ok)
            }
            Err(_) => (false, Outcome::Refused),
        }
    }

    async fn osd_config(&self, r: msg::OsdConfigRequest) -> Answer {
        let snap = self.term.snapshot();
        let known = osd_id(r.osdid).and_then(|id| snap.osd(id).filter(|o| o.config_hash != 0));
        let (config, outcome) = match known {
            None => (String::new(), Outcome::Ok),
            Some(o) => match self.node.store.osd_config(o.id).await {
                Ok(text) => (text.unwrap_or_default(), Outcome::Ok),
                Err(e) => {
                    tracing::debug!(error = %e, "legacy OsdConfig: cannot read the config text");
                    (String::new(), Outcome::Refused)
                }
            },
        };
        reply(
            Resp::OsdConfigResponse(msg::OsdConfigResponse { config }),
            outcome,
        )
    }

    fn cluster_status(&self) -> msg::GetClusterStatusResponse {
        let snap = self.term.snapshot();
        let view = self.node.view();
        let flags = snap.flags();
        let mut states = msg::PgStateInfo::default();
        let mut pgs = 0;
        for pool in snap.pools() {
            for (_, pg) in pool.pgs.iter() {
                pgs += 1;
                count_state(&mut states, maps::legacy_state(pg.state));
            }
        }
        let rates = self.term.iostats.with(|io| io.rates(Instant::now()));
        msg::GetClusterStatusResponse {
            cluster_state: Some(msg::ClusterStates {
                no_reblance: flags.contains(ClusterFlag::NoRebalance),
                no_out: flags.contains(ClusterFlag::NoOut),
            }),
            mon_name: view.monitors.iter().map(|m| m.name.clone()).collect(),
            osd_num: snap.osd_count() as i32,
            up_osd_num: snap.osds().filter(|o| o.is_up()).count() as i32,
            in_osd_num: snap.osds().filter(|o| o.is_in()).count() as i32,
            pool_num: snap.pools().count() as i32,
            pg_num: pgs,
            object_num: 0,
            pg_state: Some(states),
            cli_read_bytes: rates.read_bytes_per_sec as u64,
            cli_write_bytes: rates.write_bytes_per_sec as u64,
            cli_read_iops: rates.read_ops_per_sec as u64,
            cli_write_iops: rates.write_ops_per_sec as u64,
            recovery_bytes: 0,
            recovery_obj_ps: 0,
        }
    }
}

/// The Boot `ERRNUM` of a refusal (§7.2): the Go monitor's codes, for our checks.
pub fn boot_code(e: &ClusterError) -> i32 {
    match e {
        ClusterError::OsdNotFound(_)
        | ClusterError::UuidMismatch { .. }
        | ClusterError::InvalidUuid(_) => boot_result::NOT_APPLY,
        ClusterError::OsdAlreadyUp(_) => boot_result::ID_CONFLICT,
        ClusterError::InvalidCoreNum | ClusterError::CoreNumMismatch { .. } => {
            boot_result::CORE_NUM
        }
        _ => boot_result::ADDRESS_INVALID,
    }
}

/// Counts one PG under the first rule of §7.21 its (wire) state matches.
fn count_state(s: &mut msg::PgStateInfo, state: u32) {
    let has = |bits: PgState| state & bits.0 == bits.0;
    let c = PgState::CREATING;
    let u = PgState::UNDERSIZE;
    let d = PgState::DOWN;
    let r = PgState::REMAPPED;
    if has(c.with(u)) {
        s.creating_undersize_num += 1;
    } else if has(c.with(d)) {
        s.creating_down_num += 1;
    } else if has(u.with(r)) {
        s.undersize_remap_num += 1;
    } else if has(d.with(r)) {
        s.down_remap_num += 1;
    } else if has(c) {
        s.creating_num += 1;
    } else if has(PgState::ACTIVE) {
        s.active_num += 1;
    } else if has(u) {
        s.undersize_num += 1;
    } else if has(d) {
        s.down_num += 1;
    } else if has(r) {
        s.remap_num += 1;
    }
}

/// An image as the wire shows it, None when its pool or itself does not exist.
fn image_info(snap: &ClusterState, pool: &str, name: &str) -> Option<msg::ImageInfo> {
    let p = snap.pool_by_name(pool)?;
    let image = snap.image(p.id, name)?;
    Some(msg::ImageInfo {
        poolname: p.name.clone(),
        imagename: image.name.clone(),
        size: i64::try_from(image.size).unwrap_or(i64::MAX),
        object_size: i64::try_from(image.object_size).unwrap_or(i64::MAX),
    })
}

/// GetPgOsdInfo (§7.24): every pool for an empty list, else the listed ones (unknown skipped).
fn pg_osd_info(snap: &ClusterState, ids: &[i32]) -> msg::GetPgOsdInfoResponse {
    let pools: Vec<_> = if ids.is_empty() {
        snap.pools().collect()
    } else {
        ids.iter()
            .filter_map(|&i| u32::try_from(i).ok().and_then(|i| snap.pool(PoolId(i))))
            .collect()
    };
    msg::GetPgOsdInfoResponse {
        pools: pools
            .into_iter()
            .map(|p| {
                (
                    p.id.0 as i32,
                    msg::PgOsdInfos {
                        pgs: p
                            .pgs
                            .iter()
                            .map(|(id, pg)| msg::PgOsdInfo {
                                pgid: id.0 as i32,
                                coreindex: pg.core,
                                osdid: pg.members.iter().map(|m| m.0 as i32).collect(),
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
    }
}

/// A boot instance for a new connection: random (a per-process random hasher key mixed with
/// a counter and the time), never 0.
fn fresh_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_wire_are_positive() {
        assert_eq!(osd_id(0), None);
        assert_eq!(osd_id(-1), None);
        assert_eq!(osd_id(7), Some(OsdId(7)));
        assert_eq!(osd_list(&[1, 2]), Some(vec![OsdId(1), OsdId(2)]));
        assert_eq!(osd_list(&[1, -2]), None);
    }

    #[test]
    fn boot_refusals_get_the_go_monitors_numbers() {
        assert_eq!(
            boot_code(&ClusterError::OsdNotFound(OsdId(3))),
            boot_result::NOT_APPLY
        );
        assert_eq!(
            boot_code(&ClusterError::OsdAlreadyUp(OsdId(3))),
            boot_result::ID_CONFLICT
        );
        assert_eq!(
            boot_code(&ClusterError::CoreNumMismatch {
                cluster: 4,
                given: 2
            }),
            boot_result::CORE_NUM
        );
        assert_eq!(
            boot_code(&ClusterError::InvalidAddress("x".into())),
            boot_result::ADDRESS_INVALID
        );
    }

    #[test]
    fn pg_states_are_counted_by_the_first_matching_rule() {
        let mut s = msg::PgStateInfo::default();
        for state in [1 | 4, 1 | 8, 4 | 16, 8 | 16, 1, 2, 4, 8, 16] {
            count_state(&mut s, state);
        }
        assert_eq!(
            (
                s.creating_undersize_num,
                s.creating_down_num,
                s.undersize_remap_num,
                s.down_remap_num,
                s.creating_num,
                s.active_num,
                s.undersize_num,
                s.down_num,
                s.remap_num
            ),
            (1, 1, 1, 1, 1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn connection_instances_differ_and_are_never_zero() {
        let a = fresh_instance();
        let b = fresh_instance();
        assert_ne!(a, b);
        assert!(a != 0 && b != 0);
    }
}
