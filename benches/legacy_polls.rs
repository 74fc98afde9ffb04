//! Legacy polls: a fleet of C++-style OSDs polling GetClusterMap every 3 s over the framed
//! protocol with `currentversion = -1` (every poll answers the whole osdmap), against the same
//! fleet polling over gRPC with the current epochs (every poll answers UNCHANGED), and against
//! the same fleet fetching the full osdmap over gRPC (epoch 0, the same OSD count), at 1,000 and
//! at 10,000 OSDs, all in one run on one standalone monitor. At 10,000 OSDs, 1,000 of them also
//! poll alone, legacy and gRPC full fetch: the same map at a rate 2 cores can serve on gRPC.
//!
//! Every OSD of the fleet is booted in the monitor (gRPC ApplyId + Boot, address = the address
//! the legacy connections come from, so each legacy connection speaks for its OSD and its poll
//! is that OSD's heartbeat, as a C++ OSD's is). One socket per polling OSD in every fleet; the
//! polls are spread evenly over the 3-second period; an OSD waits for its reply before its next
//! poll and polls at once when late; a failed poll is counted and the OSD polls again at its
//! next slot (a legacy one on a new connection, as the C++ client reconnects). The clients are
//! lean: the legacy one sends a pre-encoded frame and reads the reply by its length, the gRPC
//! one sends pre-encoded bytes and counts the reply message's bytes (tonic still parses HTTP/2
//! and gathers the message); neither decodes the replies after one checked reference reply per
//! fleet (every reply must have its size).
//!
//! Reported per fleet: polls answered per second against the schedule, how late the polls were
//! sent, monitor CPU per poll (`/proc/<pid>/stat` over the measured window / the polls answered
//! in it), the CPU of the benchmark process itself (it shares the 2 cores), of etcd and of the
//! rest of the machine, the monitor's largest resident set, p50/p99 latency (request sent →
//! last reply byte read), bytes per reply, failed polls and terms the monitor lost.
//!
//! `make bench` runs it (about 5 minutes). FB_BENCH_SECONDS sets each fleet's measured window
//! (default 20; after one 3-second period of warm-up).

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use common::api::boot_request;
use common::legacy::framed::{LegacyClient, frame};
use common::legacy::messages::{Request, Response};
use fastblock_monitor::proto::monitor as api;
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

/// Fleet sizes, measured in this order on the same monitor (OSDs are added between them).
const SIZES: [u32; 2] = [1_000, 10_000];
/// Every OSD polls once per period (the C++ client's 3 s).
const PERIOD: Duration = Duration::from_secs(3);
/// Shards (cores) per OSD.
const SHARDS: u32 = 4;
const OSDS_PER_HOST: u32 = 10;
/// The pool: PGs, size 3, host failure domain.
const PGS: u32 = 4_096;
const BOOT_CLIENTS: usize = 64;
/// Connections opened at once while setting a fleet up.
const CONNECTING: usize = 128;
/// A poll not answered within this is an error (and ends that OSD's polling).
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between fleets, for the monitor to finish what the last one left.
const SETTLE: Duration = Duration::from_secs(2);
/// Read size of the legacy client (one buffer per worker thread, not per socket).
const READ_CHUNK: usize = 256 << 10;
const CLUSTER_MAP_PATH: &str = "/fastblock.monitor.v1.Monitor/GetClusterMap";

type Client = api::monitor_client::MonitorClient<Channel>;

