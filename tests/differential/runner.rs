//! The mechanics of the differential test: both connections, one step at a time, the
//! comparison under an allow-list rule, SCANs run to their end, strata's refusals, and the
//! report of every difference.

use std::time::Duration;

use crate::cases::Step;
use crate::common::resp3::{escape, Frame};
use crate::common::{RawClient, Resp};
use crate::{Allowed, Match, Rule, ALLOWED, REFUSED, REFUSED_SUBCOMMANDS};

/// Read timeout of both connections: a hung reply fails one step, not the test.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The two servers compared.
pub struct Sides {
    pub direct: String,
    pub strata: String,
}

impl Sides {
    /// Empties both: keys, scripts, functions.
    pub fn reset(&self) {
        for addr in [&self.direct, &self.strata] {
            let mut c = RawClient::connect(addr);
            for cmd in [
                &["FLUSHALL"][..],
                &["SCRIPT", "FLUSH"],
                &["FUNCTION", "FLUSH"],
            ] {
                assert_eq!(c.call(cmd), Resp::ok(), "{cmd:?} on {addr}");
            }
        }
    }

    /// A connection to each, in protocol `proto` (the HELLO reply is read, not compared).
    fn connect(&self, proto: u8) -> (RawClient, RawClient) {
        let open = |addr: &str| {
            let mut c = RawClient::connect(addr);
            c.set_read_timeout(REPLY_TIMEOUT);
            if proto == 3 {
                c.send_cmd(&["HELLO", "3"]);
                c.read_frame().unwrap();
            }
            c
        };
        (open(&self.direct), open(&self.strata))
    }
}

/// Runs the sequence on both sides and records every difference.
pub fn run(sides: &Sides, proto: u8, steps: &[Step], used: &mut [bool], report: &mut Report) {
    // RESP2 connections: the sequence's first step is `HELLO <proto>`, compared like the others.
    let (mut direct, mut strata) = sides.connect(2);
    for (index, step) in steps.iter().enumerate() {
        let text = step.text();
        let allowed = ALLOWED
            .iter()
            .position(|a| a.matches.applies_to(step))
            .map(|i| {
                used[i] = true;
                &ALLOWED[i]
            });
        let at = |reply: Option<(usize, usize)>| Place {
            proto,
            index,
            request: text.clone(),
            reply,
        };
        if let Some(Allowed {
            rule: Rule::ScanAsSet,
            ..
        }) = allowed
        {
            let (d, s) = (scan_all(&mut direct, step), scan_all(&mut strata, step));
            report.compared += 1;
            if d != s {
                let note = allowed.map(|a| format!("{}: {}", a.rule.describe(), a.why));
                report.differ(at(None), &d.show(), &s.show(), note.as_deref());
            }
            continue;
        }
        direct.send_cmd(&step.args);
        strata.send_cmd(&step.args);
        let mut broken = false;
        for n in 0..step.replies {
            let reply = (step.replies > 1).then_some((n + 1, step.replies));
            let (d, s) = (direct.read_frame(), strata.read_frame());
            report.compared += 1;
            match (&d, &s) {
                (Ok(d), Ok(s)) => {
                    if !same(allowed.map(|a| &a.rule), d, s) {
                        let note = allowed.map(|a| format!("{}: {}", a.rule.describe(), a.why));
                        report.differ(
                            at(reply),
                            &escape(d, 3000),
                            &escape(s, 3000),
                            note.as_deref(),
                        );
                    }
                }
                _ => {
                    let show = |r: &Result<Vec<u8>, String>| match r {
                        Ok(bytes) => escape(bytes, 3000),
                        Err(e) => format!("(no reply: {e})"),
                    };
                    report.differ(at(reply), &show(&d), &show(&s), None);
                    broken = true;
                    break;
                }
            }
        }
        let extra = (direct.take_buffered(), strata.take_buffered());
        if !extra.0.is_empty() || !extra.1.is_empty() {
            report.differ(
                at(None),
                &escape(&extra.0, 3000),
                &escape(&extra.1, 3000),
                Some("bytes received after the step's replies"),
            );
        }
        // QUIT closed both connections; a failed read left them out of step.
        if broken || step.command() == "quit" {
            (direct, strata) = sides.connect(proto);
        }
    }
}

