//! The packed result of `on-frames-packed` (and of `broadcast-packed`): the
//! effects and frame errors of a call as one byte list, for hosts built on
//! this crate, and the packed options `broadcast-packed` takes.
//!
//! The typed `on-frames` makes the host lift every effect record, string and
//! list across the component boundary (one guest allocation per list element,
//! then a second conversion into this crate's types). The packed form is one
//! byte copy and one postcard decode straight into [`Effect`]s.
//!
//! Layout: [`PACKED_VERSION`], then items until the end, each a postcard
//! `Item` (`0` + an [`Effect`], or `1` + a [`FrameError`]), in the order
//! `on-frames` would return them (effects in order; errors in order).
//!
//! The hot path, a remote broadcast without acks for a host that keeps rooms,
//! is written without decoding its targets and packet into owned values: the
//! frame's `opts` and `packet` bytes are already the postcard encoding of
//! `LocalOp::Broadcast`'s fields, so they are checked and copied as they are
//! ([`BroadcastView`]). The same holds the other way for `broadcast-packed`
//! to every node: the host's option bytes and packet become the frame's
//! body and the local effect's fields in one pass
//! ([`push_broadcast_to_all`]), and the host makes that local effect from
//! its own values rather than decoding it ([`decode_broadcast`]).

use serde::{Deserialize, Serialize};

use crate::types::{Effect, Flags, FrameError, LocalOp, NodeId, Opts};
use crate::wire::VERSION;

/// Version byte of a packed result.
pub const PACKED_VERSION: u8 = 1;

/// Postcard tags of the path `Item::Effect(Effect::Apply(LocalOp::Broadcast(..)))`.
const APPLY_BROADCAST_TAGS: [u8; 3] = [0, 2, 0];
/// Postcard tags of the path `Item::Effect(Effect::Publish(..))`.
const PUBLISH_TAGS: [u8; 2] = [0, 0];
/// Postcard tag of `Message::Broadcast` in a frame.
const BROADCAST_TAG: u32 = 2;

#[derive(Serialize)]
enum ItemRef<'a> {
    Effect(&'a Effect),
    Error(&'a FrameError),
}

#[derive(Deserialize)]
enum Item {
    Effect(Effect),
    Error(FrameError),
}

/// Starts a packed result.
pub fn start(out: &mut Vec<u8>) {
    out.clear();
    out.push(PACKED_VERSION);
}

/// Appends effects.
pub fn push_effects(out: &mut Vec<u8>, effects: &[Effect]) {
    for e in effects {
        push(out, &ItemRef::Effect(e));
    }
}

/// Appends a frame error.
pub fn push_error(out: &mut Vec<u8>, error: &FrameError) {
    push(out, &ItemRef::Error(error));
}

fn push(out: &mut Vec<u8>, item: &ItemRef<'_>) {
    // Serializing into a Vec cannot fail for these types.
    let buf = std::mem::take(out);
    *out = postcard::to_extend(item, buf).unwrap_or_default();
}

/// The options of `broadcast-packed`: the postcard encoding of [`Opts`].
pub fn encode_opts(opts: &Opts) -> Vec<u8> {
    // Serializing into a Vec cannot fail for this type.
    postcard::to_allocvec(opts).unwrap_or_default()
}

/// Reads [`encode_opts`]'s bytes; trailing bytes are refused.
pub fn decode_opts(bytes: &[u8]) -> Result<Opts, String> {
    match postcard::take_from_bytes::<Opts>(bytes) {
        Ok((opts, [])) => Ok(opts),
        Ok((_, rest)) => Err(format!("{} bytes after the options", rest.len())),
        Err(e) => Err(format!("options: {e}")),
    }
}

/// Decodes a packed result. An error means the producer is broken (the
/// component's output is checked like any other outside input).
pub fn decode(bytes: &[u8]) -> Result<(Vec<Effect>, Vec<FrameError>), String> {
    decode_items(bytes, None)
}

/// [`decode`] for the result of `broadcast-packed(opts, packet)`, where
/// `opts` are the bytes of [`encode_opts`] for `owned.0` and `owned.1` is
/// the packet: an `Apply(LocalOp::Broadcast)` whose fields are these bytes
/// exactly (what a node leaving rooms to its host gives back) is made from
/// the caller's own values instead of being decoded into new ones.
pub fn decode_broadcast(
    bytes: &[u8],
    opts: &[u8],
    owned: (Opts, Vec<u8>),
) -> Result<(Vec<Effect>, Vec<FrameError>), String> {
    decode_items(bytes, Some((opts, owned)))
}

/// The encoded options of a `broadcast-packed` call and the call's own
/// options and packet, for [`decode_broadcast`].
type Echo<'a> = (&'a [u8], (Opts, Vec<u8>));