fn main() {
    let seconds: u64 = std::env::var("FB_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // 10,000 sockets of one fleet, plus the monitor connections of the setup.
    let (soft, _) = fastblock_monitor::listener::raise_descriptor_limit().expect("RLIMIT_NOFILE");
    let need = u64::from(SIZES[SIZES.len() - 1]) + 512;
    assert!(
        soft >= need,
        "the open-file limit is {soft}; this benchmark needs {need} (raise the hard limit)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds)));
}

fn uuid(n: u32) -> String {
    format!("1e9ac900-0000-4000-8000-{n:012}")
}

/// Which fleet polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fleet {
    /// Framed protocol, `currentversion = -1`, the known pool at its version: the full osdmap.
    Legacy,
    /// gRPC GetClusterMap with the current epochs: UNCHANGED.
    GrpcUnchanged,
    /// gRPC GetClusterMap with osdmap epoch 0 (pool at its epoch): the full osdmap.
    GrpcFull,
}

impl Fleet {
    fn name(self) -> &'static str {
        match self {
            Fleet::Legacy => "legacy, currentversion -1 (full osdmap)",
            Fleet::GrpcUnchanged => "gRPC, current epochs (UNCHANGED)",
            Fleet::GrpcFull => "gRPC, osdmap epoch 0 (full osdmap)",
        }
    }
}

