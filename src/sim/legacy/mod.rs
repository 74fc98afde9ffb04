//! The fleet over the legacy framed protocol, as the C++ OSD's `monitor::client` speaks it
//! (LEGACY-PROTOCOL.md §6–§8, §12), on the monitors' `port`:
//!
//! - **ids**: ApplyID (kind 6) for each uuid on one shared connection, as the deploy step
//!   (`fastblock-client -op=fakeapplyid`) does;
//! - **boot**: each OSD opens a connection of its own and sends Boot (kind 1: size 1 MiB, one
//!   shard per core); a non-zero `result` is an error (−156…−160, §7.2);
//! - **liveness and maps**: every `heartbeat_every` (3 s by default) each live OSD sends
//!   GetClusterMap (kind 10) with `currentversion = −1` and the pools it knows with their
//!   versions. That poll is the heartbeat on this protocol. Each OSD keeps what it learnt as
//!   the C++ client does: an osdmap version below the one it holds is an error (logged, the
//!   reply's osdmap ignored); a pool it listed that is missing from the reply's `errorcode` map
//!   is deleted;
//! - **PG work**: the fleet's decisions (`Fleet::pg_work`) are sent on the reporting OSD's own
//!   connection: LeaderBeElected (kind 15) and PgMemberChangeFinish (kind 16), answered `{ok}`
//!   (false: the PG changed under us, tried again on the next look);
//! - **lost connections**: a poll that finds its connection gone connects again to the first
//!   monitor of the list that accepts TCP (a failover moves the leader), and boots again when
//!   the monitor's osdmap no longer has the OSD up.
//!
//! Requests on one connection are pipelined (a poll and PG reports can be in flight together)
//! and their replies matched FIFO ([`conn`]).
//!
//! The PG protocol works from one copy of the pgmaps for the whole fleet ([`PolledMaps`]),
//! the newest version of each pool any OSD's poll brought back, instead of one copy per OSD:
//! every OSD receives the whole cluster's pgmaps, and 10,000 copies would not fit. Each OSD
//! keeps its own versions (what it sends in its polls).

pub mod conn;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use conn::{Conn, ConnError, ConnOptions};

use super::transport::Sent;
use super::{Fleet, FleetSpec, PgWork, SimOsd, fake_address, fake_config, fake_shard};
use crate::client::PoolMap;
use crate::proto::legacy as msg;
use crate::proto::monitor as api;

use msg::request::Union as Req;
use msg::response::Union as Resp;

/// Boot results (`ERRNUM`, §7.2): the id was never applied for.
pub const OSD_ERR_NOT_APPLY: i32 = -156;
/// The OSD is marked up already (a double start, or a restart soon after a crash).
pub const OSD_ERR_ID_CONFLICT: i32 = -157;
/// The address is not an IP literal, or a port is above 65535.
pub const OSD_ERR_ADDRESS_INVALID: i32 = -158;
/// The monitor could not store the change.
pub const OSD_ERR_UPDATE_STATE_FAILED: i32 = -159;
/// The core count differs from the cluster's.
pub const OSD_ERR_CORE_NUM: i32 = -160;

/// The size every C++ OSD boots with (§7.2).
pub const BOOT_SIZE: i64 = 1 << 20;

/// What a Boot result means.
pub fn boot_result_meaning(result: i32) -> &'static str {
    match result {
        OSD_ERR_NOT_APPLY => "OSD_ERR_NOT_APPLY (no such OSD id: apply for one first)",
        OSD_ERR_ID_CONFLICT => "OSD_ERR_ID_CONFLICT (the OSD is marked up already)",
        OSD_ERR_ADDRESS_INVALID => "OSD_ERR_ADDRESS_INVALID (bad address or port)",
        OSD_ERR_UPDATE_STATE_FAILED => {
            "OSD_ERR_UPDATE_STATE_FAILED (the monitor could not store it)"
        }
        OSD_ERR_CORE_NUM => "OSD_ERR_CORE_NUM (core count differs from the cluster's)",
        _ => "unknown error",
    }
}

/// The name of an ApplyID error code.
fn apply_id_code_name(code: i32) -> String {
    match msg::ApplyIdErrorCode::try_from(code) {
        Ok(c) => format!("{} ({code})", c.as_str_name()),
        Err(_) => format!("unknown code {code}"),
    }
}

