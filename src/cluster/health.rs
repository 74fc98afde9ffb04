//! Health as stored: which checks are raised (with the severity and count they were last
//! announced with) and which are muted by an operator. Keeping it in the cluster state, written
//! in the same transaction as the events that announce each transition, is what makes a check
//! raise once, update once per change, clear once, and not be raised again by a new leader.
//!
//! What is failing *now* is evaluated outside the core (`crate::health::evaluate`, from a
//! snapshot and the failure detector's findings); the term's health task hands it to
//! [`Health::reconcile`], which decides the transitions.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::error::ClusterError;
use super::events::{EventBody, EventType};

/// Longest health check code (`OSD_DOWN`).
pub const MAX_CHECK_CODE: usize = 64;
/// Longest summary kept in the record (a longer one is cut).
pub const MAX_SUMMARY: usize = 256;
/// Most checks raised at once (the evaluator has far fewer kinds).
pub const MAX_RAISED: usize = 64;
/// Most mutes at once.
pub const MAX_MUTES: usize = 64;
/// Longest mute: a year.
pub const MAX_MUTE_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

/// How bad a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Ok,
    Warn,
    Err,
}

impl Severity {
    /// `HEALTH_OK`-style name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "HEALTH_OK",
            Severity::Warn => "HEALTH_WARN",
            Severity::Err => "HEALTH_ERR",
        }
    }

    /// The stored value (0 OK, 1 WARN, 2 ERR).
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The stored value back (an unknown value reads as ERR: never quieter than stored).
    pub fn from_u32(v: u32) -> Severity {
        match v {
            0 => Severity::Ok,
            1 => Severity::Warn,
            _ => Severity::Err,
        }
    }
}

/// A check as evaluated now: failing with this severity, about `count` things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub code: String,
    pub severity: Severity,
    /// How many things fail (OSDs down, PGs degraded, ...); 1 when the check is not counted.
    pub count: u64,
    pub summary: String,
}

/// A raised check as stored: what it was last announced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub severity: Severity,
    pub count: u64,
    pub summary: String,
    /// When it was raised (Unix ms).
    pub since_ms: u64,
}

/// An operator's mute of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mute {
    /// When it ends by itself (Unix ms); None: when unmuted (or, unless sticky, when the check
    /// clears or worsens).
    pub until_ms: Option<u64>,
    /// Sticky mutes outlive the check's clearing and its worsening.
    pub sticky: bool,
    /// The check's severity and count when muted: more than these ends a non-sticky mute.
    pub severity: Severity,
    pub count: u64,
    pub since_ms: u64,
}

/// Why a mute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmuteReason {
    Operator,
    Expired,
    Worsened,
    Cleared,
}

impl UnmuteReason {
    pub fn name(self) -> &'static str {
        match self {
            UnmuteReason::Operator => "operator",
            UnmuteReason::Expired => "expired",
            UnmuteReason::Worsened => "worsened",
            UnmuteReason::Cleared => "cleared",
        }
    }
}

/// The stored health: raised checks and mutes, by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub raised: BTreeMap<String, Raised>,
    pub mutes: BTreeMap<String, Mute>,
}

impl Health {
    /// Whether `code` is muted now.
    pub fn is_muted(&self, code: &str) -> bool {
        self.mutes.contains_key(code)
    }

