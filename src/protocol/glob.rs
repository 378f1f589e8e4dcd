//! Redis's glob patterns (`*`, `?`, `[...]`, `\\x`), as CONFIG GET and COMMAND LIST
//! FILTERBY PATTERN match them.

/// Case-insensitive glob match (`*`, `?`, `[...]` with ranges and `^`, `\\x`), as Redis's
/// `stringmatchlen` with nocase (CONFIG GET, COMMAND LIST FILTERBY PATTERN). Every token but
/// `*` matches one byte, so the last `*` is the only backtracking point needed: linear-ish
/// time, whatever the pattern a client sends.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern position after it, text position).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if let Some(len) = one_byte(pattern, p, text.get(t)) {
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
fn one_byte(pattern: &[u8], p: usize, c: Option<&u8>) -> Option<usize> {
    let c = c?.to_ascii_lowercase();
    let lower = |b: &u8| b.to_ascii_lowercase();
    match pattern.get(p..)? {
        [] | [b'*', ..] => None,
        [b'?', ..] => Some(1),
        [b'\\', x, ..] => (lower(x) == c).then_some(2),
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
                    [b']', ..] => {
                        used += 1;
                        break;
                    }
                    [b'\\', x, tail @ ..] => {
                        matched |= lower(x) == c;
                        set = tail;
                        used += 2;
                    }
                    [a, b'-', z, tail @ ..] if *z != b']' => {
                        let (lo, hi) = if a <= z {
                            (lower(a), lower(z))
                        } else {
                            (lower(z), lower(a))
                        };
                        matched |= (lo..=hi).contains(&c);
                        set = tail;
                        used += 3;
                    }
                    [x, tail @ ..] => {
                        matched |= lower(x) == c;
                        set = tail;
                        used += 1;
                    }
                }
            }
            (matched != negate).then_some(used)
        }
        [x, ..] => (lower(x) == c).then_some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(glob_match(b"*max*", b"maxclients"));
        assert!(glob_match(b"[a-c]ind", b"bind"));
        assert!(!glob_match(b"[^a-c]ind", b"bind"));
        assert!(!glob_match(b"save?", b"save"));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(!glob_match(b"a\\*", b"ab"));
        assert!(glob_match(b"max*", b"maxmemory-policy"));
        assert!(glob_match(b"*-policy", b"maxmemory-policy"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"?", b""));
        assert!(glob_match(b"x[ab]*z", b"xbqqz"));
        assert!(!glob_match(b"x[ab]*z", b"xcqqz"));
        // Many stars against a long text: answered at once, not after exponential search.
        let text = vec![b'a'; 4000];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
    }
}
