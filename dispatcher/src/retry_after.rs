//! Parsing the `Retry-After` response header (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

/// The wait a `Retry-After` value asks for, as seen at `received_at`: `delta-seconds` (`120`)
/// or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, also the obsolete RFC 850 and asctime
/// forms). A date in the past means no wait (zero). `None` when the value is neither form.
pub fn parse_retry_after(value: &str, received_at: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(received_at).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// `Wed, 21 Oct 2015 07:28:00 GMT` in unix seconds.
    const DATE_SECS: u64 = 1_445_412_480;

    #[test]
    fn delta_seconds_are_read() {
        let now = at(0);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("86400", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn http_dates_are_relative_to_reception() {
        for form in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(form, at(DATE_SECS - 90)),
                Some(Duration::from_secs(90)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at(DATE_SECS + 5)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "12s",
            "99999999999999999999999",
            "Wed, 21 Oct 2015",
        ] {
            assert_eq!(parse_retry_after(bad, at(0)), None, "{bad}");
        }
    }
}
