//! Osdmap commands: ids, boot, stop, failure-detector transitions, out/in, topology labels,
//! weights, purge, and cluster flags (with the replay of what a flag deferred).

use std::net::IpAddr;

use super::command::BootArgs;
use super::error::{ClusterError, echo};
use super::flags::ClusterFlag;
use super::osd::{
    DownReason, Liveness, MAX_CONFIG_TEXT, Membership, Osd, OutReason, Shard, check_label,
    config_hash, parse_uuid,
};
use super::out_guards::{OutGuards, OutRefusal, subtree};
use super::queries::released_by;
use super::records::RecordKey;
use super::reply;
use super::state::{Applied, BlobKey, ClusterState};
use super::types::{BootInstance, OsdId, Weight};

impl ClusterState {
    fn existing_osd(&self, id: OsdId) -> Result<Osd, ClusterError> {
        self.osds
            .get(&id)
            .map(|o| (**o).clone())
            .ok_or(ClusterError::OsdNotFound(id))
    }

    fn osd_map_reply(&self) -> reply::OsdMap {
        reply::OsdMap {
            osdmap_epoch: self.meta.epoch,
        }
    }

    pub(super) fn apply_id(
        &mut self,
        uuid: &str,
    ) -> Result<Applied<reply::AppliedId>, ClusterError> {
        let uuid = parse_uuid(uuid)?;
        if let Some(id) = self.osd_by_uuid.get(&uuid) {
            return Ok(Applied::new(reply::AppliedId {
                id: *id,
                osdmap_epoch: self.meta.epoch,
            }));
        }
        // The smallest unused positive id.
        let mut id = 1u32;
        for existing in self.osds.keys() {
            if existing.0 != id {
                break;
            }
            id += 1;
        }
        let id = OsdId(id);
        let mut applied = Applied::new(reply::AppliedId {
            id,
            osdmap_epoch: self.meta.epoch,
        });
        let osd = Osd::new(id, uuid, self.meta.epoch);
        self.put_osd(osd, &mut applied.touched);
        self.osd_by_uuid.insert(uuid, id);
        applied.reply = reply::AppliedId {
            id,
            osdmap_epoch: self.meta.epoch,
        };
        Ok(applied)
    }

    pub(super) fn boot(&mut self, a: &BootArgs) -> Result<Applied<reply::Booted>, ClusterError> {
        // In the Go monitor's order (LEGACY-PROTOCOL.md §7.2): address, ports, core count,
        // then the OSD itself, so each refusal gets the code its clients expect.
        let address: IpAddr = a
            .address
            .parse()
            .ok()
            .filter(|ip: &IpAddr| !ip.is_unspecified() && !ip.is_multicast())
            .ok_or_else(|| ClusterError::InvalidAddress(echo(&a.address)))?;
        if a.core_num == 0 {
            return Err(ClusterError::InvalidCoreNum);
        }
        let shards = check_shards(a)?;
        if let Some(cluster) = self.meta.core_num
            && cluster != a.core_num
        {
            return Err(ClusterError::CoreNumMismatch {
                cluster,
                given: a.core_num,
            });
        }
        let mut osd = self.existing_osd(a.id)?;
        let uuid = parse_uuid(&a.uuid)?;
        if uuid != osd.uuid {
            return Err(ClusterError::UuidMismatch {
                id: a.id,
                given: echo(&a.uuid),
            });
        }
        if a.instance == 0 {
            return Err(ClusterError::InvalidBootInstance);
        }
        check_label("host", &a.host)?;
        if !a.rack.is_empty() {
            check_label("rack", &a.rack)?;
        }
        if !a.root.is_empty() {
            check_label("root", &a.root)?;
        }
        if a.config.len() > MAX_CONFIG_TEXT {
            return Err(ClusterError::ConfigTooLarge(a.config.len()));
        }
        let instance = BootInstance(a.instance);
        let flags = self.meta.flags;
        if let Liveness::Up {
            instance: current, ..
        } = osd.liveness
            && current != instance
        {
            return Err(ClusterError::OsdAlreadyUp(a.id));
        }

        let before = osd.clone();
        osd.address = Some(address);
        osd.size = a.size;
        osd.core_num = a.core_num;
        osd.shards = shards.into();
        osd.location.host = a.host.clone();
        if !a.rack.is_empty() {
            osd.location.rack = Some(a.rack.clone());
        }
        if !a.root.is_empty() {
            osd.location.root = a.root.clone();
        }
        let hash = config_hash(&a.config);
        let config_changed = hash != osd.config_hash;
        osd.config_hash = hash;
        let held_down = flags.contains(ClusterFlag::NoUp);
        let mut applied = Applied::new(reply::Booted {
            osdmap_epoch: self.meta.epoch,
            held_down,
        });
        let already_up = matches!(osd.liveness, Liveness::Up { instance: i, .. } if i == instance);
        if !already_up {
            let epoch = self.pending_osdmap_epoch();
            osd.liveness = if held_down {
                Liveness::HeldDown { instance }
            } else {
                Liveness::Up {
                    instance,
                    since: epoch,
                }
            };
            if !held_down {
                osd.membership = membership_on_up(osd.membership, flags, epoch);
            }
        }
        if osd != before {
            self.meta.core_num.get_or_insert(a.core_num);
            self.put_osd(osd, &mut applied.touched);
        }
        if config_changed {
            applied.blobs.push((
                BlobKey::OsdConfig(a.id),
                Some(a.config.clone().into_bytes()),
            ));
        }
        applied.reply = reply::Booted {
            osdmap_epoch: self.meta.epoch,
            held_down: self
                .osds
                .get(&a.id)
                .is_some_and(|o| matches!(o.liveness, Liveness::HeldDown { .. })),
        };
        Ok(applied)
    }

