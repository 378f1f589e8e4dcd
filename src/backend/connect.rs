//! Opening a connection to a node: TCP connect under `timeouts.connect`, no Nagle delay, and the
//! handshake that sets the protocol the connection speaks (`HELLO 3` for connections that serve
//! RESP3 clients, so the node's replies reach them unchanged). Multiplexed and dedicated
//! connections both open here.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ErrorKind, Failure};
use crate::protocol::{decode_reply_as, Proto};

/// `HELLO 3`, as sent to a node.
const HELLO_3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

/// Connects to `addr` and prepares the connection to speak `proto`. The failure's kind is
/// `refused` or `timed_out` for the connect, `timed_out`, `closed` or `protocol` for the
/// handshake; its text is the reason shown in logs and INFO.
pub async fn open(addr: &str, proto: Proto, timeout: Duration) -> Result<TcpStream, Failure> {
    let timed_out = || {
        Failure::new(
            ErrorKind::TimedOut,
            format!(
                "connect timed out after {}",
                humantime::format_duration(timeout)
            ),
        )
    };
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(Failure::new(ErrorKind::of_connect(&e), e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    // Small requests must leave at once; batching is done by the writers.
    let _ = stream.set_nodelay(true);
    if proto == Proto::Resp3 {
        tokio::time::timeout(timeout, hello_3(&mut stream))
            .await
            .map_err(|_| timed_out())??;
    }
    Ok(stream)
}

/// Switches the connection to RESP3 and checks the node agreed.
async fn hello_3(stream: &mut TcpStream) -> Result<(), Failure> {
    stream
        .write_all(HELLO_3)
        .await
        .map_err(|e| Failure::io("write", &e))?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        // The node answers HELLO 3 in RESP3 (a map), or with an error in RESP2 if it is older
        // than Redis 6; both parse as RESP3.
        if let Some(reply) = decode_reply_as(&mut buf, Proto::Resp3)? {
            if reply.is_error() {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!(
                        "node refused RESP3 (HELLO 3): {}",
                        String::from_utf8_lossy(
                            reply.raw.strip_suffix(b"\r\n").unwrap_or(&reply.raw)
                        )
                    ),
                ));
            }
            if !buf.is_empty() {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "unexpected bytes after the HELLO reply",
                ));
            }
            return Ok(());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Failure::io("read", &e))?;
        if n == 0 {
            return Err(Failure::closed_by_node());
        }
    }
}
