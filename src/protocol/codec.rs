//! The backend side of the protocol: decoding node replies, RESP2 with `redis-protocol`, RESP3
//! with `resp3_reply` (connections that serve RESP3 clients speak RESP3 to their node).
//!
//! A decoded reply keeps both the parsed frame (for merging and inspection) and the raw bytes it
//! came from (so a single-node reply is forwarded to the client without re-encoding).
//!
//! The replies of the commonest commands (`+OK`, integers, nil and bulk strings: SET, GET,
//! DEL, EXPIRE...) are decoded by a short path of our own; anything else, and anything the
//! short path does not fully recognise, goes to `redis-protocol`'s general parser.

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

use super::Proto;

/// Bytes from a node that are not a reply in the protocol its connection speaks: the
/// connection cannot be trusted any more (`backend` fails it with a `protocol` error). The
/// texts are what logs and INFO's `last_error` show.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Refused by `redis-protocol`'s RESP2 parser.
    #[error("bad reply from node: {0}")]
    Resp2(#[from] redis_protocol::error::RedisProtocolError),
    /// Not RESP3 (`resp3_reply`).
    #[error("bad reply from node: not RESP3")]
    NotResp3,
    /// RESP3 aggregates nested deeper than strata follows (`resp3_reply`).
    #[error("bad reply from node: nested too deeply")]
    TooDeep,
}

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

/// Decodes the next complete reply, in the protocol the connection speaks, at the start of
/// `buf`, removing its bytes; `Ok(None)` when more bytes are needed. An error means the node
/// sent something that is not RESP: the connection cannot be trusted any more.
#[inline]
pub fn decode_reply_as(buf: &mut BytesMut, proto: Proto) -> Result<Option<NodeReply>, DecodeError> {
    // The commonest replies look the same in both protocols.
    if let Some(reply) = decode_common(buf) {
        return Ok(Some(reply));
    }
    match proto {
        Proto::Resp2 => decode_general(buf),
        Proto::Resp3 => {
            if buf.starts_with(NULL3) {
                buf.advance(NULL3.len());
                return Ok(Some(NodeReply {
                    frame: BytesFrame::Null,
                    raw: Bytes::from_static(NULL3),
                }));
            }
            Ok(super::resp3_reply::decode(buf)?.map(|(frame, raw)| NodeReply { frame, raw }))
        }
    }
}

/// RESP3's null.
const NULL3: &[u8] = b"_\r\n";

/// Decodes the next complete RESP2 reply at the start of `buf` (see [`decode_reply_as`]).
pub fn decode_reply(buf: &mut BytesMut) -> Result<Option<NodeReply>, DecodeError> {
    decode_reply_as(buf, Proto::Resp2)
}

/// A RESP2 reply the short path did not take, by `redis-protocol`'s parser.
fn decode_general(buf: &mut BytesMut) -> Result<Option<NodeReply>, DecodeError> {
    // `redis-protocol` recurses once per nesting level with no limit, so `*1\r\n` repeated a
    // few hundred thousand times overflows the stack and aborts the process. Refuse what
    // nests deeper than `resp3_reply` follows (RESP2 is a subset of RESP3, so its scan
    // applies). Only a buffer holding that many `*` bytes can nest that deep: the cheap count
    // keeps the scan off the common path.
    let deep = super::resp3_reply::MAX_DEPTH;
    if memchr::memchr_iter(b'*', buf).nth(deep - 1).is_some() {
        if let Err(DecodeError::TooDeep) = super::resp3_reply::frame_len(buf) {
            return Err(DecodeError::TooDeep);
        }
    }
    Ok(decode_bytes_mut(buf)?.map(|(frame, _, raw)| NodeReply { frame, raw }))
}

/// The size of the whole reply starting `buf` when it is a bulk string whose header has
/// arrived (so a reader can make room for a large value in one step instead of growing its
/// buffer by doubling); `None` otherwise.
pub fn bulk_reply_len(buf: &[u8]) -> Option<usize> {
    if buf.first() != Some(&b'$') {
        return None;
    }
    let (len, header) = number_line(buf)?;
    header
        .checked_add(usize::try_from(len).ok()?)?
        .checked_add(2)
}

/// `+OK`, `:<n>`, `$-1` and `$<len>` replies that are complete in `buf`; `None` for anything
/// else (incomplete, other types, or not quite well-formed: the general parser decides).
#[inline]
fn decode_common(buf: &mut BytesMut) -> Option<NodeReply> {
    const OK: &[u8] = b"+OK\r\n";
    const NIL: &[u8] = b"$-1\r\n";
    match *buf.first()? {
        b'+' if buf.starts_with(OK) => {
            buf.advance(OK.len());
            // Static bytes: the reply holds no reference into the read buffer.
            Some(NodeReply {
                frame: BytesFrame::SimpleString(Bytes::from_static(b"OK")),
                raw: Bytes::from_static(OK),
            })
        }
        b'$' if buf.starts_with(NIL) => {
            buf.advance(NIL.len());
            Some(NodeReply {
                frame: BytesFrame::Null,
                raw: Bytes::from_static(NIL),
            })
        }
        b'$' => {
            let (len, header) = number_line(buf)?;
            let len = usize::try_from(len).ok()?;
            let end = header.checked_add(len)?;
            if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let raw = buf.split_to(end + 2).freeze();
            Some(NodeReply {
                frame: BytesFrame::BulkString(raw.slice(header..end)),
                raw,
            })
        }
        b':' => {
            let (n, header) = number_line(buf)?;
            Some(NodeReply {
                frame: BytesFrame::Integer(n),
                raw: buf.split_to(header).freeze(),
            })
        }
        _ => None,
    }
}

