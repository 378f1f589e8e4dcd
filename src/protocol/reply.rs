//! Replies strata sends to clients, and their RESP2 encoding.
//!
//! Most replies are [`Reply::Raw`]: a node's reply frame forwarded byte for byte. The other
//! variants are built by strata itself (local commands, merged multi-key replies, errors).

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

/// One reply to one client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A complete RESP frame from a node, written unchanged.
    Raw(Bytes),
    /// `+text`
    Status(Bytes),
    /// `-text` (the text carries its own prefix such as `ERR`).
    Error(Bytes),
    /// `:n`
    Integer(i64),
    /// `$len\r\ndata`
    Bulk(Bytes),
    /// `$-1` (nil bulk).
    Nil,
    /// `*-1` (nil array).
    NilArray,
    /// `*n` followed by the elements.
    Array(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status(Bytes::from_static(b"OK"))
    }

    pub fn status(s: &'static str) -> Reply {
        Reply::Status(Bytes::from_static(s.as_bytes()))
    }

    /// An error reply; `text` includes the error code (`ERR ...`, `CROSSSLOT ...`).
    pub fn error(text: impl Into<String>) -> Reply {
        let text: String = text.into();
        // A newline inside an error would break the protocol; Redis replaces them too.
        let text = if text.contains(['\r', '\n']) {
            text.replace(['\r', '\n'], " ")
        } else {
            text
        };
        Reply::Error(Bytes::from(text))
    }

    pub fn error_static(text: &'static str) -> Reply {
        Reply::Error(Bytes::from_static(text.as_bytes()))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// A bulk reply holding a string (INFO, CLIENT LIST, ...).
    pub fn text(s: String) -> Reply {
        Reply::Bulk(Bytes::from(s))
    }

    pub fn is_error(&self) -> bool {
        match self {
            Reply::Error(_) => true,
            Reply::Raw(raw) => raw.first() == Some(&b'-'),
            _ => false,
        }
    }

    /// Appends the RESP2 encoding of this reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Reply::Raw(raw) => out.extend_from_slice(raw),
            Reply::Status(s) => line(out, b'+', s),
            Reply::Error(e) => line(out, b'-', e),
            Reply::Integer(n) => number(out, b':', *n),
            Reply::Bulk(b) => {
                number(out, b'$', b.len() as i64);
                out.extend_from_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::NilArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                number(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// Converts a decoded node frame into a reply (used when strata merges or rewrites replies).
    pub fn from_frame(frame: BytesFrame) -> Reply {
        match frame {
            BytesFrame::SimpleString(s) => Reply::Status(s),
            BytesFrame::Error(e) => Reply::Error(e.into_inner()),
            BytesFrame::Integer(n) => Reply::Integer(n),
            BytesFrame::BulkString(b) => Reply::Bulk(b),
            BytesFrame::Null => Reply::Nil,
            BytesFrame::Array(items) => {
                Reply::Array(items.into_iter().map(Reply::from_frame).collect())
            }
        }
    }
}

fn line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        // A status or error line cannot hold CR or LF. A RESP2 node's line may (its parser
        // reads up to "\r\n", so a lone '\r' passes); written as it is, a RESP3 client's
        // parser (and strata's own) stops at that '\r' and fails the stream (found by the
        // reply_roundtrip fuzz target). They become spaces, as in `Reply::error`.
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn number(out: &mut BytesMut, prefix: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    line(out, prefix, buf.format(n).as_bytes());
}

/// Encodes arguments as one RESP multibulk command, ready to send to a node.
pub fn command_bytes<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    encode_command(&mut out, args);
    out.freeze()
}

/// The request `raw` (one RESP multibulk command of `argc` arguments) with `extra` arguments
/// added at the end: a new header, the original arguments' bytes copied as they are, then the
/// extra ones. One allocation, no per-argument work.
pub fn append_args(raw: &[u8], argc: usize, extra: &[Bytes]) -> Option<Bytes> {
    let extra_len: usize = extra.iter().map(|a| a.len() + 16).sum();
    let mut out = extended_header(raw, argc + extra.len(), extra_len)?;
    put_args(&mut out, extra.iter().map(|a| a.as_ref()));
    Some(out.freeze())
}

/// Like [`append_args`], with the extra arguments already encoded (`encoded`, `count` of them).
pub fn append_encoded(raw: &[u8], argc: usize, encoded: &[u8], count: usize) -> Option<Bytes> {
    let mut out = extended_header(raw, argc + count, encoded.len())?;
    out.extend_from_slice(encoded);
    Some(out.freeze())
}

/// `raw` with its `*<n>` header replaced by `*<argc>`, with room for `more` bytes.
fn extended_header(raw: &[u8], argc: usize, more: usize) -> Option<BytesMut> {
    let header_end = raw.iter().position(|&b| b == b'\n')? + 1;
    let body = raw.get(header_end..)?;
    let mut out = BytesMut::with_capacity(body.len() + more + 16);
    number(&mut out, b'*', argc as i64);
    out.extend_from_slice(body);
    Some(out)
}

/// Encodes arguments without the `*<n>` header (to append to a command).
pub fn encode_args<'a>(args: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    put_args(&mut out, args);
    out.freeze()
}

