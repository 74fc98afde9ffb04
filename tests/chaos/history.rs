//! The history of a chaos run: every operation's invoke and its ok or fail (with what it
//! returned), every observation of a watcher, and every injected fault, each stamped with the
//! time since the run started. The checker reads nothing else.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fastblock_monitor::proto::monitor::ClusterFlag;
use parking_lot::Mutex;

/// An operation a client invoked.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    ApplyId {
        uuid: String,
    },
    CreatePool {
        name: String,
        pg_count: u32,
    },
    DeletePool {
        name: String,
    },
    CreateImage {
        pool: String,
        name: String,
        size: u64,
    },
    ResizeImage {
        pool: String,
        name: String,
        size: u64,
    },
    RemoveImage {
        pool: String,
        name: String,
    },
    SetFlag {
        flag: ClusterFlag,
    },
    UnsetFlag {
        flag: ClusterFlag,
    },
    OsdOut {
        osd: u32,
    },
    OsdIn {
        osd: u32,
    },
    /// A fake OSD's heartbeat.
    Heartbeat {
        osd: u32,
        boot_instance: u64,
    },
    /// GetClusterStatus.
    ReadStatus,
    /// ListPools.
    ListPools,
}

impl Op {
    /// Operations that change the cluster's state when they succeed (leader-only writes).
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Heartbeat { .. } | Op::ReadStatus | Op::ListPools)
    }
}

/// Something granted by the monitor: the values the "granted twice" rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granted {
    /// An OSD id (ApplyId).
    Osd(u32),
    /// A pool id (CreatePool).
    Pool(u32),
    /// An image id (CreateImage).
    Image(u64),
}

/// What an acknowledged operation returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The monitor that answered (its gRPC address).
    pub answered_by: String,
    /// The answering leader's term.
    pub leader_epoch: Option<u64>,
    pub osdmap_epoch: Option<u64>,
    /// (pool id, pool epoch) pairs the answer carried.
    pub pool_epochs: Vec<(u32, u64)>,
    pub granted: Option<Granted>,
    /// An image's size after the operation.
    pub image_size: Option<u64>,
}

/// What a watcher saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The watch stream (re)opened on this monitor.
    Connected {
        monitor: String,
    },
    /// The watcher's osdmap moved to `epoch`.
    Osdmap {
        epoch: u64,
    },
    /// An OSD the watcher held as up (last at `last_up_epoch`) is down at `epoch`: the
    /// mark-down was committed in (last_up_epoch, epoch].
    OsdDown {
        osd: u32,
        last_up_epoch: u64,
        epoch: u64,
    },
    /// A pool's pgmap moved to `epoch`.
    Pool {
        pool: u32,
        epoch: u64,
    },
    PoolDeleted {
        pool: u32,
        epoch: u64,
    },
    /// The watch failed with an answer retrying cannot fix; the watcher starts over.
    WatchError {
        error: String,
    },
    /// A monitor's `fastblock_etcd_txn_failures_total{reason="fenced"}` went up to `count`.
    Fenced {
        monitor: String,
        count: f64,
    },
}

/// A fault the nemesis injected or healed, or a step of the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// kill -9 of a monitor (its etcd member dies with it); `host_down`: its address stops
    /// answering until the restart.
    Kill {
        monitor: String,
        was_leader: bool,
        host_down: bool,
    },
    Restart {
        monitor: String,
    },
    /// kill -9 of a monitor's etcd member (the monitor restarts it).
    KillEtcd {
        monitor: String,
        was_leader: bool,
    },
    Stop {
        monitor: String,
        was_leader: bool,
    },
    Continue {
        monitor: String,
    },
    /// The monitor and its member cut off from the other monitors.
    Partition {
        monitor: String,
        was_leader: bool,
    },
    Heal {
        monitor: String,
    },
    /// A fake OSD falls silent.
    CrashOsd {
        osd: u32,
    },
    ReviveOsd {
        osd: u32,
    },
    /// SIGTERM of the leader at the end (a graceful handover to a leader that loads from etcd).
    GracefulStop {
        monitor: String,
    },
    /// Free text: phases of the run.
    Note(String),
}

/// What happened at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Invoke { op: u64, what: Op },
    Ok { op: u64, reply: Reply },
    Fail { op: u64, error: String },
    Observed(Observation),
    Fault(Fault),
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Time since the run started.
    pub at: Duration,
    /// Who: `worker-1`, `prober`, `watcher-1`, `poller`, `osd.7`, `nemesis`, ...
    pub process: String,
    pub event: Event,
}

/// The history being recorded; shared by every task of a run.
pub struct History {
    start: Instant,
    next_op: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            next_op: AtomicU64::new(1),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// `t` as time since the run started.
    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    fn push(&self, at: Duration, process: &str, event: Event) {
        self.entries.lock().push(Entry {
            at,
            process: process.to_string(),
            event,
        });
    }

