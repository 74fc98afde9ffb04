//! Image commands: create, remove, resize. Image ids come from a persisted counter and are never
//! reused, across restarts and failovers.

use std::sync::Arc;

use super::error::{ClusterError, echo};
use super::image::{
    DEFAULT_OBJECT_SIZE, Image, MAX_OBJECT_SIZE, MIN_OBJECT_SIZE, check_name, check_size,
};
use super::records::RecordKey;
use super::reply;
use super::state::{Applied, ClusterState};
use super::types::{ImageId, PoolId};

impl ClusterState {
    fn pool_id_by_name(&self, pool: &str) -> Result<PoolId, ClusterError> {
        self.pool_by_name
            .get(pool)
            .copied()
            .ok_or_else(|| ClusterError::UnknownPoolName(echo(pool)))
    }

    pub(super) fn create_image(
        &mut self,
        pool: &str,
        name: &str,
        size: u64,
        object_size: u64,
    ) -> Result<Applied<reply::Image>, ClusterError> {
        // The name first, as the Go monitor checked it (LEGACY-PROTOCOL.md §7.11).
        check_name(name)?;
        let pool = self.pool_id_by_name(pool)?;
        if self.image_by_name.contains_key(&(pool, name.to_string())) {
            return Err(ClusterError::ImageExists(echo(name)));
        }
        check_size(size)?;
        let object_size = if object_size == 0 {
            DEFAULT_OBJECT_SIZE
        } else {
            object_size
        };
        if !object_size.is_power_of_two()
            || !(MIN_OBJECT_SIZE..=MAX_OBJECT_SIZE).contains(&object_size)
        {
            return Err(ClusterError::InvalidObjectSize(object_size));
        }
        let id = ImageId(self.counters.next_image_id);
        self.counters.next_image_id += 1;
        let image = Image {
            id,
            pool,
            name: name.to_string(),
            size,
            object_size,
        };
        self.image_by_name.insert((pool, image.name.clone()), id);
        self.images.insert((pool, id), Arc::new(image.clone()));
        let mut applied = Applied::new(reply::Image(image));
        applied.touched = vec![RecordKey::Image(pool, id), RecordKey::Counters];
        Ok(applied)
    }

    pub(super) fn remove_image(
        &mut self,
        pool: &str,
        name: &str,
    ) -> Result<Applied<reply::ImageRemoved>, ClusterError> {
        let pool = self.pool_id_by_name(pool)?;
        let id = self
            .image_by_name
            .remove(&(pool, name.to_string()))
            .ok_or_else(|| ClusterError::ImageNotFound(echo(name)))?;
        self.images.remove(&(pool, id));
        let mut applied = Applied::new(reply::ImageRemoved(id));
        applied.touched = vec![RecordKey::Image(pool, id)];
        Ok(applied)
    }

    pub(super) fn resize_image(
        &mut self,
        pool: &str,
        name: &str,
        size: u64,
        allow_shrink: bool,
    ) -> Result<Applied<reply::Image>, ClusterError> {
        let pool = self.pool_id_by_name(pool)?;
        let current = self
            .image(pool, name)
            .cloned()
            .ok_or_else(|| ClusterError::ImageNotFound(echo(name)))?;
        check_size(size)?;
        if size < current.size && !allow_shrink {
            return Err(ClusterError::ShrinkNotAllowed {
                name: echo(name),
                from: current.size,
                to: size,
            });
        }
        let mut image = (*current).clone();
        image.size = size;
        let mut applied = Applied::new(reply::Image(image.clone()));
        if size != current.size {
            self.images
                .insert((pool, image.id), Arc::new(image.clone()));
            applied.touched = vec![RecordKey::Image(pool, image.id)];
        }
        Ok(applied)
    }
}
