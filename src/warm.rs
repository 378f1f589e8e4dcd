//! `strata warm`: pre-loads a running strata proxy's cache from a JSON-lines file by sending
//! pipelined `STRATA WARM <key> <value> [<ttl-ms>]` commands, with optional progress and a summary.
//!
//! The file is streamed line by line, so its size does not bound memory. Commands go out in
//! batches of at most `pipeline`; each batch is one write, then its replies are read before the
//! next batch is sent, so the server never has more than `pipeline` of ours unanswered.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;

/// How long to wait for strata to answer (and to accept a write) before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Per resolved address; a plain connect to a black-holed host can hang for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The summary keeps only the first few problems so a bad file cannot flood the terminal.
const MAX_PROBLEMS: usize = 10;
/// Replies to STRATA WARM are short status lines; anything longer is not strata talking.
const MAX_REPLY_LEN: usize = 64 * 1024;
/// How much of an unexpected reply to quote in the error.
const REPLY_PREVIEW_CHARS: usize = 80;

/// What `strata warm` needs.
#[derive(Debug, Clone)]
pub struct WarmOptions {
    /// The strata proxy to load through (host:port).
    pub addr: String,
    /// JSON-lines file.
    pub file: PathBuf,
    /// Commands in flight at once (pipeline window), >= 1.
    pub pipeline: usize,
    /// Show a progress bar (the caller sets it when stderr is a terminal).
    pub progress: bool,
}

/// What a warm run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmSummary {
    /// Entries written (`+OK`).
    pub written: u64,
    /// Entries strata refused (error replies), with the first few messages.
    pub failed: u64,
    /// Lines that could not be read as an entry.
    pub invalid: u64,
    /// Up to 10 messages "line N: reason", in line order, for failed and invalid lines.
    pub problems: Vec<String>,
    /// Wall time of the whole run, connecting included.
    pub elapsed: Duration,
}

impl fmt::Display for WarmSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "warmed {} {} in {secs:.2}s",
            self.written,
            plural(self.written, "key", "keys")
        )?;
        // A zero elapsed time (only possible in tests or with a coarse clock) has no rate.
        if secs > 0.0 {
            // u64 -> f64 loses precision only beyond 2^53 keys, irrelevant for a rate.
            write!(f, " ({:.0} keys/s)", self.written as f64 / secs)?;
        }
        let mut tail = Vec::new();
        if self.failed > 0 {
            tail.push(format!("{} failed", self.failed));
        }
        if self.invalid > 0 {
            tail.push(format!(
                "{} invalid {}",
                self.invalid,
                plural(self.invalid, "line", "lines")
            ));
        }
        if !tail.is_empty() {
            write!(f, "; {}", tail.join(", "))?;
        }
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Why a warm run stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    /// The file opened but a later read failed (e.g. an I/O error on the disk).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot connect to strata at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// Entries of the batch in flight when the connection dropped may or may not have been
    /// written; `written` counts only the confirmed ones.
    #[error(
        "lost the connection to strata at {addr} after {written} entries were written: {source}"
    )]
    ConnectionLost {
        addr: String,
        written: u64,
        source: io::Error,
    },
    #[error("unexpected reply from strata at {addr}: {reply}")]
    Protocol { addr: String, reply: String },
}

/// One line of the file, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// `None`: the layer's default TTL applies.
    pub ttl_ms: Option<u64>,
}

/// The JSON shape of a line. Fields are `Value`s so a wrong type gets our own message rather
/// than serde's "invalid type: integer, expected a string".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: Value,
    value: Value,
    /// `Option` so that both an absent field and `null` mean "the layer's default".
    #[serde(default)]
    ttl: Option<Value>,
}

