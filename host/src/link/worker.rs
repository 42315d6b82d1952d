//! Worker side of the hub link.
//!
//! A worker process started by `sio-cluster-host run` (or by another supervisor
//! attaching to `sio-cluster-host hub --socket PATH`) reads its settings from
//! the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `SIO_CLUSTER_IPC` | hub link: `fd:N` (an inherited Unix stream socket, set by `run`) or the path of the hub's socket (`hub --socket`) |
//! | `SIO_CLUSTER_TOKEN` | attach token, required with a socket path (or `SIO_CLUSTER_TOKEN_FILE`) |
//! | `SIO_CLUSTER_TOKEN_FILE` | file holding the attach token (`<socket>.token` written by `hub`) |
//! | `SIO_CLUSTER_WORKER` | this worker's index, 0-based (default 0) |
//! | `SIO_CLUSTER_WORKERS` | number of workers in the cluster (set by `run`) |
//! | `SIO_CLUSTER_LISTEN` | private loopback address the worker must serve HTTP on (set by `run`) |
//! | `SIO_CLUSTER_LISTEN_FD` | an inherited, already bound and listening TCP socket for that address (set by `run`); use it rather than binding, see [`WorkerEnv::http_listener`] |
//! | `SIO_CLUSTER_HANDOFF` | `fd:N`, a socket on which the primary passes WebSocket connections (only with `run --handoff-websocket`); see [`WorkerEnv::handoff_receiver`] and [`crate::link::handoff`] |
//! | `SIO_CLUSTER_HEARTBEAT_INTERVAL` | adapter heartbeat interval in ms (default 5000) |
//! | `SIO_CLUSTER_HEARTBEAT_TIMEOUT` | adapter heartbeat timeout in ms (default 10000) |
//! | `SIO_CLUSTER_MAX_FRAME` | largest frame payload in bytes (default 64 MiB) |
//! | `SIO_CLUSTER_INSTANCE_MEMORY` | memory cap of each adapter instance in bytes (default 64 MiB) |
//! | `SIO_CLUSTER_INSTANCE_CPU_MS` | CPU bound of one call into an adapter instance in ms (default 1000) |
//! | `SIO_CLUSTER_MAX_QUEUED` | bytes each direction of the link may queue in this process (default 64 MiB), see below |
//! | `SIO_CLUSTER_STATS_INTERVAL` | ms between the worker's `WorkerStats` reports to the primary (set by `run --metrics`; unset: never report), see [`crate::link::ipc`] |
//! | `SIO_CLUSTER_GRACE` | ms the primary waits after SIGTERM before SIGKILL (`--grace-period`); a worker drains within it |
//!
//! **Link-close policy:** when the link to the hub closes (the primary exited or
//! was killed, or the hub dropped this worker for a protocol error), the worker
//! process exits at once with [`LINK_CLOSED_EXIT_CODE`] (default of
//! [`LinkOptions`]), so killing the primary never leaves orphans; the primary
//! restarts workers it still supervises. There is no reconnection. With
//! `exit_on_close: false`, [`LinkReceiver::recv`] returns `None` instead and
//! the application decides. A failed write to the hub closes the link the
//! same way (even while the application is not reading).
//!
//! **Backpressure.** Both directions are bounded by
//! [`LinkOptions::max_queued_bytes`] (`SIO_CLUSTER_MAX_QUEUED`):
//! * *outgoing*: [`LinkSender`] never blocks; a frame that would take the
//!   bytes not yet written to the hub past the limit is refused with
//!   [`LinkError::QueueFull`] and counted ([`LinkSender::refused_full`]), the
//!   link stays up. The hub reads every link continuously, so this only
//!   happens when the primary is stuck; a frame alone larger than the limit
//!   is accepted when nothing else is queued;
//! * *incoming*: messages wait in memory until [`LinkReceiver::recv`] takes
//!   them, up to the limit (a message counts its frame length plus 64 bytes;
//!   the receiver takes queued messages in batches, and a batch counts until
//!   the receiver comes back for the next one).
//!   At the limit the link stops reading its socket, so the hub's queue for
//!   this worker grows instead, and the hub drops the worker at
//!   `--max-queued-bytes` (see [`crate::primary::hub`]): a worker that stops reading
//!   uses at most this limit plus one frame, it never grows without bound.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tracing::{debug, error};

use crate::link::handoff::HandoffReceiver;
use crate::link::ipc::{self, FrameReader, FromHub, ReadError, ToHub};
use crate::link::outq::{COPY_MAX, ENCODE_MAX, OutQueue};

/// Exit code of a worker whose hub link closed (see the module docs).
pub const LINK_CLOSED_EXIT_CODE: i32 = 75;

/// Default of [`LinkOptions::max_queued_bytes`]: 64 MiB.
pub const DEFAULT_MAX_QUEUED: usize = 64 * 1024 * 1024;

