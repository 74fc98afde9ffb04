//! Map calls: GetOsdMap, GetPgMap, GetClusterMap, GetPgOsdInfo, ListPools.
//!
//! Maps are served from the committed snapshot. The osdmap and each pool's pgmap are converted
//! to API messages once per epoch and cached, so a thousand clients fetching the same epoch cost
//! one conversion.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use tonic::Status;

use super::convert;
use super::{MonitorService, requests};
use crate::cluster::{ClusterState, Epoch, PoolId};
use crate::proto::monitor as api;
use crate::proto::wire::PoolPgMapFields;
use crate::wire::{OsdMap, PoolPgMap};

/// Maps encoded once per epoch (cloning one shares its bytes).
#[derive(Default)]
pub(super) struct MapCache {
    osdmap: Mutex<Option<(Epoch, OsdMap)>>,
    pools: Mutex<HashMap<PoolId, (Epoch, PoolPgMap)>>,
}

impl MapCache {
    fn osdmap(&self, s: &ClusterState) -> OsdMap {
        let epoch = s.osdmap_epoch();
        if let Some((e, m)) = &*self.osdmap.lock()
            && *e == epoch
        {
            return m.clone();
        }
        // Built and encoded outside the lock; a concurrent miss just does it twice.
        let m = OsdMap::encode(&convert::osdmap(s));
        *self.osdmap.lock() = Some((epoch, m.clone()));
        m
    }

    fn pool(&self, s: &ClusterState, id: PoolId) -> Option<PoolPgMap> {
        let pool = s.pool(id)?;
        if let Some((e, m)) = self.pools.lock().get(&id)
            && *e == pool.epoch
        {
            return Some(m.clone());
        }
        let m = PoolPgMap::encode(&convert::pool_pgmap(pool));
        let mut cache = self.pools.lock();
        cache.retain(|p, _| s.pool(*p).is_some());
        cache.insert(id, (pool.epoch, m.clone()));
        Some(m)
    }

    /// The GetOsdMap reply for a client at `r.epoch`.
    pub(super) fn osdmap_reply(
        &self,
        s: &ClusterState,
        r: &api::GetOsdMapRequest,
        leader: u64,
    ) -> api::GetOsdMapResponse {
        let status = compare(r.epoch, s.osdmap_epoch());
        api::GetOsdMapResponse {
            status: status as i32,
            epoch: s.osdmap_epoch().0,
            osdmap: (status == api::MapStatus::Full).then(|| self.osdmap(s)),
            leader_epoch: leader,
        }
    }

    /// The GetPgMap reply for a client at `r.pool_epochs`.
    pub(super) fn pgmap_reply(
        &self,
        s: &ClusterState,
        r: &api::GetPgMapRequest,
        leader: u64,
    ) -> api::GetPgMapResponse {
        let mut out: BTreeMap<u32, PoolPgMap> = BTreeMap::new();
        for (&id, &client) in &r.pool_epochs {
            let pool = PoolId(id);
            let entry = match s.pool(pool) {
                Some(p) => {
                    let status = compare(client, p.epoch);
                    if status == api::MapStatus::Full {
                        self.pool(s, pool)
                    } else {
                        Some(bare(id, status, p.epoch.0))
                    }
                }
                None => Some(match s.tombstone(pool) {
                    Some(t) => bare(id, api::MapStatus::Deleted, t.deleted_epoch.0),
                    // Ids are never reused: an id below the counter was a pool once.
                    None if id > 0 && id < s.counters().next_pool_id => {
                        bare(id, api::MapStatus::Deleted, 0)
                    }
                    // A pool this leader never had: the client may have talked to a newer one.
                    None => bare(id, api::MapStatus::ClientAhead, 0),
                }),
            };
            if let Some(e) = entry {
                out.insert(id, e);
            }
        }
        // Every pool the client did not ask about, in full: new pools are always visible.
        for p in s.pools() {
            if !r.pool_epochs.contains_key(&p.id.0)
                && let Some(m) = self.pool(s, p.id)
            {
                out.insert(p.id.0, m);
            }
        }
        api::GetPgMapResponse {
            pools: out.into_values().collect(),
            leader_epoch: leader,
        }
    }
}

/// How a client's epoch relates to the current one.
fn compare(client: u64, current: Epoch) -> api::MapStatus {
    if client == 0 || client < current.0 {
        api::MapStatus::Full
    } else if client == current.0 {
        api::MapStatus::Unchanged
    } else {
        api::MapStatus::ClientAhead
    }
}

impl MonitorService {
    pub(super) async fn get_osd_map(
        &self,
        r: api::GetOsdMapRequest,
    ) -> Result<api::GetOsdMapResponse, Status> {
        let serving = self.leader()?;
        Ok(self
            .maps
            .osdmap_reply(&serving.snapshot(), &r, serving.term.epoch.0))
    }

    pub(super) async fn get_pg_map(
        &self,
        r: api::GetPgMapRequest,
    ) -> Result<api::GetPgMapResponse, Status> {
        let serving = self.leader()?;
        Ok(self
            .maps
            .pgmap_reply(&serving.snapshot(), &r, serving.term.epoch.0))
    }

    pub(super) async fn get_cluster_map(
        &self,
        r: api::GetClusterMapRequest,
    ) -> Result<api::GetClusterMapResponse, Status> {
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let leader = serving.term.epoch.0;
        Ok(api::GetClusterMapResponse {
            osdmap: Some(
                self.maps
                    .osdmap_reply(&snap, &r.osdmap.unwrap_or_default(), leader),
            ),
            pgmap: Some(
                self.maps
                    .pgmap_reply(&snap, &r.pgmap.unwrap_or_default(), leader),
            ),
            leader_epoch: leader,
        })
    }

    pub(super) async fn get_pg_osd_info(
        &self,
        r: api::GetPgOsdInfoRequest,
    ) -> Result<api::GetPgOsdInfoResponse, Status> {
        let serving = self.leader()?;
        Ok(api::GetPgOsdInfoResponse {
            pools: requests::pg_osd_info(&serving.snapshot(), &r)?,
            leader_epoch: serving.term.epoch.0,
        })
    }

    pub(super) async fn list_pools(
        &self,
        _r: api::ListPoolsRequest,
    ) -> Result<api::ListPoolsResponse, Status> {
        let serving = self.leader()?;
        Ok(api::ListPoolsResponse {
            pools: serving
                .snapshot()
                .pools()
                .map(|p| convert::pool_info(p))
                .collect(),
            leader_epoch: serving.term.epoch.0,
        })
    }
}

/// A pgmap entry without a body.
fn bare(id: u32, status: api::MapStatus, epoch: u64) -> PoolPgMap {
    PoolPgMapFields {
        pool_id: id,
        status: status as i32,
        epoch,
        pool: None,
        pgs: Vec::new(),
    }
    .into()
}
