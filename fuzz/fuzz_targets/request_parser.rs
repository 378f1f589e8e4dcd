//! The client request parser (`protocol::request::RequestParser`) on arbitrary bytes.
//!
//! The first input byte picks the limits (small ones, so the fuzzer reaches every limit
//! branch, or the defaults) and seeds the split points; the rest is the byte stream a client
//! sends. The stream is parsed twice: whole, and fed in pieces of pseudo-random sizes (as reads
//! from a socket arrive), which exercises the resumable state. Checked: no panic, no hang, the
//! same requests (arguments and raw bytes) either way, and an error either way or neither
//! (except the one case Redis shares, explained at the end).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata::protocol::{ParseLimits, Parsed, ProtocolError, Request, RequestParser};

fn limits(small: bool) -> ParseLimits {
    if small {
        ParseLimits {
            max_multibulk_len: 4,
            max_bulk_len: 16,
            max_inline_len: 32,
        }
    } else {
        ParseLimits::default()
    }
}

/// Parses everything `buf` holds now; an error ends the stream (the connection closes).
fn drain(
    parser: &mut RequestParser,
    buf: &mut BytesMut,
    out: &mut Vec<Request>,
) -> Result<(), ProtocolError> {
    loop {
        let before = buf.len();
        match parser.parse(buf)? {
            Parsed::Request(req) => {
                assert!(!req.args.is_empty(), "a request always has a command name");
                assert!(buf.len() < before, "a request consumes bytes");
                if let Some(raw) = &req.raw {
                    // A multibulk request's raw bytes are one request with the same arguments.
                    let mut again = BytesMut::from(&raw[..]);
                    let mut fresh = RequestParser::new(ParseLimits::default());
                    match fresh.parse(&mut again) {
                        Ok(Parsed::Request(r)) => assert_eq!(r.args, req.args),
                        other => panic!("raw bytes do not re-parse: {other:?}"),
                    }
                    assert!(again.is_empty());
                }
                out.push(req);
            }
            Parsed::Incomplete { .. } => return Ok(()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let small = ctl & 1 == 1;

    let mut whole_reqs = Vec::new();
    let mut parser = RequestParser::new(limits(small));
    let mut buf = BytesMut::from(stream);
    let whole = drain(&mut parser, &mut buf, &mut whole_reqs);
    let whole_left = buf.len();

    let mut piece_reqs = Vec::new();
    let mut parser = RequestParser::new(limits(small));
    let mut buf = BytesMut::new();
    let mut pieces = Ok(());
    let mut seed = u32::from(ctl) | 1;
    let mut at = 0;
    while at < stream.len() {
        // xorshift: piece sizes 1..=16 from the control byte.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed % 16 + 1) as usize;
        let end = (at + n).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        pieces = drain(&mut parser, &mut buf, &mut piece_reqs);
        if pieces.is_err() {
            break;
        }
    }

    // Requests before an error agree; the error itself may differ in kind.
    let n = whole_reqs.len().min(piece_reqs.len());
    assert_eq!(whole_reqs[..n], piece_reqs[..n]);
    match (&whole, &pieces) {
        (Ok(()), Ok(())) => assert_eq!(whole_reqs, piece_reqs),
        (Err(_), Err(_)) => {}
        // As in Redis, a count line ('*' or '$') is measured against the inline limit only
        // while its '\r' has not arrived: cut before the '\r', a line longer than the limit is
        // refused at once; whole, it waits for its '\n' (and is then refused as an invalid
        // length). Only a request left waiting with more than the limit buffered may differ.
        (Ok(()), Err(_)) => assert!(
            whole_left > limits(small).max_inline_len,
            "split input refused ({pieces:?}), whole input waits with {whole_left} bytes"
        ),
        (Err(_), Ok(())) => panic!("whole input refused ({whole:?}), split input accepted"),
    }
});
