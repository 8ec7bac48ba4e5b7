//! Timestamps: parsing the stamp styles mail logs use, and turning them
//! into Unix seconds.
//!
//! Parsing is pure. Turning a classic syslog stamp (`Nov 21 10:00:00`, no
//! year, local time) into Unix seconds needs context, which
//! [`TimeResolver`] keeps per source: the year is inferred from the
//! reference clock for the first line (a stamp more than a week in the
//! future belongs to the previous year), then carried along the file and
//! incremented when the month wraps from December to January. A line whose
//! month jumps back by half a year or more (an out-of-order line from
//! before New Year) gets the previous year without changing the state.

use chrono::{Local, LocalResult, NaiveDate, TimeZone};

/// A timestamp as written in the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogTime {
    /// Classic syslog: month (1–12), day, seconds since local midnight; no
    /// year, local time zone.
    Syslog {
        month: u8,
        day: u8,
        second_of_day: u32,
    },
    /// A complete timestamp, already in Unix seconds.
    Absolute(f64),
    /// A complete local date and time without zone (`tai64nlocal`):
    /// converted with the source's zone like a syslog stamp, but the year
    /// is written, so nothing is inferred.
    LocalDateTime {
        year: i32,
        month: u8,
        day: u8,
        second_of_day: u32,
        nanosecond: u32,
    },
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Month number (1–12) of an English three-letter abbreviation.
pub fn month_number(name: &[u8]) -> Option<u8> {
    MONTHS
        .iter()
        .position(|m| &m[..] == name)
        .map(|i| i as u8 + 1)
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => None,
    }
}

