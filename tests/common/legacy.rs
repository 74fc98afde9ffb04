//! Test-side clients of fastblock's existing wire protocols (LEGACY-PROTOCOL.md), written from
//! the wire description alone and independent of any server code: a protocol is tested over
//! real sockets with a client that cannot share the server's mistakes.
//!
//! - [`protobuf`]: a hand-written protobuf encoder/decoder (no generated code);
//! - [`messages`]: the `msg.Request`/`msg.Response` envelopes and the messages tests use;
//! - [`framed`]: the 8-byte length framing of §6 and [`framed::LegacyClient`] (port 3333);
//! - [`raw`]: the 28-byte-header raw protocol of §11 and [`raw::RawClient`] (port 3334).

pub mod framed;
pub mod messages;
pub mod protobuf;
pub mod raw;