/// Parses one line of the file into (key, value, ttl in ms). Blank lines are not entries (the
/// caller skips them).
pub fn parse_line(line: &str) -> Result<Entry, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    // A derived struct would also accept an array of its fields in order, so anything that is
    // not an object is turned away first (with the syntax error if it is not JSON at all).
    if !line.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Ok(_) => "expected a JSON object".to_owned(),
            Err(e) => describe_json_error(&e),
        });
    }
    // Straight into the struct (not via a `Value` map) so duplicate fields are still refused.
    let raw: RawEntry = serde_json::from_str(line).map_err(|e| describe_json_error(&e))?;
    let key = match raw.key {
        Value::String(key) if !key.is_empty() => key,
        Value::String(_) => return Err("key must not be empty".to_owned()),
        _ => return Err("key must be a string".to_owned()),
    };
    let value = match raw.value {
        Value::String(value) => value,
        _ => return Err("value must be a string".to_owned()),
    };
    let ttl_ms = match raw.ttl {
        None => None,
        Some(Value::String(text)) => Some(parse_ttl(&text)?),
        Some(_) => return Err("ttl must be a duration string such as \"5m\"".to_owned()),
    };
    Ok(Entry { key, value, ttl_ms })
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| {
        format!("ttl {text:?} is not a duration ({e}); use e.g. \"250ms\", \"5m\", \"1h 30m\"")
    })?;
    if ttl.is_zero() {
        return Err("ttl must be greater than zero".to_owned());
    }
    // Whole milliseconds, rounded down but never to 0 (which would mean "no TTL" to some
    // readers); absurdly long TTLs saturate, and strata clamps them to the layer's max_ttl.
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    Ok(ms.max(1))
}

/// serde_json's message with its "at line 1 column N" suffix removed: the line is always 1 here
/// and would be confused with the file's line number.
fn describe_json_error(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON at column {}: {message}", err.column())
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => message.to_owned(),
    }
}

/// Loads every entry of the file through strata.
pub fn run(opts: &WarmOptions) -> Result<WarmSummary, WarmError> {
    let started = Instant::now();
    let file = File::open(&opts.file).map_err(|source| WarmError::Open {
        path: opts.file.clone(),
        source,
    })?;
    // Only a regular file has a meaningful size; a pipe or device reports 0.
    let file_len = file
        .metadata()
        .ok()
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len());
    let conn = Connection::open(&opts.addr)?;
    let progress = Progress::new(opts.progress, file_len);
    let mut loader = Loader {
        conn,
        window: opts.pipeline.max(1),
        batch: Vec::new(),
        in_flight: VecDeque::new(),
        summary: WarmSummary::default(),
        problems: Vec::new(),
        progress: &progress,
        started,
    };

    let mut input = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::new();
    let mut line_no: u64 = 0;
    let mut consumed: u64 = 0;
    loop {
        line.clear();
        // read_until rather than lines(): a non-UTF-8 line is one invalid line, not a fatal
        // error, and the byte count drives the progress bar.
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| WarmError::Read {
                path: opts.file.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        consumed = consumed.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        progress.set_position(consumed);
        let Ok(text) = std::str::from_utf8(&line) else {
            loader.invalid(line_no, "line is not valid UTF-8".to_owned());
            continue;
        };
        // Editors on Windows like to start files with a byte-order mark, which JSON rejects.
        let text = if line_no == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text) {
            Ok(entry) => loader.send(line_no, &entry)?,
            Err(reason) => loader.invalid(line_no, reason),
        }
    }
    loader.flush()?;
    Ok(loader.finish())
}

/// The pipelining state of one run.
struct Loader<'a> {
    conn: Connection,
    window: usize,
    /// Encoded commands not yet written.
    batch: Vec<u8>,
    /// Line numbers of the commands written or batched but not yet answered, oldest first;
    /// replies come back in order, so the front is the line the next reply belongs to.
    in_flight: VecDeque<u64>,
    summary: WarmSummary,
    /// Kept sorted by line and capped: failures surface only when their reply arrives, after
    /// invalid lines read later, so arrival order is not line order.
    problems: Vec<(u64, String)>,
    progress: &'a Progress,
    started: Instant,
}

