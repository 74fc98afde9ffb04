//! How the fleet's requests travel: our gRPC API or the legacy framed protocol. One enum, one
//! method per thing an OSD does (get an id, boot, restart, fall silent, stay alive, learn the
//! maps, send a PG report); what to send is decided by the fleet, never here.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::grpc::Grpc;
use super::legacy::{Legacy, PolledMaps};
use super::{Fleet, FleetProtocol, FleetSpec, PgWork, SimError, SimOsd};
use crate::client::{MapWatcher, MonitorClient, Scope};

/// What became of a piece of PG work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// The monitor took it.
    Done,
    /// Not done, and not an error: the PG changed under us (the monitor refused it as stale),
    /// or the reporter has no connection right now. The next look decides again.
    Skipped,
}

/// The protocol the fake OSDs speak, with what it keeps (clients, connections, polled maps).
pub(super) enum Transport {
    Grpc(Grpc),
    Legacy(Legacy),
}

/// Where the PG protocol learns the maps from.
pub(super) enum MapSource<'a> {
    /// A WatchClusterMap stream (gRPC).
    Watch(Box<MapWatcher>),
    /// What the OSDs' cluster-map polls brought back (legacy).
    Polled(&'a PolledMaps),
}

impl Transport {
    pub(super) fn grpc(client: Arc<MonitorClient>) -> Transport {
        Transport::Grpc(Grpc::new(client))
    }

    pub(super) fn protocol(&self) -> FleetProtocol {
        match self {
            Transport::Grpc(_) => FleetProtocol::Grpc,
            Transport::Legacy(_) => FleetProtocol::Legacy,
        }
    }

    /// The OSD id of `uuid` (the deploy step).
    pub(super) async fn apply_id(&self, uuid: &str) -> Result<u32, SimError> {
        match self {
            Transport::Grpc(g) => g.apply_id(uuid).await,
            Transport::Legacy(l) => Ok(l.apply_id(uuid).await?),
        }
    }

    /// Boots `osd` for the first time.
    pub(super) async fn boot(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), SimError> {
        match self {
            Transport::Grpc(g) => Ok(g.boot(spec, osd).await?),
            Transport::Legacy(l) => Ok(l.boot(spec, osd).await?),
        }
    }

    /// Every OSD has booted (or failed to): what only the boot needed can go.
    pub(super) async fn booted(&self) {
        if let Transport::Legacy(l) = self {
            l.booted().await;
        }
    }

    /// Boots a killed OSD again; a run still marked up is stopped first.
    pub(super) async fn restart(&self, spec: &FleetSpec, osd: &SimOsd) -> Result<(), SimError> {
        match self {
            Transport::Grpc(g) => g.restart(spec, osd).await,
            Transport::Legacy(l) => Ok(l.restart(spec, osd).await?),
        }
    }

    /// OSD `id` was killed: whatever it had open goes, as a crashed process's would.
    pub(super) fn silence(&self, id: u32) {
        if let Transport::Legacy(l) = self {
            l.silence(id);
        }
    }

    /// Keeps the live OSDs alive in the monitor's eyes until `stop`: heartbeats (gRPC), the
    /// 3 s cluster-map polls (legacy).
    pub(super) async fn liveness(fleet: Arc<Fleet>, stop: CancellationToken) {
        match &fleet.transport {
            Transport::Grpc(_) => super::grpc::heartbeats(fleet.clone(), stop).await,
            Transport::Legacy(_) => super::legacy::polls(fleet.clone(), stop).await,
        }
    }

    /// The fleet has stopped (its tasks are done): whatever is still open goes, as when the
    /// OSD processes exit.
    pub(super) fn stopped(&self) {
        if let Transport::Legacy(l) = self {
            l.close_all();
        }
    }

    /// Where the PG protocol learns the maps from.
    pub(super) fn maps(&self) -> MapSource<'_> {
        match self {
            Transport::Grpc(g) => {
                MapSource::Watch(Box::new(MapWatcher::new(g.client.clone(), Scope::Pgmaps)))
            }
            Transport::Legacy(l) => MapSource::Polled(l.maps()),
        }
    }

    /// Sends one piece of PG work as the OSD it names.
    pub(super) async fn send(&self, w: &PgWork) -> Result<Sent, SimError> {
        match self {
            Transport::Grpc(g) => g.send(w).await,
            Transport::Legacy(l) => Ok(l.send(w).await?),
        }
    }
}

impl MapSource<'_> {
    /// Waits until the maps may have changed.
    pub(super) async fn changed(&mut self) -> Result<(), String> {
        match self {
            MapSource::Watch(w) => w.next().await.map(|_| ()).map_err(|e| e.to_string()),
            MapSource::Polled(p) => {
                p.changed().await;
                Ok(())
            }
        }
    }

    /// The fleet's PG work on the maps as they are now.
    pub(super) fn work(&self, fleet: &Fleet) -> Vec<PgWork> {
        match self {
            MapSource::Watch(w) => fleet.pg_work(&w.maps().pools),
            MapSource::Polled(p) => p.with_pools(|pools| fleet.pg_work(pools)),
        }
    }
}
