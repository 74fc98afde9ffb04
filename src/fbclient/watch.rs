//! `watchosdmap`, `watchpgmap`, `watchclustermap`: follow the maps through WatchClusterMap
//! (never by polling) and print each change as it happens: the epoch and what changed, e.g.
//! `osdmap e12: osd.3 down`, `osdmap e13: flag noout set`,
//! `pgmap pool 1 'rbd' e9: 2 pgs changed: 1.4 active→active+remapped ...; now 62 active, ...`.
//! The watcher resumes on a new leader by itself; this file keeps what it printed last so it
//! can say what changed.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::output::{emit, emit_json, flag_name, flags_text, osd_list, pg_state_name, pgid};
use super::{Ctx, Failure, json};
use crate::client::{ClusterMaps, MapEvent, MapWatcher, Scope};
use crate::proto::monitor as api;

/// At most this many changes are spelled out per line (JSON lists them all).
const MAX_CHANGES: usize = 8;

/// Runs a watch until Ctrl-C, SIGTERM or `-duration`.
pub async fn watch(ctx: &Ctx, scope: Scope) -> Result<(), Failure> {
    let mut watcher = MapWatcher::new(ctx.client.clone(), scope);
    let mut view = View {
        json: ctx.json(),
        scope: Some(scope),
        ..View::default()
    };
    let stop = super::stopped(ctx.args.duration);
    tokio::pin!(stop);
    // The watcher retries for ever; the first connection must come within --timeout.
    let Some(first) =
        super::first_within(ctx.args.timeout, "leader", &mut stop, watcher.next()).await?
    else {
        return Ok(());
    };
    view.report(&first, watcher.maps())?;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            event = watcher.next() => view.report(&event?, watcher.maps())?,
        }
    }
}

/// What was printed last about an OSD.
#[derive(Debug, Clone, PartialEq)]
struct OsdSeen {
    up: bool,
    r#in: bool,
    pending: bool,
    weight: f64,
    host: String,
    rack: String,
    root: String,
    instance: u64,
}

impl From<&api::OsdInfo> for OsdSeen {
    fn from(o: &api::OsdInfo) -> Self {
        OsdSeen {
            up: o.up,
            r#in: o.r#in,
            pending: o.pending,
            weight: o.weight,
            host: o.host.clone(),
            rack: o.rack.clone(),
            root: o.root.clone(),
            instance: o.boot_instance,
        }
    }
}

/// What was printed last about a PG.
#[derive(Debug, Clone, PartialEq)]
struct PgSeen {
    state: u32,
    members: Vec<u32>,
    new_members: Vec<u32>,
    leader: u32,
}

impl From<&api::PgInfo> for PgSeen {
    fn from(g: &api::PgInfo) -> Self {
        PgSeen {
            state: g.state,
            members: g.members.clone(),
            new_members: g.new_members.clone(),
            leader: g.leader,
        }
    }
}

/// The watcher's state as last printed, to describe changes.
#[derive(Default)]
struct View {
    json: bool,
    scope: Option<Scope>,
    connected: bool,
    have_osdmap: bool,
    osds: BTreeMap<u32, OsdSeen>,
    flags: Vec<i32>,
    pools: BTreeMap<u32, (String, HashMap<u32, PgSeen>)>,
}

/// `HH:MM:SS` (UTC) of now.
fn clock() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    t.get(11..19).unwrap_or(&t).to_string()
}

