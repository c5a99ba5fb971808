//! Fuzz target: arbitrary `Window` specs and instants → `WindowSchedule::compile` and the
//! questions the planner and the daemon ask (`status`, `next_open`, `next_change`, `closes_at`).
//!
//! Beyond "no panic", it checks what `next_open` guarantees: the answer is exact (closed a
//! second before, open at it) and found quickly (bounded by the search horizon).
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use gantry::manifest::{AllowRule, Day, DenyRule, WindowSpec};
use gantry::policy::window::{NextOpen, TargetWindows, WindowSchedule};
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

/// Zones with the awkward transitions: 30-minute DST, skipped days, 2-hour DST, DST at midnight.
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Santiago",
    "Asia/Kathmandu",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "America/Havana",
    "Pacific/Kiritimati",
    "Asia/Tehran",
];

/// One call of a question must answer well within this; the horizon search is linear in days.
const BUDGET: Duration = Duration::from_secs(2);

#[derive(Arbitrary, Debug)]
enum Zone {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Clock {
    Hm(u8, u8),
    Raw(String),
}

impl Clock {
    fn text(&self) -> String {
        match self {
            Clock::Hm(h, m) => format!("{:02}:{:02}", h % 26, m % 62),
            Clock::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum DateText {
    Ymd(u8, u8, u8),
    Raw(String),
}

impl DateText {
    fn text(&self) -> String {
        match self {
            DateText::Ymd(y, m, d) => format!("{}-{:02}-{:02}", 2020 + u32::from(*y % 16), m % 14, d % 33),
            DateText::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum DateTimeText {
    Parts(DateText, Clock),
    Raw(String),
}

impl DateTimeText {
    fn text(&self) -> String {
        match self {
            DateTimeText::Parts(d, c) => format!("{}T{}", d.text(), c.text()),
            DateTimeText::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Allow {
    days: Option<Vec<u8>>,
    start: Clock,
    end: Clock,
}

#[derive(Arbitrary, Debug)]
struct Deny {
    dates: Option<Vec<DateText>>,
    from: Option<DateTimeText>,
    to: Option<DateTimeText>,
    days: Option<Vec<u8>>,
    start: Option<Clock>,
    end: Option<Clock>,
}

#[derive(Arbitrary, Debug)]
struct Window {
    zone: Zone,
    allow: Vec<Allow>,
    deny: Vec<Deny>,
}

#[derive(Arbitrary, Debug)]
enum When {
    /// Seconds from 2020-01-01T00:00:00Z, within about 16 years.
    Near(u32),
    /// Anywhere jiff can represent, to reach the edges of time.
    Anywhere(i64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    windows: Vec<Window>,
    instants: Vec<When>,
}

fn days(raw: &[u8]) -> Vec<Day> {
    const ALL: [Day; 7] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat, Day::Sun];
    raw.iter().map(|b| ALL[usize::from(*b) % 7]).collect()
}

fn spec(w: &Window) -> WindowSpec {
    WindowSpec {
        selector: None,
        timezone: match &w.zone {
            Zone::Known(i) => ZONES[usize::from(*i) % ZONES.len()].to_string(),
            Zone::Raw(s) => s.clone(),
        },
        allow: w
            .allow
            .iter()
            .take(8)
            .map(|a| AllowRule {
                days: a.days.as_deref().map(days),
                start: a.start.text(),
                end: a.end.text(),
            })
            .collect(),
        deny: w
            .deny
            .iter()
            .take(8)
            .map(|d| DenyRule {
                dates: d
                    .dates
                    .as_ref()
                    .map(|v| v.iter().take(16).map(DateText::text).collect()),
                from: d.from.as_ref().map(DateTimeText::text),
                to: d.to.as_ref().map(DateTimeText::text),
                days: d.days.as_deref().map(days),
                start: d.start.as_ref().map(Clock::text),
                end: d.end.as_ref().map(Clock::text),
            })
            .collect(),
    }
}

fn instant(when: &When) -> Timestamp {
    const BASE: i64 = 1_577_836_800; // 2020-01-01T00:00:00Z
    let second = match when {
        When::Near(s) => BASE + i64::from(*s % (16 * 366 * 86_400)),
        When::Anywhere(s) => {
            let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
            min + s.rem_euclid(max - min)
        }
    };
    Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < BUDGET, "{what} took {took:?}");
    out
}

fuzz_target!(|input: Input| {
    let schedules: Vec<WindowSchedule> = input
        .windows
        .iter()
        .take(4)
        .enumerate()
        .filter_map(|(i, w)| WindowSchedule::compile(&format!("w{i}"), &spec(w)).ok())
        .collect();
    if schedules.is_empty() {
        return;
    }
    let gates = [TargetWindows::new(&schedules), TargetWindows::deny_only(&schedules)];
    for when in input.instants.iter().take(4) {
        let t = instant(when);
        for gate in &gates {
            let open = timed("status", || gate.status(t)).is_open();
            let next = timed("next_open", || gate.next_open(t));
            match &next {
                NextOpen::OpenNow => assert!(open, "next_open says open now at {t} but status says closed"),
                NextOpen::OpensAt(z) => {
                    let at = z.timestamp();
                    assert!(!open, "next_open gives {at} but it is open at {t}");
                    assert!(at > t, "next_open {at} is not after {t}");
                    assert!(gate.is_open(at), "next_open {at} is not open");
                    if let Ok(before) = at.checked_sub(SignedDuration::from_secs(1)) {
                        assert!(!gate.is_open(before), "next_open {at} was already open a second before");
                    }
                    let _ = next.opens_at();
                }
                NextOpen::Never => assert!(!open, "next_open says never but it is open at {t}"),
            }
            let _ = timed("next_change", || gate.next_change(t));
            let _ = timed("closes_at", || gate.closes_at(t));
        }
    }
});
