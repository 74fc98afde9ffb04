//! Image ops: `createimage`, `removeimage`, `getimage` and `resizeimage`. Sizes take
//! suffixes (`-imagesize=10G`).

use serde_json::json;

use super::output::{Output, human_bytes};
use super::{Ctx, Failure, json};
use crate::proto::monitor as api;

/// The `-poolname` and `-imagename` every image op needs.
fn names(ctx: &Ctx) -> Result<(String, String), Failure> {
    let pool = ctx.args.poolname.clone();
    let image = ctx.args.imagename.clone();
    match (pool, image) {
        (Some(p), Some(i)) => Ok((p, i)),
        (None, _) => Err(Failure::Usage("needs -poolname".to_string())),
        (_, None) => Err(Failure::Usage("needs -imagename".to_string())),
    }
}

fn image_size(ctx: &Ctx) -> Result<u64, Failure> {
    ctx.args
        .imagesize
        .ok_or_else(|| Failure::Usage("needs -imagesize".to_string()))
}

/// One line about an image.
fn describe(i: &api::ImageInfo) -> String {
    format!(
        "image '{}' in pool '{}': id {}, size {} ({} bytes), object size {}\n",
        i.name,
        i.pool_name,
        i.id,
        human_bytes(i.size),
        i.size,
        human_bytes(i.object_size)
    )
}

fn image_output(ctx: &Ctx, verb: &str, r: api::ImageResponse) -> Result<Output, Failure> {
    let image = r
        .image
        .ok_or_else(|| Failure::Failed("the monitor answered without the image".to_string()))?;
    let verb = verb.to_string();
    Ok(ctx.output(
        || {
            let mut v = json::image(&image);
            v["done"] = json!(verb);
            v
        },
        || {
            if verb.is_empty() {
                describe(&image)
            } else {
                format!("{verb} {}", describe(&image))
            }
        },
    ))
}

/// `createimage`.
pub async fn create(ctx: &Ctx) -> Result<Output, Failure> {
    let (pool_name, image_name) = names(ctx)?;
    let r = ctx
        .client
        .create_image(api::CreateImageRequest {
            pool_name,
            image_name,
            size: image_size(ctx)?,
            object_size: ctx.args.objectsize.unwrap_or(0),
        })
        .await?;
    image_output(ctx, "created", r)
}

/// `getimage`.
pub async fn get(ctx: &Ctx) -> Result<Output, Failure> {
    let (pool_name, image_name) = names(ctx)?;
    let r = ctx
        .client
        .get_image_info(api::GetImageInfoRequest {
            pool_name,
            image_name,
        })
        .await?;
    image_output(ctx, "", r)
}

/// `resizeimage` (shrinking needs `-allowshrink`).
pub async fn resize(ctx: &Ctx) -> Result<Output, Failure> {
    let (pool_name, image_name) = names(ctx)?;
    let r = ctx
        .client
        .resize_image(api::ResizeImageRequest {
            pool_name,
            image_name,
            size: image_size(ctx)?,
            allow_shrink: ctx.args.allowshrink,
        })
        .await?;
    image_output(ctx, "resized", r)
}

/// `removeimage`.
pub async fn remove(ctx: &Ctx) -> Result<Output, Failure> {
    let (pool_name, image_name) = names(ctx)?;
    let r = ctx
        .client
        .remove_image(api::RemoveImageRequest {
            pool_name: pool_name.clone(),
            image_name: image_name.clone(),
        })
        .await?;
    Ok(ctx.output(
        || json!({"done": "removed", "id": r.id, "pool_name": pool_name, "name": image_name}),
        || {
            format!(
                "removed image '{image_name}' in pool '{pool_name}' (id {})\n",
                r.id
            )
        },
    ))
}
