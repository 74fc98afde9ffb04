//! Cluster-wide calls: who leads, flags, status with health checks, I/O statistics.

use std::time::Instant;

use tonic::Status;

use super::{MonitorService, convert, requests, status};
use crate::cluster::{PgState, command, reply};
use crate::health;
use crate::proto::monitor as api;
use crate::proto::store::MonitorRecord;

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
                super::reasons::ETCD_UNAVAILABLE,
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
        let flag = requests::flag(raw)?;
        let serving = self.leader()?;
        let reply::Flags {
            flags,
            osdmap_epoch,
        } = if set {
            self.propose(&serving, command::SetFlag(flag)).await?
        } else {
            self.propose(&serving, command::UnsetFlag(flag)).await?
        };
        Ok(api::FlagsResponse {
            flags: convert::flags(flags),
            osdmap_epoch: osdmap_epoch.0,
            leader_epoch: serving.term.epoch.0,
        })
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

    pub(super) async fn mute_health(
        &self,
        r: api::MuteHealthRequest,
    ) -> Result<api::HealthMutesResponse, Status> {
        let command = requests::mute_health(&r, crate::timing::unix_ms_now())?;
        let serving = self.leader()?;
        let health = self.propose(&serving, command).await?;
        Ok(convert::health_mutes(&health))
    }

    pub(super) async fn unmute_health(
        &self,
        r: api::UnmuteHealthRequest,
    ) -> Result<api::HealthMutesResponse, Status> {
        let code = requests::health_code(&r.code)?;
        let serving = self.leader()?;
        let health = self
            .propose(&serving, command::UnmuteHealth { code })
            .await?;
        Ok(convert::health_mutes(&health))
    }

    pub(super) async fn get_cluster_status(
        &self,
        _r: api::GetClusterStatusRequest,
    ) -> Result<api::GetClusterStatusResponse, Status> {
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let (_, _, monitors) = self.monitors();
        let rates = serving.iostats.with(|io| io.rates(Instant::now()));
        let states = health::pg_states(&snap);
        let pgs = states.values().sum();
        let checks = serving.health(&snap, self.node.monitor_facts());
        let stored = snap.health();
        let health = severity(health::overall(&checks, stored)) as i32;
        let checks = checks
            .into_iter()
            .map(|c| api::HealthCheck {
                code: c.code.to_string(),
                severity: severity(c.severity) as i32,
                muted: stored.is_muted(c.code),
                count: c.count,
                since_ms: stored.raised.get(c.code).map_or(0, |r| r.since_ms),
                summary: c.summary,
                detail: c.detail,
            })
            .collect();
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
            mutes: convert::health_mutes(stored).mutes,
        })
    }

    pub(super) async fn data_statistics(
        &self,
        r: api::DataStatisticsRequest,
    ) -> Result<api::DataStatisticsResponse, Status> {
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let report = requests::statistics(&snap, &r)?;
        let reply = api::DataStatisticsResponse {
            ignored: report.unknown,
            not_member: report.not_member,
        };
        serving
            .iostats
            .with(|io| io.record(report, &snap, Instant::now()));
        Ok(reply)
    }
}

fn severity(s: health::Severity) -> api::HealthStatus {
    match s {
        health::Severity::Ok => api::HealthStatus::Ok,
        health::Severity::Warn => api::HealthStatus::Warn,
        health::Severity::Err => api::HealthStatus::Err,
    }
}
