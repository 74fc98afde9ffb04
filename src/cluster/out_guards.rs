//! Ceph's guards on automatic outs: the policy the failure detector sends with
//! `Command::MarkOut` and the reasons an out is refused. A model file of its own (beside
//! `osd.rs`, whose locations the guards judge) because the command, the failure detector, the
//! handler and the health report all name these values, and none of them should import another
//! for it.

use super::osd::Osd;

/// Ceph's guards on automatic outs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutGuards {
    /// Auto-out never leaves fewer than this share of the booted OSDs in.
    pub min_in_ratio: f64,
    /// Auto-out never takes an OSD whose whole subtree at this level is down.
    pub subtree_limit: Option<SubtreeLimit>,
}

/// The topology level of [`OutGuards::subtree_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtreeLimit {
    Host,
    Rack,
}

impl SubtreeLimit {
    /// The operator-facing name (the `auto_out_subtree_limit` value).
    pub fn name(self) -> &'static str {
        match self {
            SubtreeLimit::Host => "host",
            SubtreeLimit::Rack => "rack",
        }
    }
}

/// Why an automatic out was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutRefusal {
    /// It would leave fewer OSDs in than the minimum in-ratio.
    MinInRatio,
    /// Its whole subtree at this level is down.
    WholeSubtreeDown(SubtreeLimit),
}

/// The OSD's subtree at `level`; an OSD without a rack label is in no rack, so the rack limit
/// does not restrict it (as in Ceph, where the limit only applies to OSDs under such a bucket).
pub(super) fn subtree(o: &Osd, level: SubtreeLimit) -> Option<String> {
    match level {
        SubtreeLimit::Host => Some(o.location.host.clone()),
        SubtreeLimit::Rack => o.location.rack.clone(),
    }
}
