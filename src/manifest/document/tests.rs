//! Parser tests: locations, limits and messages of both formats.

use super::*;

#[test]
fn yaml_nodes_know_their_lines() {
    let docs = parse_yaml("a: 1\nb:\n  c: [x, y]\n---\nd: true\n").unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].loc_of("/b/c/1"), Loc { line: 3, column: 10 });
    assert_eq!(docs[0].key_loc("/b/c"), Some(Loc { line: 3, column: 3 }));
    assert_eq!(docs[1].loc_of("/d"), Loc { line: 5, column: 4 });
    assert_eq!(docs[0].to_json(), serde_json::json!({"a": 1, "b": {"c": ["x", "y"]}}));
}

#[test]
fn missing_pointer_falls_back_to_parent() {
    let docs = parse_yaml("spec:\n  x: 1\n").unwrap();
    assert_eq!(docs[0].loc_of("/spec/missing"), Loc { line: 2, column: 3 });
}

#[test]
fn yaml_duplicate_keys_are_errors() {
    let err = parse_yaml("a: 1\na: 2\n").unwrap_err();
    assert!(err.message.contains("duplicate"), "{}", err.message);
    assert_eq!(err.loc.line, 2);
}

#[test]
fn toml_nodes_know_their_lines() {
    let node = parse_toml("a = 1\n[b]\nc = \"x\"\n").unwrap();
    assert_eq!(node.loc_of("/b/c"), Loc { line: 3, column: 5 });
    assert_eq!(node.to_json(), serde_json::json!({"a": 1, "b": {"c": "x"}}));
}

/// Regression: `released = 2026-02-03` in a TOML Release failed with "invalid type: string
/// \"$__toml_private_datetime\", expected a spanned value" (toml's private datetime map).
#[test]
fn toml_datetimes_become_strings() {
    let cases = [
        ("d = 2026-02-03", "2026-02-03"),
        ("d = 2026-02-03T10:00:00Z", "2026-02-03T10:00:00Z"),
        ("d = 2026-02-03T10:00:00+01:00", "2026-02-03T10:00:00+01:00"),
        ("d = 2026-11-27T00:00", "2026-11-27T00:00"),
        ("d = 02:00", "02:00"),
        ("d = 02:00:30", "02:00:30"),
    ];
    for (text, want) in cases {
        let node = parse_toml(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
        assert_eq!(node.to_json(), serde_json::json!({ "d": want }), "{text}");
        assert_eq!(node.loc_of("/d"), Loc { line: 1, column: 5 }, "{text}");
    }
    let node = parse_toml("[spec]\ndates = [2026-12-24, 2026-12-25]\n").unwrap();
    assert_eq!(node.loc_of("/spec/dates/1"), Loc { line: 2, column: 22 });
    assert_eq!(node.key_loc("/spec/dates"), Some(Loc { line: 2, column: 1 }));
}

#[test]
fn toml_numbers_and_limits() {
    let node = parse_toml("a = 0x10\nb = 1_000\nc = 18446744073709551615\nd = 1.5e3\ne = -7\n").unwrap();
    assert_eq!(
        node.to_json(),
        serde_json::json!({"a": 16, "b": 1000, "c": 18446744073709551615u64, "d": 1500.0, "e": -7})
    );
    let err = parse_toml("a = 1\nb = 18446744073709551616\n").unwrap_err();
    assert_eq!(err.loc, Loc { line: 2, column: 5 });
    assert!(err.message.contains("too large"), "{}", err.message);
    for depth in [70, 200, 100_000] {
        let deep = format!("a = {}{}", "[".repeat(depth), "]".repeat(depth));
        let err = parse_toml(&deep).unwrap_err();
        // Our limit, or toml's own recursion guard below it.
        assert!(
            err.message.contains("nested more than") || err.message.contains("max recursion depth"),
            "{depth}: {}",
            err.message
        );
    }
    let err = parse_toml("a = 1\na = 2\n").unwrap_err();
    assert_eq!(err.loc.line, 2, "{}", err.message);
}

#[test]
fn toml_keeps_source_order() {
    let node = parse_toml("z = 1\na = 2\n").unwrap();
    let NodeValue::Map(entries) = &node.value else {
        panic!("not a map")
    };
    let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["z", "a"]);
}

#[test]
fn toml_errors_have_lines() {
    let err = parse_toml("a = 1\nb = \n").unwrap_err();
    assert_eq!(err.loc.line, 2);
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    assert!(parse_yaml(&text).is_err());
}
