//! The relay between workers ("hub").
//!
//! Each worker holds one link (a Unix stream socket, see [`crate::link::ipc`]). The hub
//! never decodes adapter frames; it reads the routing header only:
//!
//! * `Publish` goes to every other attached worker;
//! * `Send` goes to the one worker hosting the target uid. The hub learns
//!   uid -> worker from the `sender` of every frame a worker sends; a frame for an
//!   unknown uid is dropped and counted;
//! * when a link closes (exit, crash, `kill -9`, protocol error), the hub at once
//!   sends `NodeDown` for each uid of that worker to every other worker
//!   ("fast leave").
//!
//! A peer that sends an oversize or malformed frame, a wrong token or no Hello in
//! time is disconnected, logged and counted in [`HubStats`]; other links are not
//! affected.
//!
//! **Backpressure policy.** Each link has one outgoing queue, bounded by
//! [`HubConfig::max_queued_bytes`] (`--max-queued-bytes`, default 512 MiB)
//! counted in encoded bytes. The hub never drops a single frame: it does not
//! decode adapter frames, so it cannot tell a volatile packet from a request,
//! a response or an ack, whose silent loss would leave a caller waiting for
//! its timeout. Instead, a frame that would take a worker's queue past the
//! limit (the worker stopped reading its link) disconnects that worker:
//! * its queue and the frames in the writer are freed at once (the writer is
//!   cancelled even while blocked on a full socket), so the hub's memory for
//!   a stuck worker is bounded by the limit plus one frame being read;
//! * every other worker gets `NodeDown` for its nodes, as with a crash
//!   (fast leave): pending requests stop waiting for it;
//! * the drop is logged (`outgoing queue overflow`), counted
//!   ([`HubStats::queue_overflows`]) and reported by [`Hub::dropped`]; under
//!   `sio-cluster-host run` the supervisor then kills the worker process and
//!   starts a new one, which attaches and is counted again.
//!
//! Frames towards the other workers are not affected. A worker that reads
//! slower than the cluster publishes is treated the same way once its backlog
//! reaches the limit. Size the limit above the largest burst a healthy worker
//! may fall behind by.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::link::ipc::{self, FrameReader, FromHub, RelayHeader, ToHub};
use crate::link::outq::{COPY_MAX, OutQueue};

mod remote;
pub use remote::{RemoteDelivery, RemoteLink};

/// Identifies one attached link (unique for the life of the hub).
pub type ConnId = u64;

/// Largest number of node uids one worker may announce.
pub const MAX_UIDS_PER_WORKER: usize = 4096;

/// Default of [`HubConfig::max_queued_bytes`]: 512 MiB.
pub const DEFAULT_MAX_QUEUED: usize = 512 * 1024 * 1024;

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Maximum frame payload accepted from a worker.
    pub max_frame: usize,
    /// Time a link on the hub's socket has to send its Hello.
    pub hello_timeout: Duration,
    /// Time a trusted link (a worker spawned by `run`) has to send its Hello;
    /// longer, since a worker may load and compile code before it attaches.
    pub trusted_hello_timeout: Duration,
    /// Bytes queued towards one worker before it is considered stuck and dropped.
    pub max_queued_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_frame: ipc::DEFAULT_MAX_FRAME,
            hello_timeout: Duration::from_secs(5),
            trusted_hello_timeout: Duration::from_secs(120),
            max_queued_bytes: DEFAULT_MAX_QUEUED,
        }
    }
}

/// How a new link is authenticated.
#[derive(Debug, Clone)]
pub enum Attach {
    /// A private socketpair made by the supervisor: the index is known, no token.
    Trusted {
        /// Worker index (0-based).
        index: u32,
    },
    /// A connection to the hub's socket: the Hello must carry this token.
    Token(Arc<str>),
}

/// Counters of the hub (monotonic).
#[derive(Debug, Default)]
pub struct HubStats {
    /// Links that completed the Hello.
    pub attached: AtomicU64,
    /// Links that went away after attaching.
    pub detached: AtomicU64,
    /// Frames received from workers (after Hello).
    pub frames_in: AtomicU64,
    /// Frames queued towards workers.
    pub frames_out: AtomicU64,
    /// Publish frames relayed.
    pub published: AtomicU64,
    /// Send frames relayed to their target.
    pub sent: AtomicU64,
    /// Send frames dropped because the target uid is unknown.
    pub unknown_target: AtomicU64,
    /// Frames dropped because their sender uid belongs to another worker.
    pub uid_conflicts: AtomicU64,
    /// NodeDown frames queued.
    pub node_down: AtomicU64,
    /// Links dropped for a malformed or oversize frame.
    pub protocol_errors: AtomicU64,
    /// Links refused for a wrong token, version or missing Hello.
    pub auth_failures: AtomicU64,
    /// Links dropped because their outgoing queue overflowed.
    pub queue_overflows: AtomicU64,
}

