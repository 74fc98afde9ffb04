//! The server side's protobuf codec: a request that does not decode is the caller's fault.
//!
//! tonic's prost codec answers INTERNAL when a request is not valid protobuf (bad wire data,
//! a string field that is not UTF-8), which tells the caller the monitor failed. This codec
//! encodes like it and answers INVALID_ARGUMENT / INVALID_MESSAGE instead. build.rs generates
//! the Monitor server with it; the client keeps tonic's codec, since a reply that does not
//! decode is the server's fault.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::status;

/// Encodes `T` (replies) and decodes `U` (requests) with prost.
#[derive(Debug)]
pub struct ServerCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ServerCodec<T, U> {
    fn default() -> Self {
        ServerCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ServerCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { _type: PhantomData }
    }
}

/// Decodes one request message; a failure is INVALID_ARGUMENT / INVALID_MESSAGE.
#[derive(Debug)]
pub struct RequestDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_request(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes a request message.
fn decode_request<U: Message + Default>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    // prost's error names the message and the field path, never the data.
    U::decode(buf).map_err(status::invalid_message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::monitor as api;
    use crate::service::reasons;

    fn decode(bytes: &[u8]) -> Result<api::ApplyIdRequest, Status> {
        decode_request(bytes)
    }

    #[test]
    fn valid_requests_decode() {
        let request = api::ApplyIdRequest {
            uuid: "67e55044-10b1-426f-9247-bb680e5fe0c8".to_string(),
        };
        assert_eq!(decode(&request.encode_to_vec()).unwrap(), request);
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments() {
        // Field 1 (uuid), length 2, bytes that are not UTF-8.
        let not_utf8 = [0x0a, 0x02, 0xc3, 0x28];
        // A length-delimited field whose length runs past the end.
        let truncated = [0x0a, 0x7f, b'a'];
        // Wire type 7 does not exist.
        let bad_wire_type = [0x0f, 0x00];
        for bytes in [&not_utf8[..], &truncated, &bad_wire_type] {
            let e = decode(bytes).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bytes:?}: {e:?}");
            assert_eq!(
                status::reason(&e).as_deref(),
                Some(reasons::INVALID_MESSAGE),
                "{bytes:?}"
            );
        }
        let e = decode(&not_utf8).unwrap_err();
        assert!(e.message().contains("UTF-8"), "{}", e.message());
    }
}
