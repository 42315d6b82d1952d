//! WebSocket connection handoff with SCM_RIGHTS (opt-in: `run --handoff-websocket`).
//!
//! By default the primary proxies every request, upgrades included (the bytes
//! of a WebSocket then cross the primary both ways). With handoff on, when the
//! **first** request of a new client connection is a WebSocket upgrade
//! (`GET` with `Upgrade: websocket` and `Connection: upgrade`), the primary
//! routes it like any request (by `sid`, else by balancing) and passes the
//! client's TCP socket itself to that worker, together with the bytes it
//! already read (the request head), over a per-worker `SOCK_SEQPACKET`
//! socketpair inherited as `SIO_CLUSTER_HANDOFF=fd:5`. The worker serves that
//! connection as if it had accepted it, replaying the bytes first
//! ([`PrefixedIo`]); the primary keeps no copy and never touches its bytes again.
//!
//! One message = the already-read bytes (at most [`MAX_HANDOFF_PREFIX`]) as
//! payload + exactly one fd as `SCM_RIGHTS`. If the handoff cannot be done in
//! [`HANDOFF_TIMEOUT`] (the worker does not read, or is gone), the primary
//! falls back to proxying that connection. Every other connection (polling,
//! and upgrades that come later on a keep-alive connection) is proxied as
//! usual, so per-request routing is unchanged.
//!
//! Workers started with handoff on **must** read the handoff socket
//! ([`HandoffReceiver::accept`]); the test worker shows how.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes the primary reads before deciding and passes along.
pub const MAX_HANDOFF_PREFIX: usize = 64 * 1024;

/// Time a handoff may take before the primary proxies the connection instead.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes a `SOCK_SEQPACKET` socketpair (both ends close-on-exec).
pub fn handoff_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open and always returns the same fd until the
    // AsyncFd that owns it is dropped.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// Primary side of one worker's handoff socket.
#[derive(Debug)]
pub struct HandoffSender {
    fd: AsyncFd<OwnedFd>,
}

impl HandoffSender {
    /// Wraps the primary's end of a [`handoff_pair`] (needs a tokio runtime).
    pub fn new(fd: OwnedFd) -> io::Result<HandoffSender> {
        set_nonblocking(&fd)?;
        Ok(HandoffSender { fd: register(fd)? })
    }

    /// Passes `conn` and the bytes already read from it to the worker.
    pub async fn send(&self, conn: impl AsFd, prefix: &[u8]) -> io::Result<()> {
        if prefix.is_empty() || prefix.len() > MAX_HANDOFF_PREFIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "handoff prefix must hold 1 to MAX_HANDOFF_PREFIX bytes",
            ));
        }
        let conn = conn.as_fd();
        loop {
            let mut guard = self.fd.writable().await?;
            let r = guard.try_io(|inner| {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                let fds = [conn];
                if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                    return Err(io::Error::other("ancillary buffer too small"));
                }
                rustix::net::sendmsg(
                    inner.get_ref(),
                    &[IoSlice::new(prefix)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(io::Error::from)
            });
            match r {
                Ok(Ok(n)) if n == prefix.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::other(format!(
                        "short handoff write ({n} of {} bytes)",
                        prefix.len()
                    )));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Worker side of the handoff socket.
#[derive(Debug)]
pub struct HandoffReceiver {
    fd: AsyncFd<OwnedFd>,
}

impl HandoffReceiver {
    /// Wraps the worker's end (needs a tokio runtime).
    pub fn new(fd: OwnedFd) -> io::Result<HandoffReceiver> {
        set_nonblocking(&fd)?;
        Ok(HandoffReceiver { fd: register(fd)? })
    }

    /// The next handed-off connection and the bytes to replay before reading
    /// from it; `None` once the primary closed the socket. The stream is in
    /// blocking mode as received; call `set_nonblocking(true)` before giving
    /// it to tokio.
    pub async fn accept(&self) -> io::Result<Option<(std::net::TcpStream, Bytes)>> {
        let mut buf = vec![0u8; MAX_HANDOFF_PREFIX];
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|inner| {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    inner.get_ref(),
                    &mut [IoSliceMut::new(&mut buf)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let mut fds: Vec<OwnedFd> = Vec::new();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(iter) = m {
                        fds.extend(iter);
                    }
                }
                Ok((msg.bytes, msg.flags, fds))
            });
            let (n, flags, mut fds) = match r {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            };
            if n == 0 && fds.is_empty() {
                return Ok(None);
            }
            if flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) || fds.len() != 1 {
                // Malformed message: drop whatever fds came with it.
                continue;
            }
            let Some(fd) = fds.pop() else {
                continue;
            };
            let stream = std::net::TcpStream::from(fd);
            return Ok(Some((stream, Bytes::copy_from_slice(&buf[..n]))));
        }
    }
}

/// Accepts handed-off connections until the primary closes the socket and
/// gives each one, ready for tokio and with its already-read bytes in front,
/// to `serve` (which should spawn).
pub fn accept_loop(
    receiver: HandoffReceiver,
    serve: impl Fn(PrefixedIo<tokio::net::TcpStream>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some((stream, prefix))) = receiver.accept().await {
            let Ok(stream) = stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            serve(PrefixedIo::new(prefix, stream));
        }
    })
}

/// An I/O object that yields `prefix` before reading from `inner`; writes go
/// straight to `inner`.
#[derive(Debug)]
pub struct PrefixedIo<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> PrefixedIo<T> {
    /// Wraps `inner`, replaying `prefix` first.
    pub fn new(prefix: Bytes, inner: T) -> PrefixedIo<T> {
        PrefixedIo { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PrefixedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PrefixedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_socket_crosses_with_its_prefix() {
        let (a, b) = handoff_pair().unwrap();
        let tx = HandoffSender::new(a).unwrap();
        let rx = HandoffReceiver::new(b).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        tx.send(&server, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        drop(server);
        let (got, prefix) = rx.accept().await.unwrap().unwrap();
        assert_eq!(&prefix[..], b"GET / HTTP/1.1\r\n\r\n");
        got.set_nonblocking(true).unwrap();
        let got = tokio::net::TcpStream::from_std(got).unwrap();
        let mut io = PrefixedIo::new(prefix, got);
        let mut head = [0u8; 18];
        io.read_exact(&mut head).await.unwrap();
        io.write_all(b"pong").await.unwrap();
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"pong");
        drop(tx);
        assert!(rx.accept().await.unwrap().is_none());
    }
}
