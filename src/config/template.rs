//! Key templates: `result:{query}:{model}` names the fields of a layer's keys, so that
//! `STRATA INVALIDATE WHERE model=gpt-4` can derive the SCAN pattern `result:*:gpt-4`.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    parts: Vec<Part>,
}

impl KeyTemplate {
    /// Parses `text`; fields are `{name}` with a name of letters, digits and `_`, each at most
    /// once. Literal `{` and `}` are not allowed (they would be read as fields).
    pub fn parse(text: &str) -> Result<KeyTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
                Some(at) => {
                    let (literal, tail) = rest.split_at(at);
                    if !literal.is_empty() {
                        parts.push(Part::Literal(literal.to_string()));
                    }
                    let Some(body) = tail.strip_prefix('{') else {
                        return Err(format!("unbalanced '}}' in key template {text:?}"));
                    };
                    let Some(end) = body.find('}') else {
                        return Err(format!("unclosed '{{' in key template {text:?}"));
                    };
                    let (name, after) = body.split_at(end);
                    let valid = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return Err(format!(
                            "field {{{name}}} in key template {text:?}: names are letters, digits and '_'"
                        ));
                    }
                    if parts
                        .iter()
                        .any(|p| matches!(p, Part::Field(f) if f == name))
                    {
                        return Err(format!("field {{{name}}} twice in key template {text:?}"));
                    }
                    parts.push(Part::Field(name.to_string()));
                    rest = after.get(1..).unwrap_or("");
                }
            }
        }
        Ok(KeyTemplate {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.fields().any(|f| f == name)
    }

    /// The SCAN MATCH pattern for keys whose fields have the given values: literals and values
    /// glob-escaped, other fields `*`. None when a named field is not in the template.
    pub fn pattern(&self, values: &[(&str, &[u8])]) -> Option<Vec<u8>> {
        if values.iter().any(|(f, _)| !self.has_field(f)) {
            return None;
        }
        let mut out = Vec::with_capacity(self.text.len() + 8);
        for part in &self.parts {
            match part {
                Part::Literal(text) => escape_glob(text.as_bytes(), &mut out),
                Part::Field(name) => match values.iter().find(|(f, _)| f == name) {
                    Some((_, value)) => escape_glob(value, &mut out),
                    None => out.push(b'*'),
                },
            }
        }
        Some(out)
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Appends `text` with Redis's glob metacharacters (`* ? [ ] \`) backslash-escaped, so it
/// matches itself only.
pub fn escape_glob(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields() {
        let t = KeyTemplate::parse("result:{query}:{model}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["query", "model"]);
        assert!(t.has_field("model"));
        assert!(!t.has_field("user"));
        assert_eq!(t.to_string(), "result:{query}:{model}");
    }

    #[test]
    fn patterns_escape_and_wildcard() {
        let t = KeyTemplate::parse("result:{query}:{model}").unwrap();
        assert_eq!(
            t.pattern(&[("model", b"gpt-4")]).unwrap(),
            b"result:*:gpt-4".to_vec()
        );
        assert_eq!(
            t.pattern(&[("model", b"a*b?[c]\\")]).unwrap(),
            b"result:*:a\\*b\\?\\[c\\]\\\\".to_vec()
        );
        assert_eq!(
            t.pattern(&[("model", b"m"), ("query", b"q")]).unwrap(),
            b"result:q:m".to_vec()
        );
        assert_eq!(t.pattern(&[("user", b"x")]), None);
        let lit = KeyTemplate::parse("we*ird:{id}").unwrap();
        assert_eq!(lit.pattern(&[]).unwrap(), b"we\\*ird:*".to_vec());
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in ["a:{", "a:}", "a:{}", "a:{x y}", "a:{m}:{m}", "a:{b{c}}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
