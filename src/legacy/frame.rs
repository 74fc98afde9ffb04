//! Framing of the legacy protocol on port 3333 (LEGACY-PROTOCOL.md §6): reading and writing one
//! length-framed message, telling a legacy connection from an HTTP/2 (gRPC) one by its first
//! bytes, and decoding a frame's payload into the `msg.Request` oneof.
//!
//! A frame, in both directions, is an 8-byte **little-endian** unsigned length followed by that
//! many bytes of protobuf. The length counts the payload only, not the 8 header bytes. There is
//! no request id and no version: replies go back in request order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::legacy as msg;

/// Bytes of a frame's length header.
pub const HEADER_LEN: usize = 8;

/// What every HTTP/2 client (so every gRPC client) sends first on a connection (RFC 9113 §3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request kinds are the oneof field numbers 1 to 24 of `msg.Request` (and of
/// `msg.Response`, which answers under the same number).
pub const REQUEST_KINDS: std::ops::RangeInclusive<u64> = 1..=24;

/// The largest payload a connection accepts, in bytes. A `u32` by construction: every possible
/// limit is far below the length an HTTP/2 preface reads as (see [`sniff`]), so a connection
/// can always be told apart by its first bytes whatever the configuration says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxFrameLen(u32);

impl MaxFrameLen {
    /// 1 MiB. The Go monitor read into a fixed 65 535-byte buffer (and crashed beyond it), so
    /// existing clients never send more than that; the larger default leaves room for a
    /// DataStatistics report of an OSD holding thousands of PGs, while one connection still
    /// cannot make the monitor allocate more than this per request.
    pub const DEFAULT: MaxFrameLen = MaxFrameLen(1 << 20);

    /// A limit of `bytes` per payload.
    pub const fn new(bytes: u32) -> Self {
        MaxFrameLen(bytes)
    }

    /// The limit in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for MaxFrameLen {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which part of a frame a connection ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePart {
    /// The 8-byte length.
    Header,
    /// The protobuf after it.
    Payload,
}

impl std::fmt::Display for FramePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FramePart::Header => "length header",
            FramePart::Payload => "payload",
        })
    }
}

/// Why no frame could be read. Each one ends the connection it happened on, and only it.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces more than the limit; refused from the header alone, before any
    /// allocation or read of the payload.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    /// The peer closed the connection inside a frame.
    #[error("connection closed after {got} of the {expected} bytes of a frame {part}")]
    Truncated {
        part: FramePart,
        expected: u64,
        got: u64,
    },
    /// Reading from the connection failed.
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// The payload length a header announces, checked against `max`.
pub fn payload_len(header: [u8; HEADER_LEN], max: MaxFrameLen) -> Result<usize, FrameError> {
    let len = u64::from_le_bytes(header);
    if len > u64::from(max.get()) {
        return Err(FrameError::TooLarge {
            len,
            max: max.get(),
        });
    }
    // At most u32::MAX, so it fits a usize on every platform tokio supports.
    usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: max.get(),
    })
}

/// Reads one frame and returns its payload; `None` when the peer closed the connection cleanly
/// between two frames. The payload buffer is allocated only once the header has passed the
/// limit, and only as large as announced.
pub async fn read_frame<R>(reader: &mut R, max: MaxFrameLen) -> Result<Option<Bytes>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(truncated(FramePart::Header, HEADER_LEN, got));
    }
    let len = payload_len(header, max)?;
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload).await?;
    if got < len {
        return Err(truncated(FramePart::Payload, len, got));
    }
    Ok(Some(Bytes::from(payload)))
}

/// Splits one complete frame off the front of `received` and returns its payload; `None` when
/// the frame is not all there yet (read more and call again). For a reader that receives
/// several pipelined requests in one read. An oversized length is refused as soon as its
/// header is there, before the payload arrives.
pub fn take_frame(received: &mut BytesMut, max: MaxFrameLen) -> Result<Option<Bytes>, FrameError> {
    let Some(header) = received.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = payload_len(*header, max)?;
    if received.len() - HEADER_LEN < len {
        // Room for the rest of this frame, so that the next reads need not grow the buffer.
        received.reserve(HEADER_LEN + len - received.len());
        return Ok(None);
    }
    received.advance(HEADER_LEN);
    Ok(Some(received.split_to(len).freeze()))
}

/// What a connection that ended inside a frame left unread: `Truncated` when it stopped partway.
/// Call it once the peer has closed.
pub fn leftover_error(received: &BytesMut, max: MaxFrameLen) -> Option<FrameError> {
    if received.is_empty() {
        return None;
    }
    let Some(header) = received.first_chunk::<HEADER_LEN>() else {
        return Some(truncated(FramePart::Header, HEADER_LEN, received.len()));
    };
    match payload_len(*header, max) {
        Ok(len) => Some(truncated(
            FramePart::Payload,
            len,
            received.len() - HEADER_LEN,
        )),
        Err(e) => Some(e),
    }
}

/// Writes one frame carrying `payload`, header and payload in one (vectored) write where the
/// writer allows. The caller flushes (replies to pipelined requests can share one flush).
pub async fn write_frame<W>(writer: &mut W, payload: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let header = header(payload.len());
    writer
        .write_all_buf(&mut Buf::chain(&header[..], payload))
        .await
}

/// Writes one frame carrying `payload`'s pieces, with vectored writes where the writer allows:
/// the pieces go from where they are (a cached osdmap shared by every reply) to the socket,
/// never copied into one buffer first.
pub async fn write_payload<W>(writer: &mut W, payload: &Payload) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let header = header(payload.len());
    let mut buf = Buf::chain(
        &header[..],
        PayloadCursor {
            pieces: &payload.pieces,
            offset: 0,
        },
    );
    writer.write_all_buf(&mut buf).await
}

