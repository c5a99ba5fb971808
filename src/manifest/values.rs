//! Parsers for the small value languages inside manifests: names, labels, durations, versions.

use std::time::Duration;

use super::version::{self, Version, VersionReq, Versioning};

/// Whether `name` is a valid manifest name: `[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| edge(b) || b == b'.' || b == b'_' || b == b'-';
    match bytes {
        [] => false,
        [only] => edge(*only),
        [first, middle @ .., last] => {
            bytes.len() <= 63 && edge(*first) && edge(*last) && middle.iter().all(|&b| inner(b))
        }
    }
}

/// Whether git accepts `name` as a branch (`refs/heads/<name>`; a name already starting with
/// `refs/` is taken as it is). git's own rules, through libgit2, rather than a hand-written copy
/// that missed some (`@{`, a component starting with `.`): validation, the state writer and the
/// desired-branch lookup all ask this one function.
pub fn is_valid_branch_name(name: &str) -> bool {
    let full = if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("refs/heads/{name}")
    };
    git2::Reference::is_valid_name(&full)
}

/// Why a label key or value is invalid, if it is (Kubernetes label syntax).
pub fn label_problem(key: &str, value: &str) -> Option<String> {
    let segment_ok = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: u8| c.is_ascii_alphanumeric();
        let inner = |c: u8| edge(c) || c == b'-' || c == b'_' || c == b'.';
        !b.is_empty() && b.len() <= 63 && edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(|&c| inner(c))
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b.iter()
                        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            });
        if !ok {
            return Some(format!(
                "label key `{key}` has an invalid prefix (expected a DNS name such as example.com/)"
            ));
        }
    }
    if !segment_ok(name) {
        return Some(format!(
            "label key `{key}` is invalid (1-63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit)"
        ));
    }
    if !value.is_empty() && !segment_ok(value) {
        return Some(format!(
            "label value `{value}` of `{key}` is invalid (at most 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit)"
        ));
    }
    None
}

/// The duration grammar in words: the JSON Schemas' `duration` description, so a value the schema
/// rejects and one this parser rejects read the same wherever they are checked (a unit test in
/// `schema` holds them together).
pub const DURATION_RULE: &str =
    "one or more <number><unit> parts with units ms, s, m, h, d, w, e.g. 30m, 1h30m, 7d or 0d";

/// Parses durations such as `30s`, `10m`, `1h30m`, `7d`, `2w`, `500ms`, `0d`: the one duration
/// grammar of manifests, `gantry.toml` and the daemon.
///
/// # Errors
/// A message saying what is expected (the schema's wording for a malformed value).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        let quoted = serde_json::Value::String(text.to_string());
        format!("{quoted} is not a valid duration: {DURATION_RULE}")
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        // Only overflow makes a run of digits unparsable.
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too long (at most 10 years)"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|ms| total.checked_add(ms))
            .filter(|&ms| ms <= 10 * 365 * 86_400_000)
            .ok_or_else(|| format!("`{text}` is too long (at most 10 years)"))?;
    }
    Ok(Duration::from_millis(total))
}

/// What a target asks for: an exact version or a requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionWanted {
    Pin(Version),
    Requirement(VersionReq),
}

impl std::fmt::Display for VersionWanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionWanted::Pin(v) => write!(f, "{v}"),
            VersionWanted::Requirement(r) => write!(f, "{r}"),
        }
    }
}

/// Parses a target's `version` in its component's scheme: an exact version is a pin (semver's
/// own parser would read `2.0.0` as the requirement `^2.0.0`, which is not what a pin means).
///
/// # Errors
/// A message with an example of each accepted form.
pub fn parse_version_wanted(text: &str, versioning: Versioning) -> Result<VersionWanted, String> {
    let trimmed = text.trim().trim_start_matches('=');
    if versioning == Versioning::Calver {
        let comparison = text.contains(|c: char| "<>=*,^~|".contains(c));
        return match Version::parse_as(trimmed, Versioning::Calver) {
            Ok(version) => Ok(VersionWanted::Pin(version)),
            Err(e) if !comparison => Err(format!("{e}; the component has `versioning: calver`")),
            Err(_) => VersionReq::parse_as(text, Versioning::Calver)
                .map(VersionWanted::Requirement)
                .map_err(|why| format!("`{text}` is not a calver requirement ({why}; e.g. >=2026-01-01, <2026.06.01)")),
        };
    }
    if let Ok(version) = semver::Version::parse(trimmed) {
        if !version.build.is_empty() {
            return Err(format!(
                "`{text}` has build metadata (`+{}`), which semver ignores when comparing; pin the version without it",
                version.build
            ));
        }
        return Ok(VersionWanted::Pin(Version::from(version)));
    }
    VersionReq::parse_as(text, Versioning::Semver).map(VersionWanted::Requirement).map_err(|e| {
        // Text that reads like a plain version is explained by the version parser, whose
        // complaint ("unexpected character '.' after patch version number") is the useful one;
        // the requirement parser's would talk about commas.
        let looks_like_version = trimmed.starts_with(|c: char| c.is_ascii_digit() || c == 'v' || c == 'V')
            && !trimmed.contains(|c: char| "<>^~*, |".contains(c));
        match semver::Version::parse(trimmed) {
            Err(version_error) if looks_like_version => {
                let hint = if trimmed.starts_with(['v', 'V']) {
                    "; drop the leading `v`"
                } else if version::CalVer::parse(trimmed).is_ok() {
                    "; a date: give the component `versioning: calver`"
                } else {
                    ""
                };
                format!("`{text}` is not a version ({version_error}{hint}; expected e.g. 2.0.0, or a requirement such as ^1.4)")
            }
            _ => format!("`{text}` is neither a version nor a requirement ({e}; expected e.g. 2.0.0 or ^1.4)"),
        }
    })
}

