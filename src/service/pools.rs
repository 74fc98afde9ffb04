//! Pools, images, and the OSD side of the PG protocol.

use std::time::Instant;

use tonic::Status;

use super::{MonitorService, convert, fields, requests};
use crate::cluster::{Command, reply};
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
        let reply::PoolCreated { id, epoch } =
            self.propose(&serving, requests::create_pool(r)).await?;
        Ok(api::CreatePoolResponse {
            pool_id: id.0,
            pool_epoch: epoch.0,
            leader_epoch: serving.term.epoch.0,
        })
    }

    pub(super) async fn delete_pool(
        &self,
        r: api::DeletePoolRequest,
    ) -> Result<api::DeletePoolResponse, Status> {
        fields::pool_name(&r.name)?;
        let serving = self.leader()?;
        let reply::PoolDeleted { id, epoch } =
            self.propose(&serving, requests::delete_pool(r)).await?;
        serving.iostats.with(|io| io.forget_pool(id));
        Ok(api::DeletePoolResponse {
            pool_id: id.0,
            deleted_epoch: epoch.0,
            leader_epoch: serving.term.epoch.0,
        })
    }

    async fn image_call(
        &self,
        serving: &TermContext,
        pool: &str,
        command: impl Command<Reply = reply::Image>,
    ) -> Result<api::ImageResponse, Status> {
        let reply::Image(image) = self.propose(serving, command).await?;
        Ok(api::ImageResponse {
            image: Some(convert::image_info(&image, pool)),
        })
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
        let reply::ImageRemoved(id) = self.propose(&serving, requests::remove_image(r)).await?;
        Ok(api::RemoveImageResponse { id: id.0 })
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
        command: impl Command<Reply = reply::Pg>,
    ) -> Result<api::PgChangeResponse, Status> {
        let reply::Pg {
            pool_epoch,
            state,
            version,
        } = self.propose(serving, command).await?;
        Ok(api::PgChangeResponse {
            pool_epoch: pool_epoch.0,
            state,
            version: version.0,
            leader_epoch: serving.term.epoch.0,
        })
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
