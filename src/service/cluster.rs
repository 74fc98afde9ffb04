//! Cluster-wide calls: who leads, flags, status with health checks, I/O statistics.

use std::collections::BTreeMap;
use std::time::Instant;

use tonic::Status;

use super::osds::lock;
use super::{MonitorService, convert, status, unexpected};
use crate::cluster::iostats::{IoCounters, parse_pg_name};
use crate::cluster::{
    ClusterError, ClusterFlag, ClusterState, Command, Liveness, OsdId, OutRefusal, Outcome, PgState,
};
use crate::proto::monitor as api;
use crate::proto::store::MonitorRecord;

/// Longest detail list of one health check.
const MAX_DETAIL: usize = 20;

fn monitor_info(r: &MonitorRecord, role: api::MonitorRole) -> api::MonitorInfo {
    api::MonitorInfo {
        name: r.name.clone(),
        address: r.grpc_address.clone(),
        http_address: r.http_address.clone(),
        role: role as i32,
        version: r.version.clone(),
    }
}

impl MonitorService {
    fn monitors(&self) -> (Option<api::MonitorInfo>, u64, Vec<api::MonitorInfo>) {
        let view = self.node.view();
        let leader_name = view.leader.as_ref().map(|l| l.record.name.clone());
        let monitors = view
            .monitors
            .iter()
            .map(|m| {
                let role = if Some(&m.name) == leader_name.as_ref() {
                    api::MonitorRole::Leader
                } else {
                    api::MonitorRole::Standby
                };
                monitor_info(m, role)
            })
            .collect();
        (
            view.leader
                .as_ref()
                .map(|l| monitor_info(&l.record, api::MonitorRole::Leader)),
            view.leader.as_ref().map_or(0, |l| l.epoch.0),
            monitors,
        )
    }

    pub(super) async fn get_leader(
        &self,
        _r: api::GetLeaderRequest,
    ) -> Result<api::GetLeaderResponse, Status> {
        let view = self.node.view();
        if !view.connected && view.leader.is_none() {
            return Err(status::error(
                tonic::Code::Unavailable,
                "ETCD_UNAVAILABLE",
                "this monitor cannot reach etcd and knows no leader",
            ));
        }
        let (leader, leader_epoch, monitors) = self.monitors();
        Ok(api::GetLeaderResponse {
            leader,
            leader_epoch,
            monitors,
            answered_by: self.node.me.name.clone(),
        })
    }