/// The number after the type byte of `buf`'s first line, and the length of that line with
/// its `\r\n`. Plain decimal only (an optional `-`, then at most 18 digits).
fn number_line(buf: &[u8]) -> Option<(i64, usize)> {
    let line = buf.get(1..)?;
    let (negative, digits) = match line.first()? {
        b'-' => (true, line.get(1..)?),
        _ => (false, line),
    };
    let count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || count > 18 || digits.get(count..count + 2)? != b"\r\n" {
        return None;
    }
    // Leading zeros and "-0" are not plain decimal (Redis never writes them): leave them to the
    // general parser. Taken here, `$-0\r\n\r\n` was an empty string on a RESP3 connection
    // whose own parser refuses it, so the reply cut short was an error instead of "need more
    // bytes" (found by the reply_decoder fuzz target).
    if digits.first() == Some(&b'0') && (count > 1 || negative) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits.get(..count)? {
        n = n * 10 + i64::from(d - b'0');
    }
    let sign = usize::from(negative);
    Some((if negative { -n } else { n }, 1 + sign + count + 2))
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

    /// The short path gives exactly what the general parser gives, for whole and for cut
    /// input, and leaves the same bytes behind.
    #[test]
    fn the_short_path_agrees_with_the_general_parser() {
        // (reply, whether the short path takes it)
        let samples: &[(&[u8], bool)] = &[
            (b"+OK\r\n", true),
            (b"+OKAY\r\n", false),
            (b":0\r\n", true),
            (b":-42\r\n", true),
            (b":123456789012345678\r\n", true),
            (b":1234567890123456789\r\n", false),
            (b"$-1\r\n", true),
            (b"$0\r\n\r\n", true),
            (b"$5\r\nhello\r\n", true),
            (b"$5\r\nhel\r\n\r\n", true),
            (b"$3\r\nabcXY", false),
            (b"$-2\r\n", false),
            (b"$+3\r\nabc\r\n", false),
            (b":\r\n", false),
            (b"-ERR no\r\n", false),
            // Regression (fuzzing): not plain decimal, so not the short path's.
            (b"$-0\r\n\r\n", false),
            (b"$01\r\na\r\n", false),
            (b":007\r\n", false),
            (b":-0\r\n", false),
            (b":0\r\n", true),
            (b"*1\r\n$1\r\na\r\n", false),
        ];
        for &(sample, common) in samples {
            for cut in 0..=sample.len() {
                let input = &sample[..cut];
                let mut ours = BytesMut::from(input);
                let mut theirs = BytesMut::from(input);
                let general = decode_bytes_mut(&mut theirs)
                    .ok()
                    .flatten()
                    .map(|(frame, _, raw)| NodeReply { frame, raw });
                if let Some(short) = decode_common(&mut ours) {
                    assert_eq!(Some(short), general, "{input:?}");
                    assert_eq!(ours, theirs, "{input:?}");
                }
            }
            let mut whole = BytesMut::from(sample);
            let recognised = decode_common(&mut whole).is_some();
            assert_eq!(recognised, common, "{:?}", String::from_utf8_lossy(sample));
        }
    }

    /// Regression (fuzzing): on a RESP3 connection a reply and every cut of it agree: the
    /// whole is refused by the RESP3 parser, so the cut is never an error while the whole is a
    /// reply.
    #[test]
    fn resp3_short_path_takes_only_what_resp3_accepts() {
        for whole in [&b"$-0\r\n\r\n"[..], b":007\r\n", b":-0\r\n"] {
            let mut buf = BytesMut::from(whole);
            assert!(
                decode_reply_as(&mut buf, Proto::Resp3).is_err(),
                "{whole:?}"
            );
        }
        let mut buf = BytesMut::from(&b"$0\r\n\r\n"[..]);
        let r = decode_reply_as(&mut buf, Proto::Resp3).unwrap().unwrap();
        assert_eq!(r.frame, BytesFrame::BulkString(Bytes::new()));
    }

    /// Regression: deeply nested RESP2 arrays overflowed the stack in `redis-protocol`'s
    /// recursive parser; they are refused instead, and nesting within the limit still decodes.
    #[test]
    fn deep_resp2_nesting_is_refused() {
        let mut deep = b"*1\r\n".repeat(1_000_000);
        deep.extend_from_slice(b":1\r\n");
        let e = decode_reply(&mut BytesMut::from(&deep[..])).unwrap_err();
        assert!(matches!(e, DecodeError::TooDeep), "{e:?}");
        let mut ok = b"*1\r\n".repeat(100);
        ok.extend_from_slice(b":1\r\n");
        let mut pipelined = ok.repeat(3);
        pipelined.extend_from_slice(b"$1\r\na\r\n");
        let mut buf = BytesMut::from(&pipelined[..]);
        for _ in 0..3 {
            assert_eq!(decode_reply(&mut buf).unwrap().unwrap().raw.len(), ok.len());
        }
        assert!(decode_reply(&mut buf).unwrap().is_some());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        let e = decode_reply(&mut buf).unwrap_err();
        assert!(matches!(e, DecodeError::Resp2(_)), "{e:?}");
        assert!(
            e.to_string().starts_with("bad reply from node: "),
            "the text logs and INFO show: {e}"
        );
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        let e = decode_reply_as(&mut buf, Proto::Resp3).unwrap_err();
        assert!(matches!(e, DecodeError::NotResp3), "{e:?}");
        assert_eq!(e.to_string(), "bad reply from node: not RESP3");
    }
}
