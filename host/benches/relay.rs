//! The hub's relay against the IPC limit: frames published by one worker
//! link, relayed by the hub, received by another link — versus the same
//! bytes written through one raw Unix socket pair (length-prefixed, buffered).
//! Target: hub relay ≥ 0.5× the raw pipe.
//!
//! `cargo bench -p sio-cluster-host --bench relay`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sio_cluster_host::link::ipc;
use sio_cluster_host::link::worker::{Incoming, LinkOptions, LinkReceiver, LinkSender, WorkerLink};
use sio_cluster_host::primary::hub::{Attach, Hub, HubConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;

/// Frames per measured batch.
/// The allocator of the `sio-cluster-host` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FRAMES: u64 = 20_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn link(hub: &Hub, index: u32) -> (LinkSender, LinkReceiver) {
    let (a, b) = UnixStream::pair().expect("pair");
    hub.attach(a, Attach::Trusted { index });
    let opts = LinkOptions {
        exit_on_close: false,
        ..LinkOptions::default()
    };
    WorkerLink::connect_stream(b, index, "", ipc::DEFAULT_MAX_FRAME, opts)
        .await
        .expect("link")
}

/// Sends `n` frames through the hub and waits until all arrived.
async fn through_hub(tx: &LinkSender, rx: &mut LinkReceiver, frame: &[u8], n: u64) -> Duration {
    let t = Instant::now();
    let mut got = 0;
    let mut sent = 0;
    while got < n {
        // Keep a bounded window in flight (the link queues are bounded).
        let window = (8 << 20) / (frame.len() as u64 + 64);
        while sent < n && sent - got < window.max(16) {
            tx.publish(1, "/", frame).expect("publish");
            sent += 1;
        }
        match rx.recv().await {
            Some(Incoming::Frame { .. }) => got += 1,
            Some(_) => {}
            None => panic!("link closed"),
        }
        while let Some(Incoming::Frame { .. }) = rx.try_recv() {
            got += 1;
        }
    }
    t.elapsed()
}

/// The same frames through one raw socket pair (writer task + reader).
async fn through_pipe(frame: &[u8], n: u64) -> Duration {
    let (a, b) = UnixStream::pair().expect("pair");
    let frame = frame.to_vec();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, a);
        for _ in 0..n {
            w.write_all(&(frame.len() as u32).to_le_bytes())
                .await
                .expect("write");
            w.write_all(&frame).await.expect("write");
        }
        w.flush().await.expect("flush");
        w
    });
    let mut r = BufReader::with_capacity(64 * 1024, b);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..n {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).await.expect("read");
        let len = u32::from_le_bytes(len) as usize;
        r.read_exact(&mut buf[..len]).await.expect("read");
    }
    let elapsed = t.elapsed();
    drop(writer.await);
    elapsed
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let hub = Hub::new(HubConfig::default(), None);
    let (tx, _rx0) = rt.block_on(link(&hub, 0));
    let (_tx1, mut rx) = rt.block_on(link(&hub, 1));
    // Let the hub learn both links.
    rt.block_on(through_hub(&tx, &mut rx, b"warm", 10));

    let mut g = c.benchmark_group("relay");
    g.sample_size(10);
    for size in [64usize, 256, 1024, 16 * 1024] {
        let frame = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64 * FRAMES));
        g.bench_function(BenchmarkId::new("hub", size), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(through_hub(&tx, &mut rx, &frame, FRAMES)))
                    .sum()
            })
        });
        g.bench_function(BenchmarkId::new("raw_unix_pipe", size), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(through_pipe(&frame, FRAMES)))
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
