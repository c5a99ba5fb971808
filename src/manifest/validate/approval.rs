//! Approval manifests: what they approve must exist.

use std::collections::BTreeMap;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values;

pub(super) fn check_approval(
    approval: &Manifest<ApprovalSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = &approval.spec;
    if !components.contains_key(spec.component.as_str()) {
        diags.push(approval.origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/component",
            format!(
                "unknown component `{}`; add a Component manifest or fix the name",
                spec.component
            ),
        ));
    }
    let versioning = components
        .get(spec.component.as_str())
        .map(|c| c.spec.versioning)
        .unwrap_or_default();
    if let Err(e) = values::parse_release_version(&spec.version, versioning) {
        diags.push(approval.origin.diagnostic(
            Severity::Invalid,
            "semver",
            "/spec/version",
            format!("spec.version {e}"),
        ));
    }
    for (i, who) in spec.approved_by.iter().enumerate() {
        if !who.contains('@') {
            diags.push(approval.origin.diagnostic(
                Severity::Invalid,
                "approval",
                &format!("/spec/approvedBy/{i}"),
                format!("approver `{who}` is not an email address"),
            ));
        }
    }
}
