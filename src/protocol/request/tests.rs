//! Unit tests of the request parser: framing, resumption, limits and Redis's error texts.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
use super::*;

fn parse_all(input: &[u8]) -> (Vec<Request>, Result<(), ProtocolError>, usize) {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match parser.parse(&mut buf) {
            Ok(Parsed::Request(r)) => out.push(r),
            Ok(Parsed::Incomplete { .. }) => return (out, Ok(()), buf.len()),
            Err(e) => return (out, Err(e), buf.len()),
        }
    }
}

fn args(r: &Request) -> Vec<&[u8]> {
    r.args.iter().map(|a| a.as_ref()).collect()
}

#[test]
fn multibulk_keeps_raw_bytes() {
    let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    let (reqs, res, left) = parse_all(input);
    assert_eq!(res, Ok(()));
    assert_eq!(left, 0);
    assert_eq!(args(&reqs[0]), vec![&b"GET"[..], b"k"]);
    assert_eq!(reqs[0].raw.as_deref(), Some(&input[..20]));
    assert_eq!(args(&reqs[1]), vec![&b"PING"[..]]);
}

#[test]
fn resumes_byte_by_byte() {
    let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut got = None;
    for (i, b) in input.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        match parser.parse(&mut buf).unwrap() {
            Parsed::Request(r) => {
                assert_eq!(i, input.len() - 1);
                got = Some(r);
            }
            Parsed::Incomplete { .. } => {}
        }
    }
    let r = got.unwrap();
    assert_eq!(args(&r), vec![&b"SET"[..], b"key", b"value"]);
    assert!(buf.is_empty());
}

#[test]
fn incomplete_bulk_hints_remaining_bytes() {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$100\r\nabc"[..]);
    assert_eq!(
        parser.parse(&mut buf).unwrap(),
        Parsed::Incomplete { hint: 99 }
    );
}

#[test]
fn empty_requests_are_skipped() {
    let (reqs, res, _) = parse_all(b"\r\n\n   \r\n*0\r\n*-1\r\nPING\r\n");
    assert_eq!(res, Ok(()));
    assert_eq!(reqs.len(), 1);
    assert_eq!(args(&reqs[0]), vec![&b"PING"[..]]);
}

#[test]
fn inline_quoting_like_redis() {
    let (reqs, res, _) = parse_all(b"SET \"a b\" 'it\\'s' \"\\x41\\n\" plain\r\nGET k\n");
    assert_eq!(res, Ok(()));
    assert_eq!(
        args(&reqs[0]),
        vec![&b"SET"[..], b"a b", b"it's", b"A\n", b"plain"]
    );
    assert_eq!(reqs[0].raw, None);
    assert_eq!(args(&reqs[1]), vec![&b"GET"[..], b"k"]);
    let (_, res, _) = parse_all(b"SET \"abc\r\n");
    assert_eq!(res, Err(ProtocolError::UnbalancedQuotes));
    let (_, res, _) = parse_all(b"SET \"abc\"x\r\n");
    assert_eq!(res, Err(ProtocolError::UnbalancedQuotes));
}

#[test]
fn limits_and_errors() {
    let (_, res, _) = parse_all(b"*1048577\r\n");
    assert_eq!(res, Err(ProtocolError::InvalidMultibulkLength));
    let (_, res, _) = parse_all(b"*1048576\r\n");
    assert_eq!(res, Ok(()));
    let (_, res, _) = parse_all(b"*abc\r\n");
    assert_eq!(res, Err(ProtocolError::InvalidMultibulkLength));
    let (_, res, _) = parse_all(b"*1\r\n$536870913\r\n");
    assert_eq!(res, Err(ProtocolError::InvalidBulkLength));
    let (_, res, _) = parse_all(b"*1\r\n$-1\r\n");
    assert_eq!(res, Err(ProtocolError::InvalidBulkLength));
    let (_, res, _) = parse_all(b"*1\r\n:1\r\n");
    assert_eq!(res, Err(ProtocolError::ExpectedDollar(b':')));
    let (_, res, _) = parse_all(&vec![b'a'; 64 * 1024 + 1]);
    assert_eq!(res, Err(ProtocolError::TooBigInline));
    let mut big = b"*1\r\n$".to_vec();
    big.extend(vec![b'1'; 64 * 1024 + 1]);
    let (_, res, _) = parse_all(&big);
    assert_eq!(res, Err(ProtocolError::TooBigBulkCount));
    assert_eq!(
        ProtocolError::InvalidMultibulkLength.to_string(),
        "ERR Protocol error: invalid multibulk length"
    );
}

