//! The one list of the Monitor service's calls. The service's trait implementation (and with it
//! the `method` label of the gRPC metrics), the client library's leader-following methods and
//! the request size limit of each call are generated from it: adding a call to the proto means
//! one line here and the handler in `src/service/`. A unit test holds the list to the proto.

/// Calls `$callback!` with every call of the Monitor service, in three groups by how a call is
/// answered:
///
/// - `any`: every monitor answers (the client asks any reachable one);
/// - `leader`: the leader answers, others say NOT_LEADER with a hint (the client follows it);
/// - `stream`: server streams: the map watch and the backup answered by the leader, the event
///   watch by every monitor.
///
/// Each row is `ProtoName rust_name(Request) -> Response, LIMIT;`: the method's name in the
/// proto and in Rust, its message types (in `crate::proto::monitor`; a stream's response in
/// `crate::wire`, sent pre-encoded), and the size class of its request (one of the constants
/// in `src/service/limits.rs`).
macro_rules! for_each_rpc {
    ($callback:ident) => {
        $callback! {
            any {
                GetLeader get_leader(GetLeaderRequest) -> GetLeaderResponse, SMALL;
                ListEvents list_events(ListEventsRequest) -> ListEventsResponse, SMALL;
            }
            leader {
                ApplyId apply_id(ApplyIdRequest) -> ApplyIdResponse, SMALL;
                Boot boot(BootRequest) -> BootResponse, MEDIUM;
                OsdStop osd_stop(OsdStopRequest) -> OsdStopResponse, SMALL;
                Heartbeat heartbeat(HeartbeatRequest) -> HeartbeatResponse, SMALL;
                OsdOut osd_out(OsdOutRequest) -> OsdChangeResponse, SMALL;
                OsdIn osd_in(OsdInRequest) -> OsdChangeResponse, SMALL;
                SetOsdLocation set_osd_location(SetOsdLocationRequest) -> OsdChangeResponse, SMALL;
                SetOsdWeight set_osd_weight(SetOsdWeightRequest) -> OsdChangeResponse, SMALL;
                PurgeOsd purge_osd(PurgeOsdRequest) -> OsdChangeResponse, SMALL;
                OsdConfig osd_config(OsdConfigRequest) -> OsdConfigResponse, SMALL;
                GetOsdMap get_osd_map(GetOsdMapRequest) -> GetOsdMapResponse, SMALL;
                GetPgMap get_pg_map(GetPgMapRequest) -> GetPgMapResponse, MEDIUM;
                GetClusterMap get_cluster_map(GetClusterMapRequest) -> GetClusterMapResponse, MEDIUM;
                GetPgOsdInfo get_pg_osd_info(GetPgOsdInfoRequest) -> GetPgOsdInfoResponse, MEDIUM;
                ListPools list_pools(ListPoolsRequest) -> ListPoolsResponse, SMALL;
                CreatePool create_pool(CreatePoolRequest) -> CreatePoolResponse, SMALL;
                DeletePool delete_pool(DeletePoolRequest) -> DeletePoolResponse, SMALL;
                CreateImage create_image(CreateImageRequest) -> ImageResponse, SMALL;
                RemoveImage remove_image(RemoveImageRequest) -> RemoveImageResponse, SMALL;
                ResizeImage resize_image(ResizeImageRequest) -> ImageResponse, SMALL;
                GetImageInfo get_image_info(GetImageInfoRequest) -> ImageResponse, SMALL;
                LeaderBeElected leader_be_elected(LeaderBeElectedRequest) -> PgChangeResponse, SMALL;
                PgMemberChangeFinish pg_member_change_finish(PgMemberChangeFinishRequest) -> PgChangeResponse, SMALL;
                SetFlag set_flag(SetFlagRequest) -> FlagsResponse, SMALL;
                UnsetFlag unset_flag(UnsetFlagRequest) -> FlagsResponse, SMALL;
                GetClusterStatus get_cluster_status(GetClusterStatusRequest) -> GetClusterStatusResponse, SMALL;
                MuteHealth mute_health(MuteHealthRequest) -> HealthMutesResponse, SMALL;
                AddWebhook add_webhook(AddWebhookRequest) -> AddWebhookResponse, SMALL;
                ListWebhooks list_webhooks(ListWebhooksRequest) -> ListWebhooksResponse, SMALL;
                RemoveWebhook remove_webhook(RemoveWebhookRequest) -> WebhookResponse, SMALL;
                TestWebhook test_webhook(TestWebhookRequest) -> TestWebhookResponse, SMALL;
                ReplayWebhook replay_webhook(ReplayWebhookRequest) -> WebhookResponse, SMALL;
                WebhookDeadLetters webhook_dead_letters(WebhookDeadLettersRequest) -> WebhookDeadLettersResponse, SMALL;
                UnmuteHealth unmute_health(UnmuteHealthRequest) -> HealthMutesResponse, SMALL;
                DataStatistics data_statistics(DataStatisticsRequest) -> DataStatisticsResponse, LARGE;
            }
            stream {
                WatchClusterMap watch_cluster_map(WatchClusterMapRequest) -> WatchClusterMapResponse, MEDIUM;
                Backup backup(BackupRequest) -> BackupChunk, SMALL;
                WatchEvents watch_events(WatchEventsRequest) -> WatchEventsResponse, SMALL;
            }
        }
    };
}

pub(crate) use for_each_rpc;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// Every row as (group, proto name, Rust name, request, response).
    macro_rules! rows {
        ($($group:ident {
            $($name:ident $method:ident($req:ident) -> $resp:ident, $limit:ident;)*
        })*) => {
            &[$($(
                (
                    stringify!($group),
                    stringify!($name),
                    stringify!($method),
                    stringify!($req),
                    stringify!($resp),
                ),
            )*)*]
        };
    }

    const ROWS: &[(&str, &str, &str, &str, &str)] = for_each_rpc!(rows);

    /// `GetPgOsdInfo` → `get_pg_osd_info`, the name tonic gives the method.
    fn snake(name: &str) -> String {
        let mut s = String::new();
        for c in name.chars() {
            if c.is_ascii_uppercase() && !s.is_empty() {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        }
        s
    }

    #[test]
    fn the_list_names_every_call_of_the_proto_once_with_its_types() {
        let service = crate::proto::monitor_service();
        let mut listed = BTreeMap::new();
        for row in ROWS {
            assert!(
                listed.insert(row.1, row).is_none(),
                "{} listed twice",
                row.1
            );
        }
        assert_eq!(listed.len(), service.method.len(), "calls listed");
        let package = ".fastblock.monitor.v1.";
        for m in &service.method {
            let (group, _, method, req, resp) = listed
                .get(m.name())
                .unwrap_or_else(|| panic!("{} is not in the list", m.name()));
            assert_eq!(*method, snake(m.name()));
            assert_eq!(m.input_type(), format!("{package}{req}"), "{}", m.name());
            assert_eq!(m.output_type(), format!("{package}{resp}"), "{}", m.name());
            assert!(!m.client_streaming(), "{}", m.name());
            assert_eq!(m.server_streaming(), *group == "stream", "{}", m.name());
        }
        assert_eq!(
            ROWS.iter()
                .filter(|r| r.0 == "any")
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            ["GetLeader", "ListEvents"],
            "only GetLeader and ListEvents are answered by every monitor"
        );
    }
}