/// Bytes an incoming message costs on top of its frame (bookkeeping), so
/// that many empty messages are bounded too.
const MESSAGE_OVERHEAD: usize = 64;

/// Errors of the worker side.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A required environment variable is missing.
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// An environment variable has an unusable value.
    #[error("environment variable {name} is invalid: {reason}")]
    BadEnv {
        /// Variable name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// I/O on the link failed.
    #[error("hub link i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The hub refused the Hello.
    #[error("hub refused this worker: {0}")]
    Refused(String),
    /// The hub broke the protocol.
    #[error("hub protocol error: {0}")]
    Protocol(String),
    /// No Welcome in time.
    #[error("timed out waiting for the hub's welcome")]
    Timeout,
    /// A frame is larger than `SIO_CLUSTER_MAX_FRAME`; it was not sent.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Encoded payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The outgoing queue is full (the hub does not read); the frame was not
    /// sent. See the module docs.
    #[error("hub link queue full: {queued} bytes waiting, limit {max} bytes")]
    QueueFull {
        /// Bytes waiting to be written.
        queued: usize,
        /// [`LinkOptions::max_queued_bytes`].
        max: usize,
    },
    /// A string field is too long for the wire format.
    #[error(transparent)]
    Codec(#[from] ipc::CodecError),
    /// The link is closed.
    #[error("hub link closed")]
    Closed,
}

/// Where the hub link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpcEndpoint {
    /// An inherited file descriptor (Unix stream socket).
    Fd(RawFd),
    /// A Unix socket path to connect to.
    Path(PathBuf),
}

/// Settings a worker reads from its environment (see the module docs).
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    /// `SIO_CLUSTER_IPC`.
    pub ipc: IpcEndpoint,
    /// `SIO_CLUSTER_TOKEN` or the content of `SIO_CLUSTER_TOKEN_FILE`.
    pub token: Option<String>,
    /// `SIO_CLUSTER_WORKER`.
    pub index: u32,
    /// `SIO_CLUSTER_WORKERS`.
    pub workers: Option<u32>,
    /// `SIO_CLUSTER_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `SIO_CLUSTER_LISTEN_FD`.
    pub listen_fd: Option<RawFd>,
    /// `SIO_CLUSTER_HANDOFF` (the fd number).
    pub handoff_fd: Option<RawFd>,
    /// `SIO_CLUSTER_HEARTBEAT_INTERVAL`.
    pub heartbeat_interval: Duration,
    /// `SIO_CLUSTER_HEARTBEAT_TIMEOUT`.
    pub heartbeat_timeout: Duration,
    /// `SIO_CLUSTER_MAX_FRAME`.
    pub max_frame: usize,
    /// `SIO_CLUSTER_INSTANCE_MEMORY`: memory cap of each adapter instance (bytes).
    pub instance_memory: Option<usize>,
    /// `SIO_CLUSTER_INSTANCE_CPU_MS`: CPU bound of one call into an instance (ms).
    pub instance_cpu_ms: Option<u64>,
    /// `SIO_CLUSTER_MAX_QUEUED`; overrides [`LinkOptions::max_queued_bytes`]
    /// in [`WorkerLink::connect`] when set.
    pub max_queued: Option<usize>,
    /// `SIO_CLUSTER_STATS_INTERVAL`: report `WorkerStats` this often (only
    /// when set: the primary then reads them).
    pub stats_interval: Option<Duration>,
    /// `SIO_CLUSTER_GRACE`: time between the primary's SIGTERM and its SIGKILL.
    pub grace: Option<Duration>,
}

fn var(name: &'static str) -> Result<Option<String>, LinkError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(LinkError::BadEnv {
            name,
            reason: "not valid UTF-8".into(),
        }),
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, LinkError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| LinkError::BadEnv {
        name,
        reason: e.to_string(),
    })
}

/// An optional positive integer variable.
fn positive(name: &'static str) -> Result<Option<usize>, LinkError> {
    match var(name)? {
        None => Ok(None),
        Some(v) => match parse::<usize>(name, &v)? {
            0 => Err(LinkError::BadEnv {
                name,
                reason: "must be at least 1".into(),
            }),
            n => Ok(Some(n)),
        },
    }
}

fn parse_fd(name: &'static str, v: &str) -> Result<RawFd, LinkError> {
    let fd: RawFd = parse(name, v)?;
    if fd < 0 {
        return Err(LinkError::BadEnv {
            name,
            reason: "negative file descriptor".into(),
        });
    }
    Ok(fd)
}

