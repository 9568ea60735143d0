//! Duration strings as written in Kolbak custom resources (`"5s"`, `"30m"`, `"1h30m"`): the
//! schema pattern that the Kubernetes API server enforces and the parser that turns them into
//! [`std::time::Duration`].
//!
//! The accepted syntax is the strict subset of Go's `time.ParseDuration` format that both this
//! parser and Kubernetes CEL's `duration()` understand: one or more `<number><unit>` pairs, where
//! the number has at most 9 digits before and 9 after an optional decimal point, and the unit is
//! `ns`, `us`, `ms`, `s`, `m` or `h`. Signs and days are not accepted.

use std::time::Duration;

use crate::Error;

/// JSON-schema `pattern` (RE2 syntax) that a duration string must match.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$";

/// Longest accepted duration string, in bytes.
pub const DURATION_MAX_LENGTH: usize = 64;

/// Units, longest first so that `ms` is not read as `m` followed by garbage.
const UNITS: [(&str, u128); 6] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration string such as `"5s"`, `"250ms"`, `"1h30m"` or `"1.5h"`.
///
/// # Errors
/// [`Error::InvalidDuration`] when `text` does not match [`DURATION_PATTERN`] or is longer than
/// [`DURATION_MAX_LENGTH`].
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    parse(text).map_err(|reason| Error::InvalidDuration {
        value: text.to_owned(),
        reason,
    })
}

/// The parser behind [`parse_duration`]; the error is the reason, for embedding in other errors.
pub(crate) fn parse(text: &str) -> Result<Duration, &'static str> {
    const HINT: &str = "expected a number and a unit (ns, us, ms, s, m, h), e.g. 5s, 30m, 1h30m";
    if text.is_empty() {
        return Err(HINT);
    }
    if text.len() > DURATION_MAX_LENGTH {
        return Err("longer than 64 characters");
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        if whole.is_empty() || whole.len() > 9 {
            return Err(HINT);
        }
        let (fraction, after_number) = match after_whole.strip_prefix('.') {
            Some(after_dot) => {
                let (fraction, after_fraction) = split_digits(after_dot);
                if fraction.is_empty() || fraction.len() > 9 {
                    return Err(HINT);
                }
                (fraction, after_fraction)
            }
            None => ("", after_whole),
        };
        let (unit_nanos, after_unit) = UNITS
            .iter()
            .find_map(|(unit, nanos)| after_number.strip_prefix(unit).map(|r| (*nanos, r)))
            .ok_or(HINT)?;
        total_nanos += digits_value(whole) * unit_nanos;
        if !fraction.is_empty() {
            let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| HINT)?);
            total_nanos += digits_value(fraction) * unit_nanos / scale;
        }
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / NANOS_PER_SEC).map_err(|_| "too large")?;
    let nanos = u32::try_from(total_nanos % NANOS_PER_SEC).map_err(|_| "too large")?;
    Ok(Duration::new(secs, nanos))
}

/// Splits `text` into its leading ASCII digits and the remainder.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The value of a string of at most 9 ASCII digits.
fn digits_value(digits: &str) -> u128 {
    digits
        .bytes()
        .fold(0, |acc, b| acc * 10 + u128::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("5s", Duration::from_secs(5)),
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("5m", Duration::from_secs(300)),
            ("10h", Duration::from_secs(36_000)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1.5h", Duration::from_secs(5_400)),
            ("1m0.5s", Duration::from_millis(60_500)),
            ("999999999h", Duration::from_secs(999_999_999 * 3_600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for text in [
            "",
            "5",
            "s",
            "-5s",
            "+5s",
            "5d",
            "5 s",
            "5S",
            "1.s",
            ".5s",
            "5s ",
            "1e3s",
            "5sec",
            "1234567890s",
            "1.1234567890s",
            "µs",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be rejected");
        }
        assert!(parse(&"1s".repeat(33)).is_err(), "too long");
    }

    #[test]
    fn public_error_names_the_value() {
        let Err(Error::InvalidDuration { value, .. }) = parse_duration("5d") else {
            panic!("5d must be rejected");
        };
        assert_eq!(value, "5d");
    }
}
