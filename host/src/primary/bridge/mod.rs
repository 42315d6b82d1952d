//! The bridge between this primary's hub and other primaries, through Redis
//! pub/sub (`run --redis URL`, `demo --redis URL`, `hub --redis URL`).
//!
//! Workers and the component do not change: the bridge moves the hub's
//! opaque frames, reading only their routing header ([`crate::link::ipc`]).
//!
//! - [`envelope`]: the bytes of one Redis message (batch, heartbeat, leave;
//!   optional HMAC tag);
//! - [`queue`]: the bounded outgoing queue, batched per channel;
//! - [`peers`]: the other primaries and their node uids;
//! - [`inbound`]: what a received envelope does to the local hub;
//! - [`link`]: the Redis connection, its reconnection and the heartbeats.
//!
//! **Channels** (`P` = `sio-cluster:{<cluster name>}:`): `P` `all` carries
//! every primary's Publishes, NodeDowns, heartbeats and leave; `P`
//! `hub:<id>` (16 hex digits) carries the Sends to nodes of primary `<id>`.
//! Each primary subscribes to both of its channels over one connection and
//! publishes over the same connection, so that one primary's frames reach
//! another in the order its hub routed them, across both channels (Redis
//! delivers to a subscriber in publish order).
//!
//! **Routing.** A worker's Publish goes to the local workers (the hub) and
//! into the queue for `all`. A Send whose target no local worker owns goes
//! to the channel of the primary the target uid was learnt from (the sender
//! of its frames), or is dropped and counted when no primary is known to
//! host it. A primary drops the envelopes it receives with its own id.
//! Under load, records pile up while [`BridgeConfig::pipelines`] pipelines
//! of PUBLISH commands are in flight and go out together: one envelope per
//! channel and up to [`BATCH_MAX`] bytes.
//!
//! **Liveness.** Every primary publishes a heartbeat on `all` each
//! [`BridgeConfig::heartbeat_interval`]. Another primary silent for
//! [`BridgeConfig::heartbeat_timeout`] (crashed, `kill -9`, cut off) is
//! dropped: the local workers get `NodeDown` for each of its nodes at once.
//! A primary that stops cleanly publishes a leave, which does the same at
//! once; a local worker that exits is announced (`NodeDown` records) to
//! the other primaries as to the local workers. This primary's own link is
//! checked by the echo of its own heartbeats: no echo within the timeout,
//! a failed command or a closed connection means the link is lost; then
//! every remote node gets `NodeDown` locally, the queue is dropped
//! (counted), and the bridge reconnects with backoff, subscribes again and
//! publishes a heartbeat; the nodes on both sides rejoin with their next
//! adapter heartbeat.
//!
//! **Bounds.** The queue towards Redis holds at most
//! [`BridgeConfig::max_queued_bytes`]; a record that would pass it is
//! dropped and counted ([`BridgeStatsSnapshot::queue_full`]), never waited
//! for. A record larger than [`BridgeConfig::max_frame`] is refused and
//! counted before it reaches Redis, so a large broadcast cannot get a
//! primary's connection closed by Redis's `client-output-buffer-limit
//! pubsub` (32 MiB hard by default). Received envelopes are handled in the
//! connection's reader without waiting: frames are only queued towards local
//! workers, whose queues have the hub's own bound and policy. Pub/sub is
//! at-most-once: what is lost while a link is down stays lost; requests in
//! flight end with what arrived through the `NodeDown`s or their timeouts.
//!
//! **Authentication.** With a cluster key ([`BridgeConfig::key_file`])
//! every envelope carries an HMAC-SHA256 tag over its channel and bytes; an
//! envelope without a valid tag, an envelope number already seen from that
//! primary (a replay) or a time more than [`MAX_SKEW`] away from this
//! primary's clock is dropped and counted ([`BridgeStatsSnapshot::forged`],
//! [`BridgeStatsSnapshot::replayed`]).

pub mod envelope;
pub mod inbound;
pub mod link;
pub mod peers;
pub mod queue;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::link::ipc::{self, FromHub};
use crate::primary::hub::{Hub, RemoteLink};
use envelope::ClusterKey;
use peers::Peers;
use queue::{Dest, OutQueue};