/// Writes each argument as a bulk string.
fn put_args<'a>(out: &mut BytesMut, args: impl Iterator<Item = &'a [u8]>) {
    for arg in args {
        number(out, b'$', arg.len() as i64);
        out.extend_from_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// Encodes a request (arguments) as a RESP multibulk, for sending to a node.
pub fn encode_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    number(out, b'*', args.len() as i64);
    put_args(out, args);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Regression (fuzzing): a RESP2 node's error line with a lone '\r' (`--5\r**1`) was
    /// re-encoded as it was, and the RESP3 decoder refused the result.
    #[test]
    fn lines_never_carry_cr_or_lf() {
        let mut out = BytesMut::new();
        Reply::Error(Bytes::from_static(b"-5\r**1")).encode(&mut out);
        Reply::Status(Bytes::from_static(b"a\nb")).encode(&mut out);
        assert_eq!(&out[..], b"--5 **1\r\n+a b\r\n");
        let mut buf = out.clone();
        for _ in 0..2 {
            crate::protocol::decode_reply_as(&mut buf, crate::protocol::Proto::Resp3)
                .unwrap()
                .unwrap();
        }
    }

    #[test]
    fn appends_arguments() {
        let raw = command_bytes([&b"SET"[..], b"k", b"v"].into_iter());
        let extra = [Bytes::from_static(b"PX"), Bytes::from_static(b"300000")];
        let got = append_args(&raw, 3, &extra).unwrap();
        let want = command_bytes([&b"SET"[..], b"k", b"v", b"PX", b"300000"].into_iter());
        assert_eq!(got, want);
    }

    fn enc(r: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn encodes_resp2() {
        assert_eq!(enc(&Reply::ok()), b"+OK\r\n");
        assert_eq!(enc(&Reply::Integer(-3)), b":-3\r\n");
        assert_eq!(enc(&Reply::bulk("ab")), b"$2\r\nab\r\n");
        assert_eq!(enc(&Reply::Nil), b"$-1\r\n");
        assert_eq!(enc(&Reply::NilArray), b"*-1\r\n");
        assert_eq!(
            enc(&Reply::Array(vec![Reply::Integer(1), Reply::Nil])),
            b"*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(enc(&Reply::error("ERR a\r\nb")), b"-ERR a  b\r\n");
    }

    #[test]
    fn encodes_commands() {
        let mut out = BytesMut::new();
        encode_command(&mut out, [&b"GET"[..], b"k"].into_iter());
        assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn raw_error_detected() {
        assert!(Reply::Raw(Bytes::from_static(b"-ERR x\r\n")).is_error());
        assert!(!Reply::Raw(Bytes::from_static(b"+OK\r\n")).is_error());
    }
}
