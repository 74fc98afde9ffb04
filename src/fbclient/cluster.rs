//! Cluster-wide ops: `leader`, `status` (like `ceph -s`), `health`, `-set`/`-unset` of flags
//! and `osdtree` (like `ceph osd tree`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::output::{
    Output, Table, flag_names, flags_text, health_name, human_ops, human_rate, in_text, put,
    role_name, up_text,
};
use super::{Ctx, Failure, args, json};
use crate::proto::monitor as api;

/// `leader`: who leads and every monitor's role.
pub async fn leader(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx.client.get_leader().await?;
    Ok(ctx.output(
        || {
            json!({
                "leader": r.leader.as_ref().map(|l| json!({"name": l.name, "address": l.address})),
                "leader_epoch": r.leader_epoch,
                "answered_by": r.answered_by,
                "monitors": r.monitors.iter().map(json::monitor).collect::<Vec<_>>(),
            })
        },
        || {
            let mut s = String::new();
            match &r.leader {
                Some(l) => put!(
                    s,
                    "leader: {} ({}) epoch {}",
                    l.name,
                    l.address,
                    r.leader_epoch
                ),
                None => put!(s, "leader: none (election in progress)"),
            }
            // The format fbclient always had (README shows it).
            put!(s, "{:<16} {:<24} {:<8} VERSION", "NAME", "ADDRESS", "ROLE");
            for m in &r.monitors {
                put!(
                    s,
                    "{:<16} {:<24} {:<8} {}",
                    m.name,
                    m.address,
                    role_name(m),
                    m.version
                );
            }
            s
        },
    ))
}

/// `status`: a `ceph -s`-like summary.
pub async fn status(ctx: &Ctx) -> Result<Output, Failure> {
    let s = ctx
        .client
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await?;
    Ok(ctx.output(|| json::status(&s), || render_status(&s)))
}

/// The text of `status`.
pub fn render_status(s: &api::GetClusterStatusResponse) -> String {
    let mut out = String::new();
    put!(out, "  cluster:");
    put!(out, "    health: {}", health_name(s.health));
    for c in &s.checks {
        let muted = if c.muted { " (muted)" } else { "" };
        put!(out, "            {}: {}{muted}", c.code, c.summary);
    }
    put!(out);
    put!(out, "  services:");
    let leader = s.monitors.iter().find(|m| role_name(m) == "leader");
    let standbys: Vec<&str> = s
        .monitors
        .iter()
        .filter(|m| role_name(m) != "leader")
        .map(|m| m.name.as_str())
        .collect();
    let mut mon = format!("{} monitors", s.monitors.len());
    if let Some(l) = leader {
        mon.push_str(&format!(
            ", leader {} ({}), leader epoch {}",
            l.name, l.address, s.leader_epoch
        ));
    }
    if !standbys.is_empty() {
        mon.push_str(&format!("; standby: {}", standbys.join(", ")));
    }
    put!(out, "    mon: {mon}");
    put!(
        out,
        "    osd: {} osds: {} up, {} in; osdmap epoch {}",
        s.osds_total,
        s.osds_up,
        s.osds_in,
        s.osdmap_epoch
    );
    put!(out, "    flags: {}", flags_text(&s.flags));
    put!(out);
    put!(out, "  data:");
    put!(out, "    pools:  {} pools, {} pgs", s.pools, s.pgs);
    put!(out, "    images: {}", s.images);
    let mut states: Vec<&api::PgStateCount> = s.pg_states.iter().collect();
    states.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let width = states
        .iter()
        .map(|p| p.count.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, p) in states.iter().enumerate() {
        let label = if i == 0 { "pgs:   " } else { "       " };
        put!(out, "    {label} {:<width$} {}", p.count, p.name);
    }
    if states.is_empty() {
        put!(out, "    pgs:    none");
    }
    put!(out);
    put!(out, "  io:");
    let io = s.client_io.unwrap_or_default();
    if io.window_seconds > 0.0 {
        put!(
            out,
            "    client:   {} rd, {} wr, {} op/s rd, {} op/s wr (over {:.0}s)",
            human_rate(io.read_bytes_per_sec),
            human_rate(io.write_bytes_per_sec),
            human_ops(io.read_ops_per_sec),
            human_ops(io.write_ops_per_sec),
            io.window_seconds
        );
    } else {
        put!(out, "    client:   no samples yet");
    }
    put!(
        out,
        "    recovery: {} pgs/s",
        human_ops(s.recovery_pgs_per_sec)
    );
    out
}

