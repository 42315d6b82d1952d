//! The stream of acknowledgements a broadcast-with-ack returns.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::FusedStream;
use socketioxide::AckError;
use socketioxide_core::adapter::{AckStreamItem, SocketEmitter};
use tokio::sync::mpsc;

/// One ack as socketioxide streams it.
pub type AckItem = AckStreamItem<AckError>;

/// Acks of a broadcast-with-ack: the local ones straight from socketioxide
/// when the broadcast never leaves this process, else everything the adapter
/// reports (local and remote acks, as they arrive).
///
/// A cluster broadcast that times out ends with one item
/// `(Sid::ZERO, Err(AckError::Timeout))` standing for the clients that did not
/// answer (the adapter knows how many acks are missing, not whose).
pub enum AckStream<E: SocketEmitter<AckError = AckError>> {
    /// Local sockets only.
    Local(Pin<Box<E::AckStream>>),
    /// Through the cluster.
    Cluster(ClusterAcks),
}

/// The acks of a broadcast that went through the adapter.
pub struct ClusterAcks {
    rx: mpsc::UnboundedReceiver<AckItem>,
    done: bool,
}

impl ClusterAcks {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<AckItem>) -> Self {
        ClusterAcks { rx, done: false }
    }
}

impl Stream for ClusterAcks {
    type Item = AckItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AckItem>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl FusedStream for ClusterAcks {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<E: SocketEmitter<AckError = AckError>> Stream for AckStream<E> {
    type Item = AckItem;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AckItem>> {
        match self.get_mut() {
            AckStream::Local(s) => s.as_mut().poll_next(cx),
            AckStream::Cluster(s) => Pin::new(s).poll_next(cx),
        }
    }
}

impl<E: SocketEmitter<AckError = AckError>> FusedStream for AckStream<E> {
    fn is_terminated(&self) -> bool {
        match self {
            AckStream::Local(s) => s.is_terminated(),
            AckStream::Cluster(s) => s.is_terminated(),
        }
    }
}
