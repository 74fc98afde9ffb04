//! What a webhook carries: one event as CloudEvents 1.0 structured JSON
//! (`application/cloudevents+json`), and the checks of an endpoint's URL. Pure.
//!
//! Attributes: `specversion` "1.0"; `id` the event id (also the `webhook-id` header, so a
//! receiver deduplicates retries by it); `source` `urn:fastblock:<cluster>`; `type`
//! `io.fastblock.<dotted type>`; `subject`; `time` (RFC 3339, the commit time);
//! `datacontenttype` "application/json"; `data` the event's payload; extensions `sequence`
//! (the id, zero-padded to 20 digits so it sorts as text), `osdmapepoch`, `poolid` and
//! `poolepoch` when the event carries them.

use serde_json::{Value, json};
use url::Url;

use crate::cluster::Event;

/// The content type of a structured CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The prefix of every event type as webhooks name it.
pub const TYPE_PREFIX: &str = "io.fastblock.";
/// Longest endpoint URL accepted.
pub const MAX_URL: usize = 2048;

/// The body of the webhook of `event`, from cluster `source` (`urn:fastblock:<name>`).
pub fn body(event: &Event, source: &str) -> Vec<u8> {
    body_as(event, &event.id.to_string(), source)
}

/// [`body`] with the CloudEvents id `id` (a test event has no event id: no `sequence`).
pub fn body_as(event: &Event, id: &str, source: &str) -> Vec<u8> {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.time_ms);
    let mut ce = json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": format!("{TYPE_PREFIX}{}", event.kind),
        "subject": event.subject,
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "datacontenttype": "application/json",
        "data": data,
    });
    if event.id > 0 {
        ce["sequence"] = json!(format!("{:020}", event.id));
    }
    if let Some(e) = event.osdmap_epoch {
        ce["osdmapepoch"] = json!(e.0);
    }
    if let Some((pool, e)) = event.pool_epoch {
        ce["poolid"] = json!(pool.0);
        ce["poolepoch"] = json!(e.0);
    }
    serde_json::to_vec(&ce).expect("a JSON value serialises")
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the url is {0} bytes; at most 2048")]
    TooLong(usize),
    #[error("not a url: {0}")]
    Malformed(String),
    #[error(
        "the url's scheme is {0}; webhooks are sent over https (http only with webhook_allow_http)"
    )]
    Scheme(String),
    #[error("the url has no host")]
    NoHost,
    #[error("the url carries a user name or password; use a bearer token or a signing secret")]
    Credentials,
}

/// Checks an endpoint URL: `https` (or `http` when `allow_http`), a host, no credentials in
/// it, at most [`MAX_URL`] bytes. Errors quote nothing of an over-long value.
pub fn check_url(text: &str, allow_http: bool) -> Result<Url, UrlError> {
    if text.len() > MAX_URL {
        return Err(UrlError::TooLong(text.len()));
    }
    let url = Url::parse(text).map_err(|e| UrlError::Malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        other => return Err(UrlError::Scheme(crate::cluster::echo(other))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Epoch, PoolId};

    #[test]
    fn an_event_becomes_a_structured_cloudevent() {
        let e = Event {
            id: 42,
            kind: "osd.down".into(),
            subject: "osd.3".into(),
            time_ms: 1_764_633_600_123,
            osdmap_epoch: Some(Epoch(17)),
            pool_epoch: Some((PoolId(2), Epoch(9))),
            data: r#"{"osd":3,"reason":"no_heartbeat"}"#.into(),
        };
        let v: Value = serde_json::from_slice(&body(&e, "urn:fastblock:c1")).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "42");
        assert_eq!(v["type"], "io.fastblock.osd.down");
        assert_eq!(v["source"], "urn:fastblock:c1");
        assert_eq!(v["subject"], "osd.3");
        assert_eq!(v["time"], "2025-12-02T00:00:00.123Z");
        assert_eq!(v["sequence"], "00000000000000000042");
        assert_eq!(v["data"]["reason"], "no_heartbeat");
        assert_eq!(
            (v["osdmapepoch"].as_u64(), v["poolepoch"].as_u64()),
            (Some(17), Some(9))
        );
        // Attribute names: lower-case letters and digits, at most 20 characters.
        for k in v.as_object().unwrap().keys() {
            assert!(
                k.len() <= 20
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{k}"
            );
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/fastblock", false).is_ok());
        assert_eq!(
            check_url("http://127.0.0.1:8080/x", false),
            Err(UrlError::Scheme("http".into()))
        );
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
        assert!(matches!(
            check_url("ftp://x/y", true),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("not a url", true),
            Err(UrlError::Malformed(_))
        ));
        assert_eq!(
            check_url("https://user:pw@example.com/", false),
            Err(UrlError::Credentials)
        );
        let long = format!("https://example.com/{}", "a".repeat(100 * 1024));
        let e = check_url(&long, false).unwrap_err();
        assert_eq!(e, UrlError::TooLong(long.len()));
        assert!(e.to_string().len() < 100);
    }
}
