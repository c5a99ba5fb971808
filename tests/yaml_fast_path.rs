//! The fast YAML reader (`document::fast_yaml`, built on the parser's events) against the
//! reference (`document::parse_yaml_serde`, serde-saphyr's `Spanned` deserialization), on every
//! text file under `fixtures/` (good, bad and schema cases; `.gen` files expanded) and on a
//! table of scalar spellings. Wherever the fast reader answers, it must answer exactly what
//! serde-saphyr does: the same documents, values, value types and locations of every node and
//! key. Where it does not (`None`), `parse_yaml` falls back to serde-saphyr, so errors and their
//! messages are serde-saphyr's by construction.

use std::path::{Path, PathBuf};

use gantry::manifest::document::{FastYaml, fast_yaml, parse_yaml, parse_yaml_serde};

#[derive(serde::Deserialize)]
struct Generated {
    head: String,
    repeat: String,
    times: usize,
    tail: String,
}

/// Every file under `dir`, sorted; symlinks are not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            walk(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// The text of a fixture file as gantry would read it (`.gen` expanded), if it is UTF-8.
fn text_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).expect("read fixture");
    if path.extension().is_some_and(|e| e == "gen") {
        let spec: Generated = serde_json::from_slice(&bytes).expect(".gen is JSON");
        return Some(format!("{}{}{}", spec.head, spec.repeat.repeat(spec.times), spec.tail));
    }
    String::from_utf8(bytes).ok()
}

fn is_yaml_name(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gen").unwrap_or(&name);
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Compares the two readers on one text; returns whether the fast reader answered.
fn agree(label: &str, text: &str, options: &FastYaml) -> bool {
    let Some(fast) = fast_yaml(text, options) else {
        return false;
    };
    match parse_yaml_serde(text) {
        Ok(reference) => assert_eq!(fast, reference, "{label}: the fast reader differs from serde-saphyr"),
        Err(e) => panic!(
            "{label}: the fast reader accepted what serde-saphyr rejects at {}:{}: {}",
            e.loc.line, e.loc.column, e.message
        ),
    }
    true
}

#[test]
fn fast_reader_agrees_with_serde_saphyr_on_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let options = FastYaml::manifests();
    // (fast, fallback) counts: YAML files, then other text files (TOML, scripts...) read as YAML.
    let (mut yaml, mut other) = ((0, 0), (0, 0));
    let mut unexplained = Vec::new();
    for path in &files {
        let Some(text) = text_of(path) else { continue };
        let label = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        let fast = agree(&label, &text, &options);
        let counts = if is_yaml_name(path) { &mut yaml } else { &mut other };
        if fast {
            counts.0 += 1;
        } else {
            counts.1 += 1;
            // A good manifest with none of what the fast reader leaves to serde-saphyr must not
            // fall back: that would quietly lose the speed-up.
            let plain = !["&", "*", "!", "<<", "%YAML"].iter().any(|m| text.contains(m));
            if is_yaml_name(path) && label.starts_with("good/") && plain && parse_yaml_serde(&text).is_ok() {
                unexplained.push(label);
            }
        }
    }
    eprintln!(
        "YAML files: {} read by the fast path, {} fell back; other text files: {} fast, {} fell back",
        yaml.0, yaml.1, other.0, other.1
    );
    assert!(yaml.0 > 1000, "the fast path read only {} YAML fixtures", yaml.0);
    assert!(
        unexplained.is_empty(),
        "plain good manifests fell back: {unexplained:?}"
    );
}