/// Why a legacy request of the fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The connection failed (see [`ConnError`]).
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// ApplyID answered with an error code.
    #[error("ApplyID of uuid {uuid} refused: {}{}", apply_id_code_name(*.code),
            if *.code == msg::ApplyIdErrorCode::UuidAlreadyExists as i32 {
                " and no id (this protocol does not give the existing id back: use another -prefix)"
            } else { "" })]
    ApplyId { uuid: String, code: i32 },
    /// ApplyID answered OK with an id that is no OSD's (ids start at 1).
    #[error("ApplyID of uuid {uuid} gave the id {id}, which is no OSD's")]
    BadId { uuid: String, id: i32 },
    /// Boot answered with a non-zero result.
    #[error("boot of osd.{osd} refused: result {result} {}", boot_result_meaning(*.result))]
    Boot { osd: u32, result: i32 },
    /// OsdStop answered `ok: false`.
    #[error("OsdStop of osd.{osd} refused")]
    Stop { osd: u32 },
    /// A reply of the right kind number but not the expected message (cannot happen: the
    /// connection checks kinds).
    #[error("unexpected reply of kind {kind}")]
    Unexpected { kind: u32 },
}

/// Checks a reply's kind (the connection already matched it to the request's).
fn unexpected(r: &Resp) -> LegacyError {
    LegacyError::Unexpected {
        kind: conn::response_kind(r),
    }
}

/// An OSD id or a pool/PG number as the wire's `int32`.
fn wire_id(id: u32) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

fn wire_ids(ids: &[u32]) -> Vec<i32> {
    ids.iter().copied().map(wire_id).collect()
}

/// Ids from the wire; negative ones (never valid) are dropped.
fn ids_from_wire(ids: &[i32]) -> Vec<u32> {
    ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect()
}

/// The Boot request of a fake OSD, as the C++ OSD fills it: size 1 MiB, one shard per core
/// (shard → {core id, RDMA port, raw port}).
pub fn boot_request(spec: &FleetSpec, osd: &SimOsd) -> msg::BootRequest {
    msg::BootRequest {
        osd_id: wire_id(osd.id),
        uuid: osd.uuid.clone(),
        size: BOOT_SIZE,
        sharded_ports: (0..spec.cores)
            .map(|i| {
                let (coreid, port, raw_port) = fake_shard(i);
                (
                    i,
                    msg::ShardCore {
                        coreid,
                        port,
                        raw_port,
                    },
                )
            })
            .collect(),
        address: fake_address(osd.id),
        host: osd.host.clone(),
        core_num: spec.cores,
        config: fake_config(osd),
    }
}

/// What one OSD holds of the maps, as the C++ client keeps it: the osdmap version, and each
/// known pool with its pgmap version (sent in every poll).
#[derive(Debug, Default, Clone)]
struct LocalMaps {
    osdmap_version: Option<i64>,
    pools: BTreeMap<i32, i64>,
}

/// One OSD's connection and what it knows.
struct Link {
    osd: u32,
    conn: Mutex<Option<Arc<Conn>>>,
    local: Mutex<LocalMaps>,
}

impl Link {
    /// The connection, unless there is none or it has ended.
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn
            .lock()
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Closes the connection now (the OSD was killed or the fleet stops).
    fn close(&self) {
        if let Some(c) = self.conn.lock().take() {
            c.close();
        }
    }

    /// A new connection, to the first monitor that accepts one, in place of the old.
    async fn connect(
        &self,
        monitors: &[String],
        options: ConnOptions,
    ) -> Result<Arc<Conn>, ConnError> {
        let conn = Arc::new(Conn::connect(monitors, options).await?);
        if let Some(old) = self.conn.lock().replace(conn.clone()) {
            old.close();
        }
        Ok(conn)
    }

    /// The C++ client's poll: its own id, `currentversion = −1` (the whole osdmap every time),
    /// and every pool it knows with its version.
    fn poll_request(&self) -> msg::GetClusterMapRequest {
        let local = self.local.lock();
        msg::GetClusterMapRequest {
            gom_request: Some(msg::GetOsdMapRequest {
                osdid: wire_id(self.osd),
                currentversion: -1,
            }),
            gpm_request: Some(msg::GetPgMapRequest {
                pool_versions: local.pools.iter().map(|(p, v)| (*p, *v)).collect(),
            }),
        }
    }
}

