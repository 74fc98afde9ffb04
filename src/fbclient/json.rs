//! The JSON shapes of `--json`: API messages turned into objects with readable names (flag
//! and state names next to the numbers), shared by every op so one object always looks the
//! same.

use serde_json::{Value, json};

use super::output::{failure_domain_name, flag_names, health_name, pg_state_name, role_name};
use crate::client::shard_ports;
use crate::proto::monitor as api;

/// One OSD, with its shards expanded.
pub fn osd(o: &api::OsdInfo) -> Value {
    let shards: Vec<Value> = o
        .shards
        .as_ref()
        .map(shard_ports)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(
            |(i, s)| json!({"shard": i, "core": s.core_id, "port": s.port, "raw_port": s.raw_port}),
        )
        .collect();
    json!({
        "id": o.id,
        "uuid": o.uuid,
        "address": o.address,
        "host": o.host,
        "rack": o.rack,
        "root": o.root,
        "weight": o.weight,
        "up": o.up,
        "in": o.r#in,
        "pending": o.pending,
        "size": o.size,
        "core_num": o.core_num,
        "shards": shards,
        "last_change": o.last_change,
        "boot_instance": o.boot_instance,
    })
}

/// An osdmap.
pub fn osdmap(epoch: u64, osds: &[api::OsdInfo], flags: &[i32], core_num: u32) -> Value {
    json!({
        "epoch": epoch,
        "core_num": core_num,
        "flags": flag_names(flags),
        "osds": osds.iter().map(osd).collect::<Vec<_>>(),
    })
}

/// A pool's settings.
pub fn pool(p: &api::PoolInfo) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "pg_size": p.pg_size,
        "pg_count": p.pg_count,
        "failure_domain": failure_domain_name(p.failure_domain),
        "root": p.root,
        "epoch": p.epoch,
    })
}

/// One PG of pool `pool_id`.
pub fn pg(pool_id: u32, g: &api::PgInfo) -> Value {
    json!({
        "pgid": format!("{pool_id}.{}", g.id),
        "pool": pool_id,
        "id": g.id,
        "state": g.state,
        "state_name": pg_state_name(g.state),
        "members": g.members,
        "new_members": g.new_members,
        "core": g.core,
        "new_core": g.new_core,
        "version": g.version,
        "leader": g.leader,
        "change_failures": g.change_failures,
    })
}

/// A pool's pgmap.
pub fn pool_pgmap(
    pool_id: u32,
    epoch: u64,
    info: Option<&api::PoolInfo>,
    pgs: &[api::PgInfo],
) -> Value {
    json!({
        "pool_id": pool_id,
        "epoch": epoch,
        "pool": info.map(pool),
        "pgs": pgs.iter().map(|g| pg(pool_id, g)).collect::<Vec<_>>(),
    })
}

/// An image.
pub fn image(i: &api::ImageInfo) -> Value {
    json!({
        "id": i.id,
        "pool_id": i.pool_id,
        "pool_name": i.pool_name,
        "name": i.name,
        "size": i.size,
        "object_size": i.object_size,
    })
}

/// A monitor.
pub fn monitor(m: &api::MonitorInfo) -> Value {
    json!({
        "name": m.name,
        "address": m.address,
        "http_address": m.http_address,
        "role": role_name(m),
        "version": m.version,
    })
}

/// A health check.
pub fn check(c: &api::HealthCheck) -> Value {
    json!({
        "code": c.code,
        "severity": health_name(c.severity),
        "count": c.count,
        "muted": c.muted,
        "since_ms": c.since_ms,
        "summary": c.summary,
        "detail": c.detail,
    })
}

/// One mute of a health check (`until_ms` null: until unmuted).
pub fn mute(m: &api::HealthMute) -> Value {
    json!({
        "code": m.code,
        "until_ms": (m.until_ms > 0).then_some(m.until_ms),
        "sticky": m.sticky,
        "since_ms": m.since_ms,
    })
}

/// The whole cluster status.
pub fn status(s: &api::GetClusterStatusResponse) -> Value {
    let io = s.client_io.unwrap_or_default();
    json!({
        "health": health_name(s.health),
        "checks": s.checks.iter().map(check).collect::<Vec<_>>(),
        "mutes": s.mutes.iter().map(mute).collect::<Vec<_>>(),
        "flags": flag_names(&s.flags),
        "monitors": s.monitors.iter().map(monitor).collect::<Vec<_>>(),
        "leader_epoch": s.leader_epoch,
        "osdmap_epoch": s.osdmap_epoch,
        "osds": {"total": s.osds_total, "up": s.osds_up, "in": s.osds_in},
        "pools": s.pools,
        "pgs": s.pgs,
        "images": s.images,
        "pg_states": s.pg_states.iter()
            .map(|p| json!({"state": p.state, "name": p.name, "count": p.count}))
            .collect::<Vec<_>>(),
        "client_io": {
            "read_bytes_per_sec": io.read_bytes_per_sec,
            "write_bytes_per_sec": io.write_bytes_per_sec,
            "read_ops_per_sec": io.read_ops_per_sec,
            "write_ops_per_sec": io.write_ops_per_sec,
            "window_seconds": io.window_seconds,
        },
        "recovery_pgs_per_sec": s.recovery_pgs_per_sec,
    })
}
