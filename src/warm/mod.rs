//! `strata warm`: pre-loads a running strata proxy's cache from a JSON-lines file by sending
//! pipelined `STRATA WARM <key> <value> [<ttl-ms>]` commands, with optional progress and a summary.
//!
//! The file is streamed line by line, so its size does not bound memory. Commands go out in
//! batches of at most `pipeline`; each batch is one write, then its replies are read before the
//! next batch is sent, so the server never has more than `pipeline` of ours unanswered. strata
//! is reached through the backend's [`RespClient`], on a single-threaded runtime of the run's
//! own.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redis_protocol::resp2::types::BytesFrame;
use serde::Deserialize;
use serde_json::Value;

use crate::backend::{CallError, RespClient};
use crate::protocol::reply::encode_command;
use crate::protocol::Proto;

/// How long to wait for strata to answer (and to accept a write) before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A plain connect to a black-holed host can hang for minutes.
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
    /// The runtime the client runs on could not be started.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot connect to strata at {addr}: {source}")]
    Connect { addr: String, source: CallError },
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WarmError::Runtime)?;
    runtime.block_on(warm(opts))
}

/// [`run`] on its runtime. The file is read with blocking calls: the runtime has one thread
/// and nothing else to do while a line is read.
async fn warm(opts: &WarmOptions) -> Result<WarmSummary, WarmError> {
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
    let conn = Connection::open(&opts.addr).await?;
    let progress = Progress::new(opts.progress, file_len);
    let mut loader = Loader {
        conn,
        window: opts.pipeline.max(1),
        batch: BytesMut::new(),
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
            Ok(entry) => loader.send(line_no, &entry).await?,
            Err(reason) => loader.invalid(line_no, reason),
        }
    }
    loader.flush().await?;
    Ok(loader.finish())
}

/// The pipelining state of one run.
struct Loader<'a> {
    conn: Connection,
    window: usize,
    /// Encoded commands not yet written.
    batch: BytesMut,
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
    async fn send(&mut self, line_no: u64, entry: &Entry) -> Result<(), WarmError> {
        encode_warm(&mut self.batch, entry);
        self.in_flight.push_back(line_no);
        if self.in_flight.len() >= self.window {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the pending batch in one call, then reads one reply per command in it.
    async fn flush(&mut self) -> Result<(), WarmError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        self.conn.send(&self.batch, self.summary.written).await?;
        self.batch.clear();
        while let Some(line_no) = self.in_flight.pop_front() {
            match self.conn.read_reply(self.summary.written).await? {
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
fn encode_warm(buf: &mut BytesMut, entry: &Entry) {
    let ttl = entry.ttl_ms.map(|ms| ms.to_string());
    let args = [
        &b"STRATA"[..],
        b"WARM",
        entry.key.as_bytes(),
        entry.value.as_bytes(),
        ttl.as_deref().unwrap_or_default().as_bytes(),
    ];
    let count = if ttl.is_some() { 5 } else { 4 };
    encode_command(buf, args.iter().take(count).copied());
}

enum Reply {
    Ok,
    Err(String),
}

/// The connection to strata, with the address for error messages.
struct Connection {
    addr: String,
    client: RespClient,
}

impl Connection {
    async fn open(addr: &str) -> Result<Self, WarmError> {
        let client = RespClient::connect(addr, Proto::Resp2, CONNECT_TIMEOUT)
            .await
            .map_err(|source| WarmError::Connect {
                addr: addr.to_owned(),
                source,
            })?
            // Both ways: a server that stops reading would otherwise block a large batch
            // write forever.
            .with_timeout(IO_TIMEOUT)
            .with_reply_limit(MAX_REPLY_LEN);
        Ok(Self {
            addr: addr.to_owned(),
            client,
        })
    }

    /// The error for a failed exchange; `written` is the count of confirmed entries.
    fn lost(&self, written: u64, error: CallError) -> WarmError {
        let source = match error {
            CallError::Write(e) | CallError::Read(e) => e,
            CallError::Closed => {
                io::Error::new(io::ErrorKind::UnexpectedEof, "strata closed the connection")
            }
            CallError::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no progress for {}s", IO_TIMEOUT.as_secs()),
            ),
            CallError::Protocol(_) => return self.protocol_error(self.client.buffered()),
            CallError::Connect(reason) => io::Error::other(reason),
        };
        WarmError::ConnectionLost {
            addr: self.addr.clone(),
            written,
            source,
        }
    }

    async fn send(&mut self, bytes: &[u8], written: u64) -> Result<(), WarmError> {
        match self.client.send(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(written, e)),
        }
    }

    /// Reads one status reply. `written` is only for the error if the connection drops.
    async fn read_reply(&mut self, written: u64) -> Result<Reply, WarmError> {
        let reply = match self.client.read().await {
            Ok(reply) => reply,
            Err(e) => return Err(self.lost(written, e)),
        };
        match reply.frame {
            BytesFrame::SimpleString(_) => Ok(Reply::Ok),
            BytesFrame::Error(message) => Ok(Reply::Err(message.trim().to_owned())),
            _ => Err(self.protocol_error(&reply.raw)),
        }
    }

    fn protocol_error(&self, reply: &[u8]) -> WarmError {
        let text = String::from_utf8_lossy(reply);
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
mod tests;
