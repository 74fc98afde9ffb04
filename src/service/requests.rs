//! What each request asks, as pure functions of the request and (for reads) the committed
//! state: the handlers' validation and command building, free of I/O, so the property tests in
//! `proptests.rs` drive every request type through the same code as the service.

use tonic::Status;

use super::{convert, status};
use crate::cluster::health::MAX_CHECK_CODE;
use crate::cluster::iostats::{IoCounters, IoReport};
use crate::cluster::{
    BootArgs, BootInstance, ClusterError, ClusterFlag, ClusterState, OsdId, PgId, PoolArgs, PoolId,
    ShardArg, command, echo,
};
use crate::health;
use crate::proto::monitor as api;

fn osds(ids: &[u32]) -> Vec<OsdId> {
    ids.iter().map(|&i| OsdId(i)).collect()
}

pub(super) fn apply_id(r: api::ApplyIdRequest) -> command::ApplyId {
    command::ApplyId { uuid: r.uuid }
}

pub(super) fn boot(r: api::BootRequest) -> command::Boot {
    command::Boot(BootArgs {
        id: OsdId(r.osd_id),
        uuid: r.uuid,
        size: r.size,
        shards: r
            .shard_ports
            .into_iter()
            .map(|(shard, p)| ShardArg {
                shard,
                core_id: p.core_id,
                port: p.port,
                raw_port: p.raw_port,
            })
            .collect(),
        address: r.address,
        host: r.host,
        core_num: r.core_num,
        config: r.config,
        instance: r.boot_instance,
        rack: r.rack,
        root: r.root,
    })
}

pub(super) fn osd_stop(r: &api::OsdStopRequest) -> command::OsdStop {
    command::OsdStop {
        id: OsdId(r.osd_id),
    }
}

/// A heartbeat checked against the committed osdmap (`ClusterState::heartbeat`): the command
/// that brings its OSD back up when the failure detector had marked this run down, else None.
pub(super) fn heartbeat(
    snap: &ClusterState,
    r: &api::HeartbeatRequest,
) -> Result<Option<command::MarkUp>, Status> {
    snap.heartbeat(OsdId(r.osd_id), BootInstance(r.boot_instance))
        .map_err(|e| status::cluster_error(&e))
}

pub(super) fn osd_out(r: &api::OsdOutRequest) -> command::OsdOut {
    command::OsdOut {
        id: OsdId(r.osd_id),
    }
}

pub(super) fn osd_in(r: &api::OsdInRequest) -> command::OsdIn {
    command::OsdIn {
        id: OsdId(r.osd_id),
    }
}

pub(super) fn set_osd_location(r: api::SetOsdLocationRequest) -> command::SetLocation {
    command::SetLocation {
        id: OsdId(r.osd_id),
        host: r.host,
        rack: r.rack,
        root: r.root,
    }
}

pub(super) fn set_osd_weight(r: &api::SetOsdWeightRequest) -> command::SetWeight {
    command::SetWeight {
        id: OsdId(r.osd_id),
        weight: r.weight,
    }
}

pub(super) fn purge_osd(r: &api::PurgeOsdRequest) -> command::Purge {
    command::Purge {
        id: OsdId(r.osd_id),
    }
}

/// The OSD whose stored config text to read, or None when it reported none.
pub(super) fn osd_config(
    snap: &ClusterState,
    r: &api::OsdConfigRequest,
) -> Result<Option<OsdId>, Status> {
    let id = OsdId(r.osd_id);
    let osd = snap
        .osd(id)
        .ok_or_else(|| status::cluster_error(&ClusterError::OsdNotFound(id)))?;
    Ok((osd.config_hash != 0).then_some(id))
}

pub(super) fn pg_osd_info(
    snap: &ClusterState,
    r: &api::GetPgOsdInfoRequest,
) -> Result<Vec<api::PoolPgOsds>, Status> {
    let ids: Vec<PoolId> = if r.pool_ids.is_empty() {
        snap.pools().map(|p| p.id).collect()
    } else {
        r.pool_ids.iter().map(|&i| PoolId(i)).collect()
    };
    let mut pools = Vec::with_capacity(ids.len());
    for id in ids {
        let p = snap
            .pool(id)
            .ok_or_else(|| status::cluster_error(&ClusterError::PoolNotFound(id)))?;
        pools.push(api::PoolPgOsds {
            pool_id: id.0,
            pgs: p
                .pgs
                .iter()
                .map(|(pg, info)| api::PgOsds {
                    pg_id: pg.0,
                    core: info.core,
                    members: info.members.iter().map(|m| m.0).collect(),
                })
                .collect(),
        });
    }
    Ok(pools)
}