fn decode_items(
    bytes: &[u8],
    mut echo: Option<Echo<'_>>,
) -> Result<(Vec<Effect>, Vec<FrameError>), String> {
    let (&version, mut rest) = bytes
        .split_first()
        .ok_or_else(|| "empty packed result".to_owned())?;
    if version != PACKED_VERSION {
        return Err(format!("packed result version {version}"));
    }
    let mut effects = Vec::new();
    let mut errors = Vec::new();
    while !rest.is_empty() {
        if let Some(len) = echo
            .as_ref()
            .and_then(|(opts, (_, packet))| echo_len(rest, opts, packet))
            && let Some((_, (opts, packet))) = echo.take()
        {
            effects.push(Effect::Apply(LocalOp::Broadcast(opts, packet)));
            rest = &rest[len..];
            continue;
        }
        let (item, tail) = postcard::take_from_bytes::<Item>(rest).map_err(|e| {
            format!(
                "packed result item at byte {}: {e}",
                bytes.len() - rest.len()
            )
        })?;
        match item {
            Item::Effect(e) => effects.push(e),
            Item::Error(e) => errors.push(e),
        }
        rest = tail;
    }
    Ok((effects, errors))
}

/// The length of `Apply(LocalOp::Broadcast(opts, packet))` at the start of
/// `rest`, if that is what it holds, byte for byte.
fn echo_len(rest: &[u8], opts: &[u8], packet: &[u8]) -> Option<usize> {
    let tail = rest.strip_prefix(&APPLY_BROADCAST_TAGS[..])?;
    let tail = tail.strip_prefix(opts)?;
    let (len, n) = varint(packet.len() as u64);
    let tail = tail.strip_prefix(&len[..n])?;
    tail.strip_prefix(packet)?;
    Some(APPLY_BROADCAST_TAGS.len() + opts.len() + n + packet.len())
}

/// `Opts` checked in place (same postcard layout as [`crate::Opts`]); the
/// strings are checked, not kept.
#[derive(Deserialize)]
struct OptsView<'a> {
    _rooms: StrSeq,
    _except: StrSeq,
    flags: Flags,
    #[serde(borrow)]
    _sid: Option<&'a str>,
    target: Option<NodeId>,
}

/// Whether `opts` (the bytes of [`encode_opts`]) are well formed, with no
/// trailing bytes, and address every node: not local, no target node. Such
/// bytes are also the frame's options as they are (see
/// [`push_broadcast_to_all`]).
pub fn opts_to_all(opts: &[u8]) -> bool {
    matches!(
        postcard::take_from_bytes::<OptsView<'_>>(opts),
        Ok((v, [])) if !v.flags.local && v.target.is_none()
    )
}