/// A copy of [`HubStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStatsSnapshot {
    /// See [`HubStats::attached`].
    pub attached: u64,
    /// See [`HubStats::detached`].
    pub detached: u64,
    /// See [`HubStats::frames_in`].
    pub frames_in: u64,
    /// See [`HubStats::frames_out`].
    pub frames_out: u64,
    /// See [`HubStats::published`].
    pub published: u64,
    /// See [`HubStats::sent`].
    pub sent: u64,
    /// See [`HubStats::unknown_target`].
    pub unknown_target: u64,
    /// See [`HubStats::uid_conflicts`].
    pub uid_conflicts: u64,
    /// See [`HubStats::node_down`].
    pub node_down: u64,
    /// See [`HubStats::protocol_errors`].
    pub protocol_errors: u64,
    /// See [`HubStats::auth_failures`].
    pub auth_failures: u64,
    /// See [`HubStats::queue_overflows`].
    pub queue_overflows: u64,
}

impl HubStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> HubStatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HubStatsSnapshot {
            attached: r(&self.attached),
            detached: r(&self.detached),
            frames_in: r(&self.frames_in),
            frames_out: r(&self.frames_out),
            published: r(&self.published),
            sent: r(&self.sent),
            unknown_target: r(&self.unknown_target),
            uid_conflicts: r(&self.uid_conflicts),
            node_down: r(&self.node_down),
            protocol_errors: r(&self.protocol_errors),
            auth_failures: r(&self.auth_failures),
            queue_overflows: r(&self.queue_overflows),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Something that happened on the hub, reported to a [`HubObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// A worker completed its Hello.
    WorkerUp {
        /// Link id.
        conn: ConnId,
        /// Worker index.
        index: u32,
        /// Worker pid (as the worker reported it).
        pid: u32,
    },
    /// A worker's link closed.
    WorkerDown {
        /// Link id.
        conn: ConnId,
        /// Worker index.
        index: u32,
    },
    /// The worker reported a new Engine.IO session.
    SessionOpened {
        /// Worker index.
        index: u32,
        /// Engine.IO session id.
        sid: String,
    },
    /// The worker reported a closed Engine.IO session.
    SessionClosed {
        /// Worker index.
        index: u32,
        /// Engine.IO session id.
        sid: String,
    },
}

/// Receives [`HubEvent`]s synchronously (called outside the hub's lock).
pub trait HubObserver: Send + Sync + 'static {
    /// Called once per event, in the order the hub saw them.
    fn on_event(&self, event: HubEvent);
}

/// Why the hub dropped a link on its own (see [`Hub::dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The worker sent an oversize or malformed frame, a second Hello, or
    /// announced more than [`MAX_UIDS_PER_WORKER`] node uids.
    Protocol,
    /// The worker's outgoing queue passed [`HubConfig::max_queued_bytes`].
    QueueOverflow,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DropReason::Protocol => "protocol error",
            DropReason::QueueOverflow => "outgoing queue overflow",
        })
    }
}

/// Close signals of one link, shared by its reader, its writer and the hub.
struct LinkCtl {
    /// Set once to close the link (reader and writer stop).
    close: watch::Sender<bool>,
    /// Set once when the hub drops the link for misbehaviour.
    dropped: watch::Sender<Option<DropReason>>,
    /// Mirror of `close`, read on every frame queued towards the link.
    is_closed: AtomicBool,
}

impl LinkCtl {
    fn new() -> LinkCtl {
        LinkCtl {
            close: watch::Sender::new(false),
            dropped: watch::Sender::new(None),
            is_closed: AtomicBool::new(false),
        }
    }

    fn close(&self) {
        self.is_closed.store(true, Ordering::Release);
        self.close.send_replace(true);
    }

    /// Records why the hub drops this link (first reason wins), then closes it.
    fn drop_for(&self, reason: DropReason) {
        self.dropped.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
        self.close();
    }

    fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }
}

/// Waits until `rx` reads true (or its sender is gone).
async fn closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

struct Conn {
    index: u32,
    out: Arc<OutQueue>,
    ctl: Arc<LinkCtl>,
    uids: HashMap<u64, String>,
}

#[derive(Default)]
struct State {
    /// Every link being served, from `attach` on (Hello or not).
    links: HashMap<ConnId, Arc<LinkCtl>>,
    /// Links that completed their Hello.
    conns: HashMap<ConnId, Conn>,
    uid_owner: HashMap<u64, ConnId>,
}

struct Inner {
    config: HubConfig,
    stats: HubStats,
    state: Mutex<State>,
    observer: Option<Arc<dyn HubObserver>>,
    next_conn: AtomicU64,
    /// The link to other machines' hubs, if any ([`Hub::set_remote`]).
    remote: OnceLock<Arc<dyn RemoteLink>>,
}

/// The relay. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

