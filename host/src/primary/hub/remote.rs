//! The hub's side of a link to other machines' hubs (the Redis bridge,
//! [`crate::primary::bridge`]).
//!
//! The hub stays the router of its machine:
//! * a worker's `Publish` goes to the other local workers and, unchanged, to
//!   the [`RemoteLink`];
//! * a `Send` whose target uid no local worker owns goes to the
//!   [`RemoteLink`], which knows (or not) the machine hosting it;
//! * when a local worker's link closes, the [`RemoteLink`] hears of each of
//!   its uids, as the local workers do (fast leave across machines).
//!
//! In the other direction the bridge hands in whole batches of frames that
//! came from other machines ([`Hub::deliver_remote`]), in the worker -> hub
//! encoding (`Publish` / `Send`, length prefix included), and reports remote
//! nodes that are gone ([`Hub::remote_node_down`]). Delivery only queues
//! towards local workers (never waits): a local worker that stops reading is
//! dropped at its queue limit as for any frame, the Redis reader never blocks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BufMut;
use tracing::debug;

use super::{Hub, bump};
use crate::link::ipc::{self, CodecError, FromHub, RelayHeader};

/// The hub's view of the link to other machines.
///
/// Called with the hub's state lock held: implementations must not block
/// and must not call back into the [`Hub`].
pub trait RemoteLink: Send + Sync + 'static {
    /// A local worker's frame for other machines: `frame` is its worker ->
    /// hub encoding (`Publish`, or `Send` when `target` is `Some`), length
    /// prefix included. Returns false for a `Send` whose target uid is not
    /// known on any other machine (the hub counts it as an unknown target).
    fn relay(&self, frame: &[u8], target: Option<u64>) -> bool;

    /// The local node `uid` of namespace `nsp` is gone (its worker's link
    /// closed).
    fn node_down(&self, uid: u64, nsp: &str);
}

/// What [`Hub::deliver_remote`] did with one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemoteDelivery {
    /// Frames read from the batch.
    pub frames: u64,
    /// Frames queued towards local workers (a Publish counts once per worker).
    pub queued: u64,
    /// Sends whose target no local worker owns (any more).
    pub unknown_target: u64,
    /// Frames dropped because their sender uid belongs to a local worker.
    pub uid_conflicts: u64,
}

impl Hub {
    /// Installs the link to other machines; only the first call takes effect
    /// (returns false for a later one).
    pub fn set_remote(&self, link: Arc<dyn RemoteLink>) -> bool {
        self.inner.remote.set(link).is_ok()
    }

    /// Tells the remote link, if any, about a local worker's relayed frame.
    pub(super) fn relay_remote(&self, frame: &[u8], target: Option<u64>) -> bool {
        match self.inner.remote.get() {
            Some(remote) => remote.relay(frame, target),
            None => false,
        }
    }

    /// Whether `uid` belongs to a worker attached to this hub.
    pub fn is_local_uid(&self, uid: u64) -> bool {
        self.lock().uid_owner.contains_key(&uid)
    }

