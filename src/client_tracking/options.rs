//! `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`:
//! its options read, checked against each other and against the client's tracking as it is,
//! in Redis 7.0's order and with its error texts.

use bytes::Bytes;

/// A tracking client's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// BCAST prefixes, in byte order (the empty one: every key).
    pub prefixes: Vec<Bytes>,
    /// The client invalidations go to (0: this one).
    pub redirect: u64,
}

/// What the command asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Switch {
    On(Options),
    Off,
}

/// Why the command is refused (the texts are Redis's).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackingError {
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    #[error("ERR A client can only redirect to a single other client")]
    TwoRedirects,
    #[error("ERR The client ID you want redirect to does not exist")]
    NoSuchClient,
    #[error("ERR PREFIX option requires BCAST mode to be enabled")]
    PrefixWithoutBcast,
    #[error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.")]
    BcastSwitch,
    #[error("ERR OPTIN and OPTOUT are not compatible with BCAST")]
    OptWithBcast,
    #[error("ERR You can't specify both OPTIN mode and OPTOUT mode")]
    OptinAndOptout,
    #[error("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.")]
    OptSwitch,
    #[error("ERR Prefix '{0}' overlaps with an existing prefix '{1}'. Prefixes for a single client must not overlap.")]
    OverlapsExisting(String, String),
    #[error("ERR Prefix '{0}' overlaps with another provided prefix '{1}'. Prefixes for a single client must not overlap.")]
    OverlapsGiven(String, String),
}

/// Reads `args` (the command's arguments after `CLIENT TRACKING`: `ON|OFF` and the options).
/// `exists` says whether a client id is connected (a redirect must name one).
pub fn parse(args: &[Bytes], exists: impl Fn(u64) -> bool) -> Result<Switch, TrackingError> {
    let Some(switch) = args.first() else {
        return Err(TrackingError::Syntax);
    };
    let mut options = Options::default();
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let more = i + 1 < args.len();
        let is = |name: &str| arg.eq_ignore_ascii_case(name.as_bytes());
        if is("redirect") && more {
            i += 1;
            if options.redirect != 0 {
                return Err(TrackingError::TwoRedirects);
            }
            let id = args
                .get(i)
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|a| a.parse::<i64>().ok())
                .ok_or(TrackingError::NotAnInteger)?;
            let id = u64::try_from(id).map_err(|_| TrackingError::NoSuchClient)?;
            if id == 0 || !exists(id) {
                return Err(TrackingError::NoSuchClient);
            }
            options.redirect = id;
        } else if is("bcast") {
            options.bcast = true;
        } else if is("optin") {
            options.optin = true;
        } else if is("optout") {
            options.optout = true;
        } else if is("noloop") {
            options.noloop = true;
        } else if is("prefix") && more {
            i += 1;
            if let Some(p) = args.get(i) {
                options.prefixes.push(p.clone());
            }
        } else {
            return Err(TrackingError::Syntax);
        }
        i += 1;
    }
    if switch.eq_ignore_ascii_case(b"on") {
        Ok(Switch::On(options))
    } else if switch.eq_ignore_ascii_case(b"off") {
        Ok(Switch::Off)
    } else {
        Err(TrackingError::Syntax)
    }
}

