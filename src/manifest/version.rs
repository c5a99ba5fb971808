//! Versions and version requirements of releases, semver or calendar (`Component.spec.versioning`,
//! issue #16: `2026-02-03-001` was refused as "not a valid semantic version").
//!
//! A [`Version`] keeps its text exactly as written (state branch, JSON and messages show it so)
//! and orders by its scheme: semver by semver precedence, calver by (year, month, day, sequence).
//! Manifests parse with the component's [`Versioning`]; text read back from the state branch,
//! an approval or the command line carries no scheme, so [`Version::parse`] infers it (semver
//! first, then the calver forms). The two schemes share one total order on (first, second,
//! third number, then prerelease < release = sequence 0 < sequence n), so a version read back
//! as semver (`2026.10.15` is valid semver) equals the calver release it was written from.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// How a component's release versions are written and ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    /// `MAJOR.MINOR.PATCH[-prerelease]` (semver.org); the default.
    #[default]
    Semver,
    /// A release date: `YYYY-MM-DD`, `YYYY-MM-DD-NNN` (NNN: the sequence of that day's releases)
    /// or `YYYY.MM.DD`.
    Calver,
}

impl Versioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Versioning::Semver => "semver",
            Versioning::Calver => "calver",
        }
    }

    /// Whether this is the default (serde skips it).
    pub fn is_semver(&self) -> bool {
        *self == Versioning::Semver
    }
}

impl std::fmt::Display for Versioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The calver forms in words, for error messages.
pub const CALVER_FORMS: &str = "YYYY-MM-DD-NNN, YYYY-MM-DD or YYYY.MM.DD, e.g. 2026-02-03-001";

/// A calendar version: a valid date and the sequence of that day's release (0 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalVer {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub sequence: u32,
}

impl CalVer {
    /// Parses `YYYY-MM-DD-NNN`, `YYYY-MM-DD` or `YYYY.MM.DD` (two-digit month and day, a date
    /// that exists).
    ///
    /// # Errors
    /// What is wrong and the accepted forms.
    pub fn parse(text: &str) -> Result<CalVer, String> {
        CalVer::parse_reason(text).map_err(|why| format!("`{text}` is not a calver version ({why})"))
    }

    /// [`CalVer::parse`], its error being the reason alone (what is wrong, the forms expected).
    fn parse_reason(text: &str) -> Result<CalVer, String> {
        let bad = |why: &str| format!("{why}expected {CALVER_FORMS}");
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let (date, sequence) = match text.as_bytes().get(4) {
            Some(b'-') => {
                let parts: Vec<&str> = text.split('-').collect();
                match parts.as_slice() {
                    [y, m, d] => ([*y, *m, *d], None),
                    [y, m, d, s] => ([*y, *m, *d], Some(*s)),
                    _ => return Err(bad("")),
                }
            }
            Some(b'.') => match text.split('.').collect::<Vec<_>>().as_slice() {
                [y, m, d] => ([*y, *m, *d], None),
                _ => return Err(bad("")),
            },
            _ => return Err(bad("")),
        };
        let [y, m, d] = date;
        if !digits(y, 4) || !digits(m, 2) || !digits(d, 2) {
            return Err(bad("a four-digit year, two-digit month and day; "));
        }
        let sequence = match sequence {
            None => 0,
            Some(s) if !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map_err(|_| bad(""))?
            }
            Some(_) => return Err(bad("the sequence is 1-9 digits; ")),
        };
        let (year, month, day): (u16, u8, u8) = (
            y.parse().map_err(|_| bad(""))?,
            m.parse().map_err(|_| bad(""))?,
            d.parse().map_err(|_| bad(""))?,
        );
        if !(1..=12).contains(&month) {
            return Err(bad(&format!("month {m} does not exist; ")));
        }
        if jiff::civil::Date::new(year as i16, month as i8, day as i8).is_err() || day == 0 {
            return Err(bad(&format!("{y}-{m} has no day {d}; ")));
        }
        Ok(CalVer {
            year,
            month,
            day,
            sequence,
        })
    }

    /// The date part, which decides the update type.
    pub fn date(&self) -> (u16, u8, u8) {
        (self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone)]
enum Key {
    Semver(semver::Version),
    Calver(CalVer),
}

/// A release version as written, ordered by its scheme (module docs).
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    key: Key,
}

