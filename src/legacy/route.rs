//! Leader reachability for clients that cannot follow a leader (LEGACY-PROTOCOL.md, "What a
//! compatible monitor does"): the C++ client connects to the first monitor of its list that
//! accepts TCP and stays there, and has no "not leader" answer to read. So every monitor
//! accepts legacy connections, and one that does not lead **forwards** the connection, bytes
//! unchanged, to the leader's port (as Ceph's monitors forward to their leader). Refusing
//! connections on standbys, as the Go monitor did, is not possible here: the framed protocol
//! shares `port` with gRPC, which standbys must keep serving.
//!
//! - A forwarded connection starts with [`FORWARD_PREAMBLE`] on the leader's side, so the
//!   leader knows it was forwarded once already: a monitor that receives a forwarded
//!   connection while not leading (its view and the forwarder's disagreed, during a failover)
//!   never forwards it again, so no chain or loop of forwards can form. It waits for a term of
//!   its own, or closes the connection and lets the client reconnect.
//! - While no leader is known (an election), a new connection waits, up to
//!   [`timing::LEGACY_LEADER_WAIT`]; its requests wait in the socket meanwhile.
//! - A connection is served by one term only: when the term ends, the connection is closed,
//!   and a forwarded one is closed by its forwarder when the leader's side closes. The client
//!   reconnects (the C++ client does on a closed connection) and reaches the new leader
//!   within the failover time plus its reconnect.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::node::Node;
use crate::proto::store::MonitorRecord;
use crate::term::TermContext;
use crate::timing;

/// What a forwarding monitor sends before the client's bytes. Read as a frame length it is
/// about 5 × 10^18, above any frame limit, and it is neither an HTTP/2 preface nor a raw
/// protocol header (whose magic is "WRBF"), so it cannot be mistaken for a client's bytes.
pub const FORWARD_PREAMBLE: [u8; 8] = *b"FBMONFWD";

/// Where a legacy connection goes.
pub enum Route {
    /// This monitor leads: serve it from this term.
    Serve(Arc<TermContext>),
    /// Another monitor leads: forward the bytes to this address.
    Forward(String),
    /// No leader within the wait, or a forwarded connection that reached a monitor which no
    /// longer leads: close it; the client reconnects.
    Close(&'static str),
}

/// Which of the leader's legacy addresses a protocol forwards to.
pub type LeaderAddress = fn(&MonitorRecord) -> &str;

/// Decides where a new connection goes, waiting for a leader while there is none.
/// `forwarded`: the connection came from another monitor (it carried the preamble).
pub async fn route(node: &Node, forwarded: bool, address: LeaderAddress) -> Route {
    let deadline = tokio::time::Instant::now() + timing::LEGACY_LEADER_WAIT;
    loop {
        if let Some(serving) = node.serving() {
            return Route::Serve(serving);
        }
        let view = node.view();
        if let Some(leader) = view.leader.as_ref()
            && leader.record.name != node.me.name
        {
            if forwarded {
                return Route::Close("forwarded here, but this monitor does not lead");
            }
            let target = address(&leader.record);
            if target.is_empty() {
                return Route::Close("the leader does not serve this protocol");
            }
            return Route::Forward(target.to_string());
        }
        if tokio::time::Instant::now() >= deadline {
            return Route::Close("no leader");
        }
        tokio::time::sleep(timing::LEGACY_ROUTE_POLL).await;
    }
}

/// Forwards a client connection to the leader at `address`: the preamble and the client's
/// address (`origin`), the bytes already read from the client (`first`), then both directions
/// unchanged until either side closes.
pub async fn forward<C>(
    mut client: C,
    first: &[u8],
    address: &str,
    origin: Option<IpAddr>,
    local: Option<IpAddr>,
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = tokio::time::timeout(
        timing::LEGACY_FORWARD_CONNECT_TIMEOUT,
        connect_from(address, local),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting to the leader"))??;
    upstream.set_nodelay(true)?;
    let origin = origin.map(|ip| ip.to_string()).unwrap_or_default();
    let mut head = Vec::with_capacity(FORWARD_PREAMBLE.len() + 1 + origin.len() + first.len());
    head.extend_from_slice(&FORWARD_PREAMBLE);
    // An IP address text is at most 45 bytes.
    head.push(origin.len() as u8);
    head.extend_from_slice(origin.as_bytes());
    head.extend_from_slice(first);
    upstream.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Connects to `address` from `local` when given (this monitor's advertised address, which
/// the leader recognises as a monitor's), else from whatever address the route picks.
async fn connect_from(address: &str, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let target = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{address} resolves to nothing")))?;
    let Some(local) = local.filter(|l| l.is_ipv4() == target.is_ipv4()) else {
        return TcpStream::connect(target).await;
    };
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    socket.connect(target).await
}

/// The IP of a monitor's advertised address (`host:port`), when its host is an IP.
pub fn advertised_ip(address: &str) -> Option<IpAddr> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Reads what follows [`FORWARD_PREAMBLE`]: the address of the client the connection was
/// forwarded for (None when the forwarder did not know it).
pub async fn read_origin<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<IpAddr>> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let len = r.read_u8().await? as usize;
    if len > MAX_ORIGIN_TEXT {
        return Err(invalid("forwarded origin too long"));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).await?;
    if len == 0 {
        return Ok(None);
    }
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .map(Some)
        .ok_or_else(|| invalid("forwarded origin is not an IP address"))
}

/// The longest origin text of a forwarded connection (an IPv6 address with an IPv4 tail).
const MAX_ORIGIN_TEXT: usize = 45;

/// Whether `peer` is the address of a registered monitor: only monitors may forward (the
/// origin a forwarded connection names decides which OSDs it may keep alive).
pub fn from_a_monitor(node: &Node, peer: Option<IpAddr>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let host_of = |address: &str| -> Option<IpAddr> {
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    };
    node.view()
        .monitors
        .iter()
        .any(|m| host_of(&m.grpc_address) == Some(peer))
}

/// The framed protocol's address of a monitor: its gRPC port, which serves both.
pub fn framed_address(r: &MonitorRecord) -> &str {
    &r.grpc_address
}

/// The raw protocol's address of a monitor ("" when it serves none).
pub fn raw_address(r: &MonitorRecord) -> &str {
    &r.raw_address
}
