//! The Redis connection of the bridge: connect, subscribe, publish batches
//! and heartbeats, notice a lost link, reconnect with backoff.
//!
//! One RESP3 multiplexed connection (redis-rs) per session carries both the
//! subscriptions (pushes, handled in the connection's reader by
//! [`Shared::on_message`]) and the PUBLISH pipelines, so this primary's
//! frames keep the order the hub routed them in. At most
//! [`BridgeConfig::pipelines`] pipelines are in flight; what the hub queues
//! meanwhile goes out in the next one. A
//! session ends when the connection closes, a command fails or times out
//! (after the primary heartbeat timeout), or no echo of this primary's own
//! heartbeat came back within the timeout (a cut or stuck link that TCP has
//! not noticed); then [`Shared::link_lost`] runs and the next session starts
//! after a backoff (doubling from `reconnect_min` to `reconnect_max`, reset
//! after a session that lasted 10 s).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisResult, TlsCertificates, Value,
};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use super::envelope::{self, Kind};
use super::queue::Dest;
use super::{BridgeConfig, BridgeError, Shared, Throttle, add, lock, unix_ms};

/// The redis-rs client for `cfg.url` (RESP3; TLS for `rediss://`).
pub(crate) fn client(cfg: &BridgeConfig) -> Result<Client, BridgeError> {
    // redis-rs's URL errors do not echo the URL (nor its password).
    let info = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| BridgeError::Config(format!("--redis URL: {e}")))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3)
        // No CLIENT SETINFO on connect: the least-privilege ACL need not allow it.
        .set_skip_set_lib_name();
    let info = info.set_redis_settings(settings);
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    if !tls {
        if cfg.tls_ca.is_some() {
            return Err(BridgeError::Config(
                "--redis-tls-ca needs a rediss:// URL".into(),
            ));
        }
        return Client::open(info).map_err(|e| BridgeError::Config(format!("--redis: {e}")));
    }
    // rustls needs a process-wide crypto provider; a second install fails
    // harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match &cfg.tls_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            BridgeError::Config(format!(
                "cannot read --redis-tls-ca {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert,
        },
    )
    .map_err(|e| BridgeError::Config(format!("--redis TLS: {e}")))
}

enum Ended {
    Stopped,
    Lost(String),
}

