//! OSD lifecycle calls: ApplyId, Boot, OsdStop, Heartbeat, out/in, location, weight, purge,
//! config text.

use std::time::Instant;

use tonic::Status;

use super::{MonitorService, fields, status, unexpected};
use crate::cluster::{
    BootArgs, BootInstance, ClusterError, Command, Liveness, OsdId, Outcome, ShardArg,
};
use crate::proto::monitor as api;

impl MonitorService {
    pub(super) async fn apply_id(
        &self,
        r: api::ApplyIdRequest,
    ) -> Result<api::ApplyIdResponse, Status> {
        fields::uuid(&r.uuid)?;
        let serving = self.leader()?;
        match self
            .propose(&serving, Command::ApplyId { uuid: r.uuid })
            .await?
        {
            Outcome::AppliedId { id, osdmap_epoch } => Ok(api::ApplyIdResponse {
                osd_id: id.0,
                osdmap_epoch: osdmap_epoch.0,
                leader_epoch: serving.term.epoch.0,
            }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn boot(&self, r: api::BootRequest) -> Result<api::BootResponse, Status> {
        fields::uuid(&r.uuid)?;
        fields::address(&r.address)?;
        fields::label("host", &r.host)?;
        fields::label("rack", &r.rack)?;
        fields::label("root", &r.root)?;
        fields::config(&r.config)?;
        let serving = self.leader()?;
        let id = OsdId(r.osd_id);
        let args = BootArgs {
            id,
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
        };
        match self
            .propose(&serving, Command::Boot(Box::new(args)))
            .await?
        {
            Outcome::Booted {
                osdmap_epoch,
                held_down,
            } => {
                // A boot is a sign of life.
                serving.detector().heard_from(id, Instant::now());
                Ok(api::BootResponse {
                    osdmap_epoch: osdmap_epoch.0,
                    leader_epoch: serving.term.epoch.0,
                    held_down,
                })
            }
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn osd_stop(
        &self,
        r: api::OsdStopRequest,
    ) -> Result<api::OsdStopResponse, Status> {
        let serving = self.leader()?;
        let epoch = self
            .osd_change(
                &serving,
                Command::OsdStop {
                    id: OsdId(r.osd_id),
                },
            )
            .await?;
        Ok(api::OsdStopResponse {
            osdmap_epoch: epoch,
            leader_epoch: serving.term.epoch.0,
        })
    }

    /// Liveness: checked against the committed osdmap, recorded in memory only. A heartbeat of
    /// a run the failure detector marked down brings it back up (one command).
    pub(super) async fn heartbeat(
        &self,
        r: api::HeartbeatRequest,
    ) -> Result<api::HeartbeatResponse, Status> {
        let serving = self.leader()?;
        let id = OsdId(r.osd_id);
        let snap = serving.snapshot();
        let osd = snap
            .osd(id)
            .ok_or_else(|| status::cluster_error(&ClusterError::OsdNotFound(id)))?;
        let instance = BootInstance(r.boot_instance);
        let current = osd
            .boot_instance()
            .ok_or_else(|| status::cluster_error(&ClusterError::OsdNotBooted(id)))?;
        if current != instance {
            return Err(status::cluster_error(&ClusterError::StaleBootInstance(id)));
        }
        serving.detector().heard_from(id, Instant::now());
        if matches!(osd.liveness, Liveness::Down { .. }) {
            self.propose(
                &serving,
                Command::MarkUp {
                    id,
                    instance: instance.0,
                },
            )
            .await?;
        }
        let snap = serving.snapshot();
        Ok(api::HeartbeatResponse {
            osdmap_epoch: snap.osdmap_epoch().0,
            pool_epochs: snap.pools().map(|p| (p.id.0, p.epoch.0)).collect(),
            leader_epoch: serving.term.epoch.0,
        })
    }

    pub(super) async fn osd_out(
        &self,
        r: api::OsdOutRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(Command::OsdOut {
            id: OsdId(r.osd_id),
        })
        .await
    }

    pub(super) async fn osd_in(
        &self,
        r: api::OsdInRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(Command::OsdIn {
            id: OsdId(r.osd_id),
        })
        .await
    }

    pub(super) async fn set_osd_location(
        &self,
        r: api::SetOsdLocationRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        for (field, value) in [("host", &r.host), ("rack", &r.rack), ("root", &r.root)] {
            if let Some(v) = value {
                fields::label(field, v)?;
            }
        }
        self.osd_change_call(Command::SetLocation {
            id: OsdId(r.osd_id),
            host: r.host,
            rack: r.rack,
            root: r.root,
        })
        .await
    }

    pub(super) async fn set_osd_weight(
        &self,
        r: api::SetOsdWeightRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(Command::SetWeight {
            id: OsdId(r.osd_id),
            weight: r.weight,
        })
        .await
    }

    pub(super) async fn purge_osd(
        &self,
        r: api::PurgeOsdRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(Command::Purge {
            id: OsdId(r.osd_id),
        })
        .await
    }

    pub(super) async fn osd_config(
        &self,
        r: api::OsdConfigRequest,
    ) -> Result<api::OsdConfigResponse, Status> {
        let serving = self.leader()?;
        let id = OsdId(r.osd_id);
        let osd = serving
            .snapshot()
            .osd(id)
            .cloned()
            .ok_or_else(|| status::cluster_error(&ClusterError::OsdNotFound(id)))?;
        if osd.config_hash == 0 {
            return Ok(api::OsdConfigResponse::default());
        }
        let text = self.node.store.osd_config(id).await.map_err(|e| {
            status::error(tonic::Code::Unavailable, "ETCD_UNAVAILABLE", e.to_string())
        })?;
        Ok(api::OsdConfigResponse {
            config: text.unwrap_or_default(),
        })
    }

    async fn osd_change_call(&self, command: Command) -> Result<api::OsdChangeResponse, Status> {
        let serving = self.leader()?;
        let epoch = self.osd_change(&serving, command).await?;
        Ok(api::OsdChangeResponse {
            osdmap_epoch: epoch,
            leader_epoch: serving.term.epoch.0,
        })
    }

    async fn osd_change(
        &self,
        serving: &crate::commit::Serving,
        command: Command,
    ) -> Result<u64, Status> {
        match self.propose(serving, command).await? {
            Outcome::OsdMap { osdmap_epoch } => Ok(osdmap_epoch.0),
            o => Err(unexpected(o)),
        }
    }
}

/// Locks a term-scoped mutex; a poisoned lock still holds usable bookkeeping.
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