/// Whether two raw replies are the same, under an allow-list rule if the step has one.
fn same(rule: Option<&Rule>, direct: &[u8], strata: &[u8]) -> bool {
    match rule {
        None => direct == strata,
        Some(Rule::StrataAnswers(expected)) => strata == expected.as_bytes(),
        Some(rule) => match (Frame::parse_all(direct), Frame::parse_all(strata)) {
            (Ok(d), Ok(s)) => rule.apply(&d) == rule.apply(&s),
            _ => false,
        },
    }
}

/// The outcome of a SCAN run to its end.
#[derive(PartialEq, Eq)]
enum Scanned {
    /// Every key returned, sorted.
    Keys(Vec<Vec<u8>>),
    /// A reply that is not a SCAN page (an error), raw.
    Reply(Vec<u8>),
    /// No reply.
    Failed(String),
}

impl Scanned {
    fn show(&self) -> String {
        match self {
            Scanned::Keys(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| escape(k, 100)).collect();
                format!("keys {}", keys.join(" "))
            }
            Scanned::Reply(bytes) => escape(bytes, 3000),
            Scanned::Failed(e) => format!("(no reply: {e})"),
        }
    }
}

/// Runs a SCAN request until its cursor comes back to 0.
fn scan_all(client: &mut RawClient, step: &Step) -> Scanned {
    let mut args = step.args.clone();
    let mut keys = Vec::new();
    for _ in 0..10_000 {
        client.send_cmd(&args);
        let bytes = match client.read_frame() {
            Ok(b) => b,
            Err(e) => return Scanned::Failed(e),
        };
        // A page is an array of the cursor (a bulk string) and an array of keys.
        let page = Frame::parse_all(&bytes).ok();
        let (cursor, found) = match page.as_ref().map(|f| (f, f.items())) {
            Some((
                Frame::Aggregate(b'*', _),
                Some([Frame::Blob(b'$', Some(cursor)), Frame::Aggregate(b'*', Some(found))]),
            )) => (cursor, found),
            _ => return Scanned::Reply(bytes),
        };
        for key in found {
            keys.push(key.text().map_or_else(|| key.to_bytes(), <[u8]>::to_vec));
        }
        if cursor.as_slice() == b"0" {
            keys.sort();
            return Scanned::Keys(keys);
        }
        args[1] = cursor.clone();
    }
    Scanned::Failed("the cursor never came back to 0".into())
}

/// Asks strata each refused command over a connection in protocol `proto`: the refusal error,
/// and the connection still serves afterwards.
pub fn refusals(strata: &str, proto: u8, report: &mut Report) {
    let mut c = RawClient::connect(strata);
    c.set_read_timeout(REPLY_TIMEOUT);
    if proto == 3 {
        c.send_cmd(&["HELLO", "3"]);
        c.read_frame().unwrap();
    }
    let expected: Vec<(String, String)> = REFUSED
        .iter()
        .map(|r| {
            let name = r.split(' ').next().unwrap().to_ascii_lowercase();
            (
                r.to_string(),
                format!("-ERR strata: '{name}' is not supported through the proxy\r\n"),
            )
        })
        .chain(
            REFUSED_SUBCOMMANDS
                .iter()
                .map(|(r, e)| (r.to_string(), e.to_string())),
        )
        .collect();
    for (index, (request, error)) in expected.iter().enumerate() {
        let args: Vec<&str> = request.split(' ').collect();
        c.send_cmd(&args);
        report.compared += 1;
        let place = Place {
            proto,
            index,
            request: format!("(refusal) {request}"),
            reply: None,
        };
        match c.read_frame() {
            Ok(bytes) if bytes.starts_with(error.as_bytes()) => {}
            Ok(bytes) => report.differ(
                place,
                &format!(
                    "(not sent; expected refusal {})",
                    escape(error.as_bytes(), 300)
                ),
                &escape(&bytes, 3000),
                Some("refused through the proxy"),
            ),
            Err(e) => {
                report.differ(
                    place,
                    &format!(
                        "(not sent; expected refusal {})",
                        escape(error.as_bytes(), 300)
                    ),
                    &format!("(no reply: {e})"),
                    Some("refused through the proxy"),
                );
                return;
            }
        }
    }
    c.send_cmd(&["ECHO", "still-open"]);
    let after = c.read_frame();
    if after.as_deref() != Ok(&b"$10\r\nstill-open\r\n"[..]) {
        report.problems.push(format!(
            "RESP{proto}: after the refusals the connection does not serve: {after:?}"
        ));
    }
}