/// Appends the effects of a broadcast without acks to every node from a
/// node that leaves rooms to its host: `Publish(frame)` then
/// `Apply(LocalOp::Broadcast(opts, packet))`, the bytes
/// [`push_effects`] would write for them, written from the caller's bytes
/// in one pass. `opts` must have passed [`opts_to_all`].
pub fn push_broadcast_to_all(
    out: &mut Vec<u8>,
    uid: NodeId,
    nsp: &str,
    opts: &[u8],
    packet: &[u8],
) {
    // The frame: VERSION, uid, nsp, Message::Broadcast { opts, packet, ack: None }.
    let body_len = opts.len() + varint_len(packet.len() as u64) + packet.len();
    let frame_len = 1
        + varint_len(uid)
        + varint_len(nsp.len() as u64)
        + nsp.len()
        + varint_len(u64::from(BROADCAST_TAG))
        + body_len
        + 1;
    out.reserve(
        PUBLISH_TAGS.len()
            + varint_len(frame_len as u64)
            + frame_len
            + APPLY_BROADCAST_TAGS.len()
            + body_len,
    );
    out.extend_from_slice(&PUBLISH_TAGS);
    push_varint(out, frame_len as u64);
    out.push(VERSION);
    push_varint(out, uid);
    push_varint(out, nsp.len() as u64);
    out.extend_from_slice(nsp.as_bytes());
    push_varint(out, u64::from(BROADCAST_TAG));
    let body = out.len();
    out.extend_from_slice(opts);
    push_varint(out, packet.len() as u64);
    out.extend_from_slice(packet);
    out.push(0);
    // The local effect's fields are the frame's body, byte for byte.
    out.extend_from_slice(&APPLY_BROADCAST_TAGS);
    out.extend_from_within(body..body + body_len);
}

/// Length of postcard's varint (LEB128) of `n`.
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends postcard's varint (LEB128) of `n`.
fn push_varint(out: &mut Vec<u8>, n: u64) {
    let (bytes, len) = varint(n);
    out.extend_from_slice(&bytes[..len]);
}

/// Postcard's varint (LEB128) of `n` and its length.
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut len = 0;
    while n >= 0x80 {
        bytes[len] = (n as u8) | 0x80;
        n >>= 7;
        len += 1;
    }
    bytes[len] = n as u8;
    (bytes, len + 1)
}

/// A sequence of strings, each checked (UTF-8, length), none allocated.
struct StrSeq;

impl<'de> Deserialize<'de> for StrSeq {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StrSeq;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a sequence of strings")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StrSeq, A::Error> {
                while seq.next_element::<&'de str>()?.is_some() {}
                Ok(StrSeq)
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// A frame holding a broadcast without acks, read in place.
#[derive(Debug, PartialEq, Eq)]
pub struct BroadcastView<'a> {
    /// Sender node.
    pub uid: NodeId,
    /// Sender namespace.
    pub nsp: &'a str,
    /// The postcard bytes of `opts` then `packet`, checked.
    pub body: &'a [u8],
}

impl<'a> BroadcastView<'a> {
    /// Reads `frame` if it is a well-formed BROADCAST without acks of at most
    /// `max_len` bytes; `None` for anything else (decode it the usual way).
    pub fn parse(frame: &'a [u8], max_len: u32) -> Option<Self> {
        if u32::try_from(frame.len()).ok()? > max_len {
            return None;
        }
        let (&version, body) = frame.split_first()?;
        if version != VERSION {
            return None;
        }
        let ((uid, nsp, tag), rest) =
            postcard::take_from_bytes::<(NodeId, &str, u32)>(body).ok()?;
        if tag != BROADCAST_TAG {
            return None;
        }
        let (_, after_opts) = postcard::take_from_bytes::<OptsView<'_>>(rest).ok()?;
        let (_, after_packet) = postcard::take_from_bytes::<&[u8]>(after_opts).ok()?;
        // `ack: None` and nothing after it.
        if after_packet != [0] {
            return None;
        }
        Some(BroadcastView {
            uid,
            nsp,
            body: &rest[..rest.len() - 1],
        })
    }

    /// Appends `Effect::Apply(LocalOp::Broadcast(opts, packet))`.
    pub fn push_apply(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&APPLY_BROADCAST_TAGS);
        out.extend_from_slice(self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LocalOp, Opts};
    use crate::wire::{self, AckRequest, Envelope, Message};

    #[test]
    fn opts_round_trip_and_refuse_garbage() {
        let mut opts = Opts::rooms(["a", "b"]);
        opts.except = vec!["c".into()];
        opts.sid = Some("s1".into());
        opts.flags.volatile = true;
        let bytes = encode_opts(&opts);
        assert_eq!(decode_opts(&bytes), Ok(opts));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_opts(&longer),
            Err("1 bytes after the options".into())
        );
        assert!(decode_opts(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_opts(&[]).is_err());
        assert!(decode_opts(&[1, 2, 0xff, 0xfe]).is_err());
    }

