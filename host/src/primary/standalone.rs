//! `sio-cluster-host hub --socket PATH`: the hub alone, for workers started by
//! another supervisor (PM2, systemd, a shell script).
//!
//! * The socket's directory must be private: it is created with mode 0700 when
//!   missing; an existing one must be owned by the current user with no group
//!   or other permission bits, else the hub refuses to start.
//! * The socket is created with mode 0600. A stale socket file is replaced; a
//!   socket some live process still answers on is an error.
//! * A random 256-bit token (64 hex characters) is written to
//!   `<PATH>.token` (or `--token-file`), mode 0600, created fresh. Workers pass
//!   it in `SIO_CLUSTER_TOKEN` or point `SIO_CLUSTER_TOKEN_FILE` at the file.
//!   A link whose Hello carries another token gets a `Refused` frame, is closed
//!   and counted (`auth_failures`).
//! * On startup the hub prints `SIO_CLUSTER_IPC=<PATH>` and
//!   `SIO_CLUSTER_TOKEN_FILE=<file>` on stdout (and `SIO_CLUSTER_TOKEN=<token>`
//!   with `--print-token`). On SIGTERM / SIGINT it removes both files and exits.
//!
//! There is no sticky listener in this mode: the other supervisor owns the ports.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;

use crate::primary::bridge::{Bridge, BridgeConfig, BridgeError};
use crate::primary::hub::{Hub, HubConfig};

/// Settings of `sio-cluster-host hub`.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// Path of the Unix socket to create.
    pub socket: PathBuf,
    /// Where to write the token (default `<socket>.token`).
    pub token_file: Option<PathBuf>,
    /// Also print the token on stdout.
    pub print_token: bool,
    /// Hub settings.
    pub hub: HubConfig,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Join other machines' primaries through Redis (`--redis`).
    pub redis: Option<BridgeConfig>,
}

/// Why the standalone hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The socket's directory is not private, or the path is unusable.
    #[error("unsafe socket location: {0}")]
    Unsafe(String),
    /// Another hub answers on the socket.
    #[error("socket {0} is in use by a running process")]
    InUse(PathBuf),
    /// Binding or file creation failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Other I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// No randomness for the token.
    #[error("cannot generate a token: {0}")]
    Random(String),
    /// The Redis bridge settings are invalid.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

fn create_err(path: &Path) -> impl FnOnce(std::io::Error) -> StandaloneError + '_ {
    move |source| StandaloneError::Create {
        path: path.to_path_buf(),
        source,
    }
}

/// Ensures `dir` exists, is a real directory owned by us, with mode 0700 or
/// stricter.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StandaloneError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create_err(dir))?;
            // The mode of a pre-existing parent is not ours to change; the
            // final directory is checked below like any other.
            let meta = std::fs::symlink_metadata(dir)?;
            check_private(dir, &meta)
        }
        Err(e) => Err(e.into()),
        Ok(meta) => check_private(dir, &meta),
    }
}

fn check_private(dir: &Path, meta: &std::fs::Metadata) -> Result<(), StandaloneError> {
    if !meta.file_type().is_dir() {
        return Err(StandaloneError::Unsafe(format!(
            "{} is not a directory (symlinks are refused)",
            dir.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(StandaloneError::Unsafe(format!(
            "{} is owned by uid {}, not by this user (uid {me})",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StandaloneError::Unsafe(format!(
            "{} has mode {mode:o}; the socket directory must be private (chmod 700)",
            dir.display()
        )));
    }
    Ok(())
}

/// A fresh random token: 32 bytes as 64 lowercase hex characters.
pub fn generate_token() -> Result<String, StandaloneError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| StandaloneError::Random(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Default token file of a socket path: `<socket>.token`.
pub fn default_token_file(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_os_string();
    s.push(".token");
    PathBuf::from(s)
}

/// Runs the standalone hub until SIGTERM / SIGINT.
pub async fn run_hub(config: StandaloneConfig) -> Result<(), StandaloneError> {
    let hub = Hub::new(config.hub.clone(), None);
    // First: invalid bridge settings stop the hub before it creates files.
    let bridge = match config.redis.clone() {
        Some(c) => Some(Bridge::start(c, hub.clone())?),
        None => None,
    };
    let socket = config.socket.clone();
    let dir = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if socket.file_name().is_none() {
        return Err(StandaloneError::Unsafe(format!(
            "{} has no file name",
            socket.display()
        )));
    }
    ensure_private_dir(&dir)?;

    if let Ok(meta) = std::fs::symlink_metadata(&socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(StandaloneError::Unsafe(format!(
                "{} exists and is not a socket",
                socket.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(StandaloneError::InUse(socket));
        }
        std::fs::remove_file(&socket).map_err(create_err(&socket))?;
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(create_err(&socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(create_err(&socket))?;

    let metrics_listener = match config.metrics {
        Some(addr) => Some(
            crate::primary::metrics::bind(addr)
                .await
                .map_err(|source| StandaloneError::Create {
                    path: PathBuf::from(addr.to_string()),
                    source,
                })?,
        ),
        None => None,
    };
    let token = generate_token()?;
    let token_file = config
        .token_file
        .clone()
        .unwrap_or_else(|| default_token_file(&socket));
    match std::fs::remove_file(&token_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(create_err(&token_file)(e)),
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .map_err(create_err(&token_file))?;
        writeln!(f, "{token}").map_err(create_err(&token_file))?;
    }

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "SIO_CLUSTER_IPC={}", socket.display())?;
        writeln!(out, "SIO_CLUSTER_TOKEN_FILE={}", token_file.display())?;
        if config.print_token {
            writeln!(out, "SIO_CLUSTER_TOKEN={token}")?;
        }
        if metrics_listener.is_some() {
            writeln!(out, "SIO_CLUSTER_STATS_INTERVAL=5000")?;
        }
        out.flush()?;
    }
    info!(socket = %socket.display(), token_file = %token_file.display(), "hub listening");

    let metrics = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, "metrics on http://{addr}/metrics");
        }
        tokio::spawn(crate::primary::metrics::serve(
            l,
            crate::primary::metrics::Sources {
                hub: hub.clone(),
                router: None,
                supervisor: None,
                bridge: bridge.as_ref().map(Bridge::probe),
            },
        ))
    });
    let token: Arc<str> = Arc::from(token.as_str());
    let serve = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.serve_unix(listener, token).await })
    };

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM received, stopping hub"),
        _ = sigint.recv() => info!("SIGINT received, stopping hub"),
    }
    serve.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    hub.detach_all();
    if let Some(bridge) = bridge {
        bridge.stop().await;
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&token_file);
    info!(stats = ?hub.stats(), "hub stopped");
    Ok(())
}
