//! Maintenance windows: whether a target may start a change at an instant, and exactly when next.
//!
//! A `Window` manifest (SPEC §2) is compiled once into a [`WindowSchedule`]; a target governed
//! by several windows is judged through [`TargetWindows`]. Everything here is pure: the instant
//! is always a parameter, and nothing reads a clock, a file or the system's time zone database
//! (zones come from jiff's bundled copy when the system has none).
//!
//! # Semantics
//!
//! A target may **start** a change at instant `t` iff
//! - no governing window has an allow rule, or some allow rule of some governing window is
//!   open at `t`; and
//! - no deny rule (freeze) of any governing window covers `t`.
//!
//! Rules are wall-clock times in their window's zone, turned into real instants day by day:
//! - **Allow ranges are half-open**, `[start, end)`: `02:00`–`06:00` is open at 02:00:00 and
//!   closed again at 06:00:00.
//! - **Weekly deny ranges are half-open too**: `end` means the same in allow and deny rules
//!   (issue #10: an `08:30`–`16:00` freeze used to hold until 16:01). A freeze to the end of a
//!   day ends at `24:00`, exactly. A dated range's `to` covers the minute (or second) it names:
//!   `to: 2026-11-30T23:59` lasts until 2026-12-01T00:00, which is what people mean by it.
//! - A `dates` freeze covers each whole local day, `[00:00, next day 00:00)`.
//! - `end` before `start` crosses midnight: `sat 22:00`–`02:00` runs from Saturday 22:00 to
//!   Sunday 02:00; `days` name the day a range **starts** on. `end == start` is a full day
//!   (`sat 02:00`–`02:00` runs to Sunday 02:00, plus that minute for a freeze); `00:00`–`24:00`
//!   is a whole day too.
//!
//! # Daylight saving
//!
//! Each endpoint is resolved on its own local day:
//! - A local time that does not exist (in the spring-forward gap) **moves forward to the end of
//!   the gap**, the first instant that exists: on 2026-03-29 in Europe/Berlin both 02:00 and
//!   02:30 become 03:00 CEST. A range thus covers exactly the wall-clock times of that day
//!   that exist: `02:00`–`06:00` lasts 3 real hours that day, and `02:15`–`02:45` does not open
//!   at all. (jiff's `compatible` disambiguation would move 02:30 by the gap's length to 03:30,
//!   leaving the target closed at 03:15 although the clock shows a time inside the range.)
//! - A local time that occurs twice (in the fall-back fold) takes its **first** occurrence: on
//!   2026-10-25 in Europe/Berlin `02:00`–`06:00` starts at 02:00 CEST and ends at 06:00 CET,
//!   5 real hours. An end inside the fold takes the first occurrence too, so `00:00`–`02:30` is
//!   closed during the repeated 02:00–02:30 CET.
//!
//! # Search horizon
//!
//! [`TargetWindows::next_open`] and [`TargetWindows::next_change`] look at most
//! [`SEARCH_HORIZON`] (400 days) ahead: a year of dated freezes, a full cycle of every zone's
//! daylight-saving rules, and a month to spare. A target that cannot open within it is
//! reported as [`NextOpen::Never`] (e.g. allowed only on Saturdays and denied every Saturday);
//! the search never runs unbounded.

use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};

use crate::manifest::{AllowRule, Day, DenyRule, WindowSpec};

/// How far ahead [`TargetWindows::next_open`] and [`TargetWindows::next_change`] search.
pub const SEARCH_HORIZON: SignedDuration = SignedDuration::from_hours(400 * 24);

/// The first stretch of time searched; each next stretch is twice as long, so a window that
/// opens soon costs a few days of arithmetic and the whole horizon a handful of passes.
const FIRST_SEARCH_STRETCH: SignedDuration = SignedDuration::from_hours(48);

/// A mistake in a `Window` manifest, found by [`WindowSchedule::compile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct WindowError {
    /// JSON pointer to the offending value in the manifest, e.g. `/spec/allow/0/start`.
    pub pointer: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// One `Window` manifest, checked and ready for arithmetic.
#[derive(Debug, Clone)]
pub struct WindowSchedule {
    name: String,
    zone_name: String,
    zone: TimeZone,
    allow: Vec<DailyRange>,
    deny: Vec<Freeze>,
}

impl WindowSchedule {
    /// Checks the `spec` of the window `name` (its `metadata.name`) and compiles it.
    ///
    /// # Errors
    ///
    /// Every mistake found, not just the first, each with a JSON pointer into the manifest:
    /// an unknown time zone, a malformed time, date or date-time, a deny rule with no form or
    /// several, a missing half of a pair, an empty list, a freeze whose `to` precedes `from`.
    pub fn compile(name: &str, spec: &WindowSpec) -> Result<WindowSchedule, Vec<WindowError>> {
        let mut errors = Errors::default();
        let zone = match TimeZone::get(&spec.timezone) {
            Ok(zone) => Some(zone),
            Err(_) => {
                errors.push("/spec/timezone", unknown_zone_message(&spec.timezone));
                None
            }
        };
        let allow: Vec<DailyRange> = spec
            .allow
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| compile_allow(rule, &format!("/spec/allow/{i}"), &mut errors))
            .collect();
        let deny: Vec<Freeze> = spec
            .deny
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| compile_deny(rule, &format!("/spec/deny/{i}"), &spec.timezone, &mut errors))
            .collect();
        match zone {
            Some(zone) if errors.0.is_empty() => Ok(WindowSchedule {
                name: name.to_owned(),
                // Lookups ignore case; messages show the canonical spelling.
                zone_name: zone.iana_name().unwrap_or(&spec.timezone).to_owned(),
                zone,
                allow,
                deny,
            }),
            _ => Err(errors.0),
        }
    }

    /// The window's `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone the window's times are written in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Whether the window has allow rules (and so restricts when targets may start).
    pub fn has_allow_rules(&self) -> bool {
        !self.allow.is_empty()
    }

    /// Appends the instant ranges of this window's rules that overlap `[from, until)`.
    fn ranges<'w>(&'w self, scope: Scope, from: Timestamp, until: Timestamp, out: &mut Vec<Ranged<'w>>) {
        // A daily range lasts at most a day and a minute after the local day it starts on, and
        // a fold at midnight can repeat the end of the previous date: a day on each side of the
        // local dates of `from` and `until` is enough to see every range that overlaps.
        let first_day = day_before(day_before(self.zone.to_datetime(from).date()));
        let last_day = day_after(self.zone.to_datetime(until).date());
        let days = || {
            std::iter::successors(Some(first_day), |day| day.tomorrow().ok()).take_while(move |day| *day <= last_day)
        };
        let mut push = |start: Timestamp, end: Timestamp, rule: Rule| {
            if start < until && end > from {
                out.push(Ranged {
                    start,
                    end,
                    window: self,
                    rule,
                });
            }
        };
        if scope != Scope::DenyOnly {
            for range in &self.allow {
                for (start, end) in days().filter_map(|day| range.on(&self.zone, day)) {
                    push(start, end, Rule::Allow);
                }
            }
        }
        let freezes = if scope == Scope::AllowOnly {
            &[][..]
        } else {
            &self.deny[..]
        };
        for (index, freeze) in freezes.iter().enumerate() {
            match freeze {
                Freeze::Dates(dates) => {
                    for &date in dates.iter().filter(|d| (first_day..=last_day).contains(*d)) {
                        if let Some((start, end)) = whole_day(&self.zone, date) {
                            push(
                                start,
                                end,
                                Rule::Deny {
                                    index,
                                    date: Some(date),
                                },
                            );
                        }
                    }
                }
                Freeze::Range { from, until, .. } => {
                    let start = resolve(&self.zone, *from);
                    let end = resolve(&self.zone, *until);
                    if let (Some(start), Some(end)) = (start, end) {
                        push(start, end, Rule::Deny { index, date: None });
                    }
                }
                Freeze::Daily(range) => {
                    for (start, end) in days().filter_map(|day| range.on(&self.zone, day)) {
                        push(start, end, Rule::Deny { index, date: None });
                    }
                }
            }
        }
    }

    /// How a closed-by message names the freeze `index` (the `date` it matched, for dates).
    fn describe_freeze(&self, index: usize, date: Option<Date>) -> String {
        let zone = &self.zone_name;
        match (self.deny.get(index), date) {
            (Some(Freeze::Dates(_)), Some(date)) => format!("{date} (whole day, {zone})"),
            (Some(Freeze::Range { label, .. }), _) => format!("{label} ({zone})"),
            (Some(Freeze::Daily(range)), _) => format!("{} ({zone})", range.label),
            _ => format!("deny rule {index} ({zone})"),
        }
    }
}