impl Version {
    /// A semver version `major.minor.patch`.
    pub fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version::from(semver::Version::new(major, minor, patch))
    }

    /// Parses text of unknown scheme (state branch, approvals, the command line): semver if it
    /// is semver, else a calver form.
    ///
    /// # Errors
    /// The semver parser's complaint, when the text is no calver form either.
    pub fn parse(text: &str) -> Result<Version, semver::Error> {
        match semver::Version::parse(text) {
            Ok(v) => Ok(Version::from(v)),
            Err(e) => CalVer::parse(text)
                .map(|c| Version {
                    text: text.to_string(),
                    key: Key::Calver(c),
                })
                .map_err(|_| e),
        }
    }

    /// Parses text in the component's scheme.
    ///
    /// # Errors
    /// What is wrong, with the expected form.
    pub fn parse_as(text: &str, versioning: Versioning) -> Result<Version, String> {
        match versioning {
            Versioning::Semver => semver::Version::parse(text).map(Version::from).map_err(|e| {
                let hint = if CalVer::parse(text).is_ok() {
                    "; a date: give the component `versioning: calver`"
                } else {
                    ""
                };
                format!("`{text}` is not semver ({e}; expected e.g. 2.0.0{hint})")
            }),
            Versioning::Calver => CalVer::parse(text).map(|c| Version {
                text: text.to_string(),
                key: Key::Calver(c),
            }),
        }
    }

    /// The semver version, for a semver release.
    pub fn semver(&self) -> Option<&semver::Version> {
        match &self.key {
            Key::Semver(v) => Some(v),
            Key::Calver(_) => None,
        }
    }

    /// The calendar version, for a calver release.
    pub fn calver(&self) -> Option<&CalVer> {
        match &self.key {
            Key::Semver(_) => None,
            Key::Calver(c) => Some(c),
        }
    }

    /// The prerelease tag (empty for a release, and always for calver).
    pub fn prerelease(&self) -> &str {
        self.semver().map_or("", |v| v.pre.as_str())
    }

    /// The prerelease channel: the first dot-separated word of the prerelease tag.
    pub fn channel(&self) -> Option<&str> {
        let pre = self.prerelease();
        (!pre.is_empty()).then(|| pre.split('.').next().unwrap_or(""))
    }

    /// Build metadata (`+build`), which releases and pins must not have.
    pub fn build(&self) -> &str {
        self.semver().map_or("", |v| v.build.as_str())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The version without its prerelease tag (a prerelease matches requirements by it).
    fn release_of(&self) -> Option<Version> {
        let v = self.semver()?;
        if v.pre.is_empty() {
            return None;
        }
        let mut stable = v.clone();
        stable.pre = semver::Prerelease::EMPTY;
        Some(Version::from(stable))
    }

    /// (first, second, third number) and the tail: a prerelease sorts before its release, a
    /// release is sequence 0.
    fn order_key(&self) -> ((u64, u64, u64), Option<u64>) {
        match &self.key {
            Key::Semver(v) => ((v.major, v.minor, v.patch), v.pre.is_empty().then_some(0)),
            Key::Calver(c) => (
                (u64::from(c.year), u64::from(c.month), u64::from(c.day)),
                Some(u64::from(c.sequence)),
            ),
        }
    }
}

impl std::str::FromStr for Version {
    type Err = semver::Error;

    /// [`Version::parse`]: the scheme inferred from the text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Version::parse(text)
    }
}

