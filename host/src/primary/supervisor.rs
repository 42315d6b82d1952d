//! The `run` primary: spawns and restarts workers, runs the hub and the sticky
//! public listener, and stops everything on SIGTERM / SIGINT.
//!
//! Per worker `i` the primary makes, once (and again at each rolling restart):
//! * a loopback TCP listener `127.0.0.1:<free port>`, inherited by every
//!   incarnation of worker `i` as fd 4 (`SIO_CLUSTER_LISTEN_FD=4`,
//!   `SIO_CLUSTER_LISTEN=127.0.0.1:<port>`); the port does not change when a
//!   worker restarts and connections queue in its backlog meanwhile;
//!
//! and per spawn:
//! * a fresh Unix socketpair, the child's end inherited as fd 3
//!   (`SIO_CLUSTER_IPC=fd:3`), the primary's end attached to the hub as
//!   trusted worker `i`;
//! * `SIO_CLUSTER_WORKER=i`, `SIO_CLUSTER_WORKERS=N`,
//!   `SIO_CLUSTER_HEARTBEAT_INTERVAL`, `SIO_CLUSTER_HEARTBEAT_TIMEOUT`,
//!   `SIO_CLUSTER_INSTANCE_MEMORY`, `SIO_CLUSTER_INSTANCE_CPU_MS` (when set),
//!   `SIO_CLUSTER_MAX_FRAME`, `SIO_CLUSTER_GRACE` (the grace period, ms), and
//!   with `--metrics` `SIO_CLUSTER_STATS_INTERVAL` (workers then report their
//!   adapter figures, see [`crate::primary::metrics`]);
//! * with `--handoff-websocket`, a `SOCK_SEQPACKET` socketpair for
//!   WebSocket handoff, the child's end as fd 5 (`SIO_CLUSTER_HANDOFF=fd:5`,
//!   see [`crate::link::handoff`]);
//! * its own process group, and (Linux) `PR_SET_PDEATHSIG = SIGKILL` as a
//!   second guard against orphans besides the closed link.
//!
//! A worker that exits is restarted after a backoff (100 ms doubling up to 10 s,
//! reset once a worker ran for 10 s), with a log line. A worker the hub drops
//! for misbehaviour (a protocol error, or its outgoing queue passed
//! `--max-queued-bytes` because it stopped reading, see [`crate::primary::hub`]) is
//! cut off from the cluster already (its nodes were announced down), so the
//! primary kills its process group with SIGKILL at once and restarts it like
//! any exited worker. On shutdown every
//! worker's process group gets SIGTERM, then SIGKILL after the grace period; a
//! second signal kills at once. The primary must be spawned from a thread that
//! outlives the workers (PR_SET_PDEATHSIG fires when the forking *thread*
//! exits): `run` spawns from the runtime's own threads only.
//!
//! **Rolling restart** (SIGHUP): the workers are replaced one at a time, in
//! index order. For worker `i`: a new private listener; the running process
//! moves to a spare routing slot of the sticky router (its sessions keep
//! being routed to it, no new session goes there) and the new process starts
//! on the new listener as worker `i`; once it is attached to the hub and an
//! HTTP request on its listener gets an answer, the old process gets SIGTERM
//! (it drains: see `sioxide::demo::drain`), then SIGKILL after the grace
//! period. Once the first new worker serves, the old generation takes no
//! new sessions. A new worker that exits, does not serve within
//! [`RunConfig::start_timeout`] or cannot be spawned is killed, the old one
//! goes back to its slot, and the roll stops there (logged `rolling restart
//! stopped`); the workers not replaced serve on. A SIGHUP during a roll
//! queues one more roll, started when the current one ends (so that workers
//! replaced before a second deploy run its code too); more SIGHUPs meanwhile
//! add nothing (logged).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::link::handoff::{HandoffSender, handoff_pair};
use crate::primary::bridge::{Bridge, BridgeConfig};
use crate::primary::hub::{Attach, DropReason, Hub, HubConfig, HubObserver};
use crate::primary::metrics::{self, ExitCause, SupervisorStats};
use crate::primary::sticky::{self, Router, StickyConfig};

