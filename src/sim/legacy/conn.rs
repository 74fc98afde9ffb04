//! One client connection of the legacy framed protocol (LEGACY-PROTOCOL.md §6), as the C++
//! `monitor::client` keeps it: requests pipelined on one TCP connection, replies matched FIFO
//! (the wire has no request ids: the monitor answers in request order), and the connection
//! given up as a whole on the first thing that breaks that order (a close, a bad frame, a reply
//! of the wrong kind, a reply that does not come). The owner then connects again.
//!
//! A writer task sends the frames (several queued requests share one flush) and a reader task
//! hands each reply to the oldest waiting request. A request joins the queue of waiting
//! requests and the writer's channel under one lock, so the two orders are the same.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::legacy::frame::{self, MaxFrameLen};
use crate::proto::legacy as msg;

use msg::request::Union as Req;
use msg::response::Union as Resp;

/// Why a call on a connection failed. Every one of them ends the connection (and fails every
/// request still waiting on it with the same error), except `Connect`, which never had one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnError {
    /// No monitor of the list accepted a TCP connection.
    #[error("no monitor of {tried} accepts TCP connections (last error: {last})")]
    Connect { tried: String, last: String },
    /// The monitor closed the connection (failover, restart, or a request it refused).
    #[error("the monitor at {peer} closed the connection")]
    Closed { peer: String },
    /// Writing or reading failed.
    #[error("connection to {peer}: {error}")]
    Io { peer: String, error: String },
    /// A reply that is not a well-formed frame or `msg.Response`.
    #[error("bad reply from {peer}: {error}")]
    BadReply { peer: String, error: String },
    /// A reply of another kind than the oldest request waiting: the FIFO order is lost.
    #[error("reply of kind {got} from {peer} while a reply of kind {expected} was due")]
    WrongKind {
        peer: String,
        expected: u32,
        got: u32,
    },
    /// A reply with no request waiting for it.
    #[error("reply of kind {got} from {peer} with no request waiting")]
    Unsolicited { peer: String, got: u32 },
    /// No reply within the reply timeout.
    #[error("no reply from {peer} within {timeout:?}")]
    Timeout { peer: String, timeout: Duration },
    /// The connection was closed on our side (the fake OSD was killed or stopped).
    #[error("connection to {peer} closed by this side")]
    Shut { peer: String },
}

/// How a connection behaves.
#[derive(Debug, Clone, Copy)]
pub struct ConnOptions {
    /// Bound of one TCP connect attempt.
    pub connect_timeout: Duration,
    /// How long a request waits for its reply before the connection is given up.
    pub reply_timeout: Duration,
    /// The largest reply accepted. A full cluster map of a big cluster is large: the C++
    /// client grows its buffer for it.
    pub max_reply: MaxFrameLen,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            connect_timeout: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(10),
            max_reply: MaxFrameLen::new(256 << 20),
        }
    }
}

/// One request waiting for its reply.
struct Waiter {
    kind: u32,
    reply: oneshot::Sender<Result<Resp, ConnError>>,
}

/// What the caller, the writer and the reader share.
struct Shared {
    peer: String,
    state: Mutex<State>,
    /// Cancelled once the connection is given up: both tasks stop, the socket closes.
    done: CancellationToken,
}

struct State {
    waiting: VecDeque<Waiter>,
    /// Frames to the writer task; None once the connection is given up.
    frames: Option<mpsc::UnboundedSender<Bytes>>,
    /// Why the connection ended, once it has.
    ended: Option<ConnError>,
}

impl Shared {
    /// Ends the connection with `error` (the first error wins) and fails every waiting request.
    fn fail(&self, error: ConnError) {
        let waiting = {
            let mut st = self.state.lock();
            if st.ended.is_none() {
                st.ended = Some(error);
            }
            st.frames = None;
            std::mem::take(&mut st.waiting)
        };
        self.done.cancel();
        let error = self.ended();
        for w in waiting {
            let _ = w.reply.send(Err(error.clone()));
        }
    }

    fn ended(&self) -> ConnError {
        self.state
            .lock()
            .ended
            .clone()
            .unwrap_or_else(|| ConnError::Shut {
                peer: self.peer.clone(),
            })
    }
}

/// A pipelined connection to one monitor. Dropping it closes the socket.
pub struct Conn {
    shared: Arc<Shared>,
    reply_timeout: Duration,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

impl Conn {
    /// Connects to the first monitor of `monitors` (`host:port`, an `http://` prefix is
    /// dropped) that accepts a TCP connection, in list order, as the C++ client does.
    pub async fn connect(monitors: &[String], options: ConnOptions) -> Result<Conn, ConnError> {
        let mut last = "no monitor address given".to_string();
        for m in monitors {
            let address = strip_scheme(m);
            match tokio::time::timeout(options.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(Conn::over(stream, address.to_string(), options)),
                Ok(Err(e)) => last = format!("{address}: {e}"),
                Err(_) => {
                    last = format!("{address}: no answer within {:?}", options.connect_timeout)
                }
            }
        }
        Err(ConnError::Connect {
            tried: format!("[{}]", monitors.join(", ")),
            last,
        })
    }

