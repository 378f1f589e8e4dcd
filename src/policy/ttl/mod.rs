//! Per-layer TTL rules for writes: decides how one request must be rewritten (default TTL
//! added, explicit TTL clamped to the layer's maximum), which `PEXPIRE key ms NX` commands must
//! follow it, or whether it must be refused, so that every key follows its layer's TTL policy.
//!
//! Everything here is a pure function of the request, the layers' limits and the clock: the
//! caller sends what [`apply`] returns. Whenever a request is malformed the plan is empty, so
//! that Redis, not strata, replies with its usual error.

use std::time::Duration;

use bytes::Bytes;

mod creating;

use creating::{created_keys, creating_rule, followers_plan};

/// The TTL policy of the layer a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlLimits<'a> {
    /// Layer name, for error texts.
    pub layer: &'a str,
    /// Default TTL in ms for keys written without one (None: no default).
    pub ttl_ms: Option<u64>,
    /// Largest TTL in ms a key of the layer may have (None: no limit).
    pub max_ttl_ms: Option<u64>,
}

impl TtlLimits<'_> {
    /// The TTL a key created without one gets: ttl_ms, capped by max_ttl_ms; max_ttl_ms alone
    /// when there is no ttl_ms (a key may not live forever in a layer with a maximum).
    ///
    /// A value of 0 counts as "no rule", as in the configuration: Redis refuses a TTL of 0.
    pub fn default_ms(&self) -> Option<u64> {
        match (self.ttl(), self.max()) {
            (Some(ttl), Some(max)) => Some(ttl.min(max)),
            (Some(ttl), None) => Some(ttl),
            (None, max) => max,
        }
    }

    /// True when the layer has any TTL rule at all (ttl or max_ttl).
    pub fn is_active(&self) -> bool {
        self.ttl().is_some() || self.max().is_some()
    }

    fn ttl(&self) -> Option<u64> {
        self.ttl_ms.filter(|&ms| ms > 0)
    }

    fn max(&self) -> Option<u64> {
        self.max_ttl_ms.filter(|&ms| ms > 0)
    }
}

/// How a write must be sent so that its keys follow their layers' TTL policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TtlPlan {
    /// Replacement arguments (command name first), or None to send the request unchanged.
    pub args: Option<Vec<Bytes>>,
    /// Arguments to add at the end of the request (SET's `PX <ttl>`). Cheaper than a
    /// replacement on the hot path: the request's own bytes are kept and only extended.
    pub append: Vec<Bytes>,
    /// Commands to send right after the request, to the same node, in the same pipeline
    /// (each a full argument list, e.g. [PEXPIRE, key, ms, NX]).
    pub followers: Vec<Vec<Bytes>>,
    /// TTLs strata added or clamped by rewriting `args` (not counting followers).
    pub rewrites: u32,
}

/// True when `name` (lower-case command name) is a command these rules may change at all.
/// Cheap: callers use it to skip everything else on the hot path.
pub fn has_rule(name: &str) -> bool {
    matches!(
        name,
        "set"
            | "setex"
            | "psetex"
            | "getex"
            | "expire"
            | "pexpire"
            | "expireat"
            | "pexpireat"
            | "persist"
            | "restore"
    ) || creating_rule(name).is_some()
}

/// Applies the TTL rules to one request. `name` is the lower-case command name; `args` is the
/// whole request as the client sent it (args[0] is the command name in any case). `limits`
/// gives the policy of the layer of a key. `now_ms` is the current Unix time in milliseconds
/// (to compare absolute expiry times EXAT/PXAT/EXPIREAT/PEXPIREAT/RESTORE ABSTTL with max_ttl).
/// Err(text): refuse the request with this error reply text.
pub fn apply<'a>(
    name: &str,
    args: &[Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
    now_ms: u64,
) -> Result<TtlPlan, String> {
    match name {
        "set" => set(args, limits, now_ms),
        "setex" => Ok(setex(args, limits, Expiry::Ex, now_ms)),
        "psetex" => Ok(setex(args, limits, Expiry::Px, now_ms)),
        "getex" => getex(args, limits, now_ms),
        "expire" => Ok(expire(args, limits, Expiry::Ex, now_ms)),
        "pexpire" => Ok(expire(args, limits, Expiry::Px, now_ms)),
        "expireat" => Ok(expire(args, limits, Expiry::ExAt, now_ms)),
        "pexpireat" => Ok(expire(args, limits, Expiry::PxAt, now_ms)),
        "persist" => persist(args, limits),
        "restore" => Ok(restore(args, limits, now_ms)),
        _ => Ok(match creating_rule(name) {
            Some(rule) => followers_plan(&created_keys(rule, args), limits),
            None => TtlPlan::default(),
        }),
    }
}

