//! Every ErrorInfo reason the monitor answers with: the stable, machine-readable names of its
//! errors. Code that raises or matches a reason names it from here (tests may write the string,
//! they check the wire); docs/api.md's "Error reasons" table lists exactly these (a unit test
//! reads it). Each constant's value is its own name.

/// Declares each reason as a constant whose value is its name, and [`ALL`] listing them.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        $($(#[$doc])* pub const $name: &str = stringify!($name);)*
        /// Every reason, in declaration order.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

reasons! {
    /// A leader-only call on a standby; ErrorInfo.metadata["leader"] is the leader's address.
    NOT_LEADER,
    /// etcd cannot be reached for a call answered from it.
    ETCD_UNAVAILABLE,
    /// etcd did not confirm a commit before the leader stopped leading.
    COMMIT_UNKNOWN,
    /// One change larger than one etcd transaction.
    CHANGE_TOO_LARGE,
    /// A request message over its call's size limit.
    REQUEST_TOO_LARGE,
    /// A request that is not one well-formed message of its call.
    INVALID_MESSAGE,
    /// An unknown cluster flag.
    INVALID_FLAG,
    /// A uuid that does not parse or is too long.
    INVALID_UUID,
    /// An OSD id the cluster does not know.
    OSD_NOT_FOUND,
    /// An OSD id applied for under another uuid.
    OSD_UUID_MISMATCH,
    /// An OSD address that does not parse or is too long.
    INVALID_ADDRESS,
    /// An OSD port outside the valid range.
    INVALID_PORT,
    /// An OSD booting with no cores.
    INVALID_CORE_NUM,
    /// An OSD booting with another core count than it has.
    CORE_NUM_MISMATCH,
    /// An OSD's shard table that does not fit its cores or ports.
    INVALID_SHARDS,
    /// An OSD's config text over its limit.
    CONFIG_TOO_LARGE,
    /// A boot without a usable boot instance.
    INVALID_BOOT_INSTANCE,
    /// A location label (host, rack, root) that is not valid.
    INVALID_LOCATION,
    /// Another instance of the OSD is up.
    OSD_ALREADY_UP,
    /// A call from an OSD run that ended or never started.
    OSD_NOT_BOOTED,
    /// A heartbeat of a replaced OSD run.
    STALE_BOOT_INSTANCE,
    /// The OSD is down.
    OSD_DOWN,
    /// Purging an OSD that is not both down and out.
    OSD_NOT_DOWN_AND_OUT,
    /// Purging an OSD that still holds PGs.
    OSD_HAS_PGS,
    /// An OSD weight that is not valid.
    INVALID_WEIGHT,
    /// A pool name that is empty or too long.
    INVALID_POOL_NAME,
    /// A pool of that name exists.
    POOL_NAME_EXISTS,
    /// A pool size outside its range.
    INVALID_PG_SIZE,
    /// A pool PG count outside its range.
    INVALID_PG_COUNT,
    /// A failure domain the monitor does not know.
    UNKNOWN_FAILURE_DOMAIN,
    /// Fewer distinct failure domains than replicas.
    FAILURE_DOMAIN_NEED_NOT_SATISFIED,
    /// Fewer usable OSDs than replicas.
    NO_ENOUGH_OSD,
    /// No pool of that name.
    UNKNOWN_POOL_NAME,
    /// No pool of that id.
    POOL_NOT_FOUND,
    /// An empty image name.
    INVALID_IMAGE_NAME,
    /// An image name over its limit.
    IMAGE_NAME_TOO_LONG,
    /// An image of that name exists.
    IMAGE_EXISTS,
    /// No image of that name.
    IMAGE_NOT_FOUND,
    /// An image size that is 0 or not a multiple of 512.
    INVALID_IMAGE_SIZE,
    /// An object size that is not a power of two in range.
    INVALID_OBJECT_SIZE,
    /// Shrinking an image without allowing it.
    IMAGE_SHRINK_NOT_ALLOWED,
    /// A PG id beyond the pool's PG count.
    PG_NOT_FOUND,
    /// A member list that is empty, repeats or names unknown OSDs, or is too long.
    INVALID_MEMBERS,
    /// A reporter or leader that is not a member of the PG.
    LEADER_NOT_MEMBER,
    /// A member change report without its reporter.
    PG_REPORTER_MISSING,
    /// A PG report from an OSD that is not up.
    PG_REPORTER_NOT_UP,
    /// A member change report for a PG with no change in progress.
    PG_NOT_REMAPPED,
    /// Reported members other than the monitor holds.
    PG_MEMBERS_MISMATCH,
    /// A PG name in statistics that does not parse.
    INVALID_PG_NAME,
    /// Statistics naming one PG twice.
    DUPLICATE_PG_NAME,
    /// A watch from epochs newer than this leader's.
    CLIENT_AHEAD,
    /// WatchEvents or ListEvents after an id older than the event log keeps;
    /// ErrorInfo.metadata["oldest_id"] is the oldest kept.
    EVENTS_COMPACTED,
    /// WatchEvents after an id the event log never reached (it was restored from a backup);
    /// ErrorInfo.metadata["latest_id"] is the newest written.
    EVENTS_AHEAD,
    /// A type filter of WatchEvents or ListEvents that is not a valid prefix.
    INVALID_EVENT_TYPE,
    /// A health check code that is malformed or names no check the monitor has.
    INVALID_HEALTH_CHECK,
    /// A mute of a check that is not raised, without sticky.
    HEALTH_CHECK_NOT_RAISED,
    /// An unmute of a check that is not muted.
    HEALTH_MUTE_NOT_FOUND,
    /// A mute ttl of 0 or longer than a year.
    INVALID_MUTE_TTL,
    /// A mute past the most mutes kept at once.
    TOO_MANY_MUTES,
    /// A webhook url that is malformed, too long, not https (http only when allowed), or
    /// carries credentials.
    INVALID_WEBHOOK_URL,
    /// A webhook secret that is not whsec_ + base64 of 24..=64 bytes, or more than 4 of them.
    INVALID_WEBHOOK_SECRET,
    /// A bearer token longer than 4096 bytes or with characters outside visible ASCII.
    INVALID_BEARER_TOKEN,
    /// AddWebhook: the endpoint's host does not accept a connection.
    WEBHOOK_UNREACHABLE,
    /// AddWebhook of a url registered already.
    WEBHOOK_EXISTS,
    /// A webhook id that is not registered.
    WEBHOOK_NOT_FOUND,
    /// AddWebhook past the most webhooks registered at once.
    TOO_MANY_WEBHOOKS,
    /// A stored value that does not decode (the message names its key).
    STORED_VALUE_CORRUPT,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The reasons in the first column of docs/api.md's "Error reasons" table.
    fn documented() -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
        let text = std::fs::read_to_string(path).expect("docs/api.md");
        let table = text
            .split("## Error reasons")
            .nth(1)
            .expect("an Error reasons section");
        let table = table.split("\n## ").next().unwrap_or_default();
        table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_api_docs_list_exactly_the_declared_reasons() {
        let documented = documented();
        let declared: BTreeSet<&str> = ALL.iter().copied().collect();
        assert_eq!(declared.len(), ALL.len(), "a reason is declared twice");
        let listed: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
        assert_eq!(listed.len(), documented.len(), "a reason is listed twice");
        assert_eq!(
            declared.difference(&listed).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "declared but not in docs/api.md"
        );
        assert_eq!(
            listed.difference(&declared).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "in docs/api.md but not declared"
        );
    }
}
