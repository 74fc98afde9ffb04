//! The gRPC services: thin handlers that validate, call the core, and map errors to Status.
//! Handlers are grouped by concern in `osds.rs`, `maps.rs`, `pools.rs` and `cluster.rs`; the
//! trait implementation below only dispatches to them. Before a handler runs, `limits.rs` has
//! held the request to its call's size limit and `codec.rs` has decoded it; handlers check the
//! lengths of string fields (`fields.rs`) before building commands from them.

mod cluster;
pub mod codec;
mod convert;
mod fields;
pub mod limits;
mod maps;
mod osds;
mod pools;
#[cfg(test)]
mod proptests;
pub mod reasons;
mod requests;
pub mod status;
mod watch;
mod watch_route;

pub use watch_route::{WatchBudget, WithWatchRoute};

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cluster::{Command, Outcome};
use crate::commit::Serving;
use crate::node::Node;
use crate::proto::monitor as api;
use crate::proto::monitor::monitor_server::Monitor;

/// Handlers of the monitor API.
pub struct MonitorService {
    node: Arc<Node>,
    maps: maps::MapCache,
    watches: Arc<watch::WatchCache>,
    watch_budget: Arc<WatchBudget>,
}

impl MonitorService {
    pub fn new(node: Arc<Node>) -> MonitorService {
        let watch_budget = Arc::new(WatchBudget::new(
            node.watch.buffer_budget,
            node.metrics.clone(),
        ));
        MonitorService {
            node,
            maps: maps::MapCache::default(),
            watches: Arc::default(),
            watch_budget,
        }
    }

    /// The serving leader state, or NOT_LEADER with a hint.
    fn leader(&self) -> Result<Arc<Serving>, Status> {
        self.node
            .serving()
            .ok_or_else(|| status::not_leader(&self.node.leader_hint()))
    }

    /// Proposes a command on the leader and waits for it to commit.
    async fn propose(&self, serving: &Serving, command: Command) -> Result<Outcome, Status> {
        serving
            .propose(command)
            .await
            .map_err(|e| status::propose_error(&e, &self.node.leader_hint()))
    }
}

impl MonitorService {
    /// Counts a call by method and code, with its latency.
    fn record<T>(&self, method: &str, result: &Result<T, Status>, started: std::time::Instant) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.node
            .metrics
            .grpc_call(method, code, started.elapsed().as_secs_f64());
    }
}

/// An outcome of the wrong kind for the command: a bug, reported as INTERNAL.
fn unexpected(outcome: Outcome) -> Status {
    status::error(
        tonic::Code::Internal,
        reasons::INTERNAL,
        format!("unexpected outcome {outcome:?}"),
    )
}

macro_rules! dispatch {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Monitor for MonitorService {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let started = std::time::Instant::now();
                    let result = self.$method(request.into_inner()).await;
                    self.record(stringify!($method), &result, started);
                    result.map(Response::new)
                }
            )*

            type WatchClusterMapStream = tokio_stream::wrappers::ReceiverStream<
                Result<crate::wire::WatchClusterMapResponse, Status>,
            >;

            async fn watch_cluster_map(
                &self,
                request: Request<api::WatchClusterMapRequest>,
            ) -> Result<Response<Self::WatchClusterMapStream>, Status> {
                let started = std::time::Instant::now();
                let result = self.watch_cluster_map(request.into_inner()).await;
                self.record("watch_cluster_map", &result, started);
                result.map(Response::new)
            }
        }
    };
}

dispatch! {
    get_leader(api::GetLeaderRequest) -> api::GetLeaderResponse;
    apply_id(api::ApplyIdRequest) -> api::ApplyIdResponse;
    boot(api::BootRequest) -> api::BootResponse;
    osd_stop(api::OsdStopRequest) -> api::OsdStopResponse;
    heartbeat(api::HeartbeatRequest) -> api::HeartbeatResponse;
    osd_out(api::OsdOutRequest) -> api::OsdChangeResponse;
    osd_in(api::OsdInRequest) -> api::OsdChangeResponse;
    set_osd_location(api::SetOsdLocationRequest) -> api::OsdChangeResponse;
    set_osd_weight(api::SetOsdWeightRequest) -> api::OsdChangeResponse;
    purge_osd(api::PurgeOsdRequest) -> api::OsdChangeResponse;
    osd_config(api::OsdConfigRequest) -> api::OsdConfigResponse;
    get_osd_map(api::GetOsdMapRequest) -> api::GetOsdMapResponse;
    get_pg_map(api::GetPgMapRequest) -> api::GetPgMapResponse;
    get_cluster_map(api::GetClusterMapRequest) -> api::GetClusterMapResponse;
    get_pg_osd_info(api::GetPgOsdInfoRequest) -> api::GetPgOsdInfoResponse;
    list_pools(api::ListPoolsRequest) -> api::ListPoolsResponse;
    create_pool(api::CreatePoolRequest) -> api::CreatePoolResponse;
    delete_pool(api::DeletePoolRequest) -> api::DeletePoolResponse;
    create_image(api::CreateImageRequest) -> api::ImageResponse;
    remove_image(api::RemoveImageRequest) -> api::RemoveImageResponse;
    resize_image(api::ResizeImageRequest) -> api::ImageResponse;
    get_image_info(api::GetImageInfoRequest) -> api::ImageResponse;
    leader_be_elected(api::LeaderBeElectedRequest) -> api::PgChangeResponse;
    pg_member_change_finish(api::PgMemberChangeFinishRequest) -> api::PgChangeResponse;
    set_flag(api::SetFlagRequest) -> api::FlagsResponse;
    unset_flag(api::UnsetFlagRequest) -> api::FlagsResponse;
    get_cluster_status(api::GetClusterStatusRequest) -> api::GetClusterStatusResponse;
    data_statistics(api::DataStatisticsRequest) -> api::DataStatisticsResponse;
}
