//! Serving the raw protocol: the accept loop of `raw_monitor_port` (one task per connection,
//! routed to this monitor's term or forwarded to the leader, [`super::super::route`]) and the
//! request loop of a served connection.
//!
//! A served connection reads a header and its body, answers from the term's snapshot of that
//! moment (each request reads the current one), and goes on until the peer closes, the term
//! ends (the client reconnects and reaches the new leader), or a header announces a body over
//! the limit (answered, then closed). Requests are answered one at a time in order; a client
//! may pipeline them. Nothing here is a heartbeat (§11).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::{
    HEADER_LEN, Header, Kind, OsdSection, Reply, Status, Unrepresentable, answer, body_too_large,
    check_header, osd_section,
};
use crate::cluster::{ClusterState, Epoch, LeaderEpoch};
use crate::legacy::route::{self, FORWARD_PREAMBLE, Route};
use crate::listener::{Conn, Listener};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::term::TermContext;

/// The `protocol` label of the raw protocol's metrics.
pub const PROTOCOL: &str = "raw";

/// The OSD section of GET_CLUSTER_MAP answers, encoded once per osdmap epoch of a term and
/// shared by every connection (kfastblock clients poll every 3 s, each for the same OSDs).
#[derive(Default)]
pub struct OsdSectionCache {
    last: ArcSwapOption<Cached>,
}

struct Cached {
    leader_epoch: LeaderEpoch,
    osdmap_epoch: Epoch,
    section: OsdSection,
}

impl OsdSectionCache {
    /// The OSD section of `state`, a snapshot of the term `leader_epoch`: the cached one when it
    /// is of the same term and osdmap epoch (every change of an OSD bumps the epoch).
    pub fn get(
        &self,
        leader_epoch: LeaderEpoch,
        state: &ClusterState,
    ) -> Result<OsdSection, Unrepresentable> {
        let osdmap_epoch = state.osdmap_epoch();
        if let Some(c) = self.last.load().as_ref()
            && c.leader_epoch == leader_epoch
            && c.osdmap_epoch == osdmap_epoch
        {
            return Ok(c.section.clone());
        }
        let section = osd_section(state)?;
        self.last.store(Some(Arc::new(Cached {
            leader_epoch,
            osdmap_epoch,
            section: section.clone(),
        })));
        Ok(section)
    }
}

/// Accepts raw-protocol connections until `stop`; each is served, forwarded or closed by a
/// task of its own, which `stop` ends too.
pub async fn serve(mut listener: Listener, node: Arc<Node>, stop: CancellationToken) {
    let cache = Arc::new(OsdSectionCache::default());
    loop {
        let (conn, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let node = node.clone();
        let cache = cache.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                () = connection(conn, remote, &node, &cache) => {}
            }
        });
    }
}

/// One accepted connection: its first 8 bytes (the forwarding preamble, or the start of the
/// client's first header), then where it goes.
async fn connection(mut conn: Conn, remote: SocketAddr, node: &Node, cache: &OsdSectionCache) {
    let mut first = [0u8; FORWARD_PREAMBLE.len()];
    // A connection that never sends its first bytes is closed by the listener's idle timeout
    // (counted there), which fails this read.
    let got = match read_full(&mut conn, &mut first).await {
        Err(e) => {
            tracing::debug!(%remote, error = %e, "raw connection failed before its first request");
            return;
        }
        Ok(n) => n,
    };
    if got < first.len() {
        tracing::debug!(%remote, bytes = got, "raw connection closed before a whole header");
        return;
    }
    let forwarded = first == FORWARD_PREAMBLE;
    if forwarded {
        // Only monitors forward; the origin that follows the preamble means nothing here (no
        // request of this protocol is a heartbeat), it is read past.
        if !route::from_a_monitor(node, Some(remote.ip())) {
            tracing::debug!(%remote, "closing a raw connection that claims to be forwarded but does not come from a monitor");
            return;
        }
        if let Err(e) = route::read_origin(&mut conn).await {
            tracing::debug!(%remote, error = %e, "forwarded raw connection closed in its preamble");
            return;
        }
    }
    // A forwarded connection's client bytes follow the preamble.
    let client_first: &[u8] = if forwarded { &[] } else { &first };
    match route::route(node, forwarded, route::raw_address).await {
        Route::Serve(term) => {
            match serve_connection(conn, client_first, term, &node.metrics, cache).await {
                Ok(end) => tracing::debug!(%remote, forwarded, "raw connection ended: {end}"),
                Err(e) => tracing::debug!(%remote, forwarded, error = %e, "raw connection failed"),
            }
        }
        Route::Forward(leader) => {
            tracing::debug!(%remote, %leader, "forwarding a raw connection to the leader");
            let local = route::advertised_ip(&node.me.grpc_address);
            if let Err(e) =
                route::forward(conn, client_first, &leader, Some(remote.ip()), local).await
            {
                tracing::debug!(%remote, %leader, error = %e, "forwarded raw connection failed");
            }
        }
        Route::Close(why) => tracing::debug!(%remote, forwarded, "closing a raw connection: {why}"),
    }
}