/// The windows governing one target, judged together (SPEC §2).
#[derive(Debug, Clone)]
pub struct TargetWindows<'w> {
    windows: Vec<&'w WindowSchedule>,
    scope: Scope,
}

/// Which rules gate a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Allow windows and freezes: the default for every change.
    AllowAndDeny,
    /// Freezes only: an update type with `windows: false`.
    DenyOnly,
    /// Allow windows only: an emergency release whose rule overrides freezes (issue #16).
    AllowOnly,
}

impl<'w> TargetWindows<'w> {
    /// The target may start while one of its allow windows is open (or it has none) and no
    /// freeze holds. Windows are judged in name order, so results do not depend on the order
    /// the manifests were read in.
    pub fn new(windows: impl IntoIterator<Item = &'w WindowSchedule>) -> Self {
        let mut windows: Vec<_> = windows.into_iter().collect();
        windows.sort_by(|a, b| a.name.cmp(&b.name));
        TargetWindows {
            windows,
            scope: Scope::AllowAndDeny,
        }
    }

    /// Like [`TargetWindows::new`], but allow rules are ignored and only freezes hold the
    /// target: for an update type with `windows: false` (SPEC §2, an urgent patch).
    pub fn deny_only(windows: impl IntoIterator<Item = &'w WindowSchedule>) -> Self {
        TargetWindows {
            scope: Scope::DenyOnly,
            ..TargetWindows::new(windows)
        }
    }

    /// Like [`TargetWindows::new`], but freezes are ignored and only allow rules hold the
    /// target: an emergency release under a rule with `freezes: override` (SPEC §2).
    pub fn allow_only(windows: impl IntoIterator<Item = &'w WindowSchedule>) -> Self {
        TargetWindows {
            scope: Scope::AllowOnly,
            ..TargetWindows::new(windows)
        }
    }

    /// Whether the target may start a change at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        self.status(t).is_open()
    }

    /// Whether the target may start a change at `t`, and if not, every reason why.
    pub fn status(&self, t: Timestamp) -> Openness {
        let ranges = self.ranges(t, just_after(t));
        let mut reasons = Vec::new();
        if self.allow_gates() && !ranges.iter().any(|r| matches!(r.rule, Rule::Allow)) {
            let windows = self
                .windows
                .iter()
                .filter(|w| w.has_allow_rules())
                .map(|w| w.name.clone())
                .collect();
            reasons.push(ClosedBy::OutsideAllow { windows });
        }
        for range in &ranges {
            if let Rule::Deny { index, date } = range.rule {
                reasons.push(ClosedBy::Frozen {
                    window: range.window.name.clone(),
                    pointer: format!("/spec/deny/{index}"),
                    freeze: range.window.describe_freeze(index, date),
                });
            }
        }
        if reasons.is_empty() {
            Openness::Open
        } else {
            Openness::Closed(reasons)
        }
    }

    /// When the target may next start a change, at or after `t`, to the second.
    ///
    /// The instant is shown in the zone of the window whose allow rule opens then (the first
    /// by name if several do), else of the window whose freeze ends then, else of the first
    /// window by name.
    ///
    /// # Guarantees
    ///
    /// The answer is exact: closed just before the instant, open at it. The search is bounded
    /// by [`SEARCH_HORIZON`]; beyond it, the answer is [`NextOpen::Never`].
    pub fn next_open(&self, t: Timestamp) -> NextOpen {
        match self.search(t, State::Open) {
            Some(at) if at == t => NextOpen::OpenNow,
            Some(at) => NextOpen::OpensAt(at.to_zoned(self.display_zone(at))),
            None => NextOpen::Never,
        }
    }

    /// The first instant after `t` at which the target opens or closes, if one falls within
    /// [`SEARCH_HORIZON`]: when the daemon should look at the target again.
    pub fn next_change(&self, t: Timestamp) -> Option<Timestamp> {
        let now = if self.is_open(t) { State::Open } else { State::Closed };
        self.search(t, now.other())
    }

    /// When the target, open at `t`, closes again; `None` if it is closed at `t` or stays open
    /// throughout [`SEARCH_HORIZON`]. Shown in the zone of the allow window open at `t`, else
    /// of the first window by name.
    pub fn closes_at(&self, t: Timestamp) -> Option<Zoned> {
        if !self.is_open(t) {
            return None;
        }
        let at = self.search(t, State::Closed)?;
        Some(at.to_zoned(self.display_zone(t)))
    }

    /// True when allow rules restrict starts: some window has one and they are not ignored.
    fn allow_gates(&self) -> bool {
        self.scope != Scope::DenyOnly && self.windows.iter().any(|w| w.has_allow_rules())
    }

    fn ranges(&self, from: Timestamp, until: Timestamp) -> Vec<Ranged<'w>> {
        let mut out = Vec::new();
        for window in &self.windows {
            window.ranges(self.scope, from, until, &mut out);
        }
        out
    }

    /// The first instant in `[t, t + SEARCH_HORIZON)` at which the target is in `wanted`.
    fn search(&self, t: Timestamp, wanted: State) -> Option<Timestamp> {
        let horizon = t.checked_add(SEARCH_HORIZON).unwrap_or(Timestamp::MAX);
        let mut from = t;
        let mut stretch = FIRST_SEARCH_STRETCH;
        while from < horizon {
            let until = from.checked_add(stretch).map_or(horizon, |until| until.min(horizon));
            if let Some(found) = self.first_in(from, until, wanted) {
                return Some(found);
            }
            from = until;
            stretch = stretch.checked_mul(2).unwrap_or(SEARCH_HORIZON);
        }
        None
    }

    /// The first instant in `[from, until)` at which the target is in `wanted`: a sweep over
    /// the ends of every range, since the state only changes where a range starts or ends.
    fn first_in(&self, from: Timestamp, until: Timestamp, wanted: State) -> Option<Timestamp> {
        let mut edges: Vec<(Timestamp, Rule, i32)> = Vec::new();
        for range in self.ranges(from, until) {
            edges.push((range.start, range.rule, 1));
            edges.push((range.end, range.rule, -1));
        }
        edges.sort_by_key(|(at, ..)| *at);
        let allow_gates = self.allow_gates();
        let (mut allowing, mut denying) = (0, 0);
        let mut edges = edges.into_iter().peekable();
        let mut at = from;
        loop {
            while let Some((_, rule, delta)) = edges.next_if(|(edge, ..)| *edge <= at) {
                match rule {
                    Rule::Allow => allowing += delta,
                    Rule::Deny { .. } => denying += delta,
                }
            }
            let open = (!allow_gates || allowing > 0) && denying == 0;
            if State::of(open) == wanted {
                return Some(at);
            }
            match edges.peek() {
                Some((next, ..)) if *next < until => at = *next,
                _ => return None,
            }
        }
    }

    /// The zone to show the instant `at` in (see [`TargetWindows::next_open`]).
    fn display_zone(&self, at: Timestamp) -> TimeZone {
        let before = at.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(at);
        let ranges = self.ranges(before, just_after(at));
        let allow_open = ranges
            .iter()
            .find(|r| matches!(r.rule, Rule::Allow) && r.start <= at && at < r.end);
        let freeze_ends = || {
            ranges
                .iter()
                .find(|r| matches!(r.rule, Rule::Deny { .. }) && r.end == at)
        };
        (allow_open.or_else(freeze_ends))
            .map(|r| r.window)
            .or_else(|| self.windows.first().copied())
            .map_or(TimeZone::UTC, |w| w.zone.clone())
    }
}

/// Whether a target may start a change at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Openness {
    /// It may.
    Open,
    /// It may not, for these reasons (at least one).
    Closed(Vec<ClosedBy>),
}

impl Openness {
    /// True for [`Openness::Open`].
    pub fn is_open(&self) -> bool {
        matches!(self, Openness::Open)
    }
}

/// One reason a target is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedBy {
    /// The target's windows have allow rules, and none of them is open.
    OutsideAllow {
        /// The names of the governing windows that have allow rules.
        windows: Vec<String>,
    },
    /// A freeze of a governing window covers the instant.
    Frozen {
        /// The name of the window.
        window: String,
        /// JSON pointer to the deny rule in that window's manifest, e.g. `/spec/deny/1`.
        pointer: String,
        /// What the freeze covers, for people, e.g. `2026-12-24 (whole day, Europe/Berlin)`.
        freeze: String,
    },
}

