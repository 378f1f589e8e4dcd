//! The ACL rules: `security` sections (users with passwords, command categories, key patterns
//! and layers, and `requirepass`) built from fuzzed structured input, validated
//! (`SecurityConfig::validate`), compiled (`acl::Acl::new`), then asked about fuzzed logins and
//! requests. Checked: no panic, no hang, and every answer equal to a model written here from
//! Redis's rules, which shares nothing with `src/acl/` but the command names:
//!
//! - `authenticate`: an enabled user and one of its passwords (the `default` user with none
//!   configured takes any); `auth_required` as Redis decides it;
//! - `check`: the category the command needs, then every key, channel or pattern. Keys and
//!   channels go through Redis's glob, transcribed below from Redis 7.0's `stringmatchlen`
//!   (util.c) as an independent reference; a PSUBSCRIBE pattern must be one of the allowed
//!   patterns byte for byte (Redis's rule) or begin with a layer's prefix that has no glob
//!   byte. Besides the model: a PSUBSCRIBE that passes never reaches a channel that SUBSCRIBE
//!   would refuse (fuzzed channels that the pattern matches are checked with SUBSCRIBE);
//! - `protocol::glob::glob_match`, both cases, against the same reference on fuzzed bytes.
//!
//! Strings come mostly from a small alphabet of glob bytes and letters in both cases, so
//! patterns, prefixes, keys and channels collide often.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use strata::acl::{Acl, Denied};
use strata::command::table::lookup;
use strata::config::layers::LayerSpec;
use strata::config::{ReadConsistency, SecurityConfig, UserConfig, WriteConsistency};
use strata::protocol::glob::{glob_match, Case};

const ALPHABET: &[u8] = b"aAbB:*?[]^-\\x";
/// The passwords logins try, and their SHA-256 (`printf p0 | sha256sum`).
const PASSWORDS: [&str; 3] = ["p0", "p1", "p2"];
const HASHES: [&str; 3] = [
    "169b5b823c62b64ca7e5f8456a13c8d5d06f4ece522a58bc2b8a784dcf3609b0",
    "f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a",
    "3946ca64ff78d93ca61090a437cbb6b3d2ca0d488f5f9ccf3059608368b27693",
];
/// A well-formed hash no password tried has.
const OTHER_HASH: &str = "0f3e5d8c9b7a6f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e";

fn hash_of(password: &str) -> Option<&'static str> {
    PASSWORDS
        .iter()
        .position(|p| *p == password)
        .and_then(|i| HASHES.get(i).copied())
}

/// 0 to `max` bytes, mostly from the alphabet.
fn bytes(u: &mut Unstructured, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        if u.ratio(1, 10)? {
            out.push(u.arbitrary()?);
        } else {
            out.push(*u.choose(ALPHABET)?);
        }
    }
    Ok(out)
}

/// Text for the configuration (YAML strings are UTF-8): the alphabet, sometimes `é`.
fn text(u: &mut Unstructured, max: usize) -> Result<String> {
    let len = u.int_in_range(0..=max)?;
    let mut out = String::new();
    for _ in 0..len {
        if u.ratio(1, 16)? {
            out.push('é');
        } else {
            out.push(char::from(*u.choose(ALPHABET)?));
        }
    }
    Ok(out)
}

// --- The reference glob -----------------------------------------------------------------------