impl Loader<'_> {
    fn send(&mut self, line_no: u64, entry: &Entry) -> Result<(), WarmError> {
        encode_warm(&mut self.batch, entry);
        self.in_flight.push_back(line_no);
        if self.in_flight.len() >= self.window {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending batch in one call, then reads one reply per command in it.
    fn flush(&mut self) -> Result<(), WarmError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        self.conn.write_all(&self.batch, self.summary.written)?;
        self.batch.clear();
        while let Some(line_no) = self.in_flight.pop_front() {
            match self.conn.read_reply(self.summary.written)? {
                Reply::Ok => self.summary.written += 1,
                Reply::Err(message) => {
                    self.summary.failed += 1;
                    self.note_problem(line_no, message);
                }
            }
        }
        let answered = self.summary.written + self.summary.failed;
        self.progress.set_rate(answered, self.started.elapsed());
        Ok(())
    }

    fn invalid(&mut self, line_no: u64, reason: String) {
        self.summary.invalid += 1;
        self.note_problem(line_no, reason);
    }

    fn note_problem(&mut self, line_no: u64, reason: String) {
        let at = self.problems.partition_point(|(n, _)| *n < line_no);
        if at < MAX_PROBLEMS {
            self.problems.insert(at, (line_no, reason));
            self.problems.truncate(MAX_PROBLEMS);
        }
    }

    fn finish(self) -> WarmSummary {
        let mut summary = self.summary;
        summary.problems = self
            .problems
            .into_iter()
            .map(|(line_no, reason)| format!("line {line_no}: {reason}"))
            .collect();
        summary.elapsed = self.started.elapsed();
        summary
    }
}

/// Appends `STRATA WARM <key> <value> [<ttl-ms>]` as a RESP array of bulk strings.
fn encode_warm(buf: &mut Vec<u8>, entry: &Entry) {
    let ttl = entry.ttl_ms.map(|ms| ms.to_string());
    let count = if ttl.is_some() { 5 } else { 4 };
    buf.push(b'*');
    buf.extend_from_slice(count.to_string().as_bytes());
    buf.extend_from_slice(b"\r\n");
    let args: [Option<&[u8]>; 5] = [
        Some(b"STRATA"),
        Some(b"WARM"),
        Some(entry.key.as_bytes()),
        Some(entry.value.as_bytes()),
        ttl.as_deref().map(str::as_bytes),
    ];
    for arg in args.into_iter().flatten() {
        buf.push(b'$');
        buf.extend_from_slice(arg.len().to_string().as_bytes());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

enum Reply {
    Ok,
    Err(String),
}

/// The socket to strata: writes go straight to the stream, replies come through a buffer so a
/// reply split across reads (or several replies in one read) is handled.
struct Connection {
    addr: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    fn open(addr: &str) -> Result<Self, WarmError> {
        let connect_error = |source| WarmError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let mut last_error = None;
        let mut stream = None;
        for candidate in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(connect_error(last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
            })));
        };
        // Batches are written whole; Nagle would only delay the last segment of each.
        stream.set_nodelay(true).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(connect_error)?;
        // A server that stops reading would otherwise block a large batch write forever.
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(connect_error)?;
        let reader = stream.try_clone().map_err(connect_error)?;
        Ok(Self {
            addr: addr.to_owned(),
            writer: stream,
            reader: BufReader::new(reader),
            line: Vec::new(),
        })
    }

    fn lost(&self, written: u64, source: io::Error) -> WarmError {
        let source = match source.kind() {
            // A socket timeout surfaces as WouldBlock on Unix, whose text is misleading.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no progress for {}s", IO_TIMEOUT.as_secs()),
            ),
            _ => source,
        };
        WarmError::ConnectionLost {
            addr: self.addr.clone(),
            written,
            source,
        }
    }

    fn write_all(&mut self, bytes: &[u8], written: u64) -> Result<(), WarmError> {
        match self.writer.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(written, e)),
        }
    }

    /// Reads one status reply. `written` is only for the error if the connection drops.
    fn read_reply(&mut self, written: u64) -> Result<Reply, WarmError> {
        self.line.clear();
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.lost(written, e)),
            };
            if available.is_empty() {
                let eof =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "strata closed the connection");
                return Err(self.lost(written, eof));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            self.line
                .extend_from_slice(available.get(..take).unwrap_or(available));
            self.reader.consume(take);
            if newline.is_some() {
                break;
            }
            if self.line.len() > MAX_REPLY_LEN {
                return Err(self.protocol_error());
            }
        }
        let body = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        match body.split_first() {
            Some((b'+', _)) => Ok(Reply::Ok),
            Some((b'-', message)) => Ok(Reply::Err(
                String::from_utf8_lossy(message).trim().to_owned(),
            )),
            _ => Err(self.protocol_error()),
        }
    }

    fn protocol_error(&self) -> WarmError {
        let text = String::from_utf8_lossy(&self.line);
        let mut preview: String = text.chars().take(REPLY_PREVIEW_CHARS).collect();
        if text.chars().count() > REPLY_PREVIEW_CHARS {
            preview.push_str("...");
        }
        WarmError::Protocol {
            addr: self.addr.clone(),
            reply: format!("{preview:?}"),
        }
    }
}

