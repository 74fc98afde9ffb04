//! Large synthetic Go monitor sources, in the Go monitor's JSON format, for scale tests and
//! benchmarks of the import (10,000 OSDs, 1,000 pools, 1,000,000 PGs).
//!
//! Deterministic for a seed. Values are written as Go's `encoding/json` writes them: struct
//! fields in declaration order, `"RwMutex":{}` first, `omitempty` zero values left out, map keys
//! sorted as strings, `newcoreindex` 4294967295 on PGs without a change in flight.
//!
//! **Not every generated source could exist**: a real Go monitor's etcd refuses any value over
//! 1.5 MiB, which caps a pool at about 15,000 PGs and the osdmap at roughly 600–1,000 OSDs
//! (LEGACY-PROTOCOL.md §4.5). The generator ignores that limit (10,000 OSDs make an osdmap of
//! about 15 MiB): the converter has no reason to, and a test of scale needs the large values.

use std::fmt::Write;

/// OSDs per host.
const OSDS_PER_HOST: u32 = 10;
/// Cores (shards) per OSD.
const CORES: u32 = 4;
/// One OSD in this many is down and out (not placed).
const DOWN_OUT_EVERY: u32 = 97;
/// One OSD in this many is applied for, never booted.
const PENDING_EVERY: u32 = 211;
/// One PG in this many has a change in flight.
const REMAPPED_EVERY: u64 = 100;

/// A splitmix64 stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the generator decided about an OSD.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Serving,
    DownOut,
    Pending,
}

fn kind(id: u32) -> Kind {
    if id % PENDING_EVERY == 0 {
        Kind::Pending
    } else if id % DOWN_OUT_EVERY == 0 {
        Kind::DownOut
    } else {
        Kind::Serving
    }
}

/// Ids in the order Go writes map keys: sorted as decimal strings.
fn go_key_order(n: u32, first: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = (first..first + n).collect();
    ids.sort_by_cached_key(|i| i.to_string());
    ids
}

