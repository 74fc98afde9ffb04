//! The etcd key layout. Every key the monitor reads or writes is built here; docs/key-layout.md
//! describes the same layout for operators.

use crate::cluster::RecordKey;

/// Sub-trees under the prefix that an election name must not shadow.
pub const RESERVED_NAMES: &[&str] = &["cluster", "monitors"];

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

    /// The etcd key of a cluster record.
    pub fn record(&self, key: &RecordKey) -> String {
        let p = self.cluster_prefix();
        match key {
            RecordKey::OsdMapMeta => format!("{p}osdmap"),
        }
    }

    /// Parses a key under [`KeyLayout::cluster_prefix`] back into a record key.
    /// Unknown keys yield None (they are reported and skipped by the loader).
    pub fn parse_record(&self, key: &str) -> Option<RecordKey> {
        let rest = key.strip_prefix(&self.cluster_prefix())?;
        match rest {
            "osdmap" => Some(RecordKey::OsdMapMeta),
            _ => None,
        }
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
        let key = k.record(&RecordKey::OsdMapMeta);
        assert_eq!(key, "/fastblock/cluster/osdmap");
        assert_eq!(k.parse_record(&key), Some(RecordKey::OsdMapMeta));
        assert_eq!(k.parse_record("/fastblock/cluster/zzz"), None);
        assert_eq!(k.parse_record("/other/cluster/osdmap"), None);
    }

    #[test]
    fn prefix_end_is_exclusive_upper_bound() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
