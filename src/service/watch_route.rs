//! WatchClusterMap served without a per-stream copy of its updates, within a global budget.
//!
//! tonic encodes every streamed message into a buffer of its own stream, so a full pgmap of a
//! large pool (megabytes), pre-encoded once per epoch, was copied once per watcher; a watcher
//! that stops reading keeps that copy in HTTP/2's send buffer for as long as it stays
//! connected (1,000 such streams held 2 GB). This route answers WatchClusterMap itself: each
//! update goes out as its 5-byte gRPC header and the shared pre-encoded buffer, so watchers at
//! the same epoch hold one buffer between them. (Updates under [`SHARE_FROM`] bytes, deltas
//! mostly, are copied into one frame with their header: cheaper than a frame of their own.)
//!
//! Every update handed to HTTP/2 is *held* until HTTP/2 has written it to the socket (the bytes
//! carry a guard that is dropped with them). [`WatchBudget`] adds up the distinct buffers held;
//! over `watch_buffer_budget`, the connections of the streams that have held an update longest
//! (the slowest readers) are closed, which frees what HTTP/2 buffered for them. Their clients
//! see the connection end and resume from the epochs they have (the client library does).
//! Every other call goes to the generated service unchanged.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use parking_lot::{Mutex, MutexGuard};
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};

use super::{MonitorService, reasons, status};
use crate::listener::ConnHandle;
use crate::metrics::Metrics;
use crate::proto::monitor as api;
use crate::proto::monitor::monitor_server::SERVICE_NAME;
use crate::wire::WatchClusterMapResponse;

/// The path of the call this route answers.
const WATCH_PATH: &str = "/fastblock.monitor.v1.Monitor/WatchClusterMap";
/// Largest WatchClusterMap request accepted (a map of pool epochs).
const MAX_REQUEST: usize = 1 << 20;
/// Updates from this size on are sent as the shared buffer itself (and held in the budget);
/// smaller ones are copied behind their header, which costs less than a frame of their own.
const SHARE_FROM: usize = 16 << 10;

/// The Monitor service with WatchClusterMap answered by this route.
#[derive(Clone)]
pub struct WithWatchRoute<S> {
    inner: S,
    service: Arc<MonitorService>,
}

impl<S> WithWatchRoute<S> {
    /// Wraps the generated service `inner`, built from the same `service`.
    pub fn new(inner: S, service: Arc<MonitorService>) -> Self {
        WithWatchRoute { inner, service }
    }
}

impl<S> tonic::server::NamedService for WithWatchRoute<S> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<S> Service<http::Request<Body>> for WithWatchRoute<S>
where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return Box::pin(self.inner.call(req));
        }
        let service = self.service.clone();
        Box::pin(async move { Ok(watch(service, req).await) })
    }
}

