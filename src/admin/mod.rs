//! The admin endpoint's HTTP/1.1 transport: a small hand-written server that answers GET and HEAD
//! with whatever the caller's handler returns for the path (`/metrics`, `/healthz`, ...).
//!
//! Deliberately minimal: one request per connection (`Connection: close`), no request bodies, no
//! keep-alive, no chunked encoding. That is all a Prometheus scraper or a health probe needs, and
//! it keeps the attack surface small: the request head is bounded in size and in time, and at most
//! `max_connections` requests are in progress at once.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl HttpResponse {
    /// A response with `status` and a `text/plain` (UTF-8) body.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: TEXT_PLAIN,
            body: body.into(),
        }
    }
}

/// Answers a GET for `path` (the request target without any `?query`).
pub type Handler = Arc<dyn Fn(&str) -> HttpResponse + Send + Sync>;

/// A running admin server.
#[derive(Debug)]
pub struct AdminHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends the thread, and joins it. Connections in progress are dropped.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // `send_replace` rather than `send`: the latter fails when the server thread has already
        // gone (and with it the receiver), which is not an error worth reporting here.
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            // Joining ourselves would deadlock; that only happens if a handler drops the handle,
            // and then the thread is about to end anyway.
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            if thread.join().is_err() {
                tracing::warn!("admin server thread panicked");
            }
        }
    }
}

impl Drop for AdminHandle {
    /// Dropping the handle stops the server too, so a forgotten handle cannot leak a thread that
    /// keeps the port bound.
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves HTTP on `listener` (already bound, blocking std listener) in a thread of its own named
/// "strata-admin", running a current-thread tokio runtime. At most `max_connections` requests are
/// served at once; further connections wait in the accept backlog (not refused).
///
/// A `max_connections` of 0 is treated as 1, since a server that may serve nothing would only
/// fill its backlog.
pub fn start(
    listener: std::net::TcpListener,
    handler: Handler,
    max_connections: usize,
) -> io::Result<AdminHandle> {
    start_with(listener, handler, max_connections, Limits::DEFAULT)
}

/// Content type of [`HttpResponse::text`] and of the server's own error responses.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Bounds on what one connection may cost. A struct rather than constants so tests can shorten
/// the timeouts instead of sleeping for seconds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Largest request head, terminating blank line included.
    head_bytes: usize,
    /// Total time a client gets to send its whole head; bounds slow-loris clients too.
    head_timeout: Duration,
    /// Total time for writing the response to a client that does not read.
    write_timeout: Duration,
    /// How long to keep reading (and discarding) after the response, see [`linger`].
    linger: Duration,
    /// Pause after a failed accept (e.g. EMFILE), so the loop does not spin.
    accept_backoff: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        head_bytes: 8 * 1024,
        head_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        linger: Duration::from_secs(1),
        accept_backoff: Duration::from_millis(100),
    };
}

fn start_with(
    listener: std::net::TcpListener,
    handler: Handler,
    max_connections: usize,
    limits: Limits,
) -> io::Result<AdminHandle> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // Registering the listener with the runtime's reactor here, in the caller's thread, lets a
    // failure come back as this function's error instead of dying silently in the server thread.
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let (stop, stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("strata-admin".to_owned())
        .spawn(move || {
            runtime.block_on(accept_loop(
                listener,
                handler,
                max_connections.max(1),
                limits,
                stop_rx,
            ));
            // Dropping the runtime here drops every connection task still in progress.
            drop(runtime);
        })?;
    tracing::debug!(%addr, "admin endpoint listening");
    Ok(AdminHandle {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// Resolves once a stop has been requested, or once the handle is gone (nobody could request one
/// any more, so there is no point in serving).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Handler,
    max_connections: usize,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        // The permit is taken before accepting, so that while all slots are busy further clients
        // wait in the kernel's backlog instead of being accepted and then refused.
        let permit = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Only happens if the semaphore is closed, which nothing does.
                Err(_) => return,
            },
        };
        let stream = loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => break stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "admin endpoint: accept failed; retrying");
                        tokio::select! {
                            biased;
                            () = stopped(&mut stop) => return,
                            () = tokio::time::sleep(limits.accept_backoff) => {}
                        }
                    }
                },
            }
        };
        tokio::spawn(serve_connection(
            stream,
            Arc::clone(&handler),
            limits,
            permit,
        ));
    }
}

/// What reading the request head produced.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and including its blank line.
    Complete(Vec<u8>),
    /// No blank line within the size limit.
    TooLarge,
    /// The client closed its side before the blank line.
    Truncated,
    /// The client closed without sending anything.
    Empty,
}

