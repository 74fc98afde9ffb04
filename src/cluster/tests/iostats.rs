//! DataStatistics against the cluster state: per-(OSD, PG) increases, restarts, saturation, who
//! may report, and the memory the held counters take.

use std::time::{Duration, Instant};

use super::*;
use crate::cluster::ClusterState;
use crate::cluster::iostats::{IoCounters, IoReport, IoStats};

const WINDOW: Duration = Duration::from_secs(10);

fn writes(bytes: u64) -> IoCounters {
    IoCounters {
        write_bytes: bytes,
        write_ops: bytes / 4096,
        ..IoCounters::default()
    }
}

/// Checks and records `osd`'s report of `(PG name, counters)` at `at`.
fn report(
    stats: &mut IoStats,
    s: &ClusterState,
    osd: OsdId,
    entries: &[(&str, IoCounters)],
    at: Instant,
) -> Result<IoReport, ClusterError> {
    let r = IoReport::check(s, osd, entries.iter().map(|(n, c)| (*n, *c)))?;
    stats.record(r.clone(), s, at);
    Ok(r)
}

/// `cluster(6, 3)` with a size-3 pool of 8 PGs (pool 1), every PG active.
fn stats_cluster() -> (ClusterState, PoolId) {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 8, "host");
    elect_all(&mut s, p);
    (s, p)
}

fn members(s: &ClusterState, p: PoolId, id: u32) -> Vec<OsdId> {
    pg(s, p, id).members
}

fn outsider(s: &ClusterState, p: PoolId, id: u32) -> OsdId {
    let g = pg(s, p, id);
    (1..=6).map(OsdId).find(|o| !g.involves(*o)).unwrap()
}

#[test]
fn two_osds_alternating_on_one_pg_count_each_increase_once() {
    // The case: one member reports 1,000,000 bytes written, another 0, both unchanged,
    // alternately. Kept per PG, each switch counted the other's value again (11,000,000 after
    // ten rounds); kept per (OSD, PG), nothing moves after the first two reports.
    let (s, p) = stats_cluster();
    let m = members(&s, p, 0);
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    for round in 0..10u64 {
        let at = t0 + Duration::from_secs(round);
        report(&mut stats, &s, m[0], &[("1.0", writes(1_000_000))], at).unwrap();
        report(&mut stats, &s, m[1], &[("1.0", writes(0))], at).unwrap();
        assert_eq!(stats.totals()[&p].write_bytes, 1_000_000, "round {round}");
    }
    // Real I/O on both is counted, each from its own last value.
    report(&mut stats, &s, m[1], &[("1.0", writes(4096))], t0).unwrap();
    report(&mut stats, &s, m[0], &[("1.0", writes(1_008_192))], t0).unwrap();
    assert_eq!(stats.totals()[&p].write_bytes, 1_012_288);
    assert_eq!(stats.cluster_totals().write_ops, 1_012_288 / 4096);
}

#[test]
fn a_restarted_counter_set_counts_its_new_values() {
    let (s, p) = stats_cluster();
    let m = members(&s, p, 0)[0];
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    let c = |rb, wb| IoCounters {
        read_bytes: rb,
        write_bytes: wb,
        read_ops: 0,
        write_ops: 0,
    };
    report(&mut stats, &s, m, &[("1.0", c(1000, 500))], t0).unwrap();
    report(&mut stats, &s, m, &[("1.0", c(3000, 500))], t0).unwrap();
    // The OSD restarted: its counters start from zero together. Reads fell, so the writes (which
    // grew past their old value by chance) are a new count as well, not 700 - 500.
    report(&mut stats, &s, m, &[("1.0", c(200, 700))], t0).unwrap();
    let t = stats.totals()[&p];
    assert_eq!((t.read_bytes, t.write_bytes), (3200, 1200));
}

