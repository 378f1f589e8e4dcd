//! The admin endpoint's HTTP/1.1 transport: answers GET and HEAD with whatever the caller's
//! handler returns for the path (`/metrics`, `/healthz`, ...), on a thread and runtime of its own.
//!
//! Built on hyper's HTTP/1 server connection rather than a parser of our own: request-line and
//! header parsing, absolute-form targets, leading empty lines and bare `\n` line ends, HEAD
//! responses without a body, 400 and 431 for bad or oversized heads, and the bound on the time to
//! read a head are hyper's (widely used and fuzzed). What stays here is what is strata's: the
//! thread, the concurrency limit, method and path handling, the panic guard and the lingering
//! close.
//!
//! Requests carry the client's address and its bearer credentials to the handler
//! ([`AdminRequest`], [`bearer`]); the handler decides whether a path needs a token.
//!
//! One request per connection (keep-alive off, `Connection: close`): a permit is held per
//! connection, so an idle keep-alive connection would hold a slot; one request each keeps "at
//! most `max_connections` requests in progress" exact and every connection bounded in time. That
//! is all a Prometheus scraper or a health probe needs. No request bodies are read.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub mod bearer;

pub use bearer::{Credentials, Refusal};

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// A `WWW-Authenticate` challenge (see [`Refusal::response`]).
    pub www_authenticate: Option<&'static str>,
}

impl HttpResponse {
    /// A response with `status` and a `text/plain` (UTF-8) body.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse::new(status, TEXT_PLAIN, body)
    }

    /// A response with `status`, `content_type` and `body`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type,
            body: body.into(),
            www_authenticate: None,
        }
    }
}

/// What the handler sees of a GET or HEAD request.
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    /// The request target's path, without any `?query` or `#fragment`.
    pub path: &'a str,
    /// The client's address (for logs).
    pub peer: SocketAddr,
    /// What its `Authorization` header offers.
    pub credentials: Credentials<'a>,
}

/// Answers a GET (or HEAD) request.
pub type Handler = Arc<dyn Fn(&AdminRequest<'_>) -> HttpResponse + Send + Sync>;

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
/// The same, checked at compile time.
const TEXT_PLAIN_VALUE: HeaderValue = HeaderValue::from_static(TEXT_PLAIN);
/// The reason phrase of a status that has none of its own.
const NO_REASON: ReasonPhrase = ReasonPhrase::from_static(b"");

/// Bounds on what one connection may cost. A struct rather than constants so tests can shorten
/// the timeouts instead of sleeping for seconds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Largest request head (request line, headers and the blank line ending them), given to
    /// hyper as `max_header_size`: a head over it gets 431 and the connection is closed.
    head_bytes: usize,
    /// Total time a client gets to send its whole head, from the moment its connection is
    /// served; given to hyper as `header_read_timeout`, which closes the connection without a
    /// response when it passes. Bounds silent and slow-loris clients alike.
    head_timeout: Duration,
    /// Time for writing the response to a client that does not read it (hyper has no such bound).
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

    /// hyper's HTTP/1 connection settings for these limits.
    fn http1(&self) -> http1::Builder {
        let mut http = http1::Builder::new();
        http.keep_alive(false)
            .max_header_size(self.head_bytes)
            .header_read_timeout(self.head_timeout)
            // hyper's header timeout needs a timer to run on.
            .timer(TokioTimer::new())
            // A client that shuts down its sending side after the request (`printf ... | nc -N`)
            // still gets the whole response; the connection is closed after it either way.
            .half_close(true)
            // `Content-Type`, as the hand-written server wrote it and as curl users read it.
            .title_case_headers(true);
        http
    }
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
        let (stream, peer) = loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => break accepted,
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
            peer,
            Arc::clone(&handler),
            limits,
            permit,
        ));
    }
}

