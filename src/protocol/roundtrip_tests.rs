//! Round-trip properties (proptest): what strata encodes, its own parsers read back.
//!
//! - a request encoded by `reply::command_bytes` parses (`RequestParser`, fed whole or cut in
//!   two) to the same arguments, with the encoded bytes as its raw bytes;
//! - a reply encoded for a RESP2 client (`Reply::encode`) or a RESP3 client (`resp3::encode`)
//!   decodes (`codec::decode_reply_as`, as a node reply in that protocol) to the frame it
//!   stands for.
//!
//! Case counts are kept small so the suite stays fast; `cargo fuzz` (fuzz/) runs the long
//! searches.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use redis_protocol::resp2::types::BytesFrame;

use super::reply::command_bytes;
use super::resp3::{self, Shape};
use super::{decode_reply_as, ParseLimits, Parsed, Proto, Reply, RequestParser};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8)
}

/// A line's text (status or error): printable ASCII, never CR or LF.
fn line_text() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(0x20u8..0x7f, 0..20).prop_map(Bytes::from)
}

/// A reply a node could give (or strata could build), with the frame it stands for.
fn reply() -> impl Strategy<Value = (Reply, BytesFrame)> {
    let leaf = prop_oneof![
        line_text().prop_map(|s| (Reply::Status(s.clone()), BytesFrame::SimpleString(s))),
        line_text().prop_map(|e| {
            let text = String::from_utf8(e.to_vec()).unwrap();
            (Reply::Error(e), BytesFrame::Error(text.into()))
        }),
        any::<i64>().prop_map(|n| (Reply::Integer(n), BytesFrame::Integer(n))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let b = Bytes::from(b);
            (Reply::Bulk(b.clone()), BytesFrame::BulkString(b))
        }),
        Just((Reply::Nil, BytesFrame::Null)),
        Just((Reply::NilArray, BytesFrame::Null)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(|items| {
            let (replies, frames) = items.into_iter().unzip();
            (Reply::Array(replies), BytesFrame::Array(frames))
        })
    })
}

fn decode_whole(bytes: &[u8], proto: Proto) -> BytesFrame {
    let mut buf = BytesMut::from(bytes);
    let reply = decode_reply_as(&mut buf, proto).unwrap().unwrap();
    assert!(buf.is_empty(), "left over: {buf:?}");
    assert_eq!(&reply.raw[..], bytes);
    reply.frame
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_requests_parse_to_their_arguments(args in args(), cut in any::<prop::sample::Index>()) {
        let encoded = command_bytes(args.iter().map(Vec::as_slice));
        let expect: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();

        let mut parser = RequestParser::new(ParseLimits::default());
        let mut buf = BytesMut::from(&encoded[..]);
        let Ok(Parsed::Request(req)) = parser.parse(&mut buf) else { panic!("not parsed") };
        prop_assert_eq!(&req.args, &expect);
        prop_assert_eq!(req.raw.as_deref(), Some(&encoded[..]));
        prop_assert!(buf.is_empty());

        // Cut in two: the first part is incomplete, the second completes it.
        let at = cut.index(encoded.len());
        let mut parser = RequestParser::new(ParseLimits::default());
        let mut buf = BytesMut::from(&encoded[..at]);
        let first = parser.parse(&mut buf);
        prop_assert!(matches!(first, Ok(Parsed::Incomplete { .. })), "{:?}", first);
        buf.extend_from_slice(&encoded[at..]);
        let Ok(Parsed::Request(req)) = parser.parse(&mut buf) else { panic!("not resumed") };
        prop_assert_eq!(&req.args, &expect);
    }

    #[test]
    fn resp2_replies_decode_to_their_frame((reply, frame) in reply()) {
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        prop_assert_eq!(decode_whole(&out, Proto::Resp2), frame.clone());
        // Cut short, it needs more bytes (and keeps them).
        let mut short = BytesMut::from(&out[..out.len() - 1]);
        prop_assert!(decode_reply_as(&mut short, Proto::Resp2).unwrap().is_none());
        prop_assert_eq!(short.len(), out.len() - 1);
        // And the frame, turned back into a reply, encodes the same frame again.
        let mut again = BytesMut::new();
        Reply::from_frame(frame.clone()).encode(&mut again);
        prop_assert_eq!(decode_whole(&again, Proto::Resp2), frame);
    }

    #[test]
    fn resp3_replies_decode_to_their_frame((reply, frame) in reply()) {
        for shape in [Shape::Plain, Shape::Map, Shape::Verbatim] {
            let mut out = BytesMut::new();
            resp3::encode(&reply, shape, &mut out);
            prop_assert_eq!(decode_whole(&out, Proto::Resp3), frame.clone(), "{:?}", shape);
            let mut short = BytesMut::from(&out[..out.len() - 1]);
            prop_assert!(decode_reply_as(&mut short, Proto::Resp3).unwrap().is_none());
        }
    }
}
