//! The backend side of the protocol: decoding node replies with `redis-protocol`.
//!
//! A decoded reply keeps both the parsed frame (for merging and inspection) and the raw bytes it
//! came from (so a single-node reply is forwarded to the client without re-encoding).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

/// One reply from a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReply {
    pub frame: BytesFrame,
    pub raw: Bytes,
}

impl NodeReply {
    pub fn is_error(&self) -> bool {
        matches!(self.frame, BytesFrame::Error(_))
    }
}

/// Decodes the next complete reply at the start of `buf`, removing its bytes; `Ok(None)` when
/// more bytes are needed. An error means the node sent something that is not RESP2: the
/// connection cannot be trusted any more.
pub fn decode_reply(buf: &mut BytesMut) -> Result<Option<NodeReply>, String> {
    match decode_bytes_mut(buf) {
        Ok(Some((frame, _, raw))) => Ok(Some(NodeReply { frame, raw })),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("bad reply from node: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_keeps_raw() {
        let mut buf = BytesMut::from(&b"$3\r\nabc\r\n:5\r\n*2\r\n$1\r\na\r\n$-1\r\n+OK"[..]);
        let r = decode_reply(&mut buf).unwrap().unwrap();
        assert_eq!(r.frame, BytesFrame::BulkString(Bytes::from_static(b"abc")));
        assert_eq!(&r.raw[..], b"$3\r\nabc\r\n");
        let r = decode_reply(&mut buf).unwrap().unwrap();
        assert_eq!(r.frame, BytesFrame::Integer(5));
        let r = decode_reply(&mut buf).unwrap().unwrap();
        assert_eq!(&r.raw[..], b"*2\r\n$1\r\na\r\n$-1\r\n");
        assert_eq!(decode_reply(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"+OK");
    }

    #[test]
    fn garbage_is_an_error() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(decode_reply(&mut buf).is_err());
    }
}