pub(super) fn create_pool(r: api::CreatePoolRequest) -> command::CreatePool {
    command::CreatePool(PoolArgs {
        name: r.name,
        size: r.pg_size,
        pg_count: r.pg_count,
        failure_domain: r.failure_domain,
        root: r.root,
    })
}

pub(super) fn delete_pool(r: api::DeletePoolRequest) -> command::DeletePool {
    command::DeletePool { name: r.name }
}

pub(super) fn create_image(r: api::CreateImageRequest) -> command::CreateImage {
    command::CreateImage {
        pool: r.pool_name,
        name: r.image_name,
        size: r.size,
        object_size: r.object_size,
    }
}

pub(super) fn resize_image(r: api::ResizeImageRequest) -> command::ResizeImage {
    command::ResizeImage {
        pool: r.pool_name,
        name: r.image_name,
        size: r.size,
        allow_shrink: r.allow_shrink,
    }
}

pub(super) fn remove_image(r: api::RemoveImageRequest) -> command::RemoveImage {
    command::RemoveImage {
        pool: r.pool_name,
        name: r.image_name,
    }
}

pub(super) fn image_info(
    snap: &ClusterState,
    r: &api::GetImageInfoRequest,
) -> Result<api::ImageResponse, Status> {
    let pool = snap
        .pool_by_name(&r.pool_name)
        .ok_or_else(|| status::cluster_error(&ClusterError::UnknownPoolName(echo(&r.pool_name))))?;
    let image = snap
        .image(pool.id, &r.image_name)
        .ok_or_else(|| status::cluster_error(&ClusterError::ImageNotFound(echo(&r.image_name))))?;
    Ok(api::ImageResponse {
        image: Some(convert::image_info(image, &pool.name)),
    })
}

pub(super) fn leader_be_elected(r: &api::LeaderBeElectedRequest) -> command::LeaderBeElected {
    command::LeaderBeElected {
        leader: OsdId(r.leader_id),
        pool: PoolId(r.pool_id),
        pg: PgId(r.pg_id),
        members: osds(&r.members),
        new_members: osds(&r.new_members),
    }
}

pub(super) fn pg_member_change_finish(
    r: &api::PgMemberChangeFinishRequest,
) -> command::MemberChangeFinish {
    command::MemberChangeFinish {
        // 0 is no OSD's id: the request did not name its reporter.
        reporter: (r.leader_id != 0).then_some(OsdId(r.leader_id)),
        result: r.result,
        pool: PoolId(r.pool_id),
        pg: PgId(r.pg_id),
        members: osds(&r.members),
    }
}

/// The flag numbered `raw` of a SetFlag or UnsetFlag request.
pub(super) fn flag(raw: i32) -> Result<ClusterFlag, Status> {
    ClusterFlag::from_i32(raw).ok_or_else(|| status::cluster_error(&ClusterError::UnknownFlag(raw)))
}

/// A DataStatistics report checked against the committed state (see [`IoReport::check`]).
pub(super) fn statistics(
    snap: &ClusterState,
    r: &api::DataStatisticsRequest,
) -> Result<IoReport, Status> {
    let entries = r.pgs.iter().map(|(name, c)| {
        (
            name.as_str(),
            IoCounters {
                read_bytes: c.read_bytes,
                write_bytes: c.write_bytes,
                read_ops: c.read_ops,
                write_ops: c.write_ops,
            },
        )
    });
    IoReport::check(snap, OsdId(r.osd_id), entries).map_err(|e| status::cluster_error(&e))
}

/// Event type prefixes a watch or a listing may filter by.
pub const MAX_EVENT_TYPES: usize = 32;
/// Longest event type prefix.
pub const MAX_EVENT_TYPE: usize = 64;

/// The type prefixes of WatchEvents / ListEvents, checked: at most 32, each 1..=64 characters
/// of `a-z 0-9 _ .`.
/// A health check code: 1..=64 characters of `A-Z 0-9 _`, naming one of the monitor's checks.
pub(super) fn health_code(code: &str) -> Result<String, Status> {
    let invalid = |why: String| {
        status::error(
            tonic::Code::InvalidArgument,
            super::reasons::INVALID_HEALTH_CHECK,
            why,
        )
    };
    let well_formed = !code.is_empty()
        && code.len() <= MAX_CHECK_CODE
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(invalid(format!(
            "health check code {} is not 1 to {MAX_CHECK_CODE} characters of A-Z, 0-9 and '_'",
            echo(code)
        )));
    }
    if !health::codes::known(code) {
        return Err(invalid(format!(
            "no health check is named {} (docs/events.md lists the {} checks)",
            echo(code),
            health::codes::ALL.len()
        )));
    }
    Ok(code.to_string())
}