impl View {
    fn out(&self, text: String, v: Value) -> Result<(), Failure> {
        if self.json {
            let mut v = v;
            v["time"] =
                json!(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
            emit_json(&v)
        } else {
            emit(format!("{} {text}", clock()))
        }
    }

    fn report(&mut self, event: &MapEvent, maps: &ClusterMaps) -> Result<(), Failure> {
        match event {
            MapEvent::Connected { monitor } => {
                let what = match self.scope {
                    Some(Scope::Osdmap) => "the osdmap",
                    Some(Scope::Pgmaps) => "the pgmaps",
                    _ => "the osdmap and pgmaps",
                };
                let verb = if self.connected {
                    "reconnected"
                } else {
                    "watching"
                };
                self.connected = true;
                self.out(
                    format!("{verb} {what} on {monitor}"),
                    json!({"event": "connected", "monitor": monitor}),
                )
            }
            MapEvent::Progress => Ok(()),
            MapEvent::Osdmap {
                epoch,
                from_epoch,
                full,
                changed,
                removed,
            } => self.osdmap(*epoch, *from_epoch, *full, changed, removed, maps),
            MapEvent::Pgmap {
                pool,
                epoch,
                from_epoch,
                full,
                changed,
            } => self.pgmap(*pool, *epoch, *from_epoch, *full, changed, maps),
            MapEvent::PoolDeleted { pool, epoch } => {
                let name = self.pools.remove(pool).map(|(n, _)| n).unwrap_or_default();
                self.out(
                    format!("pool {pool} '{name}' deleted (final epoch {epoch})"),
                    json!({"event": "pool_deleted", "pool": pool, "name": name, "epoch": epoch}),
                )
            }
        }
    }

    fn osdmap(
        &mut self,
        epoch: u64,
        from_epoch: u64,
        full: bool,
        changed: &[u32],
        removed: &[u32],
        maps: &ClusterMaps,
    ) -> Result<(), Failure> {
        let first = !self.have_osdmap;
        let mut changes = Vec::new();
        if !first {
            for f in maps.flags.iter().filter(|f| !self.flags.contains(f)) {
                changes.push(format!("flag {} set", flag_name(*f)));
            }
            for f in self.flags.iter().filter(|f| !maps.flags.contains(f)) {
                changes.push(format!("flag {} unset", flag_name(*f)));
            }
        }
        let mut removed: Vec<u32> = removed.to_vec();
        if full {
            removed.extend(self.osds.keys().filter(|id| !maps.osds.contains_key(id)));
        }
        for id in changed {
            if let Some(o) = maps.osds.get(id) {
                let now = OsdSeen::from(o);
                // The first map is summed up, not listed OSD by OSD.
                if !first && let Some(c) = describe_osd(*id, self.osds.get(id), &now) {
                    changes.push(c);
                }
                self.osds.insert(*id, now);
            }
        }
        for id in &removed {
            if self.osds.remove(id).is_some() {
                changes.push(format!("osd.{id} removed"));
            }
        }
        self.flags = maps.flags.clone();
        self.have_osdmap = true;
        let up = maps.osds.values().filter(|o| o.up).count();
        let r#in = maps.osds.values().filter(|o| o.r#in).count();
        let summary = format!(
            "{} osds, {up} up, {} in; flags: {}",
            maps.osds.len(),
            r#in,
            flags_text(&maps.flags)
        );
        let text = if first {
            format!("osdmap e{epoch}: full map, {summary}")
        } else if changes.is_empty() {
            format!("osdmap e{epoch}: no visible change ({summary})")
        } else {
            format!("osdmap e{epoch}: {}", grouped(&changes))
        };
        let osds: Vec<Value> = if first {
            Vec::new()
        } else {
            changed
                .iter()
                .filter_map(|id| maps.osds.get(id))
                .map(json::osd)
                .collect()
        };
        self.out(
            text,
            json!({
                "event": "osdmap", "epoch": epoch, "from_epoch": from_epoch, "full": full,
                "changes": changes, "osds": osds, "removed": removed,
                "flags": super::output::flag_names(&maps.flags),
                "osd_count": maps.osds.len(), "up": up, "in": r#in,
            }),
        )
    }

    fn pgmap(
        &mut self,
        pool: u32,
        epoch: u64,
        from_epoch: u64,
        full: bool,
        changed: &[u32],
        maps: &ClusterMaps,
    ) -> Result<(), Failure> {
        let Some(held) = maps.pools.get(&pool) else {
            return Ok(());
        };
        let name = held.info.name.clone();
        let new_pool = !self.pools.contains_key(&pool);
        let (_, seen) = self
            .pools
            .entry(pool)
            .or_insert_with(|| (name.clone(), HashMap::new()));
        let mut changes = Vec::new();
        let mut changed_pgs = Vec::new();
        for id in changed {
            let Some(g) = held.pgs.get(id) else { continue };
            let now = PgSeen::from(g);
            if !new_pool {
                if let Some(c) = describe_pg(pool, *id, seen.get(id), &now) {
                    changes.push(c);
                    changed_pgs.push(json::pg(pool, g));
                }
            }
            seen.insert(*id, now);
        }
        if full {
            seen.retain(|id, _| held.pgs.contains_key(id));
        }
        let mut states: BTreeMap<String, u64> = BTreeMap::new();
        for g in held.pgs.values() {
            *states.entry(pg_state_name(g.state)).or_insert(0) += 1;
        }
        let mut by_count: Vec<(&String, &u64)> = states.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let states_text = by_count
            .iter()
            .map(|(n, c)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let head = format!("pgmap pool {pool} '{name}' e{epoch}");
        let text = if new_pool {
            format!(
                "{head}: full map, {} pgs of size {}: {states_text}",
                held.pgs.len(),
                held.info.pg_size
            )
        } else if changes.is_empty() {
            format!("{head}: no visible change; now {states_text}")
        } else {
            format!(
                "{head}: {} pgs changed: {}; now {states_text}",
                changes.len(),
                limited(&changes, ", ")
            )
        };
        self.out(
            text,
            json!({
                "event": "pgmap", "pool": pool, "name": name, "epoch": epoch,
                "from_epoch": from_epoch, "full": full, "new_pool": new_pool,
                "pg_count": held.pgs.len(), "changes": changes, "pgs": changed_pgs,
                "states": states,
            }),
        )
    }
}

/// Changes for one line: OSDs with the same change share an entry (`osds 3,4,5 down`), and
/// past [`MAX_CHANGES`] entries the rest is counted, so a boot storm stays readable.
fn grouped(changes: &[String]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in changes {
        let (id, what) = c
            .strip_prefix("osd.")
            .and_then(|r| r.split_once(' '))
            .unwrap_or(("", c.as_str()));
        match groups
            .iter_mut()
            .find(|(w, ids)| *w == what && !id.is_empty() && !ids.is_empty())
        {
            Some((_, ids)) => ids.push(id),
            None => groups.push((what, if id.is_empty() { vec![] } else { vec![id] })),
        }
    }
    let entries: Vec<String> = groups
        .iter()
        .map(|(what, ids)| match ids.len() {
            0 => what.to_string(),
            1 => format!("osd.{} {what}", ids[0]),
            _ => format!("osds {} {what}", ids.join(",")),
        })
        .collect();
    limited(&entries, "; ")
}

/// The first [`MAX_CHANGES`] entries joined, and how many more there are.
fn limited(entries: &[String], separator: &str) -> String {
    let mut s = entries[..entries.len().min(MAX_CHANGES)].join(separator);
    if entries.len() > MAX_CHANGES {
        s.push_str(&format!(" and {} more", entries.len() - MAX_CHANGES));
    }
    s
}

/// What changed about an OSD, or None when nothing visible did.
fn describe_osd(id: u32, before: Option<&OsdSeen>, now: &OsdSeen) -> Option<String> {
    let Some(b) = before else {
        let state = if now.pending {
            "new (id applied, not booted)".to_string()
        } else {
            format!(
                "added: {}, {}, host {}",
                if now.up { "up" } else { "down" },
                if now.r#in { "in" } else { "out" },
                now.host
            )
        };
        return Some(format!("osd.{id} {state}"));
    };
    if b == now {
        return None;
    }
    let mut parts = Vec::new();
    let booted = b.pending && !now.pending;
    if booted {
        parts.push(format!("booted on host {}", now.host));
    } else if b.instance != now.instance && now.instance != 0 {
        parts.push("rebooted".to_string());
    }
    if b.up != now.up {
        parts.push(if now.up { "up" } else { "down" }.to_string());
    }
    if b.r#in != now.r#in {
        parts.push(if now.r#in { "in" } else { "out" }.to_string());
    }
    if b.weight != now.weight {
        parts.push(format!("weight {}→{}", b.weight, now.weight));
    }
    if !booted {
        for (what, old, new) in [
            ("host", &b.host, &now.host),
            ("rack", &b.rack, &now.rack),
            ("root", &b.root, &now.root),
        ] {
            if old != new {
                parts.push(format!("{what} {old}→{new}"));
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("osd.{id} {}", parts.join(", ")))
}

/// What changed about a PG, or None when nothing visible did.
fn describe_pg(pool: u32, id: u32, before: Option<&PgSeen>, now: &PgSeen) -> Option<String> {
    let name = pgid(pool, id);
    let Some(b) = before else {
        return Some(format!(
            "{name} new {} {}",
            pg_state_name(now.state),
            osd_list(&now.members)
        ));
    };
    let mut parts = Vec::new();
    if b.state != now.state {
        parts.push(format!(
            "{}→{}",
            pg_state_name(b.state),
            pg_state_name(now.state)
        ));
    }
    if b.members != now.members {
        parts.push(format!(
            "osds {}→{}",
            osd_list(&b.members),
            osd_list(&now.members)
        ));
    }
    if b.new_members != now.new_members && !now.new_members.is_empty() {
        parts.push(format!("target {}", osd_list(&now.new_members)));
    }
    if b.leader != now.leader && now.leader != 0 {
        parts.push(format!("leader osd.{}", now.leader));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("{name} {}", parts.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(up: bool, r#in: bool, pending: bool) -> OsdSeen {
        OsdSeen {
            up,
            r#in,
            pending,
            weight: 1.0,
            host: "h1".into(),
            rack: String::new(),
            root: "default".into(),
            instance: 7,
        }
    }

    #[test]
    fn osd_changes_are_named() {
        assert_eq!(
            describe_osd(3, None, &seen(false, false, true)).as_deref(),
            Some("osd.3 new (id applied, not booted)")
        );
        assert_eq!(
            describe_osd(3, Some(&seen(true, true, false)), &seen(false, true, false)).as_deref(),
            Some("osd.3 down")
        );
        assert_eq!(
            describe_osd(
                3,
                Some(&seen(false, true, false)),
                &seen(false, false, false)
            )
            .as_deref(),
            Some("osd.3 out")
        );
        let mut booted = seen(true, true, false);
        booted.instance = 9;
        assert_eq!(
            describe_osd(3, Some(&seen(false, false, true)), &booted).as_deref(),
            Some("osd.3 booted on host h1, up, in")
        );
        assert_eq!(describe_osd(3, Some(&booted), &booted), None);
    }

    #[test]
    fn osd_changes_are_grouped_and_limited() {
        let c = |s: &str| s.to_string();
        assert_eq!(
            grouped(&[
                c("flag noout set"),
                c("osd.3 down"),
                c("osd.4 down"),
                c("osd.5 out")
            ]),
            "flag noout set; osds 3,4 down; osd.5 out"
        );
        let many: Vec<String> = (1..=10)
            .map(|i| format!("osd.{i} booted on host h{i}"))
            .collect();
        let line = grouped(&many);
        assert!(
            line.ends_with("osd.8 booted on host h8 and 2 more"),
            "{line}"
        );
    }

    #[test]
    fn pg_changes_are_named() {
        let before = PgSeen {
            state: 2,
            members: vec![1, 2, 3],
            new_members: vec![],
            leader: 1,
        };
        let mut now = before.clone();
        now.state = 2 | 16;
        now.new_members = vec![1, 2, 9];
        assert_eq!(
            describe_pg(1, 4, Some(&before), &now).as_deref(),
            Some("1.4 active→active+remapped target [1,2,9]")
        );
        assert_eq!(describe_pg(1, 4, Some(&before), &before), None);
    }
}