/// The optional progress bar; clearing on drop covers every way `run` can return.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(enabled: bool, file_len: Option<u64>) -> Self {
        if !enabled {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(file_len, ProgressDrawTarget::stderr());
        let template = if file_len.is_some() {
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg}"
        } else {
            // Without a size there is nothing to fill a bar towards.
            "{elapsed_precise} {spinner} {bytes} {msg}"
        };
        // The templates are constant, so the fallback is never expected to be used.
        let style = ProgressStyle::with_template(template)
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self(Some(bar))
    }

    fn set_position(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
        }
    }

    fn set_rate(&self, entries: u64, elapsed: Duration) {
        if let Some(bar) = &self.0 {
            let secs = elapsed.as_secs_f64();
            if secs > 0.0 {
                bar.set_message(format!("{:.0} entries/s", entries as f64 / secs));
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::JoinHandle;

    // ---- parse_line ----

    #[test]
    fn parses_full_entry() {
        let e = parse_line(r#"{"key": "route:abc", "value": "gpt-4", "ttl": "5m"}"#).unwrap();
        assert_eq!(
            e,
            Entry {
                key: "route:abc".into(),
                value: "gpt-4".into(),
                ttl_ms: Some(300_000)
            }
        );
    }

    #[test]
    fn ttl_absent_or_null_means_default() {
        let e = parse_line(r#"{"key": "k", "value": "v"}"#).unwrap();
        assert_eq!(e.ttl_ms, None);
        let e = parse_line(r#"{"key": "k", "value": "v", "ttl": null}"#).unwrap();
        assert_eq!(e.ttl_ms, None);
    }

    #[test]
    fn ttl_compound_and_rounding() {
        let ttl = |t: &str| parse_line(&format!(r#"{{"key":"k","value":"v","ttl":"{t}"}}"#));
        assert_eq!(ttl("1h 30m").unwrap().ttl_ms, Some(5_400_000));
        assert_eq!(ttl("250ms").unwrap().ttl_ms, Some(250));
        assert_eq!(ttl("1500us").unwrap().ttl_ms, Some(1));
        assert_eq!(ttl("500us").unwrap().ttl_ms, Some(1));
    }

    #[test]
    fn trailing_carriage_return_and_empty_value_accepted() {
        let e = parse_line("{\"key\":\"k\",\"value\":\"\"}\r").unwrap();
        assert_eq!(e.value, "");
        let e = parse_line("{\"key\":\"k\",\"value\":\"x\"}\r\n").unwrap();
        assert_eq!(e.value, "x");
    }

    #[test]
    fn rejects_missing_key() {
        let err = parse_line(r#"{"value": "v"}"#).unwrap_err();
        assert!(err.contains("missing field `key`"), "{err}");
        assert!(!err.contains("at line"), "{err}");
    }

    #[test]
    fn rejects_missing_value() {
        let err = parse_line(r#"{"key": "k"}"#).unwrap_err();
        assert!(err.contains("missing field `value`"), "{err}");
    }

    #[test]
    fn rejects_empty_or_non_string_key() {
        assert_eq!(
            parse_line(r#"{"key": "", "value": "v"}"#).unwrap_err(),
            "key must not be empty"
        );
        assert_eq!(
            parse_line(r#"{"key": 3, "value": "v"}"#).unwrap_err(),
            "key must be a string"
        );
    }

    #[test]
    fn rejects_non_string_value() {
        for value in ["7", "null", "true", "[1]", r#"{"a":"b"}"#] {
            let line = format!(r#"{{"key": "k", "value": {value}}}"#);
            assert_eq!(parse_line(&line).unwrap_err(), "value must be a string");
        }
    }

    #[test]
    fn rejects_bad_ttl() {
        let err = parse_line(r#"{"key": "k", "value": "v", "ttl": "soon"}"#).unwrap_err();
        assert!(err.contains("ttl \"soon\" is not a duration"), "{err}");
        let err = parse_line(r#"{"key": "k", "value": "v", "ttl": "5"}"#).unwrap_err();
        assert!(err.contains("not a duration"), "{err}");
        let err = parse_line(r#"{"key": "k", "value": "v", "ttl": 300}"#).unwrap_err();
        assert!(err.contains("ttl must be a duration string"), "{err}");
    }

    #[test]
    fn rejects_zero_ttl() {
        for zero in ["0s", "0ms", "0h 0m"] {
            let line = format!(r#"{{"key": "k", "value": "v", "ttl": "{zero}"}}"#);
            assert_eq!(
                parse_line(&line).unwrap_err(),
                "ttl must be greater than zero"
            );
        }
    }

    #[test]
    fn rejects_unknown_field() {
        let err = parse_line(r#"{"key": "k", "value": "v", "expire": "5m"}"#).unwrap_err();
        assert!(err.contains("unknown field `expire`"), "{err}");
    }

    #[test]
    fn rejects_non_objects_and_broken_json() {
        for not_object in [r#"["k", "v"]"#, r#""k""#, "null", "1"] {
            assert_eq!(
                parse_line(not_object).unwrap_err(),
                "expected a JSON object"
            );
        }
        let err = parse_line(r#"{"key": "k", "value": "v""#).unwrap_err();
        assert!(err.starts_with("invalid JSON at column"), "{err}");
        let err = parse_line("nonsense").unwrap_err();
        assert!(err.starts_with("invalid JSON at column"), "{err}");
        assert!(parse_line("").is_err());
        let err = parse_line(r#"{"key":"k","value":"v","key":"j"}"#).unwrap_err();
        assert!(err.contains("duplicate field `key`"), "{err}");
    }

    // ---- Display ----

    #[test]
    fn summary_display() {
        let summary = WarmSummary {
            written: 998,
            failed: 1,
            invalid: 1,
            problems: vec![
                "line 3: ERR node unavailable".into(),
                "line 9: value must be a string".into(),
            ],
            elapsed: Duration::from_millis(410),
        };
        assert_eq!(
            summary.to_string(),
            "warmed 998 keys in 0.41s (2434 keys/s); 1 failed, 1 invalid line\n  \
             line 3: ERR node unavailable\n  line 9: value must be a string"
        );
    }

    #[test]
    fn summary_display_clean_and_plurals() {
        let clean = WarmSummary {
            written: 1,
            elapsed: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(clean.to_string(), "warmed 1 key in 1.00s (1 keys/s)");
        let invalid_only = WarmSummary {
            written: 10,
            invalid: 2,
            elapsed: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(
            invalid_only.to_string(),
            "warmed 10 keys in 1.00s (10 keys/s); 2 invalid lines"
        );
        let instant = WarmSummary::default();
        assert_eq!(instant.to_string(), "warmed 0 keys in 0.00s");
    }

    // ---- fake strata ----

    /// Reads one RESP multibulk command; `None` at a clean EOF.
    fn read_command(r: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
        let mut header = String::new();
        if r.read_line(&mut header).unwrap() == 0 {
            return None;
        }
        let count: usize = header
            .strip_prefix('*')
            .and_then(|h| h.strip_suffix("\r\n"))
            .unwrap_or_else(|| panic!("bad array header {header:?}"))
            .parse()
            .unwrap();
        let mut args = Vec::new();
        for _ in 0..count {
            let mut len_line = String::new();
            r.read_line(&mut len_line).unwrap();
            let len: usize = len_line
                .strip_prefix('$')
                .and_then(|l| l.strip_suffix("\r\n"))
                .unwrap_or_else(|| panic!("bad bulk header {len_line:?}"))
                .parse()
                .unwrap();
            let mut arg = vec![0; len + 2];
            r.read_exact(&mut arg).unwrap();
            assert_eq!(&arg[len..], b"\r\n");
            arg.truncate(len);
            args.push(arg);
        }
        Some(args)
    }

    struct FakeStrata {
        addr: String,
        commands: std::sync::Arc<AtomicUsize>,
        handle: JoinHandle<()>,
    }

    /// Serves one connection. `respond` sees each command's arguments and returns the reply
    /// bytes; returning `None` makes the server stop answering and close its side.
    fn fake_strata(
        respond: impl Fn(usize, &[Vec<u8>]) -> Option<Vec<u8>> + Send + 'static,
    ) -> FakeStrata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let commands = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = commands.clone();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            while let Some(args) = read_command(&mut reader) {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                match respond(n, &args) {
                    Some(reply) => writer.write_all(&reply).unwrap(),
                    None => {
                        // Half-close, then drain until the client hangs up: closing with
                        // unread data would send a RST that can discard replies in flight.
                        writer.shutdown(Shutdown::Write).unwrap();
                        let mut sink = Vec::new();
                        let _ = reader.read_to_end(&mut sink);
                        return;
                    }
                }
            }
        });
        FakeStrata {
            addr,
            commands,
            handle,
        }
    }

    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "strata-warm-test-{}-{}.jsonl",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn options(addr: &str, file: &TempFile, pipeline: usize) -> WarmOptions {
        WarmOptions {
            addr: addr.to_owned(),
            file: file.0.clone(),
            pipeline,
            progress: false,
        }
    }

    /// The TTL the big test file gives to line `i`, as the server should see it.
    fn expected_ttl(i: usize) -> Option<&'static str> {
        match i % 3 {
            0 => Some("300000"),
            1 => None,
            _ => Some("250"),
        }
    }

    /// 1000 lines: line 500 blank, line 700 invalid, key of line 300 refused by the server,
    /// a mix of TTL forms and line endings, no newline after the last line.
    fn big_file() -> TempFile {
        let mut text = String::new();
        for i in 1..=1000usize {
            let line = match (i, i % 3) {
                (500, _) => "   ".to_owned(),
                (700, _) => format!(r#"{{"key": "k{i}", "value": {i}}}"#),
                (_, 0) => format!(r#"{{"key": "k{i}", "value": "v{i}", "ttl": "5m"}}"#),
                (_, 1) if i % 2 == 0 => {
                    format!(r#"{{"key": "k{i}", "value": "v{i}", "ttl": null}}"#)
                }
                (_, 1) => format!(r#"{{"key": "k{i}", "value": "v{i}"}}"#),
                _ => format!(r#"{{"ttl": "250ms", "value": "v{i}", "key": "k{i}"}}"#),
            };
            text.push_str(&line);
            if i < 1000 {
                text.push_str(if i % 4 == 0 { "\r\n" } else { "\n" });
            }
        }
        TempFile::new(text.as_bytes())
    }

    /// Checks the exact arguments of a STRATA WARM for the big file and answers it.
    fn check_big_file_command(args: &[Vec<u8>]) -> Vec<u8> {
        let args: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8(a.clone()).unwrap())
            .collect();
        assert_eq!(args[0], "STRATA");
        assert_eq!(args[1], "WARM");
        let i: usize = args[2].strip_prefix('k').unwrap().parse().unwrap();
        assert_eq!(args[3], format!("v{i}"));
        match expected_ttl(i) {
            Some(ttl) => {
                assert_eq!(args.len(), 5, "{args:?}");
                assert_eq!(args[4], ttl);
            }
            None => assert_eq!(args.len(), 4, "{args:?}"),
        }
        if i == 300 {
            b"-ERR node unavailable\r\n".to_vec()
        } else {
            b"+OK\r\n".to_vec()
        }
    }

    #[test]
    fn warms_a_file_through_a_fake_strata() {
        let file = big_file();
        // Arguments are checked on the server thread; a failed assertion there ends the
        // connection, which makes run() fail here and join() below report the panic.
        let server = fake_strata(|_, args| Some(check_big_file_command(args)));
        let summary = run(&options(&server.addr, &file, 16)).unwrap();
        server.handle.join().unwrap();
        assert_eq!(server.commands.load(Ordering::SeqCst), 998);
        assert_eq!(summary.written, 997);
        assert_eq!(summary.failed, 1);
        assert_eq!(summary.invalid, 1);
        assert_eq!(
            summary.problems,
            vec![
                "line 300: ERR node unavailable".to_owned(),
                "line 700: value must be a string".to_owned(),
            ]
        );
    }

    #[test]
    fn progress_bar_path_and_pipeline_of_one() {
        let file = big_file();
        let server = fake_strata(|_, args| Some(check_big_file_command(args)));
        let mut opts = options(&server.addr, &file, 1);
        opts.progress = true;
        let summary = run(&opts).unwrap();
        server.handle.join().unwrap();
        assert_eq!(
            (summary.written, summary.failed, summary.invalid),
            (997, 1, 1)
        );
    }

    #[test]
    fn never_more_than_pipeline_commands_unanswered() {
        let mut text = String::new();
        for i in 1..=40 {
            text.push_str(&format!("{{\"key\": \"k{i}\", \"value\": \"v\"}}\n"));
        }
        let file = TempFile::new(text.as_bytes());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream.try_clone().unwrap();
            for batch in [16, 16, 8] {
                for _ in 0..batch {
                    read_command(&mut reader).unwrap();
                }
                // With the window full the client must be waiting for replies: nothing more
                // may be buffered or arrive until we answer.
                assert!(reader.buffer().is_empty(), "client sent past the window");
                stream
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut probe = [0u8; 1];
                let early = stream.peek(&mut probe);
                assert!(early.is_err(), "client sent past the window: {early:?}");
                stream.set_read_timeout(None).unwrap();
                writer.write_all(&b"+OK\r\n".repeat(batch)).unwrap();
            }
            assert!(read_command(&mut reader).is_none());
        });
        let summary = run(&WarmOptions {
            addr,
            file: file.0.clone(),
            pipeline: 16,
            progress: false,
        })
        .unwrap();
        handle.join().unwrap();
        assert_eq!(summary.written, 40);
    }

    #[test]
    fn problems_are_the_first_ten_in_line_order() {
        // Failures of lines 1..=4 are only known after the batch is answered, by which time
        // invalid lines 5 and 9 have been seen: the list must still come out in line order.
        let mut bytes = Vec::new();
        for i in 1..=30 {
            let line = if [5, 9, 12].contains(&i) {
                format!("{{\"key\": \"k{i}\"}}\n")
            } else {
                format!("{{\"key\": \"k{i}\", \"value\": \"v\"}}\n")
            };
            bytes.extend_from_slice(line.as_bytes());
        }
        // Line 31 is not UTF-8.
        bytes.extend_from_slice(b"\xff\n");
        let file = TempFile::new(&bytes);
        let server = fake_strata(|_, args| {
            let key = String::from_utf8(args[2].clone()).unwrap();
            let i: usize = key[1..].parse().unwrap();
            Some(if i <= 20 {
                format!("-ERR nope {i}\r\n").into_bytes()
            } else {
                b"+OK\r\n".to_vec()
            })
        });
        let summary = run(&options(&server.addr, &file, 16)).unwrap();
        server.handle.join().unwrap();
        assert_eq!(summary.failed, 17);
        assert_eq!(summary.invalid, 4);
        assert_eq!(summary.written, 10);
        let expected: Vec<String> = [
            "line 1: ERR nope 1",
            "line 2: ERR nope 2",
            "line 3: ERR nope 3",
            "line 4: ERR nope 4",
            "line 5: missing field `value`",
            "line 6: ERR nope 6",
            "line 7: ERR nope 7",
            "line 8: ERR nope 8",
            "line 9: missing field `value`",
            "line 10: ERR nope 10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(summary.problems, expected);
    }

    #[test]
    fn non_utf8_line_is_invalid() {
        let mut bytes = b"{\"key\": \"a\", \"value\": \"b\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"key\": \"\xff\", \"value\": \"b\"}\n");
        let file = TempFile::new(&bytes);
        let server = fake_strata(|_, _| Some(b"+OK\r\n".to_vec()));
        let summary = run(&options(&server.addr, &file, 4)).unwrap();
        server.handle.join().unwrap();
        assert_eq!((summary.written, summary.invalid), (1, 1));
        assert_eq!(summary.problems, vec!["line 2: line is not valid UTF-8"]);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let file = TempFile::new("\u{feff}{\"key\": \"a\", \"value\": \"b\"}\n".as_bytes());
        let server = fake_strata(|_, _| Some(b"+OK\r\n".to_vec()));
        let summary = run(&options(&server.addr, &file, 4)).unwrap();
        server.handle.join().unwrap();
        assert_eq!((summary.written, summary.invalid), (1, 0));
    }

    #[test]
    fn reply_split_across_reads() {
        let file = TempFile::new(
            b"{\"key\": \"a\", \"value\": \"b\"}\n{\"key\": \"c\", \"value\": \"d\"}\n",
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            read_command(&mut reader).unwrap();
            read_command(&mut reader).unwrap();
            for piece in [&b"+O"[..], b"K\r", b"\n-ERR sp", b"lit\r\n"] {
                writer.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
            assert!(read_command(&mut reader).is_none());
        });
        let file_opts = WarmOptions {
            addr,
            file: file.0.clone(),
            pipeline: 2,
            progress: false,
        };
        let summary = run(&file_opts).unwrap();
        handle.join().unwrap();
        assert_eq!((summary.written, summary.failed), (1, 1));
        assert_eq!(summary.problems, vec!["line 2: ERR split"]);
    }

    #[test]
    fn connection_refused_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let file = TempFile::new(b"{\"key\": \"a\", \"value\": \"b\"}\n");
        let err = run(&options(&addr, &file, 16)).unwrap_err();
        assert!(matches!(err, WarmError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let opts = WarmOptions {
            addr: "127.0.0.1:1".into(),
            file: std::env::temp_dir().join("strata-warm-test-does-not-exist.jsonl"),
            pipeline: 16,
            progress: false,
        };
        let err = run(&opts).unwrap_err();
        assert!(matches!(err, WarmError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("does-not-exist"), "{err}");
    }

    #[test]
    fn server_closing_mid_way_reports_written_count() {
        let file = big_file();
        // Answers 40 commands (none of them line 300), then hangs up.
        let server = fake_strata(|n, args| {
            if n < 40 {
                Some(check_big_file_command(args))
            } else {
                None
            }
        });
        let err = run(&options(&server.addr, &file, 16)).unwrap_err();
        server.handle.join().unwrap();
        match &err {
            WarmError::ConnectionLost { written, .. } => assert_eq!(*written, 40),
            other => panic!("expected ConnectionLost, got {other:?}"),
        }
        assert!(err.to_string().contains("after 40 entries"), "{err}");
    }

    #[test]
    fn unexpected_reply_is_a_protocol_error() {
        let file = TempFile::new(b"{\"key\": \"a\", \"value\": \"b\"}\n");
        let server = fake_strata(|_, _| Some(b":1\r\n".to_vec()));
        let err = run(&options(&server.addr, &file, 16)).unwrap_err();
        server.handle.join().unwrap();
        assert!(matches!(err, WarmError::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains(":1"), "{err}");
    }

    #[test]
    fn encodes_resp_exactly() {
        let mut buf = Vec::new();
        encode_warm(
            &mut buf,
            &Entry {
                key: "route:abc".into(),
                value: "gpt-4".into(),
                ttl_ms: None,
            },
        );
        assert_eq!(
            buf,
            b"*4\r\n$6\r\nSTRATA\r\n$4\r\nWARM\r\n$9\r\nroute:abc\r\n$5\r\ngpt-4\r\n"
        );
        buf.clear();
        encode_warm(
            &mut buf,
            &Entry {
                key: "k".into(),
                value: "".into(),
                ttl_ms: Some(300_000),
            },
        );
        assert_eq!(
            buf,
            b"*5\r\n$6\r\nSTRATA\r\n$4\r\nWARM\r\n$1\r\nk\r\n$0\r\n\r\n$6\r\n300000\r\n"
        );
    }
}
