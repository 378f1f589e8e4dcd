//! A tiny raw RESP client for exact-byte checks: requests encoded by hand, replies parsed
//! into [`Resp`].

use super::*;

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

    /// The RESP2 encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Resp::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Resp::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Resp::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Resp::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Resp::Nil => out.extend_from_slice(b"$-1\r\n"),
            Resp::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Resp::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn encode_cmd<S: AsRef<[u8]>>(args: &[S]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A blocking RESP client over one TCP connection, with read timeouts.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        RawClient::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: &str) -> std::io::Result<RawClient> {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// A second handle on the socket (for a writer thread).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
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
        self.try_read_reply().ok()
    }

    /// Reads one reply; panics on timeout, close or malformed data.
    pub fn read_reply(&mut self) -> Resp {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    pub fn try_read_reply(&mut self) -> Result<Resp, String> {
        loop {
            match parse_resp(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
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
            match resp3::reply_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
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

    /// Takes the bytes read but not yet consumed by a reply (normally none).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads exactly `n` bytes (buffered ones first).
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill()
                .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
        }
        self.buf.drain(..n).collect()
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
    let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..nl]).map_err(|e| format!("bad line: {e}"))?;
    let after = nl + 2;
    let number = || -> Result<i64, String> {
        line.parse::<i64>()
            .map_err(|_| format!("bad number {line:?}"))
    };
    match buf.first() {
        Some(b'+') => Ok(Some((Resp::Status(line.to_string()), after))),
        Some(b'-') => Ok(Some((Resp::Error(line.to_string()), after))),
        Some(b':') => Ok(Some((Resp::Int(number()?), after))),
        Some(b'$') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Nil, after)));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err("bulk not followed by CRLF".into());
            }
            Ok(Some((
                Resp::Bulk(buf[after..after + n].to_vec()),
                after + n + 2,
            )))
        }
        Some(b'*') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::NilArray, after)));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = after;
            for _ in 0..n {
                match parse_resp(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), pos)))
        }
        Some(&c) => Err(format!("unexpected reply type byte {:?}", c as char)),
        None => Ok(None),
    }
}
