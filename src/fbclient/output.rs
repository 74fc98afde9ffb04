//! How fbclient writes: aligned tables, human sizes and rates, sizes parsed from `10G`-style
//! text, the names of PG states, flags, failure domains and health, and the two output
//! channels (a whole report, or one line at a time for watch and fleet ops).

use std::fmt::Display;
use std::io::Write;

use super::Failure;
use crate::cluster::PgState;
use crate::proto::monitor as api;

/// Appends one formatted line to a `String` (formatting into a String cannot fail).
macro_rules! put {
    ($buf:expr) => {{
        $buf.push('\n');
    }};
    ($buf:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($buf, $($arg)*);
    }};
}
pub(crate) use put;

/// What an op prints when it is done.
pub enum Output {
    Text(String),
    Json(serde_json::Value),
}

impl Output {
    /// Writes the output to stdout.
    pub fn print(&self) -> Result<(), Failure> {
        let mut out = std::io::stdout().lock();
        match self {
            Output::Text(t) => out.write_all(t.as_bytes())?,
            Output::Json(v) => {
                let text = serde_json::to_string_pretty(v)
                    .map_err(|e| Failure::Failed(format!("cannot encode JSON: {e}")))?;
                out.write_all(text.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// Writes one line to stdout at once (watch and fleet ops stream their output).
pub fn emit(line: impl Display) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Writes one JSON object as one line.
pub fn emit_json(v: &serde_json::Value) -> Result<(), Failure> {
    emit(v)
}

/// A table with aligned columns (two spaces apart; the last column is not padded).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut s = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            put!(s, "{}", line.trim_end());
        }
        s
    }
}

const UNITS: [(&str, u32); 5] = [("K", 10), ("M", 20), ("G", 30), ("T", 40), ("P", 50)];

/// Parses a size: plain bytes (`4096`) or a number with a binary suffix (`10G`, `512M`,
/// `1.5T`, `4k`, `10GiB`, `10GB`): K, M, G, T, P are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size '{text}' (bytes, or a number with K, M, G, T or P)");
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let suffix = suffix.trim().to_ascii_uppercase();
    let suffix = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B'))
        .unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        s => UNITS
            .iter()
            .find(|(u, _)| *u == s)
            .map(|(_, shift)| *shift)
            .ok_or_else(invalid)?,
    };
    if number.is_empty() {
        return Err(invalid());
    }
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(1u64 << shift).ok_or_else(invalid);
    }
    let f: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = f * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// A byte count for humans: `4 MiB`, `1.5 GiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    human(n as f64, "")
}

/// A rate in bytes per second for humans: `1.2 MiB/s`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    human(bytes_per_sec, "/s")
}

fn human(n: f64, per: &str) -> String {
    let mut unit = "B";
    let mut value = n;
    for (u, shift) in UNITS {
        let scale = (1u64 << shift) as f64;
        if n >= scale {
            unit = u;
            value = n / scale;
        }
    }
    let number = if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let s = format!("{value:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if unit == "B" {
        format!("{number} B{per}")
    } else {
        format!("{number} {unit}iB{per}")
    }
}

/// A number of operations per second, without needless decimals.
pub fn human_ops(ops: f64) -> String {
    if ops.fract() == 0.0 || ops >= 100.0 {
        format!("{ops:.0}")
    } else {
        format!("{ops:.1}")
    }
}

/// `active+undersize`-style name of a PG state.
pub fn pg_state_name(state: u32) -> String {
    PgState(state).name()
}

/// `1.7`: pool id and PG id, as the original printed PG ids.
pub fn pgid(pool: u32, pg: u32) -> String {
    format!("{pool}.{pg}")
}

/// `[1,4,7]`.
pub fn osd_list(ids: &[u32]) -> String {
    let parts: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// The lowercase name of a cluster flag (`noout`).
pub fn flag_name(flag: i32) -> String {
    match api::ClusterFlag::try_from(flag) {
        Ok(api::ClusterFlag::Noout) => "noout".into(),
        Ok(api::ClusterFlag::Norebalance) => "norebalance".into(),
        Ok(api::ClusterFlag::Nodown) => "nodown".into(),
        Ok(api::ClusterFlag::Noup) => "noup".into(),
        Ok(api::ClusterFlag::Noin) => "noin".into(),
        _ => format!("flag{flag}"),
    }
}

/// Flags as names.
pub fn flag_names(flags: &[i32]) -> Vec<String> {
    flags.iter().map(|f| flag_name(*f)).collect()
}

/// `noout,norebalance`, or `none`.
pub fn flags_text(flags: &[i32]) -> String {
    if flags.is_empty() {
        "none".to_string()
    } else {
        flag_names(flags).join(",")
    }
}

/// `osd`, `host`, `rack` or `root`.
pub fn failure_domain_name(d: i32) -> &'static str {
    match api::FailureDomain::try_from(d) {
        Ok(api::FailureDomain::Osd) => "osd",
        Ok(api::FailureDomain::Host) => "host",
        Ok(api::FailureDomain::Rack) => "rack",
        Ok(api::FailureDomain::Root) => "root",
        _ => "unknown",
    }
}

/// `HEALTH_OK`, `HEALTH_WARN`, `HEALTH_ERR`.
pub fn health_name(h: i32) -> &'static str {
    match api::HealthStatus::try_from(h) {
        Ok(api::HealthStatus::Ok) => "HEALTH_OK",
        Ok(api::HealthStatus::Warn) => "HEALTH_WARN",
        Ok(api::HealthStatus::Err) => "HEALTH_ERR",
        _ => "HEALTH_UNKNOWN",
    }
}

/// `leader` or `standby`.
pub fn role_name(m: &api::MonitorInfo) -> &'static str {
    match api::MonitorRole::try_from(m.role) {
        Ok(api::MonitorRole::Leader) => "leader",
        _ => "standby",
    }
}

/// `up`/`down` of an OSD (`new` for one that never booted).
pub fn up_text(o: &api::OsdInfo) -> &'static str {
    match (o.pending, o.up) {
        (true, _) => "new",
        (false, true) => "up",
        (false, false) => "down",
    }
}

/// `in`/`out` of an OSD.
pub fn in_text(o: &api::OsdInfo) -> &'static str {
    if o.r#in { "in" } else { "out" }
}

/// A weight without needless decimals: `1`, `0.5`.
pub fn weight_text(w: f64) -> String {
    let s = format!("{w:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5T"), Ok(3 << 39));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        for bad in ["", "G", "10X", "-1", "1.2.3G", "0.1", "99999999999P"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_print() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4 << 20), "4 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(1536.0), "1.5 KiB/s");
        assert_eq!(human_ops(2.5), "2.5");
        assert_eq!(human_ops(120.4), "120");
        assert_eq!(weight_text(1.0), "1");
        assert_eq!(weight_text(0.25), "0.25");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "NAME", "X"]);
        t.row(vec!["1".into(), "rbd".into(), "a".into()]);
        t.row(vec!["10".into(), "p".into(), "".into()]);
        assert_eq!(t.render(), "ID  NAME  X\n1   rbd   a\n10  p\n");
    }

    #[test]
    fn names() {
        assert_eq!(pg_state_name(2 | 4), "active+undersize");
        assert_eq!(flags_text(&[]), "none");
        assert_eq!(flags_text(&[1, 2]), "noout,norebalance");
        assert_eq!(osd_list(&[1, 4, 7]), "[1,4,7]");
    }
}