/// The fleet's one copy of the pgmaps: the newest version of each pool any OSD's poll brought
/// back, in the form the fleet's decisions read ([`PoolMap`]).
pub struct PolledMaps {
    state: Mutex<Polled>,
    changed: Notify,
}

#[derive(Default)]
struct Polled {
    pools: BTreeMap<u32, PoolMap>,
    /// Pools an OSD saw deleted: a reply that left before the deletion cannot bring them back.
    deleted: HashSet<u32>,
    /// The leader this fleet last reported for each (pool, PG): the legacy maps carry none.
    leaders: HashMap<(u32, u32), u32>,
}

impl PolledMaps {
    fn new() -> PolledMaps {
        PolledMaps {
            state: Mutex::new(Polled::default()),
            changed: Notify::new(),
        }
    }

    /// Waits until a poll brought a newer pgmap or a deletion.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Runs `f` on the pools as they are now (under the lock: `f` must not block).
    pub(crate) fn with_pools<T>(&self, f: impl FnOnce(&BTreeMap<u32, PoolMap>) -> T) -> T {
        f(&self.state.lock().pools)
    }

    /// The pools' ids and versions, for tests.
    pub fn versions(&self) -> BTreeMap<u32, u64> {
        let st = self.state.lock();
        st.pools.iter().map(|(id, p)| (*id, p.epoch)).collect()
    }

    /// Takes pool `pool` at `version` unless a newer or equal one is held or it was deleted.
    fn offer(&self, pool: u32, version: i64, name: Option<&String>, pgs: Option<&msg::PgInfos>) {
        let version = u64::try_from(version).unwrap_or(0);
        {
            let mut st = self.state.lock();
            if st.deleted.contains(&pool) || st.pools.get(&pool).is_some_and(|p| p.epoch >= version)
            {
                return;
            }
            let pgs: BTreeMap<u32, api::PgInfo> = pgs
                .map(|p| p.pi.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|pi| {
                    let id = u32::try_from(pi.pgid).ok()?;
                    Some((
                        id,
                        api::PgInfo {
                            id,
                            members: ids_from_wire(&pi.osdid),
                            new_members: ids_from_wire(&pi.newosdid),
                            core: pi.coreindex,
                            new_core: pi.newcoreindex,
                            state: u32::try_from(pi.state).unwrap_or(0),
                            version: u64::try_from(pi.version).unwrap_or(0),
                            leader: st.leaders.get(&(pool, id)).copied().unwrap_or(0),
                            change_failures: 0,
                        },
                    ))
                })
                .collect();
            let info = api::PoolInfo {
                id: pool,
                name: name.cloned().unwrap_or_default(),
                pg_count: u32::try_from(pgs.len()).unwrap_or(u32::MAX),
                epoch: version,
                ..api::PoolInfo::default()
            };
            st.pools.insert(
                pool,
                PoolMap {
                    info,
                    epoch: version,
                    pgs,
                },
            );
        }
        self.changed.notify_one();
    }

    /// Pool `pool` is gone.
    fn delete(&self, pool: u32) {
        {
            let mut st = self.state.lock();
            st.deleted.insert(pool);
            st.pools.remove(&pool);
            st.leaders.retain(|(p, _), _| *p != pool);
        }
        self.changed.notify_one();
    }

    /// `leader` reported itself leader of the PG (or finished its change) and the monitor
    /// took it.
    fn note_leader(&self, pool: u32, pg: u32, leader: u32) {
        let mut st = self.state.lock();
        st.leaders.insert((pool, pg), leader);
        if let Some(p) = st.pools.get_mut(&pool).and_then(|p| p.pgs.get_mut(&pg)) {
            p.leader = leader;
        }
    }
}

/// The fleet's side of the legacy protocol.
pub struct Legacy {
    monitors: Vec<String>,
    options: ConnOptions,
    /// The deploy step's connection (ApplyID), while the fleet boots.
    admin: tokio::sync::Mutex<Option<Arc<Conn>>>,
    links: Mutex<HashMap<u32, Arc<Link>>>,
    maps: PolledMaps,
}

impl Legacy {
    pub(super) fn new(monitors: &[String], options: ConnOptions) -> Legacy {
        Legacy {
            monitors: monitors.to_vec(),
            options,
            admin: tokio::sync::Mutex::new(None),
            links: Mutex::new(HashMap::new()),
            maps: PolledMaps::new(),
        }
    }

