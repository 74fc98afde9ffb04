//! One OSD as the osdmap knows it: identity, address, topology location, and its up/in state
//! as named states rather than boolean pairs. The limits and checks of what an OSD reports
//! (uuid forms, topology labels, config text) live here too, beside the fields they guard:
//! the handlers, the pool handler (a pool's root is a label) and the service's early field
//! checks all use the same rule.

use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::error::{ClusterError, echo};
use super::types::{BootInstance, Epoch, OsdId, Weight};

/// The root every OSD is under unless labelled otherwise.
pub const DEFAULT_ROOT: &str = "default";

/// The longest host, rack or root name, in bytes.
pub const MAX_LABEL: usize = 255;
/// The largest OSD config text kept, in bytes.
pub const MAX_CONFIG_TEXT: usize = 256 * 1024;
/// The longest uuid text of any accepted form (`urn:uuid:` and 36 characters).
pub const MAX_UUID_TEXT: usize = 45;
/// The longest IP address text (an IPv6 address ending in a dotted IPv4 address).
pub const MAX_ADDRESS_TEXT: usize = 45;

/// One shard (core service) of an OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub core_id: u32,
    pub port: u16,
    pub raw_port: u16,
}

/// Whether the OSD process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Has an id, never booted.
    New,
    /// Booted and serving.
    Up {
        instance: BootInstance,
        since: Epoch,
    },
    /// Booted while `noup` was set: kept down until the flag is cleared.
    HeldDown { instance: BootInstance },
    /// Not serving. `instance` is kept when the failure detector marked it down, so a heartbeat
    /// of the same run brings it back up; a planned stop clears it (the OSD must boot again).
    Down {
        instance: Option<BootInstance>,
        since: Epoch,
        reason: DownReason,
    },
}

/// Why an OSD is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// OsdStop: a planned stop.
    Stopped,
    /// No heartbeat within the grace period.
    NoHeartbeat,
}

impl DownReason {
    /// The name events and tools show (`stopped`, `no_heartbeat`).
    pub fn name(self) -> &'static str {
        match self {
            DownReason::Stopped => "stopped",
            DownReason::NoHeartbeat => "no_heartbeat",
        }
    }
}

/// Whether the OSD holds data (takes part in placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    In { since: Epoch },
    Out { reason: OutReason, since: Epoch },
}

/// Why an OSD is out; decides whether a boot brings it back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutReason {
    /// Never in yet: the first boot marks it in (unless `noin`).
    New,
    /// Marked out by an operator: stays out until marked in.
    Manual,
    /// Marked out by the failure detector: a boot brings it back in (unless `noin`).
    Auto,
    /// Booted while `noin` was set: marked in when the flag is cleared.
    DeferredByNoIn,
}

impl OutReason {
    /// The name events and tools show (`new`, `manual`, `auto`, `deferred_by_noin`).
    pub fn name(self) -> &'static str {
        match self {
            OutReason::New => "new",
            OutReason::Manual => "manual",
            OutReason::Auto => "auto",
            OutReason::DeferredByNoIn => "deferred_by_noin",
        }
    }
}

/// Where an OSD sits in the topology: root → (rack) → host → OSD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub host: String,
    pub rack: Option<String>,
    pub root: String,
}

impl std::fmt::Display for Location {
    /// `root=default rack=r1 host=h1` (the rack only when set).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "root={}", self.root)?;
        if let Some(rack) = &self.rack {
            write!(f, " rack={rack}")?;
        }
        write!(f, " host={}", self.host)
    }
}

impl Default for Location {
    fn default() -> Self {
        Location {
            host: String::new(),
            rack: None,
            root: DEFAULT_ROOT.to_string(),
        }
    }
}

/// An OSD of the osdmap.
#[derive(Debug, Clone, PartialEq)]
pub struct Osd {
    pub id: OsdId,
    pub uuid: Uuid,
    /// None until the first boot.
    pub address: Option<IpAddr>,
    pub location: Location,
    pub weight: Weight,
    /// Capacity in bytes (from boot).
    pub size: u64,
    pub core_num: u32,
    /// Shard i at index i.
    pub shards: Arc<[Shard]>,
    pub liveness: Liveness,
    pub membership: Membership,
    /// Hash of the last reported config text (the text itself is stored apart).
    pub config_hash: u64,
    /// The osdmap epoch of the last change to this record.
    pub last_change: Epoch,
}

impl Osd {
    /// A freshly applied OSD: new, out, no address.
    pub fn new(id: OsdId, uuid: Uuid, epoch: Epoch) -> Osd {
        Osd {
            id,
            uuid,
            address: None,
            location: Location::default(),
            weight: Weight::DEFAULT,
            size: 0,
            core_num: 0,
            shards: Arc::from(Vec::new()),
            liveness: Liveness::New,
            membership: Membership::Out {
                reason: OutReason::New,
                since: epoch,
            },
            config_hash: 0,
            last_change: epoch,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.liveness, Liveness::Up { .. })
    }

    pub fn is_in(&self) -> bool {
        matches!(self.membership, Membership::In { .. })
    }

    /// The current run's instance: Up, HeldDown, or Down after a failure detection.
    pub fn boot_instance(&self) -> Option<BootInstance> {
        match self.liveness {
            Liveness::Up { instance, .. } | Liveness::HeldDown { instance } => Some(instance),
            Liveness::Down { instance, .. } => instance,
            Liveness::New => None,
        }
    }
}

/// The `config_hash` of an OSD that reported `text` at boot (the text itself is stored apart, as
/// a blob). 0 means "never reported", so a real hash of 0 is remapped.
pub fn config_hash(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()).max(1)
}

/// Parses every uuid form etcd operators meet: hyphenated, braced, urn, 32 hex digits.
pub fn parse_uuid(s: &str) -> Result<Uuid, ClusterError> {
    match Uuid::parse_str(s) {
        Ok(u) if !u.is_nil() => Ok(u),
        _ => Err(ClusterError::InvalidUuid(echo(s))),
    }
}

/// A topology label: 1..=255 bytes, no whitespace or control characters.
pub fn check_label(field: &'static str, value: &str) -> Result<(), ClusterError> {
    let bad = |reason: &str| {
        Err(ClusterError::InvalidLocation {
            field,
            reason: reason.to_string(),
        })
    };
    if value.is_empty() {
        return bad("must not be empty");
    }
    if value.len() > MAX_LABEL {
        return Err(label_too_long(field));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    Ok(())
}

/// The error of a topology label longer than [`MAX_LABEL`].
pub fn label_too_long(field: &'static str) -> ClusterError {
    ClusterError::InvalidLocation {
        field,
        reason: format!("is longer than {MAX_LABEL} bytes"),
    }
}
