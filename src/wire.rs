//! Messages served pre-encoded. The full osdmap of 10,000 OSDs is megabytes; building it as a
//! message tree and encoding it again for every client that asks costs tens of milliseconds.
//! Instead it is encoded once per epoch and every reply copies the same bytes. On the receiving
//! side these types decode like any message and dereference to their fields, so callers write
//! `map.osds` as usual.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};

use crate::proto::wire::{OsdMapFields, PoolPgMapFields, WatchClusterMapResponseFields};

/// `fastblock.monitor.v1.OsdMap`.
pub type OsdMap = Preencoded<OsdMapFields>;
/// `fastblock.monitor.v1.PoolPgMap`.
pub type PoolPgMap = Preencoded<PoolPgMapFields>;
/// `fastblock.monitor.v1.WatchClusterMapResponse`: one update, encoded once and sent to every
/// watcher at the same epoch.
pub type WatchClusterMapResponse = Preencoded<WatchClusterMapResponseFields>;

/// A message held either as fields or as its encoding.
pub struct Preencoded<T> {
    repr: Repr<T>,
}

enum Repr<T> {
    Fields(T),
    Encoded { bytes: Bytes, decoded: OnceLock<T> },
}

impl<T: Message + Default> Preencoded<T> {
    /// Encodes `fields` once; the result is sent as these bytes.
    pub fn encode(fields: &T) -> Preencoded<T> {
        Preencoded {
            repr: Repr::Encoded {
                bytes: Bytes::from(fields.encode_to_vec()),
                decoded: OnceLock::new(),
            },
        }
    }

    /// The fields (decoded on first use when held encoded).
    pub fn fields(&self) -> &T {
        match &self.repr {
            Repr::Fields(t) => t,
            // The bytes were produced by `encode` from a valid message, so they decode.
            Repr::Encoded { bytes, decoded } => {
                decoded.get_or_init(|| T::decode(bytes.as_ref()).unwrap_or_default())
            }
        }
    }

    /// Mutable fields (an encoded message is decoded and stops being pre-encoded).
    pub fn fields_mut(&mut self) -> &mut T {
        if let Repr::Encoded { .. } = &self.repr {
            let fields = std::mem::take(self.fields_owned_mut());
            self.repr = Repr::Fields(fields);
        }
        match &mut self.repr {
            Repr::Fields(t) => t,
            Repr::Encoded { .. } => unreachable!("converted to fields above"),
        }
    }

    fn fields_owned_mut(&mut self) -> &mut T {
        let _ = self.fields();
        match &mut self.repr {
            Repr::Encoded { decoded, .. } => decoded.get_mut().expect("decoded by fields()"),
            Repr::Fields(t) => t,
        }
    }

    /// The encoding as shared bytes: for a pre-encoded message, the same buffer every holder
    /// shares (no copy).
    pub fn shared_bytes(&self) -> Bytes {
        match &self.repr {
            Repr::Fields(t) => Bytes::from(t.encode_to_vec()),
            Repr::Encoded { bytes, .. } => bytes.clone(),
        }
    }

    /// The fields, by value.
    pub fn into_fields(mut self) -> T {
        std::mem::take(self.fields_mut())
    }
}

impl<T: Message + Default> From<T> for Preencoded<T> {
    fn from(fields: T) -> Self {
        Preencoded {
            repr: Repr::Fields(fields),
        }
    }
}

impl<T: Message + Default> Default for Preencoded<T> {
    fn default() -> Self {
        T::default().into()
    }
}

impl<T: Message + Default + Clone> Clone for Preencoded<T> {
    fn clone(&self) -> Self {
        match &self.repr {
            Repr::Fields(t) => t.clone().into(),
            // Cheap: the bytes are shared.
            Repr::Encoded { bytes, .. } => Preencoded {
                repr: Repr::Encoded {
                    bytes: bytes.clone(),
                    decoded: OnceLock::new(),
                },
            },
        }
    }
}

impl<T: Message + Default + PartialEq> PartialEq for Preencoded<T> {
    fn eq(&self, other: &Self) -> bool {
        self.fields() == other.fields()
    }
}

