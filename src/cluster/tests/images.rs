//! Images: CreateImage, ResizeImage, RemoveImage.

use super::*;
use crate::cluster::{
    ClusterState, DEFAULT_OBJECT_SIZE, Image, ImageId, MAX_IMAGE_NAME, RecordKey,
};

const GIB: u64 = 1 << 30;

/// A cluster with pools "rbd" (id 1) and "other" (id 2).
fn two_pools() -> ClusterState {
    let mut s = cluster(3, 3);
    pool(&mut s, "rbd", 3, 8, "host");
    pool(&mut s, "other", 3, 8, "host");
    s
}

fn create(pool: &str, name: &str, size: u64, object_size: u64) -> command::CreateImage {
    command::CreateImage {
        pool: pool.to_string(),
        name: name.to_string(),
        size,
        object_size,
    }
}

fn resize(name: &str, size: u64, allow_shrink: bool) -> command::ResizeImage {
    command::ResizeImage {
        pool: "rbd".to_string(),
        name: name.to_string(),
        size,
        allow_shrink,
    }
}

fn remove(pool: &str, name: &str) -> command::RemoveImage {
    command::RemoveImage {
        pool: pool.to_string(),
        name: name.to_string(),
    }
}

fn image(s: &mut ClusterState, pool: &str, name: &str, size: u64, object_size: u64) -> Image {
    run(s, create(pool, name, size, object_size)).reply.0
}

// ---- CreateImage ------------------------------------------------------------------------------

#[test]
fn create_image_records_the_image_and_the_counter() {
    let mut s = two_pools();
    let epochs_before = epochs(&s);
    let a = run(&mut s, create("rbd", "vm1", 10 * GIB, 1 << 20));
    let expected = Image {
        id: ImageId(1),
        pool: PoolId(1),
        name: "vm1".to_string(),
        size: 10 * GIB,
        object_size: 1 << 20,
    };
    assert_eq!(a.reply, reply::Image(expected.clone()));
    assert_eq!(
        a.touched,
        vec![RecordKey::Image(PoolId(1), ImageId(1)), RecordKey::Counters]
    );
    assert_eq!(
        s.image(PoolId(1), "vm1").map(|i| (**i).clone()),
        Some(expected)
    );
    assert_eq!(s.image_count(), 1);
    assert_eq!(s.counters().next_image_id, 2);
    assert_eq!(epochs(&s), epochs_before, "images are not in the maps");
}

#[test]
fn create_image_in_an_unknown_pool_is_refused() {
    let mut s = two_pools();
    for pool in ["", "nope", "RBD"] {
        refuse(
            &mut s,
            create(pool, "vm1", GIB, 0),
            ClusterError::UnknownPoolName(pool.to_string()),
        );
    }
}

#[test]
fn image_names_must_be_1_to_512_bytes() {
    let mut s = two_pools();
    refuse(
        &mut s,
        create("rbd", "", GIB, 0),
        ClusterError::InvalidImageName,
    );
    refuse(
        &mut s,
        create("rbd", &"n".repeat(MAX_IMAGE_NAME + 1), GIB, 0),
        ClusterError::ImageNameTooLong(513),
    );
    // Bytes, not characters.
    refuse(
        &mut s,
        create("rbd", &"é".repeat(257), GIB, 0),
        ClusterError::ImageNameTooLong(514),
    );
    let name = "n".repeat(MAX_IMAGE_NAME);
    let i = image(&mut s, "rbd", &name, GIB, 0);
    assert_eq!(i.name, name);
}

#[test]
fn image_names_are_unique_per_pool() {
    let mut s = two_pools();
    image(&mut s, "rbd", "vm1", GIB, 0);
    refuse(
        &mut s,
        create("rbd", "vm1", 2 * GIB, 0),
        ClusterError::ImageExists("vm1".to_string()),
    );
    let other = image(&mut s, "other", "vm1", 2 * GIB, 0);
    assert_eq!(other.pool, PoolId(2));
    assert_eq!(other.id, ImageId(2));
    assert_eq!(s.image(PoolId(1), "vm1").unwrap().size, GIB);
    assert_eq!(s.image(PoolId(2), "vm1").unwrap().size, 2 * GIB);
}

#[test]
fn image_size_must_be_a_positive_multiple_of_512() {
    let mut s = two_pools();
    for size in [0, 1, 511, 513, 1000, GIB + 1] {
        refuse(
            &mut s,
            create("rbd", "vm", size, 0),
            ClusterError::InvalidImageSize(size),
        );
    }
    assert_eq!(image(&mut s, "rbd", "vm", 512, 0).size, 512);
    assert_eq!(image(&mut s, "rbd", "big", 1 << 50, 0).size, 1 << 50);
}

#[test]
fn object_size_defaults_to_4_mib_and_must_be_a_power_of_two_from_4_kib_to_1_gib() {
    let mut s = two_pools();
    assert_eq!(DEFAULT_OBJECT_SIZE, 4 << 20);
    assert_eq!(image(&mut s, "rbd", "d", GIB, 0).object_size, 4 << 20);
    assert_eq!(image(&mut s, "rbd", "min", GIB, 4096).object_size, 4096);
    assert_eq!(image(&mut s, "rbd", "max", GIB, GIB).object_size, GIB);
    for os in [1, 2, 3, 2048, 5000, 4097, 3 << 20, 2 * GIB, 1 << 63] {
        refuse(
            &mut s,
            create("rbd", "bad", GIB, os),
            ClusterError::InvalidObjectSize(os),
        );
    }
}

