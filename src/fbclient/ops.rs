//! The op table: every operation with the function that runs it, its required and optional
//! flags and its help line. The single source of `--help`'s op list, the unknown-op message,
//! the missing-flag check and what `-op` runs: an op cannot be listed without a handler.

use std::future::Future;
use std::pin::Pin;

use super::output::Output;
use super::{
    Ctx, Failure, backup, cluster, events, fake, images, maps, osds, pools, watch, webhooks,
};
use crate::client::Scope;

/// What an op's run returns: the output to print, or None when it printed as it went.
pub type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Output>, Failure>> + 'a>>;

/// The function that runs an op.
pub type Run = for<'a> fn(&'a Ctx) -> OpFuture<'a>;

/// An op that returns what to print.
fn shown<'a>(run: impl Future<Output = Result<Output, Failure>> + 'a) -> OpFuture<'a> {
    Box::pin(async move { run.await.map(Some) })
}

/// An op that prints as it goes (watches, the fake fleet).
fn printed<'a>(run: impl Future<Output = Result<(), Failure>> + 'a) -> OpFuture<'a> {
    Box::pin(async move { run.await.map(|()| None) })
}

/// One operation: its name, what runs it, the flags it needs, the flags it may take, and what it
/// does.
pub struct OpSpec {
    /// The `-op` value.
    pub name: &'static str,
    /// Runs the op.
    pub run: Run,
    /// Flags that must be given (without the dash).
    pub required: &'static [&'static str],
    /// Flags the op also reads.
    pub optional: &'static [&'static str],
    /// One line for `--help`.
    pub about: &'static str,
}

const fn op(
    name: &'static str,
    run: Run,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    about: &'static str,
) -> OpSpec {
    OpSpec {
        name,
        run,
        required,
        optional,
        about,
    }
}

