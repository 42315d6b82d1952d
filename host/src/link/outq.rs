//! The outgoing queue of one link end: encoded frames appended by any
//! thread, written by one task in as few syscalls as possible.
//!
//! Small frames are copied into one growing buffer; large ones are kept as
//! their own [`Bytes`] (no copy). The writer takes everything queued at once
//! and writes it with one `write_all` or `writev` per batch.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Frames at most this long are copied when they change hands (into a
/// queue's chunk, or out of a read buffer); longer ones are passed by
/// reference, which costs a reference count instead of a copy.
pub(crate) const COPY_MAX: usize = 512;

/// A frame encoded from a caller's slice (it is copied anyway) goes into a
/// chunk up to this size, else into its own buffer.
pub(crate) const ENCODE_MAX: usize = CHUNK / 4;

/// Size of the chunks small frames are copied into.
const CHUNK: usize = 64 * 1024;

/// Empty chunks kept for reuse (per queue).
const FREE_CHUNKS: usize = 16;

/// Most buffers passed to one `writev`.
const MAX_IOV: usize = 64;

/// One piece of the queue.
#[derive(Debug)]
enum Seg {
    /// A chunk of copied frames (reused once written).
    Chunk(Vec<u8>),
    /// A large frame, by reference.
    Shared(Bytes),
}

impl Seg {
    fn bytes(&self) -> &[u8] {
        match self {
            Seg::Chunk(v) => v,
            Seg::Shared(b) => b,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Complete pieces, in order, before `cur`.
    segs: VecDeque<Seg>,
    /// The chunk small frames are appended to.
    cur: Vec<u8>,
    /// Written chunks, empty, for reuse.
    free: Vec<Vec<u8>>,
    /// No more frames will be appended.
    closed: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.segs.is_empty() && self.cur.is_empty()
    }

    /// The buffer to encode a frame of `n` bytes into (after everything
    /// queued); it has room for them.
    pub(crate) fn buf(&mut self, n: usize) -> &mut Vec<u8> {
        if self.cur.capacity() - self.cur.len() < n {
            let fresh = self.free.pop().unwrap_or_default();
            let full = std::mem::replace(&mut self.cur, fresh);
            if !full.is_empty() {
                self.segs.push_back(Seg::Chunk(full));
            }
            self.cur.reserve(CHUNK.max(n));
        }
        &mut self.cur
    }

    /// Queues `frame` by reference, after everything queued so far.
    pub(crate) fn push_bytes(&mut self, frame: Bytes) {
        if !self.cur.is_empty() {
            let fresh = self.free.pop().unwrap_or_default();
            let full = std::mem::replace(&mut self.cur, fresh);
            self.segs.push_back(Seg::Chunk(full));
        }
        self.segs.push_back(Seg::Shared(frame));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    pending: Mutex<Pending>,
    wake: Notify,
    /// Bytes appended and not yet written (maintained by the callers of
    /// [`OutQueue::append`] and by [`OutQueue::drain`]).
    pub(crate) queued: AtomicUsize,
}

impl OutQueue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A poisoned lock only means a panic elsewhere; the queue stays usable.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the queue under its lock and wakes the writer if `f`
    /// queued the first bytes. `f` must not block.
    pub(crate) fn append<R>(&self, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut p = self.lock();
        let was_empty = p.is_empty();
        let r = f(&mut p);
        let wake = was_empty && !p.is_empty();
        drop(p);
        if wake {
            self.wake.notify_one();
        }
        r
    }

    /// No more frames: the writer ends after what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Drops everything queued and closes the queue (the writer is gone).
    pub(crate) fn discard(&self) {
        let mut p = self.lock();
        p.closed = true;
        p.segs = VecDeque::new();
        p.cur = Vec::new();
        p.free = Vec::new();
    }

    /// Writes every queued frame to `w` until the queue is closed and empty,
    /// or a write fails.
    pub(crate) async fn drain<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        let mut batch: VecDeque<Seg> = VecDeque::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        loop {
            let wait = {
                let mut p = self.lock();
                for mut chunk in written.drain(..) {
                    if p.free.len() < FREE_CHUNKS && chunk.capacity() <= 2 * CHUNK {
                        chunk.clear();
                        p.free.push(chunk);
                    }
                }
                if p.is_empty() {
                    if p.closed {
                        return Ok(());
                    }
                    true
                } else {
                    std::mem::swap(&mut batch, &mut p.segs);
                    if !p.cur.is_empty() {
                        let fresh = p.free.pop().unwrap_or_default();
                        let cur = std::mem::replace(&mut p.cur, fresh);
                        batch.push_back(Seg::Chunk(cur));
                    }
                    false
                }
            };
            if wait {
                self.wake.notified().await;
            } else {
                self.write_batch(w, &mut batch, &mut written).await?;
            }
        }
    }

    /// Writes `batch` out; its chunks end in `written`.
    async fn write_batch<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        batch: &mut VecDeque<Seg>,
        written: &mut Vec<Vec<u8>>,
    ) -> std::io::Result<()> {
        // Bytes of the front piece already written.
        let mut off = 0;
        while let Some(front) = batch.front() {
            let n = if batch.len() == 1 || !w.is_write_vectored() {
                w.write(&front.bytes()[off..]).await?
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for (i, seg) in batch.iter().take(MAX_IOV).enumerate() {
                    let b = seg.bytes();
                    iov[k] = IoSlice::new(if i == 0 { &b[off..] } else { b });
                    k += 1;
                }
                w.write_vectored(&iov[..k]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
            let mut left = n;
            while left > 0 {
                let Some(seg) = batch.front() else { break };
                let rest = seg.bytes().len() - off;
                if rest <= left {
                    left -= rest;
                    off = 0;
                    if let Some(Seg::Chunk(v)) = batch.pop_front() {
                        written.push(v);
                    }
                } else {
                    off += left;
                    left = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn keeps_order_of_copied_and_referenced_frames() {
        let q = Arc::new(OutQueue::default());
        let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut want = Vec::new();
        for i in 0..200u32 {
            let len = if i % 7 == 0 { 10_000 } else { 10 + i as usize };
            let frame: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            want.extend_from_slice(&frame);
            q.queued.fetch_add(frame.len(), Ordering::AcqRel);
            q.append(|p| {
                if frame.len() > COPY_MAX {
                    p.push_bytes(Bytes::from(frame));
                } else {
                    p.buf(frame.len()).extend_from_slice(&frame);
                }
            });
        }
        q.close();
        let writer = {
            let q = q.clone();
            tokio::spawn(async move {
                q.drain(&mut a).await.unwrap();
            })
        };
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, want);
        assert_eq!(q.queued.load(Ordering::Acquire), 0);
    }
}