/// Redis 7.0's `stringmatchlen` (util.c), transcribed with its pointer and length steps as
/// indices. Past the end a pattern reads 0, as an sds string's terminator. `char` is taken
/// as unsigned (as Redis built for ARM64; on x86-64 a range whose ends straddle 0x80 compares
/// as signed bytes, the one platform-dependent corner).
fn redis_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    redis_match_impl(
        pattern,
        0,
        pattern.len() as isize,
        string,
        0,
        string.len() as isize,
        nocase,
        &mut skip_longer,
    )
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn redis_match_impl(
    pat: &[u8],
    mut p: usize,
    mut plen: isize,
    st: &[u8],
    mut s: usize,
    mut slen: isize,
    nocase: bool,
    skip_longer: &mut bool,
) -> bool {
    let lower = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    while plen > 0 && slen > 0 {
        match at(pat, p) {
            b'*' => {
                while plen > 0 && at(pat, p + 1) == b'*' {
                    p += 1;
                    plen -= 1;
                }
                if plen == 1 {
                    return true;
                }
                while slen > 0 {
                    if redis_match_impl(pat, p + 1, plen - 1, st, s, slen, nocase, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s += 1;
                slen -= 1;
            }
            b'[' => {
                p += 1;
                plen -= 1;
                let not = at(pat, p) == b'^';
                if not {
                    p += 1;
                    plen -= 1;
                }
                let mut matched = false;
                loop {
                    if at(pat, p) == b'\\' && plen >= 2 {
                        p += 1;
                        plen -= 1;
                        if at(pat, p) == at(st, s) {
                            matched = true;
                        }
                    } else if at(pat, p) == b']' {
                        break;
                    } else if plen == 0 {
                        p -= 1;
                        plen += 1;
                        break;
                    } else if plen >= 3 && at(pat, p + 1) == b'-' {
                        let (mut start, mut end) = (at(pat, p), at(pat, p + 2));
                        let mut c = at(st, s);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = lower(start);
                            end = lower(end);
                            c = lower(c);
                        }
                        p += 2;
                        plen -= 2;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if lower(at(pat, p)) == lower(at(st, s)) {
                        matched = true;
                    }
                    p += 1;
                    plen -= 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
            first => {
                if first == b'\\' && plen >= 2 {
                    p += 1;
                    plen -= 1;
                }
                if lower(at(pat, p)) != lower(at(st, s)) {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
        }
        p += 1;
        plen -= 1;
        if slen == 0 {
            while at(pat, p) == b'*' {
                p += 1;
                plen -= 1;
            }
            break;
        }
    }
    plen == 0 && slen == 0
}

// --- The model --------------------------------------------------------------------------------

/// What a command needs, and what its arguments are.
#[derive(Clone, Copy, PartialEq)]
enum Args {
    /// One key.
    Key,
    /// Every argument from the first is a key.
    Keys,
    /// One key and a value (SET).
    KeyValue,
    /// Key, value, key, value ... (MSET).
    KeyValues,
    /// Channels (SUBSCRIBE).
    Channels,
    /// Patterns (PSUBSCRIBE).
    Patterns,
    /// A channel, then a message (PUBLISH).
    Publish,
    /// A script, a key count, keys, then arguments (EVAL).
    Script,
    /// Nothing checked.
    None,
}

/// (arguments before the fuzzed ones, category needed, what the fuzzed arguments are).
const COMMANDS: &[(&[&str], &str, Args)] = &[
    (&["GET"], "read", Args::Key),
    (&["MGET"], "read", Args::Keys),
    (&["EXISTS"], "read", Args::Keys),
    (&["SET"], "write", Args::KeyValue),
    (&["MSET"], "write", Args::KeyValues),
    (&["DEL"], "write", Args::Keys),
    (&["SUBSCRIBE"], "read", Args::Channels),
    (&["PSUBSCRIBE"], "read", Args::Patterns),
    (&["PUBLISH"], "write", Args::Publish),
    (&["EVAL", "return 1"], "write", Args::Script),
    (&["EVAL_RO", "return 1"], "read", Args::Script),
    (&["FLUSHALL"], "dangerous", Args::None),
    (&["KEYS"], "dangerous", Args::None),
    (&["STRATA", "NODES"], "admin", Args::None),
    (&["CONFIG", "SET", "maxmemory"], "admin", Args::None),
    (&["CONFIG", "GET"], "", Args::None),
    (&["CLIENT", "KILL"], "admin", Args::None),
    (&["ACL", "LIST"], "admin", Args::None),
    (&["ACL", "WHOAMI"], "", Args::None),
    (&["PING"], "", Args::None),
    (&["ECHO"], "", Args::None),
];

struct ModelUser {
    enabled: bool,
    /// Any password logs in (the default user without one).
    nopass: bool,
    passwords: Vec<String>,
    categories: Vec<String>,
    all_keys: bool,
    patterns: Vec<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
}

impl ModelUser {
    fn of(u: &UserConfig, layers: &[LayerSpec]) -> ModelUser {
        ModelUser {
            enabled: u.enabled,
            nopass: u.name == "default" && u.passwords.is_empty(),
            passwords: u.passwords.iter().map(|h| h.to_ascii_lowercase()).collect(),
            categories: u.commands.clone(),
            all_keys: u.keys.iter().any(|k| k == "*") || u.layers.iter().any(|l| l == "default"),
            patterns: u.keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            prefixes: layers
                .iter()
                .filter(|l| u.layers.contains(&l.name))
                .map(|l| l.prefix.as_bytes().to_vec())
                .collect(),
        }
    }

    fn may_run(&self, category: &str) -> bool {
        category.is_empty() || self.categories.iter().any(|c| c == category || c == "all")
    }

    fn may_touch(&self, name: &[u8]) -> bool {
        self.all_keys
            || self.prefixes.iter().any(|p| name.starts_with(p))
            || self.patterns.iter().any(|p| redis_match(p, name, false))
    }

    fn may_subscribe_pattern(&self, pattern: &[u8]) -> bool {
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
        self.all_keys
            || self.patterns.iter().any(|p| p.as_slice() == pattern)
            || self
                .prefixes
                .iter()
                .any(|p| pattern.starts_with(p) && !p.iter().any(special))
    }

    fn check(
        &self,
        category: &str,
        kind: Args,
        fuzzed: &[Vec<u8>],
    ) -> std::result::Result<(), Denied> {
        if !self.may_run(category) {
            return Err(Denied::Command);
        }
        let keys: Vec<&Vec<u8>> = match kind {
            Args::Key | Args::KeyValue => fuzzed.iter().take(1).collect(),
            Args::Keys => fuzzed.iter().collect(),
            Args::KeyValues => fuzzed.iter().step_by(2).collect(),
            Args::Script => fuzzed.iter().collect(),
            Args::Channels => {
                return match fuzzed.iter().all(|c| self.may_touch(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                }
            }
            Args::Patterns => {
                return match fuzzed.iter().all(|c| self.may_subscribe_pattern(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                }
            }
            Args::Publish => {
                return match fuzzed.first().is_none_or(|c| self.may_touch(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                }
            }
            Args::None => Vec::new(),
        };
        match keys.iter().all(|k| self.may_touch(k)) {
            true => Ok(()),
            false => Err(Denied::Key),
        }
    }
}

// --- The input --------------------------------------------------------------------------------

fn layer(name: String, prefix: String) -> LayerSpec {
    LayerSpec {
        name,
        prefix,
        key: None,
        ttl: None,
        max_ttl: None,
        replication: 1,
        write_consistency: WriteConsistency::Quorum,
        read_consistency: ReadConsistency::One,
        miss_failover: false,
        eject_on_down: false,
    }
}

fn password_hash(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => text(u, 8)?, // not a hash: validation refuses it
        1 => OTHER_HASH.to_string(),
        2 => u.choose(&HASHES)?.to_uppercase(),
        _ => u.choose(&HASHES)?.to_string(),
    })
}

fn user(u: &mut Unstructured, layer_names: &[String]) -> Result<UserConfig> {
    let name = match u.int_in_range(0..=9)? {
        0 => text(u, 4)?, // mostly invalid names
        1..=2 => "default".to_string(),
        n => format!("u{}", n % 4),
    };
    let mut passwords = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        passwords.push(password_hash(u)?);
    }
    let mut commands = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let c = *u.choose(&["read", "write", "admin", "dangerous", "all", "Read", "@all"])?;
        commands.push(c.to_string());
    }
    let mut keys = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        keys.push(text(u, 6)?);
    }
    let mut layers = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        layers.push(match u.int_in_range(0..=5)? {
            0 => "default".to_string(),
            1 => "nope".to_string(),
            _ if !layer_names.is_empty() => u.choose(layer_names)?.clone(),
            _ => "default".to_string(),
        });
    }
    Ok(UserConfig {
        name,
        passwords,
        enabled: !u.ratio(1, 6)?,
        commands,
        keys,
        layers,
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    // The glob on its own, both cases.
    for _ in 0..u.int_in_range(1..=4)? {
        let (p, t) = (bytes(u, 10)?, bytes(u, 10)?);
        assert_eq!(
            glob_match(&p, &t, Case::Sensitive),
            redis_match(&p, &t, false),
            "glob_match({:?}, {:?}, Sensitive)",
            String::from_utf8_lossy(&p),
            String::from_utf8_lossy(&t)
        );
        assert_eq!(
            glob_match(&p, &t, Case::Insensitive),
            redis_match(&p, &t, true),
            "glob_match({:?}, {:?}, Insensitive)",
            String::from_utf8_lossy(&p),
            String::from_utf8_lossy(&t)
        );
    }

    // A security section and its layers.
    let mut layers = Vec::new();
    for i in 0..u.int_in_range(0..=3)? {
        layers.push(layer(format!("l{i}"), text(u, 4)?));
    }
    let layer_names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let mut users = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        users.push(user(u, &layer_names)?);
    }
    let requirepass = match u.int_in_range(0..=3)? {
        0 => Some(password_hash(u)?),
        _ => None,
    };
    let security = SecurityConfig {
        allow_dangerous_commands: u.arbitrary()?,
        requirepass,
        users,
    };
    let names: Vec<&str> = layer_names.iter().map(String::as_str).collect();
    if security.validate(&names).is_err() {
        return Ok(());
    }
    let acl = Acl::new(&security, &layers);
    let _ = acl.list();
    let _ = acl.names();

    // The model of every user, the default one too.
    let mut model: Vec<(String, ModelUser)> = security
        .users
        .iter()
        .map(|c| (c.name.clone(), ModelUser::of(c, &layers)))
        .collect();
    if !model.iter().any(|(n, _)| n == "default") {
        model.push((
            "default".into(),
            ModelUser {
                enabled: true,
                nopass: security.requirepass.is_none(),
                passwords: security
                    .requirepass
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                categories: vec!["all".into()],
                all_keys: true,
                patterns: Vec::new(),
                prefixes: Vec::new(),
            },
        ));
    }
    let (_, default) = model
        .iter()
        .find(|(n, _)| n == "default")
        .expect("default user");
    assert_eq!(acl.auth_required(), !(default.nopass && default.enabled));
    assert_eq!(
        acl.is_open(),
        security.requirepass.is_none() && security.users.is_empty()
    );

    // Logins.
    for (name, m) in &model {
        for password in PASSWORDS {
            let hash = hash_of(password).unwrap_or_default();
            let expected = m.enabled && (m.nopass || m.passwords.iter().any(|h| h == hash));
            assert_eq!(
                acl.authenticate(name.as_bytes(), password.as_bytes())
                    .is_some(),
                expected,
                "AUTH {name} {password}"
            );
        }
    }
    assert!(acl.authenticate(b"nobody", b"p0").is_none());

    // Requests.
    for _ in 0..u.int_in_range(1..=6)? {
        let (name, m) = u.choose(&model)?;
        let Some(user) = acl.user(name) else {
            panic!("user {name} not compiled");
        };
        let (fixed, category, kind) = *u.choose(COMMANDS)?;
        let mut fuzzed = Vec::new();
        for _ in 0..u.int_in_range(1..=3)? {
            fuzzed.push(bytes(u, 6)?);
        }
        let mut args: Vec<Bytes> = fixed
            .iter()
            .map(|a| Bytes::from(a.as_bytes().to_vec()))
            .collect();
        match kind {
            Args::Script => {
                args.push(Bytes::from(fuzzed.len().to_string()));
                args.extend(fuzzed.iter().map(|k| Bytes::from(k.clone())));
                args.push(Bytes::from_static(b"arg"));
            }
            Args::KeyValues => {
                if fuzzed.len() % 2 == 1 {
                    fuzzed.push(b"v".to_vec());
                }
                args.extend(fuzzed.iter().map(|k| Bytes::from(k.clone())));
            }
            Args::Key | Args::KeyValue => {
                fuzzed.truncate(1);
                args.extend(fuzzed.iter().map(|k| Bytes::from(k.clone())));
                if kind == Args::KeyValue {
                    args.push(Bytes::from_static(b"value"));
                }
            }
            Args::Publish => {
                fuzzed.truncate(1);
                args.extend(fuzzed.iter().map(|k| Bytes::from(k.clone())));
                args.push(Bytes::from_static(b"message"));
            }
            _ => args.extend(fuzzed.iter().map(|k| Bytes::from(k.clone()))),
        }
        let spec = lookup(&args[0]).expect("a command of the table");
        let got = acl.check(user, spec, &args);
        let expected = m.check(category, kind, &fuzzed);
        assert_eq!(got, expected, "user {name}: {:?}", args);

        // A pattern subscription that passes reaches no channel SUBSCRIBE would refuse.
        if kind == Args::Patterns && got.is_ok() {
            let subscribe = lookup(b"SUBSCRIBE").expect("SUBSCRIBE");
            for _ in 0..u.int_in_range(0..=4)? {
                let channel = bytes(u, 8)?;
                if fuzzed.iter().any(|p| redis_match(p, &channel, false)) {
                    let args = [
                        Bytes::from_static(b"SUBSCRIBE"),
                        Bytes::from(channel.clone()),
                    ];
                    assert_eq!(
                        acl.check(user, subscribe, &args),
                        Ok(()),
                        "user {name}: {:?} passed, SUBSCRIBE {:?} did not",
                        fuzzed,
                        String::from_utf8_lossy(&channel)
                    );
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
