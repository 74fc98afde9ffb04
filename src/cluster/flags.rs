//! Cluster flags (noout, norebalance, nodown, noup, noin) and the set of them.

use std::fmt;

/// One cluster flag. The discriminants equal the `ClusterFlag` values of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterFlag {
    /// Down OSDs are not marked out automatically.
    NoOut = 1,
    /// OSDs coming in do not trigger a rebalance until the flag is cleared.
    NoRebalance = 2,
    /// The failure detector does not mark OSDs down.
    NoDown = 3,
    /// Booting OSDs are not marked up.
    NoUp = 4,
    /// Booting OSDs are not marked in automatically.
    NoIn = 5,
}

impl ClusterFlag {
    /// Every flag, in API order.
    pub const ALL: [ClusterFlag; 5] = [
        ClusterFlag::NoOut,
        ClusterFlag::NoRebalance,
        ClusterFlag::NoDown,
        ClusterFlag::NoUp,
        ClusterFlag::NoIn,
    ];

    /// The operator-facing name (`noout`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ClusterFlag::NoOut => "noout",
            ClusterFlag::NoRebalance => "norebalance",
            ClusterFlag::NoDown => "nodown",
            ClusterFlag::NoUp => "noup",
            ClusterFlag::NoIn => "noin",
        }
    }

    /// Parses an operator-facing name.
    pub fn from_name(name: &str) -> Option<ClusterFlag> {
        ClusterFlag::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The flag with the API enum value `v`.
    pub fn from_i32(v: i32) -> Option<ClusterFlag> {
        ClusterFlag::ALL.into_iter().find(|f| *f as i32 == v)
    }
}

impl fmt::Display for ClusterFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of flags, stored as bits (bit n = flag with value n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u32);

impl Flags {
    /// Rebuilds a set from stored bits; bits of unknown flags are kept so that a newer monitor's
    /// flags survive a round trip through an older one.
    pub fn from_bits(bits: u32) -> Flags {
        Flags(bits)
    }

    /// The stored representation.
    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, f: ClusterFlag) -> bool {
        self.0 & (1 << f as u32) != 0
    }

    pub fn with(self, f: ClusterFlag) -> Flags {
        Flags(self.0 | (1 << f as u32))
    }

    pub fn without(self, f: ClusterFlag) -> Flags {
        Flags(self.0 & !(1 << f as u32))
    }

    /// The known flags in the set, in API order.
    pub fn iter(self) -> impl Iterator<Item = ClusterFlag> {
        ClusterFlag::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(ClusterFlag::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let f = Flags::default()
            .with(ClusterFlag::NoOut)
            .with(ClusterFlag::NoIn);
        assert!(f.contains(ClusterFlag::NoOut));
        assert!(!f.contains(ClusterFlag::NoUp));
        assert_eq!(f.to_string(), "noout,noin");
        assert_eq!(f.without(ClusterFlag::NoOut).to_string(), "noin");
        assert_eq!(Flags::from_bits(f.bits()), f);
        for flag in ClusterFlag::ALL {
            assert_eq!(ClusterFlag::from_name(flag.name()), Some(flag));
            assert_eq!(ClusterFlag::from_i32(flag as i32), Some(flag));
        }
        assert_eq!(ClusterFlag::from_i32(0), None);
    }

    #[test]
    fn unknown_bits_survive() {
        let f = Flags::from_bits(1 << 20).with(ClusterFlag::NoOut);
        assert_eq!(f.bits(), (1 << 20) | (1 << 1));
        assert_eq!(f.iter().count(), 1);
    }
}