/// Parses a release's version in its component's scheme.
///
/// # Errors
/// A message with an example.
pub fn parse_release_version(text: &str, versioning: Versioning) -> Result<Version, String> {
    let version = Version::parse_as(text, versioning)?;
    if !version.build().is_empty() {
        return Err(format!(
            "`{text}` has build metadata (`+{}`), which semver ignores when ordering releases; drop it",
            version.build()
        ));
    }
    Ok(version)
}

/// A deny entry: a version or a requirement, of either scheme (a policy covers components of
/// both): semver when it parses as semver, else calver.
///
/// # Errors
/// A message with an example.
pub fn parse_version_set(text: &str) -> Result<VersionWanted, String> {
    let semver = parse_version_wanted(text, Versioning::Semver);
    if semver.is_err()
        && let Ok(calver) = parse_version_wanted(text, Versioning::Calver)
    {
        return Ok(calver);
    }
    semver
}

/// Whether `req` accepts `version`, letting a prerelease match by its release version when the
/// requirement names no prerelease itself (`>=2.0` accepts `2.1.0-beta.1`): the rule of target
/// requirements (channels decide which prereleases a target may take) and of `requires`.
pub fn requirement_accepts(req: &VersionReq, version: &Version) -> bool {
    req.accepts(version)
}

impl VersionWanted {
    /// Whether `v` is covered (a pin covers exactly itself).
    pub fn covers(&self, v: &Version) -> bool {
        match self {
            VersionWanted::Pin(p) => p == v,
            VersionWanted::Requirement(r) => r.matches(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "billing", "zen-med-clinic-billing", "a.b_c-1", "0"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a/b",
            "../x",
            "a b",
            "a;b",
            &"a".repeat(64),
            "a\0b",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    /// Regression (issue #9): the hand-written ref check accepted `a@{b}` and `.hidden`, which git
    /// refuses, so `validate` passed a config the state writer then failed on.
    #[test]
    fn branch_names() {
        for ok in ["main", "gantry/state", "release/1.x", "refs/heads/main", "a-b_c.d"] {
            assert!(is_valid_branch_name(ok), "{ok}");
        }
        for bad in [
            "", "a@{b}", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "/a", "a/", "a.lock", "a//b",
            ".hidden", "a/.b", "a\u{7}",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        assert!(label_problem("tenant", "acme").is_none());
        assert!(label_problem("gantry.dev/ring", "2").is_none());
        assert!(label_problem("env", "").is_none());
        assert!(label_problem("bad key", "x").is_some());
        assert!(label_problem("env", "a b").is_some());
        assert!(label_problem("Bad_/x", "x").is_some());
    }

    #[test]
    fn durations() {
        let cases = [
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("7d", 604_800_000),
            ("0d", 0),
            ("500ms", 500),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
        for bad in ["", "10", "m", "1x", "-1s", "1.5h", "99999999999999999999d", "100000d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_wanted() {
        assert_eq!(
            parse_version_wanted("2.0.0", Versioning::Semver).unwrap(),
            VersionWanted::Pin(Version::new(2, 0, 0))
        );
        assert!(matches!(
            parse_version_wanted("^1.4", Versioning::Semver).unwrap(),
            VersionWanted::Requirement(_)
        ));
        assert!(matches!(
            parse_version_wanted(">=1.2, <2", Versioning::Semver).unwrap(),
            VersionWanted::Requirement(_)
        ));
        assert!(parse_version_wanted("latest", Versioning::Semver).is_err());
        assert!(
            parse_version_wanted("1.0.0+build5", Versioning::Semver)
                .unwrap_err()
                .contains("build metadata")
        );
        assert!(parse_release_version("2.0", Versioning::Semver).is_err());
    }

    /// Each scheme reads its own forms (issue #16); a policy's `deny` reads either.
    #[test]
    fn versions_wanted_by_scheme() {
        use Versioning::{Calver, Semver};
        let pin = |t: &str, s| matches!(parse_version_wanted(t, s), Ok(VersionWanted::Pin(_)));
        let req = |t: &str, s| matches!(parse_version_wanted(t, s), Ok(VersionWanted::Requirement(_)));
        assert!(pin("2026-02-03-001", Calver) && pin("=2026.02.03", Calver) && pin("2026-02-03", Calver));
        assert!(req(">=2026-01-01", Calver) && req(">=2026-01-01, <2026-02-01", Calver) && req("*", Calver));
        assert!(pin("2.0.0", Semver) && req("^1.4", Semver));
        for (text, scheme, says) in [
            (
                "2026-02-03-001",
                Semver,
                "a date: give the component `versioning: calver`",
            ),
            ("2.0.0", Calver, "is not a calver version"),
            ("2026-02-29", Calver, "2026-02 has no day 29"),
            ("^2026-02-03", Calver, "is not a calver requirement"),
            ("~2026-02-03", Calver, "is not a calver requirement"),
        ] {
            let e = parse_version_wanted(text, scheme).unwrap_err();
            assert!(e.contains(says), "{text} as {scheme}: {e}");
        }
        for (deny, covers, not) in [
            ("2.0.1", "2.0.1", "2.0.2"),
            (">=2026-03-02, <2026-03-03", "2026-03-02-007", "2026-03-03"),
            ("2026-02-03-001", "2026-02-03-001", "2026-02-03-002"),
        ] {
            let set = parse_version_set(deny).unwrap();
            let v = |t: &str| Version::parse(t).unwrap();
            assert!(set.covers(&v(covers)) && !set.covers(&v(not)), "{deny}");
        }
        assert!(parse_version_set(">=2026-13-01").is_err());
    }
}
