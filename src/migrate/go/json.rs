//! The Go monitor's stored values (LEGACY-PROTOCOL.md, "The Go monitor's etcd layout") as typed
//! values, read straight from the bytes: no `serde_json::Value` tree is ever built, so a pool of
//! 100,000 PGs costs its typed PGs and nothing more.
//!
//! What Go's `encoding/json` writes, and how each quirk is read:
//! - fields tagged `omitempty` are left out when zero, empty or false: every field here reads as
//!   its zero value when absent (`coreindex` 0, `newcoreindex` 0, `raw_port` 0, ...);
//! - a nil slice or map without `omitempty` is written `null`: `null` reads as the zero value too;
//! - exported mutex members are written `"RwMutex":{}`: skipped without a word;
//! - map keys are strings, also for integer-keyed maps (OSD ids, shard indexes, PG ids), sorted
//!   as strings ("1", "10", "2"): kept as [`IdKey`]s in the order written, never as owned
//!   strings unless they do not parse;
//! - every integer is read as an `i64`, whatever its Go type: a negative or absurd value is an
//!   anomaly the converter reports with the field's name, not a parse failure. A value that is
//!   no JSON number at all (a string, a float, beyond `i64`) fails the whole value.
//!
//! Fields nobody knows are kept by name (a few per object, cut short) so the converter can report
//! them: a newer Go monitor may have stored something this import would silently drop.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The member every Go struct with an exported mutex carries.
const GO_MUTEX: &str = "RwMutex";

/// Unknown field names kept per object (the report names each field once anyway).
const UNKNOWN_KEPT: usize = 4;

/// A field name echoed in the report is cut after this many bytes.
const FIELD_NAME_SHOWN: usize = 48;

/// An object key, borrowed from the source when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `T`, or its zero value where the source has `null` (a nil slice or map).
struct OrZero<T>(T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for OrZero<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OrZero(Option::<T>::deserialize(d)?.unwrap_or_default()))
    }
}

/// Names of the fields of one object that no reader here knows (at most [`UNKNOWN_KEPT`], each
/// cut short). Nothing is allocated for an object without any.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Unknown(Vec<String>);

impl Unknown {
    fn note(&mut self, name: &str) {
        if self.0.len() < UNKNOWN_KEPT {
            self.0.push(crate::text::one_line(name, FIELD_NAME_SHOWN));
        }
    }

    /// The unknown field names.
    pub(super) fn names(&self) -> &[String] {
        &self.0
    }
}

/// A key of an integer-keyed Go map (OSD id, shard index, PG id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IdKey {
    Id(u32),
    /// Not a decimal `u32` (cut for the report).
    Bad(String),
}

impl IdKey {
    fn parse(text: &str) -> IdKey {
        // Go writes plain decimal digits; a sign or anything else is not one of its keys.
        match text.parse::<u32>() {
            Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => IdKey::Id(id),
            _ => IdKey::Bad(crate::text::shown(text)),
        }
    }
}

/// A Go map with integer keys, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entries<T>(pub(super) Vec<(IdKey, T)>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value = map.next_value::<OrZero<T>>()?.0;
                    out.push((IdKey::parse(&key.0), value));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Declares a Go object: its fields (JSON name → Rust field), read in any order, each absent or