    fn broadcast(opts: Opts, packet: &[u8], ack: Option<AckRequest>) -> Vec<u8> {
        wire::encode(&Envelope {
            uid: 0x1234_5678_9abc_def0,
            nsp: "/chat".into(),
            msg: Message::Broadcast {
                opts,
                packet: packet.to_vec(),
                ack,
            },
        })
    }

    fn rich_opts() -> Opts {
        let mut o = Opts::rooms(["a", "β-room"]).except(["x"]);
        o.flags.broadcast = true;
        o.flags.volatile = true;
        o.sid = Some("sid-1".into());
        o.target = Some(u64::MAX);
        o
    }

    #[test]
    fn view_copies_what_a_full_decode_gives() {
        for opts in [Opts::all(), rich_opts()] {
            for packet in [&b""[..], b"2[\"m\",1]", &[0xff; 300]] {
                let frame = broadcast(opts.clone(), packet, None);
                let view = BroadcastView::parse(&frame, u32::MAX).expect("a broadcast");
                assert_eq!(view.uid, 0x1234_5678_9abc_def0);
                assert_eq!(view.nsp, "/chat");
                let mut out = Vec::new();
                start(&mut out);
                view.push_apply(&mut out);
                let (effects, errors) = decode(&out).expect("decodes");
                assert!(errors.is_empty());
                assert_eq!(
                    effects,
                    vec![Effect::Apply(LocalOp::Broadcast(
                        opts.clone(),
                        packet.to_vec()
                    ))]
                );
            }
        }
    }

    #[test]
    fn view_refuses_everything_else() {
        let ack = Some(AckRequest {
            request_id: 7,
            timeout_ms: 100,
        });
        let with_ack = broadcast(Opts::all(), b"p", ack);
        assert_eq!(BroadcastView::parse(&with_ack, u32::MAX), None);
        let ok = broadcast(Opts::all(), b"p", None);
        assert!(BroadcastView::parse(&ok, u32::MAX).is_some());
        assert_eq!(BroadcastView::parse(&ok, ok.len() as u32 - 1), None);
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(BroadcastView::parse(&trailing, u32::MAX), None);
        for cut in 0..ok.len() {
            assert_eq!(BroadcastView::parse(&ok[..cut], u32::MAX), None);
        }
        let mut version = ok.clone();
        version[0] = 9;
        assert_eq!(BroadcastView::parse(&version, u32::MAX), None);
        let heartbeat = wire::encode(&Envelope {
            uid: 1,
            nsp: "/".into(),
            msg: Message::Heartbeat,
        });
        assert_eq!(BroadcastView::parse(&heartbeat, u32::MAX), None);
    }

    #[test]
    fn decode_broadcast_moves_the_echo_and_decodes_the_rest() {
        let opts = rich_opts();
        let bytes = encode_opts(&opts);
        let packet = vec![7u8; 200];
        let local = Effect::Apply(LocalOp::Broadcast(opts.clone(), packet.clone()));
        let other = Effect::Apply(LocalOp::Broadcast(Opts::all(), packet.clone()));
        for effects in [
            vec![Effect::Publish(vec![1, 2]), local.clone()],
            vec![local.clone(), local.clone(), other.clone()],
            vec![other.clone(), Effect::NodeUp(3)],
            vec![],
        ] {
            let mut out = Vec::new();
            start(&mut out);
            push_effects(&mut out, &effects);
            assert_eq!(
                decode_broadcast(&out, &bytes, (opts.clone(), packet.clone())),
                decode(&out)
            );
            assert_eq!(decode(&out), Ok((effects, Vec::new())));
            // A cut anywhere is still refused.
            for cut in 1..out.len() {
                assert_eq!(
                    decode_broadcast(&out[..cut], &bytes, (opts.clone(), packet.clone())).is_err(),
                    decode(&out[..cut]).is_err()
                );
            }
        }
    }

    #[test]
    fn decode_refuses_garbage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err());
        assert!(decode(&[PACKED_VERSION, 7]).is_err());
        assert_eq!(decode(&[PACKED_VERSION]), Ok((Vec::new(), Vec::new())));
    }
}