    pub(super) fn osd_stop(&mut self, id: OsdId) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        let mut applied = Applied::new(self.osd_map_reply());
        let epoch = self.pending_osdmap_epoch();
        let next = match osd.liveness {
            Liveness::New => return Err(ClusterError::OsdNotBooted(id)),
            Liveness::Up { .. } | Liveness::HeldDown { .. } => Liveness::Down {
                instance: None,
                since: epoch,
                reason: DownReason::Stopped,
            },
            Liveness::Down { since, .. } => Liveness::Down {
                instance: None,
                since,
                reason: DownReason::Stopped,
            },
        };
        if next != osd.liveness {
            osd.liveness = next;
            self.put_osd(osd, &mut applied.touched);
        }
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn mark_down(&mut self, ids: &[OsdId]) -> Applied<reply::OsdMap> {
        let mut applied = Applied::new(self.osd_map_reply());
        if self.meta.flags.contains(ClusterFlag::NoDown) {
            return applied;
        }
        for id in ids {
            let Some(mut osd) = self.osds.get(id).map(|o| (**o).clone()) else {
                continue;
            };
            if let Liveness::Up { instance, .. } = osd.liveness {
                let epoch = self.pending_osdmap_epoch();
                osd.liveness = Liveness::Down {
                    instance: Some(instance),
                    since: epoch,
                    reason: DownReason::NoHeartbeat,
                };
                self.put_osd(osd, &mut applied.touched);
            }
        }
        applied.reply = self.osd_map_reply();
        applied
    }

    pub(super) fn mark_up(
        &mut self,
        id: OsdId,
        instance: u64,
    ) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        let instance = BootInstance(instance);
        let mut applied = Applied::new(self.osd_map_reply());
        match osd.liveness {
            Liveness::Up { instance: i, .. } if i == instance => {}
            Liveness::Down {
                instance: Some(i), ..
            } if i == instance => {
                if self.meta.flags.contains(ClusterFlag::NoUp) {
                    // Alive, but kept down until noup is cleared (which then marks it up).
                    osd.liveness = Liveness::HeldDown { instance };
                } else {
                    let epoch = self.pending_osdmap_epoch();
                    osd.liveness = Liveness::Up {
                        instance,
                        since: epoch,
                    };
                    osd.membership = membership_on_up(osd.membership, self.meta.flags, epoch);
                }
                self.put_osd(osd, &mut applied.touched);
            }
            Liveness::HeldDown { instance: i } if i == instance => {}
            Liveness::New | Liveness::Down { instance: None, .. } => {
                return Err(ClusterError::OsdNotBooted(id));
            }
            _ => return Err(ClusterError::StaleBootInstance(id)),
        }
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    /// Failure detector's out, under Ceph's guards: never below the minimum in-ratio, and never
    /// an OSD whose whole subtree (e.g. its rack) is down — that looks like a power or network
    /// event, and moving all its data would hurt more than waiting. Refusals are reported.
    pub(super) fn mark_out(
        &mut self,
        ids: &[OsdId],
        guards: &OutGuards,
    ) -> Applied<reply::MarkedOut> {
        let mut refused = Vec::new();
        let mut marked = Vec::new();
        let mut applied = Applied::new(reply::MarkedOut::default());
        if self.meta.flags.contains(ClusterFlag::NoOut) {
            return applied;
        }
        let booted = self
            .osds
            .values()
            .filter(|o| !matches!(o.liveness, Liveness::New))
            .count();
        let mut in_count = self.osds.values().filter(|o| o.is_in()).count();
        for id in ids {
            let Some(mut osd) = self.osds.get(id).map(|o| (**o).clone()) else {
                continue;
            };
            if !osd.is_in() || osd.is_up() {
                continue;
            }
            if ((in_count - 1) as f64) < guards.min_in_ratio * booted as f64 {
                refused.push((*id, OutRefusal::MinInRatio));
                continue;
            }
            if let Some(level) = guards.subtree_limit
                && let Some(mine) = subtree(&osd, level)
            {
                let any_up = self.osds.values().any(|o| {
                    o.location.root == osd.location.root
                        && subtree(o, level).as_ref() == Some(&mine)
                        && o.is_up()
                });
                if !any_up {
                    refused.push((*id, OutRefusal::WholeSubtreeDown(level)));
                    continue;
                }
            }
            let since = self.pending_osdmap_epoch();
            osd.membership = Membership::Out {
                reason: OutReason::Auto,
                since,
            };
            self.put_osd(osd, &mut applied.touched);
            in_count -= 1;
            marked.push(*id);
        }
        applied.reply = reply::MarkedOut { marked, refused };
        applied
    }

