//! Instants as people read them on the status page and in notifications: to the second, in a
//! named zone, with how far away they are ("in 3 h", "12 min ago"), never nanoseconds.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// `2026-12-05 02:00:00 CET`: `at` in `zone`, to the second, with the zone's abbreviation.
pub fn local(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// How far `at` is from `now`, in its two largest units: `in 3 h 5 min`, `2 d 4 h ago`, `now`
/// (under a second). Units shorter than the largest by more than one step are left out, so
/// `in 6 d 23 h` rather than `in 6 d 23 h 59 min 59 s`.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let span = at.duration_since(now);
    let seconds = span.as_secs().unsigned_abs();
    if seconds == 0 {
        return "now".to_string();
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let first = units
        .iter()
        .position(|(size, _)| seconds >= *size)
        .unwrap_or(units.len() - 1);
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (size, name) in &units[first..(first + 2).min(units.len())] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            parts.push(format!("{n} {name}"));
        }
    }
    let text = parts.join(" ");
    if span > SignedDuration::ZERO {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// [`local`] and [`relative`] together: `2026-12-05 02:00:00 CET (in 3 h)`.
pub fn local_and_relative(at: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    format!("{} ({})", local(at, zone), relative(at, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn relative_reads_in_its_two_largest_units() {
        let now = at("2026-12-01T10:00:00Z");
        for (then, want) in [
            ("2026-12-01T10:00:00.4Z", "now"),
            ("2026-12-01T10:00:30Z", "in 30 s"),
            ("2026-12-01T10:45:07Z", "in 45 min 7 s"),
            ("2026-12-01T13:00:00Z", "in 3 h"),
            ("2026-12-01T13:05:59Z", "in 3 h 5 min"),
            ("2026-12-08T09:59:59Z", "in 6 d 23 h"),
            ("2026-12-01T09:48:00Z", "12 min ago"),
            ("2026-11-29T06:00:00Z", "2 d 4 h ago"),
        ] {
            assert_eq!(relative(at(then), now), want, "{then}");
        }
    }

    /// Local time follows the zone's rules: CET in winter, CEST in summer, to the second.
    #[test]
    fn local_names_the_zone_and_keeps_seconds() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(local(at("2026-12-05T01:00:09Z"), &berlin), "2026-12-05 02:00:09 CET");
        assert_eq!(local(at("2026-07-05T01:00:09Z"), &berlin), "2026-07-05 03:00:09 CEST");
        assert_eq!(
            local_and_relative(at("2026-12-05T01:00:00Z"), at("2026-12-04T22:00:00Z"), &TimeZone::UTC),
            "2026-12-05 01:00:00 UTC (in 3 h)"
        );
    }
}
