//! Following the cluster maps through WatchClusterMap: a local copy of the osdmap and pgmaps,
//! kept current by the monitor's updates, resumed on the new leader from the epochs held when
//! the stream ends (leader change, network error). A delta that does not start at the epoch
//! held would leave a gap, so it makes the watcher start over from a full map instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::Streaming;

use super::{ClientError, MonitorClient};
use crate::proto::monitor as api;
use crate::proto::wire::watch_cluster_map_response_fields::Update;
use crate::service::reasons;
use crate::wire::WatchClusterMapResponse;

/// One pool as a watcher holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolMap {
    pub info: api::PoolInfo,
    pub epoch: u64,
    /// PG id → PG.
    pub pgs: BTreeMap<u32, api::PgInfo>,
}

/// The maps as a watcher holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterMaps {
    /// None until the first osdmap update.
    pub osdmap_epoch: Option<u64>,
    pub osds: BTreeMap<u32, api::OsdInfo>,
    pub flags: Vec<i32>,
    pub core_num: u32,
    pub pools: BTreeMap<u32, PoolMap>,
}

/// What changed, as the watcher reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum MapEvent {
    /// The osdmap moved to `epoch`; `changed` and `removed` list the OSDs (all of them when
    /// `full`).
    Osdmap {
        epoch: u64,
        from_epoch: u64,
        full: bool,
        changed: Vec<u32>,
        removed: Vec<u32>,
    },
    /// A pool's pgmap moved to `epoch` (a new pool arrives `full`).
    Pgmap {
        pool: u32,
        epoch: u64,
        from_epoch: u64,
        full: bool,
        changed: Vec<u32>,
    },
    /// A pool was deleted.
    PoolDeleted { pool: u32, epoch: u64 },
    /// Nothing changed for a while; the epochs held are current.
    Progress,
    /// The stream was (re)opened on this monitor, which leads with this leader epoch.
    Connected { monitor: String },
}

/// Which maps to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Osdmap,
    Pgmaps,
}

impl Scope {
    fn api(self) -> api::WatchScope {
        match self {
            Scope::All => api::WatchScope::All,
            Scope::Osdmap => api::WatchScope::Osdmap,
            Scope::Pgmaps => api::WatchScope::Pgmaps,
        }
    }
}

/// Follows the maps.
pub struct MapWatcher {
    client: Arc<MonitorClient>,
    scope: Scope,
    maps: ClusterMaps,
    stream: Option<Streaming<WatchClusterMapResponse>>,
    backoff: Backoff,
}

impl MapWatcher {
    /// A watcher starting with no maps (the first updates are full maps).
    pub fn new(client: Arc<MonitorClient>, scope: Scope) -> MapWatcher {
        MapWatcher {
            client,
            scope,
            maps: ClusterMaps::default(),
            stream: None,
            backoff: Backoff::default(),
        }
    }

    /// The maps as of the last event.
    pub fn maps(&self) -> &ClusterMaps {
        &self.maps
    }

    /// The next change. Reconnects (following the leader, with back-off) as long as it takes;
    /// fails only on answers that retrying cannot fix.
    pub async fn next(&mut self) -> Result<MapEvent, ClientError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(monitor) => return Ok(MapEvent::Connected { monitor }),
                    Err(e) if retryable(&e) => {
                        self.pause().await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            match stream.message().await {
                Ok(Some(msg)) => {
                    self.backoff = Backoff::default();
                    if let Some(event) = self.apply(msg.into_fields()) {
                        return Ok(event);
                    }
                }
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let e = ClientError::Status(status);
                    if e.reason().as_deref() == Some(reasons::CLIENT_AHEAD) {
                        // This leader is behind what we hold: start over from full maps.
                        self.maps = ClusterMaps::default();
                    } else if !retryable(&e) {
                        return Err(e);
                    }
                    self.pause().await;
                }
            }
        }
    }

    async fn pause(&mut self) {
        self.backoff.pause().await;
    }

    /// Opens the stream on the leader from the epochs held; returns the monitor it is on.
    async fn open(&mut self) -> Result<String, ClientError> {
        let request = api::WatchClusterMapRequest {
            osdmap_epoch: self.maps.osdmap_epoch.unwrap_or(0),
            pool_epochs: self
                .maps
                .pools
                .iter()
                .map(|(id, p)| (*id, p.epoch))
                .collect(),
            scope: self.scope.api() as i32,
        };
        let (stream, monitor) = self
            .client
            .call_leader_at(move |mut c| {
                let request = request.clone();
                async move { c.watch_cluster_map(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        self.stream = Some(stream);
        Ok(monitor)
    }

    /// Applies one update; None when it changed nothing to report (or forced a resync).
    fn apply(
        &mut self,
        msg: crate::proto::wire::WatchClusterMapResponseFields,
    ) -> Option<MapEvent> {
        match msg.update? {
            Update::Progress(_) => Some(MapEvent::Progress),
            Update::Osdmap(u) => {
                if !u.full && self.maps.osdmap_epoch != Some(u.from_epoch) {
                    return self.resync();
                }
                if u.full {
                    self.maps.osds.clear();
                }
                for id in &u.removed {
                    self.maps.osds.remove(id);
                }
                let changed: Vec<u32> = u.osds.iter().map(|o| o.id).collect();
                for o in u.osds {
                    self.maps.osds.insert(o.id, o);
                }
                self.maps.osdmap_epoch = Some(u.epoch);
                self.maps.flags = u.flags;
                self.maps.core_num = u.core_num;
                Some(MapEvent::Osdmap {
                    epoch: u.epoch,
                    from_epoch: u.from_epoch,
                    full: u.full,
                    changed,
                    removed: u.removed,
                })
            }
            Update::Pgmap(u) => {
                if u.deleted {
                    self.maps.pools.remove(&u.pool_id);
                    return Some(MapEvent::PoolDeleted {
                        pool: u.pool_id,
                        epoch: u.epoch,
                    });
                }
                let held = self.maps.pools.get(&u.pool_id).map(|p| p.epoch);
                if !u.full && held != Some(u.from_epoch) {
                    return self.resync();
                }
                let pool = self.maps.pools.entry(u.pool_id).or_default();
                if u.full {
                    pool.pgs.clear();
                }
                let changed: Vec<u32> = u.pgs.iter().map(|p| p.id).collect();
                for pg in u.pgs {
                    pool.pgs.insert(pg.id, pg);
                }
                pool.epoch = u.epoch;
                if let Some(info) = u.pool {
                    pool.info = info;
                }
                Some(MapEvent::Pgmap {
                    pool: u.pool_id,
                    epoch: u.epoch,
                    from_epoch: u.from_epoch,
                    full: u.full,
                    changed,
                })
            }
        }
    }

    /// An update that does not fit what we hold: drop everything and watch again from scratch.
    fn resync(&mut self) -> Option<MapEvent> {
        tracing::warn!("map update does not follow the epochs held; starting over from full maps");
        self.maps = ClusterMaps::default();
        self.stream = None;
        None
    }
}

/// Errors worth another attempt: the monitor is unreachable, is not the leader, or the leader
/// just changed.
/// The pause before a watch stream is opened again: from 50 ms, doubling to 1 s; back to the
/// start once a message arrives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(50))
    }
}

impl Backoff {
    pub(super) async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
    }
}

pub(super) fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Deadline { .. } => true,
        ClientError::Status(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Internal
        ),
        _ => false,
    }
}