/// Fd number of the hub link in a worker.
pub const CHILD_IPC_FD: RawFd = 3;
/// Fd number of the inherited HTTP listener in a worker.
pub const CHILD_LISTEN_FD: RawFd = 4;
/// Fd number of the WebSocket handoff socket in a worker (with handoff on).
pub const CHILD_HANDOFF_FD: RawFd = 5;

/// Settings of `sio-cluster-host run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Number of workers.
    pub workers: usize,
    /// Public address of the sticky listener.
    pub bind: SocketAddr,
    /// Worker command and its arguments.
    pub command: Vec<OsString>,
    /// Adapter heartbeat interval passed to workers (ms).
    pub heartbeat_interval_ms: u64,
    /// Adapter heartbeat timeout passed to workers (ms).
    pub heartbeat_timeout_ms: u64,
    /// Time between SIGTERM and SIGKILL on shutdown.
    pub grace: Duration,
    /// Hub settings.
    pub hub: HubConfig,
    /// Sticky routing settings.
    pub sticky: StickyConfig,
    /// First restart delay.
    pub backoff_min: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
    /// Memory cap of each adapter instance, passed as `SIO_CLUSTER_INSTANCE_MEMORY`.
    pub instance_memory: Option<usize>,
    /// CPU bound of one call into an instance (ms), `SIO_CLUSTER_INSTANCE_CPU_MS`.
    pub instance_cpu_ms: Option<u64>,
    /// More environment for every worker (e.g. the compiled component,
    /// `SIO_CLUSTER_COMPILED*`, prepared by the CLI); opaque here.
    pub worker_env: Vec<(String, OsString)>,
    /// Serve Prometheus metrics on this address (`--metrics`); workers then
    /// report their adapter figures every `stats_interval`.
    pub metrics: Option<SocketAddr>,
    /// Interval of the workers' `WorkerStats` reports (with `metrics`).
    pub stats_interval: Duration,
    /// Write the primary's pid here (removed on exit), for `kill -HUP`.
    pub pid_file: Option<PathBuf>,
    /// How long a rolling restart waits for a new worker to serve.
    pub start_timeout: Duration,
    /// Join other machines' primaries through Redis (`--redis`).
    pub redis: Option<BridgeConfig>,
}

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The public or a private listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The worker command could not be started at all.
    #[error("cannot start worker command {command:?}: {source}")]
    Spawn {
        /// Program.
        command: OsString,
        /// Cause.
        source: std::io::Error,
    },
    /// Invalid settings.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Other I/O failure during setup.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Shutdown level shared with worker tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    Running,
    Graceful,
    Force,
}

/// Duplicates `fd` to a number >= 10 with close-on-exec set.
fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a freshly created fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

struct Spawned {
    child: Child,
    conn: u64,
    pid: Option<u32>,
}

/// A request to a worker's task.
enum Cmd {
    /// Replace the running process (rolling restart); the answer says
    /// whether the new one serves.
    Replace(oneshot::Sender<Result<(), String>>),
}

struct WorkerCtx {
    index: usize,
    config: Arc<RunConfig>,
    /// The private listener the next process of this worker inherits.
    listener: Arc<std::net::TcpListener>,
    listen_addr: SocketAddr,
    hub: Hub,
    router: Arc<Router>,
    stats: Arc<SupervisorStats>,
}

/// A loopback listener for a worker (accepted sockets inherit TCP_NODELAY).
fn worker_listener() -> Result<(Arc<std::net::TcpListener>, SocketAddr), RunError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let l = std::net::TcpListener::bind(loopback).map_err(|source| RunError::Listen {
        addr: loopback,
        source,
    })?;
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux): the
    // worker's side of every proxied connection then sends without Nagle
    // delays, whatever HTTP server the worker runs.
    if let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&l, true) {
        warn!(error = %e, "cannot set TCP_NODELAY on a worker listener");
    }
    let addr = l.local_addr()?;
    Ok((Arc::new(l), addr))
}

