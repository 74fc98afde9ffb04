//! Refusals that quote a value a client sent quote only a prefix of it and its length, however
//! long the value (errors travel in gRPC headers, which clients cap at a few KiB).

use super::*;
use crate::cluster::{ECHO_BYTES, echo};

/// A value far longer than any error may quote.
fn huge(c: char) -> String {
    c.to_string().repeat(1 << 20)
}

/// Refuses `cmd`, checks the exact error, and that its text quotes a prefix and the length.
fn refuse_quoting<C: Command>(s: &mut ClusterState, cmd: C, expected: ClusterError) {
    let text = expected.to_string();
    refuse(s, cmd, expected);
    assert!(
        text.len() < ECHO_BYTES + 200,
        "{} bytes: {text}",
        text.len()
    );
    assert!(text.contains("…(1048576 bytes)"), "{text}");
}

#[test]
fn osd_refusals_quote_a_prefix() {
    let mut s = cluster(3, 3);
    let long = huge('u');
    refuse_quoting(
        &mut s,
        command::ApplyId { uuid: long.clone() },
        ClusterError::InvalidUuid(echo(&long)),
    );
    let mut a = boot_args(OsdId(1), &long, 1, 1);
    refuse_quoting(
        &mut s,
        command::Boot(a.clone()),
        ClusterError::InvalidUuid(echo(&long)),
    );
    a.uuid = uuid(1);
    a.address = huge('9');
    refuse_quoting(
        &mut s,
        command::Boot(a.clone()),
        ClusterError::InvalidAddress(echo(&a.address)),
    );
}

#[test]
fn pool_and_image_refusals_quote_a_prefix() {
    let mut s = cluster(3, 3);
    pool(&mut s, "rbd", 3, 8, "host");
    let fd = huge('d');
    refuse_quoting(
        &mut s,
        command::CreatePool(pool_args("p2", 3, 8, &fd)),
        ClusterError::UnknownFailureDomain(echo(&fd)),
    );
    let name = huge('p');
    refuse_quoting(
        &mut s,
        command::DeletePool { name: name.clone() },
        ClusterError::UnknownPoolName(echo(&name)),
    );
    refuse_quoting(
        &mut s,
        command::RemoveImage {
            pool: name.clone(),
            name: "vm".to_string(),
        },
        ClusterError::UnknownPoolName(echo(&name)),
    );
    let image = huge('i');
    refuse_quoting(
        &mut s,
        command::RemoveImage {
            pool: "rbd".to_string(),
            name: image.clone(),
        },
        ClusterError::ImageNotFound(echo(&image)),
    );
    refuse_quoting(
        &mut s,
        command::ResizeImage {
            pool: "rbd".to_string(),
            name: image.clone(),
            size: 1 << 30,
            allow_shrink: false,
        },
        ClusterError::ImageNotFound(echo(&image)),
    );
}

#[test]
fn a_root_without_osds_is_quoted_short() {
    let mut s = cluster(3, 3);
    // The longest valid label: under the field limit, over what an error quotes.
    let root = "r".repeat(255);
    let mut args = pool_args("p", 3, 8, "host");
    args.root = root.clone();
    let text = refuse_any(&mut s, command::CreatePool(args)).to_string();
    assert!(text.contains(&echo(&root)), "{text}");
    assert!(
        text.contains("…(255 bytes)") && !text.contains(&root),
        "{text}"
    );
}
