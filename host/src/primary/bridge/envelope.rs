//! The bytes of one Redis message between primaries ("envelope").
//!
//! ```text
//! version u8 (= 1) | kind u8 | flags u8 | hub u64 | seq u64 | time_ms u64 | body.. | [tag 32]
//! ```
//!
//! Integers are little endian. `hub` is the sending primary's id (random
//! per start), `seq` counts its envelopes (strictly increasing over all its
//! channels), `time_ms` is its wall clock (Unix ms). `kind`:
//! * [`Kind::Frames`]: the body is a batch of records back to back, each in
//!   the hub link's encoding ([`crate::link::ipc`]), length prefix included:
//!   a worker's `Publish` or `Send` exactly as the worker sent it, or a
//!   `NodeDown` (a local worker's node left);
//! * [`Kind::Heartbeat`]: empty body, sent every primary heartbeat interval;
//! * [`Kind::Leave`]: empty body, the primary stops cleanly.
//!
//! With a cluster key, `flags` bit 0 is set and the envelope ends with an
//! HMAC-SHA256 tag over the channel name, one zero byte and every byte
//! before the tag: an envelope without a valid tag, or one moved to another
//! channel, is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Version byte of this format.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 3 + 8 + 8 + 8;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 32;
const FLAG_TAG: u8 = 1;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A batch of hub link records.
    Frames = 1,
    /// The sender is alive.
    Heartbeat = 2,
    /// The sender stops cleanly.
    Leave = 3,
}

/// A checked envelope; `body` borrows the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What it carries.
    pub kind: Kind,
    /// Sending primary.
    pub hub: u64,
    /// Sender's envelope counter.
    pub seq: u64,
    /// Sender's wall clock (Unix ms).
    pub time_ms: u64,
    /// The records ([`Kind::Frames`]) or nothing.
    pub body: &'a [u8],
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than a header (and tag).
    #[error("envelope too short")]
    Short,
    /// Another format version.
    #[error("envelope version {0} (want {VERSION})")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// A cluster key is set and the envelope has no tag.
    #[error("envelope without an authentication tag")]
    MissingTag,
    /// The tag does not match (wrong key, forged or altered envelope).
    #[error("envelope with a wrong authentication tag")]
    BadTag,
    /// The envelope has a tag and this primary has no cluster key.
    #[error("authenticated envelope but no cluster key configured here")]
    UnexpectedTag,
}

impl EnvelopeError {
    /// True for the errors that mean "not authenticated" (forged, or the
    /// sender's key differs), as opposed to malformed.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            EnvelopeError::MissingTag | EnvelopeError::BadTag | EnvelopeError::UnexpectedTag
        )
    }
}

/// The shared cluster key (HMAC-SHA256).
#[derive(Clone)]
pub struct ClusterKey(Hmac<Sha256>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// Shortest accepted cluster key, in bytes.
pub const MIN_KEY_LEN: usize = 16;

impl ClusterKey {
    /// A key from its bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(key: &[u8]) -> Result<ClusterKey, String> {
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "the cluster key has {} bytes, at least {MIN_KEY_LEN} are needed",
                key.len()
            ));
        }
        Hmac::<Sha256>::new_from_slice(key)
            .map(ClusterKey)
            .map_err(|e| e.to_string())
    }

    /// Reads a key file: its content with surrounding whitespace trimmed.
    pub fn from_file(path: &std::path::Path) -> Result<ClusterKey, String> {
        let raw = std::fs::read(path)
            .map_err(|e| format!("cannot read the cluster key file {}: {e}", path.display()))?;
        let trimmed = raw.trim_ascii();
        ClusterKey::new(trimmed).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn mac(&self, channel: &[u8], bytes: &[u8]) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(channel);
        m.update(&[0]);
        m.update(bytes);
        m
    }
}

