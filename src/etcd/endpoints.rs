//! The monitor's etcd client when `etcd_server` lists several members: one client per endpoint,
//! each endpoint's health known, and every request sent to a healthy one.
//!
//! etcd-client's own multi-endpoint channel balances requests over all endpoints, dead ones
//! included, so with one member gone a share of all requests failed or hung (a standby's state
//! load, pages of reads, failed as a whole and started over, again and again). Here a request
//! goes to the *preferred* endpoint (the monitor's own embedded member when listed, else the
//! first healthy one); a failure that says the endpoint cannot serve (unreachable, timed out,
//! no raft leader) marks it unhealthy and the same request is tried on the next healthy
//! endpoint at once. A background prober reads through every endpoint every
//! [`timing::ETCD_PROBE_EVERY`] and brings recovered ones back, so a dead endpoint costs at most
//! one request timeout and is then avoided until it is healthy again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tonic::Code;

use crate::timing;

/// One configured endpoint.
struct Endpoint {
    url: String,
    client: etcd_client::Client,
    healthy: AtomicBool,
}

/// etcd clients for every configured endpoint, with health-aware choice. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// In order of preference.
    endpoints: Vec<Endpoint>,
    /// Index of the endpoint requests go to.
    current: AtomicUsize,
    /// Bumped whenever an endpoint's health changes.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Inner {
    /// Records `healthy` for endpoint `i`; true when that changed it.
    fn set_health(&self, i: usize, healthy: bool) -> bool {
        let changed = self
            .endpoints
            .get(i)
            .is_some_and(|e| e.healthy.swap(healthy, Ordering::Relaxed) != healthy);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        changed
    }
}

/// Why an etcd request failed, keeping what matters for choosing what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// The kind of an etcd failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The endpoint cannot serve: unreachable, connection lost, or a member without a raft
    /// leader. Another endpoint may succeed.
    Unavailable,
    /// No answer within the request timeout. Another endpoint may succeed; a write's outcome
    /// is unknown.
    TimedOut,
    /// etcd answered with an error that another endpoint would give as well.
    Refused(Code),
}

impl EtcdFailure {
    /// Classifies an etcd-client error.
    pub fn from_client(e: &etcd_client::Error) -> EtcdFailure {
        let kind = match e {
            etcd_client::Error::GRpcStatus(s) => match s.code() {
                Code::Unavailable | Code::Unknown | Code::Cancelled => FailureKind::Unavailable,
                Code::DeadlineExceeded => FailureKind::TimedOut,
                code => FailureKind::Refused(code),
            },
            etcd_client::Error::TransportError(_)
            | etcd_client::Error::IoError(_)
            | etcd_client::Error::EndpointError(_) => FailureKind::Unavailable,
            etcd_client::Error::WatchError(_)
            | etcd_client::Error::LeaseKeepAliveError(_)
            | etcd_client::Error::ElectError(_) => FailureKind::Unavailable,
            _ => FailureKind::Refused(Code::Internal),
        };
        EtcdFailure {
            kind,
            message: e.to_string(),
        }
    }

    fn timed_out(after: Duration) -> EtcdFailure {
        EtcdFailure {
            kind: FailureKind::TimedOut,
            message: format!("no answer within {after:?}"),
        }
    }

    /// Whether the endpoint (rather than the request) is the problem.
    pub fn endpoint_at_fault(&self) -> bool {
        matches!(self.kind, FailureKind::Unavailable | FailureKind::TimedOut)
    }
}

impl std::fmt::Display for EtcdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EtcdFailure {}

/// Bounds one etcd request by `timeout`, classifying its failure.
pub async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdFailure> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdFailure::from_client(&e)),
        Err(_) => Err(EtcdFailure::timed_out(timeout)),
    }
}