impl fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClosedBy::OutsideAllow { windows } => {
                let plural = if windows.len() == 1 { "" } else { "s" };
                let names: Vec<String> = windows.iter().map(|w| format!("\"{w}\"")).collect();
                write!(f, "outside the allow window{plural} of {}", names.join(", "))
            }
            ClosedBy::Frozen { window, freeze, .. } => {
                write!(f, "frozen by window \"{window}\": {freeze}")
            }
        }
    }
}

/// When a target may next start a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextOpen {
    /// It may start now.
    OpenNow,
    /// It opens at this instant, in the zone of the window that opens it.
    OpensAt(Zoned),
    /// It does not open within [`SEARCH_HORIZON`].
    Never,
}

impl NextOpen {
    /// The instant for [`NextOpen::OpensAt`], as RFC 3339 with the zone's offset
    /// (`2026-12-05T02:00:00+01:00`): how plans print `opens_at`.
    pub fn opens_at(&self) -> Option<String> {
        match self {
            NextOpen::OpensAt(zoned) => Some(rfc3339(zoned)),
            NextOpen::OpenNow | NextOpen::Never => None,
        }
    }
}

/// Formats `zoned` as RFC 3339 with its offset, e.g. `2026-03-29T03:00:00+02:00`.
pub fn rfc3339(zoned: &Zoned) -> String {
    zoned.timestamp().display_with_offset(zoned.offset()).to_string()
}

/// Open or closed, as a search target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
}

impl State {
    fn of(open: bool) -> State {
        if open { State::Open } else { State::Closed }
    }

    fn other(self) -> State {
        match self {
            State::Open => State::Closed,
            State::Closed => State::Open,
        }
    }
}

/// A rule of a window, as the source of an instant range.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Allow,
    /// `date`: which date of a `dates` freeze the range is.
    Deny {
        index: usize,
        date: Option<Date>,
    },
}

/// One occurrence of a rule as real instants, `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Ranged<'w> {
    start: Timestamp,
    end: Timestamp,
    window: &'w WindowSchedule,
    rule: Rule,
}

/// A range of wall-clock time on chosen weekdays: every allow rule, and the weekly freeze.
#[derive(Debug, Clone)]
struct DailyRange {
    days: DaySet,
    start: Time,
    /// Exclusive; a freeze's is already moved past the minute (or second) it names.
    end: TimeOfDay,
    /// The range ends on the day after it starts (`end` was written at or before `start`).
    ends_next_day: bool,
    /// As written, e.g. `sat, sun 02:00–06:00`.
    label: String,
}

impl DailyRange {
    /// Checks a range written as `days`, `start`, `end` at the JSON pointer `at`.
    fn compile(days: Option<&[Day]>, start: &str, end: &str, at: &str, errors: &mut Errors) -> Option<DailyRange> {
        let days = compile_days(days, &format!("{at}/days"), errors);
        let start_time = errors.check(&format!("{at}/start"), parse_start(start));
        let end_time = errors.check(&format!("{at}/end"), parse_time_of_day(end));
        let ((days, days_label), start_time, (end_time, _)) = (days?, start_time?, end_time?);
        // Whether the range crosses midnight is decided on the times as written, so that
        // `end == start` is a full day for allow and deny rules alike.
        let ends_next_day = end_time <= TimeOfDay::At(start_time);
        Some(DailyRange {
            days,
            start: start_time,
            end: end_time,
            ends_next_day,
            label: format!("{days_label} {start}–{end}"),
        })
    }

    /// The instants the range covers when started on the local `day`, if it is one of its
    /// days and the range is not empty that day (it can vanish in a spring-forward gap).
    fn on(&self, zone: &TimeZone, day: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days.contains(day.weekday()) {
            return None;
        }
        let start = resolve(zone, day.to_datetime(self.start))?;
        let end_day = if self.ends_next_day { day.tomorrow().ok()? } else { day };
        let end = match self.end {
            TimeOfDay::At(time) => resolve(zone, end_day.to_datetime(time))?,
            TimeOfDay::EndOfDay => resolve(zone, end_day.tomorrow().ok()?.to_datetime(Time::MIN))?,
        };
        (start < end).then_some((start, end))
    }
}

/// A deny rule.
#[derive(Debug, Clone)]
enum Freeze {
    /// Whole local days, sorted.
    Dates(Vec<Date>),
    /// `[from, until)` in local time; `until` is already past the minute `to` names.
    Range {
        from: DateTime,
        until: DateTime,
        label: String,
    },
    /// A weekly range of wall-clock time, like an allow rule but covering its end minute.
    Daily(DailyRange),
}

/// A wall-clock time as written in a range, where `24:00` is the end of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimeOfDay {
    At(Time),
    EndOfDay,
}

/// Whether a time was written with seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Minute,
    Second,
}

impl Precision {
    fn length(self) -> SignedDuration {
        match self {
            Precision::Minute => SignedDuration::from_secs(60),
            Precision::Second => SignedDuration::from_secs(1),
        }
    }
}

/// A set of weekdays, one bit each from Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DaySet(u8);

impl DaySet {
    const EVERY_DAY: DaySet = DaySet(0b111_1111);

    fn of(days: &[Day]) -> DaySet {
        DaySet(days.iter().fold(0, |bits, day| bits | 1 << day_index(*day)))
    }

    fn contains(self, weekday: Weekday) -> bool {
        self.0 & 1 << weekday.to_monday_zero_offset() != 0
    }
}

fn day_index(day: Day) -> u8 {
    match day {
        Day::Mon => 0,
        Day::Tue => 1,
        Day::Wed => 2,
        Day::Thu => 3,
        Day::Fri => 4,
        Day::Sat => 5,
        Day::Sun => 6,
    }
}

fn day_name(day: Day) -> &'static str {
    match day {
        Day::Mon => "mon",
        Day::Tue => "tue",
        Day::Wed => "wed",
        Day::Thu => "thu",
        Day::Fri => "fri",
        Day::Sat => "sat",
        Day::Sun => "sun",
    }
}

/// The instant a local date-time names in `zone`: the first occurrence of a repeated time,
/// the end of the gap for a skipped one (see the module docs). `None` only at the limits of
/// jiff's range (years ±9999).
fn resolve(zone: &TimeZone, local: DateTime) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_timestamp(local);
    let earlier = ambiguous.earlier().ok()?;
    match ambiguous.offset() {
        // `earlier` is then `local` read with the offset after the gap: an instant before the
        // transition, so the transition that follows it is the end of the gap.
        AmbiguousOffset::Gap { .. } => zone.following(earlier).next().map(|t| t.timestamp()),
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => Some(earlier),
    }
}

/// The instants of the local day `date`, `[00:00, next day 00:00)`.
fn whole_day(zone: &TimeZone, date: Date) -> Option<(Timestamp, Timestamp)> {
    let start = resolve(zone, date.to_datetime(Time::MIN))?;
    let end = resolve(zone, date.tomorrow().ok()?.to_datetime(Time::MIN))?;
    Some((start, end))
}

fn day_before(date: Date) -> Date {
    date.yesterday().unwrap_or(date)
}

fn day_after(date: Date) -> Date {
    date.tomorrow().unwrap_or(date)
}

/// The smallest range `[t, just_after(t))` that contains `t`.
fn just_after(t: Timestamp) -> Timestamp {
    t.checked_add(SignedDuration::from_nanos(1)).unwrap_or(Timestamp::MAX)
}

/// Collects compile errors.
#[derive(Default)]
struct Errors(Vec<WindowError>);

impl Errors {
    fn push(&mut self, pointer: &str, message: impl Into<String>) {
        self.0.push(WindowError {
            pointer: pointer.to_owned(),
            message: message.into(),
        });
    }

    /// The value of `result`, or `None` with its error recorded at `pointer`.
    fn check<T>(&mut self, pointer: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(pointer, message)).ok()
    }
}

fn compile_allow(rule: &AllowRule, at: &str, errors: &mut Errors) -> Option<DailyRange> {
    let days = rule.days.as_deref();
    DailyRange::compile(days, &rule.start, &rule.end, at, errors)
}

