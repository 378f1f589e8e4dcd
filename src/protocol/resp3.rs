//! RESP3 for clients that said `HELLO 3`. Node connections always speak RESP2 (so RESP2 and
//! RESP3 clients share them); a reply is converted when it is written to a RESP3 client: nils
//! become `_`, and by command the reply takes the RESP3 type Redis gives it: a map (HGETALL,
//! CONFIG GET, HELLO, ...), a set (SMEMBERS, SINTER, SUNION, SDIFF, ...), a double (ZSCORE,
//! ZINCRBY, ZMSCORE's elements), or member/score pairs with double scores (WITHSCORES).
//! Pub/Sub frames become push frames (`>`).

use bytes::{BufMut, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

use super::codec::decode_reply;
use super::reply::Reply;
use super::Request;

/// The RESP3 type of a command's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Types as they are; nils become `_`.
    #[default]
    Plain,
    /// A flat field/value array becomes a map.
    Map,
    /// An array becomes a set.
    Set,
    /// A bulk number becomes a double.
    Double,
    /// An array of bulk numbers (or nils) becomes doubles.
    Doubles,
    /// A flat member/score array becomes an array of [member, double] pairs.
    ScorePairs,
}

/// The shape of `request`'s reply (from its command name and, for WITHSCORES, its arguments).
pub fn shape_of(name: &str, request: &Request) -> Shape {
    let has = |word: &[u8]| {
        request
            .args
            .iter()
            .skip(1)
            .any(|a| a.eq_ignore_ascii_case(word))
    };
    match name {
        "hgetall" | "hello" | "xinfo" => Shape::Map,
        "config"
            if request
                .args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"get")) =>
        {
            Shape::Map
        }
        "smembers" | "sinter" | "sunion" | "sdiff" => Shape::Set,
        "zscore" | "zincrby" => Shape::Double,
        "zmscore" => Shape::Doubles,
        "zrange" | "zrangebyscore" | "zrevrange" | "zrevrangebyscore" | "zunion" | "zinter"
        | "zdiff" | "zrandmember"
            if has(b"withscores") =>
        {
            Shape::ScorePairs
        }
        _ => Shape::Plain,
    }
}

/// Appends `reply` in RESP3, shaped as `shape`.
pub fn encode(reply: &Reply, shape: Shape, out: &mut BytesMut) {
    match reply {
        Reply::Raw(raw) => {
            let mut buf = BytesMut::from(raw.as_ref());
            match decode_reply(&mut buf) {
                // One frame (a node's reply): converted.
                Ok(Some(node)) if buf.is_empty() => frame(&node.frame, shape, out),
                // Several frames (strata's own multi-frame replies) or unparsable: as they are.
                _ => out.extend_from_slice(raw),
            }
        }
        Reply::Nil | Reply::NilArray => out.put_slice(b"_\r\n"),
        Reply::Array(items) => {
            let frames: Vec<BytesFrame> = items.iter().map(to_frame).collect();
            frame(&BytesFrame::Array(frames), shape, out);
        }
        other => other.encode(out),
    }
}

/// An EXEC reply for a RESP3 client: each element in the shape of the queued command it
/// answers (`shapes`, in order); a nil (aborted by WATCH) becomes `_`.
pub fn exec_reply(raw: &[u8], shapes: &[Shape]) -> bytes::Bytes {
    let mut buf = BytesMut::from(raw);
    let mut out = BytesMut::new();
    match decode_reply(&mut buf) {
        Ok(Some(node)) => match &node.frame {
            BytesFrame::Array(items) if items.len() == shapes.len() => {
                header(&mut out, b'*', items.len());
                for (item, &shape) in items.iter().zip(shapes) {
                    frame(item, shape, &mut out);
                }
            }
            other => frame(other, Shape::Plain, &mut out),
        },
        _ => out.extend_from_slice(raw),
    }
    out.freeze()
}

/// A pub/sub frame for a RESP3 client: the array header becomes a push header.
pub fn push(raw: &[u8], out: &mut BytesMut) {
    match raw.split_first() {
        Some((b'*', rest)) => {
            out.put_u8(b'>');
            out.extend_from_slice(rest);
        }
        _ => out.extend_from_slice(raw),
    }
}

