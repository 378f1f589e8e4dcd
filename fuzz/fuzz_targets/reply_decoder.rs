//! The node reply decoder on arbitrary bytes: `protocol::codec::decode_reply_as` in both
//! protocols (the short path, `redis-protocol` for RESP2, `resp3_reply` for RESP3) and
//! `protocol::resp3_reply` on its own. The first byte picks the protocol.
//!
//! Checked: no panic, no hang; a decoded reply's raw bytes are exactly the bytes it consumed
//! and decode again to the same frame; `Ok(None)` leaves the buffer untouched; a strict prefix
//! of a reply is never a (different) reply.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata::protocol::{decode_reply_as, resp3_reply, Proto};

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
    // At most a few replies: each loop consumes bytes, so this also ends.
    loop {
        let before = buf.len();
        match decode_reply_as(&mut buf, proto) {
            Ok(Some(reply)) => {
                assert_eq!(
                    reply.raw.len(),
                    before - buf.len(),
                    "raw is what was consumed"
                );
                assert!(!reply.raw.is_empty());
                let mut again = BytesMut::from(&reply.raw[..]);
                let same = decode_reply_as(&mut again, proto)
                    .expect("raw bytes decode again")
                    .expect("raw bytes are complete");
                assert_eq!(same, reply);
                assert!(again.is_empty());
                // Cut anywhere short of its end, a reply needs more bytes.
                for cut in [reply.raw.len() - 1, reply.raw.len() / 2] {
                    let mut short = BytesMut::from(&reply.raw[..cut]);
                    match decode_reply_as(&mut short, proto) {
                        Ok(None) => assert_eq!(short.len(), cut),
                        other => panic!("a cut reply ({cut} bytes) gave {other:?}"),
                    }
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete reply keeps its bytes");
                break;
            }
            Err(_) => break,
        }
    }

    // resp3_reply directly: decode takes exactly the frame frame_len measured. frame_len only
    // measures (it does not read a `:` line's number, say), so decode may still refuse it.
    let mut buf = BytesMut::from(stream);
    match resp3_reply::frame_len(stream) {
        Ok(Some(len)) => match resp3_reply::decode(&mut buf) {
            Ok(Some((_, raw))) => assert_eq!(raw.len(), len),
            Ok(None) => panic!("frame_len found a complete frame, decode wants more"),
            Err(_) => {}
        },
        Ok(None) => assert!(matches!(resp3_reply::decode(&mut buf), Ok(None))),
        Err(_) => assert!(resp3_reply::decode(&mut buf).is_err()),
    }
});