/// Default of [`BridgeConfig::cluster`].
pub const DEFAULT_CLUSTER: &str = "default";
/// Default of [`BridgeConfig::heartbeat_interval`]: 1 s.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// Default of [`BridgeConfig::heartbeat_timeout`]: 3 s (the adapter's own
/// node timeout is 10 s).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(3000);
/// Default of [`BridgeConfig::max_queued_bytes`]: 64 MiB.
pub const DEFAULT_MAX_QUEUED: usize = 64 * 1024 * 1024;
/// Default of [`BridgeConfig::max_frame`]: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;
/// Largest accepted [`BridgeConfig::max_frame`]: 16 MiB (the component's own
/// frame cap), half of Redis's default pubsub output buffer hard limit.
pub const MAX_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Records are packed into one envelope up to this many bytes (a larger
/// record travels alone).
pub const BATCH_MAX: usize = 256 * 1024;
/// Default [`BridgeConfig::pipelines`]: with one, every batch waited for
/// the reply to the previous one (a Redis round trip); four gave 1.3× the
/// deliveries/s with Redis 1 ms away (BENCHMARKS.md, "Across machines").
pub const DEFAULT_PIPELINES: usize = 4;
/// Largest [`BridgeConfig::pipelines`].
pub const MAX_PIPELINES: usize = 64;
/// With a cluster key, envelopes whose time differs from this primary's
/// clock by more than this are refused (replays of old envelopes).
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// Settings of the Redis bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS) or
    /// `redis+unix:///path/to/socket`.
    pub url: String,
    /// Cluster name: primaries with the same Redis and name form one
    /// cluster (channels `sio-cluster:{NAME}:…`).
    pub cluster: String,
    /// Primary heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Another primary silent this long is dropped (its nodes go down).
    pub heartbeat_timeout: Duration,
    /// Bytes queued towards Redis before records are dropped (counted).
    pub max_queued_bytes: usize,
    /// Largest record (a worker's frame, hub link encoding) sent to Redis.
    pub max_frame: usize,
    /// File holding the shared cluster key (HMAC-SHA256 of every envelope).
    pub key_file: Option<PathBuf>,
    /// PEM file of the CA that signed the Redis server's certificate
    /// (`rediss://`); default: the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// First reconnection delay (doubles up to `reconnect_max`).
    pub reconnect_min: Duration,
    /// Largest reconnection delay.
    pub reconnect_max: Duration,
    /// PUBLISH pipelines in flight at once (1 to [`MAX_PIPELINES`]). What
    /// the hub queues while they are all in flight goes out together in the
    /// next one.
    pub pipelines: usize,
}

impl BridgeConfig {
    /// A configuration with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> BridgeConfig {
        BridgeConfig {
            url: url.into(),
            cluster: DEFAULT_CLUSTER.to_string(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            max_queued_bytes: DEFAULT_MAX_QUEUED,
            max_frame: DEFAULT_MAX_FRAME,
            key_file: None,
            tls_ca: None,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            pipelines: DEFAULT_PIPELINES,
        }
    }

    /// The channel prefix, `sio-cluster:{NAME}:`.
    pub fn prefix(&self) -> String {
        format!("sio-cluster:{{{}}}:", self.cluster)
    }

