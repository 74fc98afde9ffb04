//! fbclient's command line: every flag (Go-style `-flag=value` or `--flag value`), the check of
//! an op's required flags against the op table (`ops.rs`), and the parsing of sizes, id lists
//! and booleans that Go's flag package accepted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use super::Failure;
use super::ops::{OpSpec, op_names, ops_help, spec};
use super::output::parse_size;
use crate::sim::FleetProtocol;
use crate::{VERSION, cli};

/// Every flag of fbclient. Which ones an operation uses is in [`super::OPS`].
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "fbclient",
    version = VERSION,
    about = "Command-line client of the fastblock monitors. Flags work Go-style \
             (-op=createpool -poolname=rbd) and the usual way (--op createpool --poolname rbd). \
             Monitors: --mon, else $FASTBLOCK_MON, else the advertise_address of -conf, else \
             127.0.0.1:3333."
)]
pub struct Args {
    /// The operation to run (see the table below).
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Monitors to talk to, `host:port,host:port` (the leader is followed).
    #[arg(long, alias = "endpoint", env = "FASTBLOCK_MON", value_name = "ADDRS")]
    pub mon: Option<String>,
    /// Take the monitor address from this monitor.toml (its advertise_address).
    #[arg(long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Print JSON (one document; one object per line for watch and fleet ops).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
    /// Bound of each call to the monitors, e.g. "10s", "500ms".
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Set a cluster flag (no -op needed): noout, norebalance, nodown, noup, noin.
    #[arg(long, value_name = "FLAG")]
    pub set: Option<String>,
    /// Clear a cluster flag (no -op needed).
    #[arg(long, value_name = "FLAG")]
    pub unset: Option<String>,

    /// OSD id.
    #[arg(long)]
    pub osdid: Option<u32>,
    /// OSD uuid (fakeapplyid picks a random one when absent).
    #[arg(long)]
    pub uuid: Option<String>,
    /// Host of a fake OSD (default `host<osdid>`).
    #[arg(long, alias = "hostname")]
    pub host: Option<String>,
    /// IP address of a fake OSD (default 127.0.0.1).
    #[arg(long)]
    pub address: Option<String>,
    /// First shard port of a fake OSD (default 20000; shard i uses port+i).
    #[arg(long)]
    pub port: Option<u16>,
    /// Shards (cores) per fake OSD (default: the cluster's, else 4).
    #[arg(long)]
    pub cores: Option<u32>,
    /// Capacity of a fake OSD, bytes or with a K/M/G/T/P suffix (default 1T).
    #[arg(long, value_parser = parse_size_arg)]
    pub size: Option<u64>,
    /// Rack label of a fake OSD.
    #[arg(long)]
    pub rack: Option<String>,
    /// Topology root (of a fake OSD, or the subtree a pool lives in).
    #[arg(long)]
    pub root: Option<String>,

    /// Fake OSDs to run.
    #[arg(long)]
    pub osdcount: Option<u32>,
    /// Hosts the fake OSDs are spread over.
    #[arg(long)]
    pub hostcount: Option<u32>,
    /// Racks the fake hosts are spread over (default 0: no racks).
    #[arg(long)]
    pub rackcount: Option<u32>,
    /// Heartbeat interval of the fake OSDs (default 3s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Stop a watch or the fake cluster after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Fake OSDs to kill once the fleet runs, e.g. "3,7".
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub kill: Vec<u32>,
    /// Every period, kill one random fake OSD and revive the one killed before.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub churn: Option<Duration>,
    /// How often the fake cluster prints its summary (default 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Name prefix of the fake hosts; also seeds their uuids (default "fake").
    #[arg(long)]
    pub prefix: Option<String>,
    /// What the fake OSDs speak: grpc (default) or legacy (the C++ OSDs' framed protobuf).
    #[arg(long, value_parser = parse_protocol, value_name = "PROTOCOL")]
    pub protocol: Option<FleetProtocol>,