/// Every scalar spelling serde-saphyr resolves specially, as a mapping value, sequence item,
/// flow item and key, in plain, quoted and block styles.
#[test]
fn fast_reader_resolves_scalars_like_serde_saphyr() {
    let scalars = [
        "",
        "~",
        "null",
        "Null",
        "NULL",
        "nULL",
        "true",
        "True",
        "TRUE",
        "tRUE",
        "false",
        "False",
        "FALSE",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "Yes",
        "OFF",
        "0",
        "-0",
        "+0",
        "00",
        "007",
        "-007",
        "+007",
        "1",
        "+1",
        "-1",
        "12_345",
        "1__2",
        "_1",
        "1_",
        "0x1F",
        "0X1f",
        "-0x10",
        "+0x10",
        "0x",
        "0x_1",
        "0o17",
        "0O17",
        "0o8",
        "-0o17",
        "0b101",
        "0B11",
        "0b2",
        "-0b1",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "1.5",
        "-1.5",
        "+1.5",
        ".5",
        "5.",
        "-.5",
        "1e3",
        "1E3",
        "1e-3",
        "1.5e+3",
        "1e400",
        "-1e400",
        "1e19",
        "9.3e18",
        "-9.3e18",
        "9.1e18",
        "1.0",
        "0.0",
        "-0.0",
        ".inf",
        "-.inf",
        "+.inf",
        ".Inf",
        ".INF",
        ".nan",
        ".NaN",
        ".NAN",
        "inf",
        "-inf",
        "nan",
        "NaN",
        "infinity",
        "Infinity",
        "1_000.5",
        "1.2.3",
        "1.2.3-rc.1",
        "v1.2",
        "2026-02-03",
        "02:00",
        "1:30",
        "0x1p3",
        "+",
        "-",
        ".",
        "e5",
        "1e",
        "--1",
        "+-1",
        "-+1",
        "0.1.2",
        "١٢",
        "+.5",
        "-.",
        "0e0",
        "hello world",
        "a: b",
        "#x",
        "=",
        "<<<",
        "<",
        "x<<",
    ];
    let options = FastYaml::manifests();
    let mut fast = 0;
    for s in scalars {
        for text in [
            format!("v: {s}\n"),
            format!("- {s}\n"),
            format!("[{s}, x]\n"),
            format!("{{k: {s}}}\n"),
            format!("{s}: v\n"),
            format!("v: \"{s}\"\n"),
            format!("v: '{s}'\n"),
            format!("v: |\n  {s}\n"),
            format!("v: >-\n  {s}\n"),
            format!("{s}\n"),
            format!("--- {s}\n--- {s}\n"),
        ] {
            fast += usize::from(agree(&format!("{text:?}"), &text, &options));
        }
    }
    assert!(fast > 800, "only {fast} scalar cases took the fast path");
}

/// Structures: nesting, empty collections, multi-document streams, comments, odd spacing,
/// CRLF, a BOM, non-ASCII text (columns count characters), and what must fall back.
#[test]
fn fast_reader_structures_agree() {
    let cases = [
        "a: 1\nb:\n  c: [x, y]\n---\nd: true\n",
        "a:\n- 1\n- - 2\n  - 3\n-  {x: 1, y: [ ]}\n",
        "a: {}\nb: []\nc:\nd: ~\n",
        "# only a comment\n",
        "",
        "---\n",
        "--- \n...\n---\na: 1\n...\n",
        "a: 1 # trailing\n# between\nb: 2\n",
        "\u{feff}a: 1\n",
        "a: 1\r\nb:\r\n  - x\r\n",
        "ünï: cödé\nk: [é, ü]\n",
        "key with spaces: value with spaces\n'quoted key': \"quoted \\u00e9 value\"\n",
        "text: |\n  line 1\n  line 2\nfolded: >\n  a\n  b\nkeep: |+\n  x\n\nstrip: |-\n  y\n",
        "multi: this is\n  a plain\n  multi-line scalar\n",
        "? a\n: 1\n",
        "{a: 1, b: [1, 2, {c: d}], e: {f: g}}\n",
        "- [a, [b, [c, [d]]]]\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "<<: {a: 1}\n",
        "a: 1\na: 2\n",
        "1: a\n",
        "[a]: b\n",
        "{a: b}: c\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: [1, 2\n",
        "a: b: c\n",
        "- a\nb: c\n",
        "\ta: 1\n",
        "a:\n  b: 1\n c: 2\n",
        "scalar root\n",
        "--- 1\n--- ~\n--- 'x'\n",
    ];
    let options = FastYaml::manifests();
    for text in cases {
        agree(&format!("{text:?}"), text, &options);
    }
    let deep = |n: usize| format!("{}{}\n", "[".repeat(n), "]".repeat(n));
    for n in [1, 10, 40, 47, 48, 49, 63, 64, 65, 70, 300] {
        agree(&format!("depth {n}"), &deep(n), &options);
    }
    assert!(fast_yaml(&deep(47), &options).is_some());
    assert!(
        fast_yaml(&deep(49), &options).is_none(),
        "deep documents are left to serde-saphyr"
    );
    assert!(fast_yaml("a: &x 1\nb: *x\n", &options).is_none());
    assert!(fast_yaml("a: 1\na: 2\n", &options).is_none());
}

/// `parse_yaml` (fast path, fallback on anything else) gives exactly the reference result,
/// errors included.
#[test]
fn parse_yaml_equals_the_reference() {
    for text in [
        "a: 1\n",
        "a: 1\na: 2\n",
        "a: [1, 2\n",
        "a: &x [1]\nb: *x\n",
        "v: 1e400\n",
        "v: 99999999999999999999\n",
        "v: !include x.yaml\n",
    ] {
        let (got, want) = (parse_yaml(text), parse_yaml_serde(text));
        match (got, want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
            (Err(a), Err(b)) => assert_eq!((a.loc, a.message), (b.loc, b.message), "{text:?}"),
            (a, b) => panic!("{text:?}: {a:?} vs {b:?}"),
        }
    }
}
