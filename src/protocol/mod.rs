//! RESP: the client request parser, reply encoding, and node reply decoding.

pub mod codec;
pub mod glob;
pub mod reply;
pub mod request;
pub mod resp3;
pub mod resp3_reply;
#[cfg(test)]
mod roundtrip_tests;

pub use codec::{decode_reply, decode_reply_as, DecodeError, NodeReply};
pub use reply::Reply;
pub use request::{parse_i64, ParseLimits, Parsed, ProtocolError, Request, RequestParser};

/// The RESP version a connection speaks: a client after `HELLO`, a node connection from its
/// handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

impl Proto {
    /// From `HELLO`'s protocol number (2 or 3).
    pub fn from_version(version: u8) -> Proto {
        if version == 3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        }
    }

    pub fn is_resp3(self) -> bool {
        self == Proto::Resp3
    }
}

/// Whether a reply is a null, or an empty array, map or set (in either protocol): what a read
/// of a missing key returns.
pub fn is_nil_or_empty(raw: &[u8]) -> bool {
    matches!(
        raw,
        b"$-1\r\n" | b"*-1\r\n" | b"*0\r\n" | b"_\r\n" | b"%0\r\n" | b"~0\r\n"
    )
}

/// Whether a reply is a null (in either protocol).
pub fn is_nil(raw: &[u8]) -> bool {
    matches!(raw, b"$-1\r\n" | b"*-1\r\n" | b"_\r\n")
}