enum Outcome {
    Continue,
    Disconnect,
}

/// Counters of one batch of frames, added to [`HubStats`] once per batch.
#[derive(Default)]
struct BatchStats {
    frames_in: u64,
    frames_out: u64,
    published: u64,
    sent: u64,
    unknown_target: u64,
}

impl Hub {
    /// Creates a hub; `observer` receives worker and session events.
    pub fn new(config: HubConfig, observer: Option<Arc<dyn HubObserver>>) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config,
                stats: HubStats::default(),
                state: Mutex::new(State::default()),
                observer,
                next_conn: AtomicU64::new(1),
                remote: OnceLock::new(),
            }),
        }
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Number of links that completed their Hello and are still open.
    pub fn attached_count(&self) -> usize {
        self.lock().conns.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the maps stay usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self, event: HubEvent) {
        if let Some(obs) = &self.inner.observer {
            obs.on_event(event);
        }
    }

    /// Takes over a connected stream and serves it in a background task.
    ///
    /// Returns the link id, usable with [`Hub::detach`].
    pub fn attach(&self, stream: UnixStream, auth: Attach) -> ConnId {
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let ctl = Arc::new(LinkCtl::new());
        self.lock().links.insert(id, ctl.clone());
        let hub = self.clone();
        tokio::spawn(async move {
            hub.serve_link(id, stream, auth, ctl).await;
            hub.lock().links.remove(&id);
        });
        id
    }

    /// Closes a link (if still open); its nodes leave as with any close.
    pub fn detach(&self, conn: ConnId) {
        if let Some(c) = self.lock().links.get(&conn) {
            c.close();
        }
    }

    /// Closes every link.
    pub fn detach_all(&self) {
        for c in self.lock().links.values() {
            c.close();
        }
    }

    /// Resolves when the hub drops link `conn` for misbehaviour (a protocol
    /// error or a queue overflow, see the module docs), with the reason.
    /// Never resolves for a link that closes otherwise (the worker exited,
    /// [`Hub::detach`]) or that is already gone; use it in a `select!`.
    pub fn dropped(
        &self,
        conn: ConnId,
    ) -> impl std::future::Future<Output = DropReason> + Send + 'static {
        let rx = self.lock().links.get(&conn).map(|c| c.dropped.subscribe());
        async move {
            if let Some(mut rx) = rx {
                let reason = rx.wait_for(Option::is_some).await.ok().and_then(|r| *r);
                if let Some(reason) = reason {
                    return reason;
                }
            }
            std::future::pending().await
        }
    }

    /// Accepts connections on `listener` forever, each authenticated by `token`.
    pub async fn serve_unix(&self, listener: tokio::net::UnixListener, token: Arc<str>) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    self.attach(stream, Attach::Token(token.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "hub accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn refuse(&self, mut wr: OwnedWriteHalf, reason: &str) {
        bump(&self.inner.stats.auth_failures);
        let frame = FromHub::Refused {
            reason: reason.to_string(),
        }
        .encode();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = wr.write_all(&frame).await;
            let _ = wr.shutdown().await;
        })
        .await;
    }

    async fn serve_link(&self, id: ConnId, stream: UnixStream, auth: Attach, ctl: Arc<LinkCtl>) {
        let (mut rd, wr) = stream.into_split();
        let mut fr = FrameReader::new(self.inner.config.max_frame);

        let hello_timeout = match auth {
            Attach::Trusted { .. } => self.inner.config.trusted_hello_timeout,
            Attach::Token(_) => self.inner.config.hello_timeout,
        };
        let mut close_rx = ctl.close.subscribe();
        let hello = tokio::select! {
            h = tokio::time::timeout(hello_timeout, fr.read_frame(&mut rd)) => h,
            _ = closed(&mut close_rx) => {
                debug!(conn = id, "link closed by the hub before Hello");
                return;
            }
        };
        let (version, worker, pid, token) = match hello {
            Err(_) => {
                warn!(conn = id, "link refused: no Hello in time");
                return self.refuse(wr, "no hello in time").await;
            }
            Ok(Ok(None)) => {
                debug!(conn = id, "link closed before Hello");
                bump(&self.inner.stats.auth_failures);
                return;
            }
            Ok(Err(e)) => {
                warn!(conn = id, error = %e, "link refused: bad Hello");
                return self.refuse(wr, "bad hello").await;
            }
            Ok(Ok(Some(payload))) => match ToHub::decode(payload) {
                Ok(ToHub::Hello {
                    version,
                    worker,
                    pid,
                    token,
                }) => (version, worker, pid, token),
                Ok(_) | Err(_) => {
                    warn!(conn = id, "link refused: first frame is not a Hello");
                    return self.refuse(wr, "first frame must be hello").await;
                }
            },
        };
        if version != ipc::PROTOCOL_VERSION {
            warn!(
                conn = id,
                version, "link refused: protocol version mismatch"
            );
            return self.refuse(wr, "protocol version mismatch").await;
        }
        let index = match &auth {
            Attach::Trusted { index } => *index,
            Attach::Token(expected) => {
                if !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
                    warn!(conn = id, pid, "link refused: wrong token");
                    return self.refuse(wr, "wrong token").await;
                }
                worker
            }
        };

        let welcome = FromHub::Welcome {
            version: ipc::PROTOCOL_VERSION,
            worker: index,
        }
        .encode();
        // Every byte queued is counted once when queued and released once by
        // the writer.
        let out = Arc::new(OutQueue::default());
        out.queued.fetch_add(welcome.len(), Ordering::AcqRel);
        out.append(|p| p.buf(welcome.len()).extend_from_slice(&welcome));
        tokio::spawn(write_loop(wr, out.clone(), ctl.clone()));
        self.lock().conns.insert(
            id,
            Conn {
                index,
                out,
                ctl: ctl.clone(),
                uids: HashMap::new(),
            },
        );
        bump(&self.inner.stats.attached);
        info!(conn = id, worker = index, pid, "worker attached");
        self.notify(HubEvent::WorkerUp {
            conn: id,
            index,
            pid,
        });

        // Uid this link is known to own (skips the owner lookup).
        let mut owned = None;
        loop {
            // Route every complete frame already read, then read more.
            if let Outcome::Disconnect = self.route_batch(id, index, &mut fr, &mut owned) {
                ctl.drop_for(DropReason::Protocol);
                break;
            }
            let read = tokio::select! {
                r = fr.fill(&mut rd) => r,
                _ = closed(&mut close_rx) => {
                    debug!(conn = id, "link closed by the hub");
                    break;
                }
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    debug!(conn = id, worker = index, "link closed by the worker");
                    break;
                }
                Err(e) => {
                    debug!(conn = id, worker = index, error = %e, "link read failed");
                    break;
                }
            }
        }
        self.leave(id);
    }

    /// Removes a link and tells every other worker its nodes are gone.
    fn leave(&self, id: ConnId) {
        let index;
        {
            let mut st = self.lock();
            let Some(conn) = st.conns.remove(&id) else {
                return;
            };
            index = conn.index;
            conn.ctl.close();
            let mut downs = Vec::new();
            for (uid, nsp) in conn.uids {
                if st.uid_owner.get(&uid) == Some(&id) {
                    st.uid_owner.remove(&uid);
                    if let Some(remote) = self.inner.remote.get() {
                        remote.node_down(uid, &nsp);
                    }
                    downs.push(FromHub::NodeDown { uid, nsp }.encode());
                }
            }
            for frame in downs {
                for other in st.conns.values() {
                    bump(&self.inner.stats.node_down);
                    // An overflow drops `other` (closed by `push`); it leaves
                    // in its own task.
                    if self.push(other, frame.clone()) {
                        bump(&self.inner.stats.frames_out);
                    }
                }
            }
            conn.out.discard();
        }
        bump(&self.inner.stats.detached);
        info!(conn = id, worker = index, "worker detached");
        self.notify(HubEvent::WorkerDown { conn: id, index });
    }

    /// Queues an encoded frame towards `conn`; false when it was not queued
    /// (the link is closing, or this frame overflowed its queue and dropped it).
    fn push(&self, conn: &Conn, frame: Bytes) -> bool {
        let len = frame.len();
        self.push_with(conn, len, |p| {
            if len > COPY_MAX {
                p.push_bytes(frame);
            } else {
                p.buf(len).extend_from_slice(&frame);
            }
        })
    }

    /// Queues `len` encoded bytes towards `conn`, appended by `put`; false
    /// when they were not queued (see [`Hub::push`]).
    fn push_with(
        &self,
        conn: &Conn,
        len: usize,
        put: impl FnOnce(&mut crate::link::outq::Pending),
    ) -> bool {
        if conn.ctl.is_closed() {
            return false;
        }
        let before = conn.out.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.inner.config.max_queued_bytes {
            conn.out.queued.fetch_sub(len, Ordering::AcqRel);
            bump(&self.inner.stats.queue_overflows);
            warn!(
                worker = conn.index,
                queued = before,
                limit = self.inner.config.max_queued_bytes,
                "outgoing queue overflow, dropping worker link"
            );
            conn.ctl.drop_for(DropReason::QueueOverflow);
            return false;
        }
        conn.out.append(put);
        true
    }

    /// Records that `uid` (of `nsp`) lives on link `id`; false on a conflict.
    fn learn(&self, st: &mut State, id: ConnId, uid: u64, nsp: &str) -> Result<bool, ()> {
        match st.uid_owner.get(&uid) {
            Some(owner) if *owner == id => return Ok(true),
            Some(_) => {
                bump(&self.inner.stats.uid_conflicts);
                warn!(
                    conn = id,
                    uid = format_args!("{uid:016x}"),
                    "uid already owned by another worker, frame dropped"
                );
                return Ok(false);
            }
            None => {}
        }
        let Some(conn) = st.conns.get_mut(&id) else {
            return Ok(false);
        };
        if conn.uids.len() >= MAX_UIDS_PER_WORKER {
            return Err(());
        }
        conn.uids.insert(uid, nsp.to_string());
        st.uid_owner.insert(uid, id);
        Ok(true)
    }

    /// Routes every complete frame in `fr`. Relayed frames are forwarded as
    /// they came, with only their header rewritten (no decode, no re-encode);
    /// the state lock is taken once for the whole batch.
    fn route_batch(
        &self,
        id: ConnId,
        index: u32,
        fr: &mut FrameReader,
        owned: &mut Option<u64>,
    ) -> Outcome {
        let mut st: Option<MutexGuard<'_, State>> = None;
        let mut n = BatchStats::default();
        let outcome = loop {
            let len = match fr.frame_len() {
                Ok(Some(len)) => len,
                Ok(None) => break Outcome::Continue,
                Err(e) => break self.protocol_error(id, index, &e),
            };
            n.frames_in += 1;
            let header = match RelayHeader::parse(&fr.peek_mut(len)[4..]) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    // Hello or a session event: rare, decoded in full, and the
                    // observer is called outside the lock.
                    drop(st.take());
                    let mut frame = fr.take(len);
                    bytes::Buf::advance(&mut frame, 4);
                    match ToHub::decode(frame.freeze()) {
                        Ok(msg) => match self.handle_other(id, index, msg) {
                            Outcome::Continue => continue,
                            Outcome::Disconnect => break Outcome::Disconnect,
                        },
                        Err(e) => break self.protocol_error(id, index, &e),
                    }
                }
                Err(e) => break self.protocol_error(id, index, &e),
            };
            let st = st.get_or_insert_with(|| self.lock());
            if *owned != Some(header.sender) {
                let frame = fr.peek_mut(len);
                let (at, nsp_len) = header.nsp;
                let nsp = String::from_utf8_lossy(&frame[4 + at..4 + at + nsp_len]);
                match self.learn(st, id, header.sender, &nsp) {
                    Err(()) => break self.too_many_uids(id, index),
                    Ok(false) => {
                        fr.consume(len);
                        continue;
                    }
                    Ok(true) => *owned = Some(header.sender),
                }
            }
            self.relay(st, id, index, fr, len, &header, &mut n);
        };
        drop(st);
        let stats = &self.inner.stats;
        for (counter, v) in [
            (&stats.frames_in, n.frames_in),
            (&stats.frames_out, n.frames_out),
            (&stats.published, n.published),
            (&stats.sent, n.sent),
            (&stats.unknown_target, n.unknown_target),
        ] {
            if v > 0 {
                counter.fetch_add(v, Ordering::Relaxed);
            }
        }
        outcome
    }

    /// Forwards the `Publish` or `Send` frame of `len` bytes at the front of
    /// `fr` as a `Frame` (same bytes after the kind, minus a `Send`'s
    /// target), and consumes it.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        &self,
        st: &State,
        id: ConnId,
        index: u32,
        fr: &mut FrameReader,
        len: usize,
        header: &RelayHeader,
        n: &mut BatchStats,
    ) {
        // `len | kind | sender` then, for a Send, the 8 target bytes to drop.
        let skip = if header.target.is_some() { 8 } else { 0 };
        let out_len = len - skip;
        let target = match header.target {
            None => None,
            Some(target) => match st.uid_owner.get(&target).and_then(|c| st.conns.get(c)) {
                Some(conn) => Some(conn),
                None if self.relay_remote(&fr.peek_mut(len)[..], Some(target)) => {
                    n.sent += 1;
                    fr.consume(len);
                    return;
                }
                None => {
                    n.unknown_target += 1;
                    debug!(
                        worker = index,
                        target = format_args!("{target:016x}"),
                        "send to unknown uid dropped"
                    );
                    fr.consume(len);
                    return;
                }
            },
        };
        if target.is_none() {
            self.relay_remote(&fr.peek_mut(len)[..], None);
        }
        let frame = fr.peek_mut(len);
        let payload_len = (out_len - 4) as u32;
        if out_len <= COPY_MAX {
            let frame = &*frame;
            let put = |p: &mut crate::link::outq::Pending| {
                let buf = p.buf(out_len);
                buf.put_u32_le(payload_len);
                buf.put_u8(ipc::FRAME_KIND);
                buf.put_slice(&frame[5..13]);
                buf.put_slice(&frame[13 + skip..]);
            };
            match target {
                Some(conn) => {
                    n.sent += 1;
                    n.frames_out += u64::from(self.push_with(conn, out_len, put));
                }
                None => {
                    n.published += 1;
                    for (other_id, other) in st.conns.iter() {
                        if *other_id != id {
                            n.frames_out += u64::from(self.push_with(other, out_len, put));
                        }
                    }
                }
            }
            fr.consume(len);
            return;
        }
        // A large frame: rewrite its header in place and queue it by
        // reference to every destination (no copy).
        if skip > 0 {
            frame.copy_within(5..13, 5 + skip);
        }
        let head = &mut frame[skip..skip + 5];
        head[..4].copy_from_slice(&payload_len.to_le_bytes());
        head[4] = ipc::FRAME_KIND;
        let mut owned = fr.take(len);
        bytes::Buf::advance(&mut owned, skip);
        let out = owned.freeze();
        match target {
            Some(conn) => {
                n.sent += 1;
                n.frames_out += u64::from(self.push(conn, out));
            }
            None => {
                n.published += 1;
                for (other_id, other) in st.conns.iter() {
                    if *other_id != id {
                        n.frames_out += u64::from(self.push(other, out.clone()));
                    }
                }
            }
        }
    }

    fn protocol_error(&self, id: ConnId, index: u32, e: &ipc::CodecError) -> Outcome {
        bump(&self.inner.stats.protocol_errors);
        warn!(conn = id, worker = index, error = %e, "protocol error, dropping worker link");
        Outcome::Disconnect
    }

    /// Handles a frame that is not relayed.
    fn handle_other(&self, id: ConnId, index: u32, msg: ToHub) -> Outcome {
        match msg {
            ToHub::Hello { .. } => {
                bump(&self.inner.stats.protocol_errors);
                warn!(
                    conn = id,
                    worker = index,
                    "second Hello, dropping worker link"
                );
                Outcome::Disconnect
            }
            ToHub::SessionOpened { sid } => {
                self.notify(HubEvent::SessionOpened { index, sid });
                Outcome::Continue
            }
            ToHub::SessionClosed { sid } => {
                self.notify(HubEvent::SessionClosed { index, sid });
                Outcome::Continue
            }
            // Relayed kinds are routed by `route_batch`; reaching here would
            // be a bug in `RelayHeader::parse`, treat it as bad input.
            ToHub::Publish { .. } | ToHub::Send { .. } => {
                bump(&self.inner.stats.protocol_errors);
                warn!(conn = id, worker = index, "unexpected relay frame");
                Outcome::Disconnect
            }
        }
    }

    fn too_many_uids(&self, id: ConnId, index: u32) -> Outcome {
        bump(&self.inner.stats.protocol_errors);
        warn!(
            conn = id,
            worker = index,
            max = MAX_UIDS_PER_WORKER,
            "too many node uids, dropping worker link"
        );
        Outcome::Disconnect
    }
}