/// A Go monitor's etcd contents with `osds` OSDs (10 per host, 4 cores each; a few down and
/// out, a few never booted), `pools` pools of `pgs_per_pool` PGs (size 3, or the host count if
/// lower; host failure domain; 1% remapped), one image per pool, and the cluster state key.
pub fn synthetic_source(
    osds: u32,
    pools: u32,
    pgs_per_pool: u32,
    seed: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let hosts = osds.div_ceil(OSDS_PER_HOST).max(1);
    let host_of = |id: u32| (id - 1) / OSDS_PER_HOST;
    let mut out = Vec::with_capacity(3 + 2 * pools as usize);

    // The osdmap.
    let config = config_text();
    let mut map = String::with_capacity(osds as usize * (config.len() + 600) + 64);
    let version = 100 + u64::from(osds);
    write!(map, r#"{{"RwMutex":{{}},"version":{version},"osdinfo":{{"#).ok();
    for (n, id) in go_key_order(osds, 1).into_iter().enumerate() {
        if n > 0 {
            map.push(',');
        }
        let k = kind(id);
        let uuid = uuid_text(&mut rng);
        write!(map, r#""{id}":{{"RwMutex":{{}},"osdid":{id},"#).ok();
        if k == Kind::Pending {
            write!(
                map,
                r#""address":"","uuid":"{uuid}","host":"","sharded_ports":null,"size":0,"isin":false,"isup":false,"ispendingcreate":true,"corenum":0,"Config":"""#
            )
            .ok();
        } else {
            let h = host_of(id);
            let address = format!("10.{}.{}.{}", h / 250 % 250, h % 250 + 1, id % 250 + 1);
            write!(
                map,
                r#""address":"{address}","uuid":"{uuid}","host":"node{h}","sharded_ports":{{"#
            )
            .ok();
            let slot = (id - 1) % OSDS_PER_HOST;
            for c in 0..CORES {
                if c > 0 {
                    map.push(',');
                }
                let port = 20000 + slot * 2 * CORES + c;
                let raw = port + CORES;
                write!(
                    map,
                    r#""{c}":{{"shardid":{c},"port":{port},"raw_port":{raw}}}"#
                )
                .ok();
            }
            let up_in = k == Kind::Serving;
            write!(
                map,
                r#"}},"size":1048576,"isin":{up_in},"isup":{up_in},"ispendingcreate":false,"corenum":{CORES},"Config":"{config}""#
            )
            .ok();
        }
        map.push('}');
    }
    map.push_str("}}");
    out.push(("/osd/osdmap".to_string(), map.into_bytes()));

    // Serving OSDs by host, for placement.
    let by_host: Vec<Vec<u32>> = (0..hosts)
        .map(|h| {
            (h * OSDS_PER_HOST + 1..=((h + 1) * OSDS_PER_HOST).min(osds))
                .filter(|&id| kind(id) == Kind::Serving)
                .collect()
        })
        .collect();
    let usable: Vec<u32> = (0..hosts)
        .filter(|&h| !by_host[h as usize].is_empty())
        .collect();
    let size = (usable.len() as u32).min(3);

    // Pools.
    for pool in 1..=pools {
        let mut v = String::with_capacity(pgs_per_pool as usize * 110 + 256);
        let pool_version = 1 + rng.below(60);
        write!(
            v,
            r#"{{"RwMutex":{{}},"poolid":{pool},"name":"pool{pool}","pg_size":{size},"pg_count":{pgs_per_pool},"failure_domain":"host","poolpgmap":{{"version":{pool_version},"pgmap":{{"#
        )
        .ok();
        for (n, pg) in go_key_order(pgs_per_pool, 0).into_iter().enumerate() {
            if n > 0 {
                v.push(',');
            }
            // `size` distinct hosts, one serving OSD of each.
            let mut chosen_hosts: Vec<u32> = Vec::with_capacity(size as usize + 1);
            while chosen_hosts.len() < size as usize {
                let h = usable[rng.below(usable.len() as u64) as usize];
                if !chosen_hosts.contains(&h) {
                    chosen_hosts.push(h);
                }
            }
            let pick = |rng: &mut Rng, h: u32| {
                let list = &by_host[h as usize];
                list[rng.below(list.len() as u64) as usize]
            };
            let members: Vec<u32> = chosen_hosts.iter().map(|&h| pick(&mut rng, h)).collect();
            let version = 1 + rng.below(pool_version + 10);
            let core = rng.below(u64::from(CORES));
            let remapped =
                rng.below(REMAPPED_EVERY) == 0 && (usable.len() as u32) > size && size > 0;
            write!(v, r#""{pg}":{{"version":{version},"#).ok();
            let state = if remapped { 16 } else { 2 };
            write!(v, r#""pgstate":{state},"#).ok();
            if core != 0 {
                write!(v, r#""coreindex":{core},"#).ok();
            }
            write!(v, r#""osdlist":{}"#, list(&members)).ok();
            if remapped {
                let mut host = usable[rng.below(usable.len() as u64) as usize];
                while chosen_hosts.contains(&host) {
                    host = usable[rng.below(usable.len() as u64) as usize];
                }
                let mut new_members = members.clone();
                let slot = rng.below(u64::from(size)) as usize;
                new_members[slot] = pick(&mut rng, host);
                let new_core = rng.below(u64::from(CORES));
                if new_core != 0 {
                    write!(v, r#","newcoreindex":{new_core}"#).ok();
                }
                write!(v, r#","newosdlist":{}"#, list(&new_members)).ok();
            } else {
                v.push_str(r#","newcoreindex":4294967295"#);
            }
            v.push('}');
        }
        v.push_str("}}}");
        out.push((format!("/config/pools/{pool}"), v.into_bytes()));
        out.push((
            format!("/config/images/{pool}"),
            format!(
                r#"{{"imageID":{pool},"imagename":"image{pool}","poolname":"pool{pool}","imagesize":10737418240,"objectsize":4194304}}"#
            )
            .into_bytes(),
        ));
    }
    out.push((
        "/cluster/states/state".to_string(),
        br#"{"noReblance":false,"noOut":false}"#.to_vec(),
    ));
    out
}

/// `[1,2,3]`
fn list(ids: &[u32]) -> String {
    let parts: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// A random version-4 uuid, hyphenated.
fn uuid_text(rng: &mut Rng) -> String {
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// About 1 KiB of option dump, as an OSD reports at boot (as JSON string contents).
fn config_text() -> String {
    let mut s = String::new();
    for (i, name) in [
        "rdma_server_queue_depth",
        "rdma_server_io_cq_size",
        "rdma_client_queue_depth",
        "rdma_client_io_cq_size",
        "rdma_max_send_sge",
        "rdma_max_recv_sge",
        "rdma_max_inline_data",
        "rdma_rpc_timeout_us",
        "rdma_metadata_memory_pool_count",
        "rdma_data_memory_pool_count",
    ]
    .iter()
    .enumerate()
    {
        write!(s, "{name} = {}\\n", 128 << (i % 5)).ok();
    }
    while s.len() < 1000 {
        s.push_str("# padding to the size of a real dump\\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_in_go_order_and_uuids_well_formed() {
        assert_eq!(go_key_order(12, 0), [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut rng = Rng(1);
        for _ in 0..100 {
            let u = uuid_text(&mut rng);
            assert!(crate::cluster::parse_uuid(&u).is_ok(), "{u}");
        }
    }

    #[test]
    fn sources_are_deterministic_json() {
        let a = synthetic_source(40, 2, 50, 7);
        assert_eq!(a, synthetic_source(40, 2, 50, 7));
        assert_ne!(a, synthetic_source(40, 2, 50, 8));
        for (key, value) in &a {
            serde_json::from_slice::<serde_json::Value>(value)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