    pub(super) fn osd_out(&mut self, id: OsdId) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        let mut applied = Applied::new(self.osd_map_reply());
        let since = match osd.membership {
            Membership::Out {
                reason: OutReason::Manual,
                ..
            } => None,
            Membership::Out { since, .. } => Some(since),
            Membership::In { .. } => Some(self.pending_osdmap_epoch()),
        };
        if let Some(since) = since {
            osd.membership = Membership::Out {
                reason: OutReason::Manual,
                since,
            };
            self.put_osd(osd, &mut applied.touched);
        }
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn osd_in(&mut self, id: OsdId) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        let mut applied = Applied::new(self.osd_map_reply());
        if osd.is_in() {
            return Ok(applied);
        }
        if !osd.is_up() {
            return Err(ClusterError::OsdIsDown(id));
        }
        osd.membership = Membership::In {
            since: self.pending_osdmap_epoch(),
        };
        self.put_osd(osd, &mut applied.touched);
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn set_location(
        &mut self,
        id: OsdId,
        host: Option<&str>,
        rack: Option<&str>,
        root: Option<&str>,
    ) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        if let Some(h) = host {
            check_label("host", h)?;
            osd.location.host = h.to_string();
        }
        if let Some(r) = rack {
            if r.is_empty() {
                osd.location.rack = None;
            } else {
                check_label("rack", r)?;
                osd.location.rack = Some(r.to_string());
            }
        }
        if let Some(r) = root {
            check_label("root", r)?;
            osd.location.root = r.to_string();
        }
        let mut applied = Applied::new(self.osd_map_reply());
        if Some(&osd) != self.osds.get(&id).map(|o| &**o) {
            self.put_osd(osd, &mut applied.touched);
        }
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn set_weight(
        &mut self,
        id: OsdId,
        weight: f64,
    ) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let mut osd = self.existing_osd(id)?;
        let weight = Weight::from_f64(weight).ok_or(ClusterError::InvalidWeight)?;
        let mut applied = Applied::new(self.osd_map_reply());
        if weight != osd.weight {
            osd.weight = weight;
            self.put_osd(osd, &mut applied.touched);
        }
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn purge(&mut self, id: OsdId) -> Result<Applied<reply::OsdMap>, ClusterError> {
        let osd = self.existing_osd(id)?;
        if osd.is_up() || matches!(osd.liveness, Liveness::HeldDown { .. }) || osd.is_in() {
            return Err(ClusterError::OsdNotDownAndOut(id));
        }
        let holding = self
            .pools
            .values()
            .flat_map(|p| p.pgs.iter())
            .filter(|(_, pg)| {
                pg.members.contains(&id)
                    || pg.target.as_ref().is_some_and(|t| t.members.contains(&id))
            })
            .count();
        if holding > 0 {
            return Err(ClusterError::OsdHasPgs {
                osd: id,
                pgs: holding,
            });
        }
        let mut applied = Applied::new(self.osd_map_reply());
        let epoch = self.bump_osdmap(&mut applied.touched);
        self.osds.remove(&id);
        self.osd_by_uuid.remove(&osd.uuid);
        self.purged.insert(id, epoch);
        applied.touched.push(RecordKey::Osd(id));
        applied.touched.push(RecordKey::PurgedOsd(id));
        applied.blobs.push((BlobKey::OsdConfig(id), None));
        applied.reply = self.osd_map_reply();
        Ok(applied)
    }