/// Every operation, in the order `--help` shows them.
#[rustfmt::skip]
pub const OPS: &[OpSpec] = &[
    op("leader", |c| shown(cluster::leader(c)),
       &[], &[], "who leads, the leader epoch, every monitor and its role"),
    op("status", |c| shown(cluster::status(c)),
       &[], &[], "cluster summary like `ceph -s`: health, monitors, OSDs, pools, PGs, I/O"),
    op("health", |c| shown(cluster::health(c)),
       &[], &["mute", "ttl", "sticky", "unmute"],
       "health status and every check with its details (exit 0 even when WARN/ERR); \
        -mute=CODE [-ttl=1h] [-sticky] mutes a check, -unmute=CODE ends its mute"),
    op("osdtree", |c| shown(cluster::osd_tree(c)),
       &[], &[], "the topology root → rack → host → osd with weights and up/in, like `ceph osd tree`"),
    op("backup", |c| shown(backup::backup(c)),
       &["out"], &[], "write every stored record, read at one etcd revision, to a backup file \
        (restore: fastblock-mon restore FILE)"),
    op("backup-verify", |c| shown(backup::verify(c)),
       &["in"], &[], "check a backup file (format, checksum, records) and summarise what it holds"),
    op("fakeapplyid", |c| shown(osds::apply_id(c)),
       &[], &["uuid"], "get the OSD id of a uuid (a random uuid when none is given)"),
    op("fakebootosd", |c| shown(osds::boot(c)),
       &["osdid", "uuid"], &["host", "address", "cores", "port", "size", "rack", "root"],
       "boot one fake OSD (it does not heartbeat: it goes down after osd_down_after)"),
    op("fakestoposd", |c| shown(osds::stop(c)),
       &["osdid"], &[], "planned stop of an OSD: marked down now (OsdStop)"),
    op("fakestartcluster", |c| printed(fake::start_cluster(c)),
       &["osdcount", "hostcount"],
       &["rackcount", "cores", "heartbeat", "duration", "kill", "churn", "interval", "prefix",
         "protocol"],
       "run fake OSDs that heartbeat and play the PG protocol over gRPC or, with -protocol=legacy, \
        the C++ OSDs' framed protobuf (stdin: kill ID, revive ID, status, quit)"),
    op("outosd", |c| shown(osds::out_in(c, false)),
       &["osdid"], &[], "mark an OSD out (its PGs are remapped)"),
    op("inosd", |c| shown(osds::out_in(c, true)),
       &["osdid"], &[], "mark an OSD in (PGs are rebalanced onto it unless norebalance)"),
    op("showconfig", |c| shown(osds::show_config(c)),
       &["osdid"], &[], "the config text an OSD reported at its last boot"),
    op("createpool", |c| shown(pools::create(c)),
       &["poolname", "pgcount"], &["pgsize", "failure_domain", "root"],
       "create a pool (pgsize defaults to 3, failure_domain to host) and place its PGs"),
    op("deletepool", |c| shown(pools::delete(c)),
       &["poolname"], &[], "delete a pool with its PGs and images"),
    op("listpools", |c| shown(pools::list(c)),
       &[], &[], "every pool with its size, PG count, failure domain, root and epoch"),
    op("getpgosds", |c| shown(pools::pg_osds(c)),
       &[], &["poolid"], "each PG's core and member OSDs (one pool or all)"),
    op("getosdmap", |c| shown(maps::osdmap(c)),
       &[], &["detail"], "the osdmap: every OSD with up/in, host, address, shards"),
    op("getpgmap", |c| shown(maps::pgmap(c)),
       &[], &["poolid"], "the pgmaps: every PG with state, members, target members"),
    op("getclustermap", |c| shown(maps::cluster_map(c)),
       &[], &[], "the osdmap and every pgmap in one call"),
    op("watchosdmap", |c| printed(watch::watch(c, Scope::Osdmap)),
       &[], &["duration"], "print every osdmap change as it happens (OSDs, flags)"),
    op("watchpgmap", |c| printed(watch::watch(c, Scope::Pgmaps)),
       &[], &["duration"], "print every pgmap change as it happens (PG states, pools)"),
    op("watchclustermap", |c| printed(watch::watch(c, Scope::All)),
       &[], &["duration"], "print every osdmap and pgmap change as it happens"),
    op("events", |c| shown(events::list(c)),
       &[], &["last", "from", "type"],
       "past events: the last N (default 20), or from an id on; -type=osd.,health. filters"),
    op("watchevents", |c| printed(events::watch(c)),
       &[], &["from", "type", "duration"],
       "print events as they are committed (from now, or from an id on); resumes across failover"),
    op("webhook-add", |c| shown(webhooks::add(c)),
       &["url"], &["type", "secret", "token", "force"],
       "register a webhook: every event (of -type prefixes) POSTed to -url as a signed CloudEvent; \
        a signing secret is generated and shown once unless -secret=whsec_... is given"),
    op("webhook-list", |c| shown(webhooks::list(c)),
       &[], &[], "every webhook: id, state, last event delivered, dead letters, types, url"),
    op("webhook-remove", |c| shown(webhooks::remove(c)),
       &["id"], &[], "remove a webhook with its cursor and dead letters"),
    op("webhook-test", |c| shown(webhooks::test(c)),
       &["id"], &[], "send one test event now and say how it went (exit 1 if not delivered)"),
    op("webhook-replay", |c| shown(webhooks::replay(c)),
       &["id", "from"], &[], "deliver again from event -from on (also enables a disabled webhook)"),
    op("webhook-deadletters", |c| shown(webhooks::dead_letters(c)),
       &["id"], &["last", "purge"], "the events a webhook gave up on; -purge deletes them"),
    op("createimage", |c| shown(images::create(c)),
       &["poolname", "imagename", "imagesize"], &["objectsize"], "create a block-device image"),
    op("removeimage", |c| shown(images::remove(c)),
       &["poolname", "imagename"], &[], "remove an image"),
    op("getimage", |c| shown(images::get(c)),
       &["poolname", "imagename"], &[], "an image's id, size and object size"),
    op("resizeimage", |c| shown(images::resize(c)),
       &["poolname", "imagename", "imagesize"], &["allowshrink"],
       "resize an image (shrinking needs -allowshrink)"),
];

/// The op table as `--help` shows it: each op with what it does, then its flags.
pub fn ops_help() -> String {
    let mut s =
        String::from("Operations (-op=NAME or --op NAME), with their flags ([optional]):\n");
    for o in OPS {
        s.push_str(&format!("  {:<17}{}\n", o.name, o.about));
        let mut flags: Vec<String> = o.required.iter().map(|f| format!("-{f}")).collect();
        if !o.optional.is_empty() {
            let opt: Vec<String> = o.optional.iter().map(|f| format!("-{f}")).collect();
            flags.push(format!("[{}]", opt.join(" ")));
        }
        if !flags.is_empty() {
            s.push_str(&format!("  {:<17}{}\n", "", flags.join(" ")));
        }
    }
    s.push_str(&format!(
        "Without -op:\n  {:<17}set a cluster flag: {}\n  {:<17}clear a cluster flag\n",
        "-set=FLAG",
        super::args::FLAG_NAMES.join(", "),
        "-unset=FLAG",
    ));
    s.push_str(
        "Every op takes -mon, -conf, -json and -timeout. Exit code: 0 success, 1 failure, \
         2 usage error; a failure prints one line `fbclient: <reason>` on stderr.",
    );
    s
}

/// The names of every op, comma-separated.
pub fn op_names() -> String {
    OPS.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
}

/// The spec of op `name`.
pub fn spec(name: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|o| o.name == name)
}
