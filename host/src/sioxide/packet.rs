//! The packet bytes hosts hand to the adapter.
//!
//! The adapter never looks inside a packet; hosts of every runtime agree on
//! this layout so that they can read each other's broadcasts:
//!
//! ```text
//! packet     := text-len:u32le text attachment*
//! attachment := len:u32le bytes
//! ```
//!
//! `text` is the Socket.IO v5 encoding of the packet (`2["ev",1]`, or
//! `51-["ev",{"_placeholder":true,"num":0}]` with binary), and the attachments
//! are its binary parts in placeholder order — exactly what a Socket.IO
//! encoder produces, so a receiving host writes them to its clients as they are.

use thiserror::Error;

/// Maximum number of binary attachments (socket.io-parser's default is 10).
pub const MAX_ATTACHMENTS: usize = 1024;

/// A Socket.IO packet in its v5 encoding: the text part and the attachments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedPacket {
    /// The text part (`2["ev",1]`).
    pub text: String,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Vec<u8>>,
}

/// Why packet bytes could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than its lengths say.
    #[error("packet truncated")]
    Truncated,
    /// The text part is not UTF-8.
    #[error("packet text is not UTF-8")]
    NotUtf8,
    /// More attachments than [`MAX_ATTACHMENTS`].
    #[error("too many attachments")]
    TooManyAttachments,
}

impl EncodedPacket {
    /// A text-only packet.
    pub fn text(text: impl Into<String>) -> Self {
        EncodedPacket {
            text: text.into(),
            attachments: Vec::new(),
        }
    }

    /// The bytes for the adapter.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size =
            4 + self.text.len() + self.attachments.iter().map(|a| 4 + a.len()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        push_chunk(&mut out, self.text.as_bytes());
        for a in &self.attachments {
            push_chunk(&mut out, a);
        }
        out
    }

    /// Reads bytes made by [`EncodedPacket::to_bytes`] (from any host).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PacketError> {
        let (text, mut rest) = take_chunk(bytes)?;
        let text = std::str::from_utf8(text)
            .map_err(|_| PacketError::NotUtf8)?
            .to_owned();
        let mut attachments = Vec::new();
        while !rest.is_empty() {
            if attachments.len() == MAX_ATTACHMENTS {
                return Err(PacketError::TooManyAttachments);
            }
            let (a, next) = take_chunk(rest)?;
            attachments.push(a.to_vec());
            rest = next;
        }
        Ok(EncodedPacket { text, attachments })
    }
}

fn push_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    // Packets over 4 GiB are refused long before this by frame caps.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_chunk(bytes: &[u8]) -> Result<(&[u8], &[u8]), PacketError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(PacketError::Truncated)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(PacketError::Truncated);
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_attachments() {
        let p = EncodedPacket {
            text: r#"51-["test",1,"2",{"_placeholder":true,"num":0}]"#.into(),
            attachments: vec![vec![3, 4]],
        };
        assert_eq!(EncodedPacket::from_bytes(&p.to_bytes()), Ok(p));
        let t = EncodedPacket::text(r#"2["hello"]"#);
        assert_eq!(EncodedPacket::from_bytes(&t.to_bytes()), Ok(t));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(EncodedPacket::from_bytes(&[]), Err(PacketError::Truncated));
        assert_eq!(
            EncodedPacket::from_bytes(&[5, 0, 0, 0, b'a']),
            Err(PacketError::Truncated)
        );
        assert_eq!(
            EncodedPacket::from_bytes(&[1, 0, 0, 0, 0xff]),
            Err(PacketError::NotUtf8)
        );
        let mut many = EncodedPacket::text("x").to_bytes();
        for _ in 0..=MAX_ATTACHMENTS {
            many.extend_from_slice(&[0, 0, 0, 0]);
        }
        assert_eq!(
            EncodedPacket::from_bytes(&many),
            Err(PacketError::TooManyAttachments)
        );
    }
}