async fn watch(service: Arc<MonitorService>, req: http::Request<Body>) -> http::Response<Body> {
    let started = Instant::now();
    let conn = req.extensions().get::<ConnHandle>().cloned();
    let result = match decode_request(req.into_body()).await {
        Ok(r) => service.watch_cluster_map(r).await,
        Err(status) => Err(status),
    };
    service.record("watch_cluster_map", &result, started);
    match result {
        Ok(stream) => {
            let body = WatchBody {
                rx: stream.into_inner(),
                payload: None,
                done: false,
                stream: service.watch_budget.new_stream(conn),
            };
            let mut response = http::Response::new(Body::new(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// Reads the one length-prefixed request message of the call.
async fn decode_request(body: Body) -> Result<api::WatchClusterMapRequest, Status> {
    let invalid =
        |what: String| status::error(tonic::Code::InvalidArgument, reasons::INVALID_MESSAGE, what);
    let bytes = http_body_util::Limited::new(body, MAX_REQUEST + 5)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                status::error(
                    tonic::Code::ResourceExhausted,
                    reasons::REQUEST_TOO_LARGE,
                    format!("WatchClusterMap requests are limited to {MAX_REQUEST} bytes"),
                )
            } else {
                Status::from_error(e)
            }
        })?
        .to_bytes();
    let Some((&compressed, rest)) = bytes.split_first() else {
        return Err(invalid("empty request".to_string()));
    };
    if compressed != 0 {
        return Err(invalid("compressed requests are not supported".to_string()));
    }
    let (len, message) = rest
        .split_at_checked(4)
        .ok_or_else(|| invalid("truncated message header".to_string()))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if message.len() != len {
        return Err(invalid(format!(
            "the message header says {len} bytes, the request has {}",
            message.len()
        )));
    }
    api::WatchClusterMapRequest::decode(message)
        .map_err(|e| invalid(format!("not a WatchClusterMapRequest: {e}")))
}

/// The response body: each update as its gRPC header, then its shared bytes; the status in the
/// trailers.
struct WatchBody {
    rx: mpsc::Receiver<Result<WatchClusterMapResponse, Status>>,
    payload: Option<Bytes>,
    done: bool,
    stream: StreamHolds,
}

impl http_body::Body for WatchBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(p) = self.payload.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let trailers = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(update))) => {
                let bytes = update.shared_bytes();
                let mut framed = BytesMut::with_capacity(5 + bytes.len().min(SHARE_FROM));
                framed.put_u8(0);
                framed.put_u32(bytes.len() as u32);
                if bytes.len() < SHARE_FROM {
                    // Small: one frame, header and message together. Clients count tiny DATA
                    // frames against a budget (h2 closes a connection that sends too many).
                    framed.put_slice(&bytes);
                } else {
                    self.payload = Some(self.stream.hold(bytes));
                }
                return Poll::Ready(Some(Ok(Frame::data(framed.freeze()))));
            }
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        let mut map = http::HeaderMap::new();
        if let Err(e) = trailers.add_header(&mut map) {
            tracing::warn!(error = %e, "cannot encode a watch stream's final status");
            map.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        Poll::Ready(Some(Ok(Frame::trailers(map))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.payload.is_none()
    }
}

/// Bytes of watch updates held for streams, bounded: the slowest streams' connections are
/// closed when the distinct buffers held exceed the limit.
pub struct WatchBudget {
    limit: usize,
    metrics: Metrics,
    next_stream: AtomicU64,
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    next_hold: u64,
    /// hold id → what it holds.
    holds: HashMap<u64, Hold>,
    /// Buffer (by address) → (its length, holds of it).
    buffers: HashMap<usize, (usize, usize)>,
    /// Bytes of distinct buffers held.
    total: usize,
    /// Streams whose connection was closed (their holds go when HTTP/2 drops them).
    cut: HashSet<u64>,
}

struct Hold {
    stream: u64,
    buffer: usize,
    since: Instant,
    conn: Option<ConnHandle>,
}

impl WatchBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize, metrics: Metrics) -> WatchBudget {
        WatchBudget {
            limit,
            metrics,
            next_stream: AtomicU64::new(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.state.lock()
    }

    fn new_stream(self: &Arc<Self>, conn: Option<ConnHandle>) -> StreamHolds {
        StreamHolds {
            budget: self.clone(),
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            conn,
        }
    }

    /// Records that `stream` holds `bytes` until the returned id is released; cuts the slowest
    /// streams when over the limit.
    fn hold(&self, stream: u64, bytes: &Bytes, conn: &Option<ConnHandle>) -> u64 {
        let mut s = self.lock();
        let id = s.next_hold;
        s.next_hold += 1;
        let buffer = bytes.as_ptr() as usize;
        let entry = s.buffers.entry(buffer).or_insert((bytes.len(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            s.total += bytes.len();
        }
        s.holds.insert(
            id,
            Hold {
                stream,
                buffer,
                since: Instant::now(),
                conn: conn.clone(),
            },
        );
        if s.total > self.limit {
            self.cut_slowest(&mut s, stream);
        }
        self.metrics.watch_held_bytes.set(s.total as i64);
        id
    }

    fn release(&self, id: u64) {
        let mut s = self.lock();
        let Some(hold) = s.holds.remove(&id) else {
            return;
        };
        if let Some(entry) = s.buffers.get_mut(&hold.buffer) {
            entry.1 -= 1;
            if entry.1 == 0 {
                let len = entry.0;
                s.buffers.remove(&hold.buffer);
                s.total -= len;
            }
        }
        if !s.holds.values().any(|h| h.stream == hold.stream) {
            s.cut.remove(&hold.stream);
        }
        self.metrics.watch_held_bytes.set(s.total as i64);
    }

    /// Closes the connections of the streams holding updates the longest (never `current`)
    /// until what the others hold fits the limit.
    fn cut_slowest(&self, s: &mut Held, current: u64) {
        let mut by_age: Vec<(Instant, u64)> = s
            .holds
            .values()
            .filter(|h| h.stream != current && h.conn.is_some() && !s.cut.contains(&h.stream))
            .map(|h| (h.since, h.stream))
            .collect();
        by_age.sort();
        for (_, stream) in by_age {
            if held_by_uncut(s) <= self.limit {
                break;
            }
            if !s.cut.insert(stream) {
                continue;
            }
            if let Some(conn) = s
                .holds
                .values()
                .find(|h| h.stream == stream)
                .and_then(|h| h.conn.clone())
            {
                tracing::warn!(
                    peer = ?conn.remote,
                    held_bytes = s.total,
                    limit = self.limit,
                    "watch buffer budget exceeded; closing the connection of the slowest watcher"
                );
                conn.close();
                self.metrics.watch_streams_cut.inc();
            }
        }
    }
}

/// Bytes of distinct buffers held by streams that were not cut.
fn held_by_uncut(s: &Held) -> usize {
    let mut seen = HashSet::new();
    s.holds
        .values()
        .filter(|h| !s.cut.contains(&h.stream) && seen.insert(h.buffer))
        .map(|h| s.buffers.get(&h.buffer).map_or(0, |b| b.0))
        .sum()
}

/// One stream's side of the budget.
struct StreamHolds {
    budget: Arc<WatchBudget>,
    id: u64,
    conn: Option<ConnHandle>,
}

impl StreamHolds {
    /// The same bytes, held in the budget until HTTP/2 drops them.
    fn hold(&self, bytes: Bytes) -> Bytes {
        let id = self.budget.hold(self.id, &bytes, &self.conn);
        Bytes::from_owner(Tracked {
            bytes,
            _release: Release {
                budget: self.budget.clone(),
                id,
            },
        })
    }
}

/// Shared bytes that release their hold when the last handle on them is dropped.
struct Tracked {
    bytes: Bytes,
    /// Dropped with the bytes.
    _release: Release,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

struct Release {
    budget: Arc<WatchBudget>,
    id: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.budget.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn conn() -> (Option<ConnHandle>, CancellationToken) {
        let token = CancellationToken::new();
        (Some(ConnHandle::for_tests(token.clone())), token)
    }

    #[test]
    fn streams_at_the_same_buffer_count_it_once_and_release_frees_it() {
        let budget = Arc::new(WatchBudget::new(1000, Metrics::new()));
        let map = Bytes::from(vec![7u8; 600]);
        let streams: Vec<StreamHolds> = (0..10).map(|_| budget.new_stream(conn().0)).collect();
        let held: Vec<Bytes> = streams.iter().map(|s| s.hold(map.clone())).collect();
        assert_eq!(budget.lock().total, 600, "one buffer, ten holders");
        assert_eq!(held[3].as_ptr(), map.as_ptr(), "no copy");
        assert_eq!(&held[3][..], &map[..]);
        drop(held);
        assert_eq!(budget.lock().total, 0);
        assert!(budget.lock().holds.is_empty());
    }

    #[test]
    fn over_the_budget_the_longest_holder_is_cut_first() {
        let budget = Arc::new(WatchBudget::new(1000, Metrics::new()));
        let (c1, t1) = conn();
        let (c2, t2) = conn();
        let (c3, t3) = conn();
        let (s1, s2, s3) = (
            budget.new_stream(c1),
            budget.new_stream(c2),
            budget.new_stream(c3),
        );
        // Three distinct 400-byte buffers: the third goes over 1,000.
        let h1 = s1.hold(Bytes::from(vec![1u8; 400]));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let h2 = s2.hold(Bytes::from(vec![2u8; 400]));
        assert!(!t1.is_cancelled() && !t2.is_cancelled());
        let h3 = s3.hold(Bytes::from(vec![3u8; 400]));
        assert!(t1.is_cancelled(), "the oldest holder is cut");
        assert!(
            !t2.is_cancelled() && !t3.is_cancelled(),
            "one cut was enough"
        );
        assert_eq!(budget.metrics.watch_streams_cut.get(), 1);
        // What HTTP/2 held for the cut stream goes with its connection.
        drop(h1);
        assert_eq!(budget.lock().total, 800);
        assert!(budget.lock().cut.is_empty());
        drop((h2, h3));
        assert_eq!(budget.lock().total, 0);
    }

    #[test]
    fn a_stream_is_never_cut_for_its_own_update() {
        let budget = Arc::new(WatchBudget::new(100, Metrics::new()));
        let (c, t) = conn();
        let s = budget.new_stream(c);
        let _h = s.hold(Bytes::from(vec![0u8; 500]));
        assert!(!t.is_cancelled());
    }

    #[tokio::test]
    async fn requests_decode_from_one_length_prefixed_message() {
        let msg = api::WatchClusterMapRequest {
            osdmap_epoch: 7,
            ..Default::default()
        }
        .encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend((msg.len() as u32).to_be_bytes());
        framed.extend(&msg);
        let r = decode_request(Body::new(http_body_util::Full::new(Bytes::from(
            framed.clone(),
        ))))
        .await
        .unwrap();
        assert_eq!(r.osdmap_epoch, 7);
        for (bad, why) in [
            (Vec::new(), "empty request"),
            (vec![1, 0, 0, 0, 0], "compressed"),
            (vec![0, 0, 0], "truncated"),
            (framed[..framed.len() - 1].to_vec(), "header says"),
        ] {
            let e = decode_request(Body::new(http_body_util::Full::new(Bytes::from(bad))))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(why), "{e:?}");
        }
    }
}
