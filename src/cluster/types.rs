//! Small value types that carry meaning: epochs and identifiers.

use std::fmt;

/// An epoch of a map (the osdmap, or one pool's pgmap). Bumped in the same transaction as the
/// change it versions; never goes backwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A leadership term: the etcd create revision of the winning election key. Every term has a
/// larger epoch than the terms before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub u64);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// An OSD id: positive, handed out by ApplyId (0 is never an OSD).
    OsdId(u32),
    "osd."
);
id_type!(
    /// A pool id: positive, never reused.
    PoolId(u32),
    "pool "
);
id_type!(
    /// A PG's index within its pool, 0..pg_count.
    PgId(u32),
    "pg "
);
id_type!(
    /// An image id: positive, never reused.
    ImageId(u64),
    "image "
);

/// Identifies one run of an OSD process; chosen by the OSD, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootInstance(pub u64);

/// A placement weight in thousandths (1000 = weight 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(pub u32);

impl Weight {
    /// The default weight, 1.0.
    pub const DEFAULT: Weight = Weight(1000);
    /// The largest weight accepted, 100.0.
    pub const MAX: Weight = Weight(100_000);

    /// The weight as a float.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// Converts an API weight, None when out of 0..=100 or not finite.
    pub fn from_f64(w: f64) -> Option<Weight> {
        if !w.is_finite() || !(0.0..=Weight::MAX.as_f64()).contains(&w) {
            return None;
        }
        Some(Weight((w * 1000.0).round() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_convert() {
        assert_eq!(Weight::from_f64(1.0), Some(Weight::DEFAULT));
        assert_eq!(Weight::from_f64(0.0), Some(Weight(0)));
        assert_eq!(Weight::from_f64(2.5).unwrap().as_f64(), 2.5);
        assert_eq!(Weight::from_f64(-0.1), None);
        assert_eq!(Weight::from_f64(100.001), None);
        assert_eq!(Weight::from_f64(f64::NAN), None);
    }

    #[test]
    fn ids_display() {
        assert_eq!(OsdId(3).to_string(), "osd.3");
        assert_eq!(Epoch(5).next(), Epoch(6));
    }
}
