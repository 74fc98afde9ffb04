//! Pools, images, and the OSD side of the PG protocol.

use std::time::Instant;

use tonic::Status;

use super::{MonitorService, convert, fields, requests, unexpected};
use crate::cluster::{Command, Outcome};
use crate::proto::monitor as api;
use crate::term::TermContext;

impl MonitorService {
    pub(super) async fn create_pool(
        &self,
        r: api::CreatePoolRequest,
    ) -> Result<api::CreatePoolResponse, Status> {
        fields::pool_name(&r.name)?;
        fields::label("root", &r.root)?;
        let serving = self.leader()?;
        match self.propose(&serving, requests::create_pool(r)).await? {
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
        match self.propose(&serving, requests::delete_pool(r)).await? {
            Outcome::PoolDeleted { id, epoch } => {
                serving.iostats.with(|io| io.forget_pool(id));
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
        serving: &TermContext,
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
        let pool = r.pool_name.clone();
        self.image_call(&serving, &pool, requests::create_image(r))
            .await
    }

    pub(super) async fn resize_image(
        &self,
        r: api::ResizeImageRequest,
    ) -> Result<api::ImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        let pool = r.pool_name.clone();
        self.image_call(&serving, &pool, requests::resize_image(r))
            .await
    }

    pub(super) async fn remove_image(
        &self,
        r: api::RemoveImageRequest,
    ) -> Result<api::RemoveImageResponse, Status> {
        fields::pool_name(&r.pool_name)?;
        fields::image_name(&r.image_name)?;
        let serving = self.leader()?;
        match self.propose(&serving, requests::remove_image(r)).await? {
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
        requests::image_info(&serving.snapshot(), &r)
    }

    async fn pg_call(
        &self,
        serving: &TermContext,
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
        self.pg_call(&serving, requests::leader_be_elected(&r))
            .await
    }

    pub(super) async fn pg_member_change_finish(
        &self,
        r: api::PgMemberChangeFinishRequest,
    ) -> Result<api::PgChangeResponse, Status> {
        let serving = self.leader()?;
        let reply = self
            .pg_call(&serving, requests::pg_member_change_finish(&r))
            .await?;
        if r.result == 0 {
            serving.iostats.with(|io| io.recovered(Instant::now()));
        }
        Ok(reply)
    }
}