async fn serve_connection(
    mut stream: TcpStream,
    handler: Handler,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    let head = match tokio::time::timeout(
        limits.head_timeout,
        read_head(&mut stream, limits.head_bytes),
    )
    .await
    {
        Ok(Ok(head)) => head,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "admin endpoint: reading request failed");
            return;
        }
        Err(_elapsed) => {
            tracing::debug!("admin endpoint: request head not received in time; dropped");
            return;
        }
    };
    let reply = match head {
        Head::Empty => return,
        Head::TooLarge => Reply::error(431, "request header fields too large\n"),
        Head::Truncated => Reply::error(400, "bad request\n"),
        Head::Complete(head) => respond(&head, &handler),
    };
    let bytes = reply.encode();
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => linger(&mut stream, limits.linger).await,
        Ok(Err(err)) => tracing::debug!(error = %err, "admin endpoint: writing response failed"),
        Err(_elapsed) => tracing::debug!("admin endpoint: client did not read the response"),
    }
}

/// Reads until the blank line that ends the head. Anything after it (a body, a pipelined request)
/// is ignored: we serve only GET and HEAD, one request per connection.
async fn read_head(stream: &mut TcpStream, limit: usize) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = head_end(&buf) {
            if end > limit {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() >= limit {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Head::Empty
            } else {
                Head::Truncated
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// The offset just past the blank line ending a request head, if `buf` holds one. Bare `\n` line
/// ends are accepted as well as `\r\n`, as RFC 9112 allows, for hand-typed requests.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let newline = from + buf.get(from..)?.iter().position(|&b| b == b'\n')?;
        match buf.get(newline + 1..)? {
            [b'\n', ..] => return Some(newline + 2),
            [b'\r', b'\n', ..] => return Some(newline + 3),
            _ => from = newline + 1,
        }
    }
}

/// After the response, keeps reading (and discarding) for a short while until the client closes.
/// Closing a socket with unread input makes the kernel send a reset, which can destroy the
/// response before the client has read it: exactly the case for a 431 or for a POST with a body.
async fn linger(stream: &mut TcpStream, within: Duration) {
    // Enough for any head plus a modest body; a client that sends more is not owed a clean close.
    const DRAIN_LIMIT: usize = 64 * 1024;
    let _ = tokio::time::timeout(within, async {
        let mut sink = [0u8; 2048];
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A response as it goes on the wire.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    response: HttpResponse,
    /// HEAD: headers as for GET, but no body.
    head_only: bool,
    /// Set for 405, which must say what is allowed.
    allow: bool,
}

impl Reply {
    fn error(status: u16, body: &str) -> Reply {
        Reply {
            response: HttpResponse::text(status, body),
            head_only: false,
            allow: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let response = &self.response;
        // A status outside three digits cannot be put on a status line; the handler is at fault,
        // and a 500 says so without sending the client something unparseable.
        let (status, content_type, body) = if (100..=999).contains(&response.status) {
            (
                response.status,
                response.content_type,
                response.body.as_str(),
            )
        } else {
            (500, TEXT_PLAIN, "handler returned an invalid status\n")
        };
        // A line break in the content type would let it forge headers.
        let content_type = if content_type.contains(['\r', '\n']) {
            TEXT_PLAIN
        } else {
            content_type
        };
        let allow = if self.allow {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {len}\r\n{allow}Connection: close\r\n\r\n",
            reason = reason_phrase(status),
            len = body.len(),
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }
}

/// Decides the reply to a complete request head.
fn respond(head: &[u8], handler: &Handler) -> Reply {
    let Some(request) = parse_request_line(head) else {
        return Reply::error(400, "bad request\n");
    };
    let head_only = match request.method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Reply {
                response: HttpResponse::text(405, "method not allowed\n"),
                head_only: false,
                allow: true,
            };
        }
    };
    let Some(path) = request_path(request.target) else {
        return Reply::error(400, "bad request\n");
    };
    // A panicking handler must cost one 500, not the connection task (or, were the runtime ever
    // configured to abort on task panics, the whole admin thread).
    let response = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(path))) {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(path, "admin endpoint: handler panicked");
            HttpResponse::text(500, "internal server error\n")
        }
    };
    Reply {
        response,
        head_only,
        allow: false,
    }
}

/// The parts of a request line that matter here.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
}

/// Parses `METHOD SP target SP HTTP/1.x` from the first line of `head`. Empty lines before it are
/// skipped, as RFC 9112 recommends.
fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let line = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| !line.is_empty())?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let version_ok = version
        .strip_prefix("HTTP/1.")
        .is_some_and(|minor| minor.len() == 1 && minor.bytes().all(|b| b.is_ascii_digit()));
    let target_ok = !target.is_empty() && target.bytes().all(|b| b.is_ascii_graphic());
    (is_token(method) && version_ok && target_ok).then_some(RequestLine { method, target })
}

/// The path of a request target: origin form (`/metrics?x`) or absolute form
/// (`http://host/metrics`), without query or fragment. `None` for anything else.
fn request_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.is_empty() {
            return None;
        }
        path
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // `http://host` and `http://host?x` name the root.
    Some(if path.is_empty() { "/" } else { path })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// The reason phrase for `status`; empty (which HTTP/1.1 allows) for codes not listed.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