/// What one fleet measured over its window.
struct Measured {
    fleet: Fleet,
    /// OSDs in the osdmap.
    osds: u32,
    /// OSDs of the fleet that poll (each on its own connection).
    pollers: u32,
    window: Duration,
    /// Polls answered in the window, and their reply bytes.
    polls: u64,
    bytes: u64,
    monitor_cpu: Duration,
    bench_cpu: Duration,
    etcd_cpu: Duration,
    /// Share of the machine's cores busy (all processes and the kernel), 0 to 1.
    machine_busy: f64,
    /// The monitor's largest resident set seen while the fleet polled.
    monitor_rss: u64,
    /// Sorted: request sent → reply read, of the polls answered in the window.
    latency: Vec<Duration>,
    /// Sorted: how late each poll of the window was sent, against its slot.
    lag: Vec<Duration>,
    /// Replies of another size than the checked reference reply.
    wrong_size: u64,
    /// Polls that failed (the OSD polls again at its next slot; a legacy one reconnects).
    failed: u64,
    /// A few of the failures' messages.
    errors: Vec<String>,
    /// Terms the monitor lost while the fleet polled (its log's "stepped down").
    terms_lost: usize,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.polls as f64 / self.window.as_secs_f64()
    }

    fn schedule(&self) -> f64 {
        f64::from(self.pollers) / PERIOD.as_secs_f64()
    }

    fn cpu_per_poll_us(&self) -> f64 {
        self.monitor_cpu.as_secs_f64() * 1e6 / self.polls.max(1) as f64
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The current osdmap epoch and pool epochs.
async fn epochs(m: &mut Client) -> (u64, BTreeMap<u32, u64>) {
    let r = m
        .get_cluster_map(api::GetClusterMapRequest {
            osdmap: Some(api::GetOsdMapRequest {
                osd_id: 0,
                epoch: u64::MAX,
            }),
            pgmap: None,
        })
        .await
        .unwrap()
        .into_inner();
    let pools = r
        .pgmap
        .unwrap()
        .pools
        .iter()
        .map(|p| (p.pool_id, p.epoch))
        .collect();
    (r.osdmap.unwrap().epoch, pools)
}

/// ApplyId + Boot of OSDs `first..=last` (uuid numbers), `BOOT_CLIENTS` at a time; their ids.
async fn boot(addr: &str, osd_address: &str, first: u32, last: u32) -> Vec<u32> {
    let channels = common::lazy_channels(addr, BOOT_CLIENTS);
    let tasks: Vec<_> = (0..BOOT_CLIENTS as u32)
        .map(|w| {
            let mut m = Client::new(channels[w as usize].clone());
            let osd_address = osd_address.to_string();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut k = first + w;
                while k <= last {
                    let u = uuid(k);
                    let id = m
                        .apply_id(api::ApplyIdRequest { uuid: u.clone() })
                        .await
                        .unwrap()
                        .into_inner()
                        .osd_id;
                    let host = format!("host{}", (k - 1) / OSDS_PER_HOST);
                    let mut req = boot_request(id, &u, &host, 1, SHARDS);
                    req.address = osd_address.clone();
                    m.boot(req).await.unwrap();
                    ids.push(id);
                    k += BOOT_CLIENTS as u32;
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort_unstable();
    ids
}

/// A codec that sends pre-encoded request bytes and reads a reply as its length alone.
#[derive(Clone, Copy, Default)]
struct LengthCodec;

struct BytesEncoder;

struct LengthDecoder;

impl Codec for LengthCodec {
    type Encode = Bytes;
    type Decode = u64;
    type Encoder = BytesEncoder;
    type Decoder = LengthDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> LengthDecoder {
        LengthDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for LengthDecoder {
    type Item = u64;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, tonic::Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n as u64))
    }
}

/// One OSD's poll: a socket and what it sends.
enum Poller {
    /// A legacy connection (None after a failure: connected again at the next poll, as the
    /// C++ client reconnects) from the OSDs' address `from`.
    Legacy {
        stream: Option<TcpStream>,
        frame: Bytes,
        to: SocketAddr,
        from: IpAddr,
    },
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        request: Bytes,
    },
}

thread_local! {
    /// Where the legacy client reads replies into (and drops them): one per worker thread.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads and drops `left` bytes.
async fn discard(stream: &TcpStream, mut left: u64) -> io::Result<()> {
    while left > 0 {
        stream.readable().await?;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
        match SCRATCH.with_borrow_mut(|buf| stream.try_read(&mut buf[..want])) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Poller {
    /// One poll; the reply's bytes (legacy: the frame; gRPC: the message and its 5-byte
    /// gRPC prefix).
    async fn poll(&mut self) -> Result<u64, String> {
        match self {
            Poller::Legacy {
                stream,
                frame,
                to,
                from,
            } => {
                let conn = match stream {
                    Some(s) => s,
                    None => stream.insert(
                        legacy_connect(*to, *from)
                            .await
                            .map_err(|e| format!("connect: {e}"))?,
                    ),
                };
                let r = legacy_poll(conn, frame).await;
                if r.is_err() {
                    *stream = None;
                }
                r.map_err(|e| e.to_string())
            }
            Poller::Grpc { grpc, request } => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                let path = http::uri::PathAndQuery::from_static(CLUSTER_MAP_PATH);
                let reply = grpc
                    .unary(tonic::Request::new(request.clone()), path, LengthCodec)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(5 + reply.into_inner())
            }
        }
    }
}

/// Sends a poll frame, reads the reply's header and drops the reply; the frame's bytes.
async fn legacy_poll(stream: &mut TcpStream, frame: &[u8]) -> io::Result<u64> {
    stream.write_all(frame).await?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let len = u64::from_le_bytes(header);
    discard(stream, len).await?;
    Ok(8 + len)
}

/// A legacy connection from `from` (the OSDs' registered address).
async fn legacy_connect(to: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// gRPC channels, one per OSD, connected now; the windows our client library uses.
async fn grpc_connect(addr: &str, n: usize) -> Vec<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20));
    futures::stream::iter(0..n)
        .map(|_| {
            let e = endpoint.clone();
            async move { e.connect().await.unwrap() }
        })
        .buffered(CONNECTING)
        .collect()
        .await
}

/// The legacy poll of OSD `id`, framed.
fn legacy_frame(id: u32, pools: &BTreeMap<u32, u64>) -> Bytes {
    let versions = pools.iter().map(|(&p, &e)| (p as i32, e as i64)).collect();
    Bytes::from(frame(&Request::cpp_poll(id as i32, versions).encode()))
}

fn grpc_request(id: u32, osdmap_epoch: u64, pools: &BTreeMap<u32, u64>) -> Bytes {
    Bytes::from(
        api::GetClusterMapRequest {
            osdmap: Some(api::GetOsdMapRequest {
                osd_id: id,
                epoch: osdmap_epoch,
            }),
            pgmap: Some(api::GetPgMapRequest {
                pool_epochs: pools.iter().map(|(&p, &e)| (p, e)).collect(),
            }),
        }
        .encode_to_vec(),
    )
}

/// One legacy poll, decoded and checked: the whole osdmap of `osds` OSDs, every pool "same
/// version". Returns the reply frame's length.
async fn legacy_reference(addr: &str, id: u32, pools: &BTreeMap<u32, u64>, osds: u32) -> u64 {
    let mut c = LegacyClient::connect(addr).await.unwrap();
    let versions = pools.iter().map(|(&p, &e)| (p as i32, e as i64)).collect();
    c.send(&Request::cpp_poll(id as i32, versions))
        .await
        .unwrap();
    let payload = c.recv_frame().await.unwrap();
    let Response::GetClusterMap(reply) = Response::decode(&payload).unwrap() else {
        panic!("not a cluster map reply");
    };
    let om = reply.osdmap.expect("osdmap");
    assert_eq!((om.errorcode, om.osds.len()), (0, osds as usize));
    let pm = reply.pgmap.expect("pgmap");
    for p in pools.keys() {
        assert_eq!(pm.errorcode[&(*p as i32)], 3, "pool {p} same version");
    }
    assert!(pm.pgs.is_empty());
    8 + payload.len() as u64
}

/// One gRPC poll, decoded and checked; returns its reply's bytes as the fleet counts them.
async fn grpc_reference(ch: &Channel, request: &Bytes, fleet: Fleet, osds: u32) -> u64 {
    let mut m = Client::new(ch.clone()).max_decoding_message_size(1 << 30);
    let req = api::GetClusterMapRequest::decode(request.as_ref()).unwrap();
    let r = m.get_cluster_map(req).await.unwrap().into_inner();
    let om = r.osdmap.as_ref().unwrap();
    match fleet {
        Fleet::GrpcUnchanged => {
            assert_eq!(om.status, api::MapStatus::Unchanged as i32);
        }
        _ => {
            assert_eq!(om.status, api::MapStatus::Full as i32);
            assert_eq!(om.osdmap.as_ref().unwrap().osds.len(), osds as usize);
        }
    }
    for p in &r.pgmap.as_ref().unwrap().pools {
        assert_eq!(p.status, api::MapStatus::Unchanged as i32);
    }
    5 + r.encoded_len() as u64
}

/// Busy and total jiffies of the whole machine (every core), from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let v: Vec<u64> = stat
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().expect("jiffies"))
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait
    (total - v[3] - v[4], total)
}