fn compile_deny(rule: &DenyRule, at: &str, zone_name: &str, errors: &mut Errors) -> Option<Freeze> {
    let dated = rule.dates.is_some();
    let ranged = rule.from.is_some() || rule.to.is_some();
    let daily = rule.days.is_some() || rule.start.is_some() || rule.end.is_some();
    let forms: Vec<&str> = [(dated, "dates"), (ranged, "from/to"), (daily, "days/start/end")]
        .into_iter()
        .filter_map(|(present, form)| present.then_some(form))
        .collect();
    match forms.as_slice() {
        [] => {
            errors.push(
                at,
                "deny rule is empty; give dates, or from and to, or start and end (with optional days)",
            );
            return None;
        }
        [_] => {}
        _ => {
            errors.push(
                at,
                format!(
                    "deny rule mixes {}; a rule has exactly one form, so split it into one rule per form",
                    forms.join(" and ")
                ),
            );
            return None;
        }
    }
    if let Some(dates) = &rule.dates {
        compile_dates(dates, &format!("{at}/dates"), errors)
    } else if ranged {
        compile_range(rule, at, zone_name, errors)
    } else {
        let why = "a weekly freeze needs start and end";
        let start = required(rule.start.as_deref(), at, "start", why, errors);
        let end = required(rule.end.as_deref(), at, "end", why, errors);
        let days = rule.days.as_deref();
        let (Some(start), Some(end)) = (start, end) else {
            compile_days(days, &format!("{at}/days"), errors);
            return None;
        };
        // One rule for `end` in allow and deny ranges alike: exclusive (issue #10, item 9).
        DailyRange::compile(days, start, end, at, errors).map(Freeze::Daily)
    }
}

fn compile_dates(texts: &[String], at: &str, errors: &mut Errors) -> Option<Freeze> {
    if texts.is_empty() {
        errors.push(at, "empty list of dates (list at least one date, or remove this rule)");
        return None;
    }
    let mut dates = Vec::with_capacity(texts.len());
    let mut valid = true;
    for (i, text) in texts.iter().enumerate() {
        match errors.check(&format!("{at}/{i}"), parse_date(text)) {
            Some(date) => dates.push(date),
            None => valid = false,
        }
    }
    dates.sort();
    dates.dedup();
    valid.then_some(Freeze::Dates(dates))
}

fn compile_range(rule: &DenyRule, at: &str, zone_name: &str, errors: &mut Errors) -> Option<Freeze> {
    let why = "a freeze range needs both from and to";
    let from_text = required(rule.from.as_deref(), at, "from", why, errors);
    let to_text = required(rule.to.as_deref(), at, "to", why, errors);
    let from = from_text.and_then(|text| errors.check(&format!("{at}/from"), parse_local_datetime(text, zone_name)));
    let to = to_text.and_then(|text| errors.check(&format!("{at}/to"), parse_local_datetime(text, zone_name)));
    let ((from, _), (to, precision)) = (from?, to?);
    let (from_text, to_text) = (from_text?, to_text?);
    if to < from {
        errors.push(
            &format!("{at}/to"),
            format!(
                "to {to_text} is before from {from_text} (a freeze runs from the earlier to the later; swap them?)"
            ),
        );
        return None;
    }
    // `to` covers the minute it names; a freeze reaching the end of time simply never ends.
    let until = to.checked_add(precision.length()).unwrap_or(DateTime::MAX);
    Some(Freeze::Range {
        from,
        until,
        label: format!("{from_text} to {to_text}"),
    })
}

/// The value of a field that the rule's form needs, or an error at the missing field.
fn required<'a>(value: Option<&'a str>, at: &str, field: &str, why: &str, errors: &mut Errors) -> Option<&'a str> {
    if value.is_none() {
        errors.push(&format!("{at}/{field}"), format!("missing \"{field}\": {why}"));
    }
    value
}

/// The weekdays of a range and how to name them: every day when `days` is absent.
fn compile_days(days: Option<&[Day]>, at: &str, errors: &mut Errors) -> Option<(DaySet, String)> {
    match days {
        None => Some((DaySet::EVERY_DAY, "every day".to_owned())),
        Some([]) => {
            errors.push(
                at,
                "empty list of days (list at least one day, or omit days for every day)",
            );
            None
        }
        Some(days) => {
            let names: Vec<&str> = days.iter().map(|d| day_name(*d)).collect();
            Some((DaySet::of(days), names.join(", ")))
        }
    }
}

/// `HH:MM` or `HH:MM:SS` as numbers, without range checks.
fn parse_clock(text: &str) -> Option<(i8, i8, i8, Precision)> {
    let two_digits = |part: &str| -> Option<i8> {
        let bytes = part.as_bytes();
        match bytes {
            [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => Some(((tens - b'0') * 10 + (ones - b'0')) as i8),
            _ => None,
        }
    };
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [h, m] => Some((two_digits(h)?, two_digits(m)?, 0, Precision::Minute)),
        [h, m, s] => Some((two_digits(h)?, two_digits(m)?, two_digits(s)?, Precision::Second)),
        _ => None,
    }
}

/// A time of day as written in `start`/`end`: `HH:MM` or `HH:MM:SS`, `24:00` for the end of
/// the day.
fn parse_time_of_day(text: &str) -> Result<(TimeOfDay, Precision), String> {
    let wrong = || format!("\"{text}\" is not a time of day (expected HH:MM, 00:00–24:00)");
    let (hour, minute, second, precision) = parse_clock(text).ok_or_else(wrong)?;
    if (hour, minute, second) == (24, 0, 0) {
        return Ok((TimeOfDay::EndOfDay, precision));
    }
    let time = Time::new(hour, minute, second, 0).map_err(|_| wrong())?;
    Ok((TimeOfDay::At(time), precision))
}

fn parse_start(text: &str) -> Result<Time, String> {
    match parse_time_of_day(text)? {
        (TimeOfDay::At(time), _) => Ok(time),
        (TimeOfDay::EndOfDay, _) => Err(format!(
            "\"{text}\" is only valid as an end (use \"00:00\" for the start of a day)"
        )),
    }
}

/// A calendar date, `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<Date, String> {
    let wrong = || format!("\"{text}\" is not a date (expected YYYY-MM-DD, e.g. 2026-12-24)");
    let number = |part: &str, width: usize| -> Option<i16> {
        (part.len() == width && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return Err(wrong());
    };
    let (Some(year), Some(month), Some(day)) = (number(year, 4), number(month, 2), number(day, 2)) else {
        return Err(wrong());
    };
    let (Ok(month), Ok(day)) = (i8::try_from(month), i8::try_from(day)) else {
        return Err(wrong());
    };
    if !(1..=12).contains(&month) {
        return Err(format!("{text} is not a date (months run 01–12)"));
    }
    Date::new(year, month, day).map_err(|_| match Date::new(year, month, 1) {
        Ok(first) => {
            format!(
                "{text} is not a date ({} {year} has {} days)",
                first.strftime("%B"),
                first.days_in_month()
            )
        }
        Err(_) => wrong(),
    })
}

/// A local date-time in the window's zone, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS`.
fn parse_local_datetime(text: &str, zone_name: &str) -> Result<(DateTime, Precision), String> {
    let wrong = || format!("\"{text}\" is not a local date-time (expected YYYY-MM-DDTHH:MM, e.g. 2026-11-27T00:00)");
    let Some((date_text, time_text)) = text.split_once('T') else {
        return Err(match parse_date(text) {
            Ok(_) => format!("\"{text}\" has no time of day (expected YYYY-MM-DDTHH:MM, e.g. {text}T00:00)"),
            Err(_) => wrong(),
        });
    };
    if time_text.contains(['Z', 'z', '+', '-']) {
        let wall_clock = time_text.split(['Z', 'z', '+', '-']).next().unwrap_or_default();
        return Err(format!(
            "\"{text}\" has a UTC offset; write the wall-clock time in the window's time zone \
             ({zone_name}), e.g. {date_text}T{wall_clock}"
        ));
    }
    let date = parse_date(date_text)?;
    match parse_time_of_day(time_text).map_err(|_| wrong())? {
        (TimeOfDay::At(time), precision) => Ok((date.to_datetime(time), precision)),
        (TimeOfDay::EndOfDay, _) => Err(match date.tomorrow() {
            Ok(next) => {
                format!("\"{text}\" is not a date-time (write {next}T00:00 for the end of {date})")
            }
            Err(_) => wrong(),
        }),
    }
}

/// The message for an unknown zone, suggesting the closest known name if one is close.
fn unknown_zone_message(name: &str) -> String {
    match closest_zone_name(name) {
        Some(close) => {
            format!("unknown time zone \"{name}\" (did you mean {close}? use an IANA name such as Europe/Berlin)")
        }
        None => format!("unknown time zone \"{name}\" (use an IANA name such as Europe/Berlin)"),
    }
}

