//! Node replies on RESP3 connections: finding where a frame ends, and reading it as the RESP2
//! frame strata inspects and merges.
//!
//! A RESP3 client's requests travel on node connections that speak RESP3 (`HELLO 3`), so the
//! node's reply bytes reach the client unchanged and carry Redis's own types. strata only looks
//! inside a reply to merge several nodes' replies (MGET, KEYS, SCAN, sums) or to count hits and
//! misses, and for that the RESP2 view is enough: maps, sets and pushes become flat arrays,
//! doubles, big numbers and verbatim strings become bulk strings, booleans integers, blob errors
//! errors, attributes are skipped. Hand-written rather than `redis-protocol`'s RESP3 decoder
//! because that one keeps maps and sets in hash containers (losing the node's order, which a
//! merged reply must keep) and parses doubles into `f64` (losing the node's text).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

use super::codec::DecodeError;

/// Deepest nesting accepted from a node; Redis's own replies nest a few levels (COMMAND DOCS
/// about six). Deeper input is refused instead of risking the stack.
pub(crate) const MAX_DEPTH: usize = 128;

/// Where the frame that starts `buf` ends: `Ok(None)` when more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    // Frames still to read at each open aggregate level; the bottom entry is the one frame
    // asked for.
    let mut open: Vec<usize> = vec![1];
    let mut pos = 0;
    while let Some(top) = open.last_mut() {
        if *top == 0 {
            open.pop();
            continue;
        }
        *top -= 1;
        let Some((kind, line, next)) = line_at(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let len = number(line)?;
                if len >= 0 {
                    let end = pos
                        .checked_add(usize::try_from(len).map_err(|_| bad())?)
                        .ok_or_else(bad)?;
                    match buf.get(end..end + 2) {
                        None => return Ok(None),
                        Some(b"\r\n") => pos = end + 2,
                        Some(_) => return Err(bad()),
                    }
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(line)?;
                if n > 0 {
                    let n = usize::try_from(n).map_err(|_| bad())?;
                    let frames = match kind {
                        b'%' => n.checked_mul(2).ok_or_else(bad)?,
                        // An attribute's pairs come before the frame they describe.
                        b'|' => n
                            .checked_mul(2)
                            .ok_or_else(bad)?
                            .checked_add(1)
                            .ok_or_else(bad)?,
                        _ => n,
                    };
                    if open.len() >= MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                    open.push(frames);
                } else if kind == b'|' {
                    // An empty attribute still nests the frame after it (`read` recurses into
                    // it), so it counts against the depth too: a chain of `|0\r\n` would
                    // otherwise recurse without bound in `read` and overflow the stack.
                    if open.len() >= MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                    open.push(1);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(Some(pos))
}

/// Decodes the RESP3 frame at the start of `buf`, removing its bytes: the raw bytes and their
/// RESP2 view. `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<(BytesFrame, Bytes)>, DecodeError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let raw = buf.split_to(len).freeze();
    let (frame, _) = read(&raw, 0)?;
    Ok(Some((frame, raw)))
}

/// Reads the frame at `pos` of a buffer known to hold it whole (checked by [`frame_len`], which
/// also bounds the depth of this recursion); returns it and the position after it.
fn read(raw: &Bytes, pos: usize) -> Result<(BytesFrame, usize), DecodeError> {
    let (kind, line, next) = line_at(raw, pos)?.ok_or_else(bad)?;
    let text = || raw.slice(pos + 1..pos + 1 + line.len());
    let frame = match kind {
        b'+' => BytesFrame::SimpleString(text()),
        b'-' => BytesFrame::Error(String::from_utf8_lossy(line).into_owned().into()),
        b':' => BytesFrame::Integer(number(line)?),
        b'_' => BytesFrame::Null,
        b',' | b'(' => BytesFrame::BulkString(text()),
        b'#' => BytesFrame::Integer(i64::from(line == b"t")),
        b'$' | b'!' | b'=' => {
            let len = number(line)?;
            if len < 0 {
                return Ok((BytesFrame::Null, next));
            }
            let end = next + usize::try_from(len).map_err(|_| bad())?;
            let data = raw.slice(next..end);
            let frame = match kind {
                b'!' => BytesFrame::Error(String::from_utf8_lossy(&data).into_owned().into()),
                // A verbatim string starts with its three-letter format and a colon.
                b'=' => BytesFrame::BulkString(if data.get(3) == Some(&b':') {
                    data.slice(4..)
                } else {
                    data
                }),
                _ => BytesFrame::BulkString(data),
            };
            return Ok((frame, end + 2));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = number(line)?;
            if n < 0 {
                return Ok((BytesFrame::Null, next));
            }
            let n = usize::try_from(n).map_err(|_| bad())?;
            let count = if kind == b'%' { n * 2 } else { n };
            let mut items = Vec::with_capacity(count.min(1024));
            let mut at = next;
            for _ in 0..count {
                let (item, after) = read(raw, at)?;
                items.push(item);
                at = after;
            }
            return Ok((BytesFrame::Array(items), at));
        }
        b'|' => {
            // Attributes: skipped, the frame they describe is what counts.
            let n = usize::try_from(number(line)?.max(0)).map_err(|_| bad())?;
            let mut at = next;
            for _ in 0..n * 2 {
                at = read(raw, at)?.1;
            }
            return read(raw, at);
        }
        _ => return Err(bad()),
    };
    Ok((frame, next))
}

/// One header line: its type byte, the rest of the line, and the position after its `\r\n`.
type Line<'a> = (u8, &'a [u8], usize);

/// The line at `pos`; `Ok(None)` when it is not complete yet.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<Line<'_>>, DecodeError> {
    let Some(rest) = buf.get(pos..) else {
        return Ok(None);
    };
    let Some(cr) = memchr::memchr(b'\r', rest) else {
        return Ok(None);
    };
    match rest.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(bad()),
    }
    let (&kind, line) = rest
        .get(..cr)
        .and_then(<[u8]>::split_first)
        .ok_or_else(bad)?;
    Ok(Some((kind, line, pos + cr + 2)))
}