    /// Records an invoke now; returns the operation's number for its completion.
    pub fn invoke(&self, process: &str, what: Op) -> u64 {
        self.invoke_at(self.now(), process, what)
    }

    /// Records an invoke at `at`.
    pub fn invoke_at(&self, at: Duration, process: &str, what: Op) -> u64 {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.push(at, process, Event::Invoke { op, what });
        op
    }

    /// Records that operation `op` came back ok now.
    pub fn ok(&self, process: &str, op: u64, reply: Reply) {
        self.ok_at(self.now(), process, op, reply);
    }

    /// Records that operation `op` came back ok at `at`.
    pub fn ok_at(&self, at: Duration, process: &str, op: u64, reply: Reply) {
        self.push(at, process, Event::Ok { op, reply });
    }

    /// Records that operation `op` came back with `error` now.
    pub fn fail(&self, process: &str, op: u64, error: String) {
        self.fail_at(self.now(), process, op, error);
    }

    /// Records that operation `op` came back with `error` at `at`.
    pub fn fail_at(&self, at: Duration, process: &str, op: u64, error: String) {
        self.push(at, process, Event::Fail { op, error });
    }

    /// Records what `process` saw now.
    pub fn observe(&self, process: &str, o: Observation) {
        self.push(self.now(), process, Event::Observed(o));
    }

    /// Records a fault (or a step of the run) now, as the nemesis.
    pub fn fault(&self, f: Fault) {
        self.push(self.now(), "nemesis", Event::Fault(f));
    }

    /// True when an entry recorded after `since` satisfies `matches` (looks only at the recent
    /// end of the history, without copying it).
    pub fn any_since(&self, since: Duration, matches: impl Fn(&Entry) -> bool) -> bool {
        // Entries are appended in time order, give or take the wait for the lock.
        let margin = Duration::from_secs(1);
        self.entries
            .lock()
            .iter()
            .rev()
            .take_while(|e| e.at + margin >= since)
            .any(|e| e.at > since && matches(e))
    }

    /// Every entry so far, in time order (entries recorded at the same time keep their order).
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = self.entries.lock().clone();
        entries.sort_by_key(|e| e.at);
        entries
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s {:<10} ", self.at.as_secs_f64(), self.process)?;
        match &self.event {
            Event::Invoke { op, what } => write!(f, "invoke #{op} {what}"),
            Event::Ok { op, reply } => write!(f, "ok     #{op} {reply}"),
            Event::Fail { op, error } => write!(f, "fail   #{op} {}", one_line(error, 160)),
            Event::Observed(o) => write!(f, "saw    {o:?}"),
            Event::Fault(x) => write!(f, "FAULT  {x:?}"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::ApplyId { uuid } => write!(f, "ApplyId {uuid}"),
            Op::CreatePool { name, pg_count } => write!(f, "CreatePool {name} pgs={pg_count}"),
            Op::DeletePool { name } => write!(f, "DeletePool {name}"),
            Op::CreateImage { pool, name, size } => {
                write!(f, "CreateImage {pool}/{name} size={size}")
            }
            Op::ResizeImage { pool, name, size } => {
                write!(f, "ResizeImage {pool}/{name} size={size}")
            }
            Op::RemoveImage { pool, name } => write!(f, "RemoveImage {pool}/{name}"),
            Op::SetFlag { flag } => write!(f, "SetFlag {}", flag.as_str_name()),
            Op::UnsetFlag { flag } => write!(f, "UnsetFlag {}", flag.as_str_name()),
            Op::OsdOut { osd } => write!(f, "OsdOut {osd}"),
            Op::OsdIn { osd } => write!(f, "OsdIn {osd}"),
            Op::Heartbeat { osd, boot_instance } => {
                write!(f, "Heartbeat osd.{osd} instance={boot_instance}")
            }
            Op::ReadStatus => write!(f, "GetClusterStatus"),
            Op::ListPools => write!(f, "ListPools"),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(g) = self.granted {
            write!(f, "{g:?} ")?;
        }
        if let Some(s) = self.image_size {
            write!(f, "size={s} ")?;
        }
        if let Some(e) = self.osdmap_epoch {
            write!(f, "osdmap={e} ")?;
        }
        if !self.pool_epochs.is_empty() {
            let pools: Vec<String> = self
                .pool_epochs
                .iter()
                .map(|(p, e)| format!("{p}@{e}"))
                .collect();
            write!(f, "pools=[{}] ", pools.join(","))?;
        }
        if let Some(t) = self.leader_epoch {
            write!(f, "term={t} ")?;
        }
        write!(f, "by {}", self.answered_by)
    }
}

/// `s` on one line, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}