    /// Delivers frames that came from another machine. `records` holds
    /// worker -> hub `Publish` and `Send` frames back to back (length
    /// prefixes included, each payload at most the hub's `max_frame`): a
    /// Publish goes to every local worker, a Send to the local worker owning
    /// its target. The whole batch is checked before anything is queued, so a
    /// malformed batch is refused whole ([`CodecError`]).
    pub fn deliver_remote(&self, records: &[u8]) -> Result<RemoteDelivery, CodecError> {
        let mut parsed = Vec::new();
        let mut at = 0;
        while at < records.len() {
            let head = records.get(at..at + 4).ok_or(CodecError::Truncated)?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len == 0 {
                return Err(CodecError::Empty);
            }
            if len > self.inner.config.max_frame {
                return Err(CodecError::TooLarge {
                    len,
                    max: self.inner.config.max_frame,
                });
            }
            let payload = records
                .get(at + 4..at + 4 + len)
                .ok_or(CodecError::Truncated)?;
            let Some(header) = RelayHeader::parse(payload)? else {
                return Err(CodecError::UnknownKind(payload[0]));
            };
            parsed.push((at + 4, len, header));
            at += 4 + len;
        }
        let mut d = RemoteDelivery::default();
        let st = self.lock();
        for (start, len, header) in parsed {
            d.frames += 1;
            let payload = &records[start..start + len];
            if st.uid_owner.contains_key(&header.sender) {
                d.uid_conflicts += 1;
                continue;
            }
            // The Frame a worker gets: `len | FRAME | sender | nsp | body`.
            let body = &payload[header.body..];
            let nsp = &payload[header.nsp.0..header.nsp.0 + header.nsp.1];
            let out_len = 4 + 1 + 8 + 2 + nsp.len() + body.len();
            let put = |p: &mut crate::link::outq::Pending| {
                let buf = p.buf(out_len);
                buf.put_u32_le((out_len - 4) as u32);
                buf.put_u8(ipc::FRAME_KIND);
                buf.put_u64_le(header.sender);
                buf.put_u16_le(nsp.len() as u16);
                buf.put_slice(nsp);
                buf.put_slice(body);
            };
            match header.target {
                Some(target) => match st.uid_owner.get(&target).and_then(|c| st.conns.get(c)) {
                    Some(conn) => d.queued += u64::from(self.push_with(conn, out_len, put)),
                    None => {
                        d.unknown_target += 1;
                        debug!(
                            target = format_args!("{target:016x}"),
                            "remote send to an unknown uid dropped"
                        );
                    }
                },
                None => {
                    for conn in st.conns.values() {
                        d.queued += u64::from(self.push_with(conn, out_len, put));
                    }
                }
            }
        }
        drop(st);
        let stats = &self.inner.stats;
        stats.frames_out.fetch_add(d.queued, Ordering::Relaxed);
        stats
            .unknown_target
            .fetch_add(d.unknown_target, Ordering::Relaxed);
        stats
            .uid_conflicts
            .fetch_add(d.uid_conflicts, Ordering::Relaxed);
        Ok(d)
    }

