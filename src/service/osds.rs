//! OSD lifecycle calls: ApplyId, Boot, OsdStop, Heartbeat, out/in, location, weight, purge,
//! config text.

use tonic::Status;

use super::{MonitorService, fields, requests, status};
use crate::cluster::{Command, OsdId, reply};
use crate::proto::monitor as api;
use crate::term::TermContext;

impl MonitorService {
    pub(super) async fn apply_id(
        &self,
        r: api::ApplyIdRequest,
    ) -> Result<api::ApplyIdResponse, Status> {
        fields::uuid(&r.uuid)?;
        let serving = self.leader()?;
        let reply::AppliedId { id, osdmap_epoch } =
            self.propose(&serving, requests::apply_id(r)).await?;
        Ok(api::ApplyIdResponse {
            osd_id: id.0,
            osdmap_epoch: osdmap_epoch.0,
            leader_epoch: serving.term.epoch.0,
        })
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
        let reply::Booted {
            osdmap_epoch,
            held_down,
        } = self.propose(&serving, requests::boot(r)).await?;
        // A boot is a sign of life.
        self.heard(&serving, id).await?;
        Ok(api::BootResponse {
            osdmap_epoch: osdmap_epoch.0,
            leader_epoch: serving.term.epoch.0,
            held_down,
        })
    }

    pub(super) async fn osd_stop(
        &self,
        r: api::OsdStopRequest,
    ) -> Result<api::OsdStopResponse, Status> {
        let serving = self.leader()?;
        let epoch = self.osd_change(&serving, requests::osd_stop(&r)).await?;
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
        let mark_up = requests::heartbeat(&serving.snapshot(), &r)?;
        self.heard(&serving, OsdId(r.osd_id)).await?;
        if let Some(command) = mark_up {
            self.propose(&serving, command).await?;
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
        self.osd_change_call(requests::osd_out(&r)).await
    }

    pub(super) async fn osd_in(
        &self,
        r: api::OsdInRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(requests::osd_in(&r)).await
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
        self.osd_change_call(requests::set_osd_location(r)).await
    }

    pub(super) async fn set_osd_weight(
        &self,
        r: api::SetOsdWeightRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(requests::set_osd_weight(&r)).await
    }

    pub(super) async fn purge_osd(
        &self,
        r: api::PurgeOsdRequest,
    ) -> Result<api::OsdChangeResponse, Status> {
        self.osd_change_call(requests::purge_osd(&r)).await
    }

    pub(super) async fn osd_config(
        &self,
        r: api::OsdConfigRequest,
    ) -> Result<api::OsdConfigResponse, Status> {
        let serving = self.leader()?;
        let Some(id) = requests::osd_config(&serving.snapshot(), &r)? else {
            return Ok(api::OsdConfigResponse::default());
        };
        let text = self.node.store.osd_config(id).await.map_err(|e| {
            status::error(
                tonic::Code::Unavailable,
                super::reasons::ETCD_UNAVAILABLE,
                e.to_string(),
            )
        })?;
        Ok(api::OsdConfigResponse {
            config: text.unwrap_or_default(),
        })
    }

    async fn osd_change_call(
        &self,
        command: impl Command<Reply = reply::OsdMap>,
    ) -> Result<api::OsdChangeResponse, Status> {
        let serving = self.leader()?;
        let epoch = self.osd_change(&serving, command).await?;
        Ok(api::OsdChangeResponse {
            osdmap_epoch: epoch,
            leader_epoch: serving.term.epoch.0,
        })
    }

    /// Tells the term's heartbeat actor that `id` is alive; NOT_LEADER once the term is
    /// ending.
    async fn heard(&self, serving: &TermContext, id: OsdId) -> Result<(), Status> {
        serving
            .heartbeats
            .heard(id)
            .await
            .map_err(|_| status::not_leader(&self.node.leader_hint()))
    }

    async fn osd_change(
        &self,
        serving: &TermContext,
        command: impl Command<Reply = reply::OsdMap>,
    ) -> Result<u64, Status> {
        let reply::OsdMap { osdmap_epoch } = self.propose(serving, command).await?;
        Ok(osdmap_epoch.0)
    }
}