    async fn change_flag(&self, raw: i32, set: bool) -> Result<api::FlagsResponse, Status> {
        let flag = ClusterFlag::from_i32(raw)
            .ok_or_else(|| status::cluster_error(&ClusterError::UnknownFlag(raw)))?;
        let serving = self.leader()?;
        let command = if set {
            Command::SetFlag(flag)
        } else {
            Command::UnsetFlag(flag)
        };
        match self.propose(&serving, command).await? {
            Outcome::Flags {
                flags,
                osdmap_epoch,
            } => Ok(api::FlagsResponse {
                flags: convert::flags(flags),
                osdmap_epoch: osdmap_epoch.0,
                leader_epoch: serving.term.epoch.0,
            }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn set_flag(
        &self,
        r: api::SetFlagRequest,
    ) -> Result<api::FlagsResponse, Status> {
        self.change_flag(r.flag, true).await
    }

    pub(super) async fn unset_flag(
        &self,
        r: api::UnsetFlagRequest,
    ) -> Result<api::FlagsResponse, Status> {
        self.change_flag(r.flag, false).await
    }

    pub(super) async fn get_cluster_status(
        &self,
        _r: api::GetClusterStatusRequest,
    ) -> Result<api::GetClusterStatusResponse, Status> {
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let (_, _, monitors) = self.monitors();
        let rates = lock(&serving.iostats).rates(Instant::now());
        let mut states: BTreeMap<u32, u64> = BTreeMap::new();
        let mut pgs = 0u64;
        for p in snap.pools() {
            for (_, pg) in p.pgs.iter() {
                *states.entry(pg.state.0).or_insert(0) += 1;
                pgs += 1;
            }
        }
        let mut checks = health_checks(&snap, &states, monitors.len(), self.node.expected_monitors);
        checks.extend(failure_checks(
            &snap,
            &serving.out_refused(),
            &serving.flapping(),
        ));
        let health = checks
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(api::HealthStatus::Ok as i32);
        Ok(api::GetClusterStatusResponse {
            health,
            checks,
            flags: convert::flags(snap.flags()),
            monitors,
            leader_epoch: serving.term.epoch.0,
            osdmap_epoch: snap.osdmap_epoch().0,
            osds_total: snap.osd_count() as u32,
            osds_up: snap.osds().filter(|o| o.is_up()).count() as u32,
            osds_in: snap.osds().filter(|o| o.is_in()).count() as u32,
            pools: snap.pools().count() as u32,
            pgs,
            pg_states: states
                .into_iter()
                .map(|(state, count)| api::PgStateCount {
                    state,
                    name: PgState(state).name(),
                    count,
                })
                .collect(),
            client_io: Some(api::IoRates {
                read_bytes_per_sec: rates.read_bytes_per_sec,
                write_bytes_per_sec: rates.write_bytes_per_sec,
                read_ops_per_sec: rates.read_ops_per_sec,
                write_ops_per_sec: rates.write_ops_per_sec,
                window_seconds: rates.window_seconds,
            }),
            recovery_pgs_per_sec: rates.recovery_pgs_per_sec,
            images: snap.image_count() as u64,
        })
    }

    pub(super) async fn data_statistics(
        &self,
        r: api::DataStatisticsRequest,
    ) -> Result<api::DataStatisticsResponse, Status> {
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let reporter = OsdId(r.osd_id);
        if snap.osd(reporter).is_none() {
            return Err(status::cluster_error(&ClusterError::OsdNotFound(reporter)));
        }
        // Validate the whole report before recording any of it.
        let mut parsed = Vec::with_capacity(r.pgs.len());
        for (name, c) in &r.pgs {
            let key = parse_pg_name(name).ok_or_else(|| {
                status::error(
                    tonic::Code::InvalidArgument,
                    "INVALID_PG_NAME",
                    format!("'{name}' is not a PG name like <pool id>.<pg id>"),
                )
            })?;
            parsed.push((key, c));
        }
        let mut ignored = 0u32;
        let known: Vec<_> = parsed
            .into_iter()
            .filter(|((pool, pg), _)| {
                let ok = snap.pool(*pool).is_some_and(|p| pg.0 < p.pg_count);
                ignored += u32::from(!ok);
                ok
            })
            .map(|(key, c)| {
                (
                    key,
                    IoCounters {
                        read_bytes: c.read_bytes,
                        write_bytes: c.write_bytes,
                        read_ops: c.read_ops,
                        write_ops: c.write_ops,
                    },
                )
            })
            .collect();
        lock(&serving.iostats).report(known, Instant::now());
        Ok(api::DataStatisticsResponse { ignored })
    }
}

/// Health checks from the failure detector: refused automatic outs and flapping OSDs.
fn failure_checks(
    s: &ClusterState,
    refused: &[(OsdId, OutRefusal)],
    flapping: &[(OsdId, usize)],
) -> Vec<api::HealthCheck> {
    let mut checks = Vec::new();
    // Only refusals that still hold: the OSD is still down and in.
    let refused: Vec<String> = refused
        .iter()
        .filter(|(id, _)| s.osd(*id).is_some_and(|o| o.is_in() && !o.is_up()))
        .map(|(id, why)| match why {
            OutRefusal::MinInRatio => {
                format!("{id} stays in: marking it out would leave too few OSDs in")
            }
            OutRefusal::WholeSubtreeDown(level) => format!(
                "{id} stays in: its whole {} is down (mark it out by hand if it is gone)",
                level.name()
            ),
        })
        .collect();
    if !refused.is_empty() {
        checks.push(api::HealthCheck {
            code: "OSD_OUT_REFUSED".to_string(),
            severity: api::HealthStatus::Warn as i32,
            summary: format!("{} down osds not marked out automatically", refused.len()),
            detail: refused.into_iter().take(MAX_DETAIL).collect(),
        });
    }
    if !flapping.is_empty() {
        checks.push(api::HealthCheck {
            code: "OSD_FLAPPING".to_string(),
            severity: api::HealthStatus::Warn as i32,
            summary: format!("{} osds flapping", flapping.len()),
            detail: flapping
                .iter()
                .take(MAX_DETAIL)
                .map(|(id, n)| format!("{id} marked down {n} times recently"))
                .collect(),
        });
    }
    checks
}

/// Named health checks, Ceph-style.
fn health_checks(
    s: &ClusterState,
    states: &BTreeMap<u32, u64>,
    monitors: usize,
    expected_monitors: usize,
) -> Vec<api::HealthCheck> {
    let mut checks = Vec::new();
    let check = |code: &str, severity: api::HealthStatus, summary: String, detail: Vec<String>| {
        api::HealthCheck {
            code: code.to_string(),
            severity: severity as i32,
            summary,
            detail: detail.into_iter().take(MAX_DETAIL).collect(),
        }
    };
    let down: Vec<String> = s
        .osds()
        .filter(|o| {
            o.is_in()
                && matches!(
                    o.liveness,
                    Liveness::Down { .. } | Liveness::HeldDown { .. }
                )
        })
        .map(|o| format!("{} ({}) is down", o.id, o.location.host))
        .collect();
    if !down.is_empty() {
        checks.push(check(
            "OSD_DOWN",
            api::HealthStatus::Warn,
            format!("{} osds down", down.len()),
            down,
        ));
    }
    let count = |bit: PgState| -> u64 {
        states
            .iter()
            .filter(|(s, _)| PgState(**s).contains(bit))
            .map(|(_, n)| n)
            .sum()
    };
    let unavailable = count(PgState::DOWN);
    if unavailable > 0 {
        checks.push(check(
            "PG_AVAILABILITY",
            api::HealthStatus::Err,
            format!("Reduced data availability: {unavailable} pgs down"),
            Vec::new(),
        ));
    }
    let degraded = count(PgState::UNDERSIZE);
    if degraded > 0 {
        checks.push(check(
            "PG_DEGRADED",
            api::HealthStatus::Warn,
            format!("Degraded data redundancy: {degraded} pgs undersized"),
            Vec::new(),
        ));
    }
    let flags = s.flags();
    if flags.iter().next().is_some() {
        checks.push(check(
            "FLAGS_SET",
            api::HealthStatus::Warn,
            format!("{flags} flag(s) set"),
            Vec::new(),
        ));
    }
    if expected_monitors > monitors {
        checks.push(check(
            "MON_DOWN",
            api::HealthStatus::Warn,
            format!(
                "{}/{expected_monitors} monitors down",
                expected_monitors - monitors
            ),
            Vec::new(),
        ));
    }
    checks
}
