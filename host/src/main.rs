//! `sio-cluster-host`: the primary of a Socket.IO cluster (worker supervisor,
//! IPC hub and sticky load balancer). A thin clap shell over the library.
//!
//! Exit codes: 0 clean stop (SIGTERM / SIGINT), 1 other error, 2 usage error,
//! 3 cannot listen (public port, private port or hub socket), 4 the worker
//! command cannot be started, 5 unsafe hub socket location, 6 the adapter
//! component (`--component`) is unusable.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sio_cluster_host::link::ipc::DEFAULT_MAX_FRAME;
use sio_cluster_host::primary::bridge::{self, BridgeConfig};
use sio_cluster_host::primary::hub::{DEFAULT_MAX_QUEUED, HubConfig};
use sio_cluster_host::primary::standalone::{StandaloneConfig, StandaloneError, run_hub};
use sio_cluster_host::primary::sticky::{Balance, StickyConfig};
use sio_cluster_host::primary::supervisor::{RunConfig, RunError, run};
use sio_cluster_host::runtime::artifact::{self, ComponentError};
use sio_cluster_host::sioxide::page;
use tracing::{debug, error, info, warn};

/// mimalloc: the relay and the workers allocate a few small buffers per
/// frame, freed on other threads; measured +27 % (64 B frames) and +76 %
/// (1 KiB) hub relay throughput over glibc malloc (`benches/relay.rs`).
/// Built with `no_thp`: its huge-page arenas cost ~18 MiB of RSS per process.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0  stopped cleanly by SIGTERM or SIGINT
  1  other error
  2  usage error
  3  cannot listen (public port, a worker's private port, or the hub socket)
  4  the worker command cannot be started
  5  unsafe hub socket location (directory not private, or not a socket)
  6  the adapter component (--component) cannot be used: unreadable, not a
     component, or not of the socketio:cluster/cluster-adapter@0.1.0 world

Logs go to stderr; set the level with RUST_LOG (default: info).";

/// Socket.IO cluster primary: runs workers, relays adapter frames between
/// them and routes HTTP with sticky sessions.
#[derive(Parser, Debug)]
#[command(name = "sio-cluster-host", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Spawn N workers, relay their adapter frames, restart them when they
    /// exit, and serve the public port with sticky sessions.
    ///
    /// Each worker gets its hub link as fd 3 (SIO_CLUSTER_IPC=fd:3), a private
    /// loopback HTTP listener as fd 4 (SIO_CLUSTER_LISTEN_FD=4,
    /// SIO_CLUSTER_LISTEN=127.0.0.1:PORT), SIO_CLUSTER_WORKER (0-based index),
    /// SIO_CLUSTER_WORKERS, SIO_CLUSTER_HEARTBEAT_INTERVAL,
    /// SIO_CLUSTER_HEARTBEAT_TIMEOUT and SIO_CLUSTER_MAX_FRAME. Every HTTP
    /// request on the public port is proxied to one worker: by the `sid` query
    /// parameter when the session is known, else by the balancing method; no
    /// live worker gives 503, an unreachable worker 502, malformed HTTP 400.
    /// Workers exit (code 75) when their hub link closes, so killing the
    /// primary leaves no worker behind.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Run the hub alone on a Unix socket, for workers started by another
    /// supervisor (PM2, systemd). No sticky listener in this mode.
    ///
    /// The socket's directory is created 0700 if missing and must otherwise be
    /// private (owned by this user, no group/other bits). The socket is mode
    /// 0600. A random token is written to PATH.token (mode 0600); workers
    /// attach with SIO_CLUSTER_IPC=PATH and SIO_CLUSTER_TOKEN (or
    /// SIO_CLUSTER_TOKEN_FILE); a link with a wrong token is refused. Prints
    /// SIO_CLUSTER_IPC=... and SIO_CLUSTER_TOKEN_FILE=... on stdout.
    #[command(after_help = EXIT_CODES)]
    Hub(HubArgs),
    /// Run the demo cluster: the primary plus N demo workers implementing
    /// the demo contract on namespaces `/`, `/custom` and `/tenant/<id>`:
    /// socketioxide workers (this binary) by default, socket.io workers on
    /// the Node host with `--runtime node`, both with `--runtime mixed`.
    /// Every worker also serves the demo page: open http://localhost:3000/
    /// (a room chat across the workers). Same options as `run`, without a
    /// command.
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
    /// Show the adapter component the workers load: its sha256 and size, or
    /// write it to a file; with --check, check a component file as `run
    /// --component` would.
    #[command(after_help = EXIT_CODES)]
    Component(ComponentArgs),
    /// Compile the component into DIR and print the workers' environment
    /// (KEY=VALUE lines); run by `run` and `demo` before any worker starts.
    #[command(hide = true)]
    PrepareComponent {
        /// The private directory to write the artifact into.
        #[arg(long)]
        dir: PathBuf,
        /// The component file [default: the embedded component].
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// One demo worker; started by `demo`, not by hand (it needs the
    /// environment the primary sets).
    #[command(hide = true)]
    DemoWorker {
        /// Run odd-numbered workers as `node SCRIPT` instead (`demo
        /// --runtime mixed`).
        #[arg(long, value_name = "SCRIPT")]
        node_odd: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Worker command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Proxy WebSocket bytes through the primary instead of handing the
    /// connections to the demo workers (handoff is on by default for `demo`,
    /// whose workers accept handed-off connections).
    #[arg(long, conflicts_with = "handoff_websocket")]
    no_handoff: bool,
    /// Runtime of the demo workers: `rust` (socketioxide, this binary),
    /// `node` (socket.io 4.8 on the Node host: `node --node-worker`), or
    /// `mixed` (even workers rust, odd workers node). Node workers cannot
    /// take handed-off WebSockets, so `node` and `mixed` proxy them.
    #[arg(long, value_enum, default_value_t = DemoRuntime::Rust)]
    runtime: DemoRuntime,
    /// The Node demo worker script (needs `npm ci --prefix host/node && npm
    /// run build --prefix host/node` once).
    #[arg(long, value_name = "PATH", default_value = "host/node/demo/worker.mjs")]
    node_worker: PathBuf,
    /// Let pages of ORIGIN (`scheme://host[:port]`, repeatable, or `*` for
    /// any) use the demo cross-origin: the workers answer CORS preflights and
    /// add Access-Control-Allow-Origin (passed as SIO_DEMO_CORS_ORIGIN).
    /// Default: none, only the demo page served by the cluster itself.
    #[arg(long, value_name = "ORIGIN", value_parser = page::parse_origin)]
    cors_origin: Vec<String>,
}

/// Runtime of the demo workers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DemoRuntime {
    /// socketioxide workers (this binary).
    Rust,
    /// socket.io workers on the Node host.
    Node,
    /// Worker 0, 2, … rust; worker 1, 3, … node.
    Mixed,
}

#[derive(clap::Args, Debug)]
struct ComponentArgs {
    /// Write the embedded component to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Check FILE (a component of the adapter world?) instead of showing
    /// the embedded component; exit code 6 when it is unusable.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Print only the sha256 (hex).
    #[arg(long)]
    sha256: bool,
}

#[derive(clap::Args, Debug)]
struct ClusterArgs {
    /// Adapter component (.wasm) every worker loads instead of the embedded
    /// one. Checked (a component of the socketio:cluster/cluster-adapter@0.1.0
    /// world) and compiled once before any worker starts; workers get it as
    /// SIO_CLUSTER_COMPONENT and the compiled artifact as SIO_CLUSTER_COMPILED.
    #[arg(long, value_name = "PATH", env = "SIO_CLUSTER_COMPONENT")]
    component: Option<PathBuf>,
    /// Number of workers [default: number of CPUs].
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// Public port of the sticky HTTP listener (0 = any free port).
    #[arg(short, long, default_value_t = 3000)]
    port: u16,
    /// Address to bind the public listener on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// How new sessions are spread over live workers.
    #[arg(long, value_enum, default_value_t = Balance::LeastConnection)]
    balance: Balance,
    /// Adapter heartbeat interval in ms, passed to workers as
    /// SIO_CLUSTER_HEARTBEAT_INTERVAL.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    heartbeat_interval: u64,
    /// Adapter heartbeat timeout in ms, passed to workers as
    /// SIO_CLUSTER_HEARTBEAT_TIMEOUT.
    #[arg(long, value_name = "MS", default_value_t = 10000)]
    heartbeat_timeout: u64,
    /// On shutdown, time between SIGTERM and SIGKILL for each worker, in ms.
    #[arg(long, value_name = "MS", default_value_t = 10000)]
    grace_period: u64,
    /// Largest IPC frame in bytes; a worker sending more is disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Bytes the hub may queue towards one worker; a worker that stops
    /// reading its link is disconnected at this limit (and restarted by `run`).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_QUEUED, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_queued_bytes: usize,
    /// Memory cap of each adapter instance in bytes, passed to workers as
    /// SIO_CLUSTER_INSTANCE_MEMORY [default in workers: 64 MiB]. There is one
    /// instance per namespace, so per tenant where tenants are namespaces.
    #[arg(long, value_name = "BYTES", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65536..))]
    instance_memory: Option<usize>,
    /// CPU bound of one call into an adapter instance in ms, passed as
    /// SIO_CLUSTER_INSTANCE_CPU_MS [default in workers: 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    instance_cpu_ms: Option<u64>,
    /// Forget a session learnt from a handshake response after this many
    /// seconds without a request (sessions reported by the worker are kept
    /// until it reports them closed).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    session_idle_timeout: u64,
    /// Threads of the primary's async runtime. 1 (one thread, no cross-thread
    /// wakeups) measured fastest on a 2-core machine; raise it when the
    /// primary proxies a lot of traffic on a large machine.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Pass a connection whose first request is a WebSocket upgrade to its
    /// worker (SCM_RIGHTS over fd 5, SIO_CLUSTER_HANDOFF=fd:5) instead of
    /// proxying its bytes. Every worker must then accept handed-off
    /// connections (the host library's HandoffReceiver).
    #[arg(long)]
    handoff_websocket: bool,
    /// Serve Prometheus metrics (text format) on ADDR at /metrics, e.g.
    /// 127.0.0.1:9100; workers then report their adapter figures every
    /// --metrics-interval (SIO_CLUSTER_STATS_INTERVAL).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Interval of the workers' reports for --metrics, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    metrics_interval: u64,
    /// Write the primary's pid to FILE (removed on exit); `kill -HUP
    /// "$(cat FILE)"` starts a rolling restart of the workers.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Rolling restart: how long a new worker may take to attach and answer
    /// HTTP, in ms; past it the new worker is killed, the roll stops and the
    /// workers not yet replaced keep serving.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    start_timeout: u64,
    #[command(flatten)]
    redis: RedisArgs,
}

const REDIS_HEADING: &str = "Several machines (Redis)";

/// Joining the primaries of several machines through Redis.
#[derive(clap::Args, Debug)]
struct RedisArgs {
    /// Join the primaries of other machines through this Redis server
    /// (pub/sub): redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss://… (TLS)
    /// or redis+unix:///PATH. Prefer the environment variable to keep a
    /// password out of the process list.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "URL", env = "SIO_CLUSTER_REDIS_URL")]
    redis: Option<String>,
    /// Cluster name: primaries on the same Redis with the same name form one
    /// cluster, on channels sio-cluster:{NAME}:all and
    /// sio-cluster:{NAME}:hub:<id>.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "NAME", default_value = bridge::DEFAULT_CLUSTER, requires = "redis")]
    cluster_name: String,
    /// Primary heartbeat interval on Redis, in ms.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), requires = "redis")]
    primary_heartbeat_interval: u64,
    /// A primary silent on Redis this long (crashed, cut off) is dropped and
    /// its nodes reported down to the local workers at once; this primary
    /// counts its own link lost when its heartbeat does not come back within
    /// it. In ms; keep it under the adapter's --heartbeat-timeout.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "MS", default_value_t = 3000, requires = "redis")]
    primary_heartbeat_timeout: u64,
    /// Bytes queued towards Redis; a frame that would pass it is dropped and
    /// counted (logged at most once a second).
    #[arg(long, help_heading = REDIS_HEADING, value_name = "BYTES", default_value_t = bridge::DEFAULT_MAX_QUEUED, requires = "redis")]
    redis_max_queued_bytes: usize,
    /// Largest frame sent to other machines (at most 16 MiB); a larger one
    /// reaches only this machine's workers, and is counted and logged.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "BYTES", default_value_t = bridge::DEFAULT_MAX_FRAME, requires = "redis")]
    redis_max_frame: usize,
    /// PUBLISH pipelines in flight at once (1 to 64); what the hub queues
    /// while they all wait for Redis goes out together in the next one.
    /// More help when Redis is far away (a round trip per pipeline).
    #[arg(long, help_heading = REDIS_HEADING, value_name = "N", default_value_t = bridge::DEFAULT_PIPELINES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=bridge::MAX_PIPELINES as u64), requires = "redis")]
    redis_pipelines: usize,
    /// File holding the shared cluster key (at least 16 bytes): every Redis
    /// message is authenticated (HMAC-SHA256), messages without a valid tag
    /// are dropped and counted. All primaries of a cluster need the same key.
    #[arg(long, help_heading = REDIS_HEADING, value_name = "FILE", requires = "redis")]
    cluster_key: Option<PathBuf>,
    /// PEM file of the CA of the Redis server's certificate (rediss://)
    /// [default: the system's roots].
    #[arg(long, help_heading = REDIS_HEADING, value_name = "FILE", requires = "redis")]
    redis_tls_ca: Option<PathBuf>,
}

impl RedisArgs {
    fn config(&self) -> Option<BridgeConfig> {
        let url = self.redis.clone()?;
        Some(BridgeConfig {
            cluster: self.cluster_name.clone(),
            heartbeat_interval: Duration::from_millis(self.primary_heartbeat_interval),
            heartbeat_timeout: Duration::from_millis(self.primary_heartbeat_timeout),
            max_queued_bytes: self.redis_max_queued_bytes,
            max_frame: self.redis_max_frame,
            pipelines: self.redis_pipelines,
            key_file: self.cluster_key.clone(),
            tls_ca: self.redis_tls_ca.clone(),
            ..BridgeConfig::new(url)
        })
    }
}

#[derive(clap::Args, Debug)]
struct HubArgs {
    /// Path of the Unix socket to create.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Where to write the token [default: PATH.token].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Also print SIO_CLUSTER_TOKEN=<token> on stdout.
    #[arg(long)]
    print_token: bool,
    /// Largest IPC frame in bytes; a worker sending more is disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Bytes the hub may queue towards one worker; a worker that stops
    /// reading its link is disconnected at this limit (and restarted by `run`).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_QUEUED, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_queued_bytes: usize,
    /// Threads of the hub's async runtime.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Serve Prometheus metrics on ADDR at /metrics; also prints
    /// SIO_CLUSTER_STATS_INTERVAL=5000 for the workers' environment, so
    /// that they report their adapter figures.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    redis: RedisArgs,
}

fn hub_config(max_frame: usize, max_queued_bytes: usize) -> HubConfig {
    HubConfig {
        max_frame,
        max_queued_bytes,
        ..HubConfig::default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if !matches!(cli.command, Cmd::Component(_)) {
        match sio_cluster_host::fd_limit::raise() {
            Ok(l) if l.was != l.soft => {
                info!(
                    was = l.was,
                    now = l.soft,
                    "raised the open-file limit to the hard limit"
                )
            }
            Ok(l) => debug!(limit = l.soft, "open-file limit"),
            Err(e) => warn!(error = %e, "cannot read or raise the open-file limit"),
        }
    }

    let threads = match &cli.command {
        Cmd::Run(a) => a.cluster.threads,
        Cmd::Demo(a) => a.cluster.threads,
        Cmd::Hub(a) => a.threads,
        Cmd::Component(_) | Cmd::PrepareComponent { .. } => 1,
        Cmd::DemoWorker { .. } => 1,
    };
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };

    match cli.command {
        Cmd::Run(args) => run_cluster(&runtime, args.cluster, args.command, Vec::new()),
        Cmd::Demo(args) => match demo_command(&args) {
            Ok(command) => run_cluster(
                &runtime,
                ClusterArgs {
                    handoff_websocket: !args.no_handoff && args.runtime == DemoRuntime::Rust,
                    ..args.cluster
                },
                command,
                page::CorsOrigins::from_values(&args.cors_origin)
                    .to_env()
                    .map(|v| (page::CORS_ENV.to_string(), v.into()))
                    .into_iter()
                    .collect(),
            ),
            Err(code) => code,
        },
        Cmd::Component(args) => component_cmd(args),
        Cmd::PrepareComponent { dir, component } => {
            match artifact::compile_for_workers(component.as_deref(), &dir) {
                Ok(env) => {
                    for (k, v) in env {
                        println!("{k}={}", v.to_string_lossy());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    error!(error = %e, "the adapter component cannot be used");
                    ExitCode::from(match e {
                        ComponentError::Prepare(_) => 1,
                        _ => 6,
                    })
                }
            }
        }
        Cmd::DemoWorker {
            node_odd: Some(script),
        } if odd_worker() => exec_node(&script),
        Cmd::DemoWorker { .. } => {
            match runtime.block_on(sio_cluster_host::sioxide::demo::run_worker()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "demo worker failed");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Cmd::Hub(args) => {
            let config = StandaloneConfig {
                socket: args.socket,
                token_file: args.token_file,
                print_token: args.print_token,
                hub: hub_config(args.max_frame, args.max_queued_bytes),
                metrics: args.metrics,
                redis: args.redis.config(),
            };
            match runtime.block_on(run_hub(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "sio-cluster-host hub failed");
                    ExitCode::from(match e {
                        StandaloneError::Unsafe(_) => 5,
                        StandaloneError::InUse(_) | StandaloneError::Create { .. } => 3,
                        StandaloneError::Io(_) | StandaloneError::Random(_) => 1,
                        StandaloneError::Bridge(_) => 2,
                    })
                }
            }
        }
    }
}

fn run_cluster(
    runtime: &tokio::runtime::Runtime,
    args: ClusterArgs,
    command: Vec<OsString>,
    extra_env: Vec<(String, OsString)>,
) -> ExitCode {
    let workers = args.workers.map(|w| w as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // The one call into the runtime layer: check the component and compile
    // it once for every worker, in a child process (Cranelift's memory stays
    // out of the primary). The directory lives until the primary stops.
    let (_artifact_dir, mut worker_env) = match prepare_component(args.component.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    worker_env.extend(extra_env);
    let config = RunConfig {
        worker_env,
        workers,
        bind: SocketAddr::new(args.bind, args.port),
        command,
        heartbeat_interval_ms: args.heartbeat_interval,
        heartbeat_timeout_ms: args.heartbeat_timeout,
        grace: Duration::from_millis(args.grace_period),
        hub: hub_config(args.max_frame, args.max_queued_bytes),
        sticky: StickyConfig {
            balance: args.balance,
            session_idle_timeout: Duration::from_secs(args.session_idle_timeout),
            handoff_websocket: args.handoff_websocket,
            ..StickyConfig::default()
        },
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(10),
        instance_memory: args.instance_memory,
        instance_cpu_ms: args.instance_cpu_ms,
        metrics: args.metrics,
        stats_interval: Duration::from_millis(args.metrics_interval),
        pid_file: args.pid_file,
        start_timeout: Duration::from_millis(args.start_timeout),
        redis: args.redis.config(),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "sio-cluster-host run failed");
            ExitCode::from(match e {
                RunError::Listen { .. } => 3,
                RunError::Spawn { .. } => 4,
                RunError::Config(_) => 2,
                RunError::Io(_) => 1,
            })
        }
    }
}

/// `component`: show, write or check the adapter component.
fn component_cmd(args: ComponentArgs) -> ExitCode {
    let (label, bytes) = match &args.check {
        Some(path) => match std::fs::read(path) {
            Ok(b) => (path.clone(), b),
            Err(source) => {
                let e = ComponentError::Read {
                    path: path.clone(),
                    source,
                };
                eprintln!("sio-cluster-host: {e}");
                return ExitCode::from(6);
            }
        },
        None => (
            PathBuf::from("(embedded component)"),
            sio_cluster_host::DEFAULT_COMPONENT.to_vec(),
        ),
    };
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(out, &bytes)
    {
        eprintln!("sio-cluster-host: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    let sha = artifact::sha256_hex(&bytes);
    if args.sha256 {
        println!("{sha}");
        if args.check.is_none() {
            return ExitCode::SUCCESS;
        }
    }
    if args.check.is_some() {
        return match artifact::check_component(&label, &bytes) {
            Ok(c) => {
                if !args.sha256 {
                    println!(
                        "{}: a component of {} ({} bytes, sha256 {})",
                        label.display(),
                        artifact::WORLD,
                        c.size,
                        c.sha256
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sio-cluster-host: {e}");
                ExitCode::from(6)
            }
        };
    }
    println!(
        "embedded adapter component: {} bytes, sha256 {sha}, world {}",
        bytes.len(),
        artifact::WORLD
    );
    if let Some(out) = &args.out {
        println!("written to {}", out.display());
    }
    ExitCode::SUCCESS
}

/// Checks and compiles the workers' component in a child process of this
/// binary (`prepare-component`); returns the private directory holding the
/// artifact (removed when dropped) and the environment for the workers. A
/// component that cannot be used gives exit code 6 (the child logged why).
fn prepare_component(
    component: Option<&std::path::Path>,
) -> Result<(tempfile::TempDir, Vec<(String, OsString)>), ExitCode> {
    let fail = |msg: String| {
        error!("cannot prepare the adapter component for the workers: {msg}");
        Err(ExitCode::from(1))
    };
    let dir = match tempfile::Builder::new().prefix("sio-cluster-").tempdir() {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot create a private directory: {e}")),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find this executable: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("prepare-component").arg("--dir").arg(dir.path());
    if let Some(c) = component {
        cmd.arg("--component").arg(c);
    }
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return fail(format!("cannot run prepare-component: {e}")),
    };
    match out.status.code() {
        Some(0) => {}
        Some(6) => return Err(ExitCode::from(6)),
        _ => return fail(format!("prepare-component ended with {}", out.status)),
    }
    let mut env = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("SIO_CLUSTER_") => env.push((k.to_string(), v.into())),
            _ => return fail(format!("unexpected output of prepare-component: {line:?}")),
        }
    }
    Ok((dir, env))
}

/// The worker command of `demo` for its `--runtime`.
fn demo_command(args: &DemoArgs) -> Result<Vec<OsString>, ExitCode> {
    let exe = std::env::current_exe().map_err(|e| {
        error!(error = %e, "cannot find this executable to start demo workers");
        ExitCode::from(4)
    })?;
    let node_worker = || {
        let path = std::path::absolute(&args.node_worker).unwrap_or(args.node_worker.clone());
        let pkg = path.parent().and_then(|d| d.parent());
        let installed = pkg.is_some_and(|p| {
            p.join("node_modules").is_dir() && p.join("component/manifest.json").is_file()
        });
        if !path.is_file() || !installed {
            error!(
                worker = %path.display(),
                "the Node demo worker is not ready: run `npm ci --prefix host/node && npm run \
                 build --prefix host/node` from the repository root first (after a cargo \
                 build, which makes the component), or pass --node-worker PATH"
            );
            return Err(ExitCode::from(4));
        }
        Ok(path)
    };
    Ok(match args.runtime {
        DemoRuntime::Rust => vec![exe.into(), "demo-worker".into()],
        DemoRuntime::Node => vec!["node".into(), node_worker()?.into()],
        DemoRuntime::Mixed => vec![
            exe.into(),
            "demo-worker".into(),
            "--node-odd".into(),
            node_worker()?.into(),
        ],
    })
}

/// Whether this worker's index (SIO_CLUSTER_WORKER) is odd.
fn odd_worker() -> bool {
    std::env::var("SIO_CLUSTER_WORKER")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|i| i % 2 == 1)
}

/// Replaces this process with `node SCRIPT` (the inherited link and
/// listener fds and the environment stay as the primary set them).
fn exec_node(script: &std::path::Path) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new("node").arg(script).exec();
    error!(error = %e, script = %script.display(), "cannot start the Node demo worker");
    ExitCode::from(4)
}