fn to_frame(reply: &Reply) -> BytesFrame {
    match reply {
        Reply::Raw(raw) => {
            let mut buf = BytesMut::from(raw.as_ref());
            decode_reply(&mut buf)
                .ok()
                .flatten()
                .map_or(BytesFrame::Null, |r| r.frame)
        }
        Reply::Status(s) => BytesFrame::SimpleString(s.clone()),
        Reply::Error(e) => BytesFrame::Error(String::from_utf8_lossy(e).into_owned().into()),
        Reply::Integer(n) => BytesFrame::Integer(*n),
        Reply::Bulk(b) => BytesFrame::BulkString(b.clone()),
        Reply::Nil | Reply::NilArray => BytesFrame::Null,
        Reply::Array(items) => BytesFrame::Array(items.iter().map(to_frame).collect()),
    }
}

fn header(out: &mut BytesMut, prefix: u8, n: usize) {
    let mut buf = itoa::Buffer::new();
    out.put_u8(prefix);
    out.extend_from_slice(buf.format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn double(out: &mut BytesMut, text: &[u8]) {
    out.put_u8(b',');
    out.extend_from_slice(text);
    out.put_slice(b"\r\n");
}

fn frame(f: &BytesFrame, shape: Shape, out: &mut BytesMut) {
    match (f, shape) {
        (BytesFrame::Null, _) => out.put_slice(b"_\r\n"),
        (BytesFrame::BulkString(b), Shape::Double) => double(out, b),
        (BytesFrame::Array(items), Shape::Map) if items.len() % 2 == 0 => {
            header(out, b'%', items.len() / 2);
            for item in items {
                frame(item, Shape::Plain, out);
            }
        }
        (BytesFrame::Array(items), Shape::Set) => {
            header(out, b'~', items.len());
            for item in items {
                frame(item, Shape::Plain, out);
            }
        }
        (BytesFrame::Array(items), Shape::Doubles) => {
            header(out, b'*', items.len());
            for item in items {
                frame(item, Shape::Double, out);
            }
        }
        (BytesFrame::Array(items), Shape::ScorePairs) if items.len() % 2 == 0 => {
            header(out, b'*', items.len() / 2);
            for pair in items.chunks(2) {
                header(out, b'*', 2);
                if let (Some(member), Some(score)) = (pair.first(), pair.get(1)) {
                    frame(member, Shape::Plain, out);
                    frame(score, Shape::Double, out);
                }
            }
        }
        (BytesFrame::Array(items), _) => {
            header(out, b'*', items.len());
            for item in items {
                frame(item, Shape::Plain, out);
            }
        }
        (other, _) => Reply::from_frame(other.clone()).encode(out),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn raw(s: &str, shape: Shape) -> String {
        let mut out = BytesMut::new();
        encode(&Reply::Raw(Bytes::from(s.to_string())), shape, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn replies_take_their_resp3_types() {
        assert_eq!(raw("$-1\r\n", Shape::Plain), "_\r\n");
        assert_eq!(raw("*-1\r\n", Shape::Plain), "_\r\n");
        assert_eq!(
            raw(
                "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                Shape::Map
            ),
            "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        assert_eq!(raw("*1\r\n$1\r\nx\r\n", Shape::Set), "~1\r\n$1\r\nx\r\n");
        assert_eq!(raw("$3\r\n1.5\r\n", Shape::Double), ",1.5\r\n");
        assert_eq!(
            raw("*2\r\n$1\r\n2\r\n$-1\r\n", Shape::Doubles),
            "*2\r\n,2\r\n_\r\n"
        );
        assert_eq!(
            raw("*2\r\n$1\r\nm\r\n$1\r\n3\r\n", Shape::ScorePairs),
            "*1\r\n*2\r\n$1\r\nm\r\n,3\r\n"
        );
        // Errors, integers and statuses stay; nested nils become `_`.
        assert_eq!(raw("-ERR x\r\n", Shape::Map), "-ERR x\r\n");
        assert_eq!(raw(":5\r\n", Shape::Plain), ":5\r\n");
        assert_eq!(
            raw("*2\r\n$-1\r\n+OK\r\n", Shape::Plain),
            "*2\r\n_\r\n+OK\r\n"
        );
        let exec = exec_reply(
            b"*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n$3\r\n1.5\r\n",
            &[Shape::Map, Shape::Double],
        );
        assert_eq!(&exec[..], b"*2\r\n%1\r\n$1\r\na\r\n$1\r\n1\r\n,1.5\r\n");
        assert_eq!(&exec_reply(b"*-1\r\n", &[Shape::Map])[..], b"_\r\n");
        let mut out = BytesMut::new();
        push(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", &mut out);
        assert_eq!(&out[..], b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
    }
}