/// How a served connection ended (other than by an I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed between two requests.
    PeerClosed,
    /// The peer closed inside a request, after `got` of its bytes.
    Truncated { got: usize },
    /// The term ended: the client reconnects and reaches the new leader.
    TermEnded,
    /// A header announced a body over the limit; it was answered INVALID_REQUEST.
    TooLarge { body_len: u32 },
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::PeerClosed => f.write_str("closed by the peer"),
            End::Truncated { got } => {
                write!(f, "closed by the peer inside a request ({got} bytes)")
            }
            End::TermEnded => f.write_str("the term ended"),
            End::TooLarge { body_len } => write!(
                f,
                "a body of {body_len} bytes is over the limit of {} bytes",
                super::MAX_BODY_LEN
            ),
        }
    }
}

/// Serves one connection from `term`: `first` are bytes of the client's first header already
/// read (the sniff). Ends when the peer closes, the term ends, or a body is over the limit.
pub async fn serve_connection<S>(
    stream: S,
    first: &[u8],
    term: Arc<TermContext>,
    metrics: &Metrics,
    cache: &OsdSectionCache,
) -> std::io::Result<End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let leader_epoch = term.term.epoch;
    session(
        stream,
        first,
        || term.snapshot(),
        leader_epoch,
        term.term.ended(),
        metrics,
        cache,
    )
    .await
}

/// The request loop of [`serve_connection`], apart from the term (for the unit tests).
pub(crate) async fn session<S>(
    stream: S,
    first: &[u8],
    snapshot: impl Fn() -> Arc<ClusterState>,
    leader_epoch: LeaderEpoch,
    ended: &CancellationToken,
    metrics: &Metrics,
    cache: &OsdSectionCache,
) -> std::io::Result<End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = Incoming {
        first,
        io: BufReader::new(stream),
    };
    loop {
        let step = async {
            let mut raw = [0u8; HEADER_LEN];
            let got = io.fill(&mut raw).await?;
            if got == 0 {
                return Ok(Some(End::PeerClosed));
            }
            if got < HEADER_LEN {
                return Ok(Some(End::Truncated { got }));
            }
            let header = Header::parse(&raw);
            if body_too_large(&header) {
                let started = Instant::now();
                let kind = check_header(&header).unwrap_or(Kind::Invalid);
                let reply = Reply {
                    kind,
                    status: Status::InvalidRequest,
                    body: Vec::new(),
                    why: String::new(),
                };
                io.send(&reply.encode(&header)).await?;
                record(metrics, &reply, started);
                return Ok(Some(End::TooLarge {
                    body_len: header.body_len,
                }));
            }
            // At most MAX_BODY_LEN bytes.
            let mut body = vec![0u8; header.body_len as usize];
            let got = io.fill(&mut body).await?;
            if got < body.len() {
                return Ok(Some(End::Truncated {
                    got: HEADER_LEN + got,
                }));
            }
            let started = Instant::now();
            let state = snapshot();
            let reply = answer(&header, &body, &state, || cache.get(leader_epoch, &state));
            drop(state);
            io.send(&reply.encode(&header)).await?;
            record(metrics, &reply, started);
            if !reply.why.is_empty() {
                tracing::debug!(
                    seq = header.seq,
                    kind = reply.kind.label(),
                    status = ?reply.status,
                    "raw request answered with an error: {}",
                    reply.why
                );
            }
            Ok::<_, std::io::Error>(None)
        };
        let end = tokio::select! {
            biased;
            _ = ended.cancelled() => return Ok(End::TermEnded),
            step = step => step?,
        };
        if let Some(end) = end {
            return Ok(end);
        }
    }
}

fn record(metrics: &Metrics, reply: &Reply, started: Instant) {
    metrics.legacy_request(
        PROTOCOL,
        reply.kind.label(),
        reply.status.result_label(),
        started.elapsed().as_secs_f64(),
    );
}

/// A connection's bytes: those already read (`first`), then the stream's.
struct Incoming<'a, S> {
    first: &'a [u8],
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Incoming<'_, S> {
    /// Fills `buf` unless the peer closes first; how many bytes it got.
    async fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.first.len().min(buf.len());
        buf[..n].copy_from_slice(&self.first[..n]);
        self.first = &self.first[n..];
        Ok(n + read_full(&mut self.io, &mut buf[n..]).await?)
    }

    /// Writes one whole message.
    async fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        self.io.write_all(message).await?;
        self.io.flush().await
    }
}

/// Fills `buf` from `reader` unless the peer closes first; how many bytes it got.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}
