//! Helpers for API tests: fake OSD boots, error assertions, and a fingerprint of everything a
//! client can read, to prove that a refused call changed nothing.

#![allow(dead_code)]

use fastblock_monitor::client::{ClientError, MonitorClient};
use fastblock_monitor::proto::monitor as api;

/// A booted fake OSD.
#[derive(Debug, Clone)]
pub struct FakeOsd {
    pub id: u32,
    pub uuid: String,
    pub instance: u64,
    pub host: String,
}

/// The uuid of fake OSD number `n`.
pub fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// ApplyId then Boot (instance 1, `cores` shards) over a raw client, as an OSD starting for
/// the first time does; returns the id granted.
pub async fn apply_and_boot(
    m: &mut api::monitor_client::MonitorClient<tonic::transport::Channel>,
    uuid: &str,
    host: &str,
    cores: u32,
) -> u32 {
    let id = m
        .apply_id(api::ApplyIdRequest {
            uuid: uuid.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .osd_id;
    m.boot(boot_request(id, uuid, host, 1, cores))
        .await
        .unwrap();
    id
}

/// A valid boot request with `cores` shards.
pub fn boot_request(
    id: u32,
    uuid: &str,
    host: &str,
    instance: u64,
    cores: u32,
) -> api::BootRequest {
    api::BootRequest {
        osd_id: id,
        uuid: uuid.to_string(),
        size: 1 << 40,
        shard_ports: (0..cores)
            .map(|i| {
                (
                    i,
                    api::ShardPort {
                        core_id: i,
                        port: 20_000 + i,
                        raw_port: 30_000 + i,
                    },
                )
            })
            .collect(),
        address: "10.1.2.3".to_string(),
        host: host.to_string(),
        core_num: cores,
        config: format!("osd {id} config"),
        boot_instance: instance,
        rack: String::new(),
        root: String::new(),
    }
}

/// Applies ids for and boots `n` OSDs on `hosts` hosts (OSD k on host k % hosts), 4 cores each.
pub async fn boot_osds(c: &MonitorClient, first: u32, n: u32, hosts: u32) -> Vec<FakeOsd> {
    let mut out = Vec::new();
    for k in first..first + n {
        let uuid = uuid(k);
        let id = c
            .apply_id(api::ApplyIdRequest { uuid: uuid.clone() })
            .await
            .expect("apply id")
            .osd_id;
        let host = format!("host{}", k % hosts);
        let instance = 1000 + u64::from(k);
        c.boot(boot_request(id, &uuid, &host, instance, 4))
            .await
            .expect("boot");
        out.push(FakeOsd {
            id,
            uuid,
            instance,
            host,
        });
    }
    out
}

/// Asserts a call failed with `code` and ErrorInfo `reason`.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(r: Result<T, ClientError>, code: tonic::Code, reason: &str) {
    match r {
        Ok(v) => panic!("expected {code:?}/{reason}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), Some(code), "{e}");
            assert_eq!(e.reason().as_deref(), Some(reason), "{e}");
        }
    }
}

/// Everything a client can read about the cluster, for before/after comparisons.
#[derive(Debug, PartialEq)]
pub struct Fingerprint {
    pub osdmap: api::GetOsdMapResponse,
    pub pgmap: api::GetPgMapResponse,
    pub pools: Vec<api::PoolInfo>,
    pub images: Vec<api::ImageInfo>,
    pub status: (u64, u32, u32, u32, u32, u64, u64),
}

impl Fingerprint {
    /// The fingerprint without the epochs and versions (a restore raises them all).
    pub fn without_epochs(mut self) -> Fingerprint {
        self.osdmap.epoch = 0;
        if let Some(m) = self.osdmap.osdmap.as_mut() {
            m.epoch = 0;
            for o in &mut m.osds {
                o.last_change = 0;
            }
        }
        for p in self.pgmap.pools.iter_mut() {
            let p = p.fields_mut();
            p.epoch = 0;
            if let Some(info) = p.pool.as_mut() {
                info.epoch = 0;
            }
            for pg in &mut p.pgs {
                pg.version = 0;
            }
        }
        for p in &mut self.pools {
            p.epoch = 0;
        }
        self.status.0 = 0;
        self
    }
}

/// Reads the fingerprint; `images` names the (pool, image) pairs to read back.
pub async fn fingerprint(c: &MonitorClient, images: &[(&str, &str)]) -> Fingerprint {
    let mut osdmap = c
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .expect("osdmap");
    // The term is not part of the cluster's state.
    osdmap.leader_epoch = 0;
    let mut pgmap = c
        .get_pg_map(api::GetPgMapRequest::default())
        .await
        .expect("pgmap");
    pgmap.leader_epoch = 0;
    let pools = c
        .list_pools(api::ListPoolsRequest {})
        .await
        .expect("pools")
        .pools;
    let mut read = Vec::new();
    for (pool, image) in images {
        if let Ok(r) = c
            .get_image_info(api::GetImageInfoRequest {
                pool_name: pool.to_string(),
                image_name: image.to_string(),
            })
            .await
        {
            read.extend(r.image);
        }
    }
    let s = c
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .expect("status");
    Fingerprint {
        osdmap,
        pgmap,
        pools,
        images: read,
        status: (
            s.osdmap_epoch,
            s.osds_total,
            s.osds_up,
            s.osds_in,
            s.pools,
            s.pgs,
            s.images,
        ),
    }
}

/// A request body sent as one chunk, whatever its bytes.
struct OneChunk(Option<tonic::codegen::Bytes>);

impl http_body::Body for OneChunk {
    type Data = tonic::codegen::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `message` in gRPC framing: flag 0, big-endian length, the bytes.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f
}

/// Sends `body` verbatim as the HTTP/2 body of a gRPC call to `path` (e.g.
/// `/fastblock.monitor.v1.Monitor/ApplyId`) on the monitor at `addr`, and returns the reply's
/// body bytes or its status. Lets tests send what no generated client would: bytes that are not
/// protobuf, strings that are not UTF-8, bodies that are not gRPC framing.
pub async fn raw_grpc_call(
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    use http_body::Body as _;
    use tonic::codegen::{Service, http};
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(OneChunk(Some(body.into()))))
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("channel ready");
    let response = channel.call(request).await.expect("HTTP/2 response");
    let failed = |headers: &http::HeaderMap| {
        tonic::Status::from_header_map(headers).filter(|s| s.code() != tonic::Code::Ok)
    };
    // A trailers-only answer carries the status in its headers.
    if let Some(status) = failed(response.headers()) {
        return Err(status);
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame?;
        if let Some(trailers) = frame.trailers_ref()
            && let Some(status) = failed(trailers)
        {
            return Err(status);
        }
        if let Some(chunk) = frame.data_ref() {
            data.extend_from_slice(chunk);
        }
    }
    Ok(data)
}

/// Heartbeats `osds` every 300 ms until the task is aborted.
pub fn keep_beating(
    m: std::sync::Arc<MonitorClient>,
    osds: Vec<FakeOsd>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for o in &osds {
                let _ = m
                    .heartbeat(api::HeartbeatRequest {
                        osd_id: o.id,
                        boot_instance: o.instance,
                    })
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    })
}

/// A raw watch stream from epoch 0 of every pgmap, on a connection of its own with a 1 KiB
/// HTTP/2 window: not reading it really stalls the monitor's sender. The stream is open (its
/// headers arrived) when this returns.
pub async fn stalled_watcher(
    addr: &str,
) -> tonic::Streaming<fastblock_monitor::wire::WatchClusterMapResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .expect("connect");
    api::monitor_client::MonitorClient::new(channel)
        .watch_cluster_map(api::WatchClusterMapRequest {
            osdmap_epoch: 0,
            pool_epochs: Default::default(),
            scope: api::WatchScope::Pgmaps as i32,
        })
        .await
        .expect("watch")
        .into_inner()
}