/// Why a process of a worker ended, from its wait status.
fn cause_of(status: &std::io::Result<std::process::ExitStatus>) -> ExitCause {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) if s.signal().is_some() => ExitCause::Signaled,
        _ => ExitCause::Exited,
    }
}

/// Whether an HTTP server answers on `addr`: a request for an unknown
/// Engine.IO session, which every Engine.IO server answers (400) without
/// creating one.
async fn http_answers(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET /socket.io/?EIO=4&transport=polling&sid=sio-cluster-probe HTTP/1.1\r\n\
             Host: {addr}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1."))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}

impl WorkerCtx {
    fn spawn(&self) -> std::io::Result<Spawned> {
        let (parent, child_end) = std::os::unix::net::UnixStream::pair()?;
        let ipc_fd = dup_high(child_end.as_raw_fd())?;
        drop(child_end);
        let listen_fd = dup_high(self.listener.as_raw_fd())?;
        let cfg = &self.config;
        let handoff = if cfg.sticky.handoff_websocket {
            let (ours, theirs) = handoff_pair()?;
            Some((ours, dup_high(theirs.as_raw_fd())?))
        } else {
            None
        };
        let handoff_child_fd = handoff.as_ref().map(|(_, c)| c.as_raw_fd()).unwrap_or(-1);
        let program = cfg
            .command
            .first()
            .ok_or_else(|| std::io::Error::other("empty worker command"))?;
        let mut cmd = Command::new(program);
        cmd.args(&cfg.command[1..])
            .env("SIO_CLUSTER_IPC", format!("fd:{CHILD_IPC_FD}"))
            .env("SIO_CLUSTER_WORKER", self.index.to_string())
            .env("SIO_CLUSTER_WORKERS", cfg.workers.to_string())
            .env("SIO_CLUSTER_LISTEN", self.listen_addr.to_string())
            .env("SIO_CLUSTER_LISTEN_FD", CHILD_LISTEN_FD.to_string())
            .env(
                "SIO_CLUSTER_HEARTBEAT_INTERVAL",
                cfg.heartbeat_interval_ms.to_string(),
            )
            .env(
                "SIO_CLUSTER_HEARTBEAT_TIMEOUT",
                cfg.heartbeat_timeout_ms.to_string(),
            )
            .env("SIO_CLUSTER_MAX_FRAME", cfg.hub.max_frame.to_string())
            .env("SIO_CLUSTER_GRACE", cfg.grace.as_millis().to_string())
            .env_remove("SIO_CLUSTER_STATS_INTERVAL")
            .env_remove("SIO_CLUSTER_HANDOFF")
            .env_remove("SIO_CLUSTER_TOKEN")
            .env_remove("SIO_CLUSTER_TOKEN_FILE")
            .env_remove("SIO_CLUSTER_COMPONENT")
            .env_remove("SIO_CLUSTER_COMPILED")
            .env_remove("SIO_CLUSTER_COMPILED_SHA256")
            .env_remove("SIO_CLUSTER_COMPILED_FOR")
            .process_group(0)
            .kill_on_drop(true);
        if handoff.is_some() {
            cmd.env("SIO_CLUSTER_HANDOFF", format!("fd:{CHILD_HANDOFF_FD}"));
        }
        if cfg.metrics.is_some() {
            cmd.env(
                "SIO_CLUSTER_STATS_INTERVAL",
                cfg.stats_interval.as_millis().max(1).to_string(),
            );
        }
        if let Some(m) = cfg.instance_memory {
            cmd.env("SIO_CLUSTER_INSTANCE_MEMORY", m.to_string());
        }
        if let Some(ms) = cfg.instance_cpu_ms {
            cmd.env("SIO_CLUSTER_INSTANCE_CPU_MS", ms.to_string());
        }
        for (k, v) in &cfg.worker_env {
            cmd.env(k, v);
        }
        let (a, b, c) = (ipc_fd.as_raw_fd(), listen_fd.as_raw_fd(), handoff_child_fd);
        // SAFETY: getpid is async-signal-safe; read before fork.
        let parent_pid = unsafe { libc::getpid() };
        // SAFETY: the closure only calls async-signal-safe functions (dup2,
        // prctl, getppid) and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(a, CHILD_IPC_FD) < 0 || libc::dup2(b, CHILD_LISTEN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if c >= 0 && libc::dup2(c, CHILD_HANDOFF_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent_pid {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                let _ = parent_pid;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(ipc_fd);
        drop(listen_fd);
        if let Some((ours, theirs)) = handoff {
            drop(theirs);
            match HandoffSender::new(ours) {
                Ok(sender) => self.router.set_handoff(self.index, Some(Arc::new(sender))),
                Err(e) => {
                    warn!(worker = self.index, error = %e, "handoff socket unusable, proxying");
                    self.router.set_handoff(self.index, None);
                }
            }
        }
        parent.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(parent)?;
        let conn = self.hub.attach(
            stream,
            Attach::Trusted {
                index: self.index as u32,
            },
        );
        let pid = child.id();
        Ok(Spawned { child, conn, pid })
    }

    fn counters(&self) -> &crate::primary::metrics::WorkerCounters {
        &self.stats.workers[self.index]
    }

    /// Spawns, waits, restarts until shutdown; replaces the process when a
    /// rolling restart asks.
    async fn supervise(
        mut self,
        first: Spawned,
        mut stop: watch::Receiver<Stop>,
        mut cmds: mpsc::Receiver<Cmd>,
    ) {
        let mut current = Some(first);
        let mut backoff = self.config.backoff_min;
        loop {
            let Some(mut sp) = current.take() else {
                break;
            };
            let mut started = Instant::now();
            info!(worker = self.index, pid = sp.pid, "worker started");
            enum Ended {
                Exited(std::io::Result<std::process::ExitStatus>),
                Dropped(DropReason),
                Stop,
            }
            let ended = loop {
                let cmd = tokio::select! {
                    s = sp.child.wait() => break Ended::Exited(s),
                    r = self.hub.dropped(sp.conn) => break Ended::Dropped(r),
                    _ = wait_stop(&mut stop, Stop::Graceful) => break Ended::Stop,
                    Some(cmd) = cmds.recv() => cmd,
                };
                let Cmd::Replace(reply) = cmd;
                match self.replace(&mut sp, &mut stop).await {
                    Ok(new) => {
                        let _ = reply.send(Ok(()));
                        sp = new;
                        started = Instant::now();
                        backoff = self.config.backoff_min;
                        info!(
                            worker = self.index,
                            pid = sp.pid,
                            "worker started (rolling restart)"
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            };
            let status = match ended {
                Ended::Exited(s) => {
                    self.counters().exited(cause_of(&s));
                    s
                }
                Ended::Dropped(reason) => {
                    warn!(
                        worker = self.index,
                        pid = sp.pid,
                        %reason,
                        "hub dropped the worker's link, killing the worker"
                    );
                    self.counters().exited(match reason {
                        DropReason::Protocol => ExitCause::ProtocolError,
                        DropReason::QueueOverflow => ExitCause::QueueOverflow,
                    });
                    Self::signal_group(&sp, libc::SIGKILL);
                    let _ = sp.child.start_kill();
                    sp.child.wait().await
                }
                Ended::Stop => {
                    self.stop_child(&mut sp, &mut stop).await;
                    self.counters().exited(ExitCause::Shutdown);
                    break;
                }
            };
            self.hub.detach(sp.conn);
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            if *stop.borrow() != Stop::Running {
                info!(worker = self.index, pid = sp.pid, %status, "worker exited during shutdown");
                break;
            }
            if started.elapsed() >= Duration::from_secs(10) {
                backoff = self.config.backoff_min;
            }
            warn!(
                worker = self.index,
                pid = sp.pid,
                %status,
                restart_in_ms = backoff.as_millis() as u64,
                "worker exited, restarting"
            );
            // A rolling restart that reaches this worker while it waits to
            // restart has nothing to replace: the restart starts the new
            // command anyway.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = wait_stop(&mut stop, Stop::Graceful) => return,
                    Some(Cmd::Replace(reply)) = cmds.recv() => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
            loop {
                match self.spawn() {
                    Ok(sp) => {
                        self.counters().restarts.fetch_add(1, Ordering::Relaxed);
                        current = Some(sp);
                        break;
                    }
                    Err(e) => {
                        error!(worker = self.index, error = %e, retry_in_ms = backoff.as_millis() as u64, "worker restart failed");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = wait_stop(&mut stop, Stop::Graceful) => return,
                        }
                        backoff = (backoff * 2).min(self.config.backoff_max);
                    }
                }
            }
        }
    }

    /// Rolling restart of this worker: starts the new process on a new
    /// private listener (the old process keeps its sessions meanwhile, in a
    /// spare routing slot that takes no new ones), waits until it is
    /// attached to the hub and its listener answers, then drains and stops
    /// the old one. On failure the new process is killed and the old one
    /// serves as before.
    async fn replace(
        &mut self,
        old: &mut Spawned,
        stop: &mut watch::Receiver<Stop>,
    ) -> Result<Spawned, String> {
        let (listener, addr) = worker_listener().map_err(|e| e.to_string())?;
        let Some(spare) = self.router.retire(self.index, addr) else {
            return Err(format!("no routing slot for worker {}", self.index));
        };
        let old_listener = std::mem::replace(&mut self.listener, listener);
        let old_addr = std::mem::replace(&mut self.listen_addr, addr);
        let mut new = match self.spawn() {
            Ok(sp) => sp,
            Err(e) => {
                self.listener = old_listener;
                self.listen_addr = old_addr;
                self.router.restore(self.index, spare);
                return Err(format!("cannot start the new worker: {e}"));
            }
        };
        self.counters().replacements.fetch_add(1, Ordering::Relaxed);
        info!(
            worker = self.index,
            pid = new.pid,
            old_pid = old.pid,
            "rolling restart: new worker started"
        );
        let (hub, conn) = (self.hub.clone(), new.conn);
        let ready = async move {
            while !hub.is_attached(conn) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while !http_answers(addr).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let failure = tokio::select! {
            _ = ready => None,
            s = new.child.wait() => Some(format!(
                "the new worker exited before it served ({})",
                s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
            )),
            _ = tokio::time::sleep(self.config.start_timeout) => Some(format!(
                "the new worker did not serve within {} ms",
                self.config.start_timeout.as_millis()
            )),
            _ = wait_stop(stop, Stop::Graceful) => Some("shutting down".to_string()),
        };
        if let Some(why) = failure {
            Self::signal_group(&new, libc::SIGKILL);
            let _ = new.child.start_kill();
            let s = new.child.wait().await;
            self.counters().exited(cause_of(&s));
            self.hub.detach(new.conn);
            self.listener = old_listener;
            self.listen_addr = old_addr;
            self.router.restore(self.index, spare);
            return Err(why);
        }
        info!(
            worker = self.index,
            pid = new.pid,
            old_pid = old.pid,
            "rolling restart: new worker serving, draining the old one"
        );
        self.stop_child(old, stop).await;
        self.counters().exited(ExitCause::Replaced);
        drop(old_listener);
        Ok(new)
    }

    /// Signals the worker's process group (the worker leads it; it is not yet
    /// reaped, so the group id cannot have been reused).
    fn signal_group(sp: &Spawned, sig: libc::c_int) {
        if let Some(pid) = sp.pid {
            // SAFETY: kill(2) on the process group our unreaped child leads.
            unsafe { libc::kill(-(pid as libc::pid_t), sig) };
        }
    }

    /// SIGTERM (the worker drains), SIGKILL after the grace period.
    async fn stop_child(&self, sp: &mut Spawned, stop: &mut watch::Receiver<Stop>) {
        Self::signal_group(sp, libc::SIGTERM);
        let graceful = *stop.borrow() != Stop::Force;
        if graceful {
            tokio::select! {
                r = tokio::time::timeout(self.config.grace, sp.child.wait()) => {
                    if let Ok(Ok(status)) = r {
                        info!(worker = self.index, pid = sp.pid, %status, "worker stopped");
                        self.hub.detach(sp.conn);
                        return;
                    }
                    warn!(worker = self.index, pid = sp.pid, "grace period over, killing worker");
                }
                _ = wait_stop(stop, Stop::Force) => {
                    warn!(worker = self.index, pid = sp.pid, "second signal, killing worker");
                }
            }
        }
        Self::signal_group(sp, libc::SIGKILL);
        let _ = sp.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), sp.child.wait()).await;
        self.hub.detach(sp.conn);
    }
}

/// The rolling restart (SIGHUP): each worker in turn, one at a time; once
/// the first new worker serves, the old generation takes no new sessions.
/// A new worker that does not start stops the roll; the workers not yet
/// replaced serve as before.
async fn roll(cmds: Vec<mpsc::Sender<Cmd>>, router: Arc<Router>, stats: Arc<SupervisorStats>) {
    stats.roll_running.store(1, Ordering::Relaxed);
    let n = cmds.len();
    info!(
        workers = n,
        "rolling restart: replacing the workers one at a time"
    );
    let t0 = Instant::now();
    let mut outcome = Ok(());
    for (i, tx) in cmds.iter().enumerate() {
        let (reply, answer) = oneshot::channel();
        if tx.send(Cmd::Replace(reply)).await.is_err() {
            outcome = Err((i, "shutting down".to_string()));
            break;
        }
        match answer.await {
            Ok(Ok(())) => {
                info!(worker = i, "rolling restart: worker replaced");
                if i == 0 {
                    for j in 1..n {
                        router.set_draining(j, true);
                    }
                }
            }
            Ok(Err(e)) => {
                outcome = Err((i, e));
                break;
            }
            Err(_) => {
                outcome = Err((i, "shutting down".to_string()));
                break;
            }
        }
    }
    match outcome {
        Ok(()) => {
            stats.rolls_completed.fetch_add(1, Ordering::Relaxed);
            info!(
                workers = n,
                ms = t0.elapsed().as_millis() as u64,
                "rolling restart done"
            );
        }
        Err((i, e)) => {
            for j in i + 1..n {
                router.set_draining(j, false);
            }
            stats.rolls_failed.fetch_add(1, Ordering::Relaxed);
            error!(
                worker = i,
                error = %e,
                replaced = i,
                "rolling restart stopped: the new worker did not start; the workers not \
                 replaced keep serving"
            );
        }
    }
    stats.roll_running.store(0, Ordering::Relaxed);
}

async fn wait_stop(stop: &mut watch::Receiver<Stop>, level: Stop) {
    // An error means the sender is gone: treat as "stop now".
    let _ = stop.wait_for(|s| *s >= level).await;
}

/// Runs the primary until SIGTERM / SIGINT; returns when every worker is
/// gone. SIGHUP starts a rolling restart.
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    if config.workers == 0 {
        return Err(RunError::Config("--workers must be at least 1".into()));
    }
    if config.command.is_empty() {
        return Err(RunError::Config("a worker command is required".into()));
    }
    let config = Arc::new(config);

    let public = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.bind,
            source,
        })?;
    let public_addr = public.local_addr()?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|source| RunError::Listen { addr, source })?,
        ),
        None => None,
    };

    let mut listeners = Vec::with_capacity(config.workers);
    let mut addrs = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        let (l, addr) = worker_listener()?;
        addrs.push(addr);
        listeners.push(l);
    }

    let router = Router::new(addrs.clone(), config.sticky.clone());
    let observer: Arc<dyn HubObserver> = router.clone();
    let hub = Hub::new(config.hub.clone(), Some(observer));
    let stats = Arc::new(SupervisorStats::new(config.workers));
    // Before any worker starts, so that their first frames can reach Redis.
    let bridge = match config.redis.clone() {
        Some(c) => {
            Some(Bridge::start(c, hub.clone()).map_err(|e| RunError::Config(e.to_string()))?)
        }
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let mut tasks = Vec::new();
    let mut cmds = Vec::new();
    for (index, (listener, addr)) in listeners.into_iter().zip(addrs).enumerate() {
        let ctx = WorkerCtx {
            index,
            config: config.clone(),
            listener,
            listen_addr: addr,
            hub: hub.clone(),
            router: router.clone(),
            stats: stats.clone(),
        };
        let first = ctx.spawn().map_err(|source| RunError::Spawn {
            command: config.command[0].clone(),
            source,
        });
        let first = match first {
            Ok(f) => f,
            Err(e) => {
                // Stop what was already started before reporting.
                let _ = stop_tx.send(Stop::Force);
                for t in tasks {
                    let _ = t.await;
                }
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel(1);
        cmds.push(tx);
        tasks.push(tokio::spawn(ctx.supervise(first, stop_rx.clone(), rx)));
    }
    info!(
        %public_addr,
        workers = config.workers,
        balance = ?config.sticky.balance,
        "sio-cluster-host listening"
    );
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, "metrics on http://{addr}/metrics");
        }
        tokio::spawn(metrics::serve(
            l,
            metrics::Sources {
                hub: hub.clone(),
                router: Some(router.clone()),
                supervisor: Some(stats.clone()),
                bridge: bridge.as_ref().map(Bridge::probe),
            },
        ))
    });
    if let Some(path) = &config.pid_file
        && let Err(e) = std::fs::write(path, format!("{}\n", std::process::id()))
    {
        warn!(path = %path.display(), error = %e, "cannot write the pid file");
    }

    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http = tokio::spawn(sticky::serve(public, router.clone(), http_stop_rx));

    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut rolling: Option<tokio::task::JoinHandle<()>> = None;
    // A SIGHUP received during a roll: one more roll once it ends.
    let mut roll_again = false;
    loop {
        let roll_done = async {
            match rolling.as_mut() {
                Some(t) if !t.is_finished() => {
                    let _ = t.await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = roll_done, if roll_again => {
                roll_again = false;
                info!("rolling restart queued by a SIGHUP during the last one: starting it");
                rolling = Some(tokio::spawn(roll(cmds.clone(), router.clone(), stats.clone())));
            }
            _ = sigterm.recv() => {
                info!("SIGTERM received, stopping workers");
                break;
            }
            _ = sigint.recv() => {
                info!("SIGINT received, stopping workers");
                break;
            }
            _ = sighup.recv() => {
                if rolling.as_ref().is_some_and(|t| !t.is_finished()) {
                    if roll_again {
                        warn!("SIGHUP received during a rolling restart: one more is queued already");
                    } else {
                        roll_again = true;
                        info!("SIGHUP received during a rolling restart: another one follows it");
                    }
                } else {
                    info!("SIGHUP received, rolling restart");
                    rolling = Some(tokio::spawn(roll(cmds.clone(), router.clone(), stats.clone())));
                }
            }
        }
    }
    let _ = http_stop_tx.send(true);
    let _ = stop_tx.send(Stop::Graceful);
    if let Some(r) = rolling {
        r.abort();
    }

    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => {}
        _ = async {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
        } => {
            warn!("second signal, killing workers");
            let _ = stop_tx.send(Stop::Force);
            all.await;
        }
    }
    // The workers' NodeDowns are queued; the bridge sends them and its leave.
    if let Some(bridge) = bridge {
        bridge.stop().await;
    }
    hub.detach_all();
    let _ = http.await;
    if let Some(m) = metrics_task {
        m.abort();
    }
    if let Some(path) = &config.pid_file {
        let _ = std::fs::remove_file(path);
    }
    let stats = hub.stats();
    info!(?stats, "primary stopped");
    Ok(())
}
