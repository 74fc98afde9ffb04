//! Block-device images: named, sized, striped over a pool's PGs in objects of `object_size`.

use super::types::{ImageId, PoolId};

/// The longest image name, in bytes.
pub const MAX_IMAGE_NAME: usize = 512;
/// The object size when none is given: 4 MiB.
pub const DEFAULT_OBJECT_SIZE: u64 = 4 << 20;
/// The smallest object size: 4 KiB.
pub const MIN_OBJECT_SIZE: u64 = 4 << 10;
/// Image sizes are multiples of this (a sector).
pub const SIZE_ALIGNMENT: u64 = 512;

/// An image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: ImageId,
    pub pool: PoolId,
    pub name: String,
    pub size: u64,
    pub object_size: u64,
}
