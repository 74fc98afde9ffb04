//! The client library: talks to a list of monitors, follows the leader hint of NOT_LEADER
//! answers, retries unreachable monitors with back-off, and bounds every call by a deadline.
//! fbclient, the simulator, the tests and the benchmarks all use it.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::proto::monitor as api;
use crate::proto::monitor::monitor_client::MonitorClient as RawClient;
use crate::service::reasons;
use crate::service::status::{LEADER_HEADER, reason};

mod events;
mod watch;

pub use events::{EventItem, EventWatcher, Start as EventStart};
pub use watch::{ClusterMaps, MapEvent, MapWatcher, PoolMap, Scope};

/// Tunables of a [`MonitorClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Overall deadline of one logical call, retries included.
    pub deadline: Duration,
    /// Timeout of one attempt against one monitor.
    pub attempt_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// First pause after a round of failures; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid monitor address '{0}'")]
    BadAddress(String),
    #[error("no monitor addresses given")]
    NoMonitors,
    /// The monitor answered with an error (the final one, after following leader hints).
    #[error("{}", describe(.0))]
    Status(Status),
    #[error("no leader reachable within {deadline:?} (last error: {last})")]
    Deadline { deadline: Duration, last: String },
}

impl ClientError {
    /// The gRPC code, when the monitor answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The ErrorInfo reason, when the monitor gave one.
    pub fn reason(&self) -> Option<String> {
        match self {
            ClientError::Status(s) => reason(s),
            _ => None,
        }
    }
}

