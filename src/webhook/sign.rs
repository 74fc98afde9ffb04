//! Standard Webhooks signing: secrets (`whsec_` + base64 of 24..=64 random bytes) and the
//! `webhook-signature` header, `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one
//! entry per secret (several while a secret is rotated). Pure; the tests check it against the
//! published test vector and an independent verifier.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a secret as shown to operators.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// The key length range the spec allows.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

/// A signing secret: the raw key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a secret is whsec_ followed by base64 of 24 to 64 bytes")]
    Malformed,
    #[error("the secret's key is {0} bytes; it must be 24 to 64 bytes")]
    Length(usize),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random source");
        Secret(key)
    }

    /// Parses `whsec_<base64>` (the prefix may be left out).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = B64.decode(b64).map_err(|_| SecretError::Malformed)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret(key))
    }

    /// The operator-facing form, `whsec_<base64>`.
    pub fn shown(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rebuilds a secret from stored bytes (checked like a parsed one).
    pub fn from_bytes(key: Vec<u8>) -> Result<Secret, SecretError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret(key))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn entry(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one `v1,` entry per secret, space-separated.
pub fn signature(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.entry(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer vector of the Standard Webhooks reference library's tests.
    #[test]
    fn the_published_test_vector_signs_alike() {
        let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signature(
                &[secret],
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = Secret::generate();
        assert!(s.shown().starts_with("whsec_"));
        assert_eq!(Secret::parse(&s.shown()).unwrap(), s);
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::Malformed));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
        assert!(
            !format!("{s:?}").contains(&s.shown()),
            "Debug never shows the key"
        );
    }

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let header = signature(&[a.clone(), b.clone()], "7", 1, b"{}");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], signature(&[a], "7", 1, b"{}"));
        assert_eq!(entries[1], signature(&[b], "7", 1, b"{}"));
    }
}
