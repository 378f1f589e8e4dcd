//! The client-side request parser: multibulk and inline commands, exactly as Redis reads them.
//!
//! Parsing is resumable: a multibulk request that arrives in pieces is not re-scanned from the
//! start on every read, so a request with a million arguments costs one pass. Arguments are
//! `Bytes` slices of the frozen read buffer (no copy), and a multibulk request keeps its raw
//! bytes so it can be forwarded to a node unchanged.
//!
//! Errors carry Redis's own texts (`Protocol error: invalid multibulk length`, ...); after one the
//! connection answers the error and closes, as Redis does.

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

/// Limits enforced while parsing (`limits` in config.yaml).
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_multibulk_len: usize,
    pub max_bulk_len: usize,
    pub max_inline_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_multibulk_len: 1024 * 1024,
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// One parsed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The arguments; `args[0]` is the command name. Never empty.
    pub args: Vec<Bytes>,
    /// The request's bytes as received, for a multibulk request (forwarded unchanged); `None`
    /// for an inline command, which is re-encoded before forwarding.
    pub raw: Option<Bytes>,
}

impl Request {
    /// Builds a request from arguments (tests, internally generated requests).
    pub fn from_args<I, A>(args: I) -> Request
    where
        I: IntoIterator<Item = A>,
        A: Into<Bytes>,
    {
        Request {
            args: args.into_iter().map(Into::into).collect(),
            raw: None,
        }
    }
}

/// A protocol error; the text is Redis's reply (without the leading `-`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("ERR Protocol error: too big inline request")]
    TooBigInline,
    #[error("ERR Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("ERR Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// The byte found where a bulk header's `$` belongs; the reply carries it as it came
    /// ([`ProtocolError::reply_text`]), as Redis's does.
    #[error("ERR Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The error reply's text, byte for byte as Redis 7.0 gives it. Only
    /// [`ProtocolError::ExpectedDollar`] differs from the `Display` text: Redis's `%c` writes
    /// the byte itself, where `Display` (for logs) writes the character of that code point, two
    /// bytes in UTF-8 from 0x80 on. CR and LF become spaces when the reply is encoded, as in
    /// Redis.
    pub fn reply_text(&self) -> Bytes {
        match self {
            ProtocolError::ExpectedDollar(got) => {
                let mut text = b"ERR Protocol error: expected '$', got '".to_vec();
                text.push(*got);
                text.push(b'\'');
                Bytes::from(text)
            }
            other => Bytes::from(other.to_string()),
        }
    }
}

/// Where a multibulk request that is not complete yet stands, so the next read resumes there.
#[derive(Debug, Default)]
struct Partial {
    /// Arguments announced by the `*<n>` header.
    argc: usize,
    /// (start, end) offsets of the arguments parsed so far, relative to the buffer start.
    /// Inline up to 4 (GET, SET and most commands): one allocation and free per request
    /// fewer.
    args: SmallVec<[(usize, usize); 4]>,
    /// Offset where parsing resumes.
    pos: usize,
    /// Length of the bulk whose header was read but whose data is not complete.
    pending_bulk: Option<usize>,
}

/// The resumable parser; one per client connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: ParseLimits,
    partial: Option<Partial>,
    /// The client has not authenticated (and must): Redis's small limits apply.
    unauthenticated: bool,
}

/// Arguments a request may have before its client authenticated (Redis's limit).
pub const UNAUTHENTICATED_MULTIBULK: i64 = 10;
/// Bytes an argument may have before its client authenticated (Redis's limit).
pub const UNAUTHENTICATED_BULK: i64 = 16 * 1024;

/// The outcome of one parse step.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request, removed from the buffer.
    Request(Request),
    /// The buffer does not hold a complete request yet; `hint` is how many more bytes at least
    /// the current request needs (0 when unknown), so the caller can size its next read.
    Incomplete { hint: usize },
}

impl RequestParser {
    pub fn new(limits: ParseLimits) -> Self {
        RequestParser {
            limits,
            partial: None,
            unauthenticated: false,
        }
    }

