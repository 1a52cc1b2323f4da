//! Times in licenses are unix seconds (UTC, integer): unambiguous, no time
//! zone or leap-second parsing in the verifier. People see and type them as
//! RFC 3339 UTC (`2027-01-31T00:00:00Z`); this module converts both ways with
//! the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds of a `SystemTime`; times before 1970 count as 0 (a clock
/// that far behind is caught by the issue-time check anyway).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `SystemTime` of unix seconds.
pub fn system_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC text of unix seconds, e.g. `2027-01-31T00:00:00Z`.
pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// RFC 3339 UTC text of a `SystemTime`.
pub fn format_system_time(t: SystemTime) -> String {
    format_rfc3339(unix_seconds(t))
}

fn number(s: &str, digits: usize) -> Option<u32> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A text that is not a date [`parse_date`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a date like 2027-01-31 or 2027-01-31T12:00:00Z (UTC), found \"{found}\"")]
pub struct DateError {
    /// The text given.
    pub found: String,
}

/// Parses `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM:SSZ` or
/// `YYYY-MM-DDTHH:MM:SS+HH:MM` into unix seconds.
///
/// # Errors
///
/// [`DateError`], saying which form is expected, if `text` is none of
/// these or names a date before 1970.
pub fn parse_date(text: &str) -> Result<u64, DateError> {
    let bad = || DateError {
        found: text.to_string(),
    };
    let t = text.trim();
    let (date, time) = match t.split_once(['T', 't', ' ']) {
        Some((d, rest)) => (d, Some(rest)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, mo, d) = (
        number(y, 4).ok_or_else(bad)?,
        number(mo, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(i64::from(y), mo) {
        return Err(bad());
    }
    let mut secs_of_day: i64 = 0;
    if let Some(time) = time {
        let (clock, offset_secs) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0i64)
        } else if time.len() > 6 {
            let (c, off) = time.split_at(time.len() - 6);
            let sign = match off.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            let (oh, om) = off
                .get(1..)
                .and_then(|o| o.split_once(':'))
                .ok_or_else(bad)?;
            let oh = number(oh, 2).ok_or_else(bad)?;
            let om = number(om, 2).ok_or_else(bad)?;
            (c, sign * i64::from(oh * 3600 + om * 60))
        } else {
            return Err(bad());
        };
        let mut hms = clock.split(':');
        let (Some(h), Some(mi), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next())
        else {
            return Err(bad());
        };
        let (h, mi, s) = (
            number(h, 2).ok_or_else(bad)?,
            number(mi, 2).ok_or_else(bad)?,
            number(s, 2).ok_or_else(bad)?,
        );
        if h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        secs_of_day = i64::from(h * 3600 + mi * 60 + s) - offset_secs;
    }
    let total = days_from_civil(i64::from(y), mo, d) * 86_400 + secs_of_day;
    u64::try_from(total).map_err(|_| bad())
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(parse_date("2000-02-29"), Ok(951_782_400));
        assert_eq!(parse_date("2026-12-31T23:59:59Z"), Ok(1_798_761_599));
        assert_eq!(parse_date("2027-01-01T01:00:00+01:00"), Ok(1_798_761_600));
        for secs in [0u64, 86_399, 1_000_000_000, 4_102_444_800, 1_763_770_000] {
            assert_eq!(parse_date(&format_rfc3339(secs)), Ok(secs));
        }
    }

    #[test]
    fn refuses_bad_dates() {
        for bad in [
            "2027-02-29",
            "2027-13-01",
            "27-01-01",
            "2027-01-01T25:00:00Z",
            "tomorrow",
            "1969-12-31",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