impl<T: Message + Default + std::fmt::Debug> std::fmt::Debug for Preencoded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields().fmt(f)
    }
}

impl<T: Message + Default> Deref for Preencoded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.fields()
    }
}

impl<T: Message + Default> DerefMut for Preencoded<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.fields_mut()
    }
}

impl<T: Message + Default> Message for Preencoded<T> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.repr {
            Repr::Fields(t) => t.encode_raw(buf),
            Repr::Encoded { bytes, .. } => buf.put_slice(bytes),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.fields_mut().merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match &self.repr {
            Repr::Fields(t) => t.encoded_len(),
            Repr::Encoded { bytes, .. } => bytes.len(),
        }
    }

    fn clear(&mut self) {
        self.repr = Repr::Fields(T::default());
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;
    use crate::proto::monitor as api;

    fn sample() -> OsdMapFields {
        OsdMapFields {
            epoch: 7,
            osds: vec![api::OsdInfo {
                id: 3,
                uuid: "u".to_string(),
                shards: Some(api::ShardTable {
                    core_ids: vec![0, 1],
                    ports: vec![7000, 7001],
                    raw_ports: vec![8000, 8001],
                    count: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            flags: vec![1],
            core_num: 2,
        }
    }

    #[test]
    fn shared_bytes_of_a_preencoded_message_are_the_same_buffer() {
        let pre = OsdMap::encode(&sample());
        let a = pre.shared_bytes();
        let b = pre.clone().shared_bytes();
        assert_eq!(a.as_ptr(), b.as_ptr(), "clones share the encoding");
        assert_eq!(
            a,
            OsdMap::from(sample()).shared_bytes(),
            "same bytes either way"
        );
    }

    #[test]
    fn preencoded_and_field_forms_encode_identically_and_decode_back() {
        let fields = sample();
        let pre = OsdMap::encode(&fields);
        let plain = OsdMap::from(fields.clone());
        assert_eq!(pre.encode_to_vec(), plain.encode_to_vec());
        assert_eq!(pre.encoded_len(), fields.encoded_len());
        // Inside a response, as a client receives it.
        let resp = api::GetOsdMapResponse {
            status: api::MapStatus::Full as i32,
            epoch: 7,
            osdmap: Some(pre.clone()),
            leader_epoch: 2,
        };
        let back = api::GetOsdMapResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.osdmap.as_ref().unwrap().osds[0].id, 3);
        assert_eq!(back, resp);
        let mut m = pre;
        m.epoch = 8;
        assert_eq!(m.fields().epoch, 8, "mutation turns it back into fields");
    }

    fn fields_of(
        fds: &FileDescriptorSet,
        package: &str,
        message: &str,
    ) -> Vec<(String, i32, i32, String, i32)> {
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))
            .expect("file");
        let msg = file
            .message_type
            .iter()
            .find(|m| m.name() == message)
            .expect("message");
        msg.field
            .iter()
            .map(|f| {
                (
                    f.name().to_string(),
                    f.number(),
                    f.r#type() as i32,
                    f.type_name()
                        .rsplit('.')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    f.label() as i32,
                )
            })
            .collect()
    }

    /// Fuzzing the pre-encoded types: random and mutated bytes decode into the pre-encoded
    /// form exactly as into its plain fields (same result, same error or not), and whatever
    /// decodes, pre-encoded, sends the bytes the plain fields would and reads back equal, alone
    /// and inside the replies that carry it.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::fuzzing;
        use crate::proto::wire::watch_cluster_map_response_fields::Update;

        /// Compared by encoding: a decoded double may be NaN, which equals nothing. None of
        /// these messages holds a map, so an encoding is deterministic.
        fn agrees<T>(bytes: &[u8]) -> Option<T>
        where
            T: Message + Default + Clone + std::fmt::Debug,
        {
            let plain = T::decode(bytes);
            let pre = Preencoded::<T>::decode(bytes);
            assert_eq!(plain.is_ok(), pre.is_ok(), "{plain:?} vs {pre:?}");
            let fields = plain.ok()?;
            let want = fields.encode_to_vec();
            assert_eq!(pre.expect("decoded").encode_to_vec(), want);
            let encoded = Preencoded::encode(&fields);
            assert_eq!(encoded.encode_to_vec(), want);
            assert_eq!(encoded.encoded_len(), want.len());
            assert_eq!(encoded.clone().encode_to_vec(), want);
            let back = Preencoded::<T>::decode(want.as_slice()).expect("round trip");
            assert_eq!(back.fields().encode_to_vec(), want);
            Some(fields)
        }

        fn osdmap_seeds() -> Vec<Vec<u8>> {
            vec![
                sample().encode_to_vec(),
                OsdMapFields::default().encode_to_vec(),
            ]
        }

        fn pgmap() -> PoolPgMapFields {
            PoolPgMapFields {
                pool_id: 1,
                status: api::MapStatus::Full as i32,
                epoch: 4,
                pool: Some(api::PoolInfo {
                    id: 1,
                    name: "rbd".to_string(),
                    ..Default::default()
                }),
                pgs: vec![api::PgInfo {
                    id: 0,
                    members: vec![1, 2, 3],
                    ..Default::default()
                }],
            }
        }

        fn watch_seeds() -> Vec<Vec<u8>> {
            let osd = WatchClusterMapResponseFields {
                update: Some(Update::Osdmap(api::OsdMapUpdate {
                    full: true,
                    epoch: 7,
                    ..Default::default()
                })),
                leader_epoch: 3,
            };
            let pg = WatchClusterMapResponseFields {
                update: Some(Update::Pgmap(api::PgMapUpdate {
                    pool_id: 1,
                    from_epoch: 2,
                    epoch: 3,
                    deleted: true,
                    ..Default::default()
                })),
                leader_epoch: 3,
            };
            vec![osd.encode_to_vec(), pg.encode_to_vec()]
        }

        proptest! {
            #![proptest_config(fuzzing::config(2048))]

            #[test]
            fn osdmaps_decode_and_reencode_alike(bytes in fuzzing::bytes(osdmap_seeds())) {
                if let Some(fields) = agrees::<OsdMapFields>(&bytes) {
                    let reply = api::GetOsdMapResponse {
                        status: api::MapStatus::Full as i32,
                        epoch: fields.epoch,
                        osdmap: Some(OsdMap::encode(&fields)),
                        leader_epoch: 1,
                    };
                    let sent = reply.encode_to_vec();
                    let back = api::GetOsdMapResponse::decode(sent.as_slice()).expect("reply");
                    prop_assert_eq!(back.encode_to_vec(), sent);
                }
            }

            #[test]
            fn pgmaps_decode_and_reencode_alike(
                bytes in fuzzing::bytes(vec![pgmap().encode_to_vec()])
            ) {
                if let Some(fields) = agrees::<PoolPgMapFields>(&bytes) {
                    let reply = api::GetPgMapResponse {
                        pools: vec![PoolPgMap::encode(&fields), PoolPgMap::encode(&pgmap())],
                        leader_epoch: 1,
                    };
                    let sent = reply.encode_to_vec();
                    let back = api::GetPgMapResponse::decode(sent.as_slice()).expect("reply");
                    prop_assert_eq!(back.encode_to_vec(), sent);
                }
            }

            #[test]
            fn watch_updates_decode_and_reencode_alike(bytes in fuzzing::bytes(watch_seeds())) {
                agrees::<WatchClusterMapResponseFields>(&bytes);
            }
        }
    }

    #[test]
    fn wire_layouts_match_the_public_messages() {
        let fds = FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        assert_eq!(
            fields_of(&fds, "fastblock.monitor.wire.v1", "OsdMapFields"),
            fields_of(&fds, "fastblock.monitor.v1", "OsdMap")
        );
        assert_eq!(
            fields_of(&fds, "fastblock.monitor.wire.v1", "PoolPgMapFields"),
            fields_of(&fds, "fastblock.monitor.v1", "PoolPgMap")
        );
        assert_eq!(
            fields_of(
                &fds,
                "fastblock.monitor.wire.v1",
                "WatchClusterMapResponseFields"
            ),
            fields_of(&fds, "fastblock.monitor.v1", "WatchClusterMapResponse")
        );
    }
}