#[test]
fn counters_near_u64_max_saturate_and_never_go_back() {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 8, "host");
    let q = pool(&mut s, "two", 3, 8, "host");
    let m = members(&s, p, 0)[0];
    let n = members(&s, q, 0)[0];
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    let max = IoCounters {
        read_bytes: u64::MAX,
        write_bytes: u64::MAX - 1,
        read_ops: u64::MAX,
        write_ops: 1,
    };
    report(&mut stats, &s, m, &[("1.0", max)], t0).unwrap();
    // A second PG of the same pool adds past 2^64: the total stays at the top (it wrapped).
    let m1 = members(&s, p, 1)[0];
    report(&mut stats, &s, m1, &[("1.1", max)], t0).unwrap();
    let top = stats.totals()[&p];
    assert_eq!(top.read_bytes, u64::MAX);
    assert_eq!(top.write_bytes, u64::MAX);
    assert_eq!(top.write_ops, 2);
    // Another pool at the top: the cluster sum saturates too.
    report(&mut stats, &s, n, &[("2.0", max)], t0).unwrap();
    assert_eq!(stats.cluster_totals().read_bytes, u64::MAX);
    // A restart from zero and more I/O: still at the top, never lower.
    report(
        &mut stats,
        &s,
        m,
        &[("1.0", writes(10))],
        t0 + Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(stats.totals()[&p].read_bytes, u64::MAX);
    assert_eq!(stats.totals()[&p].write_bytes, u64::MAX);
    let r = stats.rates(t0 + Duration::from_secs(1));
    assert!(
        r.read_bytes_per_sec.is_finite() && r.read_bytes_per_sec >= 0.0,
        "{r:?}"
    );
}

#[test]
fn entries_of_pgs_the_reporter_does_not_hold_are_skipped_and_counted() {
    let (s, p) = stats_cluster();
    let o = outsider(&s, p, 0);
    let mine = (0..8)
        .find(|id| pg(&s, p, *id).involves(o))
        .expect("a PG of the outsider");
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    let name = format!("1.{mine}");
    let r = report(
        &mut stats,
        &s,
        o,
        &[
            ("1.0", writes(1 << 40)),
            (&name, writes(4096)),
            ("1.99", writes(1)),
            ("7.0", writes(1)),
        ],
        t0,
    )
    .unwrap();
    assert_eq!((r.unknown, r.not_member), (2, 1));
    assert_eq!(
        stats.totals()[&p].write_bytes,
        4096,
        "only its own PG counted"
    );
    assert_eq!(stats.tracked(), 1);
}

#[test]
fn a_report_from_an_osd_that_is_not_up_or_malformed_is_refused_whole() {
    let (mut s, p) = stats_cluster();
    let m = members(&s, p, 0);
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    let entries = [("1.0", writes(4096))];
    assert_eq!(
        report(&mut stats, &s, OsdId(99), &entries, t0),
        Err(ClusterError::OsdNotFound(OsdId(99)))
    );
    let never = apply_id(&mut s, &uuid(40));
    assert_eq!(
        report(&mut stats, &s, never, &entries, t0),
        Err(ClusterError::ReporterNotUp(never))
    );
    run(&mut s, command::MarkDown { ids: vec![m[0]] });
    assert_eq!(
        report(&mut stats, &s, m[0], &entries, t0),
        Err(ClusterError::ReporterNotUp(m[0]))
    );
    // Two spellings of one PG would count against each other.
    assert_eq!(
        report(
            &mut stats,
            &s,
            m[1],
            &[("1.10", writes(1)), ("1.0xa", writes(9))],
            t0
        ),
        Err(ClusterError::DuplicatePgName {
            pool: p,
            pg: PgId(10)
        })
    );
    // A bad name refuses the report, good entries included; a long one is cut in the error.
    assert_eq!(
        report(
            &mut stats,
            &s,
            m[1],
            &[("1.0", writes(1)), ("rbd-0", writes(1))],
            t0
        ),
        Err(ClusterError::InvalidPgName("'rbd-0'".to_string()))
    );
    let long = "x".repeat(100_000);
    assert_eq!(
        report(&mut stats, &s, m[1], &[(&long, writes(1))], t0),
        Err(ClusterError::InvalidPgName(format!(
            "'{}…(100000 bytes)'",
            "x".repeat(64)
        )))
    );
    assert!(stats.totals().is_empty(), "nothing recorded");
    assert_eq!(stats.tracked(), 0);
}

/// Marks `osd` out and finishes every change that follows, as the OSDs would: afterwards no
/// PG involves it.
fn move_pgs_off(s: &mut ClusterState, p: PoolId, osd: OsdId) {
    run(s, command::OsdOut { id: osd });
    let list = s.pgs_needing_refresh(p, usize::MAX);
    run(s, command::RefreshPgs { pool: p, pgs: list });
    for (id, g) in pgs(s, p) {
        if let Some(t) = g.target {
            run(
                s,
                command::MemberChangeFinish {
                    reporter: Some(t.members[0]),
                    result: 0,
                    pool: p,
                    pg: id,
                    members: t.members,
                },
            );
        }
    }
    assert!(pgs(s, p).iter().all(|(_, g)| !g.involves(osd)));
}