    /// The fleet's copy of the pgmaps.
    pub fn maps(&self) -> &PolledMaps {
        &self.maps
    }

    fn link(&self, osd: u32) -> Arc<Link> {
        self.links
            .lock()
            .entry(osd)
            .or_insert_with(|| {
                Arc::new(Link {
                    osd,
                    conn: Mutex::new(None),
                    local: Mutex::new(LocalMaps::default()),
                })
            })
            .clone()
    }

    /// The deploy step's connection, made on first use.
    async fn admin(&self) -> Result<Arc<Conn>, ConnError> {
        let mut admin = self.admin.lock().await;
        if let Some(c) = admin.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Conn::connect(&self.monitors, self.options).await?);
        *admin = Some(c.clone());
        Ok(c)
    }

    /// ApplyID (kind 6) for `uuid`. A monitor that answers `UuidAlreadyExists` with the
    /// existing id (the Go monitor answers −1) gets that id used.
    pub(super) async fn apply_id(&self, uuid: &str) -> Result<u32, LegacyError> {
        let conn = self.admin().await?;
        let request = Req::ApplyIdRequest(msg::ApplyIdRequest {
            uuid: uuid.to_string(),
        });
        let r = match conn.call(request).await? {
            Resp::ApplyIdResponse(r) => r,
            other => return Err(unexpected(&other)),
        };
        let ok = r.errorcode == msg::ApplyIdErrorCode::ApplyIdOk as i32;
        let exists = r.errorcode == msg::ApplyIdErrorCode::UuidAlreadyExists as i32;
        match u32::try_from(r.id) {
            Ok(id) if id > 0 && (ok || exists) => Ok(id),
            _ if ok => Err(LegacyError::BadId {
                uuid: uuid.to_string(),
                id: r.id,
            }),
            _ => Err(LegacyError::ApplyId {
                uuid: uuid.to_string(),
                code: r.errorcode,
            }),
        }
    }

    /// The first boot of `osd`, on a connection of its own.
    pub(super) async fn boot(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), LegacyError> {
        let conn = self
            .link(osd.id)
            .connect(&self.monitors, self.options)
            .await?;
        boot_over(&conn, spec, osd).await
    }

    /// Every OSD has its id: the deploy step's connection goes.
    pub(super) async fn booted(&self) {
        if let Some(c) = self.admin.lock().await.take() {
            c.close();
        }
    }

    /// Boots a killed OSD again on a new connection. A crash leaves it marked up (result
    /// −157): that run is stopped first (OsdStop, kind 2).
    pub(super) async fn restart(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), LegacyError> {
        let conn = self
            .link(osd.id)
            .connect(&self.monitors, self.options)
            .await?;
        match boot_over(&conn, spec, osd).await {
            Err(LegacyError::Boot {
                result: OSD_ERR_ID_CONFLICT,
                ..
            }) => {
                stop_over(&conn, osd.id).await?;
                boot_over(&conn, spec, osd).await
            }
            other => other,
        }
    }

    /// OSD `id` was killed: its connection closes, as a crashed process's would.
    pub(super) fn silence(&self, id: u32) {
        if let Some(link) = self.links.lock().get(&id) {
            link.close();
        }
    }

    /// Sends one piece of PG work on the reporting OSD's connection.
    pub(super) async fn send(&self, w: &PgWork) -> Result<Sent, LegacyError> {
        let (pool, pg, reporter, request) = match w {
            PgWork::Leader {
                pool,
                pg,
                leader,
                members,
                ..
            } => (
                *pool,
                *pg,
                *leader,
                Req::LeaderBeElectedRequest(msg::LeaderBeElectedRequest {
                    leader_id: wire_id(*leader),
                    pool_id: u64::from(*pool),
                    pg_id: u64::from(*pg),
                    osd_list: wire_ids(members),
                    new_osd_list: Vec::new(),
                }),
            ),
            PgWork::Finish {
                pool,
                pg,
                reporter,
                members,
            } => (
                *pool,
                *pg,
                *reporter,
                Req::PgMemberChangeFinishRequest(msg::PgMemberChangeFinishRequest {
                    result: 0,
                    pool_id: u64::from(*pool),
                    pg_id: u64::from(*pg),
                    osd_list: wire_ids(members),
                }),
            ),
        };
        let conn = self.links.lock().get(&reporter).and_then(|l| l.current());
        let Some(conn) = conn else {
            return Ok(Sent::Skipped);
        };
        let reply = match conn.call(request).await {
            Ok(r) => r,
            // The reporter was killed while its report was on the way: nothing to count.
            Err(ConnError::Shut { .. }) => return Ok(Sent::Skipped),
            Err(e) => return Err(e.into()),
        };
        let ok = match reply {
            Resp::LeaderBeElectedResponse(r) => r.ok,
            Resp::PgMemberChangeFinishResponse(r) => r.ok,
            other => return Err(unexpected(&other)),
        };
        if !ok {
            return Ok(Sent::Skipped);
        }
        // After a finished change the reporter leads the new group, as with gRPC.
        self.maps.note_leader(pool, pg, reporter);
        Ok(Sent::Done)
    }

    /// Takes in one poll's reply as OSD `link.osd`; returns whether the reply's osdmap has
    /// that OSD up (None when it says nothing usable about it).
    fn absorb(
        &self,
        fleet: &Fleet,
        link: &Link,
        reply: &msg::GetClusterMapResponse,
    ) -> Option<bool> {
        let mut local = link.local.lock();
        let mut self_up = None;
        if let Some(gom) = &reply.gom_response
            && gom.errorcode == msg::OsdMapErrorCode::Ok as i32
        {
            match local.osdmap_version {
                Some(held) if gom.osdmapversion < held => {
                    fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        osd = link.osd,
                        held,
                        got = gom.osdmapversion,
                        "osdmap version lower than the one held; reply's osdmap ignored"
                    );
                }
                _ => {
                    local.osdmap_version = Some(gom.osdmapversion);
                    let me = wire_id(link.osd);
                    self_up = Some(gom.osds.iter().any(|o| o.osdid == me && o.isup));
                }
            }
        }
        // No pgmap reply at all is how the Go monitor says "no pools".
        let empty = msg::GetPgMapResponse::default();
        let gpm = reply.gpm_response.as_ref().unwrap_or(&empty);
        let gone: Vec<i32> = local
            .pools
            .keys()
            .filter(|p| !gpm.errorcode.contains_key(p))
            .copied()
            .collect();
        for pool in gone {
            local.pools.remove(&pool);
            if let Ok(id) = u32::try_from(pool) {
                self.maps.delete(id);
            }
            tracing::debug!(osd = link.osd, pool, "pool deleted");
        }
        for (&pool, &code) in &gpm.errorcode {
            let Ok(id) = u32::try_from(pool) else {
                continue;
            };
            match msg::GetPgMapErrorCode::try_from(code) {
                Ok(msg::GetPgMapErrorCode::PgMapGetOk) => {
                    let version = gpm.poolid_pgmapversion.get(&pool).copied().unwrap_or(0);
                    local.pools.insert(pool, version);
                    self.maps
                        .offer(id, version, gpm.pools.get(&pool), gpm.pgs.get(&pool));
                }
                Ok(msg::GetPgMapErrorCode::PgMapSameVersion) => {}
                Ok(msg::GetPgMapErrorCode::PgMapclientVersionHigher) => {
                    fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        osd = link.osd,
                        pool,
                        "pgmap version held is above the monitor's; asking for the whole pool"
                    );
                    local.pools.insert(pool, 0);
                }
                Ok(msg::GetPgMapErrorCode::PgMapclusterNoPools) | Err(_) => {}
            }
        }
        self_up
    }

    /// What a poll left the OSD with, as a heartbeat record.
    fn held(link: &Link) -> api::HeartbeatResponse {
        let local = link.local.lock();
        api::HeartbeatResponse {
            osdmap_epoch: local
                .osdmap_version
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
            pool_epochs: local
                .pools
                .iter()
                .filter_map(|(p, v)| Some((u32::try_from(*p).ok()?, u64::try_from(*v).ok()?)))
                .collect(),
            leader_epoch: 0,
        }
    }

    /// Closes every OSD's connection (the fleet stopped: the processes exit).
    pub(super) fn close_all(&self) {
        for link in self.links.lock().values() {
            link.close();
        }
    }
}