    /// Applies Redis's limits for clients that must authenticate and have not (at most 10
    /// arguments of 16 KiB each), or lifts them.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Parses the next request at the start of `buf`, consuming its bytes. Empty requests
    /// (blank lines, `*0`) are consumed and skipped.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        loop {
            if self.partial.is_none() {
                match buf.first() {
                    None => return Ok(Parsed::Incomplete { hint: 0 }),
                    Some(b'*') => {}
                    Some(_) => match self.parse_inline(buf)? {
                        Some(Some(req)) => return Ok(Parsed::Request(req)),
                        Some(None) => continue, // blank line
                        None => return Ok(Parsed::Incomplete { hint: 0 }),
                    },
                }
            }
            match self.parse_multibulk(buf)? {
                Step::Done(req) => return Ok(Parsed::Request(req)),
                Step::Empty => continue,
                Step::More(hint) => return Ok(Parsed::Incomplete { hint }),
            }
        }
    }

    /// Inline command: one line, split like `sdssplitargs`. Returns `Some(None)` for a blank
    /// line, `None` when the line is not complete.
    fn parse_inline(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Option<Request>>, ProtocolError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        if nl > self.limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        let line = buf.split_to(nl + 1).freeze();
        let mut end = nl;
        if end > 0 && line.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        let args = split_inline_args(line.slice(..end))?;
        if args.is_empty() {
            return Ok(Some(None));
        }
        Ok(Some(Some(Request { args, raw: None })))
    }

    fn parse_multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let mut partial = match self.partial.take() {
            Some(p) => p,
            None => {
                // Header `*<n>\r\n`. Redis looks for the '\r'.
                let Some(cr) = find_cr(buf) else {
                    if buf.len() > self.limits.max_inline_len {
                        return Err(ProtocolError::TooBigMultibulkCount);
                    }
                    return Ok(Step::More(0));
                };
                if cr + 1 >= buf.len() {
                    return Ok(Step::More(1)); // the '\n' has not arrived
                }
                let count = buf.get(1..cr).and_then(parse_i64);
                let argc = match count {
                    Some(n) if n > self.limits.max_multibulk_len as i64 => {
                        return Err(ProtocolError::InvalidMultibulkLength)
                    }
                    Some(n) if n <= 0 => {
                        buf.advance(cr + 2);
                        return Ok(Step::Empty);
                    }
                    Some(n) if self.unauthenticated && n > UNAUTHENTICATED_MULTIBULK => {
                        return Err(ProtocolError::UnauthenticatedMultibulkLength)
                    }
                    Some(n) => n as usize,
                    None => return Err(ProtocolError::InvalidMultibulkLength),
                };
                Partial {
                    argc,
                    // Cap the up-front allocation: the count is the client's claim.
                    args: SmallVec::with_capacity(argc.min(1024)),
                    pos: cr + 2,
                    pending_bulk: None,
                }
            }
        };

        while partial.args.len() < partial.argc {
            let len = match partial.pending_bulk {
                Some(len) => len,
                None => {
                    let rest = buf.get(partial.pos..).unwrap_or_default();
                    let Some(cr) = find_cr(rest) else {
                        if rest.len() > self.limits.max_inline_len {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        self.partial = Some(partial);
                        return Ok(Step::More(0));
                    };
                    if cr + 1 >= rest.len() {
                        self.partial = Some(partial);
                        return Ok(Step::More(1));
                    }
                    match rest.first() {
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedDollar(other)),
                        None => return Err(ProtocolError::InvalidBulkLength),
                    }
                    // Redis's order: a length past `max_bulk_len` is invalid for every
                    // client; the unauthenticated limit comes second.
                    let len = match rest.get(1..cr).and_then(parse_i64) {
                        Some(n) if n < 0 || n as u64 > self.limits.max_bulk_len as u64 => {
                            return Err(ProtocolError::InvalidBulkLength)
                        }
                        Some(n) if self.unauthenticated && n > UNAUTHENTICATED_BULK => {
                            return Err(ProtocolError::UnauthenticatedBulkLength)
                        }
                        Some(n) => n as usize,
                        None => return Err(ProtocolError::InvalidBulkLength),
                    };
                    partial.pos += cr + 2;
                    len
                }
            };
            // Data plus the trailing CRLF, which Redis skips without checking.
            let need = len + 2;
            let have = buf.len().saturating_sub(partial.pos);
            if have < need {
                partial.pending_bulk = Some(len);
                let hint = need - have;
                self.partial = Some(partial);
                return Ok(Step::More(hint));
            }
            partial.pending_bulk = None;
            partial.args.push((partial.pos, partial.pos + len));
            partial.pos += need;
        }

        let frame = buf.split_to(partial.pos).freeze();
        let args = partial
            .args
            .iter()
            .map(|&(start, end)| frame.slice(start..end))
            .collect();
        Ok(Step::Done(Request {
            args,
            raw: Some(frame),
        }))
    }
}

