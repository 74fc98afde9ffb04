//! Records: the units the cluster state is stored as in etcd (one key each), and their
//! protobuf encoding. The key strings are built by `etcd::keys`.

use prost::Message;

use super::Flags;
use super::types::Epoch;
use crate::proto::store as pb;

/// Identifies one stored record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// The osdmap's epoch and the cluster flags.
    OsdMapMeta,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    OsdMapMeta { epoch: Epoch, flags: Flags },
}

/// A stored value that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {key:?}: {source}")]
pub struct DecodeError {
    pub key: RecordKey,
    pub source: prost::DecodeError,
}

/// Encodes a record as its protobuf value.
pub fn encode_record(record: &Record) -> Vec<u8> {
    match record {
        Record::OsdMapMeta { epoch, flags } => pb::OsdMapMeta {
            epoch: epoch.0,
            flags: flags.bits(),
        }
        .encode_to_vec(),
    }
}

/// Decodes the value stored under `key`.
pub fn decode_record(key: &RecordKey, value: &[u8]) -> Result<Record, DecodeError> {
    let err = |source| DecodeError {
        key: key.clone(),
        source,
    };
    match key {
        RecordKey::OsdMapMeta => {
            let m = pb::OsdMapMeta::decode(value).map_err(err)?;
            Ok(Record::OsdMapMeta {
                epoch: Epoch(m.epoch),
                flags: Flags::from_bits(m.flags),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Record::OsdMapMeta {
            epoch: Epoch(42),
            flags: Flags::from_bits(0b110),
        };
        let bytes = encode_record(&r);
        assert_eq!(decode_record(&RecordKey::OsdMapMeta, &bytes).unwrap(), r);
        assert!(decode_record(&RecordKey::OsdMapMeta, &[0xff, 0xff]).is_err());
    }
}
