//! Fuzz target: bytes → `gantry.toml`, a YAML manifest file and a TOML manifest file →
//! `manifest::read_manifests` → `manifest::validate` → window compilation.
//!
//! The input is split at NUL bytes: `gantry.toml \0 manifests.yaml \0 manifests.toml`.
//! Loading must never panic, whatever the bytes; every problem is a diagnostic.
#![no_main]

use gantry::manifest::{self, RawContent, RawFile};
use gantry::policy::window::WindowSchedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let config = parts.next().unwrap_or_default();
    let yaml = parts.next().unwrap_or_default();
    let toml = parts.next().unwrap_or_default();
    let file = |path: &str, bytes: &[u8]| RawFile {
        path: path.to_string(),
        content: RawContent::Bytes(bytes.to_vec()),
    };
    let config = file("gantry.toml", config);
    let files = [file("targets/fuzz.yaml", yaml), file("policies/fuzz.toml", toml)];
    let (manifests, diagnostics) = manifest::read_manifests(Some(&config), &files);
    for d in &diagnostics {
        // Rendering a diagnostic is what users see; it must not panic either.
        let _ = d.to_string();
    }
    let (desired, _) = manifest::validate(manifests);
    for window in &desired.windows {
        let _ = WindowSchedule::compile(&window.name, &window.spec);
    }
});
