//! Domain types → API messages.

use crate::cluster::{ClusterState, Flags, Health, Image, Liveness, Osd, Pg, Pool, Shard};
use crate::proto::monitor as api;
use crate::proto::wire::{OsdMapFields, PoolPgMapFields};

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
        shards: Some(shard_table(&o.shards)),
        last_change: o.last_change.0,
        boot_instance: o.boot_instance().map_or(0, |i| i.0),
    }
}

/// The compact form when the shards are contiguous, else explicit arrays.
pub fn shard_table(shards: &[Shard]) -> api::ShardTable {
    let count = shards.len() as u32;
    let Some(first) = shards.first() else {
        return api::ShardTable::default();
    };
    let contiguous = shards.iter().enumerate().all(|(i, s)| {
        let i = i as u32;
        s.core_id == first.core_id + i
            && u32::from(s.port) == u32::from(first.port) + i
            && u32::from(s.raw_port) == u32::from(first.raw_port) + i
    });
    if contiguous {
        api::ShardTable {
            count,
            first_core_id: first.core_id,
            first_port: u32::from(first.port),
            first_raw_port: u32::from(first.raw_port),
            ..Default::default()
        }
    } else {
        api::ShardTable {
            core_ids: shards.iter().map(|s| s.core_id).collect(),
            ports: shards.iter().map(|s| u32::from(s.port)).collect(),
            raw_ports: shards.iter().map(|s| u32::from(s.raw_port)).collect(),
            count,
            ..Default::default()
        }
    }
}

/// Every mute of the stored health.
pub fn health_mutes(h: &Health) -> api::HealthMutesResponse {
    api::HealthMutesResponse {
        mutes: h
            .mutes
            .iter()
            .map(|(code, m)| api::HealthMute {
                code: code.clone(),
                until_ms: m.until_ms.unwrap_or(0),
                sticky: m.sticky,
                since_ms: m.since_ms,
            })
            .collect(),
    }
}

pub fn flags(f: Flags) -> Vec<i32> {
    f.iter().map(|f| f as i32).collect()
}

pub fn osdmap(s: &ClusterState) -> OsdMapFields {
    OsdMapFields {
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
pub fn pool_pgmap(p: &Pool) -> PoolPgMapFields {
    PoolPgMapFields {
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

pub fn event(e: &crate::cluster::Event) -> api::Event {
    api::Event {
        id: e.id,
        r#type: e.kind.clone(),
        subject: e.subject.clone(),
        time_unix_ms: e.time_ms,
        osdmap_epoch: e.osdmap_epoch.map_or(0, |x| x.0),
        pool_id: e.pool_epoch.map_or(0, |(p, _)| p.0),
        pool_epoch: e.pool_epoch.map_or(0, |(_, x)| x.0),
        data: e.data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::shard_ports;

    fn shard(core_id: u32, port: u16, raw_port: u16) -> Shard {
        Shard {
            core_id,
            port,
            raw_port,
        }
    }

    #[test]
    fn contiguous_shards_travel_compact_and_expand_back() {
        let shards: Vec<Shard> = (0..64)
            .map(|i| shard(i, 7000 + i as u16, 9000 + i as u16))
            .collect();
        let t = shard_table(&shards);
        assert!(t.ports.is_empty() && t.count == 64 && t.first_port == 7000);
        let back = shard_ports(&t);
        assert_eq!(back.len(), 64);
        assert_eq!(
            (back[63].core_id, back[63].port, back[63].raw_port),
            (63, 7063, 9063)
        );
    }

    #[test]
    fn irregular_shards_travel_explicit() {
        let shards = vec![shard(0, 7000, 9000), shard(2, 7005, 9001)];
        let t = shard_table(&shards);
        assert_eq!(t.ports, vec![7000, 7005]);
        let back = shard_ports(&t);
        assert_eq!(
            (back[1].core_id, back[1].port, back[1].raw_port),
            (2, 7005, 9001)
        );
        assert!(shard_ports(&shard_table(&[])).is_empty());
    }
}