/// The order endpoints are tried in: `prefer` (this monitor's own member) first when listed,
/// then the configured order.
fn preference_order(urls: &[String], prefer: Option<&str>) -> Vec<String> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    let mut out: Vec<String> = Vec::with_capacity(urls.len());
    if let Some(p) = prefer
        && let Some(u) = urls.iter().find(|u| same(u, p) || same(&with_scheme(u), p))
    {
        out.push(u.clone());
    }
    for u in urls {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

fn with_scheme(u: &str) -> String {
    if u.contains("://") {
        u.to_string()
    } else {
        format!("http://{u}")
    }
}

/// The endpoint to use: the first healthy one in preference order (so requests return to this
/// monitor's own member as soon as it is healthy again), else (none healthy) the one after
/// `current`, so that every endpoint keeps being tried.
fn choose(healthy: &[bool], current: usize) -> usize {
    let n = healthy.len();
    if n == 0 {
        return current;
    }
    healthy.iter().position(|h| *h).unwrap_or((current + 1) % n)
}

impl Etcd {
    /// Creates one lazy client per endpoint (this succeeds while etcd is still down) and
    /// starts the health prober, which ends when the last clone of the handle is dropped.
    /// `prefer` is this monitor's own member's client URL, tried first when it is listed.
    pub async fn connect(
        urls: &[String],
        prefer: Option<&str>,
    ) -> Result<Etcd, etcd_client::Error> {
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in preference_order(urls, prefer) {
            let client = etcd_client::Client::connect([url.clone()], Some(options())).await?;
            endpoints.push(Endpoint {
                url,
                client,
                healthy: AtomicBool::new(true),
            });
        }
        if endpoints.is_empty() {
            return Err(etcd_client::Error::InvalidArgs(
                "no etcd endpoint configured".to_string(),
            ));
        }
        let etcd = Etcd {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
                changes: tokio::sync::watch::channel(0).0,
            }),
        };
        if etcd.inner.endpoints.len() > 1 {
            tokio::spawn(probe_loop(Arc::downgrade(&etcd.inner)));
        }
        Ok(etcd)
    }

    /// The client requests should go to now, with its index (for [`Etcd::failed`]). Long-lived
    /// streams (watches, keep-alives, a campaign) are opened on it and reopened on a fresh
    /// pick when they break.
    pub fn pick(&self) -> (usize, etcd_client::Client) {
        let healthy: Vec<bool> = self
            .inner
            .endpoints
            .iter()
            .map(|e| e.healthy.load(Ordering::Relaxed))
            .collect();
        let current = self.inner.current.load(Ordering::Relaxed);
        let i = choose(&healthy, current);
        if i != current {
            self.inner.current.store(i, Ordering::Relaxed);
            tracing::info!(endpoint = %self.inner.endpoints[i].url, "etcd requests now go to this endpoint");
        }
        (i, self.inner.endpoints[i].client.clone())
    }

    /// The client requests should go to now.
    pub fn client(&self) -> etcd_client::Client {
        self.pick().1
    }

    /// Reports that a request through endpoint `i` failed with `e`: an endpoint at fault is
    /// avoided until the prober finds it healthy again.
    pub fn failed(&self, i: usize, e: &EtcdFailure) {
        if !e.endpoint_at_fault() || self.inner.endpoints.len() < 2 {
            return;
        }
        if self.inner.set_health(i, false) {
            let url = &self.inner.endpoints[i].url;
            tracing::warn!(endpoint = %url, error = %e, "etcd endpoint unhealthy; avoiding it");
        }
    }

    /// Whether endpoint `i` is considered healthy.
    pub fn is_healthy(&self, i: usize) -> bool {
        self.inner
            .endpoints
            .get(i)
            .is_some_and(|e| e.healthy.load(Ordering::Relaxed))
    }

    /// Returns once endpoint `i` is found unhealthy (never with a single endpoint). A
    /// long-lived call on it (a campaign) is then better started again on a healthy one than
    /// left waiting for the connection to time out.
    pub async fn until_unhealthy(&self, i: usize) {
        if self.inner.endpoints.len() < 2 {
            return std::future::pending().await;
        }
        let mut changes = self.inner.changes.subscribe();
        loop {
            if !self.is_healthy(i) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Runs `request` on a healthy endpoint within `timeout`; when the endpoint turns out to be
    /// at fault, tries the next one at once (each endpoint at most once). Only for requests
    /// that may safely be sent twice: reads, and the pipeline's fenced transactions of absolute
    /// values.
    pub async fn request<T, F, Fut>(
        &self,
        timeout: Duration,
        mut request: F,
    ) -> Result<T, EtcdFailure>
    where
        F: FnMut(etcd_client::Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.inner.endpoints.len() {
            let (i, client) = self.pick();
            match within(timeout, request(client)).await {
                Ok(v) => return Ok(v),
                Err(e) if e.endpoint_at_fault() => {
                    self.failed(i, &e);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| EtcdFailure::timed_out(timeout)))
    }

    /// A read of `key` (with `options`) through [`Etcd::request`], bounded by
    /// [`timing::ETCD_REQUEST_TIMEOUT`].
    pub async fn get(
        &self,
        key: String,
        options: Option<etcd_client::GetOptions>,
    ) -> Result<etcd_client::GetResponse, EtcdFailure> {
        self.request(timing::ETCD_REQUEST_TIMEOUT, |c| {
            let (key, options) = (key.clone(), options.clone());
            let mut kv = c.kv_client();
            async move { kv.get(key, options).await }
        })
        .await
    }

    /// A transaction through [`Etcd::request`], bounded by [`timing::ETCD_REQUEST_TIMEOUT`]
    /// (sent again on another endpoint only when the first was at fault: give it compares that
    /// make a second send harmless, such as the leader fence with absolute values).
    pub async fn txn(
        &self,
        txn: etcd_client::Txn,
    ) -> Result<etcd_client::TxnResponse, EtcdFailure> {
        self.request(timing::ETCD_REQUEST_TIMEOUT, |c| {
            let txn = txn.clone();
            let mut kv = c.kv_client();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// The configured endpoints in preference order, with whether each is healthy.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.inner
            .endpoints
            .iter()
            .map(|e| (e.url.clone(), e.healthy.load(Ordering::Relaxed)))
            .collect()
    }
}

fn options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new()
        .with_connect_timeout(timing::ETCD_CONNECT_TIMEOUT)
        // HTTP/2 pings find a dead or frozen peer within seconds instead of TCP's minutes.
        .with_keep_alive(timing::ETCD_KEEPALIVE_EVERY, timing::ETCD_KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(true)
        // A member cut off from its cluster refuses requests instead of serving stale data or
        // letting a campaign hang.
        .with_require_leader(true)
}

/// Probes every endpoint with a linearizable read (it needs the member to be up and to have
/// a raft leader) and records the result, until the handle is gone.
async fn probe_loop(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(timing::ETCD_PROBE_EVERY).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let probes = inner.endpoints.iter().map(|e| {
            let mut kv = e.client.kv_client();
            async move {
                let opts = etcd_client::GetOptions::new().with_count_only();
                within(timing::ETCD_PROBE_TIMEOUT, kv.get("/", Some(opts))).await
            }
        });
        let results = futures::future::join_all(probes).await;
        for (i, (e, r)) in inner.endpoints.iter().zip(results).enumerate() {
            if inner.set_health(i, r.is_ok()) {
                match r {
                    Ok(_) => tracing::info!(endpoint = %e.url, "etcd endpoint healthy again"),
                    Err(err) => {
                        tracing::warn!(endpoint = %e.url, error = %err, "etcd endpoint unhealthy")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_member_first_then_configured_order() {
        let u = urls(&["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]);
        assert_eq!(preference_order(&u, None), u);
        assert_eq!(
            preference_order(&u, Some("http://10.0.0.2:2379")),
            urls(&["10.0.0.2:2379", "10.0.0.1:2379", "10.0.0.3:2379"])
        );
        assert_eq!(
            preference_order(&u, Some("http://10.0.0.9:2379")),
            u,
            "not listed: configured order"
        );
        let with = urls(&["http://a:1", "http://b:1/"]);
        assert_eq!(
            preference_order(&with, Some("http://b:1")),
            urls(&["http://b:1/", "http://a:1"])
        );
    }

    #[test]
    fn the_first_healthy_endpoint_in_preference_order_is_chosen() {
        assert_eq!(
            choose(&[true, true, true], 1),
            0,
            "back to the preferred one"
        );
        assert_eq!(choose(&[false, true, true], 1), 1);
        assert_eq!(choose(&[true, false, true], 1), 0, "first healthy");
        assert_eq!(choose(&[false, false, true], 0), 2);
        // None healthy: rotate so every endpoint keeps being tried.
        assert_eq!(choose(&[false, false, false], 0), 1);
        assert_eq!(choose(&[false, false, false], 2), 0);
        assert_eq!(choose(&[], 0), 0);
    }

    #[test]
    fn failures_are_classified_by_what_another_endpoint_could_do() {
        let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
        let kind = |e: etcd_client::Error| EtcdFailure::from_client(&e).kind;
        assert_eq!(kind(status(Code::Unavailable)), FailureKind::Unavailable);
        assert_eq!(kind(status(Code::DeadlineExceeded)), FailureKind::TimedOut);
        assert_eq!(
            kind(status(Code::InvalidArgument)),
            FailureKind::Refused(Code::InvalidArgument)
        );
        assert!(!EtcdFailure::from_client(&status(Code::FailedPrecondition)).endpoint_at_fault());
        assert!(EtcdFailure::timed_out(Duration::from_secs(1)).endpoint_at_fault());
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_skipped_within_one_request() {
        // Nothing listens on port 1 of these loopback addresses: connecting fails at once.
        let etcd = Etcd::connect(&urls(&["127.0.0.1:1", "127.0.0.2:1"]), None)
            .await
            .unwrap();
        let mut tried = Vec::new();
        let r = etcd
            .request(Duration::from_secs(2), |c| {
                tried.push(etcd.health().len());
                let mut kv = c.kv_client();
                async move { kv.get("k", None).await }
            })
            .await;
        assert!(matches!(r, Err(ref e) if e.endpoint_at_fault()), "{r:?}");
        assert_eq!(tried.len(), 2, "each endpoint once");
        assert!(
            etcd.health().iter().all(|(_, h)| !h),
            "both marked unhealthy"
        );
    }
}
