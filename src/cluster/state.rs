//! The cluster state machine: `(state, command) → (new state, touched records)`.
//!
//! Commands are applied in *groups*; one group becomes one etcd transaction. Within a group
//! each map's epoch is bumped at most once, by the first command that changes that map, and
//! every record the group touches is written with the group's epoch. `apply` is atomic: on
//! error the state is exactly as before.

use super::error::ClusterError;
use super::flags::{ClusterFlag, Flags};
use super::records::{Record, RecordKey};
use super::types::Epoch;

/// A change requested of the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SetFlag(ClusterFlag),
    UnsetFlag(ClusterFlag),
}

/// What a command did, reported to its caller once its group has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The flags and osdmap epoch after a flag command.
    Flags { flags: Flags, osdmap_epoch: Epoch },
}

/// A successfully applied command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    /// Records the command changed; their new values must be committed.
    pub touched: Vec<RecordKey>,
}

/// Stored records that do not form a valid state.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("record {0:?} appears twice")]
    Duplicate(RecordKey),
}

/// The whole cluster state held by the leader. Cheap to clone (snapshots are published after
/// every committed group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    osdmap_epoch: Epoch,
    flags: Flags,
    /// Group bookkeeping: whether this group already bumped the osdmap epoch.
    osdmap_bumped: bool,
}

impl ClusterState {
    /// Rebuilds the state from stored records (a new leader's load).
    pub fn from_records(
        records: impl IntoIterator<Item = (RecordKey, Record)>,
    ) -> Result<ClusterState, LoadError> {
        let mut state = ClusterState::default();
        let mut seen_meta = false;
        for (key, record) in records {
            match record {
                Record::OsdMapMeta { epoch, flags } => {
                    if seen_meta {
                        return Err(LoadError::Duplicate(key));
                    }
                    seen_meta = true;
                    state.osdmap_epoch = epoch;
                    state.flags = flags;
                }
            }
        }
        Ok(state)
    }

    /// The osdmap epoch (including a bump by the open group).
    pub fn osdmap_epoch(&self) -> Epoch {
        self.osdmap_epoch
    }

    /// The cluster flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// Starts a new group: the next change to each map bumps its epoch again.
    pub fn begin_group(&mut self) {
        self.osdmap_bumped = false;
    }

    /// The current value of a record, for encoding.
    pub fn record(&self, key: &RecordKey) -> Option<Record> {
        match key {
            RecordKey::OsdMapMeta => Some(Record::OsdMapMeta {
                epoch: self.osdmap_epoch,
                flags: self.flags,
            }),
        }
    }

    /// Applies one command. On error nothing changed.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, ClusterError> {
        match *cmd {
            Command::SetFlag(flag) => Ok(self.change_flags(self.flags.with(flag))),
            Command::UnsetFlag(flag) => Ok(self.change_flags(self.flags.without(flag))),
        }
    }

    fn change_flags(&mut self, new: Flags) -> Applied {
        let mut touched = Vec::new();
        if new != self.flags {
            self.flags = new;
            self.bump_osdmap(&mut touched);
        }
        Applied {
            outcome: Outcome::Flags {
                flags: self.flags,
                osdmap_epoch: self.osdmap_epoch,
            },
            touched,
        }
    }

    /// Bumps the osdmap epoch once per group and marks the meta record touched.
    fn bump_osdmap(&mut self, touched: &mut Vec<RecordKey>) {
        if !self.osdmap_bumped {
            self.osdmap_epoch = self.osdmap_epoch.next();
            self.osdmap_bumped = true;
        }
        touched.push(RecordKey::OsdMapMeta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_change_bumps_epoch_once_per_group() {
        let mut s = ClusterState::default();
        s.begin_group();
        let a = s.apply(&Command::SetFlag(ClusterFlag::NoOut)).unwrap();
        let b = s.apply(&Command::SetFlag(ClusterFlag::NoIn)).unwrap();
        assert_eq!(s.osdmap_epoch(), Epoch(1));
        assert_eq!(a.touched, vec![RecordKey::OsdMapMeta]);
        assert_eq!(b.touched, vec![RecordKey::OsdMapMeta]);
        s.begin_group();
        s.apply(&Command::UnsetFlag(ClusterFlag::NoOut)).unwrap();
        assert_eq!(s.osdmap_epoch(), Epoch(2));
        assert_eq!(s.flags().to_string(), "noin");
    }

    #[test]
    fn no_op_changes_nothing() {
        let mut s = ClusterState::default();
        s.begin_group();
        let before = s.clone();
        let a = s.apply(&Command::UnsetFlag(ClusterFlag::NoOut)).unwrap();
        assert!(a.touched.is_empty());
        assert_eq!(s, before);
        assert_eq!(
            a.outcome,
            Outcome::Flags {
                flags: Flags::default(),
                osdmap_epoch: Epoch(0)
            }
        );
    }

    #[test]
    fn round_trips_through_records() {
        let mut s = ClusterState::default();
        s.begin_group();
        s.apply(&Command::SetFlag(ClusterFlag::NoRebalance))
            .unwrap();
        let rec = s.record(&RecordKey::OsdMapMeta).unwrap();
        let mut loaded = ClusterState::from_records([(RecordKey::OsdMapMeta, rec)]).unwrap();
        loaded.osdmap_bumped = s.osdmap_bumped;
        assert_eq!(loaded, s);
        let dup = ClusterState::from_records([
            (
                RecordKey::OsdMapMeta,
                s.record(&RecordKey::OsdMapMeta).unwrap(),
            ),
            (
                RecordKey::OsdMapMeta,
                s.record(&RecordKey::OsdMapMeta).unwrap(),
            ),
        ]);
        assert!(matches!(dup, Err(LoadError::Duplicate(_))));
    }
}
