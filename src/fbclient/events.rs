//! `events` (history) and `watchevents` (follow): the event log, one line per event
//! (`#ID TIME TYPE SUBJECT DATA`) or, with `--json`, one JSON object per event.

use serde_json::{Value, json};

use super::output::{Output, emit};
use super::{Ctx, Failure};
use crate::client::{EventItem, EventStart, EventWatcher};
use crate::proto::monitor as api;

/// The `after_id` of `-from=ID` (ID itself is the first shown).
fn after(from: u64) -> u64 {
    from.saturating_sub(1)
}

fn time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One event as one line of text.
fn line(e: &api::Event) -> String {
    let mut epochs = String::new();
    if e.osdmap_epoch > 0 {
        epochs.push_str(&format!(" osdmap e{}", e.osdmap_epoch));
    }
    if e.pool_epoch > 0 {
        epochs.push_str(&format!(" pool {} e{}", e.pool_id, e.pool_epoch));
    }
    format!(
        "#{} {} {} {}{} {}",
        e.id,
        time(e.time_unix_ms),
        e.r#type,
        e.subject,
        epochs,
        e.data
    )
}

/// One event as JSON (`data` as an object, not a string).
fn object(e: &api::Event) -> Value {
    json!({
        "id": e.id,
        "type": e.r#type,
        "subject": e.subject,
        "time": time(e.time_unix_ms),
        "time_unix_ms": e.time_unix_ms,
        "osdmap_epoch": e.osdmap_epoch,
        "pool_id": e.pool_id,
        "pool_epoch": e.pool_epoch,
        "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::String(e.data.clone())),
    })
}

/// `-op=events [-last=N] [-from=ID] [-type=osd.,health.]`.
pub async fn list(ctx: &Ctx) -> Result<Output, Failure> {
    let request = api::ListEventsRequest {
        last: ctx.args.last.unwrap_or(0),
        after_id: ctx.args.from.map_or(0, after),
        types: ctx.args.types.clone(),
    };
    let r = ctx.client.list_events(request).await?;
    if ctx.json() {
        return Ok(Output::Json(json!({
            "events": r.events.iter().map(object).collect::<Vec<_>>(),
            "oldest_id": r.oldest_id,
            "latest_id": r.latest_id,
        })));
    }
    let mut text = String::new();
    for e in &r.events {
        text.push_str(&line(e));
        text.push('\n');
    }
    if r.events.is_empty() {
        text.push_str("no events\n");
    }
    text.push_str(&format!(
        "(log holds events {}..={})\n",
        r.oldest_id, r.latest_id
    ));
    Ok(Output::Text(text))
}

/// `-op=watchevents [-from=ID] [-type=...] [-duration=D]`: prints events as they come, until
/// Ctrl-C, SIGTERM or `-duration`; resumes across reconnections and failovers.
pub async fn watch(ctx: &Ctx) -> Result<(), Failure> {
    let start = match ctx.args.from {
        Some(from) => EventStart::After(after(from)),
        None => EventStart::Now,
    };
    let mut watcher = EventWatcher::new(ctx.client.clone(), start, ctx.args.types.clone());
    let stop = super::stopped(ctx.args.duration);
    tokio::pin!(stop);
    // The watcher retries for ever; the first connection must come within --timeout.
    let Some(first) =
        super::first_within(ctx.args.timeout, "monitor", &mut stop, watcher.next()).await?
    else {
        return Ok(());
    };
    let json = ctx.json();
    let mut item = first;
    loop {
        match &item {
            EventItem::Event(e) if json => emit(object(e))?,
            EventItem::Event(e) => emit(line(e))?,
            EventItem::Connected { monitor } if !json => {
                eprintln!("fbclient: watching events on {monitor}");
            }
            EventItem::Connected { .. } | EventItem::Progress { .. } => {}
        }
        item = tokio::select! {
            _ = &mut stop => return Ok(()),
            next = watcher.next() => next?,
        };
    }
}