impl WorkerEnv {
    /// Reads the environment of this process.
    pub fn from_env() -> Result<WorkerEnv, LinkError> {
        let ipc = match var("SIO_CLUSTER_IPC")? {
            None => return Err(LinkError::MissingEnv("SIO_CLUSTER_IPC")),
            Some(v) => match v.strip_prefix("fd:") {
                Some(fd) => IpcEndpoint::Fd(parse_fd("SIO_CLUSTER_IPC", fd)?),
                None if v.is_empty() => {
                    return Err(LinkError::BadEnv {
                        name: "SIO_CLUSTER_IPC",
                        reason: "empty".into(),
                    });
                }
                None => IpcEndpoint::Path(PathBuf::from(v)),
            },
        };
        let token = match var("SIO_CLUSTER_TOKEN")? {
            Some(t) => Some(t.trim().to_string()),
            None => match var("SIO_CLUSTER_TOKEN_FILE")? {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| LinkError::BadEnv {
                            name: "SIO_CLUSTER_TOKEN_FILE",
                            reason: format!("{path}: {e}"),
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            },
        };
        let ms = |name: &'static str, default: u64| -> Result<Duration, LinkError> {
            Ok(Duration::from_millis(match var(name)? {
                Some(v) => parse(name, &v)?,
                None => default,
            }))
        };
        Ok(WorkerEnv {
            ipc,
            token,
            index: match var("SIO_CLUSTER_WORKER")? {
                Some(v) => parse("SIO_CLUSTER_WORKER", &v)?,
                None => 0,
            },
            workers: var("SIO_CLUSTER_WORKERS")?
                .map(|v| parse("SIO_CLUSTER_WORKERS", &v))
                .transpose()?,
            listen: var("SIO_CLUSTER_LISTEN")?
                .map(|v| parse("SIO_CLUSTER_LISTEN", &v))
                .transpose()?,
            listen_fd: var("SIO_CLUSTER_LISTEN_FD")?
                .map(|v| parse_fd("SIO_CLUSTER_LISTEN_FD", &v))
                .transpose()?,
            handoff_fd: match var("SIO_CLUSTER_HANDOFF")? {
                Some(v) => match v.strip_prefix("fd:") {
                    Some(fd) => Some(parse_fd("SIO_CLUSTER_HANDOFF", fd)?),
                    None => {
                        return Err(LinkError::BadEnv {
                            name: "SIO_CLUSTER_HANDOFF",
                            reason: "expected fd:N".into(),
                        });
                    }
                },
                None => None,
            },
            heartbeat_interval: ms("SIO_CLUSTER_HEARTBEAT_INTERVAL", 5000)?,
            heartbeat_timeout: ms("SIO_CLUSTER_HEARTBEAT_TIMEOUT", 10000)?,
            max_frame: match var("SIO_CLUSTER_MAX_FRAME")? {
                Some(v) => parse("SIO_CLUSTER_MAX_FRAME", &v)?,
                None => ipc::DEFAULT_MAX_FRAME,
            },
            instance_memory: positive("SIO_CLUSTER_INSTANCE_MEMORY")?,
            instance_cpu_ms: positive("SIO_CLUSTER_INSTANCE_CPU_MS")?.map(|n| n as u64),
            max_queued: match var("SIO_CLUSTER_MAX_QUEUED")? {
                Some(v) => match parse::<usize>("SIO_CLUSTER_MAX_QUEUED", &v)? {
                    0 => {
                        return Err(LinkError::BadEnv {
                            name: "SIO_CLUSTER_MAX_QUEUED",
                            reason: "must be at least 1".into(),
                        });
                    }
                    n => Some(n),
                },
                None => None,
            },
            stats_interval: positive("SIO_CLUSTER_STATS_INTERVAL")?
                .map(|n| Duration::from_millis(n as u64)),
            grace: var("SIO_CLUSTER_GRACE")?
                .map(|v| parse::<u64>("SIO_CLUSTER_GRACE", &v).map(Duration::from_millis))
                .transpose()?,
        })
    }

