//! Accepting connections for the gRPC and HTTP servers so that descriptor exhaustion and idle
//! or abusive peers cannot take the monitor down.
//!
//! - Out of descriptors (EMFILE/ENFILE), the accept loop backs off (10 ms doubling to 1 s)
//!   instead of retrying at once: a tight retry loop burns a core and starves everything else.
//! - At most `max_connections` are open per listener. At the cap a new connection takes the
//!   place of the oldest one that has not sent a byte since it was accepted `silent_grace` ago
//!   or more (a working gRPC or HTTP client speaks within a round trip; one that connected and
//!   never spoke is not a client yet), so a pile of silent connections cannot lock clients out
//!   until the idle timeout. When there is none, the new connection is closed at once (the
//!   client learns immediately instead of hanging in the kernel's backlog), and counted.
//! - A connection from which nothing was read for `idle_timeout` is closed. gRPC clients answer
//!   the server's HTTP/2 keep-alive pings (sent more often than the idle timeout, see
//!   [`http2_keepalive_every`]), so live connections never look idle; a peer that connected and
//!   never spoke, or died without a FIN, does.
//! - Every connection carries a [`ConnHandle`] in its request extensions, through which the
//!   monitor can close it (the watch budget cuts the connections of stalled watchers).
//!
//! [`raise_descriptor_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit at start, as the
//! systemd unit's `LimitNOFILE` does, so `make run` from a shell with the usual soft limit of
//! 1,024 is not the bottleneck.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::metrics::Metrics;
use crate::timing;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// At the cap, a connection silent since it was accepted at least this long ago gives its
    /// place to a new one ([`timing::SILENT_GRACE`] outside tests).
    pub silent_grace: Duration,
}

/// How often the gRPC server pings a quiet connection's peer (HTTP/2 keep-alive): at most
/// [`timing::HTTP2_KEEPALIVE_EVERY`], and at most half the idle timeout, so that a live client's
/// ping answers reach the monitor before its connection could count as idle.
pub fn http2_keepalive_every(idle_timeout: Duration) -> Duration {
    timing::HTTP2_KEEPALIVE_EVERY.min(idle_timeout / 2)
}

/// The connections that have not sent a byte yet, by accept order (the oldest first): when
/// each was accepted, and how to close it.
type Silent = Arc<Mutex<BTreeMap<u64, (Instant, CancellationToken)>>>;

/// What the server knows about one connection: where it comes from, and a way to close it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub remote: Option<SocketAddr>,
    close: CancellationToken,
}

impl ConnHandle {
    /// Closes the connection: its reads and writes fail from now on, which ends every stream
    /// on it.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Whether the connection was closed through its handle.
    pub fn is_closed(&self) -> bool {
        self.close.is_cancelled()
    }

    /// A handle whose closing cancels `close` (for tests of what closes connections).
    #[cfg(test)]
    pub(crate) fn for_tests(close: CancellationToken) -> ConnHandle {
        ConnHandle {
            remote: None,
            close,
        }
    }
}

/// Accepts connections within the limits. Which protocol it serves (`"grpc"`, `"http"`) labels
/// its metrics.
pub struct Listener {
    inner: TcpListener,
    limits: ConnLimits,
    protocol: &'static str,
    metrics: Metrics,
    open: Arc<AtomicUsize>,
    silent: Silent,
    accepted: u64,
    backoff: Duration,
    last_warning: Option<Instant>,
}

impl Listener {
    pub fn new(
        inner: TcpListener,
        limits: ConnLimits,
        protocol: &'static str,
        metrics: Metrics,
    ) -> Listener {
        Listener {
            inner,
            limits,
            protocol,
            metrics,
            open: Arc::new(AtomicUsize::new(0)),
            silent: Arc::default(),
            accepted: 0,
            backoff: timing::ACCEPT_BACKOFF_MIN,
            last_warning: None,
        }
    }