/// Times monitor 0 stepped down so far.
fn terms_lost(c: &common::TestCluster) -> usize {
    c.log(0).matches("stepped down").count()
}

/// Runs `pollers` (OSD i's slot at i/n of the period) for a period of warm-up and `window`
/// measured, then stops them.
async fn run_fleet(
    fleet: Fleet,
    osds: u32,
    pollers: Vec<Poller>,
    reply_bytes: u64,
    window: Duration,
    c: &common::TestCluster,
) -> Measured {
    let monitor = c.monitors[0].pid().unwrap();
    let etcd = c.etcd_pid(0).expect("embedded etcd");
    let n = pollers.len() as u32;
    let answered = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let t0 = Instant::now() + Duration::from_millis(100);
    let start = t0 + PERIOD;
    let end = start + window;
    let lost_before = terms_lost(c);
    let tasks: Vec<_> = pollers
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let (answered, bytes, stop) = (answered.clone(), bytes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latency = Vec::new();
                let mut lag = Vec::new();
                let (mut wrong, mut failed, mut first_error) = (0u64, 0u64, None);
                let mut slot = t0 + PERIOD * i as u32 / n;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(slot.into()) => {}
                    }
                    let sent = Instant::now();
                    let r = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = tokio::time::timeout(POLL_TIMEOUT, p.poll()) => r,
                    };
                    let done = Instant::now();
                    match r {
                        Ok(Ok(b)) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            bytes.fetch_add(b, Ordering::Relaxed);
                            if b != reply_bytes {
                                wrong += 1;
                            }
                            if done >= start && done <= end {
                                latency.push(done - sent);
                                lag.push(sent - slot);
                            }
                        }
                        Ok(Err(e)) => {
                            failed += 1;
                            first_error.get_or_insert(e);
                        }
                        Err(_) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| "timed out".to_string());
                            if let Poller::Legacy { stream, .. } = &mut p {
                                *stream = None;
                            }
                        }
                    }
                    slot += PERIOD;
                }
                (latency, lag, wrong, failed, first_error)
            })
        })
        .collect();
    // The monitor's resident memory, sampled while the fleet polls.
    let rss = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.is_cancelled() {
                max = max.max(common::proc_memory(monitor, "VmRSS"));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            max
        })
    };
    let me = std::process::id();
    tokio::time::sleep_until(start.into()).await;
    let (a0, b0) = (
        answered.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    let (m0, c0, e0, j0) = (
        common::cpu_time(monitor),
        common::cpu_time(me),
        common::cpu_time(etcd),
        machine_jiffies(),
    );
    let measured_from = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let (a1, b1) = (
        answered.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    let (m1, c1, e1, j1) = (
        common::cpu_time(monitor),
        common::cpu_time(me),
        common::cpu_time(etcd),
        machine_jiffies(),
    );
    let window = measured_from.elapsed();
    stop.cancel();
    let mut m = Measured {
        fleet,
        osds,
        pollers: n,
        window,
        polls: a1 - a0,
        bytes: b1 - b0,
        monitor_cpu: m1.saturating_sub(m0),
        bench_cpu: c1.saturating_sub(c0),
        etcd_cpu: e1.saturating_sub(e0),
        machine_busy: (j1.0 - j0.0) as f64 / (j1.1 - j0.1).max(1) as f64,
        monitor_rss: 0,
        latency: Vec::new(),
        lag: Vec::new(),
        wrong_size: 0,
        failed: 0,
        errors: Vec::new(),
        terms_lost: 0,
    };
    for t in tasks {
        let (l, g, w, f, e) = t.await.unwrap();
        m.latency.extend(l);
        m.lag.extend(g);
        m.wrong_size += w;
        m.failed += f;
        if let Some(e) = e
            && m.errors.len() < 3
            && !m.errors.contains(&e)
        {
            m.errors.push(e);
        }
    }
    m.latency.sort_unstable();
    m.lag.sort_unstable();
    m.monitor_rss = rss.await.unwrap();
    m.terms_lost = terms_lost(c) - lost_before;
    m
}

fn progress(m: &Measured) {
    println!(
        "  {} OSDs, {} polling, {}: {:.0} polls/s (schedule {:.0}), monitor {:.0} us CPU/poll, \
         p50 {:.1} ms, p99 {:.1} ms, sent up to {:.2} s late, {} failed, {} terms lost {:?}",
        m.osds,
        m.pollers,
        m.fleet.name(),
        m.rate(),
        m.schedule(),
        m.cpu_per_poll_us(),
        ms(percentile(&m.latency, 0.5)),
        ms(percentile(&m.latency, 0.99)),
        m.lag.last().copied().unwrap_or_default().as_secs_f64(),
        m.failed,
        m.terms_lost,
        m.errors,
    );
}

/// The fleets measured at `size` OSDs: (who polls, how many OSDs poll). At the largest size,
/// also 1,000 of the OSDs alone: the same map at a rate the monitor can serve on gRPC too.
fn plan(size: u32) -> Vec<(Fleet, u32)> {
    let mut plan = vec![(Fleet::Legacy, size)];
    if size > SIZES[0] {
        plan.push((Fleet::Legacy, SIZES[0]));
    }
    plan.push((Fleet::GrpcUnchanged, size));
    if size > SIZES[0] {
        plan.push((Fleet::GrpcFull, SIZES[0]));
    }
    // Last: at 10,000 it is more than 2 cores can serve.
    plan.push((Fleet::GrpcFull, size));
    plan
}

async fn run(window: Duration) {
    let c = common::standalone_for_bench();
    let addr = c.monitors[0].grpc.clone();
    let to: SocketAddr = addr.parse().unwrap();
    let from: IpAddr = c.ip.parse().unwrap();
    let monitor = c.monitors[0].pid().unwrap();
    let mut admin = Client::new(common::lazy_channels(&addr, 1).remove(0));

    let mut results = Vec::new();
    let mut idle = Vec::new();
    let mut ids = Vec::new();
    for (k, &size) in SIZES.iter().enumerate() {
        let first = ids.len() as u32 + 1;
        println!("legacy polls benchmark: booting OSDs {first}..={size}...");
        ids.extend(boot(&addr, &c.ip, first, size).await);
        if k == 0 {
            admin
                .create_pool(api::CreatePoolRequest {
                    name: "rbd".to_string(),
                    pg_size: 3,
                    pg_count: PGS,
                    failure_domain: "host".to_string(),
                    root: String::new(),
                })
                .await
                .unwrap();
            // The PGs stay where they are while OSDs are added: the pool's epoch stays put.
            admin
                .set_flag(api::SetFlagRequest {
                    flag: api::ClusterFlag::Norebalance as i32,
                })
                .await
                .unwrap();
        }
        let (osdmap_epoch, pools) = epochs(&mut admin).await;
        tokio::time::sleep(SETTLE).await;
        let m0 = common::cpu_time(monitor);
        tokio::time::sleep(PERIOD).await;
        idle.push((size, common::cpu_time(monitor).saturating_sub(m0)));

        // gRPC connections are opened when the first gRPC fleet starts (after the legacy ones
        // have closed theirs: both at 10,000 would not fit the open-file limit) and kept.
        let mut channels: Vec<Channel> = Vec::new();
        for (fleet, n) in plan(size) {
            let polling = &ids[..n as usize];
            let m = if fleet == Fleet::Legacy {
                // One connection per OSD from the OSDs' address.
                let expect = legacy_reference(&addr, ids[0], &pools, size).await;
                let streams: Vec<TcpStream> = futures::stream::iter(polling)
                    .map(|_| async move { legacy_connect(to, from).await.unwrap() })
                    .buffered(CONNECTING)
                    .collect()
                    .await;
                let pollers = streams
                    .into_iter()
                    .zip(polling)
                    .map(|(stream, &id)| Poller::Legacy {
                        stream: Some(stream),
                        frame: legacy_frame(id, &pools),
                        to,
                        from,
                    })
                    .collect();
                run_fleet(fleet, size, pollers, expect, window, &c).await
            } else {
                if channels.len() < polling.len() {
                    channels.extend(grpc_connect(&addr, polling.len() - channels.len()).await);
                }
                let epoch = if fleet == Fleet::GrpcUnchanged {
                    osdmap_epoch
                } else {
                    0
                };
                let requests: Vec<Bytes> = polling
                    .iter()
                    .map(|&id| grpc_request(id, epoch, &pools))
                    .collect();
                let expect = grpc_reference(&channels[0], &requests[0], fleet, size).await;
                let pollers = channels
                    .iter()
                    .zip(requests)
                    .map(|(ch, request)| Poller::Grpc {
                        grpc: tonic::client::Grpc::new(ch.clone())
                            .max_decoding_message_size(1 << 30),
                        request,
                    })
                    .collect();
                run_fleet(fleet, size, pollers, expect, window, &c).await
            };
            progress(&m);
            results.push(m);
            tokio::time::sleep(SETTLE).await;
        }
        drop(channels);
        tokio::time::sleep(SETTLE).await;
    }
    report(&results, &idle, window);
}

fn report(results: &[Measured], idle: &[(u32, Duration)], window: Duration) {
    let pct = |cpu: Duration, m: &Measured| cpu.as_secs_f64() * 100.0 / m.window.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // What the rest of the machine used: kernel threads (softirq), other work.
    let rest = |m: &Measured| {
        m.machine_busy * 100.0 * cores as f64 - pct(m.monitor_cpu + m.bench_cpu + m.etcd_cpu, m)
    };
    println!();
    println!(
        "Every polling OSD polls once per {} s on its own connection; {} s measured per fleet \
         after {} s of warm-up; {SHARDS} shards per OSD, one pool of {PGS} PGs; {cores} cores \
         (CPU in % of one core).",
        PERIOD.as_secs(),
        window.as_secs(),
        PERIOD.as_secs()
    );
    println!();
    println!(
        "| OSDs | polling | poll | polls/s answered (schedule) | sent late: p50 / max | \
         monitor CPU per poll | CPU: monitor / benchmark / etcd / rest of the machine | \
         monitor RSS (max) | latency p50 / p99 | bytes per reply | failed polls | terms lost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in results {
        println!(
            "| {} | {} | {} | {:.0} ({:.0}) | {:.0} ms / {:.0} ms | {:.0} µs | {:.0}% / {:.0}% / {:.0}% / {:.0}% | {} MiB | {:.1} / {:.1} ms | {} | {} | {} |",
            m.osds,
            m.pollers,
            m.fleet.name(),
            m.rate(),
            m.schedule(),
            ms(percentile(&m.lag, 0.5)),
            ms(m.lag.last().copied().unwrap_or_default()),
            m.cpu_per_poll_us(),
            pct(m.monitor_cpu, m),
            pct(m.bench_cpu, m),
            pct(m.etcd_cpu, m),
            rest(m),
            m.monitor_rss >> 20,
            ms(percentile(&m.latency, 0.5)),
            ms(percentile(&m.latency, 0.99)),
            m.bytes / m.polls.max(1),
            m.failed,
            m.terms_lost,
        );
    }
    println!();
    for (size, cpu) in idle {
        println!(
            "monitor CPU with no polls, {size} OSDs: {:.1}% of a core",
            cpu.as_secs_f64() * 100.0 / PERIOD.as_secs_f64()
        );
    }
    for m in results.iter().filter(|m| !m.errors.is_empty()) {
        println!(
            "{} OSDs, {} polling, {}: {} replies of another size than the reference; failures \
             such as {:?}",
            m.osds,
            m.pollers,
            m.fleet.name(),
            m.wrong_size,
            m.errors
        );
    }
    println!();
    println!(
        "| OSDs | polling | legacy CPU/poll ÷ gRPC full fetch (goal ≤ 2) | legacy ÷ gRPC \
         unchanged | legacy p99 (goal ≤ 50 ms at 1,000) |"
    );
    println!("|---|---|---|---|---|");
    for legacy in results.iter().filter(|m| m.fleet == Fleet::Legacy) {
        // Against the same number of OSDs polling the same map, when measured.
        let ratio = |f: Fleet| {
            results
                .iter()
                .find(|m| m.osds == legacy.osds && m.pollers == legacy.pollers && m.fleet == f)
                .map_or("-".to_string(), |m| {
                    format!("{:.2}x", legacy.cpu_per_poll_us() / m.cpu_per_poll_us())
                })
        };
        println!(
            "| {} | {} | {} | {} | {:.1} ms |",
            legacy.osds,
            legacy.pollers,
            ratio(Fleet::GrpcFull),
            ratio(Fleet::GrpcUnchanged),
            ms(percentile(&legacy.latency, 0.99)),
        );
    }
    // Every reply had the reference's size, unless a new term changed the leader epoch that
    // gRPC replies carry.
    for m in results.iter().filter(|m| m.terms_lost == 0) {
        assert_eq!(
            m.wrong_size,
            0,
            "{} OSDs, {} polling, {}: every reply has the size of the checked reference reply",
            m.osds,
            m.pollers,
            m.fleet.name()
        );
    }
}
