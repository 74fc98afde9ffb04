//! The front end for the existing fastblock components, which do not speak our gRPC API
//! (`../shared/docs/LEGACY-PROTOCOL.md`; what we answer and why: docs/legacy-protocol.md).
//!
//! - The framed protobuf protocol of the C++ OSDs and block clients and of the Go CLI, on the
//!   gRPC port (3333): its messages are `crate::proto::legacy` (package `msg`, from
//!   `proto/legacy.proto`); [`frame`] the framing, the gRPC/legacy sniff of a connection's first
//!   bytes and the decoding of a request; [`framed`] the shared port's accept loop and the
//!   connection loop; [`translate`] the 24 request kinds as the core's commands and snapshot
//!   reads, and which connection speaks for which OSD; [`maps`] the maps encoded once per
//!   epoch.
//! - The raw binary protocol of the kernel client kfastblock, on `raw_monitor_port` (3334):
//!   [`raw`] (the header, both requests answered from a snapshot, the connection loop and the
//!   accept loop, started by the daemon). Read-only: it proposes nothing.
//! - Which monitor serves a legacy connection (the leader; standbys forward): [`route`].
//!
//! The adapters stay thin: requests become the same commands the gRPC service proposes, with
//! no business logic of their own. Compatibility decisions: docs/legacy-protocol.md.

pub mod frame;
pub mod framed;
pub mod maps;
pub mod raw;
pub mod route;
pub mod translate;

use frame::MaxFrameLen;