    /// The listener the worker must serve HTTP on (non-blocking, ready for
    /// `tokio::net::TcpListener::from_std`).
    ///
    /// Takes the inherited `SIO_CLUSTER_LISTEN_FD` when set (call this once),
    /// else binds `SIO_CLUSTER_LISTEN`, else binds `127.0.0.1:0`.
    pub fn http_listener(&self) -> Result<std::net::TcpListener, LinkError> {
        let listener = if let Some(fd) = self.listen_fd {
            check_socket(fd, "SIO_CLUSTER_LISTEN_FD")?;
            // SAFETY: the fd was checked to be an open socket; the supervisor
            // passed it for this process to own.
            unsafe { std::net::TcpListener::from_raw_fd(fd) }
        } else {
            let addr = self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            std::net::TcpListener::bind(addr)?
        };
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

impl WorkerEnv {
    /// The receiver of handed-off WebSocket connections, when the primary
    /// enabled handoff (`SIO_CLUSTER_HANDOFF`); call once, inside a tokio
    /// runtime. A worker that gets `Some` must keep accepting from it.
    pub fn handoff_receiver(&self) -> Result<Option<HandoffReceiver>, LinkError> {
        let Some(fd) = self.handoff_fd else {
            return Ok(None);
        };
        check_socket(fd, "SIO_CLUSTER_HANDOFF")?;
        // SAFETY: checked to be an open socket handed to this process.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Some(HandoffReceiver::new(owned)?))
    }
}

/// Fails unless `fd` is an open socket; then marks it close-on-exec so that
/// processes the worker spawns do not inherit it (an inherited hub link would
/// outlive the worker and delay its nodes' fast leave).
fn check_socket(fd: RawFd, name: &'static str) -> Result<(), LinkError> {
    // SAFETY: fstat only writes into the provided struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(fd, &mut st) };
    if rc != 0 {
        return Err(LinkError::BadEnv {
            name,
            reason: format!("fd {fd}: {}", std::io::Error::last_os_error()),
        });
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(LinkError::BadEnv {
            name,
            reason: format!("fd {fd} is not a socket"),
        });
    }
    // SAFETY: F_SETFD on an fd checked to be open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(LinkError::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// What to do when the link closes, and how much it may queue.
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// Exit the process when the link closes (default true).
    pub exit_on_close: bool,
    /// Exit code used then (default [`LINK_CLOSED_EXIT_CODE`]).
    pub exit_code: i32,
    /// Time allowed for the hub's Welcome (default 10 s).
    pub welcome_timeout: Duration,
    /// Bytes each direction may hold in this process (default
    /// [`DEFAULT_MAX_QUEUED`]); see the module docs.
    pub max_queued_bytes: usize,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            exit_on_close: true,
            exit_code: LINK_CLOSED_EXIT_CODE,
            welcome_timeout: Duration::from_secs(10),
            max_queued_bytes: DEFAULT_MAX_QUEUED,
        }
    }
}

/// A message from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An adapter frame from another node.
    Frame {
        /// Namespace of the sending node (shared by the frames of a run).
        nsp: Arc<str>,
        /// Uid of the sending node.
        from: u64,
        /// Opaque adapter frame. Above 512 bytes it is a slice of the link's
        /// read buffer (no copy), which it keeps alive while held; smaller
        /// frames are copied into 16 KiB blocks shared with their neighbours.
        frame: Bytes,
    },
    /// A node left because its worker's link closed.
    NodeDown {
        /// Uid of the node.
        uid: u64,
        /// Its namespace.
        nsp: Arc<str>,
    },
}

/// Sending half of the link. Cheap to clone; methods never block; the queue
/// is bounded (see the module docs).
#[derive(Clone, Debug)]
pub struct LinkSender {
    out: Arc<SenderCore>,
    index: u32,
    max_frame: usize,
    max_queued: usize,
    refused_full: Arc<AtomicU64>,
}

/// The outgoing queue, closed (after what is queued is written) when the
/// last [`LinkSender`] clone is dropped.
#[derive(Debug)]
struct SenderCore(Arc<OutQueue>);