    /// Pool name.
    #[arg(long)]
    pub poolname: Option<String>,
    /// Pool id.
    #[arg(long)]
    pub poolid: Option<u32>,
    /// Replicas per PG (default 3).
    #[arg(long)]
    pub pgsize: Option<u32>,
    /// PGs in the pool.
    #[arg(long)]
    pub pgcount: Option<u32>,
    /// osd, host, rack or root (default host).
    #[arg(
        long = "failure_domain",
        alias = "failure-domain",
        alias = "failuredomain"
    )]
    pub failure_domain: Option<String>,

    /// Image name.
    #[arg(long)]
    pub imagename: Option<String>,
    /// Image size: bytes or with a K/M/G/T/P suffix (10G, 512M, 4096).
    #[arg(long, value_parser = parse_size_arg)]
    pub imagesize: Option<u64>,
    /// Object size of an image (default 4M).
    #[arg(long, value_parser = parse_size_arg)]
    pub objectsize: Option<u64>,
    /// Let resizeimage shrink the image (data beyond the new size is lost).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allowshrink: bool,
    /// backup: the file to write (replaced only once the new backup is complete).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// backup-verify: the backup file to check.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// events: how many of the most recent events (default 20, at most 10000).
    #[arg(long)]
    pub last: Option<u32>,
    /// events, watchevents: the first event id to show (default: the last N / from now).
    #[arg(long, value_name = "ID")]
    pub from: Option<u64>,
    /// events, watchevents, webhook-add: event type prefixes, comma-separated (e.g.
    /// osd.,health.).
    #[arg(
        long = "type",
        alias = "types",
        value_delimiter = ',',
        value_name = "PREFIXES"
    )]
    pub types: Vec<String>,
    /// webhook-add: the endpoint's url (https://...).
    #[arg(long)]
    pub url: Option<String>,
    /// webhook ops: the webhook's id.
    #[arg(long)]
    pub id: Option<u32>,
    /// webhook-add: signing secrets (whsec_...), comma-separated; default: one is generated.
    #[arg(long, value_delimiter = ',', value_name = "SECRETS")]
    pub secret: Vec<String>,
    /// webhook-add: a bearer token sent with every delivery.
    #[arg(long, env = "FASTBLOCK_WEBHOOK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// webhook-add: register without checking that the host accepts a connection.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub force: bool,
    /// webhook-deadletters: delete the dead letters after listing them.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub purge: bool,
    /// health: mute this check (e.g. OSD_DOWN): listed, but not counted in the overall status.
    #[arg(long, value_name = "CODE")]
    pub mute: Option<String>,
    /// health: end the mute of this check.
    #[arg(long, value_name = "CODE")]
    pub unmute: Option<String>,
    /// health -mute: how long the mute lasts, e.g. "1h", "30m" (default: until unmuted).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// health -mute: keep the mute when the check worsens or clears (and allow muting a check
    /// that is not raised, ahead of planned work).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub sticky: bool,
    /// getosdmap: also print every shard's core, port and raw port.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL",
          hide_default_value = true, hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub detail: bool,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn parse_protocol(s: &str) -> Result<FleetProtocol, String> {
    FleetProtocol::parse(s)
}

/// The flags names accepted by `-set`/`-unset`.
pub const FLAG_NAMES: &[&str] = &["noout", "norebalance", "nodown", "noup", "noin"];

/// What the command line asks for, once parsed.
pub enum Parsed {
    /// Run with these arguments.
    Run(Box<Args>),
    /// Help or version was printed; exit 0.
    Printed,
}