/// Boot (kind 1) of `osd` on `conn`.
async fn boot_over(conn: &Conn, spec: &FleetSpec, osd: &SimOsd) -> Result<(), LegacyError> {
    match conn.call(Req::BootRequest(boot_request(spec, osd))).await? {
        Resp::BootResponse(r) if r.result == 0 => Ok(()),
        Resp::BootResponse(r) => Err(LegacyError::Boot {
            osd: osd.id,
            result: r.result,
        }),
        other => Err(unexpected(&other)),
    }
}

/// OsdStop (kind 2) of `osd` on `conn`.
async fn stop_over(conn: &Conn, osd: u32) -> Result<(), LegacyError> {
    match conn
        .call(Req::OsdStopRequest(msg::OsdStopRequest {
            id: wire_id(osd),
        }))
        .await?
    {
        Resp::OsdStopResponse(r) if r.ok => Ok(()),
        Resp::OsdStopResponse(_) => Err(LegacyError::Stop { osd }),
        other => Err(unexpected(&other)),
    }
}

/// Where in the interval OSD `id` polls: spread over the interval so that a large fleet does
/// not poll all at once.
fn poll_offset(id: u32, every: Duration) -> Duration {
    let golden = (f64::from(id) * 0.618_033_988_75).fract();
    every.mul_f64(golden)
}