fn number(line: &[u8]) -> Result<i64, DecodeError> {
    super::parse_i64(line).ok_or_else(bad)
}

fn bad() -> DecodeError {
    DecodeError::NotResp3
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(s: &[u8]) -> (BytesFrame, Vec<u8>) {
        let mut buf = BytesMut::from(s);
        let (frame, raw) = decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "left over: {buf:?}");
        (frame, raw.to_vec())
    }

    fn bulk(s: &'static str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn every_type_reads_as_its_resp2_view() {
        assert_eq!(view(b"_\r\n").0, BytesFrame::Null);
        assert_eq!(view(b",1.5\r\n").0, bulk("1.5"));
        assert_eq!(view(b"#t\r\n").0, BytesFrame::Integer(1));
        assert_eq!(view(b"#f\r\n").0, BytesFrame::Integer(0));
        assert_eq!(
            view(b"(123456789012345678901\r\n").0,
            bulk("123456789012345678901")
        );
        assert_eq!(view(b"=7\r\ntxt:abc\r\n").0, bulk("abc"));
        assert!(matches!(view(b"!3\r\nERR\r\n").0, BytesFrame::Error(_)));
        assert_eq!(
            view(b"%2\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n_\r\n").0,
            BytesFrame::Array(vec![
                bulk("b"),
                BytesFrame::Integer(1),
                bulk("a"),
                BytesFrame::Null
            ])
        );
        assert_eq!(
            view(b"~2\r\n+x\r\n+y\r\n").0,
            BytesFrame::Array(vec![
                BytesFrame::SimpleString(Bytes::from_static(b"x")),
                BytesFrame::SimpleString(Bytes::from_static(b"y")),
            ])
        );
        assert_eq!(
            view(b"|1\r\n+k\r\n+v\r\n:5\r\n").0,
            BytesFrame::Integer(5),
            "attributes are skipped"
        );
        assert_eq!(view(b"*0\r\n").0, BytesFrame::Array(vec![]));
        assert_eq!(view(b"*-1\r\n").0, BytesFrame::Null);
    }

    #[test]
    fn cut_input_needs_more_and_keeps_the_bytes() {
        let whole: &[u8] = b"*2\r\n%1\r\n$1\r\nk\r\n,2.5\r\n>1\r\n=5\r\ntxt:a\r\n+after";
        let end = whole.len() - b"+after".len();
        for cut in 0..end {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(whole);
        let (_, raw) = decode(&mut buf).unwrap().unwrap();
        assert_eq!(raw.len(), end);
        assert_eq!(&buf[..], b"+after");
    }

    #[test]
    fn garbage_and_deep_nesting_are_errors() {
        assert!(decode(&mut BytesMut::from(&b"?x\r\n"[..])).is_err());
        assert!(decode(&mut BytesMut::from(&b"$3\r\nabcde\r\n"[..])).is_err());
        assert!(decode(&mut BytesMut::from(&b"*x\r\n"[..])).is_err());
        // Regression: a chain of empty attributes nests like an array does (each `|0` wraps
        // the next frame); unchecked, `read` recursed once per link and overflowed the stack.
        let mut chain = b"|0\r\n".repeat(1_000_000);
        chain.extend_from_slice(b":1\r\n");
        assert!(matches!(
            decode(&mut BytesMut::from(&chain[..])),
            Err(DecodeError::TooDeep)
        ));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            decode(&mut BytesMut::from(&deep[..])),
            Err(DecodeError::TooDeep)
        ));
    }

    /// Arbitrary input built from pieces of RESP3 (so it often looks almost valid) never
    /// panics: it decodes, needs more, or is refused, and a decoded frame takes exactly its bytes.
    #[test]
    fn arbitrary_input_never_panics() {
        // Whole pieces of RESP3 and stray bytes, so inputs are often almost valid.
        const PIECES: &[&[u8]] = &[
            b"*2\r\n",
            b"*1\r\n",
            b"%1\r\n",
            b"~2\r\n",
            b">1\r\n",
            b"|1\r\n",
            b"*-1\r\n",
            b":7\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"_\r\n",
            b",1.5\r\n",
            b"#t\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"!3\r\nERR\r\n",
            b"(12\r\n",
            b"+OK\r\n",
            b"-ERR x\r\n",
            b"$",
            b"*",
            b"9",
            b"-",
            b"\r",
            b"\n",
            b"?",
            b"$99999999999999999999\r\n",
        ];
        let mut seed: u64 = 0x5eed;
        let (mut decoded, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut input = Vec::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pieces = (seed >> 60) as usize;
            for _ in 0..pieces {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                input.extend_from_slice(PIECES[(seed >> 33) as usize % PIECES.len()]);
            }
            let mut buf = BytesMut::from(&input[..]);
            match decode(&mut buf) {
                Ok(Some((_, raw))) => {
                    assert_eq!(raw.len() + buf.len(), input.len());
                    decoded += 1;
                }
                Ok(None) => assert_eq!(buf.len(), input.len()),
                Err(_) => refused += 1,
            }
        }
        // The generator reaches both outcomes, so the loop tests something.
        assert!(
            decoded > 100 && refused > 100,
            "{decoded} decoded, {refused} refused"
        );
    }
}