/// `health`: the status and every check with its details. Succeeds whatever the health.
/// With `-mute=CODE` (`-ttl`, `-sticky`) or `-unmute=CODE` it changes the mute first and says
/// so above the status.
pub async fn health(ctx: &Ctx) -> Result<Output, Failure> {
    let mut done = Vec::new();
    if let Some(code) = &ctx.args.mute {
        let ttl_ms = ctx.args.ttl.map_or(0, |t| t.as_millis().max(1) as u64);
        ctx.client
            .mute_health(api::MuteHealthRequest {
                code: code.clone(),
                ttl_ms,
                sticky: ctx.args.sticky,
            })
            .await?;
        let how_long = match ctx.args.ttl {
            Some(t) => format!("for {}", humantime::format_duration(t)),
            None => "until unmuted".to_string(),
        };
        let sticky = if ctx.args.sticky { ", sticky" } else { "" };
        done.push(format!("muted {code} {how_long}{sticky}"));
    } else if ctx.args.ttl.is_some() || ctx.args.sticky {
        return Err(Failure::Usage("-ttl and -sticky go with -mute=CODE".into()));
    }
    if let Some(code) = &ctx.args.unmute {
        ctx.client
            .unmute_health(api::UnmuteHealthRequest { code: code.clone() })
            .await?;
        done.push(format!("unmuted {code}"));
    }
    let s = ctx
        .client
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await?;
    Ok(ctx.output(
        || {
            json!({
                "done": done,
                "health": health_name(s.health),
                "checks": s.checks.iter().map(json::check).collect::<Vec<_>>(),
                "mutes": s.mutes.iter().map(json::mute).collect::<Vec<_>>(),
            })
        },
        || {
            let mut out = String::new();
            for d in &done {
                put!(out, "{d}");
            }
            put!(out, "{}", health_name(s.health));
            for c in &s.checks {
                let severity = match api::HealthStatus::try_from(c.severity) {
                    Ok(api::HealthStatus::Err) => "ERR",
                    Ok(api::HealthStatus::Warn) => "WRN",
                    _ => "INF",
                };
                let muted = if c.muted { " (muted)" } else { "" };
                put!(out, "[{severity}] {}: {}{muted}", c.code, c.summary);
                for d in &c.detail {
                    put!(out, "    {d}");
                }
            }
            if !s.mutes.is_empty() {
                put!(out, "mutes:");
                for m in &s.mutes {
                    let until = if m.until_ms > 0 {
                        format!("until {}", unix_ms_text(m.until_ms))
                    } else {
                        "until unmuted".to_string()
                    };
                    let sticky = if m.sticky { ", sticky" } else { "" };
                    put!(out, "    {} {until}{sticky}", m.code);
                }
            }
            out
        },
    ))
}

/// A Unix time in ms as RFC 3339 (UTC, seconds).
fn unix_ms_text(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `-set=FLAG` / `-unset=FLAG` (both may be given: set first).
pub async fn flags(
    ctx: &Ctx,
    set: Option<String>,
    unset: Option<String>,
) -> Result<Output, Failure> {
    let mut done = Vec::new();
    let mut last = None;
    if let Some(name) = set {
        let flag = args::parse_flag(&name)? as i32;
        last = Some(ctx.client.set_flag(api::SetFlagRequest { flag }).await?);
        done.push(format!("flag {} set", super::output::flag_name(flag)));
    }
    if let Some(name) = unset {
        let flag = args::parse_flag(&name)? as i32;
        last = Some(
            ctx.client
                .unset_flag(api::UnsetFlagRequest { flag })
                .await?,
        );
        done.push(format!("flag {} unset", super::output::flag_name(flag)));
    }
    let r = last.unwrap_or_default();
    Ok(ctx.output(
        || json!({"done": done, "flags": flag_names(&r.flags), "osdmap_epoch": r.osdmap_epoch}),
        || {
            format!(
                "{}; flags now: {} (osdmap epoch {})\n",
                done.join(", "),
                flags_text(&r.flags),
                r.osdmap_epoch
            )
        },
    ))
}

/// A node of the OSD tree: root, rack, host or osd.
struct Node<'a> {
    kind: &'static str,
    name: String,
    weight: f64,
    osd: Option<&'a api::OsdInfo>,
    children: Vec<Node<'a>>,
}

impl Node<'_> {
    fn bucket<'a>(kind: &'static str, name: &str, children: Vec<Node<'a>>) -> Node<'a> {
        Node {
            kind,
            name: name.to_string(),
            weight: children.iter().map(|c| c.weight).sum(),
            osd: None,
            children,
        }
    }
}

/// Host name → its OSDs.
type Hosts<'a> = BTreeMap<String, Vec<&'a api::OsdInfo>>;