impl Drop for SenderCore {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Receiving half of the link. Messages it holds count against
/// [`LinkOptions::max_queued_bytes`] until [`LinkReceiver::recv`] takes them.
#[derive(Debug)]
pub struct LinkReceiver {
    inq: Arc<InQueue>,
    /// The batch taken from `inq` at once, handed out one by one.
    held: VecDeque<Incoming>,
    index: u32,
}

impl Drop for LinkReceiver {
    fn drop(&mut self) {
        // Later messages are discarded; a reader waiting for room goes on.
        let mut st = self.inq.lock();
        st.receiver_gone = true;
        st.msgs.clear();
        st.msgs_cost = 0;
        st.held_cost = 0;
        st.reader_needs = None;
        drop(st);
        self.inq.room.notify_one();
    }
}

/// Messages read from the hub and not yet taken by [`LinkReceiver::recv`].
#[derive(Debug)]
struct InQueue {
    /// Budget in bytes ([`LinkOptions::max_queued_bytes`]).
    max: usize,
    state: Mutex<InState>,
    /// Wakes the receiver: a message arrived or the link closed.
    ready: Notify,
    /// Wakes the reader: room for the message it waits to queue.
    room: Notify,
}

#[derive(Debug, Default)]
struct InState {
    /// Messages not yet taken by the receiver.
    msgs: VecDeque<Incoming>,
    /// Sum of the costs of `msgs` (see [`MESSAGE_OVERHEAD`]).
    msgs_cost: usize,
    /// Cost of the batch the receiver took last and may still hold; it
    /// counts until the receiver comes back for more.
    held_cost: usize,
    /// Cost of the message the reader waits to queue, if it waits.
    reader_needs: Option<usize>,
    /// The reader stopped: no more messages.
    closed: bool,
    /// The [`LinkReceiver`] was dropped: messages are discarded.
    receiver_gone: bool,
}

impl InQueue {
    fn new(max: usize) -> InQueue {
        InQueue {
            max,
            state: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, InState> {
        // A poisoned lock only means a panic elsewhere; the queue stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

/// Whether a message of `cost` may join a queue holding `queued` under `max`
/// (a message alone larger than `max` is taken when the queue is empty).
fn fits(queued: usize, cost: usize, max: usize) -> bool {
    queued == 0 || queued + cost <= max
}

/// Entry points that open the link.
pub struct WorkerLink;

impl WorkerLink {
    /// Opens the link described by the environment, with default options
    /// (exit the process when the link closes).
    pub async fn connect_from_env() -> Result<(LinkSender, LinkReceiver), LinkError> {
        let env = WorkerEnv::from_env()?;
        Self::connect(&env, LinkOptions::default()).await
    }

    /// Opens the link described by `env`.
    pub async fn connect(
        env: &WorkerEnv,
        options: LinkOptions,
    ) -> Result<(LinkSender, LinkReceiver), LinkError> {
        let stream = match &env.ipc {
            IpcEndpoint::Fd(fd) => {
                check_socket(*fd, "SIO_CLUSTER_IPC")?;
                // SAFETY: checked to be an open socket handed to this process.
                let owned = unsafe { OwnedFd::from_raw_fd(*fd) };
                let std_stream = std::os::unix::net::UnixStream::from(owned);
                std_stream.set_nonblocking(true)?;
                UnixStream::from_std(std_stream)?
            }
            IpcEndpoint::Path(p) => UnixStream::connect(p).await?,
        };
        let token = env.token.clone().unwrap_or_default();
        ipc::check_str(&token)?;
        let mut options = options;
        if let Some(m) = env.max_queued {
            options.max_queued_bytes = m;
        }
        Self::handshake(stream, env.index, token, env.max_frame, options).await
    }

    /// Opens a link over an already connected stream (e.g. one end of
    /// `UnixStream::pair()` whose other end was given to [`crate::primary::hub::Hub::attach`]),
    /// for in-process use and tests.
    pub async fn connect_stream(
        stream: UnixStream,
        index: u32,
        token: &str,
        max_frame: usize,
        options: LinkOptions,
    ) -> Result<(LinkSender, LinkReceiver), LinkError> {
        ipc::check_str(token)?;
        Self::handshake(stream, index, token.to_string(), max_frame, options).await
    }

    async fn handshake(
        stream: UnixStream,
        index: u32,
        token: String,
        max_frame: usize,
        options: LinkOptions,
    ) -> Result<(LinkSender, LinkReceiver), LinkError> {
        let (mut rd, mut wr) = stream.into_split();
        let mut fr = FrameReader::new(max_frame);
        let hello = ToHub::Hello {
            version: ipc::PROTOCOL_VERSION,
            worker: index,
            pid: std::process::id(),
            token,
        }
        .encode();
        wr.write_all(&hello).await?;
        let first = tokio::time::timeout(options.welcome_timeout, fr.read_frame(&mut rd))
            .await
            .map_err(|_| LinkError::Timeout)?;
        let payload = match first {
            Ok(Some(p)) => p,
            Ok(None) => return Err(LinkError::Closed),
            Err(ReadError::Io(e)) => return Err(LinkError::Io(e)),
            Err(ReadError::Codec(e)) => return Err(LinkError::Protocol(e.to_string())),
        };
        let index = match FromHub::decode(payload) {
            Ok(FromHub::Welcome { worker, .. }) => worker,
            Ok(FromHub::Refused { reason }) => return Err(LinkError::Refused(reason)),
            Ok(other) => {
                return Err(LinkError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )));
            }
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };

        let max_queued = options.max_queued_bytes.max(1);
        let out = Arc::new(OutQueue::default());
        let inq = Arc::new(InQueue::new(max_queued));
        let write_failed = Arc::new(Notify::new());
        let writer_out = out.clone();
        let writer_failed = write_failed.clone();
        tokio::spawn(async move {
            if let Err(e) = writer_out.drain(&mut wr).await {
                debug!(error = %e, "hub link write failed");
                // Frames queued from now on are refused as `Closed`.
                writer_out.discard();
                writer_failed.notify_one();
            }
            // Dropping `wr` shuts the write side down: the hub sees the end.
        });
        let reader_inq = inq.clone();
        tokio::spawn(async move {
            let reason = read_loop(&mut rd, fr, &reader_inq, &write_failed).await;
            reader_inq.close();
            if options.exit_on_close {
                error!(%reason, code = options.exit_code, "hub link lost, exiting");
                std::process::exit(options.exit_code);
            }
            debug!(%reason, "hub link lost");
        });
        Ok((
            LinkSender {
                out: Arc::new(SenderCore(out)),
                index,
                max_frame,
                max_queued,
                refused_full: Arc::new(AtomicU64::new(0)),
            },
            LinkReceiver {
                inq,
                held: VecDeque::new(),
                index,
            },
        ))
    }
}

/// Reads the hub's frames into `inq` until the link fails; returns why.
/// Every complete frame of a read is queued at once (one lock, one wake-up);
/// at the budget the loop stops reading the socket until there is room.
async fn read_loop(
    rd: &mut tokio::net::unix::OwnedReadHalf,
    mut fr: FrameReader,
    inq: &InQueue,
    write_failed: &Notify,
) -> String {
    // The namespace of the last frame, shared by the following ones.
    let mut last_nsp: Option<Arc<str>> = None;
    // Small frames are copied here, one allocation shared by many frames.
    let mut small = BytesMut::new();
    loop {
        let mut wait_room = false;
        let mut err = None;
        {
            let mut st = inq.lock();
            let was_empty = st.msgs.is_empty();
            loop {
                let len = match fr.frame_len() {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                };
                let cost = len + MESSAGE_OVERHEAD;
                if !st.receiver_gone && !fits(st.msgs_cost + st.held_cost, cost, inq.max) {
                    st.reader_needs = Some(cost);
                    wait_room = true;
                    break;
                }
                let msg = match incoming(&mut fr, len, &mut last_nsp, &mut small) {
                    Ok(msg) => msg,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                };
                if !st.receiver_gone {
                    st.msgs.push_back(msg);
                    st.msgs_cost += cost;
                }
            }
            let wake = was_empty && !st.msgs.is_empty();
            drop(st);
            if wake {
                inq.ready.notify_one();
            }
        }
        if let Some(e) = err {
            return e;
        }
        if wait_room {
            tokio::select! {
                _ = inq.room.notified() => continue,
                _ = write_failed.notified() => return "write to the hub failed".to_string(),
            }
        }
        let read = tokio::select! {
            r = fr.fill(rd) => r,
            _ = write_failed.notified() => return "write to the hub failed".to_string(),
        };
        match read {
            Ok(true) => {}
            Ok(false) => return "closed by the hub".to_string(),
            Err(e) => return ReadError::Io(e).to_string(),
        }
    }
}

/// Size of the blocks small received frames are copied into.
const SMALL_BLOCK: usize = 16 * 1024;

/// Takes the frame of `len` bytes at the front of `fr` as a message.
fn incoming(
    fr: &mut FrameReader,
    len: usize,
    last_nsp: &mut Option<Arc<str>>,
    small: &mut BytesMut,
) -> Result<Incoming, String> {
    let header = ipc::parse_frame_header(&fr.peek_mut(len)[4..]).map_err(|e| e.to_string())?;
    if let Some((from, nsp, body)) = header {
        let nsp = match last_nsp {
            Some(last) if **last == *nsp => last.clone(),
            _ => {
                let nsp: Arc<str> = Arc::from(nsp);
                *last_nsp = Some(nsp.clone());
                nsp
            }
        };
        let frame = if len <= COPY_MAX {
            // Small frames are copied out of the read buffer, so that small
            // frames kept by the application do not pin whole read buffers;
            // they share 16 KiB blocks instead of one allocation each.
            let body = &fr.peek_mut(len)[4 + body..];
            if small.capacity() - small.len() < body.len() {
                *small = BytesMut::with_capacity(SMALL_BLOCK);
            }
            small.extend_from_slice(body);
            let f = small.split().freeze();
            fr.consume(len);
            f
        } else {
            let mut f = fr.take(len);
            bytes::Buf::advance(&mut f, 4 + body);
            f.freeze()
        };
        return Ok(Incoming::Frame { nsp, from, frame });
    }
    let mut payload = fr.take(len);
    bytes::Buf::advance(&mut payload, 4);
    match FromHub::decode(payload.freeze()) {
        Ok(FromHub::NodeDown { uid, nsp }) => Ok(Incoming::NodeDown {
            uid,
            nsp: Arc::from(nsp),
        }),
        Ok(other) => Err(format!("unexpected frame {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

impl LinkSender {
    /// This worker's index, as confirmed by the hub.
    pub fn worker_index(&self) -> u32 {
        self.index
    }

    /// Bytes queued towards the hub and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.0.queued.load(Ordering::Acquire)
    }

    /// Frames refused with [`LinkError::QueueFull`] so far (all clones).
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }

    /// Queues `total` encoded bytes written by `put`, within the limits.
    fn push_with(
        &self,
        total: usize,
        put: impl FnOnce(&mut crate::link::outq::Pending),
    ) -> Result<(), LinkError> {
        let len = total - 4;
        if len > self.max_frame || len > u32::MAX as usize {
            return Err(LinkError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let out = &self.out.0;
        out.append(|p| {
            if p.is_closed() {
                return Err(LinkError::Closed);
            }
            // Only appends change `queued` upwards, and they hold this lock.
            let before = out.queued.load(Ordering::Acquire);
            if before > 0 && before + total > self.max_queued {
                self.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(LinkError::QueueFull {
                    queued: before,
                    max: self.max_queued,
                });
            }
            out.queued.fetch_add(total, Ordering::AcqRel);
            put(p);
            Ok(())
        })
    }

    fn push(&self, msg: ToHub) -> Result<(), LinkError> {
        let frame = msg.encode();
        self.push_with(frame.len(), |p| {
            p.buf(frame.len()).extend_from_slice(&frame)
        })
    }

    /// Encodes a Publish (or Send) straight into the queue.
    fn relay(
        &self,
        sender: u64,
        target: Option<u64>,
        nsp: &str,
        frame: &[u8],
    ) -> Result<(), LinkError> {
        ipc::check_str(nsp)?;
        let total = 4 + ipc::relay_len(target.is_some(), nsp.len(), frame.len());
        self.push_with(total, |p| {
            if total > ENCODE_MAX {
                let mut buf = BytesMut::with_capacity(total);
                ipc::put_relay(&mut buf, sender, target, nsp, frame);
                p.push_bytes(buf.freeze());
            } else {
                ipc::put_relay(p.buf(total), sender, target, nsp, frame);
            }
        })
    }

    /// Relays `frame` from node `sender_uid` to every other worker.
    pub fn publish(
        &self,
        sender_uid: u64,
        nsp: &str,
        frame: impl AsRef<[u8]>,
    ) -> Result<(), LinkError> {
        self.relay(sender_uid, None, nsp, frame.as_ref())
    }

    /// Relays `frame` from node `sender_uid` to the worker hosting `target_uid`.
    pub fn send(
        &self,
        sender_uid: u64,
        target_uid: u64,
        nsp: &str,
        frame: impl AsRef<[u8]>,
    ) -> Result<(), LinkError> {
        self.relay(sender_uid, Some(target_uid), nsp, frame.as_ref())
    }

    /// Tells the primary an Engine.IO session `sid` now lives on this worker.
    pub fn session_opened(&self, sid: &str) -> Result<(), LinkError> {
        ipc::check_str(sid)?;
        self.push(ToHub::SessionOpened {
            sid: sid.to_string(),
        })
    }

    /// Tells the primary the Engine.IO session `sid` closed.
    pub fn session_closed(&self, sid: &str) -> Result<(), LinkError> {
        ipc::check_str(sid)?;
        self.push(ToHub::SessionClosed {
            sid: sid.to_string(),
        })
    }

    /// Reports this worker's adapter figures to the primary (`WorkerStats`;
    /// send it only when [`WorkerEnv::stats_interval`] is set: a primary
    /// that predates it would drop the link).
    pub fn worker_stats(&self, stats: &ipc::WorkerStats) -> Result<(), LinkError> {
        self.push(ToHub::WorkerStats {
            version: ipc::WORKER_STATS_VERSION,
            values: stats.values().to_vec(),
        })
    }
}

impl LinkReceiver {
    /// This worker's index, as confirmed by the hub.
    pub fn worker_index(&self) -> u32 {
        self.index
    }

    /// The next message from the hub; `None` once the link is closed (only
    /// seen with `exit_on_close: false`).
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            match self.take() {
                Ok(msg) => return Some(msg),
                Err(true) => return None,
                Err(false) => self.inq.ready.notified().await,
            }
        }
    }

    /// The next message if one is already queued (to batch work under load).
    pub fn try_recv(&mut self) -> Option<Incoming> {
        self.take().ok()
    }

    /// Pops a message; `Err(closed)` when there is none. Messages are
    /// taken from the reader in batches (one lock per batch); a batch leaves
    /// the link's budget when the receiver comes back for the next one,
    /// which may let a waiting reader go on.
    fn take(&mut self) -> Result<Incoming, bool> {
        if let Some(msg) = self.held.pop_front() {
            return Ok(msg);
        }
        let mut st = self.inq.lock();
        st.held_cost = 0;
        std::mem::swap(&mut self.held, &mut st.msgs);
        st.held_cost = std::mem::take(&mut st.msgs_cost);
        let closed = st.closed;
        let wake = match st.reader_needs {
            // Wait for half the budget, so the reader then queues many.
            Some(need) => {
                let max = self.inq.max;
                fits(st.held_cost, need.max(max / 2), max)
            }
            None => false,
        };
        if wake {
            st.reader_needs = None;
        }
        drop(st);
        if wake {
            self.inq.room.notify_one();
        }
        self.held.pop_front().ok_or(closed)
    }
}

/// Carrying an adapter node's frames over the link, both ways.
impl LinkSender {
    /// Sends the frames among `effects` of node `uid` (namespace `nsp`) to the
    /// hub — `Publish` to every other worker, `Send` to the worker of the
    /// target node — and returns the effects left for the host, in order.
    pub fn carry(
        &self,
        uid: u64,
        nsp: &str,
        effects: Vec<sio_cluster_adapter::Effect>,
    ) -> Result<Vec<sio_cluster_adapter::Effect>, LinkError> {
        use sio_cluster_adapter::Effect;
        let mut local = Vec::with_capacity(effects.len());
        for e in effects {
            match e {
                Effect::Publish(frame) => self.publish(uid, nsp, frame)?,
                Effect::Send(target, frame) => self.send(uid, target, nsp, frame)?,
                other => local.push(other),
            }
        }
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::hub::{Attach, DropReason, Hub, HubConfig};
    use tokio::io::AsyncReadExt;

    fn opts(max_queued_bytes: usize) -> LinkOptions {
        LinkOptions {
            exit_on_close: false,
            max_queued_bytes,
            ..LinkOptions::default()
        }
    }

    #[tokio::test]
    async fn outgoing_queue_is_bounded_when_the_hub_does_not_read() {
        // A fake hub that welcomes the worker, then never reads again.
        let (ours, mut hub_side) = UnixStream::pair().unwrap();
        let welcome = FromHub::Welcome {
            version: ipc::PROTOCOL_VERSION,
            worker: 0,
        }
        .encode();
        let fake = tokio::spawn(async move {
            let mut hello = [0u8; 64];
            let _ = hub_side.read(&mut hello).await;
            hub_side.write_all(&welcome).await.unwrap();
            hub_side
        });
        let limit = 256 * 1024;
        let (tx, _rx) = WorkerLink::connect_stream(ours, 0, "", 1 << 20, opts(limit))
            .await
            .unwrap();
        let _hub_side = fake.await.unwrap();
        let frame = vec![7u8; 16 * 1024];
        let mut sent = 0usize;
        let mut full = None;
        for _ in 0..10_000 {
            match tx.publish(1, "/", &frame) {
                Ok(()) => sent += 1,
                Err(e @ LinkError::QueueFull { .. }) => {
                    full = Some(e);
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
            tokio::task::yield_now().await;
        }
        assert!(full.is_some(), "the queue filled after {sent} frames");
        assert!(tx.queued_bytes() <= limit, "{}", tx.queued_bytes());
        assert_eq!(tx.refused_full(), 1);
        // Far less than 10 000 frames were accepted: socket buffers + limit.
        assert!(sent < 200, "{sent} frames accepted");
    }

    #[tokio::test]
    async fn a_receiver_that_stops_reading_holds_at_most_its_budget() {
        let hub = Hub::new(
            HubConfig {
                max_queued_bytes: 512 * 1024,
                ..HubConfig::default()
            },
            None,
        );
        let connect = |index: u32, budget: usize| {
            let hub = hub.clone();
            async move {
                let (a, b) = UnixStream::pair().unwrap();
                let conn = hub.attach(a, Attach::Trusted { index });
                let l = WorkerLink::connect_stream(b, index, "", 1 << 20, opts(budget))
                    .await
                    .unwrap();
                (conn, l)
            }
        };
        let (_, (s0, _r0)) = connect(0, DEFAULT_MAX_QUEUED).await;
        let budget = 128 * 1024;
        let (conn, (s1, mut r1)) = connect(1, budget).await;
        let dropped = hub.dropped(conn);
        s1.publish(11, "/", b"hb").unwrap();
        // Worker 1 never calls recv() while worker 0 publishes 4 MiB.
        let frame = vec![1u8; 16 * 1024];
        let total = 256;
        for _ in 0..total {
            s0.publish(10, "/", &frame).unwrap();
            tokio::task::yield_now().await;
        }
        let reason = tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("the hub drops the worker that stopped reading");
        assert_eq!(reason, DropReason::QueueOverflow);
        // When it reads again it finds at most its budget, then the close.
        let mut got = 0usize;
        while let Some(msg) = tokio::time::timeout(Duration::from_secs(5), r1.recv())
            .await
            .expect("messages, then the close")
        {
            if let Incoming::Frame { .. } = msg {
                got += 1;
            }
        }
        println!("stalled receiver held {got} of {total} frames");
        assert!(got < total, "{got} of {total} frames were held");
        assert!(
            got * (frame.len() + MESSAGE_OVERHEAD) <= budget + 1024 * 1024,
            "{got} frames"
        );
    }
}