/// Writes a link's queue to its socket until the queue ends or the link is
/// closed; on close, whatever is still queued or half written is dropped at
/// once (even while blocked on a full socket), which frees it.
async fn write_loop(mut wr: OwnedWriteHalf, out: Arc<OutQueue>, ctl: Arc<LinkCtl>) {
    let mut close_rx = ctl.close.subscribe();
    let finished = tokio::select! {
        r = out.drain(&mut wr) => r.is_ok(),
        _ = closed(&mut close_rx) => false,
    };
    if finished {
        let _ = wr.shutdown().await;
    } else {
        out.discard();
        ctl.close();
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::worker::{Incoming, LinkOptions, LinkReceiver, LinkSender, WorkerLink};
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct Events(StdMutex<Vec<HubEvent>>);

    impl HubObserver for Events {
        fn on_event(&self, event: HubEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn opts() -> LinkOptions {
        LinkOptions {
            exit_on_close: false,
            ..LinkOptions::default()
        }
    }

    async fn link(hub: &Hub, index: u32) -> (LinkSender, LinkReceiver) {
        let (a, b) = UnixStream::pair().unwrap();
        hub.attach(a, Attach::Trusted { index });
        WorkerLink::connect_stream(b, index, "", ipc::DEFAULT_MAX_FRAME, opts())
            .await
            .unwrap()
    }

    async fn next(rx: &mut LinkReceiver) -> Incoming {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("timely message")
            .expect("open link")
    }

    async fn nothing(rx: &mut LinkReceiver) {
        let r = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        assert!(r.is_err(), "unexpected message {r:?}");
    }

    #[tokio::test]
    async fn relay_and_fast_leave_in_process() {
        let events = Arc::new(Events::default());
        let hub = Hub::new(HubConfig::default(), Some(events.clone()));
        let (s0, mut r0) = link(&hub, 0).await;
        let (s1, mut r1) = link(&hub, 1).await;
        let (s2, mut r2) = link(&hub, 2).await;

        s0.publish(10, "/", b"from-0").unwrap();
        for rx in [&mut r1, &mut r2] {
            assert_eq!(
                next(rx).await,
                Incoming::Frame {
                    nsp: "/".into(),
                    from: 10,
                    frame: Bytes::from_static(b"from-0")
                }
            );
        }
        nothing(&mut r0).await;

        // Worker 2 announces its node, then worker 1 answers node 10 only.
        s2.publish(12, "/", b"hb").unwrap();
        next(&mut r0).await;
        next(&mut r1).await;
        s1.send(11, 10, "/", b"resp").unwrap();
        assert_eq!(
            next(&mut r0).await,
            Incoming::Frame {
                nsp: "/".into(),
                from: 11,
                frame: Bytes::from_static(b"resp")
            }
        );
        nothing(&mut r2).await;
        s1.send(11, 999, "/", b"lost").unwrap();
        s1.session_opened("abc").unwrap();
        nothing(&mut r0).await;
        assert_eq!(hub.stats().unknown_target, 1);

        // Worker 1 goes away: the others learn node 11 left.
        drop(s1);
        drop(r1);
        for rx in [&mut r0, &mut r2] {
            assert_eq!(
                next(rx).await,
                Incoming::NodeDown {
                    uid: 11,
                    nsp: "/".into()
                }
            );
        }
        let ev = events.0.lock().unwrap().clone();
        assert!(ev.contains(&HubEvent::SessionOpened {
            index: 1,
            sid: "abc".into()
        }));
        assert!(
            ev.iter()
                .any(|e| matches!(e, HubEvent::WorkerDown { index: 1, .. }))
        );
        assert_eq!(hub.attached_count(), 2);
    }

    #[tokio::test]
    async fn frames_of_every_size_arrive_intact_in_order() {
        let hub = Hub::new(HubConfig::default(), None);
        let (s0, mut r0) = link(&hub, 0).await;
        let (s1, mut r1) = link(&hub, 1).await;
        s1.publish(11, "/b", b"hi").unwrap();
        next(&mut r0).await;
        // Sizes around the copy thresholds, sent and published, interleaved.
        let sizes = [0usize, 1, 100, 511, 512, 513, 4096, 20_000, 70_000, 3];
        for (i, &n) in sizes.iter().enumerate() {
            let frame: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            if i % 2 == 0 {
                s0.send(10, 11, "/nsp", &frame).unwrap();
            } else {
                s0.publish(10, "/nsp", &frame).unwrap();
            }
        }
        for (i, &n) in sizes.iter().enumerate() {
            let frame: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            assert_eq!(
                next(&mut r1).await,
                Incoming::Frame {
                    nsp: "/nsp".into(),
                    from: 10,
                    frame: Bytes::from(frame)
                },
                "frame {i} of {n} bytes"
            );
        }
        let st = hub.stats();
        assert_eq!((st.sent, st.published), (5, 6), "{st:?}");
    }

    #[tokio::test]
    async fn oversize_frame_drops_only_the_sender() {
        let config = HubConfig {
            max_frame: 1024,
            ..HubConfig::default()
        };
        let hub = Hub::new(config, None);
        let (_s0, mut r0) = link(&hub, 0).await;
        let (a, b) = UnixStream::pair().unwrap();
        hub.attach(a, Attach::Trusted { index: 1 });
        // The worker side allows more than the hub does.
        let (s1, _r1) = WorkerLink::connect_stream(b, 1, "", 1 << 20, opts())
            .await
            .unwrap();
        s1.publish(7, "/", b"small").unwrap();
        next(&mut r0).await;
        s1.publish(7, "/", vec![0u8; 4096]).unwrap();
        assert_eq!(
            next(&mut r0).await,
            Incoming::NodeDown {
                uid: 7,
                nsp: "/".into()
            }
        );
        assert_eq!(hub.stats().protocol_errors, 1);
        assert_eq!(hub.attached_count(), 1);
        // The worker side refuses frames above its own limit before sending.
        assert!(matches!(
            s1.publish(7, "/", vec![0u8; 2 << 20]),
            Err(crate::link::worker::LinkError::TooLarge { .. })
        ));
    }

    /// A raw link that said Hello and got its Welcome; the caller decides
    /// what to write and whether to ever read again.
    async fn raw_link(hub: &Hub, index: u32) -> (ConnId, UnixStream) {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = UnixStream::pair().unwrap();
        let conn = hub.attach(a, Attach::Trusted { index });
        let hello = ToHub::Hello {
            version: ipc::PROTOCOL_VERSION,
            worker: index,
            pid: 1,
            token: String::new(),
        };
        b.write_all(&hello.encode()).await.unwrap();
        let mut welcome = [0u8; 4 + 7];
        b.read_exact(&mut welcome).await.unwrap();
        assert_eq!(welcome[4], 0x81, "welcome");
        (conn, b)
    }

    #[tokio::test]
    async fn garbage_frame_drops_only_the_sender_and_is_reported() {
        let hub = Hub::new(HubConfig::default(), None);
        let (s0, mut r0) = link(&hub, 0).await;
        let (_s1, mut r1) = link(&hub, 1).await;
        let (conn, mut bad) = raw_link(&hub, 2).await;
        let dropped = hub.dropped(conn);
        let publish = ToHub::Publish {
            sender: 0xbad,
            nsp: "/".into(),
            frame: Bytes::from_static(b"hi"),
        };
        bad.write_all(&publish.encode()).await.unwrap();
        next(&mut r0).await;
        next(&mut r1).await;
        // A well-framed payload of an unknown kind.
        bad.write_all(&[3, 0, 0, 0, 0x7e, 1, 2]).await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("dropped in time");
        assert_eq!(reason, DropReason::Protocol);
        for rx in [&mut r0, &mut r1] {
            assert_eq!(
                next(rx).await,
                Incoming::NodeDown {
                    uid: 0xbad,
                    nsp: "/".into()
                }
            );
        }
        let st = hub.stats();
        assert_eq!(st.protocol_errors, 1);
        assert_eq!(hub.attached_count(), 2);
        // The others still talk.
        s0.publish(10, "/", b"after").unwrap();
        assert!(matches!(
            next(&mut r1).await,
            Incoming::Frame { from: 10, .. }
        ));
    }

    #[tokio::test]
    async fn a_worker_that_stops_reading_is_dropped_at_the_queue_limit() {
        let limit = 256 * 1024;
        let hub = Hub::new(
            HubConfig {
                max_queued_bytes: limit,
                ..HubConfig::default()
            },
            None,
        );
        let (s0, _r0) = link(&hub, 0).await;
        let (_s1, mut r1) = link(&hub, 1).await;
        let (conn, mut stalled) = raw_link(&hub, 2).await;
        let dropped = hub.dropped(conn);
        let announce = ToHub::Publish {
            sender: 0x57a11,
            nsp: "/".into(),
            frame: Bytes::from_static(b"hb"),
        };
        stalled.write_all(&announce.encode()).await.unwrap();
        next(&mut r1).await;
        // From here on `stalled` is never read. Publish 4 MiB, 16x the limit.
        let frames = 256;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < frames {
                match next(&mut r1).await {
                    Incoming::Frame { from: 10, .. } => got += 1,
                    Incoming::NodeDown { uid: 0x57a11, .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            got
        });
        for i in 0..frames {
            s0.publish(10, "/", vec![i as u8; 16 * 1024]).unwrap();
            tokio::task::yield_now().await;
        }
        let reason = tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("dropped in time");
        assert_eq!(reason, DropReason::QueueOverflow);
        // Every frame reached the worker that kept reading.
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("reader done")
            .unwrap();
        assert_eq!(got, frames);
        let st = hub.stats();
        assert_eq!(st.queue_overflows, 1, "{st:?}");
        assert_eq!(st.protocol_errors, 0);
        assert_eq!(hub.attached_count(), 2);
        drop(stalled);
    }

    #[tokio::test]
    async fn dropped_never_resolves_for_a_normal_close_or_detach() {
        let hub = Hub::new(HubConfig::default(), None);
        let (conn, link) = raw_link(&hub, 0).await;
        let dropped = hub.dropped(conn);
        drop(link);
        let r = tokio::time::timeout(Duration::from_millis(100), dropped).await;
        assert!(r.is_err(), "a worker closing its link is not a drop");
        let (conn, _link) = raw_link(&hub, 1).await;
        let dropped = hub.dropped(conn);
        hub.detach(conn);
        let r = tokio::time::timeout(Duration::from_millis(100), dropped).await;
        assert!(r.is_err(), "detach is not a drop");
        // Detach works before the Hello too.
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = hub.attach(a, Attach::Trusted { index: 2 });
        tokio::task::yield_now().await;
        hub.detach(conn);
        tokio::time::timeout(Duration::from_secs(5), async {
            while hub.lock().links.contains_key(&conn) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the link task ends");
    }

    #[tokio::test]
    async fn uid_of_another_worker_is_not_stolen() {
        let hub = Hub::new(HubConfig::default(), None);
        let (s0, mut r0) = link(&hub, 0).await;
        let (s1, mut r1) = link(&hub, 1).await;
        let (_s2, mut r2) = link(&hub, 2).await;
        s0.publish(5, "/", b"mine").unwrap();
        next(&mut r1).await;
        next(&mut r2).await;
        s1.publish(5, "/", b"spoof").unwrap();
        nothing(&mut r2).await;
        nothing(&mut r0).await;
        assert_eq!(hub.stats().uid_conflicts, 1);
        // Responses for uid 5 still reach worker 0.
        let _ = &mut r1;
        _s2.send(6, 5, "/", b"to-5").unwrap();
        assert!(matches!(
            next(&mut r0).await,
            Incoming::Frame { from: 6, .. }
        ));
    }
}
