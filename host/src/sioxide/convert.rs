//! Conversions between socketioxide's types and the adapter's.
//!
//! * Broadcast options: socketioxide's [`BroadcastOptions`] ⇄ the adapter's
//!   [`Opts`]; a target server id is mapped to the node uid of that server's
//!   namespace node.
//! * Packets: a socketioxide [`Packet`] is encoded with the namespace parser
//!   into its Socket.IO v5 text and attachments, laid out as
//!   [`EncodedPacket`] bytes (see [`crate::sioxide::packet`]); receivers decode them
//!   with the same parser. Only string parsers (socketioxide's default common
//!   parser) are supported: every worker of a cluster must use it.
//! * Acks: an ack's payload is the [`EncodedPacket`] of the ack's argument
//!   array (`[1]`, or `[{"_placeholder":true,"num":0}]` plus attachments).

use std::collections::VecDeque;

use bytes::Bytes;
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions};
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::{Parse, ParseConfig, ParseError, ParserState};
use socketioxide_core::{Sid, Str, Uid, Value};

use crate::adapter::{Flags, NodeId, Opts};
use crate::sioxide::packet::{EncodedPacket, PacketError};

/// Why packet bytes from another node could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not an [`EncodedPacket`].
    #[error("packet bytes: {0}")]
    Layout(#[from] PacketError),
    /// The parser refused the packet.
    #[error("socket.io packet: {0}")]
    Parse(#[from] ParseError),
    /// The packet announced attachments that did not come.
    #[error("socket.io packet: missing binary attachments")]
    MissingAttachments,
}

/// The socketioxide server id standing for node `uid` (16 hex digits, a
/// valid [`Sid`]).
pub fn uid_to_server(uid: NodeId) -> Uid {
    // Hex digits are valid Sid characters and there are exactly 16.
    format!("{uid:016x}").parse().unwrap_or(Uid::ZERO)
}

/// The node uid a server id stands for (see [`uid_to_server`]).
pub fn server_to_uid(server: &Uid) -> Option<NodeId> {
    u64::from_str_radix(server.as_str(), 16).ok()
}

/// socketioxide options → adapter options. `own` maps this process's server
/// id to this namespace's node uid.
pub fn opts_from_sx(opts: &BroadcastOptions, own: (Uid, NodeId)) -> Opts {
    Opts {
        rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
        except: opts.except.iter().map(|r| r.to_string()).collect(),
        flags: Flags {
            local: opts.has_flag(BroadcastFlags::Local),
            broadcast: opts.has_flag(BroadcastFlags::Broadcast),
            volatile: opts.has_flag(BroadcastFlags::Volatile),
            compress: false,
        },
        sid: opts.sid.map(|s| s.as_str().to_string()),
        target: opts.server_id.and_then(|s| {
            if s == own.0 {
                Some(own.1)
            } else {
                server_to_uid(&s)
            }
        }),
    }
}

/// Adapter options → socketioxide options, for local work. Invalid socket
/// ids (from another runtime) are dropped, so such a target matches nobody
/// rather than everybody.
pub fn opts_to_sx(opts: &Opts, own: (Uid, NodeId)) -> Result<BroadcastOptions, String> {
    let mut out = BroadcastOptions::default();
    if opts.flags.local {
        out.add_flag(BroadcastFlags::Local);
    }
    if opts.flags.broadcast {
        out.add_flag(BroadcastFlags::Broadcast);
    }
    if opts.flags.volatile {
        out.add_flag(BroadcastFlags::Volatile);
    }
    out.rooms = opts.rooms.iter().cloned().map(Into::into).collect();
    out.except = opts.except.iter().cloned().map(Into::into).collect();
    out.sid = match &opts.sid {
        None => None,
        Some(s) => Some(
            s.parse::<Sid>()
                .map_err(|e| format!("socket id {s:?}: {e}"))?,
        ),
    };
    out.server_id = opts
        .target
        .map(|t| if t == own.1 { own.0 } else { uid_to_server(t) });
    Ok(out)
}

/// Encodes a packet for the adapter (text + attachments layout).
pub fn encode_packet(parser: impl Parse, packet: Packet) -> Vec<u8> {
    value_to_bytes(parser.encode(packet))
}

/// Decodes packet bytes made by [`encode_packet`] on any node.
pub fn decode_packet(parser: impl Parse, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let p = EncodedPacket::from_bytes(bytes)?;
    let cfg = ParseConfig::default();
    let state = ParserState::default();
    let mut res = parser.decode_str(&cfg, &state, Str::from(p.text));
    for a in p.attachments {
        match res {
            Err(ParseError::NeedsMoreBinaryData) => {
                res = parser.decode_bin(&cfg, &state, Bytes::from(a));
            }
            // More attachments than the packet announced.
            _ => return Err(DecodeError::Parse(ParseError::InvalidAttachments)),
        }
    }
    match res {
        Err(ParseError::NeedsMoreBinaryData) => Err(DecodeError::MissingAttachments),
        other => Ok(other?),
    }
}

/// An ack (or any payload [`Value`]) as adapter bytes.
pub fn value_to_bytes(value: Value) -> Vec<u8> {
    match value {
        Value::Str(text, bins) => EncodedPacket {
            text: text.to_string(),
            attachments: bins
                .map(|b| b.into_iter().map(|a| a.to_vec()).collect())
                .unwrap_or_default(),
        }
        .to_bytes(),
        // Binary parsers are not supported; keep the bytes as one attachment
        // of an empty text so nothing is lost.
        Value::Bytes(b) => EncodedPacket {
            text: String::new(),
            attachments: vec![b.to_vec()],
        }
        .to_bytes(),
    }
}

/// Adapter bytes made by [`value_to_bytes`] back into a [`Value`].
pub fn bytes_to_value(bytes: &[u8]) -> Result<Value, PacketError> {
    let p = EncodedPacket::from_bytes(bytes)?;
    let bins: VecDeque<Bytes> = p.attachments.into_iter().map(Bytes::from).collect();
    Ok(Value::Str(
        Str::from(p.text),
        (!bins.is_empty()).then_some(bins),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide_parser_common::CommonParser;

    #[test]
    fn server_ids_map_to_node_uids_and_back() {
        for uid in [0u64, 1, 0xdead_beef_0000_0001, u64::MAX] {
            assert_eq!(server_to_uid(&uid_to_server(uid)), Some(uid));
        }
        assert_eq!(
            server_to_uid(&Uid::new()),
            None.or(server_to_uid(&Uid::new()))
        );
    }

    #[test]
    fn options_round_trip() {
        let own = (Uid::new(), 7);
        let mut sx = BroadcastOptions::new(Sid::new());
        sx.add_flag(BroadcastFlags::Broadcast);
        sx.rooms.push("a".into());
        sx.except.push("b".into());
        sx.server_id = Some(own.0);
        let o = opts_from_sx(&sx, own);
        assert_eq!(o.target, Some(7));
        assert!(o.flags.broadcast && !o.flags.local);
        assert_eq!(opts_to_sx(&o, own).ok(), Some(sx));
        let mut remote = o.clone();
        remote.target = Some(9);
        let back = opts_to_sx(&remote, own).ok();
        assert_eq!(back.and_then(|b| b.server_id), Some(uid_to_server(9)));
    }

    #[test]
    fn bad_socket_id_is_an_error() {
        let o = Opts {
            sid: Some("not a sid".into()),
            ..Opts::default()
        };
        assert!(opts_to_sx(&o, (Uid::new(), 1)).is_err());
    }

    #[test]
    fn packets_round_trip_with_attachments() {
        let p = CommonParser;
        let data = p
            .encode_value(&(1, "2", bytes::Bytes::from_static(&[3, 4])), Some("test"))
            .map_err(|e| e.to_string());
        let Ok(data) = data else {
            panic!("encode failed: {data:?}")
        };
        let packet = Packet::event("/custom", data);
        let bytes = encode_packet(p, packet.clone());
        let text = EncodedPacket::from_bytes(&bytes).map(|e| e.text);
        assert_eq!(
            text.as_deref().ok(),
            Some("51-/custom,[\"test\",1,\"2\",{\"_placeholder\":true,\"num\":0}]")
        );
        let back = decode_packet(p, &bytes).map_err(|e| e.to_string());
        assert_eq!(back.ok(), Some(packet));
    }

    #[test]
    fn garbage_packets_are_errors() {
        let p = CommonParser;
        assert!(decode_packet(p, &[1, 2, 3]).is_err());
        let missing =
            EncodedPacket::text("51-[\"x\",{\"_placeholder\":true,\"num\":0}]").to_bytes();
        assert!(matches!(
            decode_packet(p, &missing),
            Err(DecodeError::MissingAttachments)
        ));
        let mut extra = EncodedPacket::text("2[\"x\"]");
        extra.attachments.push(vec![1]);
        assert!(decode_packet(p, &extra.to_bytes()).is_err());
    }
}
