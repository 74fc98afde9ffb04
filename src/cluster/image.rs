//! Block-device images: named, sized, striped over a pool's PGs in objects of `object_size`;
//! with the limits and checks of a name and the sizes, beside the fields they guard.

use super::error::ClusterError;
use super::types::{ImageId, PoolId};

/// The longest image name, in bytes.
pub const MAX_IMAGE_NAME: usize = 512;
/// The object size when none is given: 4 MiB.
pub const DEFAULT_OBJECT_SIZE: u64 = 4 << 20;
/// The smallest object size: 4 KiB.
pub const MIN_OBJECT_SIZE: u64 = 4 << 10;
/// Image sizes are multiples of this (a sector).
pub const SIZE_ALIGNMENT: u64 = 512;
/// The largest object size: 1 GiB.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;

/// An image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: ImageId,
    pub pool: PoolId,
    pub name: String,
    pub size: u64,
    pub object_size: u64,
}

/// An image size: not zero, a multiple of [`SIZE_ALIGNMENT`].
pub(super) fn check_size(size: u64) -> Result<(), ClusterError> {
    if size == 0 || size % SIZE_ALIGNMENT != 0 {
        return Err(ClusterError::InvalidImageSize(size));
    }
    Ok(())
}

/// An image name: 1..=[`MAX_IMAGE_NAME`] bytes.
pub(super) fn check_name(name: &str) -> Result<(), ClusterError> {
    if name.is_empty() {
        return Err(ClusterError::InvalidImageName);
    }
    if name.len() > MAX_IMAGE_NAME {
        return Err(ClusterError::ImageNameTooLong(name.len()));
    }
    Ok(())
}
