//! The gRPC services: thin handlers that validate, call the core, and map errors to Status.
//! Handlers are grouped by concern in `osds.rs`, `maps.rs`, `pools.rs` and `cluster.rs`; the
//! trait implementation below is generated from the list of calls (`crate::rpcs`) and only
//! dispatches to them. Before a handler runs, `limits.rs` has
//! held the request to its call's size limit and `codec.rs` has decoded it; handlers check the
//! lengths of string fields (`fields.rs`) before building commands from them.

mod backup;
mod cluster;
pub mod codec;
mod convert;
mod events;
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
mod webhooks;

pub use watch_route::{WatchBudget, WithWatchRoute};

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cluster::Command;
use crate::node::Node;
use crate::proto::monitor as api;
use crate::proto::monitor::monitor_server::Monitor;
use crate::term::TermContext;

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
    fn leader(&self) -> Result<Arc<TermContext>, Status> {
        self.node
            .serving()
            .ok_or_else(|| status::not_leader(&self.node.leader_hint()))
    }

    /// Proposes a command on the leader and waits for it to commit.
    async fn propose<C: Command>(
        &self,
        serving: &TermContext,
        command: C,
    ) -> Result<C::Reply, Status> {
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

/// Implements the service trait from the list of calls (`crate::rpcs`): each unary call is
/// counted by method and code and handed to the handler of the same name. The streaming calls
/// are spelled out, since their stream types are named after them; a new stream in the list
/// fails to match here until it is added the same way.
macro_rules! monitor_service {
    (
        any { $($any:tt)* }
        leader { $($leader:tt)* }
        stream {
            WatchClusterMap watch_cluster_map(WatchClusterMapRequest)
                -> WatchClusterMapResponse, $limit:ident;
            Backup backup(BackupRequest) -> BackupChunk, $blimit:ident;
            WatchEvents watch_events(WatchEventsRequest) -> WatchEventsResponse, $elimit:ident;
        }
    ) => {
        monitor_service!(@unary $($any)* $($leader)*);
    };
    (@unary $($name:ident $method:ident($req:ident) -> $resp:ident, $limit:ident;)*) => {
        #[tonic::async_trait]
        impl Monitor for MonitorService {
            $(
                async fn $method(
                    &self,
                    request: Request<api::$req>,
                ) -> Result<Response<api::$resp>, Status> {
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

            type BackupStream =
                tokio_stream::wrappers::ReceiverStream<Result<api::BackupChunk, Status>>;

            async fn backup(
                &self,
                request: Request<api::BackupRequest>,
            ) -> Result<Response<Self::BackupStream>, Status> {
                let started = std::time::Instant::now();
                let result = self.backup(request.into_inner()).await;
                self.record("backup", &result, started);
                result.map(Response::new)
            }

            type WatchEventsStream =
                tokio_stream::wrappers::ReceiverStream<Result<api::WatchEventsResponse, Status>>;

            async fn watch_events(
                &self,
                request: Request<api::WatchEventsRequest>,
            ) -> Result<Response<Self::WatchEventsStream>, Status> {
                let started = std::time::Instant::now();
                let result = self.watch_events(request.into_inner()).await;
                self.record("watch_events", &result, started);
                result.map(Response::new)
            }
        }
    };
}

crate::rpcs::for_each_rpc!(monitor_service);
