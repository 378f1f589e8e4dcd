//! Unit tests of `warm`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use std::io::{Read, Write};
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
    let file =
        TempFile::new(b"{\"key\": \"a\", \"value\": \"b\"}\n{\"key\": \"c\", \"value\": \"d\"}\n");
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
    let mut buf = BytesMut::new();
    encode_warm(
        &mut buf,
        &Entry {
            key: "route:abc".into(),
            value: "gpt-4".into(),
            ttl_ms: None,
        },
    );
    assert_eq!(
        &buf[..],
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
        &buf[..],
        b"*5\r\n$6\r\nSTRATA\r\n$4\r\nWARM\r\n$1\r\nk\r\n$0\r\n\r\n$6\r\n300000\r\n"
    );
}
