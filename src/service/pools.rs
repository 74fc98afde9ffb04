//! Pools, images, and the OSD side of the PG protocol.

use std::time::Instant;

use tonic::Status;

use super::osds::lock;
use super::{MonitorService, convert, fields, status, unexpected};
use crate::cluster::{ClusterError, Command, OsdId, Outcome, PgId, PoolArgs, PoolId, echo};
use crate::commit::Serving;
use crate::proto::monitor as api;

fn osds(ids: &[u32]) -> Vec<OsdId> {
    ids.iter().map(|&i| OsdId(i)).collect()
}

impl MonitorService {
    pub(super) async fn create_pool(
        &self,
        r: api::CreatePoolRequest,
    ) -> Result<api::CreatePoolResponse, Status> {
        fields::pool_name(&r.name)?;
        fields::label("root", &r.root)?;
        let serving = self.leader()?;
        let args = PoolArgs {
            name: r.name,
            size: r.pg_size,
            pg_count: r.pg_count,
            failure_domain: r.failure_domain,
            root: r.root,
        };
        match self.propose(&serving, Command::CreatePool(args)).await? {
            Outcome::PoolCreated { id, epoch } => Ok(api::CreatePoolResponse {
                pool_id: id.0,
                pool_epoch: epoch.0,
                leader_epoch: serving.term.epoch.0,
            }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn delete_pool(
        &self,
        r: api::DeletePoolRequest,
    ) -> Result<api::DeletePoolResponse, Status> {
        fields::pool_name(&r.name)?;
        let serving = self.leader()?;
        match self
            .propose(&serving, Command::DeletePool { name: r.name })
            .await?
        {
            Outcome::PoolDeleted { id, epoch } => {
                lock(&serving.iostats).forget_pool(id);
                Ok(api::DeletePoolResponse {
                    pool_id: id.0,
                    deleted_epoch: epoch.0,
                    leader_epoch: serving.term.epoch.0,
                })
            }
            o => Err(unexpected(o)),
        }
    }

    async fn image_call(
        &self,
        serving: &Serving,
        pool: &str,
        command: Command,
    ) -> Result<api::ImageResponse, Status> {
        match self.propose(serving, command).await? {
            Outcome::Image(image) => Ok(api::ImageResponse {
                image: Some(convert::image_info(&image, pool)),
            }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn create_image(
        &self,
        r: api::CreateImageRequest,
    ) -> Result<api::ImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        let command = Command::CreateImage {
            pool: r.pool_name.clone(),
            name: r.image_name,
            size: r.size,
            object_size: r.object_size,
        };
        self.image_call(&serving, &r.pool_name, command).await
    }

    pub(super) async fn resize_image(
        &self,
        r: api::ResizeImageRequest,
    ) -> Result<api::ImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        let command = Command::ResizeImage {
            pool: r.pool_name.clone(),
            name: r.image_name,
            size: r.size,
            allow_shrink: r.allow_shrink,
        };
        self.image_call(&serving, &r.pool_name, command).await
    }

    pub(super) async fn remove_image(
        &self,
        r: api::RemoveImageRequest,
    ) -> Result<api::RemoveImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        let command = Command::RemoveImage {
            pool: r.pool_name,
            name: r.image_name,
        };
        match self.propose(&serving, command).await? {
            Outcome::ImageRemoved(id) => Ok(api::RemoveImageResponse { id: id.0 }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn get_image_info(
        &self,
        r: api::GetImageInfoRequest,
    ) -> Result<api::ImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        let snap = serving.snapshot();
        let pool = snap.pool_by_name(&r.pool_name).ok_or_else(|| {
            status::cluster_error(&ClusterError::UnknownPoolName(echo(&r.pool_name)))
        })?;
        let image = snap.image(pool.id, &r.image_name).ok_or_else(|| {
            status::cluster_error(&ClusterError::ImageNotFound(echo(&r.image_name)))
        })?;
        Ok(api::ImageResponse {
            image: Some(convert::image_info(image, &pool.name)),
        })
    }

    async fn pg_call(
        &self,
        serving: &Serving,
        command: Command,
    ) -> Result<api::PgChangeResponse, Status> {
        match self.propose(serving, command).await? {
            Outcome::Pg {
                pool_epoch,
                state,
                version,
            } => Ok(api::PgChangeResponse {
                pool_epoch: pool_epoch.0,
                state,
                version: version.0,
                leader_epoch: serving.term.epoch.0,
            }),
            o => Err(unexpected(o)),
        }
    }

    pub(super) async fn leader_be_elected(
        &self,
        r: api::LeaderBeElectedRequest,
    ) -> Result<api::PgChangeResponse, Status> {
        let serving = self.leader()?;
        let command = Command::LeaderBeElected {
            leader: OsdId(r.leader_id),
            pool: PoolId(r.pool_id),
            pg: PgId(r.pg_id),
            members: osds(&r.members),
            new_members: osds(&r.new_members),
        };
        self.pg_call(&serving, command).await
    }

    pub(super) async fn pg_member_change_finish(
        &self,
        r: api::PgMemberChangeFinishRequest,
    ) -> Result<api::PgChangeResponse, Status> {
        let serving = self.leader()?;
        let command = Command::MemberChangeFinish {
            // 0 is no OSD's id: the request did not name its reporter.
            reporter: (r.leader_id != 0).then_some(OsdId(r.leader_id)),
            result: r.result,
            pool: PoolId(r.pool_id),
            pg: PgId(r.pg_id),
            members: osds(&r.members),
        };
        let reply = self.pg_call(&serving, command).await?;
        if r.result == 0 {
            lock(&serving.iostats).recovered(Instant::now());
        }
        Ok(reply)
    }
}