/// Every OSD of the fleet polls (its heartbeat) until `stop`.
pub(super) async fn polls(fleet: Arc<Fleet>, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for osd in &fleet.osds {
        tasks.spawn(poll_loop(fleet.clone(), osd.clone(), stop.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// One OSD's polls: one GetClusterMap per interval while it is alive.
async fn poll_loop(fleet: Arc<Fleet>, osd: Arc<SimOsd>, stop: CancellationToken) {
    let super::transport::Transport::Legacy(legacy) = &fleet.transport else {
        return;
    };
    let link = legacy.link(osd.id);
    let every = fleet.spec.heartbeat_every;
    let start = tokio::time::Instant::now() + poll_offset(osd.id, every);
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if osd.alive() {
            poll_once(&fleet, legacy, &link, &osd).await;
        }
    }
}

/// One poll: on the OSD's connection (made again if it was lost), then what the reply says
/// is taken in, and the OSD boots again if the monitor no longer has it up.
async fn poll_once(fleet: &Fleet, legacy: &Legacy, link: &Link, osd: &SimOsd) {
    let stats = &fleet.stats;
    let boot_instance = osd.instance();
    let sent = Instant::now();
    let conn = match link.current() {
        Some(c) => c,
        None => match link.connect(&legacy.monitors, legacy.options).await {
            Ok(c) if !osd.alive() => {
                // Killed while connecting: a dead OSD does not poll.
                c.close();
                return;
            }
            Ok(c) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(osd = osd.id, monitor = c.peer(), "connected again");
                c
            }
            Err(e) => {
                stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(osd = osd.id, error = %e, "cannot reach a monitor");
                fleet.record_heartbeat(osd, boot_instance, sent, Err(e.to_string()));
                return;
            }
        },
    };
    let reply = match conn
        .call(Req::GetClusterMapRequest(link.poll_request()))
        .await
    {
        Ok(Resp::GetClusterMapResponse(r)) => r,
        Ok(other) => {
            let e = unexpected(&other);
            stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
            fleet.record_heartbeat(osd, boot_instance, sent, Err(e.to_string()));
            return;
        }
        // Killed while its poll was on the way.
        Err(ConnError::Shut { .. }) if !osd.alive() => return,
        Err(e) => {
            // The connection is gone with the error; the next poll connects again.
            stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(osd = osd.id, error = %e, "poll failed");
            fleet.record_heartbeat(osd, boot_instance, sent, Err(e.to_string()));
            return;
        }
    };
    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
    let self_up = legacy.absorb(fleet, link, &reply);
    fleet.record_heartbeat(osd, boot_instance, sent, Ok(Legacy::held(link)));
    if self_up == Some(false) && osd.alive() {
        match boot_over(&conn, &fleet.spec, osd).await {
            Ok(()) => {
                stats.reboots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(osd = osd.id, "the monitor had the OSD down: booted again");
            }
            // Up after all (the poll itself revived it, as the Go monitor does).
            Err(LegacyError::Boot {
                result: OSD_ERR_ID_CONFLICT,
                ..
            }) => {}
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(osd = osd.id, error = %e, "boot again failed");
            }
        }
    }
}