/// The options tracking goes on with: `new` checked against each other and against `old`
/// (tracking already on), whose prefixes are kept (Redis adds prefixes; it never drops them
/// until tracking is turned off).
pub fn combine(old: Option<&Options>, mut new: Options) -> Result<Options, TrackingError> {
    if !new.bcast && !new.prefixes.is_empty() {
        return Err(TrackingError::PrefixWithoutBcast);
    }
    if old.is_some_and(|o| o.bcast != new.bcast) {
        return Err(TrackingError::BcastSwitch);
    }
    if new.bcast && (new.optin || new.optout) {
        return Err(TrackingError::OptWithBcast);
    }
    if new.optin && new.optout {
        return Err(TrackingError::OptinAndOptout);
    }
    if old.is_some_and(|o| (new.optin && o.optout) || (new.optout && o.optin)) {
        return Err(TrackingError::OptSwitch);
    }
    if !new.bcast {
        return Ok(new);
    }
    let mut all: Vec<Bytes> = old.map(|o| o.prefixes.clone()).unwrap_or_default();
    if new.prefixes.is_empty() {
        // BCAST without PREFIX is the empty prefix, added without a check (as Redis does; it
        // covers every key, so the client is told once per key all the same).
        all.push(Bytes::new());
    } else {
        let given = std::mem::take(&mut new.prefixes);
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        // Equal prefixes overlap too; the empty one overlaps every prefix.
        let overlap = |a: &Bytes, b: &Bytes| a.starts_with(b) || b.starts_with(a);
        let mut existing = all.clone();
        existing.sort();
        for (i, p) in given.iter().enumerate() {
            if let Some(o) = existing.iter().find(|o| overlap(o, p)) {
                return Err(TrackingError::OverlapsExisting(text(p), text(o)));
            }
            if let Some(q) = given.iter().skip(i + 1).find(|q| overlap(p, q)) {
                return Err(TrackingError::OverlapsGiven(text(p), text(q)));
            }
        }
        all.extend(given);
    }
    // Listed in byte order, as CLIENT TRACKINGINFO shows them.
    all.sort();
    all.dedup();
    new.prefixes = all;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn on(s: &str) -> Options {
        match parse(&args(s), |id| id == 7) {
            Ok(Switch::On(o)) => o,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn options_are_read_in_redis_order() {
        assert_eq!(parse(&args("off"), |_| false), Ok(Switch::Off));
        assert_eq!(parse(&args("maybe"), |_| false), Err(TrackingError::Syntax));
        assert_eq!(
            parse(&args("on bogus"), |_| false),
            Err(TrackingError::Syntax)
        );
        // Option errors come before ON/OFF is looked at.
        assert_eq!(
            parse(&args("x redirect 9"), |_| false),
            Err(TrackingError::NoSuchClient)
        );
        assert_eq!(
            parse(&args("on redirect x"), |_| true),
            Err(TrackingError::NotAnInteger)
        );
        assert_eq!(
            parse(&args("on redirect 7 redirect 7"), |id| id == 7),
            Err(TrackingError::TwoRedirects)
        );
        // A trailing REDIRECT or PREFIX without its value is a syntax error.
        assert_eq!(
            parse(&args("on prefix"), |_| true),
            Err(TrackingError::Syntax)
        );
        let o = on("ON redirect 7 BCAST prefix a: prefix b: NOLOOP");
        assert!(o.bcast && o.noloop && !o.optin);
        assert_eq!(o.redirect, 7);
        assert_eq!(o.prefixes, vec![Bytes::from("a:"), Bytes::from("b:")]);
    }

    #[test]
    fn combinations_are_checked() {
        assert_eq!(
            combine(None, on("on prefix a")),
            Err(TrackingError::PrefixWithoutBcast)
        );
        assert_eq!(
            combine(None, on("on bcast optin")),
            Err(TrackingError::OptWithBcast)
        );
        assert_eq!(
            combine(None, on("on optin optout")),
            Err(TrackingError::OptinAndOptout)
        );
        assert_eq!(
            TrackingError::OptinAndOptout.to_string(),
            "ERR You can't specify both OPTIN mode and OPTOUT mode"
        );
        let optin = combine(None, on("on optin")).unwrap();
        assert_eq!(
            combine(Some(&optin), on("on optout")),
            Err(TrackingError::OptSwitch)
        );
        assert_eq!(
            combine(Some(&optin), on("on bcast")),
            Err(TrackingError::BcastSwitch)
        );
        // Same mode again: accepted, options replaced.
        assert!(combine(Some(&optin), on("on")).is_ok());
        assert_eq!(
            combine(None, on("on bcast prefix ab prefix a")),
            Err(TrackingError::OverlapsGiven("ab".into(), "a".into()))
        );
        let ab = combine(None, on("on bcast prefix ab")).unwrap();
        assert_eq!(
            combine(Some(&ab), on("on bcast prefix a")),
            Err(TrackingError::OverlapsExisting("a".into(), "ab".into()))
        );
        // Prefixes add up, in byte order; the same one again overlaps.
        let more = combine(Some(&ab), on("on bcast prefix cd")).unwrap();
        assert_eq!(more.prefixes, vec![Bytes::from("ab"), Bytes::from("cd")]);
        assert!(matches!(
            combine(Some(&more), on("on bcast prefix cd")),
            Err(TrackingError::OverlapsExisting(..))
        ));
        // BCAST alone is the empty prefix, every key, which overlaps any prefix added later.
        let all = combine(None, on("on bcast")).unwrap();
        assert_eq!(all.prefixes, vec![Bytes::new()]);
        assert!(matches!(
            combine(Some(&all), on("on bcast prefix x")),
            Err(TrackingError::OverlapsExisting(..))
        ));
    }
}
