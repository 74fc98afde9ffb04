//! The fleet over our gRPC API: ApplyId and Boot calls, heartbeats in waves on connections of
//! their own, the PG calls on the shared ones (the map watch is `transport::MapSource`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::transport::Sent;
use super::{Fleet, FleetSpec, PgWork, SimError, SimOsd, fake_address, fake_config, fake_shard};
use crate::client::{ClientError, MonitorClient};
use crate::proto::monitor as api;
use crate::service::reasons;

pub(super) struct Grpc {
    pub(super) client: Arc<MonitorClient>,
    /// Heartbeats go over connections of their own, as a real OSD's would: a burst of PG
    /// reports queued on the shared connections must not delay them past the down grace.
    heartbeat_client: MonitorClient,
}

impl Grpc {
    pub(super) fn new(client: Arc<MonitorClient>) -> Grpc {
        Grpc {
            heartbeat_client: client.with_own_connections(),
            client,
        }
    }

    pub(super) async fn apply_id(&self, uuid: &str) -> Result<u32, SimError> {
        let r = self
            .client
            .apply_id(api::ApplyIdRequest {
                uuid: uuid.to_string(),
            })
            .await?;
        Ok(r.osd_id)
    }

    pub(super) async fn boot(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), ClientError> {
        self.client
            .boot(api::BootRequest {
                osd_id: osd.id,
                uuid: osd.uuid.clone(),
                size: 4 << 40,
                shard_ports: (0..spec.cores)
                    .map(|i| {
                        let (core_id, port, raw_port) = fake_shard(i);
                        (
                            i,
                            api::ShardPort {
                                core_id,
                                port,
                                raw_port,
                            },
                        )
                    })
                    .collect(),
                address: fake_address(osd.id),
                host: osd.host.clone(),
                core_num: spec.cores,
                config: fake_config(osd),
                boot_instance: osd.instance(),
                rack: osd.rack.clone(),
                root: String::new(),
            })
            .await
            .map(|_| ())
    }

    pub(super) async fn restart(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), SimError> {
        match self.boot(spec, osd).await {
            Err(e) if e.reason().as_deref() == Some(reasons::OSD_ALREADY_UP) => {
                self.client
                    .osd_stop(api::OsdStopRequest { osd_id: osd.id })
                    .await?;
                self.boot(spec, osd).await?;
            }
            other => other?,
        }
        Ok(())
    }

    pub(super) async fn send(&self, w: &PgWork) -> Result<Sent, SimError> {
        let result = match w {
            PgWork::Leader {
                pool,
                pg,
                leader,
                members,
                ..
            } => self
                .client
                .leader_be_elected(api::LeaderBeElectedRequest {
                    leader_id: *leader,
                    pool_id: *pool,
                    pg_id: *pg,
                    members: members.clone(),
                    new_members: Vec::new(),
                })
                .await
                .map(|_| ()),
            PgWork::Finish {
                pool,
                pg,
                reporter,
                members,
            } => self
                .client
                .pg_member_change_finish(api::PgMemberChangeFinishRequest {
                    result: 0,
                    pool_id: *pool,
                    pg_id: *pg,
                    members: members.clone(),
                    leader_id: *reporter,
                })
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(Sent::Done),
            Err(e)
                if matches!(
                    e.reason().as_deref(),
                    Some(
                        reasons::PG_NOT_REMAPPED
                            | reasons::PG_MEMBERS_MISMATCH
                            | reasons::LEADER_NOT_MEMBER
                            | reasons::POOL_NOT_FOUND
                            | reasons::PG_NOT_FOUND
                    )
                ) =>
            {
                Ok(Sent::Skipped)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Every live OSD heartbeats once per interval, in waves of bounded concurrency.
pub(super) async fn heartbeats(fleet: Arc<Fleet>, stop: CancellationToken) {
    let super::transport::Transport::Grpc(grpc) = &fleet.transport else {
        return;
    };
    let mut tick = tokio::time::interval(fleet.spec.heartbeat_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live: Vec<Arc<SimOsd>> = fleet.osds.iter().filter(|o| o.alive()).cloned().collect();
        stream::iter(live)
            .for_each_concurrent(fleet.spec.concurrency.max(1), |o| {
                let fleet = &fleet;
                async move {
                    let boot_instance = o.instance();
                    let sent = Instant::now();
                    let r = grpc
                        .heartbeat_client
                        .heartbeat(api::HeartbeatRequest {
                            osd_id: o.id,
                            boot_instance,
                        })
                        .await;
                    match &r {
                        Ok(_) => fleet.stats.heartbeats.fetch_add(1, Ordering::Relaxed),
                        Err(_) => fleet.stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed),
                    };
                    fleet.record_heartbeat(&o, boot_instance, sent, r.map_err(|e| e.to_string()));
                }
            })
            .await;
    }
}
