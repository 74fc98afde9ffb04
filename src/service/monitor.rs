//! The `fastblock.monitor.v1.Monitor` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status;
use crate::cluster::{ClusterError, ClusterFlag, Command, Outcome};
use crate::commit::Serving;
use crate::node::Node;
use crate::proto::monitor as api;
use crate::proto::monitor::monitor_server::Monitor;
use crate::proto::store::MonitorRecord;

/// Handlers of the monitor API.
pub struct MonitorService {
    node: Arc<Node>,
}

impl MonitorService {
    pub fn new(node: Arc<Node>) -> MonitorService {
        MonitorService { node }
    }

    /// The serving leader state, or NOT_LEADER with a hint.
    fn leader(&self) -> Result<Arc<Serving>, Status> {
        self.node
            .serving()
            .ok_or_else(|| status::not_leader(&self.node.leader_hint()))
    }

    async fn propose(&self, command: Command) -> Result<Outcome, Status> {
        let serving = self.leader()?;
        serving
            .propose(command)
            .await
            .map_err(|e| status::propose_error(&e, &self.node.leader_hint()))
    }

    async fn change_flag(&self, raw: i32, set: bool) -> Result<api::FlagsResponse, Status> {
        let flag = ClusterFlag::from_i32(raw)
            .ok_or_else(|| status::cluster_error(&ClusterError::UnknownFlag(raw)))?;
        let command = if set {
            Command::SetFlag(flag)
        } else {
            Command::UnsetFlag(flag)
        };
        let serving = self.leader()?;
        let Outcome::Flags {
            flags,
            osdmap_epoch,
        } = self.propose(command).await?;
        Ok(api::FlagsResponse {
            flags: flags.iter().map(|f| f as i32).collect(),
            osdmap_epoch: osdmap_epoch.0,
            leader_epoch: serving.term.epoch.0,
        })
    }
}

fn monitor_info(r: &MonitorRecord, role: api::MonitorRole) -> api::MonitorInfo {
    api::MonitorInfo {
        name: r.name.clone(),
        address: r.grpc_address.clone(),
        http_address: r.http_address.clone(),
        role: role as i32,
        version: r.version.clone(),
    }
}

#[tonic::async_trait]
impl Monitor for MonitorService {
    async fn get_leader(
        &self,
        _request: Request<api::GetLeaderRequest>,
    ) -> Result<Response<api::GetLeaderResponse>, Status> {
        let view = self.node.view();
        if !view.connected && view.leader.is_none() {
            return Err(status::error(
                tonic::Code::Unavailable,
                "ETCD_UNAVAILABLE",
                "this monitor cannot reach etcd and knows no leader",
            ));
        }
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
        Ok(Response::new(api::GetLeaderResponse {
            leader: view
                .leader
                .as_ref()
                .map(|l| monitor_info(&l.record, api::MonitorRole::Leader)),
            leader_epoch: view.leader.as_ref().map_or(0, |l| l.epoch.0),
            monitors,
            answered_by: self.node.me.name.clone(),
        }))
    }

    async fn set_flag(
        &self,
        request: Request<api::SetFlagRequest>,
    ) -> Result<Response<api::FlagsResponse>, Status> {
        let flag = request.into_inner().flag;
        self.change_flag(flag, true).await.map(Response::new)
    }

    async fn unset_flag(
        &self,
        request: Request<api::UnsetFlagRequest>,
    ) -> Result<Response<api::FlagsResponse>, Status> {
        let flag = request.into_inner().flag;
        self.change_flag(flag, false).await.map(Response::new)
    }
}
