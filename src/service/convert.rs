//! Domain types → API messages.

use crate::cluster::{ClusterState, Flags, Image, Liveness, Osd, Pg, Pool};
use crate::proto::monitor as api;

pub fn osd_info(o: &Osd) -> api::OsdInfo {
    api::OsdInfo {
        id: o.id.0,
        uuid: o.uuid.hyphenated().to_string(),
        address: o.address.map(|a| a.to_string()).unwrap_or_default(),
        host: o.location.host.clone(),
        rack: o.location.rack.clone().unwrap_or_default(),
        root: o.location.root.clone(),
        weight: o.weight.as_f64(),
        up: o.is_up(),
        r#in: o.is_in(),
        pending: matches!(o.liveness, Liveness::New),
        size: o.size,
        core_num: o.core_num,
        shards: o
            .shards
            .iter()
            .map(|s| api::ShardPort {
                core_id: s.core_id,
                port: u32::from(s.port),
                raw_port: u32::from(s.raw_port),
            })
            .collect(),
        last_change: o.last_change.0,
        boot_instance: o.boot_instance().map_or(0, |i| i.0),
    }
}

pub fn flags(f: Flags) -> Vec<i32> {
    f.iter().map(|f| f as i32).collect()
}

pub fn osdmap(s: &ClusterState) -> api::OsdMap {
    api::OsdMap {
        epoch: s.osdmap_epoch().0,
        osds: s.osds().map(|o| osd_info(o)).collect(),
        flags: flags(s.flags()),
        core_num: s.core_num().unwrap_or(0),
    }
}

pub fn pool_info(p: &Pool) -> api::PoolInfo {
    api::PoolInfo {
        id: p.id.0,
        name: p.name.clone(),
        pg_size: p.size,
        pg_count: p.pg_count,
        failure_domain: p.failure_domain.to_i32(),
        root: p.root.clone(),
        epoch: p.epoch.0,
    }
}

pub fn pg_info(id: u32, pg: &Pg) -> api::PgInfo {
    api::PgInfo {
        id,
        members: pg.members.iter().map(|m| m.0).collect(),
        new_members: pg
            .target
            .as_ref()
            .map(|t| t.members.iter().map(|m| m.0).collect())
            .unwrap_or_default(),
        core: pg.core,
        new_core: pg.target.as_ref().map_or(pg.core, |t| t.core),
        state: pg.state.0,
        version: pg.version.0,
        leader: pg.leader.map_or(0, |l| l.0),
        change_failures: pg.change_failures,
    }
}

/// A pool's full pgmap.
pub fn pool_pgmap(p: &Pool) -> api::PoolPgMap {
    api::PoolPgMap {
        pool_id: p.id.0,
        status: api::MapStatus::Full as i32,
        epoch: p.epoch.0,
        pool: Some(pool_info(p)),
        pgs: p.pgs.iter().map(|(id, pg)| pg_info(id.0, pg)).collect(),
    }
}

pub fn image_info(i: &Image, pool_name: &str) -> api::ImageInfo {
    api::ImageInfo {
        id: i.id.0,
        pool_id: i.pool.0,
        pool_name: pool_name.to_string(),
        name: i.name.clone(),
        size: i.size,
        object_size: i.object_size,
    }
}