    pub(super) fn set_flag(&mut self, flag: ClusterFlag) -> Applied<reply::Flags> {
        let mut applied = Applied::new(reply::Flags {
            flags: self.meta.flags,
            osdmap_epoch: self.meta.epoch,
        });
        if !self.meta.flags.contains(flag) {
            self.meta.flags = self.meta.flags.with(flag);
            self.bump_osdmap(&mut applied.touched);
        }
        applied.reply = reply::Flags {
            flags: self.meta.flags,
            osdmap_epoch: self.meta.epoch,
        };
        applied
    }

    /// Clears a flag. What `noup` and `noin` deferred is replayed by the reconciler through
    /// [`super::command::ReleaseDeferred`], in parts that fit a transaction: with thousands of OSDs
    /// held down, one command releasing all of them could never commit. (`noout`, `nodown` and
    /// `norebalance` are level-triggered as well: the failure detector and the reconciler act on
    /// their next pass.)
    pub(super) fn unset_flag(&mut self, flag: ClusterFlag) -> Applied<reply::Flags> {
        let mut applied = Applied::new(reply::Flags {
            flags: self.meta.flags,
            osdmap_epoch: self.meta.epoch,
        });
        if self.meta.flags.contains(flag) {
            self.meta.flags = self.meta.flags.without(flag);
            self.bump_osdmap(&mut applied.touched);
        }
        applied.reply = reply::Flags {
            flags: self.meta.flags,
            osdmap_epoch: self.meta.epoch,
        };
        applied
    }

    /// Replays what a cleared flag deferred for `ids`: a held-down OSD goes up, an OSD kept out
    /// by `noin` goes in. OSDs no longer concerned (a flag set again, the OSD gone or changed)
    /// are left alone.
    pub(super) fn release_deferred(&mut self, ids: &[OsdId]) -> Applied<reply::OsdMap> {
        let mut applied = Applied::new(reply::OsdMap {
            osdmap_epoch: self.meta.epoch,
        });
        let flags = self.meta.flags;
        for id in ids {
            let Some(mut osd) = self.osds.get(id).map(|o| (**o).clone()) else {
                continue;
            };
            if !released_by(&osd, flags) {
                continue;
            }
            let epoch = self.bump_osdmap(&mut applied.touched);
            if let Liveness::HeldDown { instance } = osd.liveness {
                osd.liveness = Liveness::Up {
                    instance,
                    since: epoch,
                };
            }
            osd.membership = membership_on_up(osd.membership, flags, epoch);
            self.put_osd(osd, &mut applied.touched);
        }
        applied.reply = reply::OsdMap {
            osdmap_epoch: self.meta.epoch,
        };
        applied
    }
}

/// The membership an OSD gets when it comes up: new, auto-out and noin-deferred OSDs come in
/// (or are deferred while `noin` is set); an operator's out stays.
fn membership_on_up(
    current: Membership,
    flags: super::flags::Flags,
    epoch: super::types::Epoch,
) -> Membership {
    match current {
        Membership::Out {
            reason: OutReason::New | OutReason::Auto | OutReason::DeferredByNoIn,
            since,
        } => {
            if flags.contains(ClusterFlag::NoIn) {
                Membership::Out {
                    reason: OutReason::DeferredByNoIn,
                    since,
                }
            } else {
                Membership::In { since: epoch }
            }
        }
        other => other,
    }
}

fn check_shards(a: &BootArgs) -> Result<Vec<Shard>, ClusterError> {
    if a.shards.len() != a.core_num as usize {
        return Err(ClusterError::InvalidShards(format!(
            "{} shards reported for core_num {}",
            a.shards.len(),
            a.core_num
        )));
    }
    let mut shards: Vec<Option<Shard>> = vec![None; a.core_num as usize];
    let mut ports = std::collections::HashSet::new();
    for s in &a.shards {
        let slot = shards.get_mut(s.shard as usize).ok_or_else(|| {
            ClusterError::InvalidShards(format!(
                "shard index {} is not below core_num {}",
                s.shard, a.core_num
            ))
        })?;
        // A raw port of 0 means the shard serves none (the C++ OSD without a raw server).
        let raw = (s.raw_port != 0).then_some(s.raw_port);
        for port in std::iter::once(s.port).chain(raw) {
            if !(1..=65535).contains(&port) {
                return Err(ClusterError::InvalidPort {
                    shard: s.shard,
                    port,
                });
            }
            if !ports.insert(port) {
                return Err(ClusterError::InvalidShards(format!(
                    "port {port} is used twice"
                )));
            }
        }
        *slot = Some(Shard {
            core_id: s.core_id,
            port: s.port as u16,
            raw_port: s.raw_port as u16,
        });
    }
    shards
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| ClusterError::InvalidShards(format!("shard {i} is missing"))))
        .collect()
}
