//! Metrics of the cluster's state, written straight into the exposition text when Prometheus
//! scrapes: OSD counts and per-OSD up/in/weight, heartbeat ages, pools and epochs, PGs by pool
//! and state, images, health and its checks, and the client I/O counters per pool. Only the
//! serving leader knows these: on a standby the families are absent (not zero), so dashboards
//! never mix a stale standby's numbers with the leader's. `fastblock_monitor_info` (version,
//! name, role) is on every monitor.
//!
//! The text is written directly rather than through `prometheus` metric vectors: at 10,000 OSDs
//! that is 30,000 per-OSD samples per scrape, and building labelled vectors for them on every
//! scrape costs far more than formatting the lines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use crate::cluster::PgState;
use crate::health::{self, Severity};
use crate::node::Node;

/// Upper bounds of the heartbeat-age histogram (seconds).
const AGE_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0];

/// Appends the cluster families of `node` to `out`.
pub fn render(node: &Node, out: &mut String) {
    let serving = node.serving();
    let role = if serving.is_some() {
        "leader"
    } else {
        "standby"
    };
    let mut w = Writer(out);
    w.family(
        "fastblock_monitor_info",
        "gauge",
        "Always 1; labels describe this monitor and its current role (leader or standby)",
    );
    w.sample(
        "fastblock_monitor_info",
        &[
            ("name", &node.me.name),
            ("role", role),
            ("version", crate::VERSION),
        ],
        1.0,
    );
    let Some(serving) = serving else {
        return;
    };
    let snap = serving.snapshot();

    let (mut up, mut inn) = (0u64, 0u64);
    let mut ages = Histogram::new(&AGE_BUCKETS);
    let mut per_osd = Vec::with_capacity(snap.osd_count());
    {
        let now = Instant::now();
        let heard = serving.heartbeats.findings().heard.clone();
        for o in snap.osds() {
            up += u64::from(o.is_up());
            inn += u64::from(o.is_in());
            if o.is_up() {
                ages.observe(
                    now.saturating_duration_since(heard.last_seen(o.id))
                        .as_secs_f64(),
                );
            }
            per_osd.push((o.id.0, o.is_up(), o.is_in(), o.weight.as_f64()));
        }
    }
    w.gauge(
        "fastblock_osds",
        "OSDs in the osdmap (leader only)",
        snap.osd_count() as f64,
    );
    w.gauge("fastblock_osds_up", "OSDs up (leader only)", up as f64);
    w.gauge("fastblock_osds_in", "OSDs in (leader only)", inn as f64);
    w.per_osd(
        "fastblock_osd_up",
        "1 if the OSD is up (leader only)",
        &per_osd,
        |o| f64::from(u8::from(o.1)),
    );
    w.per_osd(
        "fastblock_osd_in",
        "1 if the OSD is in (leader only)",
        &per_osd,
        |o| f64::from(u8::from(o.2)),
    );
    w.per_osd(
        "fastblock_osd_weight",
        "Placement weight of the OSD (leader only)",
        &per_osd,
        |o| o.3,
    );
    w.histogram(
        "fastblock_osd_heartbeat_age_seconds",
        "Time since each up OSD was last heard from, one observation per up OSD at scrape time (leader only)",
        &ages,
    );
    w.gauge(
        "fastblock_osd_heartbeat_age_max_seconds",
        "Longest time since an up OSD was heard from (leader only)",
        ages.max,
    );

    w.gauge(
        "fastblock_pools",
        "Pools (leader only)",
        snap.pools().count() as f64,
    );
    w.gauge(
        "fastblock_osdmap_epoch",
        "The osdmap epoch (leader only)",
        snap.osdmap_epoch().0 as f64,
    );
    if snap.pools().next().is_some() {
        w.family(
            "fastblock_pool_epoch",
            "gauge",
            "The pool's pgmap epoch (leader only)",
        );
        for p in snap.pools() {
            w.sample(
                "fastblock_pool_epoch",
                &[("pool", &p.name)],
                p.epoch.0 as f64,
            );
        }
        w.family(
            "fastblock_pgs",
            "gauge",
            "PGs by pool and state, e.g. state=\"active+undersize\" (leader only)",
        );
        for p in snap.pools() {
            let mut states = BTreeMap::new();
            for (_, pg) in p.pgs.iter() {
                *states.entry(pg.state.0).or_insert(0u64) += 1;
            }
            for (state, n) in states {
                w.sample(
                    "fastblock_pgs",
                    &[("pool", &p.name), ("state", &PgState(state).name())],
                    n as f64,
                );
            }
        }
    }
    w.gauge(
        "fastblock_images",
        "Images (leader only)",
        snap.image_count() as f64,
    );

    let checks = serving.health(&snap, node.monitor_facts());
    let stored = snap.health();
    let level = match health::overall(&checks, stored) {
        Severity::Ok => 0.0,
        Severity::Warn => 1.0,
        Severity::Err => 2.0,
    };
    w.gauge(
        "fastblock_health_status",
        "Cluster health: 0 OK, 1 WARN, 2 ERR, muted checks not counted (leader only)",
        level,
    );
    if !checks.is_empty() {
        w.family(
            "fastblock_health_check",
            "gauge",
            "1 for every failing health check, e.g. code=\"OSD_DOWN\"; muted=\"true\" while an operator mutes it (leader only)",
        );
        for c in &checks {
            let muted = if stored.is_muted(c.code) {
                "true"
            } else {
                "false"
            };
            w.sample(
                "fastblock_health_check",
                &[
                    ("code", c.code),
                    ("severity", c.severity.name()),
                    ("muted", muted),
                ],
                1.0,
            );
        }
    }

    let io: Vec<(String, crate::cluster::iostats::IoCounters)> = serving.iostats.with(|io| {
        io.totals()
            .iter()
            .map(|(pool, totals)| {
                // Counters of deleted pools stay under their id.
                let name = snap
                    .pool(*pool)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| format!("#{}", pool.0));
                (name, *totals)
            })
            .collect()
    });
    if !io.is_empty() {
        type Field = fn(&crate::cluster::iostats::IoCounters) -> u64;
        let counters: [(&str, &str, Field); 4] = [
            (
                "fastblock_pool_read_bytes_total",
                "Client bytes read from the pool, from DataStatistics (leader only; restarts with each term)",
                |c| c.read_bytes,
            ),
            (
                "fastblock_pool_write_bytes_total",
                "Client bytes written to the pool (leader only; restarts with each term)",
                |c| c.write_bytes,
            ),
            (
                "fastblock_pool_read_ops_total",
                "Client read operations on the pool (leader only; restarts with each term)",
                |c| c.read_ops,
            ),
            (
                "fastblock_pool_write_ops_total",
                "Client write operations on the pool (leader only; restarts with each term)",
                |c| c.write_ops,
            ),
        ];
        for (name, help, field) in counters {
            w.family(name, "counter", help);
            for (pool, totals) in &io {
                w.sample(name, &[("pool", pool)], field(totals) as f64);
            }
        }
    }
}

