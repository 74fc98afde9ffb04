//! fbclient against real monitors: every op in both flag styles (Go-style `-flag=value` and
//! `--flag value`), `--json` output parsed back, exit codes and one-line errors, the watch ops
//! printing changes as they happen and in order, and `fakestartcluster` whose fleet heals the
//! cluster after one of its OSDs is killed through stdin, and the webhook ops against a receiver
//! in the test.

mod common;

use std::time::{Duration, Instant};

use common::api::boot_osds;
use common::spawned::Spawned;
use common::{ClusterOptions, TestCluster, run_bin};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use serde_json::{Value, json};

const FBCLIENT: &str = env!("CARGO_BIN_EXE_fbclient");
const LONG: Duration = Duration::from_secs(60);

/// Runs fbclient against one monitor, in one flag style. Command lines are given as one
/// string split at spaces (no value here has one).
struct Fb {
    mon: String,
    go_style: bool,
}

impl Fb {
    fn go(mon: &str) -> Fb {
        Fb {
            mon: mon.to_string(),
            go_style: true,
        }
    }

    fn long(mon: &str) -> Fb {
        Fb {
            mon: mon.to_string(),
            go_style: false,
        }
    }

    fn run(&self, args: &str) -> (i32, String, String) {
        let mon = if self.go_style {
            format!("-mon={}", self.mon)
        } else {
            format!("--mon {}", self.mon)
        };
        let line = format!("{args} {mon}");
        run_bin(FBCLIENT, &line.split_whitespace().collect::<Vec<_>>(), &[])
    }

    /// Runs an op that must succeed silently on stderr; returns stdout.
    #[track_caller]
    fn ok(&self, args: &str) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "fbclient {args} failed: {err}");
        assert!(err.is_empty(), "fbclient {args} wrote to stderr: {err}");
        out
    }

    /// Runs an op with `--json` and parses its one document.
    #[track_caller]
    fn json(&self, args: &str) -> Value {
        let flag = if self.go_style { "-json" } else { "--json" };
        let out = self.ok(&format!("{args} {flag}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args}: {e}: {out}"))
    }

    /// Runs an op that must fail with `code` and exactly one stderr line; returns that line.
    #[track_caller]
    fn fails(&self, args: &str, code: i32) -> String {
        let (got, out, err) = self.run(args);
        assert_eq!(got, code, "fbclient {args}: stdout {out} stderr {err}");
        assert_eq!(err.lines().count(), 1, "one stderr line: {err}");
        assert!(err.starts_with("fbclient: "), "{err}");
        err.trim_end().to_string()
    }
    /// Runs a transcript, one step a line: `ARGS => PREFIX` must succeed with stdout starting
    /// with PREFIX; `ARGS =>N PREFIX` must exit with N and one stderr line starting with
    /// PREFIX. `\n` in PREFIX is a newline.
    #[track_caller]
    fn script(&self, text: &str) {
        for step in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (args, rest) = step.split_once("=>").expect("ARGS => PREFIX");
            let (code, prefix) = rest.split_once(' ').unwrap_or((rest, ""));
            let prefix = prefix.replace("\\n", "\n");
            match code {
                "" => starts(&self.ok(args), &prefix),
                n => starts(&self.fails(args, n.parse().expect("exit code")), &prefix),
            }
        }
    }
    /// Runs a `--json` transcript, one step a line: `ARGS => JSON`, where every field JSON
    /// names must be in the output with that value (see [`subset`]).
    #[track_caller]
    fn json_script(&self, text: &str) {
        for step in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (args, want) = step.split_once(" => ").expect("ARGS => JSON");
            let want = serde_json::from_str(want).unwrap_or_else(|e| panic!("{e}: {want}"));
            subset(&self.json(args), want);
        }
    }
}

/// Asserts `out` starts with `prefix`.
#[track_caller]
fn starts(out: &str, prefix: &str) {
    assert!(out.starts_with(prefix), "expected {prefix:?} first:\n{out}");
}

/// Asserts `out` contains every one of `wants`.
#[track_caller]
fn has(out: &str, wants: &[&str]) {
    for w in wants {
        assert!(out.contains(w), "expected {w:?} in:\n{out}");
    }
}

/// Asserts a line of `out` is made of these words (a table row).
#[track_caller]
fn has_row(out: &str, row: &str) {
    let want: Vec<&str> = row.split_whitespace().collect();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(want.iter().copied())),
        "expected a row {row:?} in:\n{out}"
    );
}

