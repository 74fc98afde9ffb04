//! The etcd key layout. Every key the monitor reads or writes is built here; docs/key-layout.md
//! describes the same layout for operators.

use crate::cluster::{BlobKey, ImageId, OsdId, PoolId, RecordKey};

/// Sub-trees under the prefix that an election name must not shadow.
pub const RESERVED_NAMES: &[&str] = &[
    "cluster",
    "monitors",
    "osdconfig",
    "maintenance",
    "events",
    "webhooks",
];

/// Builds keys under one `etcd_prefix`.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    prefix: String,
    election_master_key: String,
}

impl KeyLayout {
    /// `prefix` has no trailing slash (config normalises it).
    pub fn new(prefix: &str, election_master_key: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.to_string(),
            election_master_key: election_master_key.to_string(),
        }
    }

    /// The etcd election name: `<prefix>/<election_master_key>`.
    pub fn election_name(&self) -> String {
        format!("{}/{}", self.prefix, self.election_master_key)
    }

    /// Candidates' keys live under `<election name>/`; the lowest create revision leads.
    pub fn election_prefix(&self) -> String {
        format!("{}/", self.election_name())
    }

    /// `<prefix>/monitors/`: one key per live monitor, bound to its lease.
    pub fn monitors_prefix(&self) -> String {
        format!("{}/monitors/", self.prefix)
    }

    /// `<prefix>/monitors/<name>`.
    pub fn monitor(&self, name: &str) -> String {
        format!("{}{name}", self.monitors_prefix())
    }

    /// `<prefix>/cluster/`: all cluster state, loaded by a new leader in one consistent read.
    pub fn cluster_prefix(&self) -> String {
        format!("{}/cluster/", self.prefix)
    }

    /// The etcd key of a cluster record. Ids are zero-padded so keys sort by id.
    pub fn record(&self, key: &RecordKey) -> String {
        let p = self.cluster_prefix();
        match key {
            RecordKey::OsdMapMeta => format!("{p}osdmap"),
            RecordKey::Counters => format!("{p}counters"),
            RecordKey::Osd(id) => format!("{p}osd/{:010}", id.0),
            RecordKey::Pool(id) => format!("{p}pool/{:010}", id.0),
            RecordKey::PgChunk(pool, i) => format!("{p}pg/{:010}/{i:06}", pool.0),
            RecordKey::Image(pool, id) => format!("{p}image/{:010}/{:020}", pool.0, id.0),
            RecordKey::Tombstone(id) => format!("{p}deleted-pool/{:010}", id.0),
            RecordKey::PurgedOsd(id) => format!("{p}purged-osd/{:010}", id.0),
            RecordKey::Health => format!("{p}health"),
        }
    }

    /// Parses a key under [`KeyLayout::cluster_prefix`] back into a record key.
    /// Unknown keys yield None (they are reported and skipped by the loader).
    pub fn parse_record(&self, key: &str) -> Option<RecordKey> {
        let rest = key.strip_prefix(&self.cluster_prefix())?;
        let mut parts = rest.split('/');
        let kind = parts.next()?;
        let a = parts.next();
        let b = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let num = |s: Option<&str>| s.filter(|s| !s.is_empty())?.parse::<u64>().ok();
        let parsed = match (kind, a, b) {
            ("osdmap", None, None) => RecordKey::OsdMapMeta,
            ("counters", None, None) => RecordKey::Counters,
            ("health", None, None) => RecordKey::Health,
            ("osd", Some(_), None) => RecordKey::Osd(OsdId(u32::try_from(num(a)?).ok()?)),
            ("pool", Some(_), None) => RecordKey::Pool(PoolId(u32::try_from(num(a)?).ok()?)),
            ("pg", Some(_), Some(_)) => RecordKey::PgChunk(
                PoolId(u32::try_from(num(a)?).ok()?),
                u32::try_from(num(b)?).ok()?,
            ),
            ("image", Some(_), Some(_)) => {
                RecordKey::Image(PoolId(u32::try_from(num(a)?).ok()?), ImageId(num(b)?))
            }
            ("deleted-pool", Some(_), None) => {
                RecordKey::Tombstone(PoolId(u32::try_from(num(a)?).ok()?))
            }
            ("purged-osd", Some(_), None) => {
                RecordKey::PurgedOsd(OsdId(u32::try_from(num(a)?).ok()?))
            }
            _ => return None,
        };
        // Only the canonical spelling counts (fixed width, no signs).
        (self.record(&parsed) == key).then_some(parsed)
    }

    /// The etcd key of a value kept outside the cluster state (not loaded by a new leader).
    pub fn blob(&self, key: &BlobKey) -> String {
        match key {
            BlobKey::OsdConfig(id) => format!("{}{:010}", self.blob_prefix(), id.0),
        }
    }

    /// `<prefix>/osdconfig/`: the values kept outside the cluster state.
    pub fn blob_prefix(&self) -> String {
        format!("{}/osdconfig/", self.prefix)
    }

    /// Parses a key under [`KeyLayout::blob_prefix`] back into a blob key (canonical only).
    pub fn parse_blob(&self, key: &str) -> Option<BlobKey> {
        let rest = key.strip_prefix(&self.blob_prefix())?;
        let id = rest.parse::<u32>().ok()?;
        let parsed = BlobKey::OsdConfig(OsdId(id));
        (self.blob(&parsed) == key).then_some(parsed)
    }

    /// `<prefix>/events/`: the event log, one key per transaction's events.
    pub fn events_prefix(&self) -> String {
        format!("{}/events/", self.prefix)
    }

    /// `<prefix>/events/<first id, 20 digits>`: the events of one transaction (ids sort as
    /// keys do).
    pub fn event_batch(&self, first: u64) -> String {
        format!("{}{first:020}", self.events_prefix())
    }

    /// The first event id of a batch key (canonical spelling only).
    pub fn parse_event_batch(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(&self.events_prefix())?;
        let id = rest.parse::<u64>().ok()?;
        (self.event_batch(id) == key).then_some(id)
    }

    /// `<prefix>/webhooks/`: the registered webhooks, their delivery cursors and dead letters
    /// (docs/webhooks.md); not cluster state, written under the leader fence.
    pub fn webhooks_prefix(&self) -> String {
        format!("{}/webhooks/", self.prefix)
    }

    /// `<prefix>/webhooks/endpoint/<id, 10 digits>`.
    pub fn webhook_endpoints(&self) -> String {
        format!("{}endpoint/", self.webhooks_prefix())
    }

    pub fn webhook_endpoint(&self, id: u32) -> String {
        format!("{}{id:010}", self.webhook_endpoints())
    }

    /// `<prefix>/webhooks/url/<sha-256 of the url, hex>`: the id registered for a url (so two
    /// concurrent adds of one url cannot both succeed).
    pub fn webhook_url(&self, url_hash: &str) -> String {
        format!("{}url/{url_hash}", self.webhooks_prefix())
    }

    /// `<prefix>/webhooks/cursor/<id, 10 digits>`: the last event id delivered (or
    /// dead-lettered) to an endpoint.
    pub fn webhook_cursor(&self, id: u32) -> String {
        format!("{}cursor/{id:010}", self.webhooks_prefix())
    }

    /// `<prefix>/webhooks/dead/<id, 10 digits>/`: an endpoint's dead letters.
    pub fn webhook_dead_prefix(&self, id: u32) -> String {
        format!("{}dead/{id:010}/", self.webhooks_prefix())
    }

    /// `<prefix>/webhooks/dead/<id, 10 digits>/<event id, 20 digits>`.
    pub fn webhook_dead(&self, id: u32, event: u64) -> String {
        format!("{}{event:020}", self.webhook_dead_prefix(id))
    }

    /// `<prefix>/webhooks/next-id`: the id the next registration gets.
    pub fn webhook_next_id(&self) -> String {
        format!("{}next-id", self.webhooks_prefix())
    }

    /// `<prefix>/maintenance`: present while an import or a restore writes the cluster state;
    /// no monitor loads the state (so none serves) while it exists.
    pub fn maintenance(&self) -> String {
        format!("{}/maintenance", self.prefix)
    }

    /// The prefix itself, with a trailing slash: everything the monitors store.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `key` relative to the prefix (None for a key outside it).
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.root())
    }

    /// The absolute key of a key relative to the prefix.
    pub fn absolute(&self, relative: &str) -> String {
        format!("{}{relative}", self.root())
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let k = KeyLayout::new("/fastblock", "fastblock_master");
        assert_eq!(k.election_name(), "/fastblock/fastblock_master");
        assert_eq!(k.monitor("m1"), "/fastblock/monitors/m1");
        let cases = [
            (RecordKey::OsdMapMeta, "/fastblock/cluster/osdmap"),
            (RecordKey::Counters, "/fastblock/cluster/counters"),
            (RecordKey::Health, "/fastblock/cluster/health"),
            (
                RecordKey::Osd(OsdId(42)),
                "/fastblock/cluster/osd/0000000042",
            ),
            (
                RecordKey::Pool(PoolId(7)),
                "/fastblock/cluster/pool/0000000007",
            ),
            (
                RecordKey::PgChunk(PoolId(7), 12),
                "/fastblock/cluster/pg/0000000007/000012",
            ),
            (
                RecordKey::Image(PoolId(7), ImageId(3)),
                "/fastblock/cluster/image/0000000007/00000000000000000003",
            ),
            (
                RecordKey::Tombstone(PoolId(9)),
                "/fastblock/cluster/deleted-pool/0000000009",
            ),
            (
                RecordKey::PurgedOsd(OsdId(3)),
                "/fastblock/cluster/purged-osd/0000000003",
            ),
        ];
        for (key, text) in cases {
            assert_eq!(k.record(&key), text);
            assert_eq!(k.parse_record(text), Some(key), "{text}");
        }
        for bad in [
            "/fastblock/cluster/zzz",
            "/other/cluster/osdmap",
            "/fastblock/cluster/osd/42",
            "/fastblock/cluster/osd/x",
            "/fastblock/cluster/pg/0000000007",
            "/fastblock/cluster/osd/0000000042/1",
        ] {
            assert_eq!(k.parse_record(bad), None, "{bad}");
        }
        assert_eq!(
            k.blob(&BlobKey::OsdConfig(OsdId(5))),
            "/fastblock/osdconfig/0000000005"
        );
        assert_eq!(
            k.parse_blob("/fastblock/osdconfig/0000000005"),
            Some(BlobKey::OsdConfig(OsdId(5)))
        );
        for bad in [
            "/fastblock/osdconfig/5",
            "/fastblock/osdconfig/+000000005",
            "/fastblock/osdconfig/",
            "/fastblock/cluster/osd/0000000005",
        ] {
            assert_eq!(k.parse_blob(bad), None, "{bad}");
        }
        assert_eq!(k.maintenance(), "/fastblock/maintenance");
        assert_eq!(
            k.relative("/fastblock/cluster/osdmap"),
            Some("cluster/osdmap")
        );
        assert_eq!(k.relative("/fastblockx/cluster/osdmap"), None);
        assert_eq!(k.absolute("cluster/osdmap"), "/fastblock/cluster/osdmap");
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::fuzzing;

        fn layout() -> KeyLayout {
            KeyLayout::new("/fastblock", "fastblock_master")
        }

        fn seeds() -> Vec<Vec<u8>> {
            let k = layout();
            [
                RecordKey::OsdMapMeta,
                RecordKey::Counters,
                RecordKey::Osd(OsdId(42)),
                RecordKey::Pool(PoolId(7)),
                RecordKey::PgChunk(PoolId(7), 3),
                RecordKey::Image(PoolId(7), ImageId(u64::MAX)),
                RecordKey::Tombstone(PoolId(u32::MAX)),
                RecordKey::PurgedOsd(OsdId(0)),
                RecordKey::Health,
            ]
            .iter()
            .map(|r| k.record(r).into_bytes())
            .collect()
        }

        proptest! {
            #![proptest_config(fuzzing::config(4096))]

            /// Keys found under the cluster prefix (anything another writer left there)
            /// parse only in their canonical spelling, never panic.
            #[test]
            fn only_canonical_keys_parse(bytes in fuzzing::bytes(seeds())) {
                let key = String::from_utf8_lossy(&bytes);
                let k = layout();
                if let Some(parsed) = k.parse_record(&key) {
                    prop_assert_eq!(k.record(&parsed), key.as_ref());
                }
            }
        }
    }

    #[test]
    fn prefix_end_is_exclusive_upper_bound() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