/// The first `\r` of `buf`. Headers (`*3`, `$16`) are short: their first bytes are looked at
/// one by one before memchr, whose set-up cost more than the search (about 40 instructions
/// a call, three calls per GET; callgrind).
#[inline]
fn find_cr(buf: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = buf.get(..SHORT).unwrap_or(buf);
    if let Some(at) = head.iter().position(|&b| b == b'\r') {
        return Some(at);
    }
    let rest = buf.get(SHORT..)?;
    memchr::memchr(b'\r', rest).map(|at| at + SHORT)
}

enum Step {
    Done(Request),
    Empty,
    More(usize),
}

/// Parses a signed decimal the way Redis's `string2ll` does: no spaces, no leading `+`, no
/// leading zeros except "0" itself.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    if digits.len() > 1 && digits.first() == Some(&b'0') {
        return None;
    }
    // The magnitude is gathered as a u64: i64::MIN's magnitude is one more than i64::MAX,
    // and Redis (string2ll) accepts "-9223372036854775808" — a RESP3 node may send it as an
    // integer reply (INCRBY down to the minimum), and refusing it failed the node connection
    // (seen while writing the reply_roundtrip fuzz target).
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if neg {
        if n == 0 {
            return None; // "-0"
        }
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    }
}

/// Splits an inline command line into arguments like Redis's `sdssplitargs`: whitespace
/// separates, `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`, and a
/// closing quote must be followed by whitespace or the end of the line.
pub fn split_inline_args(line: Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    let s: &[u8] = &line;
    let mut args = Vec::new();
    let mut i = 0;
    let at = |i: usize| s.get(i).copied();
    loop {
        while at(i).is_some_and(is_space) {
            i += 1;
        }
        let Some(first) = at(i) else {
            return Ok(args);
        };
        if first != b'"' && first != b'\'' {
            // Plain word: a zero-copy slice of the line.
            let start = i;
            while at(i).is_some_and(|c| !is_space(c) && c != b'"' && c != b'\'') {
                i += 1;
            }
            if at(i).is_none() || at(i).is_some_and(is_space) {
                args.push(line.slice(start..i));
                continue;
            }
            // A quote inside a word: fall through to the general (copying) path from `start`.
            i = start;
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            let c = at(i);
            if in_dq {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if at(i + 1) == Some(b'x') => {
                        match (at(i + 2).and_then(hex), at(i + 3).and_then(hex)) {
                            (Some(h), Some(l)) => {
                                cur.push(h * 16 + l);
                                i += 3;
                            }
                            _ => cur.push(b'\\'),
                        }
                    }
                    Some(b'\\') if at(i + 1).is_some() => {
                        i += 1;
                        cur.push(match at(i).unwrap_or(b'\\') {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if at(i + 1).is_some_and(|c| !is_space(c)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        in_dq = false;
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else if in_sq {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if at(i + 1) == Some(b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if at(i + 1).is_some_and(|c| !is_space(c)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        in_sq = false;
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(c) if is_space(c) => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(other) => cur.push(other),
                }
            }
            i += 1;
        }
        debug_assert!(!in_dq && !in_sq);
        args.push(Bytes::from(cur));
    }
}

/// `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
