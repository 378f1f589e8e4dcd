//! Redis's glob patterns (`*`, `?`, `[...]`, `\\x`) with the results of Redis 7.0's
//! `stringmatchlen` (util.c), edge cases included: case-insensitive as CONFIG GET and COMMAND
//! LIST FILTERBY PATTERN match, case-sensitive as Redis matches keys and channels (ACL `~` and
//! `&` patterns, KEYS, SCAN MATCH, PSUBSCRIBE).

/// Whether letters match whatever their case (Redis's `nocase` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Keys and channels.
    Sensitive,
    /// Configuration parameter and command names.
    Insensitive,
}

/// Glob match (`*`, `?`, `[...]` with ranges and `^`, `\\x`) with Redis's results. Every
/// token but `*` matches one byte, so the last `*` is the only backtracking point needed:
/// linear-ish time, whatever the pattern a client sends.
///
/// Redis's edge cases, kept: an empty text matches the empty pattern only (`*` does not match
/// it); in a class, `x-y` is a range whenever two bytes follow `x`, even when the second is
/// the `]` that would close the class (the class then goes on); a class never closed takes the
/// rest of the pattern; `\\` escapes the next byte, and a `\\` that ends the pattern is itself.
pub fn glob_match(pattern: &[u8], text: &[u8], case: Case) -> bool {
    if text.is_empty() {
        return pattern.is_empty();
    }
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern position after it, text position).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if let Some(len) = one_byte(pattern, p, text.get(t), case) {
            p += len;
            t += 1;
            continue;
        }
        match star {
            Some((after, from)) => {
                p = after;
                t = from + 1;
                star = Some((after, from + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// When the token at `p` (not `*`) matches byte `c`: the token's length in the pattern.
fn one_byte(pattern: &[u8], p: usize, c: Option<&u8>, case: Case) -> Option<usize> {
    let fold = |b: u8| match case {
        Case::Sensitive => b,
        Case::Insensitive => b.to_ascii_lowercase(),
    };
    let c = *c?;
    let same = |x: &u8| fold(*x) == fold(c);
    match pattern.get(p..)? {
        [] | [b'*', ..] => None,
        [b'?', ..] => Some(1),
        [b'\\', x, ..] => same(x).then_some(2),
        [b'[', rest @ ..] => {
            let (negate, mut set, mut used) = match rest {
                [b'^', r @ ..] => (true, r, 2),
                _ => (false, rest, 1),
            };
            let mut matched = false;
            loop {
                match set {
                    // An unclosed class ends with the pattern, as in Redis.
                    [] => break,
                    // Redis compares an escaped byte in a class as it is, whatever the case.
                    [b'\\', x, tail @ ..] => {
                        matched |= *x == c;
                        set = tail;
                        used += 2;
                    }
                    [b']', ..] => {
                        used += 1;
                        break;
                    }
                    [a, b'-', z, tail @ ..] => {
                        let (lo, hi) = if a <= z { (*a, *z) } else { (*z, *a) };
                        matched |= (fold(lo)..=fold(hi)).contains(&fold(c));
                        set = tail;
                        used += 3;
                    }
                    [x, tail @ ..] => {
                        matched |= same(x);
                        set = tail;
                        used += 1;
                    }
                }
            }
            (matched != negate).then_some(used)
        }
        [x, ..] => same(x).then_some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::{glob_match, Case};

    fn nocase(p: &[u8], t: &[u8]) -> bool {
        glob_match(p, t, Case::Insensitive)
    }

    fn cased(p: &[u8], t: &[u8]) -> bool {
        glob_match(p, t, Case::Sensitive)
    }

    #[test]
    fn globs() {
        assert!(nocase(b"*", b"save"));
        assert!(nocase(b"SAVE", b"save"));
        assert!(nocase(b"s?ve", b"save"));
        assert!(nocase(b"*max*", b"maxclients"));
        assert!(nocase(b"[a-c]ind", b"bind"));
        assert!(!nocase(b"[^a-c]ind", b"bind"));
        assert!(!nocase(b"save?", b"save"));
        assert!(nocase(b"a\\*", b"a*"));
        assert!(!nocase(b"a\\*", b"ab"));
        assert!(nocase(b"max*", b"maxmemory-policy"));
        assert!(nocase(b"*-policy", b"maxmemory-policy"));
        assert!(nocase(b"x[ab]*z", b"xbqqz"));
        assert!(!nocase(b"x[ab]*z", b"xcqqz"));
        // Many stars against a long text: answered at once, not after exponential search.
        let text = vec![b'a'; 4000];
        assert!(!nocase(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
    }

    /// Each checked against Redis 7.0.15 (`ACL SETUSER u ~<pattern>`, `ACL DRYRUN u GET
    /// <key>`): keys and channels match case-sensitively; tests/acl.rs asks a real Redis the
    /// same on every run.
    #[test]
    fn keys_match_as_redis_matches_them() {
        assert!(cased(b"a*", b"abc"));
        assert!(!cased(b"a*", b"Abc"), "case-sensitive");
        assert!(!cased(b"[a-c]x", b"Bx"));
        assert!(!cased(b"\\a", b"A"));
        // The empty text matches the empty pattern only.
        assert!(!cased(b"*", b""));
        assert!(!cased(b"**", b""));
        assert!(cased(b"", b""));
        assert!(!cased(b"", b"a"));
        // `a-]` is a range (']' to 'a'), and the class goes on to the end of the pattern.
        assert!(!cased(b"[a-]x", b"-x"));
        assert!(!cased(b"[a-]x", b"]x"));
        assert!(cased(b"[a-]x", b"^"));
        assert!(cased(b"[a-]x", b"x"));
        assert!(cased(b"[a-]x]", b"x"));
        assert!(cased(b"[a-]x]y", b"_y"));
        // An escaped byte in a class is compared as it is, even case-insensitively.
        assert!(nocase(b"[\\a]", b"a"));
        assert!(!nocase(b"[\\a]", b"A"));
        assert!(nocase(b"[a]", b"A"));
        // A trailing backslash is itself; an unclosed class takes the rest of the pattern.
        assert!(cased(b"a\\", b"a\\"));
        assert!(cased(b"[^", b"q"));
        assert!(cased(b"[ab", b"b"));
        assert!(!cased(b"[ab", b"ab"));
    }
}