impl Match {
    fn applies_to(&self, step: &Step) -> bool {
        match self {
            Match::Exact(text) => step.text() == *text,
            Match::Command(name) => step.command() == name.to_ascii_lowercase(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Match::Exact(text) => format!("`{text}`"),
            Match::Command(name) => format!("every {name}"),
        }
    }
}

impl Rule {
    /// The reply as the rule compares it.
    fn apply(&self, frame: &Frame) -> Frame {
        match self {
            Rule::MaskFields(fields) => frame.mask_fields(fields),
            Rule::MaskColumn(i) => frame.mask_column(*i),
            Rule::Unordered => frame.sorted(),
            Rule::ScanAsSet | Rule::StrataAnswers(_) => frame.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Rule::MaskFields(f) => format!("compared with fields {f:?} masked"),
            Rule::MaskColumn(i) => format!("compared with element {i} of each row masked"),
            Rule::Unordered => "compared in any order".into(),
            Rule::ScanAsSet => "full SCAN, keys as a set".into(),
            Rule::StrataAnswers(e) => format!("strata must answer {}", escape(e.as_bytes(), 300)),
        }
    }
}

/// Where a difference was seen.
struct Place {
    proto: u8,
    index: usize,
    request: String,
    /// (n, of) for requests with several replies.
    reply: Option<(usize, usize)>,
}

#[derive(Default)]
pub struct Report {
    differences: Vec<String>,
    per_proto: [usize; 2],
    /// Failures that are not reply differences (coverage, lists, connection).
    pub problems: Vec<String>,
    compared: usize,
}

impl Report {
    fn differ(&mut self, place: Place, direct: &str, strata: &str, note: Option<&str>) {
        let reply = place
            .reply
            .map(|(n, of)| format!(" (reply {n} of {of})"))
            .unwrap_or_default();
        let mut text = format!(
            "[RESP{}] step {}{reply}: {}\n    direct: {direct}\n    strata: {strata}",
            place.proto,
            place.index + 1,
            place.request
        );
        if let Some(note) = note {
            text.push_str(&format!("\n    ({note})"));
        }
        self.differences.push(text);
        self.per_proto[usize::from(place.proto == 3)] += 1;
    }

    /// Prints every difference and problem, then fails if there is any.
    pub fn finish(self, elapsed: Duration) {
        for d in &self.differences {
            eprintln!("{d}\n");
        }
        for p in &self.problems {
            eprintln!("PROBLEM: {p}");
        }
        eprintln!(
            "{} differences (RESP2: {}, RESP3: {}) in {} compared replies; {} other problems; {:.1} s",
            self.differences.len(),
            self.per_proto[0],
            self.per_proto[1],
            self.compared,
            self.problems.len(),
            elapsed.as_secs_f64()
        );
        assert!(
            self.differences.is_empty() && self.problems.is_empty(),
            "{} differences from Redis and {} other problems (listed above)",
            self.differences.len(),
            self.problems.len()
        );
    }
}