fn host_nodes(hosts: Hosts<'_>) -> Vec<Node<'_>> {
    hosts
        .into_iter()
        .map(|(name, mut osds)| {
            osds.sort_by_key(|o| o.id);
            let leaves = osds
                .into_iter()
                .map(|o| Node {
                    kind: "osd",
                    name: format!("osd.{}", o.id),
                    weight: o.weight,
                    osd: Some(o),
                    children: Vec::new(),
                })
                .collect();
            Node::bucket("host", &name, leaves)
        })
        .collect()
}

/// Builds root → rack → host → osd. OSDs without a rack hang directly under their root;
/// OSDs that never booted (no host yet) under host `(none)`.
fn tree(osds: &[api::OsdInfo]) -> Vec<Node<'_>> {
    let mut roots: BTreeMap<String, BTreeMap<String, Hosts<'_>>> = BTreeMap::new();
    for o in osds {
        let root = if o.root.is_empty() {
            "default"
        } else {
            &o.root
        };
        let host = if o.host.is_empty() { "(none)" } else { &o.host };
        roots
            .entry(root.to_string())
            .or_default()
            .entry(o.rack.clone())
            .or_default()
            .entry(host.to_string())
            .or_default()
            .push(o);
    }
    roots
        .into_iter()
        .map(|(root, racks)| {
            let mut children = Vec::new();
            for (rack, hs) in racks {
                if rack.is_empty() {
                    children.extend(host_nodes(hs));
                } else {
                    children.push(Node::bucket("rack", &rack, host_nodes(hs)));
                }
            }
            Node::bucket("root", &root, children)
        })
        .collect()
}

fn tree_rows(node: &Node<'_>, depth: usize, t: &mut Table) {
    let name = format!("{}{} {}", "  ".repeat(depth), node.kind, node.name);
    let (id, up, r#in) = match node.osd {
        Some(o) => (
            o.id.to_string(),
            up_text(o).to_string(),
            in_text(o).to_string(),
        ),
        None => ("-".to_string(), String::new(), String::new()),
    };
    t.row(vec![id, format!("{:>8.3}", node.weight), name, up, r#in]);
    for c in &node.children {
        tree_rows(c, depth + 1, t);
    }
}

fn tree_json(node: &Node<'_>) -> Value {
    match node.osd {
        Some(o) => json!({
            "type": "osd", "id": o.id, "name": node.name, "weight": o.weight,
            "up": o.up, "in": o.r#in, "pending": o.pending,
        }),
        None => json!({
            "type": node.kind, "name": node.name, "weight": node.weight,
            "children": node.children.iter().map(tree_json).collect::<Vec<_>>(),
        }),
    }
}

/// `osdtree`: the topology with weights and up/in.
pub async fn osd_tree(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await?;
    let map = r.osdmap.unwrap_or_default().into_fields();
    let nodes = tree(&map.osds);
    Ok(ctx.output(
        || json!({"epoch": map.epoch, "nodes": nodes.iter().map(tree_json).collect::<Vec<_>>()}),
        || {
            let mut t = Table::new(&["ID", "  WEIGHT", "TYPE NAME", "UP", "IN"]);
            for n in &nodes {
                tree_rows(n, 0, &mut t);
            }
            t.render()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osd(id: u32, host: &str, rack: &str, up: bool) -> api::OsdInfo {
        api::OsdInfo {
            id,
            host: host.to_string(),
            rack: rack.to_string(),
            root: "default".to_string(),
            weight: 1.0,
            up,
            r#in: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_tree_nests_root_rack_host_osd() {
        let osds = [
            osd(2, "h1", "r1", true),
            osd(1, "h1", "r1", false),
            osd(3, "h2", "", true),
        ];
        let mut t = Table::new(&["ID", "WEIGHT", "TYPE NAME", "UP", "IN"]);
        for n in &tree(&osds) {
            tree_rows(n, 0, &mut t);
        }
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(
            lines[1].contains("root default") && lines[1].contains("3.000"),
            "{text}"
        );
        assert!(lines[2].contains("  host h2"), "{text}");
        assert!(
            lines[3].starts_with("3 ") && lines[3].contains("    osd osd.3"),
            "{text}"
        );
        assert!(
            lines[4].contains("  rack r1") && lines[4].contains("2.000"),
            "{text}"
        );
        assert!(lines[5].contains("    host h1"), "{text}");
        assert!(
            lines[6].contains("      osd osd.1") && lines[6].contains("down"),
            "{text}"
        );
        assert!(
            lines[7].contains("      osd osd.2") && lines[7].contains("up"),
            "{text}"
        );
    }
}
