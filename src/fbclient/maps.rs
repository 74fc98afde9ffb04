//! Map reads: `getosdmap` (with `-detail`, every shard), `getpgmap` (one pool or all) and
//! `getclustermap` (both in one call), and the tables they print.

use serde_json::{Value, json};

use super::output::{
    Output, Table, failure_domain_name, flags_text, human_bytes, in_text, osd_list, pg_state_name,
    pgid, put, up_text, weight_text,
};
use super::{Ctx, Failure, json};
use crate::client::shard_ports;
use crate::proto::monitor as api;
use crate::proto::wire::{OsdMapFields, PoolPgMapFields};

/// The osdmap as text: a summary line, one row per OSD, and with `detail` one row per shard.
pub fn render_osdmap(map: &OsdMapFields, detail: bool) -> String {
    let mut s = String::new();
    let up = map.osds.iter().filter(|o| o.up).count();
    let r#in = map.osds.iter().filter(|o| o.r#in).count();
    put!(
        s,
        "osdmap epoch {}: {} osds, {up} up, {in} in; {} cores per osd; flags: {}",
        map.epoch,
        map.osds.len(),
        map.core_num,
        flags_text(&map.flags),
        r#in = r#in
    );
    if map.osds.is_empty() {
        return s;
    }
    let mut t = Table::new(&[
        "ID", "UP", "IN", "WEIGHT", "HOST", "RACK", "ROOT", "ADDRESS", "SIZE", "SHARDS", "PORTS",
    ]);
    for o in &map.osds {
        let shards = o.shards.as_ref().map(shard_ports).unwrap_or_default();
        let ports = match (shards.first(), shards.last()) {
            (Some(f), Some(l)) if shards.len() > 1 => format!("{}-{}", f.port, l.port),
            (Some(f), _) => f.port.to_string(),
            _ => "-".to_string(),
        };
        let dash = |v: &str| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        t.row(vec![
            o.id.to_string(),
            up_text(o).to_string(),
            in_text(o).to_string(),
            weight_text(o.weight),
            dash(&o.host),
            dash(&o.rack),
            dash(&o.root),
            dash(&o.address),
            human_bytes(o.size),
            shards.len().to_string(),
            ports,
        ]);
    }
    s.push_str(&t.render());
    if detail {
        let mut t = Table::new(&["OSD", "SHARD", "CORE", "PORT", "RAW_PORT"]);
        for o in &map.osds {
            let shards = o.shards.as_ref().map(shard_ports).unwrap_or_default();
            for (i, sh) in shards.iter().enumerate() {
                t.row(vec![
                    o.id.to_string(),
                    i.to_string(),
                    sh.core_id.to_string(),
                    sh.port.to_string(),
                    sh.raw_port.to_string(),
                ]);
            }
        }
        put!(s);
        s.push_str(&t.render());
    }
    s
}

/// One pool's pgmap as text: a summary line and one row per PG.
pub fn render_pool(p: &PoolPgMapFields) -> String {
    let mut s = String::new();
    match api::MapStatus::try_from(p.status) {
        Ok(api::MapStatus::Deleted) => {
            put!(s, "pool {}: deleted (final epoch {})", p.pool_id, p.epoch);
            return s;
        }
        Ok(api::MapStatus::Full) => {}
        _ => {
            put!(s, "pool {}: epoch {} (no map)", p.pool_id, p.epoch);
            return s;
        }
    }
    let info = p.pool.clone().unwrap_or_default();
    put!(
        s,
        "pool {} '{}': epoch {}, {} pgs of size {}, failure domain {}, root {}",
        p.pool_id,
        info.name,
        p.epoch,
        p.pgs.len(),
        info.pg_size,
        failure_domain_name(info.failure_domain),
        info.root
    );
    let mut t = Table::new(&[
        "PGID", "STATE", "OSDS", "NEW_OSDS", "CORE", "LEADER", "VERSION",
    ]);
    for g in &p.pgs {
        t.row(vec![
            pgid(p.pool_id, g.id),
            pg_state_name(g.state),
            osd_list(&g.members),
            if g.new_members.is_empty() {
                "-".to_string()
            } else {
                osd_list(&g.new_members)
            },
            g.core.to_string(),
            if g.leader == 0 {
                "-".to_string()
            } else {
                g.leader.to_string()
            },
            g.version.to_string(),
        ]);
    }
    s.push_str(&t.render());
    s
}

