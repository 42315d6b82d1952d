//! `sioxide-redis-bench`: the socketioxide-redis anchor of
//! `bench/redis-compare.mjs` (issue 12 item 6). One socketioxide server on
//! `socketioxide-redis`'s default driver (redis-rs, RESP3, classic pub/sub);
//! start two with the same `--redis` and `--prefix` and they are one cluster.
//!
//! It serves the rows of `shared/demo-contract.md` the load client needs, the
//! way the demo worker (`host/src/sioxide/demo.rs`) does them: `whoami`
//! (`{pid, worker: --index}`), `join`, `leave`, `to` (payloads as
//! `rmpv::Value`), and `server_count` (`PUBSUB NUMSUB` of the adapter's request
//! channel, which is what the adapter itself counts servers with). Same
//! per-client settings as the demo worker: a current-thread tokio runtime,
//! mimalloc, socketioxide's client buffer raised to 65 536 packets,
//! `TCP_NODELAY`.

use std::time::Duration;

use clap::Parser;
use hyper_util::rt::TokioIo;
use rmpv::Value;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::{SocketIo, SocketIoConfig};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Adapter = RedisAdapter<Emitter>;

/// Packets queued per client before socketioxide drops more (the demo
/// worker's `SOCKET_BUFFER`).
const SOCKET_BUFFER: usize = 65_536;

/// One socketioxide server on socketioxide-redis (the benchmark's anchor).
#[derive(Debug, Parser)]
#[command(name = "sioxide-redis-bench", version, about, long_about = None)]
struct Cli {
    /// Redis server URL (RESP3 is added: `?protocol=resp3`).
    #[arg(long)]
    redis: String,
    /// Public port.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// This server's index, answered by `whoami` as `worker`.
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// The adapter's channel prefix (socketioxide-redis's default: socket.io).
    #[arg(long, default_value = "socket.io")]
    prefix: String,
    /// The adapter's per-channel receive buffer, in messages (its default is
    /// 1024; it drops what does not fit, with a warning). Raised like the
    /// client buffer, so that bursts are not dropped.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..))]
    stream_buffer: u64,
    /// Accepted and ignored (so compare scripts can pass {N}).
    #[arg(long)]
    workers: Option<u32>,
}

#[derive(serde::Serialize)]
struct WhoAmI {
    pid: u32,
    worker: u32,
}

/// `redis://host:port` with `protocol=resp3` (socketioxide-redis needs RESP3).
fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let url = resp3_url(&cli.redis);
    let client = redis::Client::open(url.as_str()).map_err(|e| format!("--redis: {e}"))?;
    let config = RedisAdapterConfig::new()
        .with_prefix(cli.prefix.clone())
        .with_stream_buffer(usize::try_from(cli.stream_buffer).unwrap_or(usize::MAX));
    let ctr = RedisAdapterCtr::new_with_redis_config(&client, config)
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
    // For server_count: the adapter counts servers with PUBSUB NUMSUB of
    // its request channel "{prefix}-request#{nsp}#"; socketioxide keeps that
    // count private, so ask Redis the same question on our own connection.
    let counter = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
    let req_chan = format!("{}-request#/#", cli.prefix);

    let (svc, io) = SocketIo::builder()
        .with_config(SocketIoConfig::default())
        .max_buffer_size(SOCKET_BUFFER)
        .with_adapter::<Adapter>(ctr)
        .build_svc();
    let index = cli.index;
    io.ns("/", move |s: SocketRef<Adapter>, io: SocketIo<Adapter>| {
        on_connect(s, io, index, counter.clone(), req_chan.clone())
    })
    .await
    .map_err(|e| format!("namespace /: {e}"))?;

    let listener = tokio::net::TcpListener::bind((cli.host.as_str(), cli.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", cli.host, cli.port))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(cli.port);
    println!(
        "sioxide-redis ready port={port} index={index} pid={}",
        std::process::id()
    );
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("sioxide-redis: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn on_connect(
    s: SocketRef<Adapter>,
    io: SocketIo<Adapter>,
    index: u32,
    counter: redis::aio::MultiplexedConnection,
    req_chan: String,
) {
    // As in Socket.IO (and the demo worker), a socket is in its own id's room.
    s.join(s.id.as_str().to_string());
    s.on("whoami", async move |ack: AckSender<Adapter>| {
        let _ = ack.send(&WhoAmI {
            pid: std::process::id(),
            worker: index,
        });
    });
    s.on(
        "join",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            s.join(room);
            let _ = ack.send(&true);
        },
    );
    s.on(
        "leave",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            s.leave(room);
            let _ = ack.send(&true);
        },
    );
    s.on(
        "to",
        async move |Data((room, event, payload)): Data<(String, String, Value)>| {
            if let Err(e) = io.to(room).emit(&event, &payload).await {
                eprintln!("sioxide-redis: to: emit failed: {e}");
            }
        },
    );
    s.on("server_count", async move |ack: AckSender<Adapter>| {
        let mut c = counter.clone();
        let n: Option<u64> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&req_chan)
            .query_async::<(String, u64)>(&mut c)
            .await
            .map(|(_, n)| n)
            .map_err(|e| eprintln!("sioxide-redis: server_count: {e}"))
            .ok();
        let _ = ack.send(&n);
    });
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sioxide-redis: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        tokio::select! {
            r = serve(cli) => match r {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sioxide-redis: {e}");
                    std::process::ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => std::process::ExitCode::SUCCESS,
        }
    })
}