impl From<semver::Version> for Version {
    fn from(v: semver::Version) -> Self {
        Version {
            text: v.to_string(),
            key: Key::Semver(v),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.key, &other.key) {
            (Key::Semver(a), Key::Semver(b)) => a.cmp(b),
            // Build metadata last, as semver's own order has it, so the order stays total.
            _ => self
                .order_key()
                .cmp(&other.order_key())
                .then_with(|| self.build().cmp(other.build())),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal versions hash alike across schemes: the numbers, the tail, the prerelease and
        // build text (both empty for calver).
        self.order_key().hash(state);
        self.prerelease().hash(state);
        self.build().hash(state);
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A comparison operator of a calver requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ReqKind {
    Semver(semver::VersionReq),
    /// Every comparison must hold (an empty list: `*`, any version).
    Calver(Vec<(Op, Version)>),
}

/// A version requirement in a component's scheme: semver's (`^1.4`, `>=2.0, <3`), or for calver
/// comma-separated comparisons of dates (`>=2026-01-01`, `<2026.06.01`, `=2026-02-03-001`, `*`).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionReq {
    kind: ReqKind,
}

impl VersionReq {
    /// Parses a requirement of unknown scheme (policy `deny`): semver if it is one, else calver.
    ///
    /// # Errors
    /// The semver parser's complaint, when the text is no calver requirement either.
    pub fn parse(text: &str) -> Result<VersionReq, String> {
        match semver::VersionReq::parse(text) {
            Ok(r) => Ok(VersionReq {
                kind: ReqKind::Semver(r),
            }),
            Err(e) => Self::parse_calver(text).map_err(|_| e.to_string()),
        }
    }

    /// Parses a requirement in the component's scheme.
    ///
    /// # Errors
    /// What is wrong, with an example of the form (the message of the scheme's parser).
    pub fn parse_as(text: &str, versioning: Versioning) -> Result<VersionReq, String> {
        match versioning {
            Versioning::Semver => semver::VersionReq::parse(text)
                .map(|r| VersionReq {
                    kind: ReqKind::Semver(r),
                })
                .map_err(|e| e.to_string()),
            Versioning::Calver => Self::parse_calver(text),
        }
    }

    fn parse_calver(text: &str) -> Result<VersionReq, String> {
        let trimmed = text.trim();
        if trimmed == "*" {
            return Ok(VersionReq {
                kind: ReqKind::Calver(Vec::new()),
            });
        }
        let mut comparisons = Vec::new();
        for part in trimmed.split(',') {
            let part = part.trim();
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(p, op)| part.strip_prefix(p).map(|rest| (*op, rest)))
            .unwrap_or((Op::Eq, part));
            let date =
                CalVer::parse_reason(rest.trim()).map_err(|why| format!("`{part}`: {why}, after >=, >, <=, < or ="))?;
            comparisons.push((
                op,
                Version {
                    text: rest.trim().to_string(),
                    key: Key::Calver(date),
                },
            ));
        }
        Ok(VersionReq {
            kind: ReqKind::Calver(comparisons),
        })
    }

    /// Whether `version` satisfies the requirement exactly (semver's rules for semver: a
    /// prerelease only when a comparator names one of the same version).
    pub fn matches(&self, version: &Version) -> bool {
        match &self.kind {
            ReqKind::Semver(r) => version.semver().is_some_and(|v| r.matches(v)),
            ReqKind::Calver(comparisons) => {
                // A semver release read back from the state branch may be a date (`2026.10.15`).
                let dated = version.calver().is_some() || version.semver().is_some_and(|v| v.pre.is_empty());
                dated
                    && comparisons.iter().all(|(op, bound)| {
                        let o = version.cmp(bound);
                        match op {
                            Op::Eq => o == Ordering::Equal,
                            Op::Gt => o == Ordering::Greater,
                            Op::Ge => o != Ordering::Less,
                            Op::Lt => o == Ordering::Less,
                            Op::Le => o != Ordering::Greater,
                        }
                    })
            }
        }
    }

    /// [`VersionReq::matches`], also letting a prerelease match by its release version when the
    /// requirement names no prerelease (`>=2.0` accepts `2.1.0-beta.1`): channels decide which
    /// prereleases a target may take.
    pub fn accepts(&self, version: &Version) -> bool {
        if self.matches(version) {
            return true;
        }
        let ReqKind::Semver(r) = &self.kind else {
            return false;
        };
        version
            .release_of()
            .is_some_and(|stable| self.matches(&stable) && r.comparators.iter().all(|c| c.pre.is_empty()))
    }
}

impl std::fmt::Display for VersionReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ReqKind::Semver(r) => write!(f, "{r}"),
            ReqKind::Calver(c) if c.is_empty() => f.write_str("*"),
            ReqKind::Calver(c) => {
                let parts: Vec<String> = c.iter().map(|(op, v)| format!("{}{v}", op.as_str())).collect();
                f.write_str(&parts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(text: &str) -> Version {
        Version::parse_as(text, Versioning::Calver).unwrap()
    }

    #[test]
    fn calver_forms_parse_and_bad_dates_say_why() {
        for (text, expected) in [
            ("2026-02-03-001", (2026, 2, 3, 1)),
            ("2026-02-03", (2026, 2, 3, 0)),
            ("2026.02.03", (2026, 2, 3, 0)),
            ("2024-02-29-12", (2024, 2, 29, 12)),
        ] {
            let c = CalVer::parse(text).unwrap();
            assert_eq!((c.year, c.month, c.day, c.sequence), expected, "{text}");
            assert_eq!(cal(text).to_string(), text, "kept as written");
        }
        for (text, why) in [
            ("2026-13-01", "month 13 does not exist"),
            ("2026-00-10", "month 00 does not exist"),
            ("2026-02-30", "2026-02 has no day 30"),
            ("2025-02-29-001", "2025-02 has no day 29"),
            ("2026-04-31", "2026-04 has no day 31"),
            ("2026-02-00", "2026-02 has no day 00"),
            ("2026.2.3", "a four-digit year, two-digit month and day"),
            ("26-02-03", "expected YYYY-MM-DD-NNN"),
            ("2026-02-03-", "the sequence is 1-9 digits"),
            ("2026-02-03-x1", "the sequence is 1-9 digits"),
            ("2026.02.03.1", "expected YYYY-MM-DD-NNN"),
            ("1.2.0", "expected YYYY-MM-DD-NNN"),
        ] {
            let e = CalVer::parse(text).unwrap_err();
            assert!(e.contains(why) && e.contains(CALVER_FORMS), "{text}: {e}");
        }
    }

    /// The calver order is (year, month, day, sequence), whatever the form; semver keeps
    /// semver precedence; a version read back without its scheme equals the one written.
    #[test]
    fn ordering_within_and_across_forms() {
        let ascending = [
            "2025-12-31-999",
            "2026-01-01",
            "2026-01-01-001",
            "2026-01-01-002",
            "2026.01.02",
            "2026-01-02-001",
            "2026-10-15-003",
        ];
        for pair in ascending.windows(2) {
            assert!(cal(pair[0]) < cal(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(cal("2026.02.03"), cal("2026-02-03"), "one date in two forms");
        // Read back from the state branch, `2026.10.15` parses as semver, and is the same version.
        let read_back = Version::parse("2026.10.15").unwrap();
        assert!(read_back.semver().is_some());
        assert_eq!(read_back, cal("2026.10.15"));
        assert!(read_back < cal("2026-10-15-001"));
        assert_eq!(Version::parse("2026-02-03-001").unwrap(), cal("2026-02-03-001"));
        assert!(Version::new(1, 0, 0) < Version::parse("1.0.1-rc.1").unwrap());
        assert!(Version::parse("2.0.0-rc.1").unwrap() < Version::new(2, 0, 0));
    }

    #[test]
    fn semver_components_refuse_dates_with_a_hint() {
        let e = Version::parse_as("2026-02-03-001", Versioning::Semver).unwrap_err();
        assert!(e.contains("is not semver") && e.contains("versioning: calver"), "{e}");
        let e = Version::parse_as("2.0.0", Versioning::Calver).unwrap_err();
        assert!(e.contains("is not a calver version"), "{e}");
    }

    #[test]
    fn calver_requirements() {
        let cases = [
            (">=2026-01-01", "2026-01-01", true),
            (">=2026-01-01", "2025-12-31-005", false),
            (">=2026-01-01, <2026.06.01", "2026-05-31-009", true),
            (">=2026-01-01, <2026.06.01", "2026-06-01", false),
            ("<2026-02-03-002", "2026-02-03-001", true),
            ("=2026-02-03-001", "2026-02-03-001", true),
            ("2026-02-03-001", "2026-02-03-002", false),
            (">2026-02-03", "2026-02-03-001", true),
            ("<=2026-02-03", "2026-02-03-001", false),
            ("*", "1999-01-01", true),
        ];
        for (req, version, expected) in cases {
            let r = VersionReq::parse_as(req, Versioning::Calver).unwrap();
            assert_eq!(r.matches(&cal(version)), expected, "{req} vs {version}");
            assert_eq!(r.accepts(&cal(version)), expected, "{req} vs {version}");
        }
        for bad in ["^2026-01-01", ">=2026-13-01", "~1.2", ">=2026-01-01 || <2025-01-01", ""] {
            assert!(VersionReq::parse_as(bad, Versioning::Calver).is_err(), "{bad}");
        }
        // A semver requirement never matches a calver version, and the reverse.
        let semver_req = VersionReq::parse_as(">=1.0.0", Versioning::Semver).unwrap();
        assert!(!semver_req.matches(&cal("2026-01-01")));
        let calver_req = VersionReq::parse_as(">=2026-01-01", Versioning::Calver).unwrap();
        assert!(!calver_req.matches(&Version::parse("1.0.0-rc.1").unwrap()));
        assert_eq!(calver_req.to_string(), ">=2026-01-01");
    }
}