fn osdmap_json(map: &OsdMapFields) -> Value {
    json::osdmap(map.epoch, &map.osds, &map.flags, map.core_num)
}

fn pool_json(p: &PoolPgMapFields) -> Value {
    let mut v = json::pool_pgmap(p.pool_id, p.epoch, p.pool.as_ref(), &p.pgs);
    let status = match api::MapStatus::try_from(p.status) {
        Ok(api::MapStatus::Deleted) => "deleted",
        Ok(api::MapStatus::Full) => "full",
        _ => "other",
    };
    v["status"] = json!(status);
    v
}

/// Pools sorted by id, PGs by id; only `pool` when given.
fn pools_of(r: api::GetPgMapResponse, pool: Option<u32>) -> Result<Vec<PoolPgMapFields>, Failure> {
    let mut pools: Vec<PoolPgMapFields> = r
        .pools
        .into_iter()
        .map(|p| p.into_fields())
        .filter(|p| pool.is_none_or(|id| id == p.pool_id))
        .collect();
    if let Some(id) = pool
        && pools.is_empty()
    {
        return Err(Failure::Failed(format!(
            "POOL_NOT_FOUND: no pool with id {id}"
        )));
    }
    pools.sort_by_key(|p| p.pool_id);
    for p in &mut pools {
        p.pgs.sort_by_key(|g| g.id);
    }
    Ok(pools)
}

/// `getosdmap`.
pub async fn osdmap(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await?;
    let map = r.osdmap.unwrap_or_default().into_fields();
    let detail = ctx.args.detail;
    Ok(ctx.output(
        || {
            let mut v = osdmap_json(&map);
            v["leader_epoch"] = json!(r.leader_epoch);
            v
        },
        || render_osdmap(&map, detail),
    ))
}

/// `getpgmap`: every pool's pgmap, or `-poolid`'s.
pub async fn pgmap(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .get_pg_map(api::GetPgMapRequest::default())
        .await?;
    let leader_epoch = r.leader_epoch;
    let pools = pools_of(r, ctx.args.poolid)?;
    Ok(ctx.output(
        || {
            json!({
                "leader_epoch": leader_epoch,
                "pools": pools.iter().map(pool_json).collect::<Vec<_>>(),
            })
        },
        || {
            if pools.is_empty() {
                return "no pools\n".to_string();
            }
            pools.iter().map(render_pool).collect::<Vec<_>>().join("\n")
        },
    ))
}

/// `getclustermap`: the osdmap and every pgmap from one call.
pub async fn cluster_map(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .get_cluster_map(api::GetClusterMapRequest {
            osdmap: Some(api::GetOsdMapRequest {
                osd_id: 0,
                epoch: 0,
            }),
            pgmap: Some(api::GetPgMapRequest::default()),
        })
        .await?;
    let map = r
        .osdmap
        .and_then(|o| o.osdmap)
        .unwrap_or_default()
        .into_fields();
    let pools = pools_of(r.pgmap.unwrap_or_default(), None)?;
    let detail = ctx.args.detail;
    Ok(ctx.output(
        || {
            json!({
                "leader_epoch": r.leader_epoch,
                "osdmap": osdmap_json(&map),
                "pools": pools.iter().map(pool_json).collect::<Vec<_>>(),
            })
        },
        || {
            let mut parts = vec![render_osdmap(&map, detail)];
            if pools.is_empty() {
                parts.push("no pools\n".to_string());
            }
            parts.extend(pools.iter().map(render_pool));
            parts.join("\n")
        },
    ))
}