/// The legacy front ends' settings (monitor.toml `legacy`, `legacy_max_frame`,
/// `raw_monitor_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacySettings {
    /// Whether `port` also serves the framed protocol (told apart from gRPC by a connection's
    /// first bytes).
    pub framed: bool,
    /// The largest frame payload accepted on the framed protocol.
    pub max_frame: MaxFrameLen,
    /// The raw protocol's port; None when disabled (`raw_monitor_port = 0`).
    pub raw_port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::{DescriptorProto, FileDescriptorSet, field_descriptor_proto::Type};

    use crate::proto::LEGACY_FILE_DESCRIPTOR_SET;

    fn message(name: &str) -> DescriptorProto {
        let set = FileDescriptorSet::decode(LEGACY_FILE_DESCRIPTOR_SET).expect("descriptor set");
        let file = set
            .file
            .into_iter()
            .find(|f| f.package() == "msg")
            .expect("package msg");
        file.message_type
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("message {name}"))
    }

    /// (number, name, type name or scalar) of every field of `name`, in number order.
    fn fields(name: &str) -> Vec<(i32, String, String)> {
        let mut out: Vec<_> = message(name)
            .field
            .iter()
            .map(|f| {
                let kind = match f.r#type() {
                    Type::Message | Type::Enum => {
                        f.type_name().rsplit('.').next().unwrap_or("").to_string()
                    }
                    scalar => format!("{scalar:?}").to_lowercase(),
                };
                (f.number(), f.name().to_string(), kind)
            })
            .collect();
        out.sort();
        out
    }

    fn expect(table: &[(i32, &str, &str)]) -> Vec<(i32, String, String)> {
        table
            .iter()
            .map(|(n, name, kind)| (*n, name.to_string(), kind.to_string()))
            .collect()
    }

    /// The oneof members of LEGACY-PROTOCOL.md, in number order: (request, response).
    const KINDS: [(&str, &str); 24] = [
        ("boot_request", "boot_response"),
        ("osd_stop_request", "osd_stop_response"),
        ("heartbeat_request", "heartbeat_response"),
        ("get_osdmap_request", "get_osdmap_response"),
        ("list_pools_request", "list_pools_response"),
        ("apply_id_request", "apply_id_response"),
        ("create_pool_request", "create_pool_response"),
        ("get_pgmap_request", "get_pgmap_response"),
        ("delete_pool_request", "delete_pool_response"),
        ("get_cluster_map_request", "get_cluster_map_response"),
        ("create_image_request", "create_image_response"),
        ("remove_image_request", "remove_image_response"),
        ("resize_image_request", "resize_image_response"),
        ("get_ImageInfo_Request", "get_imageInfo_response"),
        ("leader_be_elected_request", "leader_be_elected_response"),
        (
            "pg_member_change_finish_request",
            "pg_member_change_finish_response",
        ),
        ("osd_out_request", "osd_out_response"),
        ("osd_in_request", "osd_in_response"),
        ("no_reblance_request", "no_reblance_response"),
        ("no_out_request", "no_out_response"),
        ("get_cluster_status_request", "get_cluster_status_response"),
        ("data_statistics_request", "data_statistics_response"),
        ("osd_config_request", "osd_config_response"),
        ("pg_osd_info_request", "pg_osd_info_response"),
    ];

    #[test]
    fn request_and_response_have_the_24_kinds_under_their_numbers() {
        for (envelope, pick) in [("Request", 0), ("Response", 1)] {
            let m = message(envelope);
            assert_eq!(m.oneof_decl.len(), 1, "{envelope}");
            assert_eq!(m.oneof_decl[0].name(), "union");
            assert_eq!(m.field.len(), 24, "{envelope}");
            for (field, number) in m.field.iter().zip(1..) {
                let names = KINDS[number as usize - 1];
                let name = if pick == 0 { names.0 } else { names.1 };
                assert_eq!((field.number(), field.name()), (number, name));
                assert_eq!(field.oneof_index, Some(0), "{envelope}.{name} in the oneof");
                assert_eq!(field.r#type(), Type::Message);
            }
        }
        // The member types of a few kinds, as in the table of §6.
        let request = message("Request");
        let type_of = |n: usize| request.field[n - 1].type_name().to_string();
        assert_eq!(type_of(6), ".msg.ApplyIDRequest");
        assert_eq!(type_of(14), ".msg.GetImageInfoRequest");
        assert_eq!(type_of(19), ".msg.NoReblanceRequest");
        assert_eq!(type_of(24), ".msg.GetPgOsdInfoRequest");
    }

    #[test]
    fn messages_have_the_documented_field_numbers() {
        assert_eq!(
            fields("BootRequest"),
            expect(&[
                (1, "osd_id", "int32"),
                (2, "uuid", "string"),
                (3, "size", "int64"),
                (4, "sharded_ports", "ShardedPortsEntry"),
                (5, "address", "string"),
                (6, "host", "string"),
                (7, "core_num", "uint32"),
                (8, "config", "string"),
            ])
        );
        assert_eq!(
            fields("PGInfo"),
            expect(&[
                (1, "pgid", "int32"),
                (2, "version", "int64"),
                (3, "state", "int32"),
                (4, "coreindex", "uint32"),
                (5, "osdid", "int32"),
                (6, "newcoreindex", "uint32"),
                (7, "newosdid", "int32"),
            ])
        );
        assert_eq!(
            fields("LeaderBeElectedRequest"),
            expect(&[
                (1, "leaderId", "int32"),
                (2, "poolId", "uint64"),
                (3, "pgId", "uint64"),
                (4, "osdList", "int32"),
                (5, "newOsdList", "int32"),
            ])
        );
        assert_eq!(
            fields("GetPgMapResponse"),
            expect(&[
                (1, "errorcode", "ErrorcodeEntry"),
                (2, "poolid_pgmapversion", "PoolidPgmapversionEntry"),
                (3, "pgs", "PgsEntry"),
                (4, "pools", "PoolsEntry"),
            ])
        );
        assert_eq!(
            fields("CreateImageResponse"),
            expect(&[
                (1, "errorcode", "CreateImageErrorCode"),
                (2, "ImageInfo", "ImageInfo"),
            ])
        );
        let status = fields("GetClusterStatusResponse");
        assert_eq!(status.len(), 15);
        assert_eq!(
            status[0],
            (1, "clusterState".into(), "ClusterStates".into())
        );
        assert_eq!(status[14], (15, "recoveryObjPs".into(), "uint64".into()));
    }

    #[test]
    fn enums_have_the_documented_values() {
        let set = FileDescriptorSet::decode(LEGACY_FILE_DESCRIPTOR_SET).expect("descriptor set");
        let enums = &set
            .file
            .iter()
            .find(|f| f.package() == "msg")
            .unwrap()
            .enum_type;
        let values = |name: &str| -> Vec<(i32, String)> {
            enums
                .iter()
                .find(|e| e.name() == name)
                .unwrap_or_else(|| panic!("enum {name}"))
                .value
                .iter()
                .map(|v| (v.number(), v.name().to_string()))
                .collect()
        };
        let expect = |t: &[(i32, &str)]| -> Vec<(i32, String)> {
            t.iter().map(|(n, s)| (*n, s.to_string())).collect()
        };
        assert_eq!(enums.len(), 8);
        assert_eq!(
            values("ApplyIDErrorCode"),
            expect(&[
                (0, "ApplyIdOk"),
                (1, "UuidAlreadyExists"),
                (2, "InvalidUUid"),
                (3, "InternalError"),
            ])
        );
        assert_eq!(
            values("CreatePoolErrorCode"),
            expect(&[
                (0, "createPoolOk"),
                (1, "poolNameExists"),
                (2, "failureDomainNeedNotSatisfied"),
                (3, "noEnoughOsd"),
                (4, "internalError"),
            ])
        );
        assert_eq!(
            values("OsdMapErrorCode"),
            expect(&[
                (0, "ok"),
                (1, "clientVersionHigher"),
                (2, "clientVersionInvalid"),
                (3, "noOsdsExist"),
            ])
        );
    }

    #[test]
    fn the_legacy_messages_stay_out_of_our_api_descriptors() {
        let ours =
            FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        assert!(ours.file.iter().all(|f| f.package() != "msg"));
    }
}