    /// Remote nodes that are gone (their machine stopped, crashed, was cut
    /// off, or this machine lost its own link): one `NodeDown` per node to
    /// every local worker, at once.
    pub fn remote_node_down<'a>(&self, nodes: impl IntoIterator<Item = (u64, &'a str)>) {
        let frames: Vec<_> = nodes
            .into_iter()
            .filter(|(_, nsp)| ipc::check_str(nsp).is_ok())
            .map(|(uid, nsp)| {
                FromHub::NodeDown {
                    uid,
                    nsp: nsp.to_string(),
                }
                .encode()
            })
            .collect();
        if frames.is_empty() {
            return;
        }
        let st = self.lock();
        for frame in &frames {
            for conn in st.conns.values() {
                bump(&self.inner.stats.node_down);
                if self.push(conn, frame.clone()) {
                    bump(&self.inner.stats.frames_out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::UnixStream;

    use super::*;
    use crate::link::ipc::ToHub;
    use crate::link::worker::{Incoming, LinkOptions, LinkReceiver, LinkSender, WorkerLink};
    use crate::primary::hub::{Attach, HubConfig};

    #[derive(Default)]
    struct Recorder {
        relayed: Mutex<Vec<(Vec<u8>, Option<u64>)>>,
        downs: Mutex<Vec<(u64, String)>>,
    }

    impl RemoteLink for Recorder {
        fn relay(&self, frame: &[u8], target: Option<u64>) -> bool {
            self.relayed.lock().unwrap().push((frame.to_vec(), target));
            target != Some(404)
        }
        fn node_down(&self, uid: u64, nsp: &str) {
            self.downs.lock().unwrap().push((uid, nsp.to_string()));
        }
    }

    async fn link(hub: &Hub, index: u32) -> (LinkSender, LinkReceiver) {
        let (a, b) = UnixStream::pair().unwrap();
        hub.attach(a, Attach::Trusted { index });
        let opts = LinkOptions {
            exit_on_close: false,
            ..LinkOptions::default()
        };
        WorkerLink::connect_stream(b, index, "", ipc::DEFAULT_MAX_FRAME, opts)
            .await
            .unwrap()
    }

    async fn next(rx: &mut LinkReceiver) -> Incoming {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("timely message")
            .expect("open link")
    }

    #[tokio::test]
    async fn frames_cross_the_remote_link_both_ways() {
        let hub = Hub::new(HubConfig::default(), None);
        let remote = Arc::new(Recorder::default());
        assert!(hub.set_remote(remote.clone()));
        assert!(!hub.set_remote(remote.clone()), "only once");
        let (s0, mut r0) = link(&hub, 0).await;
        let (s1, mut r1) = link(&hub, 1).await;

        // Local Publish: the other worker and the remote link, unchanged.
        s0.publish(10, "/", b"hb0").unwrap();
        next(&mut r1).await;
        s1.publish(11, "/", b"hb1").unwrap();
        next(&mut r0).await;
        let want = ToHub::Publish {
            sender: 10,
            nsp: "/".into(),
            frame: Bytes::from_static(b"hb0"),
        }
        .encode();
        assert_eq!(remote.relayed.lock().unwrap()[0], (want.to_vec(), None));
        // A Send to a uid no local worker owns goes to the remote link.
        s0.send(10, 77, "/", b"to-77").unwrap();
        s0.send(10, 404, "/", b"nowhere").unwrap();
        s0.publish(10, "/", b"sync").unwrap();
        next(&mut r1).await;
        let relayed = remote.relayed.lock().unwrap().clone();
        assert_eq!(relayed[2].1, Some(77));
        assert_eq!(relayed[3].1, Some(404));
        assert_eq!(hub.stats().unknown_target, 1, "the remote link refused 404");

        // From another machine: a Publish, a Send to node 11, a Send to an
        // unknown node and a spoofed local sender.
        let mut batch = Vec::new();
        for m in [
            ToHub::Publish {
                sender: 500,
                nsp: "/".into(),
                frame: Bytes::from_static(b"remote-all"),
            },
            ToHub::Send {
                sender: 500,
                target: 11,
                nsp: "/".into(),
                frame: Bytes::from_static(b"remote-to-11"),
            },
            ToHub::Send {
                sender: 500,
                target: 12345,
                nsp: "/".into(),
                frame: Bytes::from_static(b"lost"),
            },
            ToHub::Publish {
                sender: 10,
                nsp: "/".into(),
                frame: Bytes::from_static(b"spoof"),
            },
        ] {
            batch.extend_from_slice(&m.encode());
        }
        let d = hub.deliver_remote(&batch).unwrap();
        assert_eq!(
            d,
            RemoteDelivery {
                frames: 4,
                queued: 3,
                unknown_target: 1,
                uid_conflicts: 1
            }
        );
        let frame = |f: &'static [u8]| Incoming::Frame {
            nsp: "/".into(),
            from: 500,
            frame: Bytes::from_static(f),
        };
        assert_eq!(next(&mut r0).await, frame(b"remote-all"));
        assert_eq!(next(&mut r1).await, frame(b"remote-all"));
        assert_eq!(next(&mut r1).await, frame(b"remote-to-11"));
        assert!(hub.is_local_uid(10) && !hub.is_local_uid(500));

        // Malformed batches are refused whole.
        assert!(hub.deliver_remote(&batch[..batch.len() - 1]).is_err());
        assert!(hub.deliver_remote(&[1, 0, 0, 0, 0x7e]).is_err());
        assert!(hub.deliver_remote(&[0, 0, 0, 0]).is_err());
        let hello = ToHub::SessionOpened { sid: "x".into() }.encode();
        assert!(hub.deliver_remote(&hello).is_err());

        // Remote nodes gone: NodeDown to every local worker.
        hub.remote_node_down([(500, "/")]);
        for rx in [&mut r0, &mut r1] {
            assert_eq!(
                next(rx).await,
                Incoming::NodeDown {
                    uid: 500,
                    nsp: "/".into()
                }
            );
        }
        // A local worker leaves: the remote link hears of its node.
        drop(s1);
        drop(r1);
        assert_eq!(
            next(&mut r0).await,
            Incoming::NodeDown {
                uid: 11,
                nsp: "/".into()
            }
        );
        assert_eq!(
            remote.downs.lock().unwrap().clone(),
            vec![(11, "/".to_string())]
        );
    }
}