/// The error reply for an option that would let a key outlive its layer's max_ttl.
fn refusal(option: &str, layer: &str, max_ms: u64) -> String {
    format!(
        "ERR strata: {option} is not allowed in layer '{layer}': its keys must expire within \
         max_ttl {}",
        humantime::format_duration(Duration::from_millis(max_ms))
    )
}

/// `PEXPIRE key ms NX`: NX only sets a TTL on a key that has none, so it gives a new key the
/// layer's TTL without extending or shortening the TTL an existing key already has.
fn pexpire_nx(key: &Bytes, ms: u64) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"PEXPIRE"),
        key.clone(),
        Bytes::from(ms.to_string()),
        Bytes::from_static(b"NX"),
    ]
}

fn rewritten(args: Vec<Bytes>) -> TtlPlan {
    TtlPlan {
        args: Some(args),
        rewrites: 1,
        ..TtlPlan::default()
    }
}

/// True when the rules need the current time for this request: only absolute expiry times
/// (EXAT, PXAT, EXPIREAT, PEXPIREAT, RESTORE ... ABSTTL) are compared with the clock, so
/// callers can skip reading it for everything else.
pub fn needs_clock(name: &str, args: &[Bytes]) -> bool {
    match name {
        "expireat" | "pexpireat" | "restore" => true,
        "set" | "getex" => args.iter().skip(2).any(|a| is(a, "exat") || is(a, "pxat")),
        _ => false,
    }
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Parses an integer the way Redis does (string2ll): optional '-', no '+', no spaces, no
/// leading zeros, within i64. Anything Redis would refuse gives None, so the request is left
/// for Redis to refuse.
fn parse_i64(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text == "0" {
        return Some(0);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut bytes = digits.bytes();
    let first = bytes.next()?;
    if !(b'1'..=b'9').contains(&first) || !bytes.all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The checks above leave only what `str::parse` reads the same way; it handles the range.
    text.parse().ok()
}

/// How an expiry value is expressed: relative or absolute, in seconds or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Relative, seconds (EX, EXPIRE, SETEX).
    Ex,
    /// Relative, milliseconds (PX, PEXPIRE, PSETEX).
    Px,
    /// Absolute Unix time, seconds (EXAT, EXPIREAT).
    ExAt,
    /// Absolute Unix time, milliseconds (PXAT, PEXPIREAT).
    PxAt,
}

impl Expiry {
    /// The remaining life in ms that `value` gives a key, or None when Redis itself refuses the
    /// value (not positive, or overflowing once converted to an absolute time in ms), or
    /// deletes the key instead: those requests are left alone. May be ≤ 0 for an absolute time
    /// in the past. i128 so that `value - now` can never overflow.
    fn remaining_ms(self, value: i64, now_ms: u64) -> Option<i128> {
        if value <= 0 {
            return None;
        }
        let now = i64::try_from(now_ms).ok()?;
        match self {
            Expiry::Ex | Expiry::Px => {
                let ms = if self == Expiry::Ex {
                    value.checked_mul(1000)?
                } else {
                    value
                };
                // Redis adds the clock and refuses the request when that overflows.
                ms.checked_add(now)?;
                Some(i128::from(ms))
            }
            Expiry::ExAt => Some(i128::from(value.checked_mul(1000)?) - i128::from(now)),
            Expiry::PxAt => Some(i128::from(value) - i128::from(now)),
        }
    }

    /// True when `value` (unparsed) would let the key live longer than `max_ms`.
    fn exceeds(self, value: Option<&Bytes>, max_ms: u64, now_ms: u64) -> bool {
        value
            .and_then(|v| parse_i64(v))
            .and_then(|v| self.remaining_ms(v, now_ms))
            .is_some_and(|remaining| remaining > i128::from(max_ms))
    }
}

/// The options of SET (from args[3]) or GETEX (from args[2]), as Redis reads them.
#[derive(Debug, Default)]
struct ExtOptions {
    /// The expiry kind given, if any.
    expiry: Option<Expiry>,
    /// Positions of every option word of that kind: Redis accepts the same option repeated
    /// and the last one wins, so all must be replaced together (or a client could slip a long
    /// TTL past the clamp behind a short one). Increasing, so searchable.
    expiry_at: Vec<usize>,
    keepttl: bool,
    persist: bool,
}

/// Reads SET (`is_set`) or GETEX options like Redis does, with the same conflicts; None when
/// Redis would reply a syntax error.
fn parse_ext_options(args: &[Bytes], is_set: bool) -> Option<ExtOptions> {
    let mut opts = ExtOptions::default();
    let (mut nx, mut xx) = (false, false);
    let mut at = if is_set { 3 } else { 2 };
    while let Some(word) = args.get(at) {
        let has_value = args.get(at + 1).is_some();
        let expiry = if is(word, "ex") {
            Some(Expiry::Ex)
        } else if is(word, "px") {
            Some(Expiry::Px)
        } else if is(word, "exat") {
            Some(Expiry::ExAt)
        } else if is(word, "pxat") {
            Some(Expiry::PxAt)
        } else {
            None
        };
        if let Some(kind) = expiry {
            let compatible = opts.expiry.is_none_or(|given| given == kind);
            if !compatible || opts.keepttl || opts.persist || !has_value {
                return None;
            }
            opts.expiry = Some(kind);
            opts.expiry_at.push(at);
            at += 2;
            continue;
        }
        if is_set && is(word, "nx") && !xx {
            nx = true;
        } else if is_set && is(word, "xx") && !nx {
            xx = true;
        } else if is_set && is(word, "get") {
        } else if is_set && is(word, "keepttl") && opts.expiry.is_none() {
            opts.keepttl = true;
        } else if !is_set && is(word, "persist") && opts.expiry.is_none() {
            opts.persist = true;
        } else {
            return None;
        }
        at += 1;
    }
    Some(opts)
}

/// Replaces every occurrence of the expiry option by one `PX <max>` where the last (effective)
/// one was, keeping all other arguments in order; empty plan when the effective TTL is within
/// `max_ms` or is one Redis refuses.
fn clamp_ext(args: &[Bytes], opts: &ExtOptions, max_ms: Option<u64>, now_ms: u64) -> TtlPlan {
    let (Some(kind), Some(&last), Some(max)) = (opts.expiry, opts.expiry_at.last(), max_ms) else {
        return TtlPlan::default();
    };
    if !kind.exceeds(args.get(last + 1), max, now_ms) {
        return TtlPlan::default();
    }
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for (i, arg) in args.iter().enumerate() {
        if skip_value {
            skip_value = false;
        } else if opts.expiry_at.binary_search(&i).is_ok() {
            skip_value = true;
            if i == last {
                out.push(Bytes::from_static(b"PX"));
                out.push(Bytes::from(max.to_string()));
            }
        } else {
            out.push(arg.clone());
        }
    }
    rewritten(out)
}

/// SET key value [NX|XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL]
fn set<'a>(
    args: &[Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
    now_ms: u64,
) -> Result<TtlPlan, String> {
    let (Some(key), Some(_value)) = (args.get(1), args.get(2)) else {
        return Ok(TtlPlan::default());
    };
    let layer = limits(key);
    if !layer.is_active() {
        return Ok(TtlPlan::default());
    }
    let Some(opts) = parse_ext_options(args, true) else {
        return Ok(TtlPlan::default());
    };
    if opts.keepttl {
        if let Some(max) = layer.max() {
            return Err(refusal("KEEPTTL", layer.layer, max));
        }
        // KEEPTTL keeps an existing key's TTL (possibly none, which the layer allows without
        // a max); only a key this SET creates needs the default, hence a follower with NX.
        return Ok(match layer.default_ms() {
            Some(default) => TtlPlan {
                followers: vec![pexpire_nx(key, default)],
                ..TtlPlan::default()
            },
            None => TtlPlan::default(),
        });
    }
    if opts.expiry.is_some() {
        return Ok(clamp_ext(args, &opts, layer.max(), now_ms));
    }
    // No expiry: SET would leave the key without a TTL (it even clears an existing one).
    Ok(match layer.default_ms() {
        Some(default) => TtlPlan {
            append: vec![Bytes::from_static(b"PX"), Bytes::from(default.to_string())],
            rewrites: 1,
            ..TtlPlan::default()
        },
        None => TtlPlan::default(),
    })
}

/// SETEX key seconds value / PSETEX key ms value.
fn setex<'a>(
    args: &[Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
    kind: Expiry,
    now_ms: u64,
) -> TtlPlan {
    let [_, key, ttl, value] = args else {
        return TtlPlan::default();
    };
    let Some(max) = limits(key).max() else {
        return TtlPlan::default();
    };
    if !kind.exceeds(Some(ttl), max, now_ms) {
        return TtlPlan::default();
    }
    rewritten(vec![
        Bytes::from_static(b"PSETEX"),
        key.clone(),
        Bytes::from(max.to_string()),
        value.clone(),
    ])
}

/// GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]
fn getex<'a>(
    args: &[Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
    now_ms: u64,
) -> Result<TtlPlan, String> {
    let Some(key) = args.get(1) else {
        return Ok(TtlPlan::default());
    };
    let layer = limits(key);
    let Some(max) = layer.max() else {
        // GETEX never creates a key, so without a maximum there is nothing to enforce.
        return Ok(TtlPlan::default());
    };
    let Some(opts) = parse_ext_options(args, false) else {
        return Ok(TtlPlan::default());
    };
    if opts.persist {
        return Err(refusal("PERSIST", layer.layer, max));
    }
    Ok(clamp_ext(args, &opts, Some(max), now_ms))
}

/// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT key value [NX|XX|GT|LT ...]
fn expire<'a>(
    args: &[Bytes],
    limits: &dyn Fn(&[u8]) -> TtlLimits<'a>,
    kind: Expiry,
    now_ms: u64,
) -> TtlPlan {
    let (Some(key), Some(value), Some(flags)) = (args.get(1), args.get(2), args.get(3..)) else {
        return TtlPlan::default();
    };
    // Same flag checks as Redis, so that a request it refuses is not turned into one it takes.
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for flag in flags {
        if is(flag, "nx") {
            nx = true;
        } else if is(flag, "xx") {
            xx = true;
        } else if is(flag, "gt") {
            gt = true;
        } else if is(flag, "lt") {
            lt = true;
        } else {
            return TtlPlan::default();
        }
    }
    if (nx && (xx || gt || lt)) || (gt && lt) {
        return TtlPlan::default();
    }
    let Some(max) = limits(key).max() else {
        return TtlPlan::default();
    };
    if !kind.exceeds(Some(value), max, now_ms) {
        return TtlPlan::default();
    }
    let mut out = Vec::with_capacity(args.len());
    out.push(Bytes::from_static(b"PEXPIRE"));
    out.push(key.clone());
    out.push(Bytes::from(max.to_string()));
    out.extend(flags.iter().cloned());
    rewritten(out)
}