/// Parses `Mmm dd hh:mm:ss` (day space- or zero-padded): exactly 15 bytes.
pub fn parse_syslog_stamp(s: &[u8]) -> Option<LogTime> {
    if s.len() != 15 || s[3] != b' ' || s[6] != b' ' || s[9] != b':' || s[12] != b':' {
        return None;
    }
    let month = month_number(&s[..3])?;
    let day = match (s[4], s[5]) {
        (b' ', d) if d.is_ascii_digit() => u32::from(d - b'0'),
        _ => two_digits(&s[4..6])?,
    };
    let (h, m, sec) = (
        two_digits(&s[7..9])?,
        two_digits(&s[10..12])?,
        two_digits(&s[13..15])?,
    );
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(LogTime::Syslog {
        month,
        day: day as u8,
        second_of_day: h * 3600 + m * 60 + sec,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD[T ]hh:mm:ss[.fraction](Z|±hh:mm|±hhmm)?` into Unix
/// seconds. Without a zone the stamp is taken as UTC.
pub fn parse_rfc3339(s: &[u8]) -> Option<LogTime> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = i64::from(two_digits(&s[0..2])? * 100 + two_digits(&s[2..4])?);
    let month = two_digits(&s[5..7])?;
    let day = two_digits(&s[8..10])?;
    let (h, m, sec) = (
        two_digits(&s[11..13])?,
        two_digits(&s[14..16])?,
        two_digits(&s[17..19])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let digits = &r[..n.min(9)];
        let v = crate::line::parse_u64(digits)? as f64;
        fraction = v / 10f64.powi(digits.len() as i32);
        rest = &r[n..];
    }
    let offset_seconds: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (hh, mm) = match tail {
                [a, b, b':', c, d] => (two_digits(&[*a, *b])?, two_digits(&[*c, *d])?),
                [a, b, c, d] => (two_digits(&[*a, *b])?, two_digits(&[*c, *d])?),
                [a, b] => (two_digits(&[*a, *b])?, 0),
                _ => return None,
            };
            let v = i64::from(hh * 3600 + mm * 60);
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + sec) - offset_seconds;
    Some(LogTime::Absolute(secs as f64 + fraction))
}

/// `2^62 + 10`: daemontools' TAI64 label of the Unix epoch (leap seconds
/// ignored, exactly what `tai64nlocal` undoes).
const TAI64_UNIX_EPOCH: u64 = (1 << 62) + 10;

fn hex_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// Parses a multilog TAI64N label `@` + 16 hex digits of seconds + 8 of
/// nanoseconds (exactly 25 bytes) into Unix seconds.
pub fn parse_tai64n(s: &[u8]) -> Option<LogTime> {
    let hex = s.strip_prefix(b"@")?;
    if hex.len() != 24 {
        return None;
    }
    let seconds = hex_value(&hex[..16])?.checked_sub(TAI64_UNIX_EPOCH)?;
    let nanos = hex_value(&hex[16..])?;
    if nanos >= 1_000_000_000 || seconds > 1 << 40 {
        return None;
    }
    Some(LogTime::Absolute(seconds as f64 + nanos as f64 / 1e9))
}

/// Parses splogger's `seconds.microseconds` Unix stamp (any fraction up to
/// 9 digits).
pub fn parse_unix_stamp(s: &[u8]) -> Option<LogTime> {
    let dot = memchr::memchr(b'.', s)?;
    if dot == 0 || dot > 12 || dot + 1 == s.len() {
        return None;
    }
    crate::line::parse_decimal(s).map(LogTime::Absolute)
}

/// Parses `tai64nlocal` output `YYYY-MM-DD HH:MM:SS[.fraction]`: local
/// time, no zone.
pub fn parse_local_datetime(s: &[u8]) -> Option<LogTime> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b' ' {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = two_digits(&s[0..2])? * 100 + two_digits(&s[2..4])?;
    let month = two_digits(&s[5..7])?;
    let day = two_digits(&s[8..10])?;
    let (h, m, sec) = (
        two_digits(&s[11..13])?,
        two_digits(&s[14..16])?,
        two_digits(&s[17..19])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let nanosecond = match &s[19..] {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
            let v = crate::line::parse_u64(digits)?;
            // Scale to nanoseconds: `.5` is 500000000 ns.
            (v * 10u64.pow(9 - digits.len() as u32)) as u32
        }
        _ => return None,
    };
    Some(LogTime::LocalDateTime {
        year: year as i32,
        month: month as u8,
        day: day as u8,
        second_of_day: h * 3600 + m * 60 + sec,
        nanosecond,
    })
}

/// Where "now" comes from when inferring years: the wall clock in
/// production, a fixed instant in tests.
pub trait Clock: Send {
    /// Current Unix time in seconds.
    fn now(&self) -> f64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A clock that always says the same instant.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub f64);

impl Clock for FixedClock {
    fn now(&self) -> f64 {
        self.0
    }
}

/// How local time maps to UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// The machine's local zone (classic syslog stamps are local time).
    Local,
    /// A fixed offset east of UTC, in seconds (tests use 0).
    Fixed(i32),
}

/// Turns [`LogTime`]s of one source into Unix seconds, inferring years.
#[derive(Debug)]
pub struct TimeResolver {
    zone: Zone,
    year: Option<i32>,
    last_month: u8,
    /// Cached `(year, month, day, hour) → UTC offset` for the local zone.
    offset_cache: Option<((i32, u8, u8, u32), i64)>,
}

impl TimeResolver {
    pub fn new(zone: Zone) -> TimeResolver {
        TimeResolver {
            zone,
            year: None,
            last_month: 0,
            offset_cache: None,
        }
    }

    /// Unix seconds of `time`, using `clock` for the first year guess.
    pub fn resolve(&mut self, time: LogTime, clock: &dyn Clock) -> f64 {
        let (month, day, second_of_day) = match time {
            LogTime::Absolute(t) => return t,
            LogTime::LocalDateTime {
                year,
                month,
                day,
                second_of_day,
                nanosecond,
            } => {
                return self.unix_seconds(year, month, day, second_of_day)
                    + f64::from(nanosecond) / 1e9;
            }
            LogTime::Syslog {
                month,
                day,
                second_of_day,
            } => (month, day, second_of_day),
        };
        let year = match self.year {
            None => {
                let y = self.guess_year(month, day, second_of_day, clock.now());
                self.year = Some(y);
                self.last_month = month;
                y
            }
            Some(y) => {
                if month + 6 <= self.last_month {
                    // December → January: a new year began.
                    self.year = Some(y + 1);
                    self.last_month = month;
                    y + 1
                } else if month >= self.last_month + 6 {
                    // A straggler from the previous year.
                    y - 1
                } else {
                    self.last_month = self.last_month.max(month);
                    y
                }
            }
        };
        self.unix_seconds(year, month, day, second_of_day)
    }

    fn guess_year(&mut self, month: u8, day: u8, second_of_day: u32, now: f64) -> i32 {
        let now_year = chrono::DateTime::from_timestamp(now as i64, 0)
            .map(|d| d.naive_utc().date())
            .map(|d| chrono::Datelike::year(&d))
            .unwrap_or(1970);
        let candidate = self.unix_seconds(now_year, month, day, second_of_day);
        // More than a week in the future: the line is from last year.
        if candidate > now + 7.0 * 86_400.0 {
            now_year - 1
        } else {
            now_year
        }
    }

    fn unix_seconds(&mut self, year: i32, month: u8, day: u8, second_of_day: u32) -> f64 {
        let days = days_from_civil(i64::from(year), u32::from(month), u32::from(day));
        let local = days * 86_400 + i64::from(second_of_day);
        let offset = match self.zone {
            Zone::Fixed(o) => i64::from(o),
            Zone::Local => self.local_offset(year, month, day, second_of_day),
        };
        (local - offset) as f64
    }

    fn local_offset(&mut self, year: i32, month: u8, day: u8, second_of_day: u32) -> i64 {
        let key = (year, month, day, second_of_day / 3600);
        if let Some((k, off)) = self.offset_cache {
            if k == key {
                return off;
            }
        }
        let off = NaiveDate::from_ymd_opt(year, u32::from(month), u32::from(day))
            .and_then(|d| d.and_hms_opt(key.3, 0, 0))
            .map(|naive| match Local.offset_from_local_datetime(&naive) {
                LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => {
                    i64::from(chrono::Offset::fix(&o).local_minus_utc())
                }
                LocalResult::None => 0,
            })
            .unwrap_or(0);
        self.offset_cache = Some((key, off));
        off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(y: i64, mo: u32, d: u32, s: u32) -> f64 {
        (days_from_civil(y, mo, d) * 86_400 + i64::from(s)) as f64
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn syslog_stamps() {
        assert_eq!(
            parse_syslog_stamp(b"Nov 21 10:00:01"),
            Some(LogTime::Syslog {
                month: 11,
                day: 21,
                second_of_day: 36_001
            })
        );
        assert!(parse_syslog_stamp(b"Nov  1 10:00:01").is_some());
        assert!(parse_syslog_stamp(b"Nov 01 10:00:01").is_some());
        assert!(parse_syslog_stamp(b"Nov 32 10:00:01").is_none());
        assert!(parse_syslog_stamp(b"Nov 21 24:00:01").is_none());
        assert!(parse_syslog_stamp(b"Nov 21 10:00").is_none());
    }

    #[test]
    fn rfc3339_variants() {
        let base = unix(2022, 4, 14, 36_963);
        assert_eq!(
            parse_rfc3339(b"2022-04-14T00:36:03Z"),
            Some(LogTime::Absolute(unix(2022, 4, 14, 2163)))
        );
        assert_eq!(
            parse_rfc3339(b"2022-04-14T10:16:03+00:00"),
            Some(LogTime::Absolute(base))
        );
        assert_eq!(
            parse_rfc3339(b"2022-04-14T12:16:03+0200"),
            Some(LogTime::Absolute(base))
        );
        match parse_rfc3339(b"2021-03-13T12:04:09.755361-01:00") {
            Some(LogTime::Absolute(t)) => {
                assert!((t - (unix(2021, 3, 13, 43_449 + 3600) + 0.755_361)).abs() < 1e-6)
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_rfc3339(b"2022-04-14T12:16:03+2").is_none());
        assert!(parse_rfc3339(b"2022-13-14T12:16:03").is_none());
        assert!(parse_rfc3339(b"2022-04-14T12:16:03.").is_none());
    }

    #[test]
    fn year_inferred_from_clock_and_rolled_at_new_year() {
        let clock = FixedClock(unix(2026, 1, 2, 0));
        let mut r = TimeResolver::new(Zone::Fixed(0));
        let dec = parse_syslog_stamp(b"Dec 31 23:59:59").unwrap();
        let jan = parse_syslog_stamp(b"Jan  1 00:00:01").unwrap();
        // Dec 31 is in the future relative to Jan 2 2026: it is 2025.
        assert_eq!(r.resolve(dec, &clock), unix(2025, 12, 31, 86_399));
        assert_eq!(r.resolve(jan, &clock), unix(2026, 1, 1, 1));
        // A late December straggler after the wrap stays in 2025.
        assert_eq!(r.resolve(dec, &clock), unix(2025, 12, 31, 86_399));
        assert_eq!(r.resolve(jan, &clock), unix(2026, 1, 1, 1));
    }

    #[test]
    fn tai64n_labels() {
        // Checked on a real run against splogger's stamp of the same line.
        match parse_tai64n(b"@400000006b01fd1901f7e60c") {
            Some(LogTime::Absolute(t)) => assert!((t - 1_795_292_431.033_023).abs() < 1e-6, "{t}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_tai64n(b"@400000006b01fd1901f7e60").is_none());
        assert!(parse_tai64n(b"@400000006b01fd19ffffffff").is_none());
        assert!(parse_tai64n(b"@000000006b01fd1901f7e60c").is_none());
        assert!(parse_tai64n(b"@40000000xb01fd1901f7e60c").is_none());
    }

    #[test]
    fn unix_stamps() {
        assert_eq!(
            parse_unix_stamp(b"1795292431.033035"),
            Some(LogTime::Absolute(1_795_292_431.033_035))
        );
        assert!(parse_unix_stamp(b"1795292431").is_none());
        assert!(parse_unix_stamp(b"1795292431.").is_none());
        assert!(parse_unix_stamp(b".5").is_none());
    }

    #[test]
    fn local_datetimes_use_the_zone() {
        let t = parse_local_datetime(b"2026-11-21 20:20:31.033023500").unwrap();
        let clock = FixedClock(0.0);
        let mut utc = TimeResolver::new(Zone::Fixed(0));
        let mut cet = TimeResolver::new(Zone::Fixed(3600));
        let expected = unix(2026, 11, 21, 73_231) + 0.033_023_5;
        assert!((utc.resolve(t, &clock) - expected).abs() < 1e-6);
        assert!((cet.resolve(t, &clock) - (expected - 3600.0)).abs() < 1e-6);
        assert!(parse_local_datetime(b"2026-11-21 20:20:31").is_some());
        assert!(parse_local_datetime(b"2026-11-21T20:20:31").is_none());
        assert!(parse_local_datetime(b"2026-11-21 20:20:31.").is_none());
        assert!(parse_local_datetime(b"2026-13-21 20:20:31.5").is_none());
    }

    #[test]
    fn current_year_when_not_in_future() {
        let clock = FixedClock(unix(2026, 11, 21, 0));
        let mut r = TimeResolver::new(Zone::Fixed(3600));
        let t = parse_syslog_stamp(b"Nov 21 10:00:00").unwrap();
        assert_eq!(r.resolve(t, &clock), unix(2026, 11, 21, 36_000 - 3600));
    }
}