/// Regression: the byte found instead of `$` was written as a `char`, so 0x80..=0xFF went out
/// as two UTF-8 bytes where Redis 7.0 writes the byte itself (`*1\r\n\xff3\r\n`).
#[test]
fn expected_dollar_replies_carry_the_byte_itself() {
    let (_, res, _) = parse_all(b"*1\r\n\xff3\r\n");
    let err = res.unwrap_err();
    assert_eq!(err, ProtocolError::ExpectedDollar(0xff));
    assert_eq!(
        &err.reply_text()[..],
        b"ERR Protocol error: expected '$', got '\xff'"
    );
    assert_eq!(
        ProtocolError::InvalidBulkLength.reply_text(),
        ProtocolError::InvalidBulkLength.to_string()
    );
}

#[test]
fn unauthenticated_clients_get_redis_small_limits() {
    let mut p = RequestParser::new(ParseLimits::default());
    p.set_unauthenticated(true);
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(
        p.parse(&mut buf),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    let mut p = RequestParser::new(ParseLimits::default());
    p.set_unauthenticated(true);
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"[..]);
    assert_eq!(
        p.parse(&mut buf),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    // Past `max_bulk_len` a length is invalid before it is unauthenticated, as in Redis
    // (`*1\r\n$4000000000\r\n` to redis-server 7.0 with requirepass set).
    for header in [
        &b"*1\r\n$4000000000\r\n"[..],
        b"*1\r\n$536870913\r\n",
        b"*1\r\n$-1\r\n",
    ] {
        let mut p = RequestParser::new(ParseLimits::default());
        p.set_unauthenticated(true);
        let mut buf = BytesMut::from(header);
        assert_eq!(
            p.parse(&mut buf),
            Err(ProtocolError::InvalidBulkLength),
            "{header:?}"
        );
    }
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n"[..]);
    let mut p = RequestParser::new(ParseLimits::default());
    p.set_unauthenticated(true);
    assert!(matches!(p.parse(&mut buf), Ok(Parsed::Request(_))));
    p.set_unauthenticated(false);
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert!(matches!(p.parse(&mut buf), Ok(Parsed::Incomplete { .. })));
}

#[test]
fn limits_are_configurable() {
    let mut parser = RequestParser::new(ParseLimits {
        max_multibulk_len: 2,
        max_bulk_len: 3,
        max_inline_len: 8,
    });
    let mut buf = BytesMut::from(&b"*3\r\n"[..]);
    assert_eq!(
        parser.parse(&mut buf),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    let mut parser = RequestParser::new(ParseLimits {
        max_multibulk_len: 2,
        max_bulk_len: 3,
        max_inline_len: 8,
    });
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\n"[..]);
    assert_eq!(
        parser.parse(&mut buf),
        Err(ProtocolError::InvalidBulkLength)
    );
}

#[test]
fn string2ll_rules() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-12"), Some(-12));
    assert_eq!(parse_i64(b"012"), None);
    assert_eq!(parse_i64(b"+1"), None);
    assert_eq!(parse_i64(b"-0"), None);
    assert_eq!(parse_i64(b""), None);
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"9223372036854775808"), None);
    // Regression (fuzzing): the minimum is a valid integer, as in Redis's string2ll.
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_i64(b"-9223372036854775809"), None);
}

#[test]
fn find_cr_looks_at_the_head_then_the_rest() {
    assert_eq!(find_cr(b""), None);
    assert_eq!(find_cr(b"*3\r\n"), Some(2));
    assert_eq!(find_cr(b"no return here at all, longer than sixteen"), None);
    for at in [0, 15, 16, 17, 40] {
        let mut line = vec![b'x'; at];
        line.extend_from_slice(b"\r\nmore\r\n");
        assert_eq!(find_cr(&line), Some(at), "\\r at {at}");
    }
    // A header longer than the head is still found (and refused by its length checks).
    let long = format!("${}\r\n", "9".repeat(30));
    assert_eq!(find_cr(long.as_bytes()), Some(31));
}
