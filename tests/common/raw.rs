//! A tiny raw RESP client for exact-byte checks: requests as given (or encoded by strata's own
//! request encoder), replies decoded by strata's own node reply decoder into [`Resp`] (and
//! encoded back, for fake servers, by strata's reply encoder).

use super::*;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;
use strata::protocol::resp3_reply::frame_len;
use strata::protocol::{decode_reply, NodeReply, Reply};

/// A parsed RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Resp {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    Nil,
    /// `*-1`
    NilArray,
    Array(Vec<Resp>),
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Status(s) => write!(f, "+{s}"),
            Resp::Error(s) => write!(f, "-{s}"),
            Resp::Int(n) => write!(f, ":{n}"),
            Resp::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Resp::Nil => write!(f, "$-1"),
            Resp::NilArray => write!(f, "*-1"),
            Resp::Array(items) => f.debug_list().entries(items).finish(),
        }
    }
}

impl Resp {
    pub fn ok() -> Resp {
        Resp::Status("OK".into())
    }

    pub fn status(s: &str) -> Resp {
        Resp::Status(s.into())
    }

    pub fn err(s: &str) -> Resp {
        Resp::Error(s.into())
    }

    pub fn bulk(s: impl AsRef<[u8]>) -> Resp {
        Resp::Bulk(s.as_ref().to_vec())
    }

    /// An array of bulk strings.
    pub fn bulks<S: AsRef<[u8]>>(items: &[S]) -> Resp {
        Resp::Array(items.iter().map(Resp::bulk).collect())
    }

    /// The text of a bulk or status reply (panics otherwise).
    pub fn text(&self) -> String {
        match self {
            Resp::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Resp::Status(s) => s.clone(),
            other => panic!("expected a bulk or status reply, got {other:?}"),
        }
    }

    /// The text of an error reply (panics otherwise).
    pub fn error_text(&self) -> String {
        match self {
            Resp::Error(e) => e.clone(),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(items) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Resp::Error(_))
    }

