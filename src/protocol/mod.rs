//! RESP: the client request parser, reply encoding, and node reply decoding.

pub mod codec;
pub mod reply;
pub mod request;
pub mod resp3;

pub use codec::{decode_reply, NodeReply};
pub use reply::Reply;
pub use request::{parse_i64, ParseLimits, Parsed, ProtocolError, Request, RequestParser};
