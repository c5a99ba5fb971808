//! Which targets an operator command names: targets by name and `--selector KEY=VALUE` pairs,
//! checked against the desired state at the tip the command edits (`retry`, `rollback`).

use crate::manifest::{Desired, Labels, validate::selector_matches};

use super::OpsError;

/// The targets `names` and `selector` name, names first, then matches in name order, each once.
///
/// # Errors
/// [`OpsError::Usage`] for a name not in `desired` (at `at`, e.g. `4f0c1d2e4f0c (main)`), a
/// selector that is not `KEY=VALUE`, a selector nothing matches, or nothing named at all
/// (`verb` says what the command does: "retry").
pub fn named_targets(
    desired: &Desired,
    at: &str,
    names: &[String],
    selector: &[String],
    verb: &str,
) -> Result<Vec<String>, OpsError> {
    let pairs = selector;
    let selector = parse_selector(pairs)?;
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !desired.targets.contains_key(name) {
            return Err(OpsError::Usage(format!(
                "target `{name}` is not in the desired state at {at}"
            )));
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    if let Some(labels) = &selector {
        for target in desired.targets.values() {
            if selector_matches(Some(labels), target.labels()) && !out.iter().any(|n| n == target.name()) {
                out.push(target.name().to_string());
            }
        }
    }
    if out.is_empty() {
        return Err(OpsError::Usage(match selector {
            Some(_) => format!("no target matches --selector {}", pairs.join(" --selector ")),
            None => format!("name the targets to {verb}, or pass --selector KEY=VALUE"),
        }));
    }
    Ok(out)
}

/// `KEY=VALUE` pairs as labels (`None`: no selector given).
///
/// # Errors
/// [`OpsError::Usage`] naming a pair without `=` or with an empty key.
pub fn parse_selector(pairs: &[String]) -> Result<Option<Labels>, OpsError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut labels = Labels::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| OpsError::Usage(format!("--selector `{pair}` is not KEY=VALUE")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_must_be_key_equals_value() {
        assert!(parse_selector(&["env=prod".into()]).unwrap().is_some());
        assert!(parse_selector(&["=x".into()]).is_err());
        assert!(parse_selector(&["env".into()]).is_err());
        assert!(parse_selector(&[]).unwrap().is_none());
    }
}
