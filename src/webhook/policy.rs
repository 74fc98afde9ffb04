//! What a delivery attempt's answer means and when to try again. Pure.
//!
//! - 2xx: delivered.
//! - 410 Gone: the receiver wants no more; the endpoint is disabled.
//! - 429 and 503 with `Retry-After` (seconds or an HTTP date): wait that long (capped) before
//!   the next attempt; without it, the usual back-off.
//! - 3xx: a failure (redirects are never followed: they could point anywhere).
//! - anything else, a timeout or a connection error: a failure, tried again after an
//!   exponential back-off with jitter.
//!
//! An endpoint's events go in order: the event at the head of its queue is tried until it is
//! delivered or older than the head-age limit, when it goes to the dead letters and the next
//! event is tried.

use std::time::{Duration, SystemTime};

/// First back-off.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest back-off (and longest `Retry-After` honoured).
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The receiver answered 410: disable the endpoint.
    Gone,
    /// Try again, no sooner than after `wait` when the receiver said so (`Retry-After`).
    Retry {
        wait: Option<Duration>,
    },
}

impl Outcome {
    /// Every value of [`Outcome::label`].
    pub const LABELS: [&'static str; 4] = ["delivered", "gone", "retry_after", "failed"];

    /// A stable label for metrics (`delivered`, `gone`, `retry_after`, `failed`).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Retry { wait: Some(_) } => "retry_after",
            Outcome::Retry { wait: None } => "failed",
        }
    }
}

/// The outcome of an HTTP answer with `status` and its `Retry-After` header, at `now`.
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        429 | 503 => Outcome::Retry {
            wait: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Outcome::Retry { wait: None },
    }
}

/// `Retry-After`: delay-seconds or an HTTP date, capped at [`BACKOFF_MAX`]; None when it does
/// not parse.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate_parse(value)?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(BACKOFF_MAX))
}

fn httpdate_parse(value: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
        let rest = value.split_once(", ")?.1;
        let parts: Vec<&str> = rest.split(' ').collect();
        let [day, month, year, time, "GMT"] = parts.as_slice() else {
            return None;
        };
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| m == month)?
            + 1;
        humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
    })
}

/// The back-off before attempt `attempt + 1` (attempt 1 is the first failure): doubling from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`], then a random share of up to a quarter added
/// (`jitter` in 0..1), so endpoints that failed together do not retry together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_conventions_say() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(classify(200, None, now), Outcome::Delivered);
        assert_eq!(classify(204, None, now), Outcome::Delivered);
        assert_eq!(classify(410, None, now), Outcome::Gone);
        assert_eq!(classify(301, None, now), Outcome::Retry { wait: None });
        assert_eq!(classify(500, Some("5"), now), Outcome::Retry { wait: None });
        assert_eq!(
            classify(429, Some("7"), now),
            Outcome::Retry {
                wait: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(503, Some("100000"), now),
            Outcome::Retry {
                wait: Some(BACKOFF_MAX)
            },
            "capped"
        );
        assert_eq!(
            classify(429, Some("soon"), now),
            Outcome::Retry { wait: None }
        );
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        let now = humantime::parse_rfc3339("1994-11-06T08:49:30Z").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_at_most_a_quarter_of_jitter() {
        assert_eq!(backoff(1, 0.0), BACKOFF_MIN);
        assert_eq!(backoff(2, 0.0), BACKOFF_MIN * 2);
        assert_eq!(backoff(40, 0.0), BACKOFF_MAX);
        assert_eq!(backoff(1, 1.0), BACKOFF_MIN + BACKOFF_MIN / 4);
        assert!(backoff(40, 1.0) <= BACKOFF_MAX + BACKOFF_MAX / 4);
    }
}