/// MuteHealth as a command at `now_ms` (the ttl's range is the core's check).
pub(super) fn mute_health(
    r: &api::MuteHealthRequest,
    now_ms: u64,
) -> Result<command::MuteHealth, Status> {
    Ok(command::MuteHealth {
        code: health_code(&r.code)?,
        ttl_ms: (r.ttl_ms > 0).then_some(r.ttl_ms),
        sticky: r.sticky,
        now_ms,
    })
}

/// Most webhooks registered at once (each has a delivery loop on the leader).
pub const MAX_WEBHOOKS: usize = 64;
/// Most secrets of one webhook (two during a rotation is the usual case).
pub const MAX_WEBHOOK_SECRETS: usize = 4;
/// Longest bearer token.
pub const MAX_BEARER_TOKEN: usize = 4096;

/// An AddWebhook request, checked.
#[derive(Debug)]
pub(super) struct CheckedWebhook {
    pub url: url::Url,
    pub types: Vec<String>,
    pub secrets: Vec<crate::webhook::sign::Secret>,
}

/// Checks AddWebhook: the url, the type prefixes, the secrets and the bearer token.
pub(super) fn add_webhook(
    r: &api::AddWebhookRequest,
    allow_http: bool,
) -> Result<CheckedWebhook, Status> {
    let url = crate::webhook::envelope::check_url(&r.url, allow_http).map_err(|e| {
        status::error(
            tonic::Code::InvalidArgument,
            super::reasons::INVALID_WEBHOOK_URL,
            e.to_string(),
        )
    })?;
    let types = event_types(&r.types)?;
    let bad_secret = |why: String| {
        status::error(
            tonic::Code::InvalidArgument,
            super::reasons::INVALID_WEBHOOK_SECRET,
            why,
        )
    };
    if r.secrets.len() > MAX_WEBHOOK_SECRETS {
        return Err(bad_secret(format!(
            "{} secrets given; at most {MAX_WEBHOOK_SECRETS}",
            r.secrets.len()
        )));
    }
    let secrets = r
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            crate::webhook::sign::Secret::parse(s)
                .map_err(|e| bad_secret(format!("secret {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token_ok = r.bearer_token.len() <= MAX_BEARER_TOKEN
        && r.bearer_token.bytes().all(|b| b.is_ascii_graphic());
    if !token_ok {
        return Err(status::error(
            tonic::Code::InvalidArgument,
            super::reasons::INVALID_BEARER_TOKEN,
            format!(
                "the bearer token ({} bytes) must be at most {MAX_BEARER_TOKEN} bytes of visible ASCII",
                r.bearer_token.len()
            ),
        ));
    }
    Ok(CheckedWebhook {
        url,
        types,
        secrets,
    })
}

/// Checks a replay's first id against the log: kept (`oldest`, None when nothing is kept)
/// and written (`next` is the id the next event gets).
pub(super) fn replay_from(from: u64, oldest: Option<u64>, next: u64) -> Result<(), Status> {
    let out_of_range =
        |reason: &str, why: String| status::error(tonic::Code::OutOfRange, reason, why);
    if from == 0 || from >= next {
        return Err(out_of_range(
            super::reasons::EVENTS_AHEAD,
            format!(
                "event {from} was never written; the newest is {}",
                next.saturating_sub(1)
            ),
        ));
    }
    match oldest {
        Some(o) if from < o => Err(out_of_range(
            super::reasons::EVENTS_COMPACTED,
            format!("event {from} is no longer kept; the oldest kept is {o}"),
        )),
        None => Err(out_of_range(
            super::reasons::EVENTS_COMPACTED,
            format!("event {from} is no longer kept; the log keeps none"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn event_types(types: &[String]) -> Result<Vec<String>, Status> {
    let invalid = |why: String| {
        status::error(
            tonic::Code::InvalidArgument,
            super::reasons::INVALID_EVENT_TYPE,
            why,
        )
    };
    if types.len() > MAX_EVENT_TYPES {
        return Err(invalid(format!(
            "{} event type prefixes given; at most {MAX_EVENT_TYPES}",
            types.len()
        )));
    }
    for t in types {
        let valid = !t.is_empty()
            && t.len() <= MAX_EVENT_TYPE
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !valid {
            return Err(invalid(format!(
                "event type prefix {} is not 1 to {MAX_EVENT_TYPE} characters of a-z, 0-9, '_' and '.'",
                echo(t)
            )));
        }
    }
    Ok(types.to_vec())
}