/// `null` one as its zero value, `RwMutex` skipped, and the names of unknown ones kept.
macro_rules! go_object {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $($(#[$fdoc:meta])* $json:literal => $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub(super) struct $name {
            $($(#[$fdoc])* pub(super) $field: $ty,)*
            /// Fields no reader here knows.
            pub(super) unknown: Unknown,
        }

        impl $name {
            /// What the report calls this kind of object.
            pub(super) const WHAT: &'static str = $what;
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("an object (", $what, ")"))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.0.as_ref() {
                                $($json => out.$field = map.next_value::<OrZero<$ty>>()?.0,)*
                                GO_MUTEX => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                                other => {
                                    out.unknown.note(other);
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

go_object!(
    /// `/osd/osdmap`: the whole osdmap.
    GoOsdMap, "osdmap" {
        "version" => version: i64,
        "osdinfo" => osds: Entries<GoOsd>,
    }
);

go_object!(
    /// One OSD of the osdmap, keyed by its id.
    GoOsd, "OSD" {
        "osdid" => id: i64,
        "address" => address: String,
        "uuid" => uuid: String,
        "host" => host: String,
        /// Shard index → ports.
        "sharded_ports" => shards: Entries<GoShard>,
        "size" => size: i64,
        "isin" => is_in: bool,
        "isup" => is_up: bool,
        "ispendingcreate" => pending_create: bool,
        "corenum" => core_num: i64,
        "Config" => config: String,
    }
);

go_object!(
    /// One shard of an OSD.
    GoShard, "shard" {
        /// Named `shardid`, holds the core id.
        "shardid" => core_id: i64,
        "port" => port: i64,
        "raw_port" => raw_port: i64,
    }
);

go_object!(
    /// `/config/pools/<id>`: one pool with all its PGs.
    GoPool, "pool" {
        "poolid" => id: i64,
        "name" => name: String,
        "pg_size" => size: i64,
        "pg_count" => pg_count: i64,
        "failure_domain" => failure_domain: String,
        "root" => root: String,
        "poolpgmap" => pgmap: GoPgMap,
    }
);

go_object!(
    /// A pool's pgmap: its version and PGs by id.
    GoPgMap, "pgmap" {
        "version" => version: i64,
        "pgmap" => pgs: Entries<GoPg>,
    }
);

go_object!(
    /// One PG.
    GoPg, "PG" {
        "version" => version: i64,
        "pgstate" => state: i64,
        "coreindex" => core: i64,
        "osdlist" => members: Vec<i64>,
        /// 4294967295 when no change is in progress; absent (0) is core 0.
        "newcoreindex" => new_core: i64,
        "newosdlist" => new_members: Vec<i64>,
    }
);

go_object!(
    /// `/config/images/<id>`: one image, naming its pool by name.
    GoImage, "image" {
        "imageID" => id: i64,
        "imagename" => name: String,
        "poolname" => pool: String,
        "imagesize" => size: i64,
        "objectsize" => object_size: i64,
    }
);

go_object!(
    /// `/cluster/states/state`: the two flags.
    GoClusterState, "cluster state" {
        "noReblance" => no_rebalance: bool,
        "noOut" => no_out: bool,
    }
);

go_object!(
    /// `/cluster/unprocessedev`: an out→in rebalance deferred by norebalance.
    GoUnprocessed, "unprocessed event" {
        "outToIn" => out_to_in: bool,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quirks_read_as_zero_values() {
        let pg: GoPg =
            serde_json::from_str(r#"{"version":3,"osdlist":[1,2],"newcoreindex":4294967295}"#)
                .unwrap();
        assert_eq!(
            (pg.version, pg.state, pg.core, pg.new_core),
            (3, 0, 0, 4_294_967_295)
        );
        assert_eq!(pg.members, vec![1, 2]);
        assert!(pg.new_members.is_empty());
        let osd: GoOsd = serde_json::from_str(
            r#"{"RwMutex":{},"osdid":4,"sharded_ports":null,"isin":false,"Extra":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!(osd.id, 4);
        assert!(osd.shards.0.is_empty());
        assert_eq!(osd.unknown.names(), ["Extra"]);
    }

    #[test]
    fn integer_keys_are_parsed_or_kept_for_the_report() {
        let e: Entries<GoShard> =
            serde_json::from_str(r#"{"0":{"shardid":3,"port":7000},"x1":{},"+2":null}"#).unwrap();
        assert_eq!(e.0[0].0, IdKey::Id(0));
        assert_eq!(e.0[0].1.core_id, 3);
        assert_eq!(e.0[1].0, IdKey::Bad("'x1'".to_string()));
        assert_eq!(e.0[2].0, IdKey::Bad("'+2'".to_string()));
        assert_eq!(e.0[2].1, GoShard::default());
    }

    #[test]
    fn wrong_types_fail_the_value() {
        assert!(serde_json::from_str::<GoPg>(r#"{"version":"3"}"#).is_err());
        assert!(serde_json::from_str::<GoPg>(r#"{"version":1.5}"#).is_err());
        assert!(serde_json::from_str::<GoPg>(r#"{"version":18446744073709551615}"#).is_err());
        assert!(serde_json::from_str::<GoPool>("[]").is_err());
    }
}