impl Args {
    /// Parses a command line (Go-style flags included). Clap's multi-line errors become one
    /// line so that every failure prints exactly one line.
    pub fn parse_argv(argv: impl IntoIterator<Item = OsString>) -> Result<Parsed, Failure> {
        let command = Args::command().after_help(ops_help());
        let matches = command.try_get_matches_from(cli::normalize_go_flags(argv));
        let result = matches.and_then(|m| Args::from_arg_matches(&m));
        match result {
            Ok(a) => Ok(Parsed::Run(Box::new(a))),
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    Ok(Parsed::Printed)
                }
                _ => Err(Failure::Usage(first_line(&e.render().to_string()))),
            },
        }
    }

    /// Whether `flag` was given; None for a name that is not a flag of an op.
    pub fn given(&self, flag: &str) -> Option<bool> {
        Some(match flag {
            "osdid" => self.osdid.is_some(),
            "uuid" => self.uuid.is_some(),
            "host" => self.host.is_some(),
            "address" => self.address.is_some(),
            "port" => self.port.is_some(),
            "cores" => self.cores.is_some(),
            "size" => self.size.is_some(),
            "rack" => self.rack.is_some(),
            "root" => self.root.is_some(),
            "osdcount" => self.osdcount.is_some(),
            "hostcount" => self.hostcount.is_some(),
            "rackcount" => self.rackcount.is_some(),
            "heartbeat" => self.heartbeat.is_some(),
            "duration" => self.duration.is_some(),
            "kill" => !self.kill.is_empty(),
            "churn" => self.churn.is_some(),
            "interval" => self.interval.is_some(),
            "prefix" => self.prefix.is_some(),
            "protocol" => self.protocol.is_some(),
            "poolname" => self.poolname.is_some(),
            "poolid" => self.poolid.is_some(),
            "pgsize" => self.pgsize.is_some(),
            "pgcount" => self.pgcount.is_some(),
            "failure_domain" => self.failure_domain.is_some(),
            "imagename" => self.imagename.is_some(),
            "imagesize" => self.imagesize.is_some(),
            "objectsize" => self.objectsize.is_some(),
            "allowshrink" => self.allowshrink,
            "detail" => self.detail,
            "out" => self.out.is_some(),
            "in" => self.input.is_some(),
            "last" => self.last.is_some(),
            "from" => self.from.is_some(),
            "type" => !self.types.is_empty(),
            "mute" => self.mute.is_some(),
            "unmute" => self.unmute.is_some(),
            "ttl" => self.ttl.is_some(),
            "sticky" => self.sticky,
            "url" => self.url.is_some(),
            "id" => self.id.is_some(),
            "secret" => !self.secret.is_empty(),
            "token" => self.token.is_some(),
            "force" => self.force,
            "purge" => self.purge,
            _ => return None,
        })
    }

    /// Checks that `op` is known and has its required flags.
    pub fn check(&self, op: &str) -> Result<&'static OpSpec, Failure> {
        let Some(spec) = spec(op) else {
            return Err(Failure::Failed(format!(
                "unknown op '{op}' (known: {})",
                op_names()
            )));
        };
        for flag in spec.required {
            if self.given(flag) != Some(true) {
                return Err(Failure::Usage(format!("{op} needs -{flag}")));
            }
        }
        Ok(spec)
    }
}

