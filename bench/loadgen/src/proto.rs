//! Engine.IO v4 / Socket.IO v5 text packets over WebSocket, main namespace only:
//! just what the load generator needs, parsed without allocating.

use serde::Deserialize;

/// One Engine.IO packet received as a WebSocket text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the Engine.IO handshake (sid, pingInterval, ...).
    Open(&'a str),
    /// `1`: the server closes the session.
    Close,
    /// `2`: the server's heartbeat; answer with `3`.
    Ping,
    /// `40{...}`: Socket.IO CONNECT accepted on the main namespace.
    Connect(&'a str),
    /// `41`: Socket.IO DISCONNECT from the server.
    Disconnect,
    /// `42[...]` or `42<id>[...]`: an event, with an ack id when the server wants an answer.
    Event {
        /// The ack id, when the server asks for an acknowledgement.
        ack: Option<u64>,
        /// The JSON array `[name, args...]`.
        data: &'a str,
    },
    /// `43<id>[...]`: the acknowledgement of one of our events.
    Ack {
        /// The id we sent with the event.
        id: u64,
        /// The JSON array of the ack's arguments.
        data: &'a str,
    },
    /// `44{...}`: Socket.IO CONNECT_ERROR.
    ConnectError(&'a str),
    /// Anything else (other namespaces, binary packets, upgrades, noop).
    Other,
}

/// Splits `<digits>[rest` into the number (if any digits) and the rest.
fn split_id(s: &str) -> (Option<u64>, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        (None, s)
    } else {
        (s[..end].parse().ok(), &s[end..])
    }
}

/// Parses one text frame. Never fails: unknown frames are [`Packet::Other`].
pub fn parse(frame: &str) -> Packet<'_> {
    let b = frame.as_bytes();
    match b.first() {
        Some(b'0') => Packet::Open(&frame[1..]),
        Some(b'1') => Packet::Close,
        Some(b'2') => Packet::Ping,
        Some(b'4') => match b.get(1) {
            Some(b'0') => Packet::Connect(&frame[2..]),
            Some(b'1') => Packet::Disconnect,
            Some(b'2') => {
                let (ack, data) = split_id(&frame[2..]);
                if data.starts_with('[') {
                    Packet::Event { ack, data }
                } else {
                    Packet::Other
                }
            }
            Some(b'3') => match split_id(&frame[2..]) {
                (Some(id), data) if data.starts_with('[') => Packet::Ack { id, data },
                _ => Packet::Other,
            },
            Some(b'4') => Packet::ConnectError(&frame[2..]),
            _ => Packet::Other,
        },
        _ => Packet::Other,
    }
}

/// The payload of a load message: `{t, seq, sender}` (any other field, such as
/// `pad`, is ignored).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct LoadMsg {
    /// Send time, CLOCK_MONOTONIC in microseconds.
    pub t: u64,
    /// Sequence number, per sender.
    pub seq: u64,
    /// Index of the sending client.
    pub sender: usize,
}

/// If `data` (an event's JSON array) is `["m", {t, seq, sender}]`, returns the
/// payload; `Ok(None)` for another event, `Err` for a malformed `m`.
pub fn load_msg(data: &str) -> Result<Option<LoadMsg>, serde_json::Error> {
    match data.strip_prefix("[\"m\",") {
        Some(rest) => {
            let obj = rest.strip_suffix(']').unwrap_or(rest);
            serde_json::from_str(obj).map(Some)
        }
        None => Ok(None),
    }
}

/// The name of an event from its JSON array, when it starts with a plain string.
pub fn event_name(data: &str) -> Option<&str> {
    let rest = data.strip_prefix("[\"")?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// `42<id>["name", args...]`: an event with an ack id; `args_json` is the
/// comma-separated JSON arguments (may be empty).
pub fn event_with_ack(id: u64, name: &str, args_json: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
    if args_json.is_empty() {
        format!("42{id}[{name}]")
    } else {
        format!("42{id}[{name},{args_json}]")
    }
}

/// The `to` event of the load: `42["to","r<room>","m",{"t":..,"seq":..,"sender":..}]`.
pub fn to_event(room: &str, t: u64, seq: u64, sender: usize, pad: &str) -> String {
    if pad.is_empty() {
        format!("42[\"to\",\"{room}\",\"m\",{{\"t\":{t},\"seq\":{seq},\"sender\":{sender}}}]")
    } else {
        format!(
            "42[\"to\",\"{room}\",\"m\",{{\"t\":{t},\"seq\":{seq},\"sender\":{sender},\"pad\":\"{pad}\"}}]"
        )
    }
}

/// The `all` event of the load (`--all`): `42["all","m",{"t":..,"seq":..,"sender":..}]`,
/// which the demo worker emits to every client of the cluster.
pub fn all_event(t: u64, seq: u64, sender: usize, pad: &str) -> String {
    if pad.is_empty() {
        format!("42[\"all\",\"m\",{{\"t\":{t},\"seq\":{seq},\"sender\":{sender}}}]")
    } else {
        format!(
            "42[\"all\",\"m\",{{\"t\":{t},\"seq\":{seq},\"sender\":{sender},\"pad\":\"{pad}\"}}]"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_packets() {
        assert_eq!(parse("0{\"sid\":\"a\"}"), Packet::Open("{\"sid\":\"a\"}"));
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(
            parse("40{\"sid\":\"x\"}"),
            Packet::Connect("{\"sid\":\"x\"}")
        );
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(
            parse("42[\"m\",{}]"),
            Packet::Event {
                ack: None,
                data: "[\"m\",{}]"
            }
        );
        assert_eq!(
            parse("4217[\"question\",{}]"),
            Packet::Event {
                ack: Some(17),
                data: "[\"question\",{}]"
            }
        );
        assert_eq!(
            parse("430[true]"),
            Packet::Ack {
                id: 0,
                data: "[true]"
            }
        );
        assert_eq!(parse("43[true]"), Packet::Other);
        assert_eq!(parse("42/admin,[\"x\"]"), Packet::Other);
        assert_eq!(
            parse("44{\"message\":\"no\"}"),
            Packet::ConnectError("{\"message\":\"no\"}")
        );
        assert_eq!(parse(""), Packet::Other);
        assert_eq!(parse("6"), Packet::Other);
    }

    #[test]
    fn parses_load_messages() {
        let m = load_msg("[\"m\",{\"t\":12,\"seq\":3,\"sender\":4,\"pad\":\"xx\"}]")
            .expect("valid")
            .expect("an m event");
        assert_eq!(
            m,
            LoadMsg {
                t: 12,
                seq: 3,
                sender: 4
            }
        );
        assert_eq!(load_msg("[\"question\",{}]").expect("valid"), None);
        assert!(load_msg("[\"m\",{\"t\":\"x\"}]").is_err());
        assert!(load_msg("[\"m\",").is_err());
    }

    #[test]
    fn builds_packets() {
        let e = to_event("r3", 10, 2, 1, "");
        assert_eq!(
            e,
            "42[\"to\",\"r3\",\"m\",{\"t\":10,\"seq\":2,\"sender\":1}]"
        );
        let Packet::Event { data, .. } = parse(&e) else {
            panic!("not an event")
        };
        assert_eq!(event_name(data), Some("to"));
        assert_eq!(event_with_ack(5, "join", "\"r1\""), "425[\"join\",\"r1\"]");
        assert_eq!(event_with_ack(0, "whoami", ""), "420[\"whoami\"]");
    }
}