/// Asserts every field `want` names is in `v` with that value (arrays element by element).
#[track_caller]
fn subset(v: &Value, want: Value) {
    fn check(v: &Value, w: &Value, path: &str) -> Result<(), String> {
        match (v, w) {
            (Value::Object(vo), Value::Object(wo)) => {
                for (k, wv) in wo {
                    check(
                        vo.get(k).unwrap_or(&Value::Null),
                        wv,
                        &format!("{path}/{k}"),
                    )?;
                }
            }
            (Value::Array(va), Value::Array(wa)) if !wa.is_empty() => {
                for (i, wv) in wa.iter().enumerate() {
                    check(
                        va.get(i).unwrap_or(&Value::Null),
                        wv,
                        &format!("{path}/{i}"),
                    )?;
                }
            }
            _ if v == w => {}
            _ => return Err(format!("{path}: {v} is not {w}")),
        }
        Ok(())
    }
    if let Err(e) = check(v, &want, "") {
        panic!("{e} in {v}");
    }
}

/// The length of a JSON array (0 for anything else).
fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn start_monitor(extra_config: &str) -> TestCluster {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: extra_config.to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    c
}

fn uuid(n: u32) -> String {
    common::api::uuid(n)
}

#[test]
fn go_style_flags_run_every_one_shot_op() {
    let c = start_monitor("osd_down_after = \"600s\"");
    let fb = Fb::go(&c.monitors[0].grpc);
    let (u1, u2, u3, u9) = (uuid(1), uuid(2), uuid(3), uuid(9));

    // OSDs: the id of a uuid is stable; no uuid means a random one and the next id. Booting
    // without -cores takes the cluster's count.
    fb.script(&format!(
        r"
        -op=fakeapplyid -uuid={u1} => 1\nuuid {u1}, osdmap epoch 1
        -op=fakeapplyid -uuid={u1} => 1\n
        -op=fakeapplyid -uuid={u2} => 2\n
        -op=fakeapplyid -uuid={u3} => 3\n
        -op=fakeapplyid => 4\n
        -op=fakebootosd -osdid=1 -uuid={u1} -host=h1 -cores=2 -port=6800 => osd.1 booted: host h1, address 127.0.0.1, 2 shards on ports 6800-6801, 1 TiB
        -op=fakebootosd -osdid=2 -uuid={u2} -hostname=h2 -rack=r1 => osd.2 booted: host h2
        -op=fakebootosd -osdid=3 -uuid={u3} -host=h3 -rack=r1 -size=2T => osd.3 booted: host h3, address 127.0.0.1, 2 shards on ports 20000-20001, 2 TiB
        -op=fakebootosd -osdid=1 -uuid={u9} =>1 fbclient: OSD_UUID_MISMATCH:
        -op=showconfig -osdid=1 => # fake osd 1, booted by fbclient\nhost = h1\n
        -op=getosdmap -detail => osdmap epoch 7: 4 osds, 3 up, 3 in; 2 cores per osd; flags: none\nID
        -op=osdtree => ID    WEIGHT  TYPE NAME
        "
    ));
    let out = fb.ok("-op=getosdmap -detail");
    has_row(&out, "1 up in 1 h1 - default 127.0.0.1 1 TiB 2 6800-6801");
    has_row(&out, "4 new out 1 - - default - 0 B 0 -");
    has_row(&out, "OSD SHARD CORE PORT RAW_PORT");
    has_row(&out, "1 1 1 6801 6803");
    let out = fb.ok("-op=osdtree");
    for row in [
        "- 4.000 root default",
        "- 2.000 rack r1",
        "- 1.000 host h2",
        "2 1.000 osd osd.2 up in",
        "1 1.000 osd osd.1 up in",
        "- 1.000 host (none)",
        "4 1.000 osd osd.4 new out",
    ] {
        has_row(&out, row);
    }

    // Pools, and monitor errors: one stderr line with the reason.
    fb.script(
        r"
        -op=createpool -poolname=rbd -pgcount=16 => pool 'rbd' created: id 1, 16 pgs of size 3, failure domain host; pool epoch 1
        -op=createpool -poolname=rbd -pgcount=16 =>1 fbclient: POOL_NAME_EXISTS:
        -op=createpool -poolname=x -pgcount=1 -pgsize=1 -failure_domain=osd => pool 'x' created: id 2, 1 pgs of size 1, failure domain osd
        -op=listpools => ID  NAME  SIZE  PGS  FAILURE_DOMAIN  ROOT     EPOCH\n1   rbd   3     16   host            default  1\n2   x     1     1    osd             default  1\n
        -op=getpgmap -poolid=1 => pool 1 'rbd': epoch 1, 16 pgs of size 3, failure domain host, root default\nPGID  STATE     OSDS
        -op=getpgmap -poolid=7 =>1 fbclient: POOL_NOT_FOUND: no pool with id 7
        -op=getpgosds -poolid=1 => pool 1: 16 pgs\nPGID  CORE  OSDS\n1.0 
        -op=getpgosds -poolid=7 =>1 fbclient: POOL_NOT_FOUND:
        -op=getclustermap => osdmap epoch 7: 4 osds
        ",
    );
    let out = fb.ok("-op=getpgmap");
    assert_eq!(out.matches(" creating ").count(), 17, "{out}");
    has(
        &fb.ok("-op=getclustermap"),
        &["\npool 1 'rbd': epoch ", "\npool 2 'x': epoch "],
    );

    // Images, sizes with suffixes; flags, status and health.
    fb.script(
        r"
        -op=createimage -poolname=rbd -imagename=vm1 -imagesize=10G => created image 'vm1' in pool 'rbd': id 1, size 10 GiB (10737418240 bytes), object size 4 MiB
        -op=createimage -poolname=rbd -imagename=vm1 -imagesize=1M =>1 fbclient: IMAGE_EXISTS:
        -op=resizeimage -poolname=rbd -imagename=vm1 -imagesize=5G =>1 fbclient: IMAGE_SHRINK_NOT_ALLOWED:
        -op=resizeimage -poolname=rbd -imagename=vm1 -imagesize=5G -allowshrink => resized image 'vm1' in pool 'rbd': id 1, size 5 GiB (5368709120 bytes)
        -op=getimage -poolname=rbd -imagename=vm1 => image 'vm1' in pool 'rbd': id 1, size 5 GiB
        -op=removeimage -poolname=rbd -imagename=vm1 => removed image 'vm1' in pool 'rbd' (id 1)
        -op=getimage -poolname=rbd -imagename=vm1 =>1 fbclient: IMAGE_NOT_FOUND:
        -set=noout => flag noout set; flags now: noout (osdmap epoch
        -op=health => HEALTH_WARN\n[WRN] FLAGS_SET:
        ",
    );
    has(
        &fb.ok("-op=status"),
        &[
            "  cluster:\n    health: HEALTH_WARN\n            FLAGS_SET: ",
            "\n    mon: 1 monitors, leader m1 (",
            "\n    osd: 4 osds: 3 up, 3 in; osdmap epoch ",
            "\n    flags: noout\n",
            "\n    pools:  2 pools, 17 pgs\n    images: 0\n    pgs:    17 creating\n",
            "\n  io:\n    client:   ",
            "\n    recovery: 0 pgs/s",
        ],
    );

    // Out, in, a planned stop; `in` of a down OSD is refused; pools deleted.
    fb.script(&format!(
        r"
        -unset=noout => flag noout unset; flags now: none
        -op=outosd -osdid=3 => osd.3 marked out; osdmap epoch
        -op=inosd -osdid=3 => osd.3 marked in; osdmap epoch
        -op=fakestoposd -osdid=3 => osd.3 stopped: marked down; osdmap epoch
        -op=fakestoposd -osdid=4 =>1 fbclient: OSD_NOT_BOOTED:
        -op=outosd -osdid=3 => osd.3 marked out
        -op=inosd -osdid=3 =>1 fbclient: OSD_DOWN:
        -op=showconfig -osdid=99 =>1 fbclient: OSD_NOT_FOUND:
        -op=deletepool -poolname=rbd => pool 'rbd' deleted: id 1, final epoch
        -op=deletepool -poolname=rbd =>1 fbclient: UNKNOWN_POOL_NAME:
        -op=deletepool -poolname=x => pool 'x' deleted: id 2
        -op=listpools => no pools\n
        -op=leader => leader: m1 ({}) epoch
        ",
        c.monitors[0].grpc
    ));
    has_row(&fb.ok("-op=osdtree"), "3 1.000 osd osd.3 down out");
}

#[test]
fn long_flags_and_json_output() {
    let c = start_monitor("osd_down_after = \"600s\"");
    let fb = Fb::long(&c.monitors[0].grpc);

    fb.json_script(
        r##"
        --op fakeapplyid --uuid 00000000-0000-4000-8000-000000000001 => {"osd_id": 1, "uuid": "00000000-0000-4000-8000-000000000001"}
        --op fakeapplyid --uuid 00000000-0000-4000-8000-000000000002 => {"osd_id": 2}
        --op fakeapplyid --uuid 00000000-0000-4000-8000-000000000003 => {"osd_id": 3}
        --op fakebootosd --osdid 1 --uuid 00000000-0000-4000-8000-000000000001 --host h1 => {"osd_id": 1, "cores": 4, "first_port": 20000, "held_down": false}
        --op fakebootosd --osdid 2 --uuid 00000000-0000-4000-8000-000000000002 --host h2 => {"host": "h2"}
        --op fakebootosd --osdid 3 --uuid 00000000-0000-4000-8000-000000000003 --host h3 --address 10.0.0.3 => {"address": "10.0.0.3"}
        --op getosdmap => {"flags": [], "core_num": 4, "osds": [{"id": 1, "host": "h1", "up": true, "in": true, "shards": [{"shard": 0, "core": 0, "port": 20000, "raw_port": 20004}]}]}
        --op osdtree => {"nodes": [{"type": "root", "name": "default", "weight": 3.0, "children": [{"type": "host", "name": "h1", "children": [{"type": "osd", "id": 1, "up": true}]}]}]}
        --op showconfig --osdid 2 => {"osd_id": 2, "config": "# fake osd 2, booted by fbclient\nhost = h2\naddress = 127.0.0.1\n"}
        --op createpool --poolname rbd --pgcount 8 --pgsize 3 --failure_domain host => {"pool_id": 1, "name": "rbd", "pg_count": 8, "pg_size": 3}
        --op listpools => {"pools": [{"id": 1, "name": "rbd", "failure_domain": "host", "pg_count": 8, "pg_size": 3, "root": "default"}]}
        --op getpgmap => {"pools": [{"pool_id": 1, "status": "full", "pool": {"name": "rbd"}, "pgs": [{"pgid": "1.0", "state": 1, "state_name": "creating", "new_members": []}]}]}
        --op getpgosds => {"pools": [{"pool_id": 1, "pgs": [{"pgid": "1.0", "id": 0}]}]}
        --op getclustermap => {"osdmap": {"osds": [{"id": 1}]}, "pools": [{"pool": {"name": "rbd"}}]}
        --op createimage --poolname rbd --imagename img --imagesize 512M --objectsize 8M => {"done": "created", "name": "img", "size": 536870912, "object_size": 8388608}
        --op resizeimage --poolname rbd --imagename img --imagesize 1073741824 => {"done": "resized", "size": 1073741824}
        --op getimage --poolname rbd --imagename img => {"name": "img", "pool_name": "rbd", "size": 1073741824}
        --op removeimage --poolname rbd --imagename img => {"done": "removed", "name": "img"}
        --set norebalance => {"done": ["flag norebalance set"], "flags": ["norebalance"]}
        --op status => {"health": "HEALTH_WARN", "osds": {"total": 3, "up": 3, "in": 3}, "pools": 1, "pgs": 8, "flags": ["norebalance"]}
        --op status => {"pg_states": [{"state": 1, "name": "creating", "count": 8}], "monitors": [{"name": "m1", "role": "leader"}]}
        --op health => {"health": "HEALTH_WARN", "checks": [{"code": "FLAGS_SET", "severity": "HEALTH_WARN"}]}
        --unset norebalance => {"flags": []}
        --op outosd --osdid 2 => {"osd_id": 2, "marked": "out"}
        --op inosd --osdid 2 => {"osd_id": 2, "marked": "in"}
        --op fakestoposd --osdid 2 => {"osd_id": 2}
        --op health => {"health": "HEALTH_WARN", "checks": [{"code": "OSD_DOWN"}]}
        --op deletepool --poolname rbd => {"pool_id": 1, "name": "rbd"}
        --op leader => {"leader": {"name": "m1"}, "monitors": [{"name": "m1", "role": "leader"}]}
        "##,
    );
    let v = fb.json("--op getpgmap");
    assert_eq!(v["pools"], json!([]), "a deleted pool is not listed");
    let v = fb.json("--op getosdmap");
    assert_eq!(len(&v["osds"]), 3, "{v}");
    assert_eq!(len(&v["osds"][0]["shards"]), 4, "{v}");

    // The monitor from the environment; a missing flag named in this style too.
    let env = [("FASTBLOCK_MON", c.monitors[0].grpc.as_str())];
    let (code, out, err) = run_bin(FBCLIENT, &["--op", "listpools", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).ok(),
        Some(json!({"pools": []}))
    );
    let line = fb.fails("--op createimage --poolname rbd --imagesize 1G", 2);
    assert_eq!(line, "fbclient: createimage needs -imagename");
}

#[test]
fn usage_errors_and_an_unreachable_monitor_are_one_line() {
    // Nothing listens on a claimed loopback address.
    let claim = common::claim_loopback_ip();
    let fb = Fb::go(&format!("{}:1", claim.ip));
    fb.script(
        r"
        -op=nosuchop =>1 fbclient: unknown op 'nosuchop' (known: leader, status, health, osdtree,
        -op=createpool -pgcount=8 =>2 fbclient: createpool needs -poolname
        --op outosd =>2 fbclient: outosd needs -osdid
        -op=fakestartcluster -osdcount=3 =>2 fbclient: fakestartcluster needs -hostcount
        -op=fakestartcluster -osdcount=3 -hostcount=1 -protocol=udp =>2 fbclient: invalid value 'udp' for '--protocol <PROTOCOL>': unknown protocol 'udp' (known: grpc, legacy)
        -op=fakestartcluster -osdcount=3 -hostcount=1 -rackcount=2 -protocol=legacy =>2 fbclient: -rackcount needs -protocol=grpc: the legacy Boot carries no rack
        -set=noreadahead =>2 fbclient: unknown flag 'noreadahead' (known: noout, norebalance, nodown, noup, noin)
        -op=leader -set=noout =>2 fbclient: give either -op or -set/-unset, not both
        =>2 fbclient: no operation: give -op=OP or -set/-unset=FLAG (see --help)
        -op=createimage -poolname=p -imagename=i -imagesize=10X =>2 fbclient: invalid value '10X' for '--imagesize <IMAGESIZE>': invalid size '10X'
        -op=leader -nosuchflag=1 =>2 fbclient: unexpected argument '--nosuchflag' found
        -op=status -timeout=1s =>1 fbclient: no leader reachable within 1s
        -op=watchosdmap -timeout=1s =>1 fbclient: no leader reachable within 1s
        ",
    );

    // --help lists every op with its flags.
    let (code, out, _) = run_bin(FBCLIENT, &["--help"], &[]);
    assert_eq!(code, 0);
    for op in "fakeapplyid fakebootosd fakestartcluster fakestoposd createpool deletepool \
               listpools getosdmap getpgmap getclustermap watchosdmap watchpgmap watchclustermap \
               createimage removeimage getimage resizeimage outosd inosd status showconfig \
               getpgosds leader osdtree health"
        .split_whitespace()
    {
        let listed = out.lines().any(|l| l.starts_with(&format!("  {op} ")));
        assert!(listed, "--help lacks {op}");
    }
    let flags = "createpool       create a pool (pgsize defaults to 3, failure_domain to host) \
                 and place its PGs\n                   \
                 -poolname -pgcount [-pgsize -failure_domain -root]\n";
    has(&out, &[flags, "\n  -set=FLAG ", "\n  -unset=FLAG "]);
}

/// The change descriptions of a `--json` watch's output, one per change, in order (JSON
/// strings keep their quotes).
fn json_changes(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let (event, name) = (v["event"].as_str().unwrap_or_default(), &v["name"]);
        let changes = v["changes"].as_array().into_iter().flatten();
        match event {
            "osdmap" => out.extend(changes.map(Value::to_string)),
            "pgmap" if v["new_pool"] == true => out.push(format!("pool {name} created")),
            "pool_deleted" => out.push(format!("pool {name} deleted")),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ops_print_each_change_in_order() {
    let c = start_monitor("osd_down_after = \"600s\"");
    let mon = c.monitors[0].grpc.clone();
    boot_osds(&c.client(0), 1, 3, 3).await;
    let fb = Fb::go(&mon);
    let mut osdmap = Spawned::start(
        FBCLIENT,
        &format!("-op=watchosdmap -duration=15s -mon={mon}"),
    );
    let mut pgmap = Spawned::start(FBCLIENT, &format!("-op=watchpgmap -mon={mon}"));
    let mut all = Spawned::start(
        FBCLIENT,
        &format!("--op watchclustermap --duration 15s --json --mon {mon}"),
    );
    osdmap.wait_line("the full osdmap", |l| {
        l.contains("full map, 3 osds, 3 up, 3 in")
    });
    pgmap.wait_line("the watch start", |l| l.contains("watching the pgmaps on"));
    all.wait_line("the full osdmap", |l| l.contains("\"event\":\"osdmap\""));

    fb.ok("-set=noout");
    fb.ok("-set=norebalance");
    fb.ok("-unset=noout");
    fb.ok("-op=createpool -poolname=w -pgcount=4");
    fb.ok(&format!("-op=fakeapplyid -uuid={}", uuid(4)));
    fb.ok("-op=deletepool -poolname=w");

    let (code, lines) = osdmap.wait_exit();
    assert_eq!(code, 0, "-duration ends a watch successfully");
    let text = lines.join("\n");
    starts(
        &text,
        &format!("{} watching the osdmap on {mon}", &text[..8]),
    );
    assert!(
        lines.iter().all(|l| l.as_bytes().get(2) == Some(&b':')),
        "time first: {text}"
    );
    let changes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(": ").map(|(_, c)| c))
        .filter(|c| !c.starts_with("full map"))
        .collect();
    let want = [
        "flag noout set",
        "flag norebalance set",
        "flag noout unset",
        "osd.4 new (id applied, not booted)",
    ];
    assert_eq!(changes, want, "{text}");

    // Without -duration a watch runs until Ctrl-C.
    pgmap.signal(nix::sys::signal::Signal::SIGINT);
    let (code, lines) = pgmap.wait_exit();
    assert_eq!(code, 0);
    let text = lines.join("\n");
    let created = lines.iter().position(|l| {
        l.contains("pgmap pool 1 'w' e") && l.ends_with("full map, 4 pgs of size 3: 4 creating")
    });
    let deleted = lines
        .iter()
        .position(|l| l.contains("pool 1 'w' deleted (final epoch "));
    assert!(created.is_some() && created < deleted, "{text}");
    assert!(
        !text.contains("osd."),
        "a pgmap watch sees no OSD changes: {text}"
    );

    let (code, lines) = all.wait_exit();
    assert_eq!(code, 0);
    let want = [
        r#""flag noout set""#,
        r#""flag norebalance set""#,
        r#""flag noout unset""#,
        r#"pool "w" created"#,
        r#""osd.4 new (id applied, not booted)""#,
        r#"pool "w" deleted"#,
    ];
    assert_eq!(json_changes(&lines), want, "{}", lines.join("\n"));
}

/// Polls until `cond` holds on the status and the pgmap.
async fn until(
    m: &MonitorClient,
    what: &str,
    cond: impl Fn(&api::GetClusterStatusResponse, &api::GetPgMapResponse) -> bool,
) {
    let deadline = Instant::now() + LONG;
    loop {
        let s = m.get_cluster_status(api::GetClusterStatusRequest {}).await;
        let p = m.get_pg_map(api::GetPgMapRequest::default()).await;
        let (s, p) = (s.expect("status"), p.expect("pgmap"));
        if cond(&s, &p) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            s.pg_states
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_active(s: &api::GetClusterStatusResponse, pgs: u64) -> bool {
    let active = api::PgStateBit::Active as u32;
    s.pg_states.len() == 1 && s.pg_states[0].state == active && s.pg_states[0].count == pgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fakestartcluster_heals_after_a_fake_osd_is_killed() {
    let c = start_monitor("osd_down_after = \"2s\"\nosd_out_after = \"3s\"");
    let mon = c.monitors[0].grpc.clone();
    let m = c.client(0);
    let mut fleet = Spawned::start(
        FBCLIENT,
        &format!(
            "-op=fakestartcluster -osdcount=30 -hostcount=10 -heartbeat=500ms -interval=1s -mon={mon}"
        ),
    );
    let line = fleet.wait_line("the fleet started", |l| l.contains("started 30 fake OSDs"));
    has(&line, &["on 10 hosts"]);
    fleet.wait_line("a summary", |l| {
        l.contains("osds 30: 30 up, 30 in | pgs 0:")
    });

    let fb = Fb::long(&mon);
    fb.ok("--op createpool --poolname rbd --pgcount 256");
    until(&m, "every PG active", |s, _| all_active(s, 256)).await;
    fleet.wait_line("an all-active summary", |l| {
        l.contains("pgs 256: 256 active, 0 undersize")
    });

    // Kill an OSD through stdin: down, out, its PGs remapped, then all active without it.
    let pgmap = m.get_pg_map(api::GetPgMapRequest::default()).await;
    let victim = pgmap.expect("pgmap").pools[0].pgs[0].members[0];
    fleet.send(&format!("kill {victim}"));
    fleet.wait_line("the kill", |l| l.ends_with(&format!("killed osd.{victim}")));
    let holds = |p: &api::GetPgMapResponse| {
        let pgs = &p.pools[0].pgs;
        pgs.iter()
            .any(|g| g.members.contains(&victim) || g.new_members.contains(&victim))
    };
    until(&m, "the victim down and out", |s, _| {
        s.osds_up == 29 && s.osds_in == 29
    })
    .await;
    until(&m, "every PG active without it", |s, p| {
        all_active(s, 256) && !holds(p)
    })
    .await;
    fleet.send("status");
    fleet.wait_line("a healed summary", |l| {
        l.contains("osds 30: 29 up, 29 in | pgs 256: 256 active") && l.ends_with("29/30 alive")
    });
    has_row(
        &fb.ok("--op osdtree"),
        &format!("{victim} 1.000 osd osd.{victim} down out"),
    );

    fleet.send("quit");
    let (code, lines) = fleet.wait_exit();
    assert_eq!(code, 0);
    assert!(
        lines.last().is_some_and(|l| l.contains("stopped: ")),
        "{}",
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ops_list_and_follow_the_log() {
    let c = start_monitor("osd_down_after = \"600s\"");
    let mon = c.monitors[0].grpc.clone();
    let fb = Fb::go(&mon);
    // Following from now: started before the changes, stopped by -duration.
    let follow = Spawned::start(
        FBCLIENT,
        &format!("-op=watchevents -type=flag. -duration=20s -json -mon={mon}"),
    );
    let mut text = Spawned::start(FBCLIENT, &format!("-op=watchevents -mon={mon}"));
    // The text watcher says on stderr where it watches; give both a moment to connect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fb.ok("-set=noout");
    fb.ok(&format!("-op=fakeapplyid -uuid={}", uuid(1)));
    fb.ok("-unset=noout");

    // History: the three changes, oldest first (the health task's FLAGS_SET events may come
    // in between: the filter leaves them out).
    let out = fb.ok("-op=events -last=3 -type=flag.,osd.");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("#2 ") && lines[0].contains(" flag.set flag.noout osdmap e"),
        "{out}"
    );
    assert!(lines[1].contains(" osd.applied osd.1 osdmap e"), "{out}");
    assert!(lines[2].contains(" flag.unset flag.noout "), "{out}");
    assert!(lines[3].starts_with("(log holds events 1..="), "{out}");
    let v = fb.json("-op=events -type=osd.,monitor.");
    assert!(v["latest_id"].as_u64().unwrap() >= 4, "{v}");
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["monitor.leader_elected", "osd.applied"]);
    assert_eq!(v["events"][1]["data"]["uuid"], uuid(1).as_str());
    let applied = v["events"][1]["id"].as_u64().unwrap();
    let v = fb.json(&format!(
        "-op=events -from={applied} -last=10 -type=flag.,osd."
    ));
    assert_eq!(v["events"][0]["id"], applied);
    assert_eq!(len(&v["events"]), 2);
    // Bad input: one line, the reason named.
    let err = fb.fails("-op=events -type=OSD.", 1);
    assert!(err.contains("event type prefix"), "{err}");

    let (code, lines) = follow.wait_exit();
    assert_eq!(code, 0, "-duration ends the watch successfully");
    let got: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["type"].as_str().unwrap().to_string(),
                v["data"]["flag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("flag.set".to_string(), "noout".to_string()),
            ("flag.unset".to_string(), "noout".to_string())
        ]
    );
    // Resuming from an id prints from that id on.
    let mut resumed = Spawned::start(
        FBCLIENT,
        &format!("-op=watchevents -from=3 -duration=3s -mon={mon}"),
    );
    resumed.wait_line("event 3", |l| {
        l.starts_with("#3 ") && l.contains(" osd.applied osd.1 ")
    });
    resumed.wait_line("event 4", |l| {
        l.starts_with("#4 ") && l.contains(" flag.unset ")
    });
    text.wait_line("event 4 as it came", |l| l.starts_with("#4 "));
    text.signal(nix::sys::signal::Signal::SIGINT);
    let (code, _) = text.wait_exit();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_op_mutes_and_unmutes_a_check() {
    let c = start_monitor("");
    let mon = c.monitors[0].grpc.clone();
    let fb = Fb::go(&mon);
    fb.ok("-set=noout");
    // The health task records the raise within a second or so.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = fb.json("-op=health");
        if v["checks"][0]["code"] == "FLAGS_SET" && v["checks"][0]["since_ms"].as_u64() > Some(0) {
            assert_eq!(v["health"], "HEALTH_WARN", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "FLAGS_SET not raised: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = fb.ok("-op=health -mute=FLAGS_SET -ttl=1h");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "muted FLAGS_SET for 1h", "{out}");
    assert_eq!(lines[1], "HEALTH_OK", "a muted check does not count: {out}");
    assert!(
        lines[2].starts_with("[WRN] FLAGS_SET: ") && lines[2].ends_with(" (muted)"),
        "{out}"
    );
    assert_eq!(lines[3], "mutes:", "{out}");
    assert!(lines[4].starts_with("    FLAGS_SET until 20"), "{out}");
    let v = fb.json("-op=health");
    assert_eq!(v["checks"][0]["muted"], true);
    assert_eq!(v["mutes"][0]["code"], "FLAGS_SET");
    assert_eq!(v["mutes"][0]["sticky"], false);
    let status = fb.ok("-op=status");
    assert!(
        status.contains("FLAGS_SET: noout flag(s) set (muted)"),
        "{status}"
    );

    // Bad input: one line each, nothing changed.
    let err = fb.fails("-op=health -mute=NO_SUCH_CHECK", 1);
    assert!(
        err.contains("no health check is named NO_SUCH_CHECK"),
        "{err}"
    );
    let err = fb.fails("-op=health -mute=OSD_DOWN", 1);
    assert!(err.contains("is not raised"), "{err}");
    let err = fb.fails("-op=health -ttl=1h", 2);
    assert!(err.contains("-ttl and -sticky go with -mute"), "{err}");
    let err = fb.fails("-op=health -unmute=OSD_DOWN", 1);
    assert!(err.contains("OSD_DOWN is not muted"), "{err}");
    assert_eq!(fb.json("-op=health")["mutes"].as_array().unwrap().len(), 1);

    let out = fb.ok("-op=health -unmute=FLAGS_SET");
    assert!(out.starts_with("unmuted FLAGS_SET\nHEALTH_WARN\n"), "{out}");
    let v = fb.json("-op=health -mute=OSD_DOWN -sticky");
    assert_eq!(v["done"][0], "muted OSD_DOWN until unmuted, sticky");
    assert_eq!(v["mutes"][0]["code"], "OSD_DOWN");
    assert_eq!(v["mutes"][0]["sticky"], true);
    assert_eq!(v["mutes"][0]["until_ms"], Value::Null);
}

/// A receiver that answers 200 to every POST and counts them.
async fn counting_receiver() -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, String) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let counted = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (count, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_ops_register_test_replay_and_remove() {
    use std::sync::atomic::Ordering;
    let c = start_monitor("webhook_allow_http = true");
    let mon = c.monitors[0].grpc.clone();
    let fb = Fb::go(&mon);
    let (count, url) = counting_receiver().await;
    fb.script("-op=webhook-list => no webhooks\n");
    let out = fb.ok(&format!("-op=webhook-add -url={url} -type=flag."));
    starts(
        &out,
        &format!("webhook 1 added: {url}\nsigning secret (shown only now): whsec_"),
    );
    let v = fb.json("-op=webhook-list");
    subset(
        &v,
        json!({"webhooks": [{"id": 1, "url": url, "types": ["flag."], "secrets": 1,
                             "bearer_token": false, "enabled": true, "dead_letters": 0}]}),
    );
    assert!(!v.to_string().contains("whsec_"), "no secret listed: {v}");
    // An event reaches the receiver; a test event too.
    fb.ok("-set=noout");
    let deadline = Instant::now() + LONG;
    while count.load(Ordering::SeqCst) < 1 {
        assert!(
            Instant::now() < deadline,
            "the flag event was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fb.script(
        "-op=webhook-test -id=1 => webhook 1: test event delivered (HTTP 200)\n\
         -op=webhook-deadletters -id=1 => no dead letters\n\
         -op=webhook-replay -id=1 -from=1 => webhook 1: delivering again from event 1\n",
    );
    // Bad input: one line each, exit 1 for refusals, 2 for usage; nothing changed.
    let err = fb.fails(&format!("-op=webhook-add -url={url}"), 1);
    assert!(err.contains("registered already as webhook 1"), "{err}");
    let err = fb.fails("-op=webhook-add -url=ftp://example.com/x", 1);
    assert!(
        err.contains("the url's scheme is ftp; webhooks are sent over https"),
        "{err}"
    );
    let err = fb.fails("-op=webhook-remove -id=9", 1);
    assert!(err.contains("no webhook 9"), "{err}");
    fb.fails("-op=webhook-add", 2);
    fb.fails("-op=webhook-replay -id=1", 2);
    assert_eq!(len(&fb.json("-op=webhook-list")["webhooks"]), 1);
    fb.script(&format!(
        "-op=webhook-remove -id=1 => webhook 1 removed: {url}\n-op=webhook-list => no webhooks\n"
    ));
}