/// Serves the one request of a connection, then closes it. The permit moves in here so that the
/// slot frees only when the connection is done, lingering included.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    // The handler is synchronous and fast, so the response is ready as soon as the head is read.
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&request, peer, &handler)))
    });
    let mut connection = limits
        .http1()
        .serve_connection(TokioIo::new(stream), service);
    // `poll_without_shutdown` rather than awaiting the connection: the socket comes back after the
    // response, for the lingering close. The outer timeout bounds the write of the response;
    // hyper's header timeout has bounded the head already.
    let served = tokio::time::timeout(
        limits.head_timeout + limits.write_timeout,
        poll_fn(|cx| connection.poll_without_shutdown(cx)),
    )
    .await;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(err)) if err.is_timeout() => {
            tracing::debug!("admin endpoint: request head not received in time; dropped");
            return;
        }
        // A bad head (hyper has answered 400 or 431), or a client gone mid-request.
        Ok(Err(err)) => tracing::debug!(error = %err, "admin endpoint: request failed"),
        Err(_elapsed) => {
            tracing::debug!("admin endpoint: client did not read the response");
            return;
        }
    }
    // The response is flushed; shutting down our side (FIN, which does not wait for the client)
    // tells the client it is complete.
    let mut stream = connection.into_parts().io.into_inner();
    match stream.shutdown().await {
        Ok(()) => linger(&mut stream, limits.linger).await,
        Err(err) => tracing::debug!(error = %err, "admin endpoint: closing failed"),
    }
}

/// After the response, keeps reading (and discarding) for a short while until the client closes.
/// Closing a socket with unread input makes the kernel send a reset, which can destroy the
/// response before the client has read it: exactly the case for a 431 or for a POST with a body.
/// hyper closes at once, so this stays ours.
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

/// Decides the response to a request whose head hyper has parsed.
fn respond(request: &Request<Incoming>, peer: SocketAddr, handler: &Handler) -> Response<String> {
    // hyper itself leaves out the body of a response to HEAD and keeps its Content-Length.
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = http_response(HttpResponse::text(405, "method not allowed\n"));
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let Some(path) = request_path(request.uri()) else {
        return http_response(HttpResponse::text(400, "bad request\n"));
    };
    // A panicking handler must cost one 500, not the connection task (or, were the runtime ever
    // configured to abort on task panics, the whole admin thread).
    let request = AdminRequest {
        path,
        peer,
        credentials: bearer::credentials(request.headers()),
    };
    let response = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&request))) {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(path, "admin endpoint: handler panicked");
            HttpResponse::text(500, "internal server error\n")
        }
    };
    http_response(response)
}

/// The path of a request target hyper has parsed: origin form (`/metrics?x`) or absolute form
/// with an `http` or `https` scheme (`http://host/metrics`); hyper has dropped any fragment.
/// `None` for anything else (`*`, authority form, other schemes).
fn request_path(uri: &Uri) -> Option<&str> {
    let web =
        |scheme: &str| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if !uri.scheme_str().is_none_or(web) {
        return None;
    }
    let path = uri.path();
    if path.starts_with('/') {
        Some(path)
    } else if path.is_empty() && uri.scheme().is_some() {
        // `http://host` and `http://host?x` name the root.
        Some("/")
    } else {
        None
    }
}

/// The handler's response as hyper sends it. Content-Type and Content-Length are set here, in
/// that order, ahead of hyper's own `Connection: close` and `Date`.
fn http_response(response: HttpResponse) -> Response<String> {
    let challenge = response
        .www_authenticate
        .and_then(|c| HeaderValue::from_str(c).ok());
    let (status, content_type, body) = match StatusCode::from_u16(response.status) {
        Ok(status) => (
            status,
            // A line break (or another control character) in the content type would let it
            // forge headers; hyper refuses such a value, and the response goes out as text.
            HeaderValue::from_str(response.content_type).unwrap_or(TEXT_PLAIN_VALUE),
            response.body,
        ),
        // A status outside three digits cannot be put on a status line; the handler is at fault,
        // and a 500 says so without sending the client something unparseable.
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN_VALUE,
            "handler returned an invalid status\n".to_owned(),
        ),
    };
    let mut out = Response::new(String::new());
    *out.status_mut() = status;
    if status.canonical_reason().is_none() {
        // An empty reason phrase, which HTTP/1.1 allows, rather than hyper's `<none>`.
        out.extensions_mut().insert(NO_REASON);
    }
    let headers = out.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(challenge) = challenge {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    *out.body_mut() = body;
    out
}

#[cfg(test)]
mod tests;