/// Runs sessions until `stop` turns true.
pub(crate) async fn run(shared: Arc<Shared>, client: Client, mut stop: watch::Receiver<bool>) {
    let cfg = shared.cfg.clone();
    let mut backoff = cfg.reconnect_min;
    let warn_connect = Throttle::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let lost = Arc::new(Notify::new());
        let started = Instant::now();
        match connect(&shared, &client, lost.clone()).await {
            Ok(conn) => {
                match session(&shared, conn, &lost, &mut stop).await {
                    Ended::Stopped => return,
                    Ended::Lost(reason) => shared.link_lost(&reason),
                }
                if started.elapsed() >= Duration::from_secs(10) {
                    backoff = cfg.reconnect_min;
                }
            }
            Err(e) => {
                shared.up.store(false, Ordering::Release);
                if warn_connect.ready(shared.now_ms()) {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect to redis");
                } else {
                    debug!(error = %e, "cannot connect to redis");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
}

/// Opens a connection, names it, subscribes to this primary's channels.
async fn connect(
    shared: &Arc<Shared>,
    client: &Client,
    lost: Arc<Notify>,
) -> RedisResult<MultiplexedConnection> {
    let timeout = shared.cfg.heartbeat_timeout;
    let sh = shared.clone();
    let sender = move |info: PushInfo| -> Result<(), ()> {
        match info.kind {
            PushKind::Message => match info.data.as_slice() {
                [Value::BulkString(channel), Value::BulkString(msg)] => sh.on_message(channel, msg),
                _ => add(&sh.stats.malformed, 1),
            },
            PushKind::Disconnection => lost.notify_one(),
            _ => {}
        }
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_push_sender(sender)
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Shows the primary in CLIENT LIST; optional (the ACL may not allow it).
    let name = format!("sio-cluster-{:016x}", shared.me);
    if let Err(e) = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&name)
        .exec_async(&mut conn)
        .await
    {
        debug!(error = %e, "CLIENT SETNAME refused");
    }
    conn.subscribe(&[shared.chan_all.as_str(), shared.chan_me.as_str()])
        .await?;
    shared.own_echo_ms.store(shared.now_ms(), Ordering::Release);
    shared.up.store(true, Ordering::Release);
    add(&shared.stats.link_ups, 1);
    info!(
        primary = format_args!("{:016x}", shared.me),
        channel = %shared.chan_all,
        "redis link up"
    );
    Ok(conn)
}

type InFlight = Pin<Box<dyn Future<Output = RedisResult<()>> + Send>>;

/// The PUBLISH pipelines in flight, oldest first, with the queue bytes and
/// records each holds, so that a session that ends with some still in
/// flight gives their bytes back to the queue's bound and counts their
/// records as lost with the link.
#[derive(Default)]
struct Pipelines {
    futs: FuturesOrdered<InFlight>,
    held: VecDeque<(usize, u64)>,
}

impl Pipelines {
    fn len(&self) -> usize {
        self.futs.len()
    }

    fn is_empty(&self) -> bool {
        self.futs.is_empty()
    }

    fn push(&mut self, fut: InFlight, bytes: usize, records: u64) {
        self.futs.push_back(fut);
        self.held.push_back((bytes, records));
    }

    /// The oldest pipeline's outcome (they complete in order), with the
    /// bytes and records it held.
    async fn next(&mut self) -> Option<(RedisResult<()>, usize, u64)> {
        let result = self.futs.next().await?;
        let (bytes, records) = self.held.pop_front().unwrap_or_default();
        Some((result, bytes, records))
    }

    /// Drops what is still in flight: its bytes released, its records
    /// counted as lost with the link (pub/sub is at-most-once: some may
    /// have reached Redis).
    fn abandon(&mut self, shared: &Shared) {
        self.futs = FuturesOrdered::new();
        let (mut bytes, mut records) = (0, 0);
        for (b, r) in self.held.drain(..) {
            bytes += b;
            records += r;
        }
        lock(&shared.out).release(bytes);
        add(&shared.stats.link_down_dropped, records);
    }
}

/// Builds one pipeline of PUBLISH commands from what is queued (plus a
/// heartbeat); None when there is nothing to send.
fn next_pipeline(
    shared: &Shared,
    heartbeat: bool,
    leave: bool,
) -> Option<(redis::Pipeline, usize, u64, u64)> {
    let batches = lock(&shared.out).take();
    if batches.is_empty() && !heartbeat && !leave {
        return None;
    }
    let key = shared.key.as_ref();
    let mut pipe = redis::pipe();
    let (mut bytes, mut records, mut envelopes) = (0, 0, 0);
    for b in &batches {
        let channel = shared.channel_of(b.dest);
        let env = envelope::seal(
            Kind::Frames,
            shared.me,
            shared.next_seq(),
            unix_ms(),
            &b.records,
            key,
            channel.as_bytes(),
        );
        pipe.cmd("PUBLISH").arg(&channel).arg(env).ignore();
        bytes += b.records.len();
        records += b.count;
        envelopes += 1;
    }
    for (wanted, kind) in [(heartbeat, Kind::Heartbeat), (leave, Kind::Leave)] {
        if wanted {
            let channel = shared.channel_of(Dest::All);
            let env = envelope::seal(
                kind,
                shared.me,
                shared.next_seq(),
                unix_ms(),
                &[],
                key,
                channel.as_bytes(),
            );
            pipe.cmd("PUBLISH").arg(&channel).arg(env).ignore();
            envelopes += 1;
        }
    }
    Some((pipe, bytes, records, envelopes))
}

async fn session(
    shared: &Arc<Shared>,
    conn: MultiplexedConnection,
    lost: &Notify,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut inflight = Pipelines::default();
    let ended = publish_loop(shared, conn, lost, stop, &mut inflight).await;
    inflight.abandon(shared);
    ended
}

async fn publish_loop(
    shared: &Arc<Shared>,
    conn: MultiplexedConnection,
    lost: &Notify,
    stop: &mut watch::Receiver<bool>,
    inflight: &mut Pipelines,
) -> Ended {
    let cfg = &shared.cfg;
    let mut hb = tokio::time::interval(cfg.heartbeat_interval);
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(
        (cfg.heartbeat_interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(250)),
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout_ms = cfg.heartbeat_timeout.as_millis() as u64;
    let most = cfg.pipelines.max(1);
    let mut heartbeat_due = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => {
                return stop_session(shared, conn, inflight).await;
            }
            _ = lost.notified() => return Ended::Lost("connection closed".into()),
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let (result, bytes, records) = done;
                lock(&shared.out).release(bytes);
                if let Err(e) = result {
                    add(&shared.stats.link_down_dropped, records);
                    return Ended::Lost(format!("publish failed: {e}"));
                }
                add(&shared.stats.records_out, records);
            }
            _ = check.tick() => {
                shared.expire_peers();
                let since = shared.now_ms().saturating_sub(shared.own_echo_ms.load(Ordering::Acquire));
                if since > timeout_ms {
                    return Ended::Lost(format!("no echo of this primary's heartbeat for {since} ms"));
                }
            }
            _ = hb.tick() => heartbeat_due = true,
            _ = shared.wake.notified(), if inflight.len() < most => {}
        }
        if inflight.len() < most
            && let Some((pipe, bytes, records, envelopes)) =
                next_pipeline(shared, heartbeat_due, false)
        {
            heartbeat_due = false;
            add(&shared.stats.envelopes_out, envelopes);
            add(&shared.stats.overlapped, u64::from(!inflight.is_empty()));
            let mut c = conn.clone();
            // A pipeline is sent on its first poll, and pushed futures are
            // first polled in push order: the pipelines keep their order.
            inflight.push(
                Box::pin(async move { pipe.exec_async(&mut c).await }),
                bytes,
                records,
            );
        }
    }
}

/// Sends what is queued and the leave, bounded by the heartbeat timeout.
async fn stop_session(
    shared: &Shared,
    mut conn: MultiplexedConnection,
    inflight: &mut Pipelines,
) -> Ended {
    let bounded = async {
        while let Some((_, bytes, records)) = inflight.next().await {
            lock(&shared.out).release(bytes);
            add(&shared.stats.records_out, records);
        }
        if let Some((pipe, bytes, records, envelopes)) = next_pipeline(shared, false, true) {
            let r = pipe.exec_async(&mut conn).await;
            lock(&shared.out).release(bytes);
            if r.is_ok() {
                add(&shared.stats.records_out, records);
                add(&shared.stats.envelopes_out, envelopes);
            }
        }
    };
    if tokio::time::timeout(shared.cfg.heartbeat_timeout, bounded)
        .await
        .is_err()
    {
        warn!("redis did not take the leave in time");
    } else {
        info!("left the redis cluster");
    }
    shared.up.store(false, Ordering::Release);
    Ended::Stopped
}
