//! Framing, sniffing and request decoding: exact bytes, every error, and hostile input.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use proptest::prelude::*;
use tokio::io::ReadBuf;

use super::*;
use crate::fuzzing;
use crate::proto::legacy::request::Union;

/// A reader that hands out at most `chunk` bytes per read, then ends (or fails, when `fail`).
struct Chunked {
    bytes: Vec<u8>,
    at: usize,
    chunk: usize,
    fail: bool,
}

impl Chunked {
    fn new(bytes: &[u8], chunk: usize) -> Self {
        Chunked {
            bytes: bytes.to_vec(),
            at: 0,
            chunk: chunk.max(1),
            fail: false,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at == self.bytes.len() && self.fail {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )));
        }
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.bytes.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_all(bytes: &[u8], chunk: usize, max: MaxFrameLen) -> (Vec<Bytes>, Option<FrameError>) {
    let mut reader = Chunked::new(bytes, chunk);
    let mut frames = Vec::new();
    loop {
        match block_on(read_frame(&mut reader, max)) {
            Ok(Some(payload)) => frames.push(payload),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// The same bytes through `take_frame`, fed `chunk` bytes at a time.
fn take_all(bytes: &[u8], chunk: usize, max: MaxFrameLen) -> (Vec<Bytes>, Option<FrameError>) {
    let mut received = BytesMut::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        received.extend_from_slice(piece);
        loop {
            match take_frame(&mut received, max) {
                Ok(Some(payload)) => frames.push(payload),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, leftover_error(&received, max))
}

#[test]
fn the_header_is_a_little_endian_length_of_the_payload_alone() {
    let mut out = Vec::new();
    block_on(write_frame(&mut out, b"abc")).unwrap();
    assert_eq!(out, [3, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c']);
    let mut out = Vec::new();
    block_on(write_frame(&mut out, &[7u8; 0x0102])).unwrap();
    assert_eq!(out[..HEADER_LEN], [0x02, 0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(out.len(), HEADER_LEN + 0x0102);
}

/// A writer that takes at most `chunk` bytes per write (vectored or not, as `vectored` says)
/// and counts its writes.
struct ChunkedWriter {
    out: Vec<u8>,
    chunk: usize,
    vectored: bool,
    writes: usize,
}

impl ChunkedWriter {
    fn new(chunk: usize, vectored: bool) -> Self {
        ChunkedWriter {
            out: Vec::new(),
            chunk,
            vectored,
            writes: 0,
        }
    }
}

impl AsyncWrite for ChunkedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk);
        self.out.extend_from_slice(&buf[..n]);
        self.writes += 1;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.chunk - n);
            self.out.extend_from_slice(&b[..take]);
            n += take;
            if n == self.chunk {
                break;
            }
        }
        self.writes += 1;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn a_payload_of_pieces_is_written_as_the_frame_of_their_concatenation() {
    let pieces: [&'static [u8]; 4] = [b"ab", &[9u8; 300], b"", b"xyz"];
    let mut payload = Payload::default();
    let mut whole = Vec::new();
    for p in pieces {
        payload.push(Bytes::from_static(p));
        whole.extend_from_slice(p);
    }
    assert_eq!(payload.len(), whole.len());
    assert_eq!(payload.pieces().len(), 3, "empty pieces are not kept");
    assert_eq!(payload.to_bytes()[..], whole[..]);
    let expected = frame(&whole);
    // Every split of the writes, across the header and the pieces' boundaries.
    for chunk in [1, 2, 3, 7, 8, 9, 10, 301, 4096] {
        for vectored in [false, true] {
            let mut w = ChunkedWriter::new(chunk, vectored);
            block_on(write_payload(&mut w, &payload)).unwrap();
            assert_eq!(w.out, expected, "chunk {chunk}, vectored {vectored}");
        }
    }
    // Header and every piece in one vectored write when the writer takes it all.
    let mut w = ChunkedWriter::new(usize::MAX, true);
    block_on(write_payload(&mut w, &payload)).unwrap();
    assert_eq!((w.out, w.writes), (expected, 1));
    // And a plain frame likewise (header and payload are no longer two writes).
    let mut w = ChunkedWriter::new(usize::MAX, true);
    block_on(write_frame(&mut w, b"abc")).unwrap();
    assert_eq!((w.out, w.writes), (frame(b"abc"), 1));
    // An empty payload is a header alone.
    let mut w = ChunkedWriter::new(3, true);
    block_on(write_payload(&mut w, &Payload::default())).unwrap();
    assert_eq!(w.out, frame(b""));
}

#[test]
fn encode_frame_writes_what_write_frame_writes() {
    let request = msg::Request {
        union: Some(Union::ApplyIdRequest(msg::ApplyIdRequest {
            uuid: "u".into(),
        })),
    };
    let mut written = Vec::new();
    block_on(write_frame(&mut written, &request.encode_to_vec())).unwrap();
    assert_eq!(encode_frame(&request)[..], written[..]);
}

#[test]
fn pipelined_frames_are_read_in_order_then_a_clean_close() {
    let mut bytes = frame(b"first");
    bytes.extend(frame(b""));
    bytes.extend(frame(b"third"));
    for chunk in [1, 3, 8, 1024] {
        let (frames, end) = read_all(&bytes, chunk, MaxFrameLen::DEFAULT);
        assert_eq!(frames, [&b"first"[..], b"", b"third"], "chunk {chunk}");
        assert!(end.is_none(), "chunk {chunk}: {end:?}");
        let (frames, end) = take_all(&bytes, chunk, MaxFrameLen::DEFAULT);
        assert_eq!(frames, [&b"first"[..], b"", b"third"], "chunk {chunk}");
        assert!(end.is_none(), "chunk {chunk}: {end:?}");
    }
}

#[test]
fn an_oversized_length_is_refused_from_the_header_alone() {
    // Nothing follows the header: reading on would give Truncated, so TooLarge shows that the
    // limit is checked before any payload is read or allocated.
    let header = (1u64 << 40).to_le_bytes();
    let (frames, end) = read_all(&header, 8, MaxFrameLen::DEFAULT);
    assert!(frames.is_empty());
    assert!(
        matches!(end, Some(FrameError::TooLarge { len, max }) if len == 1 << 40 && max == 1 << 20),
        "{end:?}"
    );
    let (_, end) = take_all(&header, 8, MaxFrameLen::DEFAULT);
    assert!(
        matches!(end, Some(FrameError::TooLarge { len, .. }) if len == 1 << 40),
        "{end:?}"
    );
    let (_, end) = read_all(&u64::MAX.to_le_bytes(), 8, MaxFrameLen::new(u32::MAX));
    assert!(
        matches!(
            end,
            Some(FrameError::TooLarge {
                len: u64::MAX,
                max: u32::MAX
            })
        ),
        "{end:?}"
    );
}

#[test]
fn the_limit_itself_is_accepted_and_one_more_is_not() {
    let max = MaxFrameLen::new(16);
    let (frames, end) = read_all(&frame(&[1; 16]), 5, max);
    assert_eq!(frames.len(), 1);
    assert!(end.is_none());
    let (frames, end) = read_all(&frame(&[1; 17]), 5, max);
    assert!(frames.is_empty());
    assert!(
        matches!(end, Some(FrameError::TooLarge { len: 17, max: 16 })),
        "{end:?}"
    );
    assert_eq!(
        end.unwrap().to_string(),
        "frame of 17 bytes is over the limit of 16 bytes"
    );
}

#[test]
fn a_connection_closed_inside_a_frame_is_truncated() {
    let cut_header = [5, 0, 0];
    let mut cut_payload = frame(b"whole");
    cut_payload.extend(&frame(b"0123456789")[..HEADER_LEN + 4]);
    for (bytes, part, expected, got, whole) in [
        (&cut_header[..], FramePart::Header, 8, 3, 0),
        (&cut_payload[..], FramePart::Payload, 10, 4, 1),
    ] {
        for (frames, end) in [
            read_all(bytes, 2, MaxFrameLen::DEFAULT),
            take_all(bytes, 2, MaxFrameLen::DEFAULT),
        ] {
            assert_eq!(frames.len(), whole);
            match end {
                Some(FrameError::Truncated {
                    part: p,
                    expected: e,
                    got: g,
                }) => assert_eq!((p, e, g), (part, expected, got)),
                other => panic!("expected Truncated, got {other:?}"),
            }
        }
    }
    let (_, end) = read_all(&cut_header, 8, MaxFrameLen::DEFAULT);
    assert_eq!(
        end.unwrap().to_string(),
        "connection closed after 3 of the 8 bytes of a frame length header"
    );
}

#[test]
fn a_failing_connection_is_an_io_error() {
    let mut reader = Chunked::new(&frame(b"ok")[..5], 8);
    reader.fail = true;
    let end = block_on(read_frame(&mut reader, MaxFrameLen::DEFAULT));
    assert!(
        matches!(&end, Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
}

#[test]
fn take_frame_waits_for_the_whole_frame_and_leaves_the_next_one() {
    let mut received = BytesMut::from(&frame(b"abcdef")[..10]);
    assert!(
        take_frame(&mut received, MaxFrameLen::DEFAULT)
            .unwrap()
            .is_none()
    );
    assert_eq!(received.len(), 10, "nothing consumed while incomplete");
    received.extend_from_slice(b"cdef");
    received.extend_from_slice(&frame(b"next")[..3]);
    let payload = take_frame(&mut received, MaxFrameLen::DEFAULT).unwrap();
    assert_eq!(payload.as_deref(), Some(&b"abcdef"[..]));
    assert_eq!(received.len(), 3, "the start of the next frame stays");
    assert!(leftover_error(&BytesMut::new(), MaxFrameLen::DEFAULT).is_none());
}

#[test]
fn an_http2_preface_is_told_from_a_legacy_header() {
    let preface: [u8; HEADER_LEN] = HTTP2_PREFACE[..HEADER_LEN].try_into().unwrap();
    assert_eq!(sniff(&preface), ConnectionKind::Http2);
    assert_eq!(sniff(&[42, 0, 0, 0, 0, 0, 0, 0]), ConnectionKind::Legacy);
    assert_eq!(sniff(&[0; HEADER_LEN]), ConnectionKind::Legacy);
    // A legacy frame of 80 bytes starts with 'P' too: the decision needs all 8 bytes.
    assert_eq!(sniff(&[b'P', 0, 0, 0, 0, 0, 0, 0]), ConnectionKind::Legacy);
    // Why it is never ambiguous: read as a header, the preface is over every possible limit.
    assert_eq!(u64::from_le_bytes(preface), 0x5448_202A_2049_5250);
    assert!(matches!(
        payload_len(preface, MaxFrameLen::new(u32::MAX)),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn requests_decode_from_their_documented_bytes() {
    // Field 6 (ApplyID), length-delimited, holding field 1 (uuid) = "x".
    let kind = decode_request(&[0x32, 0x03, 0x0a, 0x01, b'x']).unwrap();
    assert_eq!(
        kind,
        Union::ApplyIdRequest(msg::ApplyIdRequest { uuid: "x".into() })
    );
    // Field 10 (GetClusterMap) with an empty body is a request with every field zero.
    let kind = decode_request(&[0x52, 0x00]).unwrap();
    assert_eq!(
        kind,
        Union::GetClusterMapRequest(msg::GetClusterMapRequest::default())
    );
    // Field 24, the last kind.
    let kind = decode_request(&[0xc2, 0x01, 0x00]).unwrap();
    assert_eq!(
        kind,
        Union::PgOsdInfoRequest(msg::GetPgOsdInfoRequest::default())
    );
}

#[test]
fn a_request_without_a_known_kind_is_refused_with_its_reason() {
    assert_eq!(decode_request(&[]), Err(MessageError::Empty));
    // Field 25 (unknown), empty; then field 99 as a varint.
    assert_eq!(
        decode_request(&[0xca, 0x01, 0x00]),
        Err(MessageError::UnknownKind { field: 25 })
    );
    assert_eq!(
        decode_request(&[0x98, 0x06, 0x01]),
        Err(MessageError::UnknownKind { field: 99 })
    );
    assert_eq!(
        MessageError::UnknownKind { field: 25 }.to_string(),
        "message of unknown kind 25: the known kinds are 1 to 24"
    );
    assert_eq!(decode_response(&[]), Err(MessageError::Empty));
}

#[test]
fn garbled_requests_are_undecodable() {
    for bytes in [
        &[0xff][..],                     // a cut varint key
        &[0x08, 0x01],                   // kind 1 as a varint: the wrong wire type
        &[0x0a, 0x05, 0x01],             // a body cut short
        &[0x32, 0x03, 0x0a, 0x01, 0xff], // a uuid that is not UTF-8
        &[0x00],                         // field number 0
    ] {
        assert!(
            matches!(decode_request(bytes), Err(MessageError::Undecodable(_))),
            "{bytes:x?}: {:?}",
            decode_request(bytes)
        );
    }
}

#[test]
fn responses_decode_under_the_number_of_their_request() {
    let response = msg::Response {
        union: Some(msg::response::Union::BootResponse(msg::BootResponse {
            result: -157,
        })),
    };
    let framed = encode_frame(&response);
    let (frames, _) = read_all(&framed, 3, MaxFrameLen::DEFAULT);
    assert_eq!(
        decode_response(&frames[0]).unwrap(),
        msg::response::Union::BootResponse(msg::BootResponse { result: -157 })
    );
}

fn request_seeds() -> Vec<Vec<u8>> {
    let boot = msg::BootRequest {
        osd_id: 3,
        uuid: "0c3f9a7e-4b1d-4f7a-9d55-2f3e8c1b0a66".into(),
        size: 1 << 20,
        sharded_ports: HashMap::from([(
            0,
            msg::ShardCore {
                coreid: 2,
                port: 8100,
                raw_port: 9100,
            },
        )]),
        address: "10.0.0.3".into(),
        host: "host-3".into(),
        core_num: 1,
        config: "rdma: on".into(),
    };
    let poll = msg::GetClusterMapRequest {
        gom_request: Some(msg::GetOsdMapRequest {
            osdid: 3,
            currentversion: -1,
        }),
        gpm_request: Some(msg::GetPgMapRequest {
            pool_versions: HashMap::from([(1, 4), (2, 0)]),
        }),
    };
    let stats = msg::DataStatisticsRequest {
        data: HashMap::from([(
            "1.0".to_string(),
            msg::DataStatistics {
                read_ios: 5,
                write_bytes: 4096,
                objects: -1,
                ..Default::default()
            },
        )]),
    };
    let elected = msg::LeaderBeElectedRequest {
        leader_id: 1,
        pool_id: 1,
        pg_id: 7,
        osd_list: vec![1, 2, 3],
        new_osd_list: vec![],
    };
    [
        Union::BootRequest(boot),
        Union::GetClusterMapRequest(poll),
        Union::DataStatisticsRequest(stats),
        Union::LeaderBeElectedRequest(elected),
        Union::CreatePoolRequest(msg::CreatePoolRequest {
            name: "rbd".into(),
            pgsize: 3,
            pgcount: 64,
            failuredomain: "host".into(),
            root: "defaultroot".into(),
        }),
        Union::NoOutRequest(msg::NoOutRequest { set: true }),
    ]
    .into_iter()
    .map(|kind| msg::Request { union: Some(kind) }.encode_to_vec())
    .collect()
}

/// Streams of a few framed requests, the raw material of the framing property.
fn stream_seeds() -> Vec<Vec<u8>> {
    let requests = request_seeds();
    let mut seeds: Vec<Vec<u8>> = requests.iter().map(|r| frame(r)).collect();
    seeds.push(requests.iter().flat_map(|r| frame(r)).collect());
    seeds.push(frame(b""));
    seeds
}

proptest! {
    #![proptest_config(fuzzing::config(1024))]

    /// Any bytes give frames then at most one typed error, never a panic and never a frame
    /// over the limit; both readers and every read size agree on what they find.
    #[test]
    fn any_bytes_give_frames_or_a_typed_error(
        bytes in fuzzing::bytes(stream_seeds()),
        chunk in 1usize..64,
        max in 0u32..512,
    ) {
        let max = MaxFrameLen::new(max);
        let (read, read_end) = read_all(&bytes, chunk, max);
        let (taken, take_end) = take_all(&bytes, chunk, max);
        prop_assert_eq!(&read, &taken);
        prop_assert!(read.iter().all(|f| f.len() <= max.get() as usize));
        let consumed: usize = read.iter().map(|f| HEADER_LEN + f.len()).sum();
        match (&read_end, &take_end) {
            (None, None) => prop_assert_eq!(consumed, bytes.len()),
            (Some(FrameError::TooLarge { len: a, .. }), Some(FrameError::TooLarge { len: b, .. })) => {
                prop_assert_eq!(a, b);
            }
            (
                Some(FrameError::Truncated { part: a, expected: x, got: g }),
                Some(FrameError::Truncated { part: b, expected: y, got: h }),
            ) => {
                prop_assert_eq!((a, x, g), (b, y, h));
                prop_assert_eq!(consumed as u64 + g + if *a == FramePart::Payload { 8 } else { 0 }, bytes.len() as u64);
            }
            (a, b) => prop_assert!(false, "readers disagree: {:?} / {:?}", a, b),
        }
    }

    /// Any payload decodes to a request that re-encodes to a payload decoding to the same
    /// request, or gives a typed error; never a panic.
    #[test]
    fn any_payload_gives_a_request_or_a_typed_error(bytes in fuzzing::bytes(request_seeds())) {
        match decode_request(&bytes) {
            Ok(kind) => {
                let again = msg::Request { union: Some(kind.clone()) }.encode_to_vec();
                prop_assert_eq!(decode_request(&again), Ok(kind));
            }
            Err(MessageError::Empty) => prop_assert!(bytes.is_empty()),
            Err(MessageError::UnknownKind { field }) => prop_assert!(!REQUEST_KINDS.contains(&field)),
            Err(MessageError::Undecodable(_)) => {}
        }
    }
}

#[test]
fn map_entries_with_an_explicit_zero_key_decode_like_omitted_ones() {
    // GetClusterMap { gpm_request { pool_versions { key: 0 (written), value: 7 } } } as the
    // C++ protobuf writes it (both key and value), and with the key left out (proto3 style).
    let explicit = [0x52, 0x08, 0x12, 0x06, 0x0a, 0x04, 0x08, 0x00, 0x10, 0x07];
    let omitted = [0x52, 0x06, 0x12, 0x04, 0x0a, 0x02, 0x10, 0x07];
    for bytes in [&explicit[..], &omitted[..]] {
        match decode_request(bytes).expect("decodes") {
            msg::request::Union::GetClusterMapRequest(r) => {
                let versions = r.gpm_request.expect("pgmap part").pool_versions;
                assert_eq!(versions.get(&0), Some(&7), "{bytes:02x?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
