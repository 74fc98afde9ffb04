//! Fuzzing the converter: the fixtures with one value edited as JSON (hostile numbers, strings,
//! nulls, removed and copied fields), byte-mutated or replaced by random bytes, and a key renamed
//! now and then; and synthetic sources of every small shape. Never a panic: the import either
//! refuses the source in one short line, or produces records that load with no garbage, PGs
//! our core can hold, versions never below the source's, and a bounded report.

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::tests::fixture;
use super::*;
use crate::cluster::{ClusterState, Record, RecordKey};
use crate::fuzzing;

/// A source: keys and values.
type Source = Vec<(String, Vec<u8>)>;

fn fixtures() -> &'static Vec<Source> {
    static FIXTURES: OnceLock<Vec<Source>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        [
            &include_bytes!("../../../tests/fixtures/go/small.json")[..],
            &include_bytes!("../../../tests/fixtures/go/remap.json")[..],
            &include_bytes!("../../../tests/fixtures/go/quirks.json")[..],
        ]
        .into_iter()
        .map(fixture)
        .collect()
    })
}

/// Keys a renamed entry may get.
fn key() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.15,
        prop::sample::select(vec![
            "/osd/osdmap",
            "/config/pools/1",
            "/config/pools/0",
            "/config/pools/-1",
            "/config/pools/4294967296",
            "/config/pools/",
            "/config/images/1",
            "/config/images/x",
            "/cluster/states/state",
            "/cluster/unprocessedev",
            "/config/topology/roots/default",
            "fastblock_monitor_election",
            "",
            "\n",
        ])
        .prop_map(str::to_string),
    )
}

/// (fixture, entry, its new value, its new key)
fn edited() -> impl Strategy<Value = (usize, usize, Vec<u8>, Option<String>)> {
    (0..fixtures().len(), any::<prop::sample::Index>()).prop_flat_map(|(f, i)| {
        let entries = &fixtures()[f];
        let e = i.index(entries.len());
        let seed = entries[e].1.clone();
        let value = prop_oneof![
            5 => fuzzing::json_edited(vec![seed.clone()]),
            2 => fuzzing::mutated(vec![seed]),
            1 => prop::collection::vec(any::<u8>(), 0..128),
        ];
        (Just(f), Just(e), value, key())
    })
}

/// What must hold of any conversion that succeeded.
fn check(source: &[(String, Vec<u8>)], c: &Converted) -> Result<(), TestCaseError> {
    let (state, garbage) = ClusterState::from_records(c.records.clone())
        .map_err(|e| TestCaseError::fail(format!("does not load: {e}")))?;
    prop_assert!(garbage.is_empty(), "garbage {:?}", garbage);
    let mut keys = HashSet::new();
    for (key, record) in &c.records {
        prop_assert!(keys.insert(*key), "{:?} twice", key);
        let bytes = crate::cluster::encode_record(record);
        let decoded = crate::cluster::decode_record(key, &bytes).ok();
        prop_assert_eq!(decoded.as_ref(), Some(record));
        if let (RecordKey::PgChunk(..), Record::PgChunk(pgs)) = (key, record) {
            for pg in pgs {
                let mut seen = HashSet::new();
                for m in &pg.members {
                    prop_assert!(seen.insert(*m), "{:?} twice in {:?}", m, pg.members);
                    prop_assert!(state.osd(*m).is_some(), "{:?} is no OSD", m);
                }
                if let Some(t) = &pg.target {
                    prop_assert!(!t.members.is_empty());
                    let mut seen = HashSet::new();
                    for m in &t.members {
                        prop_assert!(seen.insert(*m));
                        prop_assert!(state.osd(*m).is_some());
                    }
                }
                prop_assert_eq!(
                    pg.target.is_some(),
                    pg.state.contains(crate::cluster::PgState::REMAPPED)
                );
            }
        }
    }
    // Versions: never below the source's.
    let v = &c.report.versions;
    prop_assert!(i128::from(v.osdmap_epoch) >= i128::from(v.source_osdmap));
    prop_assert!(v.osdmap_epoch >= 1);
    prop_assert_eq!(state.osdmap_epoch().0, v.osdmap_epoch);
    for p in &v.pools {
        prop_assert!(i128::from(p.epoch) >= i128::from(p.source_pgmap.max(p.source_max_pg)));
        let pool = state.pool(PoolId(p.pool)).expect("its pool");
        prop_assert_eq!(pool.epoch.0, p.epoch);
        for (_, pg) in pool.pgs.iter() {
            prop_assert!(pg.version <= pool.epoch, "a PG ahead of its pool");
        }
    }
    prop_assert!(state.counters().next_pool_id > state.pools().map(|p| p.id.0).max().unwrap_or(0));
    // The report: bounded lines, JSON that parses.
    let text = c.report.to_string();
    for line in text.lines() {
        prop_assert!(line.len() < 1024, "{}", line);
    }
    prop_assert!(serde_json::from_str::<serde_json::Value>(&c.report.to_json()).is_ok());
    prop_assert_eq!(c.report.counts.osds as usize, state.osd_count());
    prop_assert_eq!(c.report.counts.pgs as usize, state.pg_count());
    let _ = source;
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config(768))]

    #[test]
    fn edited_fixtures_convert_or_are_refused_never_a_panic(
        (f, e, value, renamed) in edited()
    ) {
        let mut source = fixtures()[f].clone();
        source[e].1 = value;
        if let Some(k) = renamed {
            source[e].0 = k;
        }
        match convert(&source) {
            Err(err) => {
                let text = err.to_string();
                prop_assert!(!text.is_empty() && !text.contains('\n'), "{}", text);
                prop_assert!(text.len() < 400, "{}", text);
            }
            Ok(c) => check(&source, &c)?,
        }
    }

    #[test]
    fn synthetic_sources_of_any_small_shape_convert(
        osds in 0u32..40,
        pools in 0u32..4,
        pgs in 0u32..80,
        seed in any::<u64>(),
    ) {
        let source = synthetic_source(osds, pools, pgs, seed);
        let c = convert(&source).expect("a synthetic source converts");
        check(&source, &c)?;
    }
}