/// Clap's error without its "error: " prefix, tips and usage.
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Parses a cluster flag name (case-insensitive; the original's `noReblance` too).
pub fn parse_flag(name: &str) -> Result<crate::proto::monitor::ClusterFlag, Failure> {
    use crate::proto::monitor::ClusterFlag;
    Ok(match name.to_ascii_lowercase().as_str() {
        "noout" => ClusterFlag::Noout,
        "norebalance" | "noreblance" => ClusterFlag::Norebalance,
        "nodown" => ClusterFlag::Nodown,
        "noup" => ClusterFlag::Noup,
        "noin" => ClusterFlag::Noin,
        _ => {
            return Err(Failure::Usage(format!(
                "unknown flag '{name}' (known: {})",
                FLAG_NAMES.join(", ")
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, Failure> {
        let argv = std::iter::once("fbclient")
            .chain(args.iter().copied())
            .map(OsString::from);
        match Args::parse_argv(argv)? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Printed => panic!("printed help"),
        }
    }

    #[test]
    fn every_flag_of_the_op_table_exists() {
        use crate::fbclient::OPS;
        let a = Args::default();
        for o in OPS {
            for f in o.required.iter().chain(o.optional) {
                assert!(a.given(f).is_some(), "{}: unknown flag {f}", o.name);
            }
        }
        let mut names: Vec<&str> = OPS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPS.len(), "op names are unique");
    }

    #[test]
    fn both_flag_styles_parse_alike() {
        let go = parse(&[
            "-op=createpool",
            "-poolname=rbd",
            "-pgcount=64",
            "-failure_domain=osd",
            "-json",
        ])
        .unwrap();
        let long = parse(&[
            "--op",
            "createpool",
            "--poolname",
            "rbd",
            "--pgcount",
            "64",
            "--failure_domain",
            "osd",
            "--json",
        ])
        .unwrap();
        for a in [&go, &long] {
            assert_eq!(a.op.as_deref(), Some("createpool"));
            assert_eq!(a.poolname.as_deref(), Some("rbd"));
            assert_eq!(a.pgcount, Some(64));
            assert_eq!(a.failure_domain.as_deref(), Some("osd"));
            assert!(a.json);
        }
        let a = parse(&[
            "-op=getosdmap",
            "-detail=false",
            "-imagesize=10G",
            "-kill=3,7",
        ])
        .unwrap();
        assert!(!a.detail);
        assert_eq!(a.imagesize, Some(10 << 30));
        assert_eq!(a.kill, vec![3, 7]);
        let a = parse(&[
            "-op=x",
            "-endpoint=h:1",
            "-hostname=h1",
            "-failuredomain=rack",
        ])
        .unwrap();
        assert_eq!(a.mon.as_deref(), Some("h:1"));
        assert_eq!(a.host.as_deref(), Some("h1"));
        assert_eq!(a.failure_domain.as_deref(), Some("rack"));
    }

    #[test]
    fn errors_are_one_line() {
        let Err(Failure::Usage(m)) = parse(&["-op=leader", "-nosuchflag=1"]) else {
            panic!("expected a usage error");
        };
        assert!(m.starts_with("unexpected argument '--nosuchflag"), "{m}");
        assert!(!m.contains('\n'));
        let Err(Failure::Usage(m)) = parse(&["-op=createimage", "-imagesize=10X"]) else {
            panic!("expected a usage error");
        };
        assert!(m.contains("invalid size '10X'"), "{m}");
    }

    #[test]
    fn required_flags_are_named() {
        let a = parse(&["-op=createpool", "-pgcount=8"]).unwrap();
        match a.check("createpool") {
            Err(Failure::Usage(m)) => assert_eq!(m, "createpool needs -poolname"),
            _ => panic!("expected a usage error"),
        }
        match a.check("nosuchop") {
            Err(Failure::Failed(m)) => {
                assert!(m.starts_with("unknown op 'nosuchop' (known: leader, status"))
            }
            _ => panic!("expected an unknown op"),
        }
        assert!(
            parse(&["-op=createpool", "-poolname=a", "-pgcount=8"])
                .unwrap()
                .check("createpool")
                .is_ok()
        );
    }

    #[test]
    fn the_fleet_protocol_is_grpc_or_legacy() {
        let a = parse(&["-op=fakestartcluster", "-protocol=legacy"]).unwrap();
        assert_eq!(a.protocol, Some(FleetProtocol::Legacy));
        let a = parse(&["--op", "fakestartcluster", "--protocol", "grpc"]).unwrap();
        assert_eq!(a.protocol, Some(FleetProtocol::Grpc));
        assert_eq!(parse(&["-op=fakestartcluster"]).unwrap().protocol, None);
        let Err(Failure::Usage(m)) = parse(&["-op=fakestartcluster", "-protocol=udp"]) else {
            panic!("expected a usage error");
        };
        assert!(
            m.ends_with("unknown protocol 'udp' (known: grpc, legacy)"),
            "{m}"
        );
    }

    #[test]
    fn flag_names() {
        use crate::proto::monitor::ClusterFlag;
        assert_eq!(parse_flag("noout").unwrap(), ClusterFlag::Noout);
        assert_eq!(parse_flag("noReblance").unwrap(), ClusterFlag::Norebalance);
        assert!(parse_flag("nosuch").is_err());
    }
}