fn describe(s: &Status) -> String {
    match reason(s) {
        Some(r) => format!("{r}: {}", s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

/// A client of the monitor cluster.
pub struct MonitorClient {
    monitors: Vec<String>,
    options: ClientOptions,
    /// Address of the monitor believed to lead.
    leader: Mutex<Option<String>>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl MonitorClient {
    /// A client of the monitors at `addresses` (`host:port`).
    pub fn new(addresses: &[String], options: ClientOptions) -> Result<MonitorClient, ClientError> {
        if addresses.is_empty() {
            return Err(ClientError::NoMonitors);
        }
        for a in addresses {
            endpoint(a, &options)?;
        }
        Ok(MonitorClient {
            monitors: addresses.to_vec(),
            options,
            leader: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// A client of the same monitors with connections of its own, so that its calls never
    /// queue behind this client's (e.g. heartbeats behind a burst of PG reports).
    pub fn with_own_connections(&self) -> MonitorClient {
        MonitorClient {
            monitors: self.monitors.clone(),
            options: self.options.clone(),
            leader: Mutex::new(self.leader.lock().clone()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The monitors' addresses, as given.
    pub fn addresses(&self) -> &[String] {
        &self.monitors
    }

    /// Parses a comma-separated `host:port,host:port` list.
    pub fn parse_list(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let c = endpoint(address, &self.options)?.connect_lazy();
        channels.insert(address.to_string(), c.clone());
        Ok(c)
    }

    /// Asks any reachable monitor who leads (every monitor answers this).
    pub async fn get_leader(&self) -> Result<api::GetLeaderResponse, ClientError> {
        self.call_any(|mut c| async move {
            c.get_leader(api::GetLeaderRequest {})
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// Asks one specific monitor who leads.
    pub async fn get_leader_from(
        &self,
        address: &str,
    ) -> Result<api::GetLeaderResponse, ClientError> {
        let mut c = raw_client(self.channel(address)?);
        let mut req = tonic::Request::new(api::GetLeaderRequest {});
        req.set_timeout(self.options.attempt_timeout);
        c.get_leader(req)
            .await
            .map(|r| r.into_inner())
            .map_err(ClientError::Status)
    }

    /// The raw generated client for the monitor at `address` (no leader following).
    pub fn raw(&self, address: &str) -> Result<RawClient<Channel>, ClientError> {
        Ok(raw_client(self.channel(address)?))
    }

    /// Calls monitors in turn until one answers (any answer but "unreachable").
    async fn call_any<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(RawClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry(call, false).await.map(|(v, _)| v)
    }

    /// Like [`MonitorClient::call_any`], also returning the address that answered.
    pub async fn call_any_at<T, F, Fut>(&self, call: F) -> Result<(T, String), ClientError>
    where
        F: Fn(RawClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry(call, false).await
    }

    /// Past events (any monitor answers).
    pub async fn list_events(
        &self,
        request: api::ListEventsRequest,
    ) -> Result<api::ListEventsResponse, ClientError> {
        self.call_any(move |mut c| {
            let request = request.clone();
            async move { c.list_events(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Calls the leader, following NOT_LEADER hints.
    pub async fn call_leader<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(RawClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry(call, true).await.map(|(v, _)| v)
    }

    /// Like [`MonitorClient::call_leader`], also returning the address that answered.
    pub async fn call_leader_at<T, F, Fut>(&self, call: F) -> Result<(T, String), ClientError>
    where
        F: Fn(RawClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry(call, true).await
    }

    async fn retry<T, F, Fut>(&self, call: F, leader_only: bool) -> Result<(T, String), ClientError>
    where
        F: Fn(RawClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.options.deadline;
        let mut backoff = self.options.min_backoff;
        let mut next_index = 0usize;
        let mut target = self.cached_leader();
        let mut tried_this_round = 0usize;
        let mut last;
        loop {
            let address = match target.take() {
                Some(a) => a,
                None => {
                    let a = self.monitors[next_index % self.monitors.len()].clone();
                    next_index += 1;
                    tried_this_round += 1;
                    a
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = self.options.attempt_timeout.min(remaining);
            let client = raw_client(self.channel(&address)?);
            match tokio::time::timeout(attempt, call(client)).await {
                Ok(Ok(v)) => {
                    if leader_only {
                        self.remember_leader(Some(address.clone()));
                    }
                    return Ok((v, address));
                }
                Ok(Err(status)) => {
                    if status.code() == Code::Unavailable
                        && reason(&status).as_deref() == Some(reasons::NOT_LEADER)
                    {
                        let hint = leader_hint(&status);
                        last = format!("{address}: {}", status.message());
                        self.remember_leader(None);
                        if let Some(h) = hint.filter(|h| *h != address) {
                            target = Some(h);
                            continue;
                        }
                    } else if is_unreachable(&status) {
                        last = format!("{address}: {}", status.message());
                        if leader_only {
                            self.remember_leader(None);
                        }
                    } else {
                        return Err(ClientError::Status(status));
                    }
                }
                Err(_) => last = format!("{address}: no answer within {attempt:?}"),
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Deadline {
                    deadline: self.options.deadline,
                    last,
                });
            }
            if tried_this_round >= self.monitors.len() {
                tried_this_round = 0;
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(self.options.max_backoff);
            }
        }
    }

    fn cached_leader(&self) -> Option<String> {
        self.leader.lock().clone()
    }

    fn remember_leader(&self, leader: Option<String>) {
        *self.leader.lock() = leader;
    }
}

/// Largest answer accepted: a full map of a large cluster is tens of MiB.
const MAX_RESPONSE: usize = 1 << 30;

fn raw_client(channel: Channel) -> RawClient<Channel> {
    RawClient::new(channel)
        .max_decoding_message_size(MAX_RESPONSE)
        .max_encoding_message_size(usize::MAX)
}

/// Leader-following wrappers of every leader-only call of the list (`crate::rpcs`), named like
/// the RPCs. GetLeader (any monitor answers; [`MonitorClient::get_leader`]) and the map watch
/// (a stream; [`MapWatcher`]) are written by hand.
macro_rules! leader_calls {
    (
        any { $($any:tt)* }
        leader { $($name:ident $method:ident($req:ident) -> $resp:ident, $limit:ident;)* }
        stream { $($stream:tt)* }
    ) => {
        impl MonitorClient {
            $(
                #[doc = concat!(
                    "Calls `", stringify!($name), "` on the leader, following NOT_LEADER hints."
                )]
                pub async fn $method(&self, request: api::$req) -> Result<api::$resp, ClientError> {
                    self.call_leader(move |mut c| {
                        let request = request.clone();
                        async move { c.$method(request).await.map(tonic::Response::into_inner) }
                    })
                    .await
                }
            )*
        }
    };
}

crate::rpcs::for_each_rpc!(leader_calls);

fn endpoint(address: &str, options: &ClientOptions) -> Result<Endpoint, ClientError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|_| ClientError::BadAddress(address.to_string()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20)))
}

/// Expands an OSD's shard table (either form) into one ShardPort per shard, shard i at index i.
pub fn shard_ports(t: &api::ShardTable) -> Vec<api::ShardPort> {
    if t.ports.is_empty() {
        return (0..t.count)
            .map(|i| api::ShardPort {
                core_id: t.first_core_id + i,
                port: t.first_port + i,
                raw_port: t.first_raw_port + i,
            })
            .collect();
    }
    t.core_ids
        .iter()
        .zip(&t.ports)
        .zip(&t.raw_ports)
        .map(|((&core_id, &port), &raw_port)| api::ShardPort {
            core_id,
            port,
            raw_port,
        })
        .collect()
}

/// The leader address from a NOT_LEADER answer (header first, then ErrorInfo metadata).
pub fn leader_hint(status: &Status) -> Option<String> {
    if let Some(v) = status.metadata().get(LEADER_HEADER)
        && let Ok(s) = v.to_str()
        && !s.is_empty()
    {
        return Some(s.to_string());
    }
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("leader").cloned())
        .filter(|s| !s.is_empty())
}

/// Errors that mean "this monitor could not be asked", as opposed to an answer.
fn is_unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) && reason(status).is_none()
        || (status.code() == Code::Unavailable
            && reason(status).as_deref() == Some(reasons::ETCD_UNAVAILABLE))
}