    /// The next connection within the limits; errors are handled here (logged, backed off).
    pub async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    self.backoff = timing::ACCEPT_BACKOFF_MIN;
                    if self.open.load(Ordering::Relaxed) >= self.limits.max_connections
                        && !self.replace_oldest_silent()
                    {
                        // Closed at once: the peer learns now instead of hanging.
                        drop(tcp);
                        self.metrics
                            .connections_refused
                            .with_label_values(&[self.protocol])
                            .inc();
                        if self.may_warn() {
                            tracing::warn!(
                                protocol = self.protocol,
                                max_connections = self.limits.max_connections,
                                "connection limit reached; refusing new connections"
                            );
                        }
                        continue;
                    }
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    return (self.wrap(tcp, addr), addr);
                }
                Err(e) if out_of_descriptors(&e) => {
                    self.metrics
                        .accept_errors
                        .with_label_values(&[self.protocol, "out_of_descriptors"])
                        .inc();
                    let pause = self.backoff;
                    if self.may_warn() {
                        tracing::warn!(protocol = self.protocol, error = %e, pause_ms = pause.as_millis() as u64, "out of file descriptors; pausing accepts");
                    }
                    tokio::time::sleep(pause).await;
                    self.backoff = (self.backoff * 2).min(timing::ACCEPT_BACKOFF_MAX);
                }
                // A connection that failed between the SYN and accept: nothing to do.
                Err(e) => {
                    self.metrics
                        .accept_errors
                        .with_label_values(&[self.protocol, "other"])
                        .inc();
                    tracing::debug!(error = %e, "accept failed");
                }
            }
        }
    }

    /// At the cap: closes the oldest connection that has sent nothing for at least the grace,
    /// to make room for a new one. False when there is none. The closed connection's slot is
    /// free once its server task has seen the close, an instant later; until then the count
    /// may exceed the cap by the replacements in flight, which the descriptor reserve absorbs.
    fn replace_oldest_silent(&mut self) -> bool {
        let mut silent = self.silent.lock();
        while let Some(oldest) = silent.first_entry() {
            let (accepted, close) = oldest.get();
            if close.is_cancelled() {
                // Already closing (idle timeout); its slot frees up on its own.
                oldest.remove();
                continue;
            }
            if accepted.elapsed() < self.limits.silent_grace {
                return false;
            }
            let (_, close) = oldest.remove();
            close.cancel();
            drop(silent);
            self.metrics
                .connections_replaced
                .with_label_values(&[self.protocol])
                .inc();
            if self.may_warn() {
                tracing::warn!(
                    protocol = self.protocol,
                    max_connections = self.limits.max_connections,
                    "connection limit reached; closing connections that never sent anything to admit new ones"
                );
            }
            return true;
        }
        false
    }

    /// Whether a warning may be logged now (at most one per [`timing::ACCEPT_WARNING_EVERY`]).
    fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        let may = self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= timing::ACCEPT_WARNING_EVERY);
        if may {
            self.last_warning = Some(now);
        }
        may
    }

    fn wrap(&mut self, tcp: TcpStream, addr: SocketAddr) -> Conn {
        let close = CancellationToken::new();
        let last_read = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let id = self.accepted;
        self.accepted += 1;
        self.silent.lock().insert(id, (base, close.clone()));
        self.open.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .connections_open
            .with_label_values(&[self.protocol])
            .inc();
        tokio::spawn(close_when_idle(
            close.clone(),
            base,
            last_read.clone(),
            self.limits.idle_timeout,
            self.metrics.clone(),
            self.protocol,
        ));
        Conn {
            tcp,
            handle: ConnHandle {
                remote: Some(addr),
                close: close.clone(),
            },
            closed: Box::pin(close.clone().cancelled_owned()),
            base,
            last_read,
            spoke: false,
            open: OpenGuard {
                open: self.open.clone(),
                silent: self.silent.clone(),
                id,
                metrics: self.metrics.clone(),
                protocol: self.protocol,
                close,
            },
        }
    }

    /// The gRPC server's connections, as a stream for tonic.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Conn>> + Send {
        futures::stream::unfold(self, |mut l| async move {
            let (conn, _) = l.accept().await;
            Some((Ok(conn), l))
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        Listener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        || matches!(e.kind(), io::ErrorKind::OutOfMemory)
}

/// Closes the connection once nothing was read from it for `idle`.
async fn close_when_idle(
    close: CancellationToken,
    base: Instant,
    last_read: Arc<AtomicU64>,
    idle: Duration,
    metrics: Metrics,
    protocol: &'static str,
) {
    let mut wait = idle;
    loop {
        tokio::select! {
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let read_at = base + Duration::from_millis(last_read.load(Ordering::Relaxed));
        let quiet = read_at.elapsed();
        if quiet >= idle {
            metrics
                .connections_idle_closed
                .with_label_values(&[protocol])
                .inc();
            tracing::debug!(protocol, "closing a connection idle for {quiet:?}");
            close.cancel();
            return;
        }
        wait = idle - quiet;
    }
}

/// Keeps the count of open connections and the list of silent ones, and stops the idle timer
/// when the connection goes.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    silent: Silent,
    id: u64,
    metrics: Metrics,
    protocol: &'static str,
    close: CancellationToken,
}

impl OpenGuard {
    /// The connection sent something: it is a client, not a candidate for replacement.
    fn spoke(&self) {
        self.silent.lock().remove(&self.id);
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.spoke();
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .connections_open
            .with_label_values(&[self.protocol])
            .dec();
        self.close.cancel();
    }
}

/// An accepted connection: a TCP stream that fails once closed through its handle, and that
/// records when it last read something.
pub struct Conn {
    tcp: TcpStream,
    handle: ConnHandle,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    base: Instant,
    last_read: Arc<AtomicU64>,
    /// Whether anything was read yet.
    spoke: bool,
    open: OpenGuard,
}

impl Conn {
    /// Counts this connection under another protocol from now on: a connection of the shared
    /// port whose first bytes showed it speaks the legacy framed protocol, not gRPC.
    pub fn relabel(&mut self, protocol: &'static str) {
        let metrics = &self.open.metrics;
        metrics
            .connections_open
            .with_label_values(&[self.open.protocol])
            .dec();
        metrics
            .connections_open
            .with_label_values(&[protocol])
            .inc();
        self.open.protocol = protocol;
    }

    /// Where the connection comes from, and how to close it.
    pub fn handle(&self) -> &ConnHandle {
        &self.handle
    }

    fn check_closed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the monitor",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = self.base.elapsed().as_millis() as u64;
            self.last_read.store(ms, Ordering::Relaxed);
            if !self.spoke {
                self.spoke = true;
                self.open.spoke();
            }
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        self.handle.clone()
    }
}

