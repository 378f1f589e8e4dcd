//! RESP3 for clients that said `HELLO 3`, for the replies strata builds itself.
//!
//! Node replies need no conversion: a RESP3 client's requests travel on node connections that
//! speak RESP3 (`backend::pool`, `backend::dedicated`), so what the node answers is already
//! Redis's RESP3 reply and is written unchanged. What strata builds (local commands, merged
//! replies, errors) is encoded here: nils become `_`, and by command the reply takes the type
//! Redis gives it: a map (HELLO, CONFIG GET), a verbatim string (INFO, CLIENT LIST, CLIENT
//! INFO), sets inside strata's own COMMAND INFO entry. Pub/Sub frames become push frames (`>`).

use bytes::{BufMut, BytesMut};

use super::reply::Reply;
use super::Request;

/// The RESP3 type of a reply strata builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Types as they are; nils become `_`.
    #[default]
    Plain,
    /// A flat field/value array becomes a map.
    Map,
    /// A bulk string becomes a verbatim string of format `txt`.
    Verbatim,
}

/// The shape of the reply strata builds for `request` (a command it answers itself).
pub fn shape_of(name: &str, request: &Request) -> Shape {
    let sub = |word: &[u8]| {
        request
            .args
            .get(1)
            .is_some_and(|a| a.eq_ignore_ascii_case(word))
    };
    match name {
        "hello" => Shape::Map,
        "config" if sub(b"get") => Shape::Map,
        "info" => Shape::Verbatim,
        "client" if sub(b"list") || sub(b"info") => Shape::Verbatim,
        _ => Shape::Plain,
    }
}

/// Appends `reply` in RESP3, shaped as `shape`. A node's reply ([`Reply::Raw`]) is written as
/// it is: it came from a connection speaking the client's protocol.
pub fn encode(reply: &Reply, shape: Shape, out: &mut BytesMut) {
    match (reply, shape) {
        (Reply::Raw(raw), _) => out.extend_from_slice(raw),
        (Reply::Nil | Reply::NilArray, _) => out.put_slice(b"_\r\n"),
        (Reply::Bulk(text), Shape::Verbatim) => {
            header(out, b'=', text.len() + 4);
            out.put_slice(b"txt:");
            out.extend_from_slice(text);
            out.put_slice(b"\r\n");
        }
        (Reply::Array(items), Shape::Map) if items.len() % 2 == 0 => {
            header(out, b'%', items.len() / 2);
            for item in items {
                encode(item, Shape::Plain, out);
            }
        }
        (Reply::Array(items), _) => {
            header(out, b'*', items.len());
            for item in items {
                encode(item, Shape::Plain, out);
            }
        }
        (other, _) => other.encode(out),
    }
}

/// One COMMAND INFO entry: as Redis 7.0 gives it, its flags (third element), ACL categories,
/// tips, key specs and subcommands (seventh to tenth) are sets.
pub fn encode_command_entry(entry: &Reply, out: &mut BytesMut) {
    let Reply::Array(fields) = entry else {
        return encode(entry, Shape::Plain, out);
    };
    header(out, b'*', fields.len());
    for (i, field) in fields.iter().enumerate() {
        match (i, field) {
            (2 | 6..=9, Reply::Array(members)) => {
                header(out, b'~', members.len());
                for m in members {
                    encode(m, Shape::Plain, out);
                }
            }
            _ => encode(field, Shape::Plain, out),
        }
    }
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

fn header(out: &mut BytesMut, prefix: u8, n: usize) {
    let mut buf = itoa::Buffer::new();
    out.put_u8(prefix);
    out.extend_from_slice(buf.format(n).as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn enc(reply: Reply, shape: Shape) -> String {
        let mut out = BytesMut::new();
        encode(&reply, shape, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn node_replies_pass_unchanged() {
        let raw = "%1\r\n$1\r\na\r\n,1.5\r\n";
        assert_eq!(enc(Reply::Raw(Bytes::from(raw)), Shape::Map), raw);
        assert_eq!(
            enc(Reply::Raw(Bytes::from("$-1\r\n")), Shape::Plain),
            "$-1\r\n"
        );
    }

    #[test]
    fn strata_replies_take_their_resp3_types() {
        assert_eq!(enc(Reply::Nil, Shape::Plain), "_\r\n");
        assert_eq!(enc(Reply::NilArray, Shape::Plain), "_\r\n");
        let pairs = Reply::Array(vec![
            Reply::bulk("a"),
            Reply::bulk("1"),
            Reply::bulk("b"),
            Reply::Nil,
        ]);
        assert_eq!(
            enc(pairs.clone(), Shape::Map),
            "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n_\r\n"
        );
        assert_eq!(
            enc(pairs, Shape::Plain),
            "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n_\r\n"
        );
        assert_eq!(enc(Reply::bulk("ab"), Shape::Verbatim), "=6\r\ntxt:ab\r\n");
        assert_eq!(enc(Reply::error("ERR x"), Shape::Map), "-ERR x\r\n");
        let entry = Reply::Array(vec![
            Reply::bulk("get"),
            Reply::Integer(2),
            Reply::Array(vec![Reply::status("readonly")]),
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::Array(vec![]),
        ]);
        let mut out = BytesMut::new();
        encode_command_entry(&entry, &mut out);
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "*7\r\n$3\r\nget\r\n:2\r\n~1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n~0\r\n"
        );
        let mut out = BytesMut::new();
        push(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", &mut out);
        assert_eq!(&out[..], b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
    }
}
