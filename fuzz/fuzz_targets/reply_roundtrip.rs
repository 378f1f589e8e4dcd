//! The RESP2 <-> RESP3 reply path: a node reply is decoded (RESP2 or RESP3, picked by the
//! first byte), turned into strata's `Reply` (`Reply::from_frame`, as merges do), and encoded
//! again for a client: in RESP2 by `Reply::encode`, in RESP3 by `protocol::resp3::encode` in
//! each shape. Checked: each encoding decodes, in its own protocol, to the frame it came from
//! (a RESP3 map reads back as the flat array it was built from; a verbatim string as the bulk
//! string); `Reply::Raw` is written unchanged.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::types::BytesFrame;
use strata::protocol::resp3::{self, Shape};
use strata::protocol::{decode_reply_as, Proto, Reply};

fn decode_one(bytes: &[u8], proto: Proto) -> BytesFrame {
    let mut buf = BytesMut::from(bytes);
    let reply = match decode_reply_as(&mut buf, proto) {
        Ok(Some(reply)) => reply,
        other => panic!("{proto:?} encoding {bytes:?} does not decode: {other:?}"),
    };
    assert!(
        buf.is_empty(),
        "{proto:?} encoding {bytes:?} leaves {buf:?}"
    );
    reply.frame
}

fn clean(frame: BytesFrame) -> BytesFrame {
    let space = |b: u8| if b == b'\r' || b == b'\n' { b' ' } else { b };
    match frame {
        BytesFrame::SimpleString(s) => {
            BytesFrame::SimpleString(s.iter().copied().map(space).collect())
        }
        BytesFrame::Error(e) => BytesFrame::Error(e.replace(['\r', '\n'], " ").into()),
        BytesFrame::Array(items) => BytesFrame::Array(items.into_iter().map(clean).collect()),
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let proto = if ctl & 1 == 1 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    let mut buf = BytesMut::from(stream);
    let Ok(Some(node)) = decode_reply_as(&mut buf, proto) else {
        return;
    };
    let reply = Reply::from_frame(node.frame.clone());
    // Status and error lines are written without CR or LF (they become spaces).
    let expect = clean(node.frame.clone());

    // To a RESP2 client.
    let mut out = BytesMut::new();
    reply.encode(&mut out);
    assert_eq!(decode_one(&out, Proto::Resp2), expect);

    // To a RESP3 client, in every shape.
    for shape in [Shape::Plain, Shape::Map, Shape::Verbatim] {
        let mut out = BytesMut::new();
        resp3::encode(&reply, shape, &mut out);
        assert_eq!(decode_one(&out, Proto::Resp3), expect, "{shape:?}");
    }

    // A node reply forwarded as it is.
    let mut out = BytesMut::new();
    resp3::encode(&Reply::Raw(Bytes::clone(&node.raw)), Shape::Map, &mut out);
    assert_eq!(&out[..], &node.raw[..]);
});
