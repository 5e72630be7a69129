//! Flag values several client commands share: times, given as RFC 3339, milliseconds since the
//! epoch, or an age (`30s`, `5m`, `2h`, `1d`: that long before now). Errors name the flag, never
//! the HTTP query parameter the value becomes.

use crate::client::{CliError, CliResult};
use busbar_broker::time::{format_rfc3339, parse_rfc3339};

/// What a `--time`-style flag accepts, for help texts and errors.
pub const TIME_FORMS: &str = "an RFC 3339 time, milliseconds since the epoch, or an age such as \
                              30s, 5m, 2h or 1d (that long ago)";

/// Milliseconds since the epoch of the time `text` given to `flag`.
pub fn time_ms(flag: &str, text: &str) -> CliResult<i64> {
    let bad = || CliError::Usage(format!("{flag} {text:?} is not {TIME_FORMS}"));
    if let Some(ms) = parse_rfc3339(text) {
        return Ok(ms);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let age = age_ms(text).ok_or_else(bad)?;
    Ok(now_ms().saturating_sub(age))
}

/// The time `text` given to `flag` as RFC 3339 (for API fields that take one).
pub fn time_rfc3339(flag: &str, text: &str) -> CliResult<String> {
    time_ms(flag, text).map(format_rfc3339)
}

/// `<count><unit>` with unit s, m, h or d, in milliseconds.
fn age_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (count, unit) = text.split_at(split);
    let count: i64 = count.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    count.checked_mul(unit_ms)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        assert_eq!(time_ms("--time", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(time_ms("--time", "1234").unwrap(), 1234);
        for (age, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
        ] {
            let got = now_ms() - time_ms("--time", age).unwrap();
            assert!((ms..ms + 5_000).contains(&got), "{age}: {got}");
        }
        for bad in [
            "",
            "m",
            "5x",
            "5 m",
            "-5m",
            "yesterday",
            "99999999999999999999d",
        ] {
            let Err(CliError::Usage(m)) = time_ms("--time", bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(m.starts_with("--time"), "{m}");
        }
    }
}
