//! RESP2 and RESP3 replies as a tree that keeps every byte: [`Frame::parse`] finds where one
//! reply ends and [`Frame::encode`] gives back exactly the bytes it was parsed from, so tests can
//! compare raw replies, or compare them after masking a field or ignoring an order.

#![allow(dead_code, clippy::indexing_slicing)]

/// One reply, RESP2 or RESP3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A one-line frame: `+` simple string, `-` error, `:` integer, `_` null, `,` double,
    /// `#` boolean, `(` big number. The text without its type byte and CRLF.
    Line(u8, Vec<u8>),
    /// A length-prefixed frame: `$` bulk string, `!` bulk error, `=` verbatim string; `None` for
    /// RESP2's `$-1`.
    Blob(u8, Option<Vec<u8>>),
    /// An aggregate: `*` array, `%` map (keys and values alternate), `~` set, `>` push,
    /// `|` attribute (its reply follows as the next frame); `None` for RESP2's `*-1`.
    Aggregate(u8, Option<Vec<Frame>>),
    /// Stands for a value a comparison leaves out (see `masked`); encodes as `<masked>`.
    Masked,
}

impl Frame {
    /// Parses one frame at the start of `buf`: `Ok(None)` while incomplete, else the frame and the
    /// number of bytes it used.
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let line = &buf[1..nl];
        let after = nl + 2;
        let count = || -> Result<i64, String> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(line)))
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                Ok(Some((Frame::Line(kind, line.to_vec()), after)))
            }
            b'$' | b'!' | b'=' => {
                let n = count()?;
                if n < 0 {
                    return Ok(Some((Frame::Blob(kind, None), after)));
                }
                let end = after + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err("blob not followed by CRLF".into());
                }
                Ok(Some((
                    Frame::Blob(kind, Some(buf[after..end].to_vec())),
                    end + 2,
                )))
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let n = count()?;
                if n < 0 {
                    return Ok(Some((Frame::Aggregate(kind, None), after)));
                }
                let items = if matches!(kind, b'%' | b'|') {
                    2 * n
                } else {
                    n
                };
                let mut out = Vec::with_capacity(items as usize);
                let mut pos = after;
                for _ in 0..items {
                    match Frame::parse(&buf[pos..])? {
                        Some((item, used)) => {
                            out.push(item);
                            pos += used;
                        }
                        None => return Ok(None),
                    }
                }
                Ok(Some((Frame::Aggregate(kind, Some(out)), pos)))
            }
            other => Err(format!("unexpected type byte {:?}", other as char)),
        }
    }

    /// Parses bytes that hold exactly one frame.
    pub fn parse_all(bytes: &[u8]) -> Result<Frame, String> {
        match Frame::parse(bytes)? {
            Some((frame, used)) if used == bytes.len() => Ok(frame),
            Some((_, used)) => Err(format!("{} bytes after the frame", bytes.len() - used)),
            None => Err("incomplete frame".into()),
        }
    }

    /// The bytes of the frame: exactly those it was parsed from.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Line(kind, text) => {
                out.push(*kind);
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Blob(kind, None) => {
                out.push(*kind);
                out.extend_from_slice(b"-1\r\n");
            }
            Frame::Blob(kind, Some(data)) => {
                out.push(*kind);
                out.extend_from_slice(format!("{}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Aggregate(kind, None) => {
                out.push(*kind);
                out.extend_from_slice(b"-1\r\n");
            }
            Frame::Aggregate(kind, Some(items)) => {
                let n = if matches!(kind, b'%' | b'|') {
                    items.len() / 2
                } else {
                    items.len()
                };
                out.push(*kind);
                out.extend_from_slice(format!("{n}\r\n").as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Frame::Masked => out.extend_from_slice(b"<masked>"),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The text of a simple string, bulk string or verbatim string.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Frame::Line(b'+', t) | Frame::Blob(b'$', Some(t)) => Some(t),
            Frame::Blob(b'=', Some(t)) => t.get(4..),
            _ => None,
        }
    }

    /// The elements of an aggregate (map keys and values alternating).
    pub fn items(&self) -> Option<&[Frame]> {
        match self {
            Frame::Aggregate(_, Some(items)) => Some(items),
            _ => None,
        }
    }

    /// The frame with the value of every field named in `fields` replaced by [`Frame::Masked`],
    /// at any depth: in maps, and in RESP2 arrays of alternating names and values.
    pub fn mask_fields(&self, fields: &[&str]) -> Frame {
        match self {
            Frame::Aggregate(kind, Some(items)) => {
                let pairs = *kind == b'%' || (*kind == b'*' && items.len() % 2 == 0);
                let mut out: Vec<Frame> = items.iter().map(|i| i.mask_fields(fields)).collect();
                if pairs {
                    for i in (0..items.len()).step_by(2) {
                        let named = items[i]
                            .text()
                            .is_some_and(|t| fields.iter().any(|f| f.as_bytes() == t));
                        if named {
                            out[i + 1] = Frame::Masked;
                        }
                    }
                }
                Frame::Aggregate(*kind, Some(out))
            }
            other => other.clone(),
        }
    }

    /// The frame with element `index` of every element of this aggregate masked (a column of a
    /// table of rows, such as XPENDING's idle times).
    pub fn mask_column(&self, index: usize) -> Frame {
        match self {
            Frame::Aggregate(kind, Some(rows)) => {
                let rows = rows
                    .iter()
                    .map(|row| match row {
                        Frame::Aggregate(k, Some(cells)) => {
                            let mut cells = cells.clone();
                            if let Some(cell) = cells.get_mut(index) {
                                *cell = Frame::Masked;
                            }
                            Frame::Aggregate(*k, Some(cells))
                        }
                        other => other.clone(),
                    })
                    .collect();
                Frame::Aggregate(*kind, Some(rows))
            }
            other => other.clone(),
        }
    }

    /// The frame with the elements of this aggregate sorted by their encoding (map entries
    /// sorted as pairs), for replies whose order is not defined.
    pub fn sorted(&self) -> Frame {
        match self {
            Frame::Aggregate(kind, Some(items)) if matches!(kind, b'%' | b'|') => {
                let mut pairs: Vec<(Vec<u8>, &[Frame])> = items
                    .chunks(2)
                    .map(|p| (p.iter().flat_map(Frame::to_bytes).collect(), p))
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                let items = pairs.into_iter().flat_map(|(_, p)| p.to_vec()).collect();
                Frame::Aggregate(*kind, Some(items))
            }
            Frame::Aggregate(kind, Some(items)) => {
                let mut items = items.clone();
                items.sort_by_key(Frame::to_bytes);
                Frame::Aggregate(*kind, Some(items))
            }
            other => other.clone(),
        }
    }
}

/// Length of the reply at the start of `buf` (an attribute frame and the reply it annotates
/// count as one), `Ok(None)` while incomplete: strata's own frame length.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    strata::protocol::resp3_reply::frame_len(buf).map_err(|e| e.to_string())
}

/// Bytes as readable text: CR and LF as `\r` `\n`, other control and non-ASCII bytes as `\xNN`,
/// cut after `max` characters (with the total length said).
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
        if out.len() >= max {
            out.push_str(&format!("... ({} bytes in all)", bytes.len()));
            break;
        }
    }
    out
}