/// Appends the header of an envelope to `out` (the body follows, then
/// [`finish`]).
pub fn start(out: &mut Vec<u8>, kind: Kind, hub: u64, seq: u64, time_ms: u64, tagged: bool) {
    out.push(VERSION);
    out.push(kind as u8);
    out.push(if tagged { FLAG_TAG } else { 0 });
    out.extend_from_slice(&hub.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
}

/// Appends the tag when `key` is set (the envelope was started with
/// `tagged` = `key.is_some()`).
pub fn finish(out: &mut Vec<u8>, key: Option<&ClusterKey>, channel: &[u8]) {
    if let Some(key) = key {
        let tag = key.mac(channel, out).finalize().into_bytes();
        out.extend_from_slice(&tag);
    }
}

/// A whole envelope of `kind` with `body`.
pub fn seal(
    kind: Kind,
    hub: u64,
    seq: u64,
    time_ms: u64,
    body: &[u8],
    key: Option<&ClusterKey>,
    channel: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    start(&mut out, kind, hub, seq, time_ms, key.is_some());
    out.extend_from_slice(body);
    finish(&mut out, key, channel);
    out
}

/// Checks and reads an envelope received on `channel`.
pub fn open<'a>(
    msg: &'a [u8],
    key: Option<&ClusterKey>,
    channel: &[u8],
) -> Result<Envelope<'a>, EnvelopeError> {
    if msg.len() < HEADER_LEN {
        return Err(EnvelopeError::Short);
    }
    if msg[0] != VERSION {
        return Err(EnvelopeError::Version(msg[0]));
    }
    let kind = match msg[1] {
        1 => Kind::Frames,
        2 => Kind::Heartbeat,
        3 => Kind::Leave,
        other => return Err(EnvelopeError::Kind(other)),
    };
    let tagged = msg[2] & FLAG_TAG != 0;
    let end = match (key, tagged) {
        (Some(_), false) => return Err(EnvelopeError::MissingTag),
        (None, true) => return Err(EnvelopeError::UnexpectedTag),
        (None, false) => msg.len(),
        (Some(key), true) => {
            if msg.len() < HEADER_LEN + TAG_LEN {
                return Err(EnvelopeError::Short);
            }
            let end = msg.len() - TAG_LEN;
            key.mac(channel, &msg[..end])
                .verify_slice(&msg[end..])
                .map_err(|_| EnvelopeError::BadTag)?;
            end
        }
    };
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&msg[at..at + 8]);
        u64::from_le_bytes(w)
    };
    Ok(Envelope {
        kind,
        hub: word(3),
        seq: word(11),
        time_ms: word(19),
        body: &msg[HEADER_LEN..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_without_and_with_a_key() {
        let m = seal(Kind::Frames, 7, 9, 11, b"records", None, b"c");
        let e = open(&m, None, b"c").unwrap();
        assert_eq!(
            (e.kind, e.hub, e.seq, e.time_ms, e.body),
            (Kind::Frames, 7, 9, 11, &b"records"[..])
        );
        let key = ClusterKey::new(b"0123456789abcdef").unwrap();
        let m = seal(Kind::Heartbeat, 1, 2, 3, b"", Some(&key), b"chan");
        assert_eq!(m.len(), HEADER_LEN + TAG_LEN);
        let e = open(&m, Some(&key), b"chan").unwrap();
        assert_eq!(e.kind, Kind::Heartbeat);
        assert!(e.body.is_empty());
    }

    #[test]
    fn forged_altered_moved_or_unkeyed_envelopes_are_refused() {
        let key = ClusterKey::new(b"0123456789abcdef").unwrap();
        let other = ClusterKey::new(b"fedcba9876543210").unwrap();
        let m = seal(Kind::Frames, 1, 2, 3, b"body", Some(&key), b"chan");
        assert_eq!(open(&m, Some(&other), b"chan"), Err(EnvelopeError::BadTag));
        assert_eq!(open(&m, Some(&key), b"chan2"), Err(EnvelopeError::BadTag));
        let mut altered = m.clone();
        altered[HEADER_LEN] ^= 1;
        assert_eq!(
            open(&altered, Some(&key), b"chan"),
            Err(EnvelopeError::BadTag)
        );
        let plain = seal(Kind::Frames, 1, 2, 3, b"body", None, b"chan");
        assert_eq!(
            open(&plain, Some(&key), b"chan"),
            Err(EnvelopeError::MissingTag)
        );
        assert_eq!(open(&m, None, b"chan"), Err(EnvelopeError::UnexpectedTag));
        // A tagged flag without room for a tag.
        let mut short = plain.clone();
        short[2] = 1;
        assert_eq!(open(&short, Some(&key), b"chan"), Err(EnvelopeError::Short));
        assert!(EnvelopeError::BadTag.is_auth());
        assert!(!EnvelopeError::Short.is_auth());
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert_eq!(open(b"", None, b"c"), Err(EnvelopeError::Short));
        let mut m = seal(Kind::Leave, 1, 2, 3, b"", None, b"c");
        m[0] = 9;
        assert_eq!(open(&m, None, b"c"), Err(EnvelopeError::Version(9)));
        m[0] = VERSION;
        m[1] = 0;
        assert_eq!(open(&m, None, b"c"), Err(EnvelopeError::Kind(0)));
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 1) as u8).collect();
            let _ = open(&bytes, None, b"c");
            let _ = open(&bytes, ClusterKey::new(&[1; 16]).ok().as_ref(), b"c");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ClusterKey::new(b"short").is_err());
    }
}
