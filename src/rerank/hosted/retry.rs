//! When to try again: jittered exponential backoff and `Retry-After` (delta-seconds or an
//! HTTP date, parsed here without extra crates).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// First backoff step; attempt `n` (0-based) waits about `BASE × 2^n`.
pub const BASE: Duration = Duration::from_millis(100);
/// The exponent stops growing here (100 ms × 2^6 = 6.4 s, before jitter).
const MAX_DOUBLINGS: u32 = 6;

/// Backoff before retry number `attempt + 1`: `100 ms × 2^attempt`, scaled by a random
/// factor in `[0.5, 1.5)` so that callers hit by the same failure spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base = BASE * (1u32 << attempt.min(MAX_DOUBLINGS));
    base.mul_f64(0.5 + unit_jitter())
}

/// A number in `[0, 1)`, different on every call: a counter hashed with the process's
/// randomly keyed SipHash (no `rand` crate).
fn unit_jitter() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The wait a `Retry-After` header asks for, measured from `now`: delta-seconds, or an
/// HTTP date (a date in the past means "now"). `None` when absent or unparsable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP date (RFC 9110 §5.6.7): IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and
/// the two obsolete forms recipients must also accept, RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let tokens: Vec<&str> = s.split([' ', ',', '-']).filter(|t| !t.is_empty()).collect();
    let (day, month, year, time) = match tokens.as_slice() {
        // IMF-fixdate and RFC 850: weekday, day, month, year, time, GMT
        [_, day, month, year, time, "GMT"] => {
            let year: u64 = year.parse().ok()?;
            let year = match (year, tokens[3].len()) {
                (y, 4) => y,
                // RFC 850's two-digit year: RFC 9110 says a year more than 50 years in the
                // future is in the past century; for any date this code meets, 00–69 is 20xx.
                (y, 2) if y < 70 => 2000 + y,
                (y, 2) => 1900 + y,
                _ => return None,
            };
            (*day, *month, year, *time)
        }
        // asctime: weekday, month, day, time, year
        [_, month, day, time, year] if year.len() == 4 => (*day, *month, year.parse().ok()?, *time),
        _ => return None,
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + sec))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), for dates
/// from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_in_all_three_forms() {
        let want = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(want)
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_835_481_599))
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:42 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(5)));
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        for attempt in 0..4 {
            let base = BASE * (1 << attempt);
            let waits: Vec<Duration> = (0..50).map(|_| backoff(attempt)).collect();
            for w in &waits {
                assert!(*w >= base / 2 && *w < base * 3 / 2, "{w:?} for {base:?}");
            }
            let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
            assert!(distinct.len() > 40, "jitter should vary: {distinct:?}");
        }
        assert!(backoff(40) < Duration::from_secs(10));
    }
}