#[test]
fn image_ids_increase_and_are_never_reused() {
    let mut s = two_pools();
    assert_eq!(image(&mut s, "rbd", "a", GIB, 0).id, ImageId(1));
    assert_eq!(image(&mut s, "rbd", "b", GIB, 0).id, ImageId(2));
    run(&mut s, remove("rbd", "b"));
    assert_eq!(image(&mut s, "rbd", "b", GIB, 0).id, ImageId(3));
    run(&mut s, remove("rbd", "a"));
    assert_eq!(image(&mut s, "other", "a", GIB, 0).id, ImageId(4));
    // Not after a pool deletion either.
    run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    assert_eq!(image(&mut s, "other", "b", GIB, 0).id, ImageId(5));
    assert_eq!(s.counters().next_image_id, 6);
}

#[test]
fn a_refused_create_does_not_use_up_an_image_id() {
    let mut s = two_pools();
    refuse(
        &mut s,
        create("rbd", "vm", GIB, 3),
        ClusterError::InvalidObjectSize(3),
    );
    assert_eq!(image(&mut s, "rbd", "vm", GIB, 0).id, ImageId(1));
}

// ---- ResizeImage ------------------------------------------------------------------------------

#[test]
fn resize_grows_an_image() {
    let mut s = two_pools();
    let before = image(&mut s, "rbd", "vm", GIB, 0);
    let a = run(&mut s, resize("vm", 4 * GIB, false));
    let grown = Image {
        size: 4 * GIB,
        ..before.clone()
    };
    assert_eq!(a.reply, reply::Image(grown.clone()));
    assert_eq!(a.touched, vec![RecordKey::Image(before.pool, before.id)]);
    assert_eq!(**s.image(PoolId(1), "vm").unwrap(), grown);
}

#[test]
fn shrinking_needs_allow_shrink() {
    let mut s = two_pools();
    image(&mut s, "rbd", "vm", 4 * GIB, 0);
    refuse(
        &mut s,
        resize("vm", GIB, false),
        ClusterError::ShrinkNotAllowed {
            name: "vm".to_string(),
            from: 4 * GIB,
            to: GIB,
        },
    );
    let a = run(&mut s, resize("vm", GIB, true));
    assert_eq!(a.touched.len(), 1);
    assert_eq!(s.image(PoolId(1), "vm").unwrap().size, GIB);
}

#[test]
fn resize_to_the_same_size_touches_nothing() {
    let mut s = two_pools();
    let i = image(&mut s, "rbd", "vm", GIB, 0);
    for allow_shrink in [false, true] {
        let a = assert_no_op(&mut s, resize("vm", GIB, allow_shrink));
        assert_eq!(a.reply, reply::Image(i.clone()));
    }
}

#[test]
fn resize_refuses_unknown_images_and_bad_sizes() {
    let mut s = two_pools();
    image(&mut s, "rbd", "vm", GIB, 0);
    image(&mut s, "other", "elsewhere", GIB, 0);
    refuse(
        &mut s,
        resize("nope", GIB, false),
        ClusterError::ImageNotFound("nope".to_string()),
    );
    refuse(
        &mut s,
        resize("elsewhere", GIB, false),
        ClusterError::ImageNotFound("elsewhere".to_string()),
    );
    for size in [0, 511, GIB + 100] {
        refuse(
            &mut s,
            resize("vm", size, true),
            ClusterError::InvalidImageSize(size),
        );
    }
    refuse(
        &mut s,
        command::ResizeImage {
            pool: "nope".to_string(),
            name: "vm".to_string(),
            size: GIB,
            allow_shrink: false,
        },
        ClusterError::UnknownPoolName("nope".to_string()),
    );
}

// ---- RemoveImage ------------------------------------------------------------------------------

#[test]
fn remove_image_removes_it() {
    let mut s = two_pools();
    let i = image(&mut s, "rbd", "vm", GIB, 0);
    image(&mut s, "other", "vm", GIB, 0);
    let a = run(&mut s, remove("rbd", "vm"));
    assert_eq!(a.reply, reply::ImageRemoved(i.id));
    assert_eq!(a.touched, vec![RecordKey::Image(i.pool, i.id)]);
    assert_eq!(s.record(&RecordKey::Image(i.pool, i.id)), None);
    assert!(s.image(PoolId(1), "vm").is_none());
    assert!(s.image(PoolId(2), "vm").is_some(), "same name, other pool");
    assert_eq!(s.image_count(), 1);
    // The name is free again.
    let again = image(&mut s, "rbd", "vm", GIB, 0);
    assert_ne!(again.id, i.id);
}

#[test]
fn remove_image_refuses_unknown_images_and_pools() {
    let mut s = two_pools();
    image(&mut s, "other", "vm", GIB, 0);
    refuse(
        &mut s,
        remove("rbd", "vm"),
        ClusterError::ImageNotFound("vm".to_string()),
    );
    refuse(
        &mut s,
        remove("nope", "vm"),
        ClusterError::UnknownPoolName("nope".to_string()),
    );
    run(&mut s, remove("other", "vm"));
    refuse(
        &mut s,
        remove("other", "vm"),
        ClusterError::ImageNotFound("vm".to_string()),
    );
}