/// A histogram filled at scrape time.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
    max: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
            max: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
        self.max = self.max.max(v);
    }
}

/// Writes families and samples in the Prometheus text format (version 0.0.4).
struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label(self.0, v);
                self.0.push('"');
            }
            self.0.push('}');
        }
        self.0.push(' ');
        write_value(self.0, value);
        self.0.push('\n');
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn per_osd(
        &mut self,
        name: &str,
        help: &str,
        osds: &[(u32, bool, bool, f64)],
        value: impl Fn(&(u32, bool, bool, f64)) -> f64,
    ) {
        if osds.is_empty() {
            return;
        }
        self.family(name, "gauge", help);
        for o in osds {
            let _ = write!(self.0, "{name}{{osd=\"{}\"}} ", o.0);
            write_value(self.0, value(o));
            self.0.push('\n');
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = write!(self.0, "{name}_sum ");
        write_value(self.0, h.sum);
        let _ = writeln!(self.0, "\n{name}_count {}", h.count);
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_format_values() {
        let mut s = String::new();
        let mut w = Writer(&mut s);
        w.family("x_total", "counter", "a \\ help\nline");
        w.sample(
            "x_total",
            &[("pool", "a\"b\\c\nd"), ("state", "active")],
            3.0,
        );
        w.sample("x_total", &[], 0.25);
        w.sample("x_total", &[], f64::NAN);
        assert_eq!(
            s,
            "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n\
             x_total{pool=\"a\\\"b\\\\c\\nd\",state=\"active\"} 3\nx_total 0.25\nx_total NaN\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::new(&AGE_BUCKETS);
        for v in [0.1, 0.7, 0.9, 4.0, 120.0] {
            h.observe(v);
        }
        assert_eq!(h.max, 120.0);
        let mut s = String::new();
        Writer(&mut s).histogram("age_seconds", "h", &h);
        let line = |le: &str| {
            s.lines()
                .find(|l| l.starts_with(&format!("age_seconds_bucket{{le=\"{le}\"}} ")))
                .unwrap_or_else(|| panic!("{le} in {s}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("0.5"), "1");
        assert_eq!(line("1"), "3");
        assert_eq!(line("5"), "4");
        assert_eq!(line("60"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(s.contains("age_seconds_sum 125.7\n"), "{s}");
        assert!(s.contains("age_seconds_count 5\n"), "{s}");
    }
}