fn header(len: usize) -> [u8; HEADER_LEN] {
    u64::try_from(len).unwrap_or(u64::MAX).to_le_bytes()
}

/// A frame's payload held as pieces sent one after another: small headers built per reply and
/// encodings cached per epoch, which every reply carrying them shares (a `Bytes` clone, no
/// copy).
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// Never an empty piece.
    pieces: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// Appends `piece`.
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    /// Appends `other`'s pieces.
    pub fn append(&mut self, other: Payload) {
        self.len += other.len;
        self.pieces.extend(other.pieces);
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The payload in one buffer (a copy unless it is one piece): for decoding it whole.
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in many {
                    out.put_slice(p);
                }
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(piece: Bytes) -> Self {
        let mut p = Payload::default();
        p.push(piece);
        p
    }
}

/// Reads a [`Payload`] as a `Buf` without consuming it.
struct PayloadCursor<'a> {
    /// The pieces not yet written, the first one from `offset`.
    pieces: &'a [Bytes],
    offset: usize,
}

impl Buf for PayloadCursor<'_> {
    fn remaining(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum::<usize>() - self.offset
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.first().map_or(&[], |p| &p[self.offset..])
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [std::io::IoSlice<'b>]) -> usize {
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(self.pieces) {
            let from = if n == 0 { self.offset } else { 0 };
            *slot = std::io::IoSlice::new(&piece[from..]);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(first) = self.pieces.first() else {
                panic!("advanced past the end of a payload");
            };
            let left = first.len() - self.offset;
            if cnt < left {
                self.offset += cnt;
                return;
            }
            cnt -= left;
            self.pieces = &self.pieces[1..];
            self.offset = 0;
        }
    }
}

/// `message` encoded as one whole frame, header included: for replies encoded once and sent to
/// many connections (one full osdmap per epoch, not one per poll).
pub fn encode_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(HEADER_LEN + len);
    out.put_u64_le(u64::try_from(len).unwrap_or(u64::MAX));
    // A BytesMut grows as needed, so encoding into it cannot fail.
    message.encode_raw(&mut out);
    out.freeze()
}

/// What a connection speaks, from its first [`HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// An HTTP/2 client preface: a gRPC client, to hand to the gRPC server with these bytes.
    Http2,
    /// Anything else is read as a legacy frame header (which may still be refused as too large).
    Legacy,
}

/// Tells a gRPC connection from a legacy one by its first 8 bytes.
///
/// An HTTP/2 client must open with the 24-byte preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`; its
/// first 8 bytes, `PRI * HT`, read as a little-endian length are 0x5448_202A_2049_5250, about
/// 6.07 × 10^18 bytes. A legacy frame under any limit a [`MaxFrameLen`] can hold (a `u32`, so
/// below 2^32) starts with 4 zero bytes in its high half, and `HT *` are not zeros: no valid
/// legacy header equals those 8 bytes, and a legacy client that did send them would have had
/// its frame refused as too large anyway. So the choice is never ambiguous and never depends
/// on the configured limit.
///
/// Waiting for 8 bytes never stalls either side: a gRPC client sends its whole preface before
/// waiting for anything, and a legacy client sends at least a whole header.
pub fn sniff(first_bytes: &[u8; HEADER_LEN]) -> ConnectionKind {
    if first_bytes[..] == HTTP2_PREFACE[..HEADER_LEN] {
        ConnectionKind::Http2
    } else {
        ConnectionKind::Legacy
    }
}

/// Why a frame's payload is not a usable `msg.Request` (or `msg.Response`). The Go monitor
/// closes the connection without a reply on each of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// Not a protobuf of that message (bad varint, wrong wire type, cut field, bad UTF-8, ...).
    #[error("undecodable message: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// An empty payload, or a message whose oneof is not set.
    #[error("message with no kind: its oneof is empty")]
    Empty,
    /// Only fields outside the known kinds (1 to 24); `field` is the first of them.
    #[error("message of unknown kind {field}: the known kinds are 1 to 24")]
    UnknownKind { field: u64 },
}

/// Decodes a frame's payload into the request it carries.
pub fn decode_request(payload: &[u8]) -> Result<msg::request::Union, MessageError> {
    let request = msg::Request::decode(payload)?;
    request.union.ok_or_else(|| missing_kind(payload))
}

/// Decodes a frame's payload into the response it carries (for clients and tests).
pub fn decode_response(payload: &[u8]) -> Result<msg::response::Union, MessageError> {
    let response = msg::Response::decode(payload)?;
    response.union.ok_or_else(|| missing_kind(payload))
}

/// Why a payload that decoded has no kind. Every kind is a oneof member, so a decoded message
/// without one holds only unknown fields: the first key names one of them.
fn missing_kind(payload: &[u8]) -> MessageError {
    match first_key(payload) {
        Some(key) => MessageError::UnknownKind { field: key >> 3 },
        None => MessageError::Empty,
    }
}

/// The first field key (a varint) of an encoded message; `None` when there is none.
fn first_key(mut payload: &[u8]) -> Option<u64> {
    let mut key = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *payload.first()?;
        payload = &payload[1..];
        key |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(key);
        }
    }
    None
}

/// Fills `buf` from `reader` unless the peer closes first; how many bytes it got.
async fn read_full<R>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize>
where
    R: AsyncRead + Unpin,
{
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn truncated(part: FramePart, expected: usize, got: usize) -> FrameError {
    FrameError::Truncated {
        part,
        expected: u64::try_from(expected).unwrap_or(u64::MAX),
        got: u64::try_from(got).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests;