    fn check(&self) -> Result<(), BridgeError> {
        let bad = |m: String| Err(BridgeError::Config(m));
        if self.cluster.is_empty()
            || self.cluster.len() > 128
            || !self
                .cluster
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return bad(format!(
                "cluster name {:?}: 1 to 128 characters of A-Z a-z 0-9 - _ .",
                self.cluster
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout <= self.heartbeat_interval {
            return bad(
                "the primary heartbeat timeout must be longer than its interval (> 0)".into(),
            );
        }
        if self.max_frame == 0 || self.max_frame > MAX_MAX_FRAME {
            return bad(format!(
                "--redis-max-frame must be between 1 and {MAX_MAX_FRAME} bytes"
            ));
        }
        if self.pipelines == 0 || self.pipelines > MAX_PIPELINES {
            return bad(format!(
                "--redis-pipelines must be between 1 and {MAX_PIPELINES}"
            ));
        }
        if self.max_queued_bytes < self.max_frame {
            return bad("--redis-max-queued-bytes must be at least --redis-max-frame".into());
        }
        Ok(())
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Invalid settings (URL, key file, CA file, bounds).
    #[error("redis bridge: {0}")]
    Config(String),
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Counters of the bridge (monotonic).
        #[derive(Debug, Default)]
        pub struct BridgeStats { $( $(#[doc = $doc])* pub $name: AtomicU64, )* }

        /// A copy of [`BridgeStats`] at one instant.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct BridgeStatsSnapshot { $( $(#[doc = $doc])* pub $name: u64, )* }

        impl BridgeStats {
            /// Reads every counter.
            pub fn snapshot(&self) -> BridgeStatsSnapshot {
                BridgeStatsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl BridgeStatsSnapshot {
            /// Every counter as (field name, its doc line, value), in order.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![ $( (stringify!($name), concat!($($doc),*), self.$name), )* ]
            }
        }
    };
}

counters! {
    /// Envelopes published (heartbeats included).
    envelopes_out,
    /// Records published.
    records_out,
    /// PUBLISH pipelines sent while another was still waiting for Redis.
    overlapped,
    /// Envelopes received from other primaries and accepted.
    envelopes_in,
    /// Records received from other primaries.
    records_in,
    /// Own envelopes received back (dropped).
    echoes,
    /// Envelopes refused for a missing or wrong authentication tag.
    forged,
    /// Envelopes or batches refused as malformed.
    malformed,
    /// Envelopes refused as replays (old number, or time out of range).
    replayed,
    /// Records refused for exceeding the max frame size.
    oversize,
    /// Records dropped because the outgoing queue was full.
    queue_full,
    /// Records dropped because the Redis link was down (or lost with them).
    link_down_dropped,
    /// Sends to a uid no known primary hosts.
    unknown_target,
    /// Records dropped: their sender uid belongs to another primary or here.
    uid_conflicts,
    /// Other primaries that joined (first envelope).
    peers_joined,
    /// Other primaries that left cleanly.
    peers_left,
    /// Other primaries dropped after the heartbeat timeout.
    peers_timed_out,
    /// Times the Redis link came up.
    link_ups,
    /// Times the Redis link was lost.
    link_losses,
}

fn add(a: &AtomicU64, n: u64) {
    if n > 0 {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// At most one log line per second per kind of event.
#[derive(Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn ready(&self, now_ms: u64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now_ms >= last + 1000)
            && self
                .0
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// State shared by the hub's calls, the connection's reader and the link task.
pub(crate) struct Shared {
    hub: Hub,
    cfg: BridgeConfig,
    key: Option<ClusterKey>,
    me: u64,
    prefix: String,
    chan_all: String,
    chan_me: String,
    out: Mutex<OutQueue>,
    wake: Notify,
    peers: Mutex<Peers>,
    up: AtomicBool,
    epoch: Instant,
    /// Ms since `epoch` of the last echo of one of our own heartbeats.
    own_echo_ms: AtomicU64,
    seq: AtomicU64,
    stats: BridgeStats,
    warn_oversize: Throttle,
    warn_full: Throttle,
    warn_bad: Throttle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn channel_of(&self, dest: Dest) -> String {
        match dest {
            Dest::All => self.chan_all.clone(),
            Dest::Hub(id) => format!("{}hub:{id:016x}", self.prefix),
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queues one record; counts and logs a drop.
    fn enqueue(&self, dest: Dest, parts: &[&[u8]]) {
        if !self.up.load(Ordering::Acquire) {
            add(&self.stats.link_down_dropped, 1);
            return;
        }
        let queued = lock(&self.out).push(dest, parts, self.cfg.max_queued_bytes, BATCH_MAX);
        if queued {
            self.wake.notify_one();
        } else {
            add(&self.stats.queue_full, 1);
            if self.warn_full.ready(self.now_ms()) {
                warn!(
                    limit = self.cfg.max_queued_bytes,
                    dropped = self.stats.queue_full.load(Ordering::Relaxed),
                    "redis outgoing queue full, frames dropped"
                );
            }
        }
    }

    /// This primary lost its Redis link: drop what is queued and every
    /// remote node.
    fn link_lost(&self, reason: &str) {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        let dropped = lock(&self.out).discard();
        add(&self.stats.link_down_dropped, dropped);
        let nodes = lock(&self.peers).clear(Instant::now());
        if was_up {
            add(&self.stats.link_losses, 1);
            warn!(
                reason,
                remote_nodes = nodes.len(),
                dropped,
                "redis link lost; remote nodes are down until it is back"
            );
        }
        self.hub
            .remote_node_down(nodes.iter().map(|(u, n)| (*u, n.as_str())));
    }

    /// Drops the primaries silent past the timeout.
    fn expire_peers(&self) {
        let now = Instant::now();
        let (silent, nodes) = {
            let mut peers = lock(&self.peers);
            let silent = peers.silent(now, self.cfg.heartbeat_timeout);
            let mut nodes = Vec::new();
            for (id, quiet) in &silent {
                nodes.push((*id, *quiet, peers.remove(*id, now)));
            }
            (silent.len(), nodes)
        };
        if silent == 0 {
            return;
        }
        for (id, quiet, nodes) in nodes {
            add(&self.stats.peers_timed_out, 1);
            warn!(
                peer = format_args!("{id:016x}"),
                silent_ms = quiet.as_millis() as u64,
                nodes = nodes.len(),
                "remote primary timed out, its nodes are down"
            );
            self.hub
                .remote_node_down(nodes.iter().map(|(u, n)| (*u, n.as_str())));
        }
    }

    fn new(cfg: BridgeConfig, key: Option<ClusterKey>, hub: Hub, me: u64) -> Arc<Shared> {
        let prefix = cfg.prefix();
        Arc::new(Shared {
            hub,
            chan_all: format!("{prefix}all"),
            chan_me: format!("{prefix}hub:{me:016x}"),
            prefix,
            cfg,
            key,
            me,
            out: Mutex::new(OutQueue::default()),
            wake: Notify::new(),
            peers: Mutex::new(Peers::default()),
            up: AtomicBool::new(false),
            epoch: Instant::now(),
            own_echo_ms: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            stats: BridgeStats::default(),
            warn_oversize: Throttle::default(),
            warn_full: Throttle::default(),
            warn_bad: Throttle::default(),
        })
    }
}

impl RemoteLink for Shared {
    fn relay(&self, frame: &[u8], target: Option<u64>) -> bool {
        let dest = match target {
            None => Dest::All,
            Some(uid) => match lock(&self.peers).hub_of(uid) {
                Some(hub) => Dest::Hub(hub),
                None => {
                    add(&self.stats.unknown_target, 1);
                    return false;
                }
            },
        };
        if frame.len().saturating_sub(4) > self.cfg.max_frame {
            add(&self.stats.oversize, 1);
            if self.warn_oversize.ready(self.now_ms()) {
                warn!(
                    len = frame.len() - 4,
                    max = self.cfg.max_frame,
                    refused = self.stats.oversize.load(Ordering::Relaxed),
                    "frame larger than --redis-max-frame not sent to other primaries"
                );
            }
            return true;
        }
        self.enqueue(dest, &[frame]);
        true
    }

    fn node_down(&self, uid: u64, nsp: &str) {
        if ipc::check_str(nsp).is_err() {
            return;
        }
        let rec = FromHub::NodeDown {
            uid,
            nsp: nsp.to_string(),
        }
        .encode();
        self.enqueue(Dest::All, &[&rec]);
    }
}

/// Reads a bridge's counters and link state (the primary's metrics); stays
/// valid after the bridge stopped.
#[derive(Clone)]
pub struct BridgeProbe(Arc<Shared>);

impl BridgeProbe {
    /// The bridge's counters.
    pub fn stats(&self) -> BridgeStatsSnapshot {
        self.0.stats.snapshot()
    }

    /// Whether the Redis link is up.
    pub fn up(&self) -> bool {
        self.0.up.load(Ordering::Relaxed)
    }

    /// Bytes queued towards Redis or in PUBLISH pipelines not yet answered
    /// (what `--redis-max-queued-bytes` bounds).
    pub fn queued_bytes(&self) -> usize {
        lock(&self.0.out).bytes
    }

    /// Other primaries known now, and the adapter nodes they host.
    pub fn peers(&self) -> (usize, usize) {
        let p = lock(&self.0.peers);
        (p.len(), p.uid_count())
    }
}

impl std::fmt::Debug for BridgeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeProbe").finish_non_exhaustive()
    }
}

/// A running bridge (see the module docs).
pub struct Bridge {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Checks `config`, installs the bridge on `hub` and starts connecting
    /// (in the background: Redis may come up later). Fails on invalid
    /// settings only.
    pub fn start(config: BridgeConfig, hub: Hub) -> Result<Bridge, BridgeError> {
        config.check()?;
        let key = match &config.key_file {
            Some(path) => Some(ClusterKey::from_file(path).map_err(BridgeError::Config)?),
            None => None,
        };
        let client = link::client(&config)?;
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw)
            .map_err(|e| BridgeError::Config(format!("no randomness for the primary id: {e}")))?;
        let shared = Shared::new(config, key, hub.clone(), u64::from_le_bytes(raw));
        if !hub.set_remote(shared.clone()) {
            return Err(BridgeError::Config(
                "the hub has a remote link already".into(),
            ));
        }
        info!(
            primary = format_args!("{:016x}", shared.me),
            cluster = %shared.cfg.cluster,
            authenticated = shared.key.is_some(),
            "redis bridge starting"
        );
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(link::run(shared.clone(), client, stop_rx));
        Ok(Bridge { shared, stop, task })
    }

    /// This primary's id on Redis (random per start).
    pub fn id(&self) -> u64 {
        self.shared.me
    }

    /// The bridge's counters.
    pub fn stats(&self) -> BridgeStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// A handle that reads this bridge's state for the metrics.
    pub fn probe(&self) -> BridgeProbe {
        BridgeProbe(self.shared.clone())
    }

    /// Publishes the leave (when connected) and stops; bounded by the
    /// heartbeat timeout.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(self.shared.cfg.heartbeat_timeout, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        info!(stats = ?self.shared.stats.snapshot(), "redis bridge stopped");
    }
}

/// The receiving half of a bridge alone, with no Redis connection: each
/// message goes through the same checks and routing as one the connection's
/// reader received (envelope, tag, replay and skew checks, peers, then the
/// hub). For the `redis_inbound` fuzz target and tests.
pub struct Inbound(Arc<Shared>);

impl Inbound {
    /// A receiver for primary `me` of `config`'s cluster, delivering to
    /// `hub`, checking tags with `key` (`config.key_file` is not read).
    pub fn new(
        config: BridgeConfig,
        key: Option<ClusterKey>,
        hub: Hub,
        me: u64,
    ) -> Result<Inbound, BridgeError> {
        config.check()?;
        Ok(Inbound(Shared::new(config, key, hub, me)))
    }

    /// Handles one message as received on `channel`.
    pub fn message(&self, channel: &[u8], msg: &[u8]) {
        self.0.on_message(channel, msg);
    }

    /// The two channels this primary subscribes to: `all` and its own.
    pub fn channels(&self) -> (&str, &str) {
        (&self.0.chan_all, &self.0.chan_me)
    }

    /// Reads its counters and peers.
    pub fn probe(&self) -> BridgeProbe {
        BridgeProbe(self.0.clone())
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("me", &format_args!("{:016x}", self.0.me))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::UnixStream;

    use super::*;
    use crate::link::worker::{Incoming, LinkOptions, WorkerLink};
    use crate::primary::hub::{Attach, HubConfig};

    const ME: u64 = 0x4d45;
    const PEER: u64 = 0x9e3;

    fn sealed(kind: envelope::Kind, seq: u64, body: &[u8], key: Option<&ClusterKey>) -> Vec<u8> {
        let channel = format!("{}all", BridgeConfig::new("redis://x").prefix());
        envelope::seal(kind, PEER, seq, unix_ms(), body, key, channel.as_bytes())
    }

    /// A worker's Publish sealed by another primary reaches the local
    /// worker; a replay, a forged copy and a message on a stranger's channel
    /// are counted and go nowhere.
    #[tokio::test]
    async fn inbound_delivers_what_it_should_and_counts_the_rest() {
        let hub = Hub::new(HubConfig::default(), None);
        let (a, b) = UnixStream::pair().unwrap();
        hub.attach(a, Attach::Trusted { index: 0 });
        let opts = LinkOptions {
            exit_on_close: false,
            ..LinkOptions::default()
        };
        let (_tx, mut rx) = WorkerLink::connect_stream(b, 0, "", ipc::DEFAULT_MAX_FRAME, opts)
            .await
            .unwrap();
        let key = ClusterKey::new(b"a cluster key long enough for the test").unwrap();
        let inbound = Inbound::new(
            BridgeConfig::new("redis://x"),
            Some(key.clone()),
            hub.clone(),
            ME,
        )
        .unwrap();
        let (all, _) = inbound.channels();
        let all = all.as_bytes().to_vec();
        let mut body = Vec::new();
        ipc::put_relay(&mut body, 77, None, "/", b"frame-1");
        inbound.message(&all, &sealed(envelope::Kind::Frames, 1, &body, Some(&key)));
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Incoming::Frame { from, frame, .. })) => {
                assert_eq!(from, 77);
                assert_eq!(&frame[..], b"frame-1");
            }
            other => panic!("expected the frame, got {other:?}"),
        }
        inbound.message(&all, &sealed(envelope::Kind::Frames, 1, &body, Some(&key)));
        let other = ClusterKey::new(b"another key, not the cluster's one").unwrap();
        inbound.message(
            &all,
            &sealed(envelope::Kind::Frames, 2, &body, Some(&other)),
        );
        inbound.message(b"sio-cluster:{default}:hub:0000000000000001", &body);
        let st = inbound.probe().stats();
        assert_eq!(
            (
                st.envelopes_in,
                st.records_in,
                st.replayed,
                st.forged,
                st.malformed
            ),
            (1, 1, 1, 1, 1),
            "{st:?}"
        );
        assert_eq!(inbound.probe().peers(), (1, 1));
        let r = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
        assert!(r.is_err(), "nothing else reaches the worker: {r:?}");
    }
}
