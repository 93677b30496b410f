//! `--since` / `--until` values: a duration back from now (`10m`, `2h 30m`), an
//! RFC 3339 time (`2026-12-02T04:00:00Z`), or `now`. Untrusted input: errors,
//! never panics (fuzzed in `netta/fuzz`).
use std::time::{Duration, UNIX_EPOCH};

/// Wall-clock microseconds since the epoch for `s`, relative to `now_us`.
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty time (try 10m, 2h or 2026-12-02T04:00:00Z)".into());
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_us);
    }
    if t.as_bytes()[0].is_ascii_digit() && t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
        let st = humantime::parse_rfc3339_weak(t)
            .map_err(|e| format!("`{}` is not an RFC 3339 time: {e}", escape(t)))?;
        let d = st
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("`{}` is before 1970", escape(t)))?;
        return i64::try_from(d.as_micros())
            .map_err(|_| format!("`{}` is too far away", escape(t)));
    }
    let d: Duration = humantime::parse_duration(t).map_err(|e| {
        format!(
            "`{}` is neither a duration nor an RFC 3339 time ({e}; try 10m, 2h or 2026-12-02T04:00:00Z)",
            escape(t)
        )
    })?;
    let us = i64::try_from(d.as_micros()).map_err(|_| format!("`{}` is too long", escape(t)))?;
    Ok(now_us.saturating_sub(us))
}

/// Wall-clock microseconds since the epoch, now (the one clock read here, for callers at the edge).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn escape(s: &str) -> String {
    crate::core::sanitize::escape(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_648_000_000_000; // 2025-12-02T04:00:00Z

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_time("10m", NOW), Ok(NOW - 600_000_000));
        assert_eq!(parse_time("1h 30m", NOW), Ok(NOW - 5_400_000_000));
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("0s", NOW), Ok(NOW));
    }

    #[test]
    fn rfc3339_times_are_absolute() {
        assert_eq!(parse_time("2025-12-02T04:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2025-12-02T04:00:01.5Z", 0), Ok(NOW + 1_500_000));
        assert_eq!(parse_time("2025-12-02 04:00:00", 0), Ok(NOW));
    }

    #[test]
    fn bad_input_is_a_one_line_error() {
        for bad in [
            "",
            "yesterday",
            "10 parsecs",
            "2025-13-02T04:00:00Z",
            "1970-01-01T00:00:00+0\n",
            "-5m",
            "99999999999999999999h",
            "\u{1b}[31m",
        ] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{bad:?}: {e}");
        }
    }
}
