//! Ops on single OSDs: `fakeapplyid`, `fakebootosd`, `fakestoposd` (the original's one-OSD
//! fakes, for poking at the protocol by hand), `outosd`, `inosd` and `showconfig`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use serde_json::json;

use super::output::{Output, human_bytes, put};
use super::{Ctx, Failure};
use crate::proto::monitor as api;

/// Shards per fake OSD when neither `-cores` nor the cluster says.
const DEFAULT_CORES: u32 = 4;
/// First shard port of a fake OSD when `-port` is absent.
const DEFAULT_PORT: u16 = 20_000;
/// Capacity of a fake OSD when `-size` is absent.
const DEFAULT_SIZE: u64 = 1 << 40;

/// 64 random bits (std's hasher keys are random per process; the clock varies them per call).
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(now);
    h.finish()
}

/// A random (version 4) uuid.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The `-osdid` flag (checked as required before any op runs).
fn osd_id(ctx: &Ctx) -> Result<u32, Failure> {
    ctx.args
        .osdid
        .ok_or_else(|| Failure::Usage("needs -osdid".to_string()))
}

/// `fakeapplyid`: the OSD id of `-uuid` (a random uuid when absent).
pub async fn apply_id(ctx: &Ctx) -> Result<Output, Failure> {
    let uuid = ctx.args.uuid.clone().unwrap_or_else(random_uuid);
    let r = ctx
        .client
        .apply_id(api::ApplyIdRequest { uuid: uuid.clone() })
        .await?;
    Ok(ctx.output(
        || json!({"osd_id": r.osd_id, "uuid": uuid, "osdmap_epoch": r.osdmap_epoch}),
        || {
            format!(
                "{}\nuuid {uuid}, osdmap epoch {}\n",
                r.osd_id, r.osdmap_epoch
            )
        },
    ))
}

/// `fakebootosd`: boots one fake OSD with contiguous shards from `-port`.
pub async fn boot(ctx: &Ctx) -> Result<Output, Failure> {
    let a = &ctx.args;
    let id = osd_id(ctx)?;
    let uuid = a.uuid.clone().unwrap_or_default();
    let cores = match a.cores {
        Some(c) => c,
        None => {
            let map = ctx
                .client
                .get_osd_map(api::GetOsdMapRequest {
                    osd_id: 0,
                    epoch: 0,
                })
                .await?;
            match map.osdmap.map(|m| m.core_num).unwrap_or(0) {
                0 => DEFAULT_CORES,
                n => n,
            }
        }
    };
    let port = u32::from(a.port.unwrap_or(DEFAULT_PORT));
    let host = a.host.clone().unwrap_or_else(|| format!("host{id}"));
    let address = a.address.clone().unwrap_or_else(|| "127.0.0.1".to_string());
    let size = a.size.unwrap_or(DEFAULT_SIZE);
    // Raw data ports follow the RPC ports.
    let shard_ports = (0..cores)
        .map(|i| {
            let shard = api::ShardPort {
                core_id: i,
                port: port + i,
                raw_port: port + cores + i,
            };
            (i, shard)
        })
        .collect();
    let instance = random_u64().max(1);
    let r = ctx
        .client
        .boot(api::BootRequest {
            osd_id: id,
            uuid: uuid.clone(),
            size,
            shard_ports,
            address: address.clone(),
            host: host.clone(),
            core_num: cores,
            config: format!(
                "# fake osd {id}, booted by fbclient\nhost = {host}\naddress = {address}\n"
            ),
            boot_instance: instance,
            rack: a.rack.clone().unwrap_or_default(),
            root: a.root.clone().unwrap_or_default(),
        })
        .await?;
    Ok(ctx.output(
        || {
            json!({
                "osd_id": id, "uuid": uuid, "host": host, "address": address, "cores": cores,
                "first_port": port, "size": size, "boot_instance": instance,
                "held_down": r.held_down, "osdmap_epoch": r.osdmap_epoch,
            })
        },
        || {
            let mut s = String::new();
            put!(
                s,
                "osd.{id} booted: host {host}, address {address}, {cores} shards on ports {}-{}, \
                 {}; osdmap epoch {}",
                port,
                port + cores.saturating_sub(1),
                human_bytes(size),
                r.osdmap_epoch
            );
            if r.held_down {
                put!(s, "osd.{id} is held down by the noup flag");
            }
            s
        },
    ))
}

/// `fakestoposd`: a planned stop (marked down now).
pub async fn stop(ctx: &Ctx) -> Result<Output, Failure> {
    let id = osd_id(ctx)?;
    let r = ctx
        .client
        .osd_stop(api::OsdStopRequest { osd_id: id })
        .await?;
    Ok(ctx.output(
        || json!({"osd_id": id, "osdmap_epoch": r.osdmap_epoch}),
        || {
            format!(
                "osd.{id} stopped: marked down; osdmap epoch {}\n",
                r.osdmap_epoch
            )
        },
    ))
}

/// `outosd` / `inosd`.
pub async fn out_in(ctx: &Ctx, mark_in: bool) -> Result<Output, Failure> {
    let id = osd_id(ctx)?;
    let r = if mark_in {
        ctx.client.osd_in(api::OsdInRequest { osd_id: id }).await?
    } else {
        ctx.client
            .osd_out(api::OsdOutRequest { osd_id: id })
            .await?
    };
    let word = if mark_in { "in" } else { "out" };
    Ok(ctx.output(
        || json!({"osd_id": id, "marked": word, "osdmap_epoch": r.osdmap_epoch}),
        || format!("osd.{id} marked {word}; osdmap epoch {}\n", r.osdmap_epoch),
    ))
}

/// `showconfig`: the config text of the OSD's last boot, as it was sent.
pub async fn show_config(ctx: &Ctx) -> Result<Output, Failure> {
    let id = osd_id(ctx)?;
    let r = ctx
        .client
        .osd_config(api::OsdConfigRequest { osd_id: id })
        .await?;
    Ok(ctx.output(
        || json!({"osd_id": id, "config": r.config}),
        || {
            let mut text = r.config.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_parse_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        assert!(crate::cluster::parse_uuid(&a).is_ok(), "{a}");
    }
}
