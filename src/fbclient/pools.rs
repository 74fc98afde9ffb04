//! Pool ops: `createpool`, `deletepool`, `listpools` and `getpgosds` (each PG's core and
//! member OSDs).

use serde_json::json;

use super::output::{Output, Table, failure_domain_name, osd_list, pgid, put};
use super::{Ctx, Failure, json};
use crate::proto::monitor as api;

/// Replicas per PG when `-pgsize` is absent (the original's default).
const DEFAULT_PG_SIZE: u32 = 3;

fn pool_name(ctx: &Ctx) -> Result<String, Failure> {
    ctx.args
        .poolname
        .clone()
        .ok_or_else(|| Failure::Usage("needs -poolname".to_string()))
}

/// `createpool`.
pub async fn create(ctx: &Ctx) -> Result<Output, Failure> {
    let a = &ctx.args;
    let name = pool_name(ctx)?;
    let pg_size = a.pgsize.unwrap_or(DEFAULT_PG_SIZE);
    let pg_count = a
        .pgcount
        .ok_or_else(|| Failure::Usage("createpool needs -pgcount".to_string()))?;
    let failure_domain = a.failure_domain.clone().unwrap_or_default();
    let r = ctx
        .client
        .create_pool(api::CreatePoolRequest {
            name: name.clone(),
            pg_size,
            pg_count,
            failure_domain: failure_domain.clone(),
            root: a.root.clone().unwrap_or_default(),
        })
        .await?;
    Ok(ctx.output(
        || {
            json!({
                "pool_id": r.pool_id, "name": name, "pg_size": pg_size, "pg_count": pg_count,
                "pool_epoch": r.pool_epoch,
            })
        },
        || {
            let domain = if failure_domain.is_empty() {
                "host"
            } else {
                &failure_domain
            };
            format!(
                "pool '{name}' created: id {}, {pg_count} pgs of size {pg_size}, failure domain \
                 {domain}; pool epoch {}\n",
                r.pool_id, r.pool_epoch
            )
        },
    ))
}

/// `deletepool`.
pub async fn delete(ctx: &Ctx) -> Result<Output, Failure> {
    let name = pool_name(ctx)?;
    let r = ctx
        .client
        .delete_pool(api::DeletePoolRequest { name: name.clone() })
        .await?;
    Ok(ctx.output(
        || json!({"pool_id": r.pool_id, "name": name, "deleted_epoch": r.deleted_epoch}),
        || {
            format!(
                "pool '{name}' deleted: id {}, final epoch {}\n",
                r.pool_id, r.deleted_epoch
            )
        },
    ))
}

/// `listpools`.
pub async fn list(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx.client.list_pools(api::ListPoolsRequest {}).await?;
    Ok(ctx.output(
        || json!({"pools": r.pools.iter().map(json::pool).collect::<Vec<_>>()}),
        || {
            if r.pools.is_empty() {
                return "no pools\n".to_string();
            }
            let mut t = Table::new(&[
                "ID",
                "NAME",
                "SIZE",
                "PGS",
                "FAILURE_DOMAIN",
                "ROOT",
                "EPOCH",
            ]);
            for p in &r.pools {
                t.row(vec![
                    p.id.to_string(),
                    p.name.clone(),
                    p.pg_size.to_string(),
                    p.pg_count.to_string(),
                    failure_domain_name(p.failure_domain).to_string(),
                    p.root.clone(),
                    p.epoch.to_string(),
                ]);
            }
            t.render()
        },
    ))
}

/// `getpgosds`: per pool (`-poolid`, or all), each PG's core and members.
pub async fn pg_osds(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .get_pg_osd_info(api::GetPgOsdInfoRequest {
            pool_ids: ctx.args.poolid.into_iter().collect(),
        })
        .await?;
    Ok(ctx.output(
        || {
            let pools: Vec<_> = r
                .pools
                .iter()
                .map(|p| {
                    let pgs: Vec<_> = p
                        .pgs
                        .iter()
                        .map(|g| {
                            json!({"pgid": pgid(p.pool_id, g.pg_id), "id": g.pg_id,
                                   "core": g.core, "members": g.members})
                        })
                        .collect();
                    json!({"pool_id": p.pool_id, "pgs": pgs})
                })
                .collect();
            json!({"pools": pools})
        },
        || {
            if r.pools.is_empty() {
                return "no pools\n".to_string();
            }
            let mut s = String::new();
            for p in &r.pools {
                put!(s, "pool {}: {} pgs", p.pool_id, p.pgs.len());
                let mut t = Table::new(&["PGID", "CORE", "OSDS"]);
                for g in &p.pgs {
                    t.row(vec![
                        pgid(p.pool_id, g.pg_id),
                        g.core.to_string(),
                        osd_list(&g.members),
                    ]);
                }
                s.push_str(&t.render());
            }
            s
        },
    ))
}
