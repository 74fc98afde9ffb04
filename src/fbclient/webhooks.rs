//! Webhook ops: `webhook-add`, `webhook-list`, `webhook-remove`, `webhook-test`,
//! `webhook-replay`, `webhook-deadletters` (docs/webhooks.md).

use serde_json::{Value, json};

use super::output::Output;
use super::{Ctx, Failure};
use crate::proto::monitor as api;

fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn object(w: &api::WebhookInfo) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "types": w.types,
        "secrets": w.secrets,
        "bearer_token": w.bearer_token,
        "created": time(w.created_ms),
        "enabled": w.disabled_reason.is_empty(),
        "disabled_reason": w.disabled_reason,
        "delivered_id": w.delivered_id,
        "dead_letters": w.dead_letters,
    })
}

fn line(w: &api::WebhookInfo) -> String {
    let types = if w.types.is_empty() {
        "*".to_string()
    } else {
        w.types.join(",")
    };
    let state = if w.disabled_reason.is_empty() {
        "enabled".to_string()
    } else {
        format!("disabled ({})", w.disabled_reason)
    };
    format!(
        "{:<4} {:<8} delivered #{:<8} dead {:<4} types {:<16} {}",
        w.id, state, w.delivered_id, w.dead_letters, types, w.url
    )
}

fn id(ctx: &Ctx) -> Result<u32, Failure> {
    ctx.args
        .id
        .ok_or_else(|| Failure::Usage("this op needs -id".into()))
}

/// `-op=webhook-add -url=URL [-type=osd.,health.] [-secret=whsec_...] [-token=T] [-force]`.
pub async fn add(ctx: &Ctx) -> Result<Output, Failure> {
    let url = ctx.args.url.clone().unwrap_or_default();
    let r = ctx
        .client
        .add_webhook(api::AddWebhookRequest {
            url,
            types: ctx.args.types.clone(),
            secrets: ctx.args.secret.clone(),
            bearer_token: ctx.args.token.clone().unwrap_or_default(),
            skip_reachability_check: ctx.args.force,
        })
        .await?;
    let w = r.webhook.unwrap_or_default();
    Ok(ctx.output(
        || json!({"webhook": object(&w), "generated_secret": r.generated_secret}),
        || {
            let mut out = format!("webhook {} added: {}\n", w.id, w.url);
            if !r.generated_secret.is_empty() {
                out.push_str(&format!(
                    "signing secret (shown only now): {}\n",
                    r.generated_secret
                ));
            }
            out
        },
    ))
}

/// `-op=webhook-list`.
pub async fn list(ctx: &Ctx) -> Result<Output, Failure> {
    let r = ctx
        .client
        .list_webhooks(api::ListWebhooksRequest {})
        .await?;
    Ok(ctx.output(
        || json!({"webhooks": r.webhooks.iter().map(object).collect::<Vec<_>>()}),
        || {
            if r.webhooks.is_empty() {
                return "no webhooks\n".to_string();
            }
            r.webhooks.iter().map(|w| line(w) + "\n").collect()
        },
    ))
}

/// `-op=webhook-remove -id=N`.
pub async fn remove(ctx: &Ctx) -> Result<Output, Failure> {
    let id = id(ctx)?;
    let r = ctx
        .client
        .remove_webhook(api::RemoveWebhookRequest { id })
        .await?;
    let w = r.webhook.unwrap_or_default();
    Ok(ctx.output(
        || json!({"removed": object(&w)}),
        || format!("webhook {} removed: {}\n", w.id, w.url),
    ))
}

/// `-op=webhook-test -id=N`: one test event now. Fails (exit 1) when it was not delivered.
pub async fn test(ctx: &Ctx) -> Result<Output, Failure> {
    let id = id(ctx)?;
    let r = ctx
        .client
        .test_webhook(api::TestWebhookRequest { id })
        .await?;
    if !r.delivered {
        return Err(Failure::Failed(format!(
            "webhook {id}: the test event was not delivered: {}",
            r.error
        )));
    }
    Ok(ctx.output(
        || json!({"delivered": true, "status": r.status}),
        || format!("webhook {id}: test event delivered (HTTP {})\n", r.status),
    ))
}

/// `-op=webhook-replay -id=N -from=ID`.
pub async fn replay(ctx: &Ctx) -> Result<Output, Failure> {
    let id = id(ctx)?;
    let from_id = ctx
        .args
        .from
        .ok_or_else(|| Failure::Usage("webhook-replay needs -from".into()))?;
    let r = ctx
        .client
        .replay_webhook(api::ReplayWebhookRequest { id, from_id })
        .await?;
    let w = r.webhook.unwrap_or_default();
    Ok(ctx.output(
        || json!({"webhook": object(&w), "from_id": from_id}),
        || format!("webhook {id}: delivering again from event {from_id}\n"),
    ))
}

/// `-op=webhook-deadletters -id=N [-last=N] [-purge]`.
pub async fn dead_letters(ctx: &Ctx) -> Result<Output, Failure> {
    let id = id(ctx)?;
    let r = ctx
        .client
        .webhook_dead_letters(api::WebhookDeadLettersRequest {
            id,
            limit: ctx.args.last.unwrap_or(0),
            purge: ctx.args.purge,
        })
        .await?;
    Ok(ctx.output(
        || {
            json!({
                "letters": r.letters.iter().map(|l| json!({
                    "event_id": l.event_id,
                    "type": l.event_type,
                    "attempts": l.attempts,
                    "last_error": l.last_error,
                    "dead": time(l.dead_ms),
                })).collect::<Vec<_>>(),
                "purged": ctx.args.purge,
            })
        },
        || {
            let mut out = String::new();
            for l in &r.letters {
                out.push_str(&format!(
                    "#{} {} attempts {} at {}: {}\n",
                    l.event_id,
                    l.event_type,
                    l.attempts,
                    time(l.dead_ms),
                    l.last_error
                ));
            }
            if r.letters.is_empty() {
                out.push_str("no dead letters\n");
            }
            if ctx.args.purge {
                out.push_str("purged\n");
            }
            out
        },
    ))
}