/// A known zone name within two edits of `name`, or whose last part is `name` (`Berlin`).
fn closest_zone_name(name: &str) -> Option<String> {
    let wanted = name.to_ascii_lowercase();
    jiff::tz::db()
        .available()
        .filter_map(|known| {
            let candidate = known.as_str().to_ascii_lowercase();
            let last_part = candidate.rsplit('/').next().unwrap_or_default();
            let distance = if last_part == wanted {
                0
            } else {
                strsim::levenshtein(&wanted, &candidate)
            };
            (distance <= 2).then(|| (distance, known.as_str().to_owned()))
        })
        .min()
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles a window from its `spec` written as JSON.
    fn window(name: &str, spec: &str) -> WindowSchedule {
        let spec: WindowSpec = serde_json::from_str(spec).expect("test spec is valid JSON");
        WindowSchedule::compile(name, &spec).unwrap_or_else(|errors| panic!("test window {name} compiles: {errors:?}"))
    }

    fn instant(text: &str) -> Timestamp {
        text.parse().expect("test instant is RFC 3339")
    }

    /// A window's `metadata.name` and its `spec` as JSON.
    type NamedSpec = (&'static str, &'static str);

    /// A compile error as (JSON pointer, message).
    type PointedMessage = (&'static str, &'static str);

    const WEEKEND: NamedSpec = (
        "weekend",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}]}"#,
    );
    const SATURDAY: NamedSpec = (
        "eu",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}]}"#,
    );
    const SATURDAY_NEW_YORK: NamedSpec = (
        "us",
        r#"{"timezone": "America/New_York",
            "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}]}"#,
    );
    const SUNDAY_BERLIN: NamedSpec = (
        "sunday",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["sun"], "start": "02:00", "end": "06:00"}]}"#,
    );
    const SUNDAY_NEW_YORK: NamedSpec = (
        "sunday",
        r#"{"timezone": "America/New_York",
            "allow": [{"days": ["sun"], "start": "02:00", "end": "06:00"}]}"#,
    );

    /// What `next_open` should answer.
    #[derive(Debug)]
    enum Next {
        Now,
        At(&'static str),
        Never,
    }

    struct Case {
        what: &'static str,
        windows: &'static [NamedSpec],
        now: &'static str,
        open: bool,
        next: Next,
    }

    const CASES: &[Case] = &[
        // Exact seconds around one window (June: CEST, UTC+2).
        Case {
            what: "one second before opening: closed",
            windows: &[WEEKEND],
            now: "2026-06-12T23:59:59Z",
            open: false,
            next: Next::At("2026-06-13T02:00:00+02:00"),
        },
        Case {
            what: "at the opening second: open",
            windows: &[WEEKEND],
            now: "2026-06-13T00:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "last second before the end: open",
            windows: &[WEEKEND],
            now: "2026-06-13T03:59:59Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "at the end: closed, Sunday's window is next",
            windows: &[WEEKEND],
            now: "2026-06-13T04:00:00Z",
            open: false,
            next: Next::At("2026-06-14T02:00:00+02:00"),
        },
        // Week boundaries.
        Case {
            what: "Sunday evening: the week rolls over to next Saturday",
            windows: &[WEEKEND],
            now: "2026-06-14T20:00:00Z",
            open: false,
            next: Next::At("2026-06-20T02:00:00+02:00"),
        },
        Case {
            what: "Sunday evening: a Monday window opens next morning",
            windows: &[(
                "monday",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["mon"], "start": "01:00", "end": "05:00"}]}"#,
            )],
            now: "2026-06-14T20:00:00Z",
            open: false,
            next: Next::At("2026-06-15T01:00:00+02:00"),
        },
        Case {
            what: "a Sunday-night window is still open after midnight on Monday",
            windows: &[SUNDAY_NIGHT],
            now: "2026-06-14T22:30:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "a Sunday-night window closes at Monday 01:00, reopens next Sunday",
            windows: &[SUNDAY_NIGHT],
            now: "2026-06-14T23:00:00Z",
            open: false,
            next: Next::At("2026-06-21T23:00:00+02:00"),
        },
        // A window crossing midnight: fri 22:00–02:00.
        Case {
            what: "crossing midnight: Friday before 22:00 is closed",
            windows: &[FRIDAY_NIGHT],
            now: "2026-06-12T19:59:59Z",
            open: false,
            next: Next::At("2026-06-12T22:00:00+02:00"),
        },
        Case {
            what: "crossing midnight: Saturday 01:30 is open",
            windows: &[FRIDAY_NIGHT],
            now: "2026-06-12T23:30:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "crossing midnight: Saturday 02:00 is closed",
            windows: &[FRIDAY_NIGHT],
            now: "2026-06-13T00:00:00Z",
            open: false,
            next: Next::At("2026-06-19T22:00:00+02:00"),
        },
        // Europe/Berlin springs forward on 2026-03-29 at 02:00 CET (01:00Z) to 03:00 CEST.
        Case {
            what: "Berlin spring forward: 02:00 does not exist, the window opens at 03:00 CEST",
            windows: &[SUNDAY_BERLIN],
            now: "2026-03-29T00:59:59Z",
            open: false,
            next: Next::At("2026-03-29T03:00:00+02:00"),
        },
        Case {
            what: "Berlin spring forward: open at the end of the gap",
            windows: &[SUNDAY_BERLIN],
            now: "2026-03-29T01:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "Berlin spring forward: open at 05:59:59 CEST",
            windows: &[SUNDAY_BERLIN],
            now: "2026-03-29T03:59:59Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "Berlin spring forward: closed at 06:00 CEST",
            windows: &[SUNDAY_BERLIN],
            now: "2026-03-29T04:00:00Z",
            open: false,
            next: Next::At("2026-04-05T02:00:00+02:00"),
        },
        Case {
            what: "Berlin spring forward: a start inside the gap moves to its end, not by its length",
            windows: &[(
                "gap-start",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sun"], "start": "02:30", "end": "05:00"}]}"#,
            )],
            now: "2026-03-29T00:00:00Z",
            open: false,
            next: Next::At("2026-03-29T03:00:00+02:00"),
        },
        Case {
            what: "Berlin spring forward: a window inside the gap does not open that day",
            windows: &[(
                "in-gap",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sun"], "start": "02:15", "end": "02:45"}]}"#,
            )],
            now: "2026-03-29T00:00:00Z",
            open: false,
            next: Next::At("2026-04-05T02:15:00+02:00"),
        },
        // Europe/Berlin falls back on 2026-10-25 at 03:00 CEST (01:00Z) to 02:00 CET.
        Case {
            what: "Berlin fall back: the window opens at the first 02:00 (CEST)",
            windows: &[SUNDAY_BERLIN],
            now: "2026-10-24T23:59:59Z",
            open: false,
            next: Next::At("2026-10-25T02:00:00+02:00"),
        },
        Case {
            what: "Berlin fall back: open during the repeated 02:30 (CET)",
            windows: &[SUNDAY_BERLIN],
            now: "2026-10-25T01:30:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "Berlin fall back: open at 05:59:59 CET",
            windows: &[SUNDAY_BERLIN],
            now: "2026-10-25T04:59:59Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "Berlin fall back: closed at 06:00 CET",
            windows: &[SUNDAY_BERLIN],
            now: "2026-10-25T05:00:00Z",
            open: false,
            next: Next::At("2026-11-01T02:00:00+01:00"),
        },
        Case {
            what: "Berlin fall back: an end inside the fold is its first occurrence",
            windows: &[(
                "fold-end",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sun"], "start": "00:00", "end": "02:30"}]}"#,
            )],
            now: "2026-10-25T01:15:00Z",
            open: false,
            next: Next::At("2026-11-01T00:00:00+01:00"),
        },
        // America/New_York springs forward on 2026-03-08 at 02:00 EST (07:00Z) to 03:00 EDT.
        Case {
            what: "New York spring forward: opens at 03:00 EDT",
            windows: &[SUNDAY_NEW_YORK],
            now: "2026-03-08T06:59:59Z",
            open: false,
            next: Next::At("2026-03-08T03:00:00-04:00"),
        },
        Case {
            what: "New York spring forward: open at 03:00 EDT",
            windows: &[SUNDAY_NEW_YORK],
            now: "2026-03-08T07:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "New York spring forward: closed at 06:00 EDT",
            windows: &[SUNDAY_NEW_YORK],
            now: "2026-03-08T10:00:00Z",
            open: false,
            next: Next::At("2026-03-15T02:00:00-04:00"),
        },
        // America/New_York falls back on 2026-11-01 at 02:00 EDT (06:00Z) to 01:00 EST.
        Case {
            what: "New York fall back: opens at the first 01:00 (EDT)",
            windows: &[SUNDAY_NEW_YORK_EARLY],
            now: "2026-11-01T04:59:59Z",
            open: false,
            next: Next::At("2026-11-01T01:00:00-04:00"),
        },
        Case {
            what: "New York fall back: open during the repeated 01:30 (EST)",
            windows: &[SUNDAY_NEW_YORK_EARLY],
            now: "2026-11-01T06:30:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "New York fall back: open at 04:59:59 EST",
            windows: &[SUNDAY_NEW_YORK_EARLY],
            now: "2026-11-01T09:59:59Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "New York fall back: closed at 05:00 EST, next week in EST",
            windows: &[SUNDAY_NEW_YORK_EARLY],
            now: "2026-11-01T10:00:00Z",
            open: false,
            next: Next::At("2026-11-08T01:00:00-05:00"),
        },
        // Freezes.
        Case {
            what: "a frozen Saturday: the next Saturday opens",
            windows: &[(
                "eu",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"dates": ["2026-11-28"]}]}"#,
            )],
            now: "2026-11-28T01:00:00Z",
            open: false,
            next: Next::At("2026-12-05T02:00:00+01:00"),
        },
        Case {
            what: "a frozen Saturday on a weekend window: Sunday opens",
            windows: &[(
                "weekend",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"dates": ["2026-11-28"]}]}"#,
            )],
            now: "2026-11-28T01:00:00Z",
            open: false,
            next: Next::At("2026-11-29T02:00:00+01:00"),
        },
        Case {
            what: "a freeze over three weekends: the first weekend after it opens",
            windows: &[(
                "weekend",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"from": "2026-11-27T00:00", "to": "2026-12-13T23:59"}]}"#,
            )],
            now: "2026-11-26T12:00:00Z",
            open: false,
            next: Next::At("2026-12-19T02:00:00+01:00"),
        },
        Case {
            what: "a freeze ending inside a window: opens when its last minute ends",
            windows: &[FREEZE_INTO_WINDOW],
            now: "2026-12-05T01:00:00Z",
            open: false,
            next: Next::At("2026-12-05T03:00:00+01:00"),
        },
        Case {
            what: "a freeze ending inside a window: still closed in its last second",
            windows: &[FREEZE_INTO_WINDOW],
            now: "2026-12-05T01:59:59Z",
            open: false,
            next: Next::At("2026-12-05T03:00:00+01:00"),
        },
        Case {
            what: "a freeze ending inside a window: open right after it",
            windows: &[FREEZE_INTO_WINDOW],
            now: "2026-12-05T02:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "a freeze `to` written with seconds covers that second only",
            windows: &[(
                "weekend",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"from": "2026-12-01T00:00", "to": "2026-12-05T02:59:59"}]}"#,
            )],
            now: "2026-12-05T01:00:00Z",
            open: false,
            next: Next::At("2026-12-05T03:00:00+01:00"),
        },
        Case {
            what: "no Friday afternoons: Friday 11:59:59 is open",
            windows: &[WORKDAYS],
            now: "2026-06-12T09:59:59Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "no Friday afternoons: Friday 12:00 is closed until Saturday morning",
            windows: &[WORKDAYS],
            now: "2026-06-12T10:00:00Z",
            open: false,
            next: Next::At("2026-06-13T08:00:00+02:00"),
        },
        Case {
            what: "no Friday afternoons: Thursday afternoon is open",
            windows: &[WORKDAYS],
            now: "2026-06-11T12:00:00Z",
            open: true,
            next: Next::Now,
        },
        // No allow rules: always open except when frozen.
        Case {
            what: "no allow rules: open on an ordinary day",
            windows: &[HOLIDAYS_UTC],
            now: "2026-12-23T12:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "no allow rules: two frozen days in a row open together, shown in the zone",
            windows: &[HOLIDAYS_UTC],
            now: "2026-12-24T12:00:00Z",
            open: false,
            next: Next::At("2026-12-26T00:00:00+00:00"),
        },
        Case {
            what: "no allow rules: a freeze ending 24:00 lasts until midnight, in its zone",
            windows: &[(
                "no-friday-afternoons",
                r#"{"timezone": "Europe/Berlin",
                    "deny": [{"days": ["fri"], "start": "12:00", "end": "24:00"}]}"#,
            )],
            now: "2026-06-12T21:59:30Z",
            open: false,
            next: Next::At("2026-06-13T00:00:00+02:00"),
        },
        // Issue #10, item 9: `end` is exclusive for freezes as for allows. An 08:30–16:00
        // freeze is over at 16:00:00 (it used to hold until 16:01).
        Case {
            what: "a freeze's end is exclusive, like an allow rule's",
            windows: &[(
                "day-freeze",
                r#"{"timezone": "UTC", "deny": [{"start": "08:30", "end": "16:00"}]}"#,
            )],
            now: "2026-06-12T16:00:30Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "a freeze's end is exclusive: one second before it, still frozen",
            windows: &[(
                "day-freeze",
                r#"{"timezone": "UTC", "deny": [{"start": "08:30", "end": "16:00"}]}"#,
            )],
            now: "2026-06-12T15:59:59Z",
            open: false,
            next: Next::At("2026-06-12T16:00:00+00:00"),
        },
        // Nothing ever opens: the search gives up at the horizon.
        Case {
            what: "allowed only on Saturdays, denied every Saturday: never",
            windows: &[(
                "never",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"days": ["sat"], "start": "00:00", "end": "00:00"}]}"#,
            )],
            now: "2026-06-01T00:00:00Z",
            open: false,
            next: Next::Never,
        },
        Case {
            what: "a freeze longer than the horizon: never",
            windows: &[(
                "weekend",
                r#"{"timezone": "Europe/Berlin",
                    "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
                    "deny": [{"from": "2026-06-01T00:00", "to": "2028-01-01T00:00"}]}"#,
            )],
            now: "2026-06-01T00:00:00Z",
            open: false,
            next: Next::Never,
        },
        // America/Santiago falls back at midnight: 2026-04-05 00:00 -03 becomes 2026-04-04
        // 23:00 -04 (03:00Z), so Saturday 23:00–23:59 happens twice.
        Case {
            what: "Santiago fold at midnight: open in the first Saturday 23:15",
            windows: &[SANTIAGO_LATE_SATURDAY],
            now: "2026-04-05T02:15:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "Santiago fold at midnight: closed in the repeated Saturday 23:15",
            windows: &[SANTIAGO_LATE_SATURDAY],
            now: "2026-04-05T03:15:00Z",
            open: false,
            next: Next::At("2026-04-11T23:00:00-04:00"),
        },
        // One target, windows in two zones: Berlin Sat 00:00Z–04:00Z, New York 06:00Z–10:00Z.
        Case {
            what: "two zones: open in Berlin's window",
            windows: &[SATURDAY, SATURDAY_NEW_YORK],
            now: "2026-06-13T03:00:00Z",
            open: true,
            next: Next::Now,
        },
        Case {
            what: "two zones: between them, New York's opens next, shown in New York time",
            windows: &[SATURDAY, SATURDAY_NEW_YORK],
            now: "2026-06-13T05:00:00Z",
            open: false,
            next: Next::At("2026-06-13T02:00:00-04:00"),
        },
        Case {
            what: "two zones: after both, Berlin's opens next, shown in Berlin time",
            windows: &[SATURDAY_NEW_YORK, SATURDAY],
            now: "2026-06-13T10:00:00Z",
            open: false,
            next: Next::At("2026-06-20T02:00:00+02:00"),
        },
        Case {
            what: "two zones: a New York Friday freeze covers Berlin's Saturday window",
            windows: &[SATURDAY, NEW_YORK_FRIDAY_FROZEN],
            now: "2026-06-13T00:00:00Z",
            open: false,
            next: Next::At("2026-06-13T02:00:00-04:00"),
        },
    ];

    const SUNDAY_NIGHT: NamedSpec = (
        "sunday-night",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["sun"], "start": "23:00", "end": "01:00"}]}"#,
    );
    const SANTIAGO_LATE_SATURDAY: NamedSpec = (
        "santiago",
        r#"{"timezone": "America/Santiago",
            "allow": [{"days": ["sat"], "start": "23:00", "end": "23:30"}]}"#,
    );
    const FRIDAY_NIGHT: NamedSpec = (
        "friday-night",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["fri"], "start": "22:00", "end": "02:00"}]}"#,
    );
    const SUNDAY_NEW_YORK_EARLY: NamedSpec = (
        "sunday",
        r#"{"timezone": "America/New_York",
            "allow": [{"days": ["sun"], "start": "01:00", "end": "05:00"}]}"#,
    );
    const FREEZE_INTO_WINDOW: NamedSpec = (
        "weekend",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
            "deny": [{"from": "2026-12-01T00:00", "to": "2026-12-05T02:59"}]}"#,
    );
    const WORKDAYS: NamedSpec = (
        "office-hours",
        r#"{"timezone": "Europe/Berlin",
            "allow": [{"start": "08:00", "end": "18:00"}],
            "deny": [{"days": ["fri"], "start": "12:00", "end": "24:00"}]}"#,
    );
    const HOLIDAYS_UTC: NamedSpec = (
        "holidays",
        r#"{"timezone": "UTC", "deny": [{"dates": ["2026-12-25", "2026-12-24"]}]}"#,
    );
    const NEW_YORK_FRIDAY_FROZEN: NamedSpec = (
        "us",
        r#"{"timezone": "America/New_York",
            "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
            "deny": [{"dates": ["2026-06-12"]}]}"#,
    );

    #[test]
    fn openness_and_next_opening() {
        for case in CASES {
            let windows: Vec<WindowSchedule> = case.windows.iter().map(|(name, spec)| window(name, spec)).collect();
            let target = TargetWindows::new(&windows);
            let now = instant(case.now);
            assert_eq!(target.is_open(now), case.open, "{}: is_open at {}", case.what, case.now);
            let next = target.next_open(now);
            match case.next {
                Next::Now => assert_eq!(next, NextOpen::OpenNow, "{}", case.what),
                Next::Never => assert_eq!(next, NextOpen::Never, "{}", case.what),
                Next::At(expected) => {
                    assert_eq!(next.opens_at().as_deref(), Some(expected), "{}", case.what);
                    // Exact to the second: closed one second before, open at the instant.
                    let at = instant(expected);
                    let before = at - SignedDuration::from_secs(1);
                    assert!(!target.is_open(before), "{}: closed just before {expected}", case.what);
                    assert!(target.is_open(at), "{}: open at {expected}", case.what);
                }
            }
        }
    }

    /// Real durations of windows on daylight-saving days: (what, window, opening, closes_at, hours).
    const DURATIONS: &[(&str, NamedSpec, &str, &str, i64)] = &[
        (
            "Berlin summer Saturday",
            WEEKEND,
            "2026-06-13T00:00:00Z",
            "2026-06-13T06:00:00+02:00",
            4,
        ),
        (
            "Berlin spring forward",
            SUNDAY_BERLIN,
            "2026-03-29T01:00:00Z",
            "2026-03-29T06:00:00+02:00",
            3,
        ),
        (
            "Berlin fall back",
            SUNDAY_BERLIN,
            "2026-10-25T00:00:00Z",
            "2026-10-25T06:00:00+01:00",
            5,
        ),
        (
            "New York spring forward",
            SUNDAY_NEW_YORK,
            "2026-03-08T07:00:00Z",
            "2026-03-08T06:00:00-04:00",
            3,
        ),
        (
            "New York fall back",
            SUNDAY_NEW_YORK_EARLY,
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:00:00-05:00",
            5,
        ),
    ];

    #[test]
    fn windows_last_their_real_length_across_daylight_saving() {
        for (what, (name, spec), opening, expected_close, hours) in DURATIONS {
            let window = window(name, spec);
            let target = TargetWindows::new([&window]);
            let opening = instant(opening);
            let before = opening - SignedDuration::from_secs(1);
            assert_eq!(
                target.next_open(before).opens_at(),
                Some(rfc3339(&opening.to_zoned(window.time_zone().clone()))),
                "{what}: opens at the expected instant"
            );
            let closes = target.closes_at(opening).unwrap_or_else(|| panic!("{what}: closes"));
            assert_eq!(rfc3339(&closes), *expected_close, "{what}");
            assert_eq!(
                closes.timestamp().duration_since(opening),
                SignedDuration::from_hours(*hours),
                "{what}"
            );
        }
    }

    #[test]
    fn next_change_is_the_next_opening_or_closing() {
        let weekend = window(WEEKEND.0, WEEKEND.1);
        let target = TargetWindows::new([&weekend]);
        let cases = [
            (
                "closed: the opening",
                "2026-06-12T12:00:00Z",
                Some("2026-06-13T00:00:00Z"),
            ),
            (
                "open: the closing",
                "2026-06-13T00:00:00Z",
                Some("2026-06-13T04:00:00Z"),
            ),
            (
                "closed at the end instant: next opening",
                "2026-06-13T04:00:00Z",
                Some("2026-06-14T00:00:00Z"),
            ),
        ];
        for (what, now, expected) in cases {
            assert_eq!(target.next_change(instant(now)), expected.map(instant), "{what}");
        }
        assert_eq!(
            TargetWindows::new([]).next_change(instant("2026-06-12T12:00:00Z")),
            None
        );
        let never = window(
            "never",
            r#"{"timezone": "UTC", "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
                "deny": [{"days": ["sat"], "start": "00:00", "end": "24:00"}]}"#,
        );
        assert_eq!(
            TargetWindows::new([&never]).next_change(instant("2026-06-12T12:00:00Z")),
            None
        );
    }

    #[test]
    fn closed_says_why() {
        let weekend = window(
            "weekend",
            r#"{"timezone": "Europe/Berlin",
                "allow": [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00"}],
                "deny": [{"dates": ["2026-11-28"]},
                         {"days": ["sat"], "start": "10:00", "end": "12:00"}]}"#,
        );
        let target = TargetWindows::new([&weekend]);
        let Openness::Closed(reasons) = target.status(instant("2026-11-28T10:00:00Z")) else {
            panic!("closed on a frozen Saturday at 11:00 CET");
        };
        let messages: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "outside the allow window of \"weekend\"",
                "frozen by window \"weekend\": 2026-11-28 (whole day, Europe/Berlin)",
                "frozen by window \"weekend\": sat 10:00–12:00 (Europe/Berlin)",
            ]
        );
        let pointers: Vec<&str> = reasons
            .iter()
            .filter_map(|r| match r {
                ClosedBy::Frozen { pointer, .. } => Some(pointer.as_str()),
                ClosedBy::OutsideAllow { .. } => None,
            })
            .collect();
        assert_eq!(pointers, ["/spec/deny/0", "/spec/deny/1"]);
        assert_eq!(target.status(instant("2026-11-29T01:00:00Z")), Openness::Open);
    }

    #[test]
    fn outside_allow_names_every_window_with_allow_rules() {
        let (eu, us) = (
            window(SATURDAY.0, SATURDAY.1),
            window(SATURDAY_NEW_YORK.0, SATURDAY_NEW_YORK.1),
        );
        let holidays = window(HOLIDAYS_UTC.0, HOLIDAYS_UTC.1);
        let status = TargetWindows::new([&us, &holidays, &eu]).status(instant("2026-06-10T12:00:00Z"));
        let expected = ClosedBy::OutsideAllow {
            windows: vec!["eu".into(), "us".into()],
        };
        assert_eq!(status, Openness::Closed(vec![expected.clone()]));
        assert_eq!(expected.to_string(), "outside the allow windows of \"eu\", \"us\"");
    }

    #[test]
    fn deny_only_ignores_allow_rules_but_not_freezes() {
        let workdays = window(WORKDAYS.0, WORKDAYS.1);
        let urgent = TargetWindows::deny_only([&workdays]);
        // Wednesday 23:00 local: outside the allow rule, which an urgent patch ignores.
        assert_eq!(urgent.next_open(instant("2026-06-10T21:00:00Z")), NextOpen::OpenNow);
        assert!(!TargetWindows::new([&workdays]).is_open(instant("2026-06-10T21:00:00Z")));
        // Friday 14:00 local: frozen for everyone; opens when the freeze ends, at midnight.
        let next = urgent.next_open(instant("2026-06-12T12:00:00Z"));
        assert_eq!(next.opens_at().as_deref(), Some("2026-06-13T00:00:00+02:00"));
    }

    #[test]
    fn times_show_in_the_zone_of_the_window_that_decides() {
        let freeze = window(
            "holidays",
            r#"{"timezone": "europe/berlin", "deny": [{"dates": ["2026-12-24"]}]}"#,
        );
        let target = TargetWindows::new([&freeze]);
        let closes = target.closes_at(instant("2026-12-23T12:00:00Z"));
        assert_eq!(
            closes.as_ref().map(rfc3339).as_deref(),
            Some("2026-12-24T00:00:00+01:00")
        );
        let Openness::Closed(reasons) = target.status(instant("2026-12-24T12:00:00Z")) else {
            panic!("closed on a frozen date");
        };
        // The zone was looked up ignoring case and is named canonically.
        assert_eq!(
            reasons[0].to_string(),
            "frozen by window \"holidays\": 2026-12-24 (whole day, Europe/Berlin)"
        );
    }

    #[test]
    fn a_target_without_windows_is_always_open() {
        let target = TargetWindows::new([]);
        let now = instant("2026-06-12T12:00:00Z");
        assert_eq!(target.status(now), Openness::Open);
        assert_eq!(target.next_open(now), NextOpen::OpenNow);
        assert_eq!(target.closes_at(now), None);
    }

    /// (what, spec, expected errors as (pointer, message)).
    const INVALID: &[(&str, &str, &[PointedMessage])] = &[
        (
            "misspelt zone",
            r#"{"timezone": "Europe/Berln"}"#,
            &[(
                "/spec/timezone",
                "unknown time zone \"Europe/Berln\" (did you mean Europe/Berlin? use an IANA name such as Europe/Berlin)",
            )],
        ),
        (
            "a city instead of a zone",
            r#"{"timezone": "berlin"}"#,
            &[(
                "/spec/timezone",
                "unknown time zone \"berlin\" (did you mean Europe/Berlin? use an IANA name such as Europe/Berlin)",
            )],
        ),
        (
            "no such zone",
            r#"{"timezone": "Mars/Olympus_Mons"}"#,
            &[(
                "/spec/timezone",
                "unknown time zone \"Mars/Olympus_Mons\" (use an IANA name such as Europe/Berlin)",
            )],
        ),
        (
            "hour 25",
            r#"{"timezone": "UTC", "allow": [{"start": "25:00", "end": "06:00"}]}"#,
            &[(
                "/spec/allow/0/start",
                "\"25:00\" is not a time of day (expected HH:MM, 00:00–24:00)",
            )],
        ),
        (
            "one-digit hour and minute 60",
            r#"{"timezone": "UTC", "allow": [{"start": "2:00", "end": "05:60"}]}"#,
            &[
                (
                    "/spec/allow/0/start",
                    "\"2:00\" is not a time of day (expected HH:MM, 00:00–24:00)",
                ),
                (
                    "/spec/allow/0/end",
                    "\"05:60\" is not a time of day (expected HH:MM, 00:00–24:00)",
                ),
            ],
        ),
        (
            "24:00 as a start",
            r#"{"timezone": "UTC", "allow": [{"start": "24:00", "end": "06:00"}]}"#,
            &[(
                "/spec/allow/0/start",
                "\"24:00\" is only valid as an end (use \"00:00\" for the start of a day)",
            )],
        ),
        (
            "24:30",
            r#"{"timezone": "UTC", "allow": [{"start": "22:00", "end": "24:30"}]}"#,
            &[(
                "/spec/allow/0/end",
                "\"24:30\" is not a time of day (expected HH:MM, 00:00–24:00)",
            )],
        ),
        (
            "no days",
            r#"{"timezone": "UTC", "allow": [{"days": [], "start": "01:00", "end": "02:00"}]}"#,
            &[(
                "/spec/allow/0/days",
                "empty list of days (list at least one day, or omit days for every day)",
            )],
        ),
        (
            "30 February",
            r#"{"timezone": "UTC", "deny": [{"dates": ["2026-12-24", "2026-02-30", "2026-13-01", "24.12.2026"]}]}"#,
            &[
                (
                    "/spec/deny/0/dates/1",
                    "2026-02-30 is not a date (February 2026 has 28 days)",
                ),
                ("/spec/deny/0/dates/2", "2026-13-01 is not a date (months run 01–12)"),
                (
                    "/spec/deny/0/dates/3",
                    "\"24.12.2026\" is not a date (expected YYYY-MM-DD, e.g. 2026-12-24)",
                ),
            ],
        ),
        (
            "no dates",
            r#"{"timezone": "UTC", "deny": [{"dates": []}]}"#,
            &[(
                "/spec/deny/0/dates",
                "empty list of dates (list at least one date, or remove this rule)",
            )],
        ),
        (
            "two forms in one deny rule",
            r#"{"timezone": "UTC", "deny": [{"dates": ["2026-12-24"], "from": "2026-12-01T00:00", "to": "2026-12-02T00:00"}]}"#,
            &[(
                "/spec/deny/0",
                "deny rule mixes dates and from/to; a rule has exactly one form, so split it into one rule per form",
            )],
        ),
        (
            "an empty deny rule",
            r#"{"timezone": "UTC", "deny": [{}]}"#,
            &[(
                "/spec/deny/0",
                "deny rule is empty; give dates, or from and to, or start and end (with optional days)",
            )],
        ),
        (
            "from without to",
            r#"{"timezone": "UTC", "deny": [{"from": "2026-12-01T00:00"}]}"#,
            &[(
                "/spec/deny/0/to",
                "missing \"to\": a freeze range needs both from and to",
            )],
        ),
        (
            "empty days without start and end",
            r#"{"timezone": "UTC", "deny": [{"days": []}]}"#,
            &[
                (
                    "/spec/deny/0/start",
                    "missing \"start\": a weekly freeze needs start and end",
                ),
                (
                    "/spec/deny/0/end",
                    "missing \"end\": a weekly freeze needs start and end",
                ),
                (
                    "/spec/deny/0/days",
                    "empty list of days (list at least one day, or omit days for every day)",
                ),
            ],
        ),
        (
            "from after to",
            r#"{"timezone": "UTC", "deny": [{"from": "2026-12-02T00:00", "to": "2026-12-01T00:00"}]}"#,
            &[(
                "/spec/deny/0/to",
                "to 2026-12-01T00:00 is before from 2026-12-02T00:00 (a freeze runs from the earlier to the later; swap them?)",
            )],
        ),
        (
            "an offset on a local date-time",
            r#"{"timezone": "Europe/Berlin", "deny": [{"from": "2026-11-27T00:00", "to": "2026-11-30T23:59Z"}]}"#,
            &[(
                "/spec/deny/0/to",
                "\"2026-11-30T23:59Z\" has a UTC offset; write the wall-clock time in the window's time zone (Europe/Berlin), e.g. 2026-11-30T23:59",
            )],
        ),
        (
            "a date as a date-time",
            r#"{"timezone": "UTC", "deny": [{"from": "2026-11-27", "to": "2026-11-30T24:00"}]}"#,
            &[
                (
                    "/spec/deny/0/from",
                    "\"2026-11-27\" has no time of day (expected YYYY-MM-DDTHH:MM, e.g. 2026-11-27T00:00)",
                ),
                (
                    "/spec/deny/0/to",
                    "\"2026-11-30T24:00\" is not a date-time (write 2026-12-01T00:00 for the end of 2026-11-30)",
                ),
            ],
        ),
        (
            "every mistake is reported, in manifest order",
            r#"{"timezone": "Nowhere/Land",
                "allow": [{"start": "02:00", "end": "06:00"}, {"start": "x", "end": "06:00"}],
                "deny": [{"dates": ["2026-02-29"]}, {"from": "2026-12-01T00:00", "to": "2026-12-01T25:00"}]}"#,
            &[
                (
                    "/spec/timezone",
                    "unknown time zone \"Nowhere/Land\" (use an IANA name such as Europe/Berlin)",
                ),
                (
                    "/spec/allow/1/start",
                    "\"x\" is not a time of day (expected HH:MM, 00:00–24:00)",
                ),
                (
                    "/spec/deny/0/dates/0",
                    "2026-02-29 is not a date (February 2026 has 28 days)",
                ),
                (
                    "/spec/deny/1/to",
                    "\"2026-12-01T25:00\" is not a local date-time (expected YYYY-MM-DDTHH:MM, e.g. 2026-11-27T00:00)",
                ),
            ],
        ),
    ];

    #[test]
    fn invalid_windows_are_reported_with_pointers() {
        for (what, spec, expected) in INVALID {
            let spec: WindowSpec = serde_json::from_str(spec).expect("test spec is valid JSON");
            let errors = WindowSchedule::compile("w", &spec).expect_err(what);
            let got: Vec<(&str, &str)> = errors
                .iter()
                .map(|e| (e.pointer.as_str(), e.message.as_str()))
                .collect();
            assert_eq!(got, *expected, "{what}");
        }
    }

    #[test]
    fn window_error_displays_pointer_and_message() {
        let error = WindowError {
            pointer: "/spec/timezone".into(),
            message: "unknown".into(),
        };
        assert_eq!(error.to_string(), "/spec/timezone: unknown");
    }

    #[test]
    fn accepted_spellings_compile() {
        let spec = r#"{"timezone": "Europe/Berlin",
            "allow": [{"days": ["mon"], "start": "02:00:30", "end": "24:00"},
                      {"start": "00:00", "end": "00:00"}],
            "deny": [{"from": "2026-11-27T00:00:00", "to": "2026-11-30T23:59:59"},
                     {"start": "12:00", "end": "13:00"}]}"#;
        let window = window("spellings", spec);
        assert!(window.has_allow_rules());
        assert_eq!(window.name(), "spellings");
    }
}
