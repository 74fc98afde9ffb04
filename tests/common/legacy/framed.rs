//! The framing of LEGACY-PROTOCOL.md §6 (an 8-byte little-endian unsigned length, then that
//! many bytes of protobuf) and a client of the framed protocol over one TCP connection:
//! `call` for one request at a time, `send`/`recv` for pipelining (replies come in request
//! order), and raw byte access for the bad-input tests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::messages::{Request, Response, ResponseError};

/// Bytes of the length prefix of every frame.
pub const LENGTH_BYTES: usize = 8;

/// The largest response this client accepts: far above any map a test cluster produces, and
/// small enough that a corrupt length is refused before allocating.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// How long `recv` waits for a reply before giving up, so a lost reply fails a test instead of
/// hanging it.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// `payload` as one frame: its length as 8 little-endian bytes, then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(LENGTH_BYTES + payload.len());
    framed.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    framed.extend_from_slice(payload);
    framed
}

/// Why a call on the framed protocol failed.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The monitor closed the connection where a frame would start.
    #[error("connection closed by the monitor")]
    Closed,
    /// The connection ended inside a frame.
    #[error("connection closed after {got} of {expected} bytes of a frame")]
    Truncated { got: usize, expected: usize },
    /// A frame length over [`MAX_RESPONSE_BYTES`].
    #[error("response frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("bad response: {0}")]
    Response(#[from] ResponseError),
    /// `call` while `in_flight` pipelined requests still wait for their replies.
    #[error("{in_flight} requests still in flight")]
    Busy { in_flight: usize },
    /// A reply of another kind than the request at the head of the pipeline.
    #[error("expected a response of kind {expected}, got kind {got}")]
    WrongKind { expected: u32, got: u32 },
}

/// One connection to a monitor's framed-protobuf port.
pub struct LegacyClient {
    stream: TcpStream,
    /// Kinds of the requests sent and not yet answered, oldest first (the FIFO the C++ client
    /// matches replies against).
    in_flight: std::collections::VecDeque<u32>,
    reply_timeout: Duration,
}

impl LegacyClient {
    /// Connects to `address` (`host:port`).
    pub async fn connect(address: &str) -> Result<Self, LegacyError> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(LegacyClient {
            stream,
            in_flight: Default::default(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        })
    }

    /// Connects to `address` from the local address `from` (an OSD's own address, for the
    /// monitor's rule that a connection from an OSD's address speaks for it).
    pub async fn connect_from(address: &str, from: std::net::IpAddr) -> Result<Self, LegacyError> {
        let target: std::net::SocketAddr = tokio::net::lookup_host(address)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(from, 0))?;
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(LegacyClient {
            stream,
            in_flight: Default::default(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        })
    }

    /// Sets how long `recv` and `recv_frame` wait.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// Sends one request and waits for its reply. Refused while pipelined requests are in
    /// flight (the next reply would be theirs): `recv` those first.
    pub async fn call(&mut self, request: &Request) -> Result<Response, LegacyError> {
        if !self.in_flight.is_empty() {
            return Err(LegacyError::Busy {
                in_flight: self.in_flight.len(),
            });
        }
        self.send(request).await?;
        self.recv().await
    }

    /// Sends one request without waiting for its reply.
    pub async fn send(&mut self, request: &Request) -> Result<(), LegacyError> {
        self.send_raw(&frame(&request.encode())).await?;
        self.in_flight.push_back(request.kind());
        Ok(())
    }

    /// Receives the reply to the oldest request in flight and checks it is of that request's
    /// kind.
    pub async fn recv(&mut self) -> Result<Response, LegacyError> {
        let payload = self.recv_frame().await?;
        let response = Response::decode(&payload)?;
        if let Some(expected) = self.in_flight.pop_front()
            && expected != response.kind()
        {
            return Err(LegacyError::WrongKind {
                expected,
                got: response.kind(),
            });
        }
        Ok(response)
    }

    /// Writes `bytes` as they are: a hand-made frame, a bad length, half a frame.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), LegacyError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one frame's payload.
    pub async fn recv_frame(&mut self) -> Result<Vec<u8>, LegacyError> {
        let timeout = self.reply_timeout;
        tokio::time::timeout(timeout, self.read_frame())
            .await
            .map_err(|_| LegacyError::Timeout(timeout))?
    }

    async fn read_frame(&mut self) -> Result<Vec<u8>, LegacyError> {
        let mut length = [0u8; LENGTH_BYTES];
        let got = read_full(&mut self.stream, &mut length).await?;
        if got == 0 {
            return Err(LegacyError::Closed);
        }
        if got < LENGTH_BYTES {
            return Err(LegacyError::Truncated {
                got,
                expected: LENGTH_BYTES,
            });
        }
        let len = u64::from_le_bytes(length);
        if len > MAX_RESPONSE_BYTES {
            return Err(LegacyError::TooLarge {
                len,
                max: MAX_RESPONSE_BYTES,
            });
        }
        let mut payload = vec![0u8; len as usize];
        let got = read_full(&mut self.stream, &mut payload).await?;
        if got < payload.len() {
            return Err(LegacyError::Truncated {
                got: LENGTH_BYTES + got,
                expected: LENGTH_BYTES + payload.len(),
            });
        }
        Ok(payload)
    }

    /// Waits up to `within` for the monitor to close the connection, reading and dropping
    /// anything it sends first; true if it closed (end of stream or reset).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut sink = [0u8; 4096];
        let closing = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, closing).await.is_ok()
    }
}

/// Reads until `buffer` is full or the stream ends; the number of bytes read.
async fn read_full(stream: &mut TcpStream, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = stream.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}