#[test]
fn a_pg_leaving_an_osd_drops_its_counter_at_the_osds_next_report() {
    let (mut s, p) = stats_cluster();
    let x = OsdId(1);
    let held: Vec<u32> = (0..8).filter(|id| pg(&s, p, *id).involves(x)).collect();
    let names: Vec<String> = held.iter().map(|id| format!("1.{id}")).collect();
    let entries: Vec<(&str, IoCounters)> = names
        .iter()
        .map(|n| (n.as_str(), writes(1 << 20)))
        .collect();
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    report(&mut stats, &s, x, &entries, t0).unwrap();
    assert_eq!(stats.tracked(), held.len());
    let before = stats.totals()[&p].write_bytes;
    // While its PGs are remapped away, x still holds them.
    run(&mut s, command::OsdOut { id: x });
    let list = s.pgs_needing_refresh(p, usize::MAX);
    run(&mut s, command::RefreshPgs { pool: p, pgs: list });
    report(&mut stats, &s, x, &entries, t0).unwrap();
    assert_eq!(
        stats.tracked(),
        held.len(),
        "a change in progress keeps them"
    );
    // Once the changes finished, its next report drops them and counts its entries as foreign.
    move_pgs_off(&mut s, p, x);
    let r = report(&mut stats, &s, x, &entries, t0).unwrap();
    assert_eq!(r.not_member as usize, held.len());
    assert_eq!(stats.tracked(), 0);
    assert_eq!(
        stats.totals()[&p].write_bytes,
        before,
        "nothing counted twice"
    );
}

#[test]
fn the_sweep_drops_counters_of_silent_osds_and_of_deleted_pools() {
    let (mut s, p) = stats_cluster();
    let mut stats = IoStats::new(WINDOW);
    let t0 = Instant::now();
    let y = members(&s, p, 0)[0];
    report(&mut stats, &s, y, &[("1.0", writes(1))], t0).unwrap();
    // y's PGs move away and y falls silent; another OSD keeps reporting.
    move_pgs_off(&mut s, p, y);
    let w = members(&s, p, 0)[0];
    report(&mut stats, &s, w, &[("1.0", writes(1))], t0 + WINDOW / 2).unwrap();
    assert_eq!(stats.tracked(), 2, "within a window nothing is swept");
    report(&mut stats, &s, w, &[("1.0", writes(1))], t0 + WINDOW * 2).unwrap();
    assert_eq!(stats.tracked(), 1, "y's counter swept");
    // The pool is deleted; the next sweep drops w's counter of it, the totals stay.
    run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    let q = pool(&mut s, "next", 3, 8, "host");
    let v = members(&s, q, 0)[0];
    report(&mut stats, &s, v, &[("2.0", writes(1))], t0 + WINDOW * 4).unwrap();
    assert_eq!(stats.tracked(), 1, "only the new pool's counter is held");
    assert_eq!(
        stats.totals()[&p].write_bytes,
        2,
        "a deleted pool's totals (a byte from y, one from w) stay"
    );
}

#[test]
fn rates_use_the_real_window() {
    let (s, p) = stats_cluster();
    let m = members(&s, p, 0)[0];
    let t0 = Instant::now();
    let mut stats = IoStats::new(WINDOW);
    assert_eq!(stats.rates(t0).window_seconds, 0.0, "no samples: no rate");
    for i in 0..=20u64 {
        // 1000 bytes/s read, steady.
        let reads = IoCounters {
            read_bytes: 1000 * i,
            ..IoCounters::default()
        };
        report(
            &mut stats,
            &s,
            m,
            &[("1.0", reads)],
            t0 + Duration::from_secs(i),
        )
        .unwrap();
    }
    stats.recovered(t0 + Duration::from_secs(20));
    let r = stats.rates(t0 + Duration::from_secs(20));
    assert!((r.read_bytes_per_sec - 1000.0).abs() < 1e-6, "{r:?}");
    assert!((r.window_seconds - 10.0).abs() < 1e-6, "{r:?}");
    assert!(r.recovery_pgs_per_sec > 0.0);
    // Long after the last report the window is empty again.
    assert_eq!(
        stats.rates(t0 + Duration::from_secs(100)).window_seconds,
        0.0
    );
}
