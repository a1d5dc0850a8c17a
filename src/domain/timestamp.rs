//! Reading a time the hospital's app wrote. On SQLite (and in a Postgres text column) it may be
//! anything: epoch seconds or milliseconds, RFC 3339, SQLite's or Postgres's own text output,
//! or a US-style `MM/DD/YYYY HH:MM`. A time without a zone is read as UTC, as SQLite's
//! `CURRENT_TIMESTAMP` writes it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Epoch numbers at or above this are milliseconds: as seconds they would be past the year
/// 5000, as milliseconds it is March 1973.
const MILLIS_FROM: f64 = 1e11;

/// The forms read without a zone, after `T` has become a space.
const NAIVE_FORMS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
];

/// The time `raw` stands for, or `None` when it cannot be read.
pub fn read(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Ok(n) = raw.parse::<f64>() {
        return epoch(n);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.to_utc());
    }
    // `2026-12-03 07:34:00.123+00` (Postgres text output), `...Z`, `...+05:30`, or no zone.
    let spaced = match raw.as_bytes().get(10) {
        Some(b'T' | b't') if raw.is_char_boundary(11) => format!("{} {}", &raw[..10], &raw[11..]),
        _ => raw.to_string(),
    };
    let text = spaced
        .strip_suffix(['Z', 'z'])
        .unwrap_or(&spaced)
        .trim_end();
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.to_utc());
    }
    if let Some(t) = NAIVE_FORMS
        .iter()
        .find_map(|form| NaiveDateTime::parse_from_str(text, form).ok())
    {
        return Some(t.and_utc());
    }
    ["%Y-%m-%d", "%m/%d/%Y"]
        .iter()
        .find_map(|form| NaiveDate::parse_from_str(text, form).ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn epoch(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let millis = if n >= MILLIS_FROM { n } else { n * 1000.0 };
    if millis > i64::MAX as f64 {
        return None;
    }
    DateTime::from_timestamp_millis(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn reads_the_forms_hospital_apps_write() {
        let t = at("2026-12-03T07:34:00Z");
        for raw in [
            "1796283240",
            "1796283240000",
            "1796283240.0",
            "2026-12-03T07:34:00Z",
            "2026-12-03T07:34:00.000Z",
            "2026-12-03T08:34:00+01:00",
            "2026-12-03 07:34:00",
            "2026-12-03 07:34:00.000",
            "2026-12-03 07:34",
            "2026-12-03 07:34:00+00",
            "2026-12-03 07:34:00.000000+00",
            "2026-12-03 02:34:00-05",
            "2026-12-03 13:04:00+05:30",
            "2026-12-03 07:34:00Z",
            "2026-12-03T07:34:00",
            "12/03/2026 07:34",
            "12/03/2026 07:34:00",
            " 2026-12-03T07:34:00Z ",
        ] {
            assert_eq!(read(raw), Some(t), "{raw:?}");
        }
        assert_eq!(read("2026-12-03"), Some(at("2026-12-03T00:00:00Z")));
        assert_eq!(
            read("2026-12-03 07:34:00.123456+00"),
            Some(at("2026-12-03T07:34:00.123456Z"))
        );
    }

    #[test]
    fn leaves_what_it_cannot_read() {
        for raw in [
            "",
            "  ",
            "garbage",
            "NaN",
            "inf",
            "-5",
            "0",
            "1e400",
            "13/45/2026 07:34",
            "2026-12-03é07:34",
            "2026-13-03 07:34:00",
        ] {
            assert_eq!(read(raw), None, "{raw:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(raw in "\\PC*") {
            let _ = read(&raw);
        }
    }
}
