//! The framed protocol's server on the shared port (`port`, 3333): each accepted connection is
//! told apart by its first 8 bytes (an HTTP/2 preface → handed to the gRPC server with those
//! bytes put back in front; [`FORWARD_PREAMBLE`] → a legacy connection another monitor
//! forwarded; anything else → a legacy frame header), then a legacy connection is routed
//! ([`super::route`]) and served here.
//!
//! A served connection reads ahead (frames are decoded while the previous request is being
//! answered) and answers one request after another, so replies go out in request order and a
//! request sees the effects of the ones before it on the same connection, as with the Go
//! monitor. A frame over the limit, a truncated frame, an undecodable or empty message closes
//! that connection only, with no reply (§6). When the term ends, its connections are closed:
//! their clients reconnect to whoever leads.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LegacySettings;
use super::frame::{self, ConnectionKind, FrameError, HEADER_LEN, MessageError};
use super::maps::MapCache;
use super::route::{self, FORWARD_PREAMBLE, Route};
use super::translate::{Outcome, Session, kind_name};
use crate::listener::{Conn, ConnHandle, Listener};
use crate::node::Node;
use crate::term::TermContext;

/// Requests decoded ahead of the one being answered, per connection.
const READ_AHEAD: usize = 32;
/// gRPC connections sniffed and waiting for the gRPC server to take them.
const GRPC_QUEUE: usize = 1024;

/// The legacy front end of the shared port.
pub struct FramedFront {
    node: Arc<Node>,
    settings: LegacySettings,
    maps: Arc<MapCache>,
}

impl FramedFront {
    pub fn new(node: Arc<Node>, settings: LegacySettings) -> Arc<FramedFront> {
        Arc::new(FramedFront {
            node,
            settings,
            maps: Arc::default(),
        })
    }
}

/// A gRPC connection of the shared port: the bytes read to tell it apart are read again first.
pub struct SniffedConn {
    prefix: Bytes,
    inner: Conn,
}

impl AsyncRead for SniffedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SniffedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for SniffedConn {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        self.inner.handle().clone()
    }
}

/// Accepts the shared port's connections until `stop`: gRPC ones come out of the returned
/// stream (for the gRPC server), legacy ones are served by `front` (when the framed protocol
/// is enabled; otherwise every connection is gRPC's, unread).
pub fn split(
    mut listener: Listener,
    front: Arc<FramedFront>,
    stop: CancellationToken,
) -> impl futures::Stream<Item = io::Result<SniffedConn>> + Send {
    let (tx, rx) = mpsc::channel::<SniffedConn>(GRPC_QUEUE);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                (conn, _) = listener.accept() => conn,
            };
            if !front.settings.framed {
                let grpc = SniffedConn {
                    prefix: Bytes::new(),
                    inner: conn,
                };
                if tx.send(grpc).await.is_err() {
                    return;
                }
                continue;
            }
            tokio::spawn(sniff_and_serve(front.clone(), conn, tx.clone()));
        }
    });
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

/// Reads a connection's first bytes and hands it to the gRPC server or serves it.
async fn sniff_and_serve(front: Arc<FramedFront>, mut conn: Conn, grpc: mpsc::Sender<SniffedConn>) {
    let mut first = [0u8; HEADER_LEN];
    // A connection that never sends 8 bytes is closed by the listener's idle timeout (and is
    // the first to make room at the connection cap), which fails this read: no timer here.
    if conn.read_exact(&mut first).await.is_err() {
        // Closed or cut before 8 bytes: neither a gRPC nor a legacy client.
        return;
    }
    if frame::sniff(&first) == ConnectionKind::Http2 {
        let _ = grpc
            .send(SniffedConn {
                prefix: Bytes::copy_from_slice(&first),
                inner: conn,
            })
            .await;
        return;
    }
    conn.relabel("framed");
    let remote = conn.handle().remote;
    let (forwarded, head, origin) = if first == FORWARD_PREAMBLE {
        // Only another monitor may forward (the origin it names is trusted for liveness).
        if !route::from_a_monitor(&front.node, remote.map(|a| a.ip())) {
            front
                .node
                .metrics
                .legacy_request("framed", "invalid", "refused", 0.0);
            tracing::debug!(
                ?remote,
                "closing a connection that claims to be forwarded but does not come from a monitor"
            );
            return;
        }
        match route::read_origin(&mut conn).await {
            Ok(origin) => (true, Vec::new(), origin),
            Err(e) => {
                tracing::debug!(error = %e, "forwarded connection closed in its preamble");
                return;
            }
        }
    } else {
        (false, first.to_vec(), remote.map(|a| a.ip()))
    };
    match route::route(&front.node, forwarded, route::framed_address).await {
        Route::Serve(term) => serve(&front, conn, head, term, origin).await,
        Route::Forward(address) => {
            let local = route::advertised_ip(&front.node.me.grpc_address);
            if let Err(e) = route::forward(conn, &head, &address, origin, local).await {
                tracing::debug!(error = %e, leader = %address, "forwarded legacy connection ended");
            }
        }
        Route::Close(why) => {
            tracing::debug!(?remote, why, "closing a legacy connection");
        }
    }
}

/// Why a connection's requests stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// Serves one legacy connection from `term` until the peer closes it, it sends something that
/// is not a request, or the term ends.
async fn serve(
    front: &FramedFront,
    conn: Conn,
    head: Vec<u8>,
    term: Arc<TermContext>,
    origin: Option<IpAddr>,
) {
    let metrics = front.node.metrics.clone();
    let (read_half, mut write_half) = tokio::io::split(conn);
    let mut reader = AsyncReadExt::chain(io::Cursor::new(head), read_half);
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let max = front.settings.max_frame;
    let reading = tokio::spawn(async move {
        loop {
            let item = match frame::read_frame(&mut reader, max).await {
                Ok(None) => return,
                Ok(Some(payload)) => frame::decode_request(&payload).map_err(ReadError::from),
                Err(e) => Err(ReadError::from(e)),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    let ended = term.term.ended().clone();
    let mut session = Session::new(front.node.clone(), term, front.maps.clone(), origin);
    loop {
        let item = tokio::select! {
            _ = ended.cancelled() => {
                tracing::debug!(?origin, "the term ended; closing its legacy connection");
                break;
            }
            item = rx.recv() => item,
        };
        let request = match item {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                metrics.legacy_request("framed", "invalid", "refused", 0.0);
                match e {
                    ReadError::Frame(FrameError::Io(_)) => {}
                    other => {
                        tracing::info!(protocol = "framed", ?origin, error = %other, "closing a legacy connection")
                    }
                }
                break;
            }
        };
        let kind = kind_name(&request);
        let started = Instant::now();
        let answer = session.answer(request).await;
        metrics.legacy_request(
            "framed",
            kind,
            answer.outcome.as_str(),
            started.elapsed().as_secs_f64(),
        );
        if frame::write_payload(&mut write_half, &answer.payload)
            .await
            .is_err()
        {
            break;
        }
        if answer.outcome == Outcome::Failed {
            tracing::debug!(
                ?origin,
                kind,
                "this monitor could not answer; closing the legacy connection"
            );
            break;
        }
    }
    reading.abort();
}