/// PERSIST key
fn persist<'a>(args: &[Bytes], limits: &dyn Fn(&[u8]) -> TtlLimits<'a>) -> Result<TtlPlan, String> {
    let [_, key] = args else {
        return Ok(TtlPlan::default());
    };
    let layer = limits(key);
    match layer.max() {
        Some(max) => Err(refusal("PERSIST", layer.layer, max)),
        None => Ok(TtlPlan::default()),
    }
}

/// RESTORE key ttl serialized [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]
fn restore<'a>(args: &[Bytes], limits: &dyn Fn(&[u8]) -> TtlLimits<'a>, now_ms: u64) -> TtlPlan {
    let (Some(key), Some(ttl), Some(_payload)) = (args.get(1), args.get(2), args.get(3)) else {
        return TtlPlan::default();
    };
    let Some(ttl) = parse_i64(ttl).filter(|&ttl| ttl >= 0) else {
        return TtlPlan::default();
    };
    // Options as Redis reads them; positions of ABSTTL words, which must go when the TTL is
    // replaced by a relative one.
    let mut absttl_at = Vec::new();
    let (mut idletime, mut freq) = (false, false);
    let mut at = 4;
    while let Some(word) = args.get(at) {
        let value = args.get(at + 1).and_then(|v| parse_i64(v));
        if is(word, "replace") {
        } else if is(word, "absttl") {
            absttl_at.push(at);
        } else if is(word, "idletime") && !freq && value.is_some_and(|v| v >= 0) {
            idletime = true;
            at += 1;
        } else if is(word, "freq") && !idletime && value.is_some_and(|v| (0..=255).contains(&v)) {
            freq = true;
            at += 1;
        } else {
            return TtlPlan::default();
        }
        at += 1;
    }
    let layer = limits(key);
    let new_ttl = if ttl == 0 {
        // 0: the key would live forever.
        layer.default_ms()
    } else {
        let kind = if absttl_at.is_empty() {
            Expiry::Px
        } else {
            Expiry::PxAt
        };
        // An ABSTTL in the past is left alone: Redis then does not create the key at all.
        let remaining = kind.remaining_ms(ttl, now_ms);
        layer
            .max()
            .filter(|&max| remaining.is_some_and(|r| r > i128::from(max)))
    };
    let Some(new_ttl) = new_ttl else {
        return TtlPlan::default();
    };
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        if i == 2 {
            out.push(Bytes::from(new_ttl.to_string()));
        } else if absttl_at.binary_search(&i).is_err() {
            out.push(arg.clone());
        }
    }
    rewritten(out)
}

#[cfg(test)]
mod tests;