/// Raises the soft limit on open files to the hard limit. Returns (soft, hard) after the call.
pub fn raise_descriptor_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_descriptor_limit().unwrap();
        assert_eq!(soft, hard);
    }

    async fn pair(limits: ConnLimits) -> (Listener, SocketAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        (Listener::new(tcp, limits, "test", Metrics::new()), addr)
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        use tokio::io::AsyncReadExt;
        let (mut l, addr) = pair(ConnLimits {
            max_connections: 1,
            idle_timeout: Duration::from_secs(60),
            // Nothing is old enough to be replaced.
            silent_grace: Duration::from_secs(60),
        })
        .await;
        let _first = TcpStream::connect(addr).await.unwrap();
        let (kept, _) = l.accept().await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        // The listener refuses both while the first is open; the accept returns only when a
        // slot frees up.
        let waiting = tokio::spawn(async move {
            let (c, _) = l.accept().await;
            (c, l)
        });
        let mut b = [0u8; 1];
        assert_eq!(second.read(&mut b).await.unwrap_or(0), 0, "closed");
        assert_eq!(third.read(&mut b).await.unwrap_or(0), 0, "closed");
        drop(kept);
        let _fourth = TcpStream::connect(addr).await.unwrap();
        let (_c, l) = waiting.await.unwrap();
        assert_eq!(l.open.load(Ordering::Relaxed), 1);
        assert_eq!(
            l.metrics
                .connections_refused
                .with_label_values(&["test"])
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_talking_one_is_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut l, addr) = pair(ConnLimits {
            max_connections: 10,
            idle_timeout: Duration::from_millis(300),
            silent_grace: timing::SILENT_GRACE,
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (mut silent_conn, _) = l.accept().await;
        let mut talking = TcpStream::connect(addr).await.unwrap();
        let (mut talking_conn, _) = l.accept().await;
        for _ in 0..6 {
            talking.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            talking_conn.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut b = [0u8; 1];
        let r = silent_conn.read(&mut b).await;
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionAborted),
            "the silent one was closed"
        );
        drop(silent_conn);
        assert_eq!(silent.read(&mut b).await.unwrap_or(0), 0);
        talking.write_all(b"y").await.unwrap();
        talking_conn.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"y", "the talking one is open");
        assert!(!talking_conn.handle.is_closed());
    }

    #[tokio::test]
    async fn closing_through_the_handle_fails_pending_reads() {
        use tokio::io::AsyncReadExt;
        let (mut l, addr) = pair(ConnLimits {
            max_connections: 10,
            idle_timeout: Duration::from_secs(60),
            silent_grace: timing::SILENT_GRACE,
        })
        .await;
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut conn, _) = l.accept().await;
        let handle = tonic::transport::server::Connected::connect_info(&conn);
        let reading = tokio::spawn(async move {
            let mut b = [0u8; 1];
            conn.read(&mut b).await.map_err(|e| e.kind())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle.close();
        assert_eq!(
            reading.await.unwrap(),
            Err(io::ErrorKind::ConnectionAborted)
        );
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_silent_connection_makes_room_for_a_new_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let grace = Duration::from_millis(200);
        let (mut l, addr) = pair(ConnLimits {
            max_connections: 2,
            idle_timeout: Duration::from_secs(60),
            silent_grace: grace,
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (mut silent_conn, _) = l.accept().await;
        let mut talking = TcpStream::connect(addr).await.unwrap();
        let (mut talking_conn, _) = l.accept().await;
        talking.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        talking_conn.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(grace * 2).await;

        // At the cap, the newcomer takes the silent connection's place, not the talking one's.
        let _newcomer = TcpStream::connect(addr).await.unwrap();
        let (newcomer_conn, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
            .await
            .expect("the newcomer was admitted");
        assert_eq!(
            silent_conn.read(&mut b).await.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionAborted),
            "the silent connection was closed"
        );
        drop(silent_conn);
        assert_eq!(
            silent.read(&mut b).await.unwrap_or(0),
            0,
            "its peer sees EOF"
        );
        talking.write_all(b"y").await.unwrap();
        talking_conn.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"y", "the talking one is open");

        // The newcomer has not spoken but is within its grace, and nothing else is silent:
        // the next connection is refused.
        let mut late = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::spawn(async move {
            let (c, _) = l.accept().await;
            (c, l)
        });
        assert_eq!(late.read(&mut b).await.unwrap_or(0), 0, "refused");
        drop(newcomer_conn);
        let _after = TcpStream::connect(addr).await.unwrap();
        let (_c, l) = waiting.await.unwrap();
        let count = |m: &prometheus::IntCounterVec| m.with_label_values(&["test"]).get();
        assert_eq!(count(&l.metrics.connections_replaced), 1);
        assert_eq!(count(&l.metrics.connections_refused), 1);
        assert!(l.silent.lock().len() <= 1, "closed ones are forgotten");
    }

    #[test]
    fn keepalive_pings_come_before_the_idle_timeout() {
        assert_eq!(
            http2_keepalive_every(Duration::from_secs(120)),
            timing::HTTP2_KEEPALIVE_EVERY
        );
        assert_eq!(
            http2_keepalive_every(Duration::from_secs(3)),
            Duration::from_millis(1500)
        );
    }

    #[tokio::test]
    async fn a_quiet_grpc_client_answers_pings_and_is_not_closed_as_idle() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let idle = Duration::from_millis(600);
        let (l, addr) = pair(ConnLimits {
            max_connections: 10,
            idle_timeout: idle,
            silent_grace: timing::SILENT_GRACE,
        })
        .await;
        let metrics = l.metrics.clone();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(http2_keepalive_every(idle)))
                .http2_keepalive_timeout(Some(timing::HTTP2_KEEPALIVE_TIMEOUT))
                .add_service(health)
                .serve_with_incoming(l.into_stream()),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("first call");
        // Quiet for several idle timeouts: only the server's pings and their answers flow.
        tokio::time::sleep(idle * 4).await;
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("call after a quiet spell");
        let series = |m: &prometheus::IntCounterVec| m.with_label_values(&["test"]).get();
        assert_eq!(
            series(&metrics.connections_idle_closed),
            0,
            "the live client's connection was closed as idle"
        );
        assert_eq!(
            metrics.connections_open.with_label_values(&["test"]).get(),
            1,
            "one connection all along"
        );
        server.abort();
    }
}