    /// A connection over an established stream to `peer`.
    pub fn over(stream: TcpStream, peer: String, options: ConnOptions) -> Conn {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            peer,
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                frames: Some(tx),
                ended: None,
            }),
            done: CancellationToken::new(),
        });
        tokio::spawn(write_frames(shared.clone(), wr, rx));
        tokio::spawn(read_replies(shared.clone(), rd, options.max_reply));
        Conn {
            shared,
            reply_timeout: options.reply_timeout,
        }
    }

    /// The monitor this connection goes to.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// Whether the connection has ended (any call on it fails at once).
    pub fn is_closed(&self) -> bool {
        self.shared.done.is_cancelled()
    }

    /// Closes the connection now, as a crashed process's would be: waiting requests fail.
    pub fn close(&self) {
        self.shared.fail(ConnError::Shut {
            peer: self.shared.peer.clone(),
        });
    }

    /// Sends `request` and waits for its reply. Calls may overlap: they are pipelined and their
    /// replies matched in request order. A reply of another kind than the request's, or none
    /// within the reply timeout, ends the connection.
    pub async fn call(&self, request: Req) -> Result<Resp, ConnError> {
        let kind = request_kind(&request);
        let frame = frame::encode_frame(&msg::Request {
            union: Some(request),
        });
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock();
            let sent = st.frames.as_ref().is_some_and(|f| f.send(frame).is_ok());
            if !sent {
                drop(st);
                return Err(self.shared.ended());
            }
            st.waiting.push_back(Waiter { kind, reply: tx });
        }
        match tokio::time::timeout(self.reply_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(self.shared.ended()),
            Err(_) => {
                // Without request ids a late reply could only be matched to the wrong request.
                self.shared.fail(ConnError::Timeout {
                    peer: self.shared.peer.clone(),
                    timeout: self.reply_timeout,
                });
                Err(self.shared.ended())
            }
        }
    }
}

/// Writes queued frames; requests queued together share one flush.
async fn write_frames(
    shared: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    loop {
        let first = tokio::select! {
            _ = shared.done.cancelled() => break,
            f = frames.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        let write = async {
            wr.write_all(&first).await?;
            while let Ok(f) = frames.try_recv() {
                wr.write_all(&f).await?;
            }
            wr.flush().await
        };
        // A peer that stops reading must not hold the writer once the connection is given up.
        let result = tokio::select! {
            _ = shared.done.cancelled() => break,
            r = write => r,
        };
        if let Err(e) = result {
            shared.fail(ConnError::Io {
                peer: shared.peer.clone(),
                error: e.to_string(),
            });
            break;
        }
    }
    // Dropping the write half sends FIN; the reader stops on `done`, and the socket is closed.
    let _ = wr.shutdown().await;
}

/// Reads replies and hands each to the oldest waiting request.
async fn read_replies(shared: Arc<Shared>, mut rd: OwnedReadHalf, max: MaxFrameLen) {
    loop {
        let read = tokio::select! {
            _ = shared.done.cancelled() => return,
            r = frame::read_frame(&mut rd, max) => r,
        };
        let peer = || shared.peer.clone();
        let payload = match read {
            Ok(Some(p)) => p,
            Ok(None) => return shared.fail(ConnError::Closed { peer: peer() }),
            Err(e) => {
                return shared.fail(ConnError::BadReply {
                    peer: peer(),
                    error: e.to_string(),
                });
            }
        };
        let reply = match frame::decode_response(&payload) {
            Ok(r) => r,
            Err(e) => {
                return shared.fail(ConnError::BadReply {
                    peer: peer(),
                    error: e.to_string(),
                });
            }
        };
        let got = response_kind(&reply);
        let waiter = shared.state.lock().waiting.pop_front();
        match waiter {
            None => return shared.fail(ConnError::Unsolicited { peer: peer(), got }),
            Some(w) if w.kind != got => {
                let error = ConnError::WrongKind {
                    peer: peer(),
                    expected: w.kind,
                    got,
                };
                let _ = w.reply.send(Err(error.clone()));
                return shared.fail(error);
            }
            // A caller that gave up no longer listens; its reply is dropped in its turn.
            Some(w) => {
                let _ = w.reply.send(Ok(reply));
            }
        }
    }
}

/// `host:port` of a monitor address that may carry a scheme.
fn strip_scheme(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    rest.trim_end_matches('/')
}

/// The kind (oneof field number) of every request and response, generated from one list so
/// the two cannot disagree.
macro_rules! kinds {
    ($($n:literal $req:ident $resp:ident,)*) => {
        /// The kind of a request: its oneof field number in `msg.Request`.
        pub fn request_kind(r: &Req) -> u32 {
            match r { $(Req::$req(_) => $n,)* }
        }
        /// The kind of a response: its oneof field number in `msg.Response`.
        pub fn response_kind(r: &Resp) -> u32 {
            match r { $(Resp::$resp(_) => $n,)* }
        }
    };
}

kinds! {
    1 BootRequest BootResponse,
    2 OsdStopRequest OsdStopResponse,
    3 HeartbeatRequest HeartbeatResponse,
    4 GetOsdmapRequest GetOsdmapResponse,
    5 ListPoolsRequest ListPoolsResponse,
    6 ApplyIdRequest ApplyIdResponse,
    7 CreatePoolRequest CreatePoolResponse,
    8 GetPgmapRequest GetPgmapResponse,
    9 DeletePoolRequest DeletePoolResponse,
    10 GetClusterMapRequest GetClusterMapResponse,
    11 CreateImageRequest CreateImageResponse,
    12 RemoveImageRequest RemoveImageResponse,
    13 ResizeImageRequest ResizeImageResponse,
    14 GetImageInfoRequest GetImageInfoResponse,
    15 LeaderBeElectedRequest LeaderBeElectedResponse,
    16 PgMemberChangeFinishRequest PgMemberChangeFinishResponse,
    17 OsdOutRequest OsdOutResponse,
    18 OsdInRequest OsdInResponse,
    19 NoReblanceRequest NoReblanceResponse,
    20 NoOutRequest NoOutResponse,
    21 GetClusterStatusRequest GetClusterStatusResponse,
    22 DataStatisticsRequest DataStatisticsResponse,
    23 OsdConfigRequest OsdConfigResponse,
    24 PgOsdInfoRequest PgOsdInfoResponse,
}