    /// The health after observing `observed` at `now_ms`, with the events of every transition;
    /// None when nothing changes (nothing to write). A raised check in `held` that is not
    /// observed stays as it is: a new leader's failure detector has not heard every OSD yet, so
    /// the checks built on its findings are not complete enough to clear.
    ///
    /// Transitions: a check not raised is raised; a raised one whose severity or count changed
    /// is updated (a new summary alone is not news); a raised one not observed is cleared. A
    /// mute ends when its time is up, when its check (not sticky) becomes worse than when muted,
    /// or when its check (not sticky) clears.
    pub fn reconcile(
        &self,
        observed: &[Observed],
        now_ms: u64,
        held: &[String],
    ) -> Option<(Health, Vec<EventBody>)> {
        let mut next = self.clone();
        let mut events = Vec::new();
        let mut seen: BTreeMap<&str, &Observed> = BTreeMap::new();
        for o in observed.iter().take(MAX_RAISED) {
            seen.insert(o.code.as_str(), o);
        }
        for (code, o) in &seen {
            let summary = super::error::clip(&o.summary, MAX_SUMMARY);
            match next.raised.get_mut(*code) {
                None => {
                    events.push(check_event(
                        EventType::HealthCheckRaised,
                        code,
                        json!({
                            "code": code,
                            "severity": o.severity.name(),
                            "count": o.count,
                            "summary": summary,
                            "muted": self.is_muted(code),
                        }),
                    ));
                    next.raised.insert(
                        code.to_string(),
                        Raised {
                            severity: o.severity,
                            count: o.count,
                            summary,
                            since_ms: now_ms,
                        },
                    );
                }
                Some(r) if r.severity != o.severity || r.count != o.count => {
                    events.push(check_event(
                        EventType::HealthCheckUpdated,
                        code,
                        json!({
                            "code": code,
                            "severity": o.severity.name(),
                            "count": o.count,
                            "summary": summary,
                            "previous_severity": r.severity.name(),
                            "previous_count": r.count,
                            "muted": self.is_muted(code),
                        }),
                    ));
                    r.severity = o.severity;
                    r.count = o.count;
                    r.summary = summary;
                }
                Some(_) => {}
            }
        }
        let gone: Vec<String> = next
            .raised
            .keys()
            .filter(|c| !seen.contains_key(c.as_str()) && !held.contains(c))
            .cloned()
            .collect();
        for code in gone {
            let Some(r) = next.raised.remove(&code) else {
                continue;
            };
            events.push(check_event(
                EventType::HealthCheckCleared,
                &code,
                json!({
                    "code": code,
                    "severity": r.severity.name(),
                    "count": r.count,
                    "summary": r.summary,
                    "raised_ms": r.since_ms,
                    "duration_ms": now_ms.saturating_sub(r.since_ms),
                    "muted": self.is_muted(&code),
                }),
            ));
        }
        let mutes: Vec<(String, Mute)> = next.mutes.iter().map(|(c, m)| (c.clone(), *m)).collect();
        for (code, m) in mutes {
            let reason = if m.until_ms.is_some_and(|t| t <= now_ms) {
                Some(UnmuteReason::Expired)
            } else if m.sticky {
                None
            } else {
                match next.raised.get(&code) {
                    Some(r) if r.severity > m.severity || r.count > m.count => {
                        Some(UnmuteReason::Worsened)
                    }
                    Some(_) => None,
                    // Muted ahead of time only when sticky; a check muted while raised that is
                    // no longer raised has cleared.
                    None if self.raised.contains_key(&code) => Some(UnmuteReason::Cleared),
                    None => None,
                }
            };
            if let Some(reason) = reason {
                next.mutes.remove(&code);
                events.push(unmuted_event(&code, reason));
            }
        }
        (next != *self).then_some((next, events))
    }

    /// Mutes `code` (replacing a mute it has). A check that is not raised can be muted only
    /// with `sticky` (muted ahead of time, e.g. before planned maintenance).
    pub fn mute(
        &self,
        code: &str,
        ttl_ms: Option<u64>,
        sticky: bool,
        now_ms: u64,
    ) -> Result<(Health, EventBody), ClusterError> {
        if let Some(ttl) = ttl_ms
            && !(1..=MAX_MUTE_TTL_MS).contains(&ttl)
        {
            return Err(ClusterError::InvalidMuteTtl(ttl));
        }
        let raised = self.raised.get(code);
        if raised.is_none() && !sticky {
            return Err(ClusterError::HealthCheckNotRaised(super::error::echo(code)));
        }
        if !self.mutes.contains_key(code) && self.mutes.len() >= MAX_MUTES {
            return Err(ClusterError::TooManyMutes(MAX_MUTES));
        }
        let (severity, count) = raised.map_or((Severity::Ok, 0), |r| (r.severity, r.count));
        let mute = Mute {
            until_ms: ttl_ms.map(|t| now_ms.saturating_add(t)),
            sticky,
            severity,
            count,
            since_ms: now_ms,
        };
        let mut next = self.clone();
        next.mutes.insert(code.to_string(), mute);
        let event = check_event(
            EventType::HealthMuted,
            code,
            json!({
                "code": code,
                "sticky": sticky,
                "ttl_ms": ttl_ms,
                "until_ms": mute.until_ms,
                "raised": raised.is_some(),
                "severity": severity.name(),
                "count": count,
            }),
        );
        Ok((next, event))
    }

    /// Ends the mute of `code`.
    pub fn unmute(&self, code: &str) -> Result<(Health, EventBody), ClusterError> {
        if !self.mutes.contains_key(code) {
            return Err(ClusterError::HealthMuteNotFound(super::error::echo(code)));
        }
        let mut next = self.clone();
        next.mutes.remove(code);
        Ok((next, unmuted_event(code, UnmuteReason::Operator)))
    }
}

fn check_event(kind: EventType, code: &str, data: Value) -> EventBody {
    EventBody::health(kind, code, data)
}

fn unmuted_event(code: &str, reason: UnmuteReason) -> EventBody {
    check_event(
        EventType::HealthUnmuted,
        code,
        json!({ "code": code, "reason": reason.name() }),
    )
}
