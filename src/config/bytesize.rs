//! Byte sizes in config.yaml, written as Redis writes them in redis.conf: a number of bytes, or
//! a number with a unit (`k` = 1000, `kb` = 1024, `m`, `mb`, `g`, `gb`; case does not matter),
//! so `client_output_buffer_limit` reads like Redis's `client-output-buffer-limit`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `256mb`, `64k`, `1048576`; `None` for anything else or a size past `u64`.
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim().to_ascii_lowercase();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let n: u64 = number.parse().ok()?;
        let scale: u64 = match unit.trim() {
            "" | "b" => 1,
            "k" => 1000,
            "kb" => 1024,
            "m" => 1000 * 1000,
            "mb" => 1024 * 1024,
            "g" => 1000 * 1000 * 1000,
            "gb" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(scale).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// The largest exact binary unit: `256mb`, `1536kb`, `100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "gb"), (1 << 20, "mb"), (1 << 10, "kb")];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected a size in bytes such as 1048576, 64kb, 256mb or 1gb, got {t:?}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_redis_conf() {
        assert_eq!(ByteSize::parse("100"), Some(ByteSize(100)));
        assert_eq!(ByteSize::parse("1k"), Some(ByteSize(1000)));
        assert_eq!(ByteSize::parse("1KB"), Some(ByteSize(1024)));
        assert_eq!(ByteSize::parse("256mb"), Some(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("2g"), Some(ByteSize(2_000_000_000)));
        assert_eq!(ByteSize::parse("1gb"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("12 mb"), Some(ByteSize(12 << 20)));
        for bad in ["", "mb", "1.5mb", "-1", "1tb", "99999999999999999999"] {
            assert_eq!(ByteSize::parse(bad), None, "{bad}");
        }
        assert_eq!(ByteSize::parse("99999999999gb"), None);
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(256 << 20).to_string(), "256mb");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536kb");
        assert_eq!(ByteSize(1 << 30).to_string(), "1gb");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
