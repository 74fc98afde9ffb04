//! Length checks of a request's string fields, made on the borrowed message before a command
//! is built or any value copied: a value longer than any valid one is refused at once, with
//! the error the core would give for it (quoting at most a prefix of it).

use tonic::Status;

use super::status;
use crate::cluster::{
    ClusterError, MAX_ADDRESS_TEXT, MAX_CONFIG_TEXT, MAX_IMAGE_NAME, MAX_LABEL, MAX_POOL_NAME,
    MAX_UUID_TEXT, echo, label_too_long,
};

fn refuse(e: ClusterError) -> Result<(), Status> {
    Err(status::cluster_error(&e))
}

/// An OSD uuid (INVALID_UUID).
pub(super) fn uuid(value: &str) -> Result<(), Status> {
    if value.len() > MAX_UUID_TEXT {
        return refuse(ClusterError::InvalidUuid(echo(value)));
    }
    Ok(())
}

/// An OSD's IP address (INVALID_ADDRESS).
pub(super) fn address(value: &str) -> Result<(), Status> {
    if value.len() > MAX_ADDRESS_TEXT {
        return refuse(ClusterError::InvalidAddress(echo(value)));
    }
    Ok(())
}

/// A host, rack or root label (INVALID_LOCATION).
pub(super) fn label(field: &'static str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_LABEL {
        return refuse(label_too_long(field));
    }
    Ok(())
}

/// A pool name, to create or to look up (INVALID_POOL_NAME).
pub(super) fn pool_name(value: &str) -> Result<(), Status> {
    if value.len() > MAX_POOL_NAME {
        return refuse(ClusterError::InvalidPoolName(value.len()));
    }
    Ok(())
}

/// An image name, to create or to look up (IMAGE_NAME_TOO_LONG).
pub(super) fn image_name(value: &str) -> Result<(), Status> {
    if value.len() > MAX_IMAGE_NAME {
        return refuse(ClusterError::ImageNameTooLong(value.len()));
    }
    Ok(())
}

/// An OSD's config text (CONFIG_TOO_LARGE).
pub(super) fn config(value: &str) -> Result<(), Status> {
    if value.len() > MAX_CONFIG_TEXT {
        return refuse(ClusterError::ConfigTooLarge(value.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn refused(r: Result<(), Status>, reason: &str) -> Status {
        let s = r.expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(status::reason(&s).as_deref(), Some(reason));
        assert!(s.message().len() < 200, "{}", s.message());
        s
    }

    #[test]
    fn values_up_to_the_limit_pass_and_longer_ones_are_refused_briefly() {
        let at = |n: usize| "a".repeat(n);
        assert!(uuid(&format!("urn:uuid:{}", at(36))).is_ok());
        let s = refused(uuid(&at(1 << 20)), "INVALID_UUID");
        assert!(s.message().contains("…(1048576 bytes)"), "{}", s.message());
        assert!(address(&at(MAX_ADDRESS_TEXT)).is_ok());
        refused(address(&at(MAX_ADDRESS_TEXT + 1)), "INVALID_ADDRESS");
        let s = refused(address(&at(100_000)), "INVALID_ADDRESS");
        assert!(s.message().contains("…(100000 bytes)"), "{}", s.message());
        assert!(label("rack", &at(MAX_LABEL)).is_ok());
        let s = refused(label("rack", &at(MAX_LABEL + 1)), "INVALID_LOCATION");
        assert_eq!(s.message(), "rack: is longer than 255 bytes");
        assert!(pool_name(&at(MAX_POOL_NAME)).is_ok());
        refused(pool_name(&at(MAX_POOL_NAME + 1)), "INVALID_POOL_NAME");
        assert!(image_name(&at(MAX_IMAGE_NAME)).is_ok());
        refused(image_name(&at(MAX_IMAGE_NAME + 1)), "IMAGE_NAME_TOO_LONG");
        assert!(config(&at(MAX_CONFIG_TEXT)).is_ok());
        refused(config(&at(MAX_CONFIG_TEXT + 1)), "CONFIG_TOO_LARGE");
    }
}