    /// The RESP2 encoding, by strata's own reply encoder.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = BytesMut::new();
        self.to_reply().encode(&mut buf);
        out.extend_from_slice(&buf);
    }

    fn to_reply(&self) -> Reply {
        match self {
            Resp::Status(s) => Reply::Status(Bytes::from(s.clone())),
            Resp::Error(e) => Reply::Error(Bytes::from(e.clone())),
            Resp::Int(n) => Reply::Integer(*n),
            Resp::Bulk(b) => Reply::Bulk(Bytes::from(b.clone())),
            Resp::Nil => Reply::Nil,
            Resp::NilArray => Reply::NilArray,
            Resp::Array(items) => Reply::Array(items.iter().map(Resp::to_reply).collect()),
        }
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn encode_cmd<S: AsRef<[u8]>>(args: &[S]) -> Vec<u8> {
    strata::protocol::reply::command_bytes(args.iter().map(AsRef::as_ref)).to_vec()
}

/// A blocking RESP client over one TCP connection, with read timeouts.
pub struct RawClient {
    stream: Conn,
    buf: BytesMut,
}

/// The connection under a [`RawClient`]: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        RawClient::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: &str) -> std::io::Result<RawClient> {
        Ok(RawClient {
            stream: Conn::Plain(tcp_connect(addr)?),
            buf: BytesMut::new(),
        })
    }

    /// A client over TLS with `config`, checking the server's certificate is valid for
    /// `localhost`. The handshake completes before this returns.
    pub fn try_connect_tls(
        addr: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> std::io::Result<RawClient> {
        let tcp = tcp_connect(addr)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(RawClient {
            stream: Conn::Tls(Box::new(stream)),
            buf: BytesMut::new(),
        })
    }

    pub fn connect_tls(addr: &str, config: std::sync::Arc<rustls::ClientConfig>) -> RawClient {
        RawClient::try_connect_tls(addr, config)
            .unwrap_or_else(|e| panic!("TLS connect to {addr}: {e}"))
    }

    /// The certificate the server presented (TLS clients).
    pub fn peer_certificate(&self) -> Vec<u8> {
        match &self.stream {
            Conn::Tls(s) => s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .expect("a peer certificate"),
            Conn::Plain(_) => panic!("not a TLS client"),
        }
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.tcp().set_read_timeout(Some(timeout)).unwrap();
    }

    /// A second handle on the socket (for a writer thread; plain clients).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.tcp().try_clone().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
        self.stream.flush().expect("flush to server");
    }

    /// Sends a command as a multibulk request.
    pub fn send_cmd<S: AsRef<[u8]>>(&mut self, args: &[S]) {
        let bytes = encode_cmd(args);
        self.send(&bytes);
    }

    /// Sends a command and reads its reply.
    pub fn call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Resp {
        self.send_cmd(args);
        self.read_reply()
    }

    /// Like [`RawClient::call`], `None` on any I/O or protocol failure.
    pub fn try_call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Option<Resp> {
        let bytes = encode_cmd(args);
        self.stream.write_all(&bytes).ok()?;
        self.stream.flush().ok()?;
        self.try_read_reply().ok()
    }

    /// Reads one reply; panics on timeout, close or malformed data.
    pub fn read_reply(&mut self) -> Resp {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    pub fn try_read_reply(&mut self) -> Result<Resp, String> {
        loop {
            match decode_reply(&mut self.buf) {
                Ok(Some(reply)) => return Ok(Resp::from_reply(&reply)),
                Ok(None) => self.fill()?,
                Err(e) => {
                    return Err(format!(
                        "{e} in {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
            }
        }
    }

    /// Reads the raw bytes of one reply, RESP2 or RESP3 (an attribute frame and the reply it
    /// annotates count as one), without interpreting them.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match frame_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.split_to(n).to_vec()),
                Ok(None) => self.fill()?,
                Err(e) => {
                    return Err(format!(
                        "{e} in {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
            }
        }
    }

    /// Like [`RawClient::read_frame`], without waiting: the bytes of one reply that has already
    /// arrived (buffered, or waiting in the socket), `Ok(None)` when none has. What a client
    /// library does before it serves a value from its own cache: take the invalidations the
    /// server has sent so far.
    pub fn read_frame_now(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match frame_len(&self.buf) {
                Ok(Some(n)) => return Ok(Some(self.buf.split_to(n).to_vec())),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            let tcp = self.stream.tcp();
            tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
            let read = self.stream.read(&mut chunk);
            self.stream
                .tcp()
                .set_nonblocking(false)
                .map_err(|e| e.to_string())?;
            match read {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // Nothing more has arrived (a part of a frame stays buffered).
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Like [`RawClient::send_cmd`], false when the write fails.
    pub fn try_send_cmd<S: AsRef<[u8]>>(&mut self, args: &[S]) -> bool {
        let bytes = encode_cmd(args);
        self.stream.write_all(&bytes).is_ok() && self.stream.flush().is_ok()
    }

    /// Takes the bytes read but not yet consumed by a reply (normally none).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.buf.split().to_vec()
    }

    /// Reads exactly `n` bytes (buffered ones first).
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill()
                .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
        }
        self.buf.split_to(n).to_vec()
    }

    /// Asserts the server closes the connection (EOF or reset) within the read timeout, without
    /// sending anything more.
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let end = Instant::now() + READ_TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the connection to close, got {:?}",
                    String::from_utf8_lossy(&chunk[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("connection still open after {READ_TIMEOUT:?}: {e}"),
            }
            assert!(Instant::now() < end, "connection still open");
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no reply within the read timeout ({e})"))
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

/// Parses one reply at the start of `buf`: `Ok(None)` when incomplete, else the reply and the
/// bytes it used.
pub fn parse_resp(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let mut rest = BytesMut::from(buf);
    let reply = decode_reply(&mut rest).map_err(|e| e.to_string())?;
    Ok(reply.map(|reply| (Resp::from_reply(&reply), buf.len() - rest.len())))
}

impl Resp {
    /// A reply as strata's decoder gave it.
    pub fn from_reply(reply: &NodeReply) -> Resp {
        Resp::from_frame(&reply.frame, &reply.raw)
    }

    /// `frame`, decoded from `raw`. The decoder's frame has one null for `$-1` and `*-1`; the
    /// raw bytes tell them apart, at any depth (each element's bytes are found with strata's
    /// own frame length).
    fn from_frame(frame: &BytesFrame, raw: &[u8]) -> Resp {
        match frame {
            BytesFrame::SimpleString(s) => Resp::Status(String::from_utf8_lossy(s).into_owned()),
            BytesFrame::Error(e) => Resp::Error(e.to_string()),
            BytesFrame::Integer(n) => Resp::Int(*n),
            BytesFrame::BulkString(b) => Resp::Bulk(b.to_vec()),
            BytesFrame::Null if raw.starts_with(b"*") => Resp::NilArray,
            BytesFrame::Null => Resp::Nil,
            BytesFrame::Array(items) => {
                let mut pos = raw.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
                let items = items
                    .iter()
                    .map(|item| {
                        let len = frame_len(&raw[pos..]).unwrap().unwrap();
                        let resp = Resp::from_frame(item, &raw[pos..pos + len]);
                        pos += len;
                        resp
                    })
                    .collect();
                Resp::Array(items)
            }
        }
    }
}

/// A TCP connection with the tests' timeouts and no Nagle delay.
fn tcp_connect(addr: &str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
