//! The built-in `--format json` of a plan, rendered on several threads (issue #17).
//!
//! On 10,000 targets the plan's pretty JSON is about 40 MB, nearly all of it the `actions`
//! array, and serde_json writes it on one thread while the other core waits. Each action's text
//! depends on nothing but the action, so the actions are cut into batches dealt round-robin to
//! the threads, each rendered into memory a batch ahead (this thread's streamed to `out`), and
//! written in order.
//!
//! # Guarantee
//! The bytes are exactly those of `serde_json::to_writer_pretty(plan)` (tests compare them on
//! plans of every shape). Everything around the actions comes from serializing the plan itself
//! with no actions, so field order, names and attributes are always the plan's own; the
//! `"actions": []` it holds is found at the start of a line (a JSON string never holds a raw
//! newline: serde_json writes `\n`) and replaced by the actions, each serialized by serde_json's
//! own pretty printer put in the state it is in at that point of the plan (depth 2), with the
//! separators and the closing bracket that printer writes there. The lists actions share (one
//! per upgrade path: its migrations and release notes, most of the text) are rendered once per
//! thread the same way, at the depth of an action's field, and copied into every action that
//! holds them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};
use serde_json::value::RawValue;

use crate::manifest::{Urgency, Version};
use crate::plan::{Action, ActionKind, ApprovalState, Blocker, ConfigChange, Plan, Status};
use crate::policy::UpdateType;

use super::RenderError;

/// Below this many actions one thread renders the plan: starting threads costs more.
const MIN_ACTIONS_PER_THREAD: usize = 512;

/// At most this many threads render.
const MAX_THREADS: usize = 4;

/// Actions rendered as one piece: large enough to cost little to hand over, small enough
/// (about 1 MB of JSON) to keep memory flat.
const BATCH: usize = 256;

/// Where an empty `actions` array sits in the plan's pretty JSON: a key of the top-level object,
/// so on a line of its own, indented once. Strings before it cannot hold a raw newline.
const EMPTY_ACTIONS: &[u8] = b"\n  \"actions\": []";

/// Writes `plan` as pretty JSON (no trailing newline), the same bytes as
/// `serde_json::to_writer_pretty(out, plan)`.
///
/// # Errors
/// [`RenderError::Json`] when serializing or writing fails.
pub fn write_pretty(plan: &Plan, out: &mut impl Write) -> Result<(), RenderError> {
    write_on(plan, threads_for(plan.actions.len()), BATCH, out)
}

/// [`write_pretty`] on `threads` threads (at most one per action), in batches of `batch`.
fn write_on(plan: &Plan, threads: usize, batch: usize, out: &mut impl Write) -> Result<(), RenderError> {
    let threads = threads.min(plan.actions.len());
    if threads <= 1 {
        serde_json::to_writer_pretty(out, plan)?;
        return Ok(());
    }
    // The plan around its actions, rendered by the plan's own Serialize. Destructured without
    // `..`, so that a field added to `Plan` must be added here too (the compiler says so).
    let Plan {
        head,
        base,
        now,
        actions,
        violations,
        warnings,
        summary,
        rollouts,
    } = plan;
    let shell = Plan {
        head: head.clone(),
        base: base.clone(),
        now: now.clone(),
        actions: Vec::new(),
        violations: violations.clone(),
        warnings: warnings.clone(),
        summary: summary.clone(),
        rollouts: rollouts.clone(),
    };
    let shell = serde_json::to_vec_pretty(&shell)?;
    let at = find(&shell, EMPTY_ACTIONS).expect("invariant: a plan's pretty JSON has its `actions` key");
    // Up to and including `"actions": `; after the `[]`.
    let (before, after) = (
        &shell[..at + EMPTY_ACTIONS.len() - 2],
        &shell[at + EMPTY_ACTIONS.len()..],
    );
    out.write_all(before).map_err(serde_json::Error::io)?;
    out.write_all(b"[").map_err(serde_json::Error::io)?;
    write_batches(actions, threads, batch, out)?;
    end_actions(out)?;
    out.write_all(after).map_err(serde_json::Error::io)?;
    Ok(())
}

/// Writes `actions` (at least one) as the elements of the plan's `actions` array on `threads`
/// threads: batches of `batch` actions dealt round-robin, this thread's streamed to `out`,
/// each other thread's rendered into memory and handed over in order. A thread renders at most
/// one batch ahead of the writer, so memory stays a few batches whatever the plan's size.
fn write_batches(actions: &[Action], threads: usize, batch: usize, out: &mut impl Write) -> Result<(), RenderError> {
    let batches: Vec<&[Action]> = actions.chunks(batch.max(1)).collect();
    std::thread::scope(|scope| -> Result<(), RenderError> {
        let workers: Vec<_> = (1..threads)
            .map(|worker| {
                let (send, receive) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, RenderError>>(1);
                let mine = batches
                    .iter()
                    .skip(worker)
                    .step_by(threads)
                    .copied()
                    .collect::<Vec<_>>();
                scope.spawn(move || {
                    let mut shared = SharedLists::default();
                    for batch in mine {
                        let mut text = Vec::new();
                        let rendered = write_actions(batch, false, &mut shared, &mut text).map(|()| text);
                        // The writer stopped (an error): nothing more is wanted.
                        if send.send(rendered).is_err() {
                            return;
                        }
                    }
                });
                receive
            })
            .collect();
        let mut shared = SharedLists::default();
        for (i, batch) in batches.iter().enumerate() {
            match i % threads {
                0 => write_actions(batch, i == 0, &mut shared, out)?,
                worker => {
                    let text = workers[worker - 1]
                        .recv()
                        .expect("invariant: a worker sends every batch it was dealt, or panics")?;
                    out.write_all(&text).map_err(serde_json::Error::io)?;
                }
            }
        }
        Ok(())
    })
}

/// The pretty printer as serde_json has it when it reaches the first element of the plan's
/// `actions` array: inside the top-level object (depth 1) and the array (depth 2).
fn formatter_at_actions() -> PrettyFormatter<'static> {
    let mut formatter = PrettyFormatter::new();
    let sink = &mut std::io::sink();
    let primed = formatter
        .begin_object(sink)
        .and_then(|()| formatter.begin_object_key(sink, true))
        .and_then(|()| formatter.end_object_key(sink))
        .and_then(|()| formatter.begin_object_value(sink))
        .and_then(|()| formatter.begin_array(sink));
    primed.expect("invariant: writing to io::sink cannot fail");
    formatter
}

/// Writes `actions` as elements of the plan's `actions` array, exactly as serde_json does: each
/// introduced by the pretty printer's `\n` (the array's `first`) or `,\n` and indentation, and
/// serialized by a pretty printer in the state it has there.
fn write_actions(
    actions: &[Action],
    first: bool,
    shared: &mut SharedLists,
    out: &mut impl Write,
) -> Result<(), RenderError> {
    let at_actions = formatter_at_actions();
    for (i, action) in actions.iter().enumerate() {
        let mut formatter = at_actions.clone();
        formatter
            .begin_array_value(out, first && i == 0)
            .map_err(serde_json::Error::io)?;
        ActionJson::of(action, shared)?.serialize(&mut serde_json::Serializer::with_formatter(&mut *out, formatter))?;
    }
    Ok(())
}

/// The JSON text of the lists actions share (`migrations`, `releases`: one per upgrade path,
/// issue #17), rendered once per list where an action's field value sits (depth 3), and written
/// as it is for every action holding that list. By the list's address and length: the plan
/// outlives the rendering, so no other list can take that address meanwhile.
#[derive(Default)]
struct SharedLists {
    migrations: HashMap<(usize, usize), Box<RawValue>>,
    releases: HashMap<(usize, usize), Box<RawValue>>,
}

impl SharedLists {
    fn text<'m, T: Serialize>(
        memo: &'m mut HashMap<(usize, usize), Box<RawValue>>,
        list: &Arc<[T]>,
    ) -> Result<&'m RawValue, RenderError> {
        let text = match memo.entry((list.as_ptr() as usize, list.len())) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let mut text = Vec::new();
                list.serialize(&mut serde_json::Serializer::with_formatter(
                    &mut text,
                    formatter_at_action_field(),
                ))?;
                let text = String::from_utf8(text).expect("invariant: serde_json writes UTF-8");
                slot.insert(RawValue::from_string(text)?)
            }
        };
        Ok(text)
    }
}

/// An [`Action`] as its own `Serialize` writes it (same fields, order and attributes: it is
/// made by destructuring, so a field added to `Action` must be added here), with its shared
/// lists written from [`SharedLists`]. The byte-for-byte test below holds it to serde_json's
/// rendering of the plan.
#[derive(Serialize)]
struct ActionJson<'a> {
    target: &'a String,
    component: &'a String,
    action: &'a ActionKind,
    from: &'a Option<Version>,
    to: &'a Option<Version>,
    stops: &'a Vec<Version>,
    migrations: &'a RawValue,
    wave: &'a Option<String>,
    status: &'a Status,
    blocked_by: &'a Vec<Blocker>,
    config_diff: &'a Vec<ConfigChange>,
    policy: &'a Option<String>,
    approvals: &'a Option<ApprovalState>,
    update_type: &'a Option<UpdateType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgency: Option<&'a Urgency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a String>,
    breaking: &'a bool,
    releases: &'a RawValue,
    violations: &'a Vec<String>,
    warnings: &'a Vec<String>,
}

impl<'a> ActionJson<'a> {
    fn of(action: &'a Action, shared: &'a mut SharedLists) -> Result<ActionJson<'a>, RenderError> {
        let Action {
            target,
            component,
            action,
            from,
            to,
            stops,
            migrations,
            wave,
            status,
            blocked_by,
            config_diff,
            policy,
            approvals,
            update_type,
            urgency,
            reason,
            breaking,
            releases,
            violations,
            warnings,
        } = action;
        let SharedLists {
            migrations: migration_texts,
            releases: release_texts,
        } = shared;
        Ok(ActionJson {
            target,
            component,
            action,
            from,
            to,
            stops,
            migrations: SharedLists::text(migration_texts, migrations)?,
            wave,
            status,
            blocked_by,
            config_diff,
            policy,
            approvals,
            update_type,
            urgency: urgency.as_ref(),
            reason: reason.as_ref(),
            breaking,
            releases: SharedLists::text(release_texts, releases)?,
            violations,
            warnings,
        })
    }
}

/// The pretty printer as serde_json has it at the value of a field of an action: inside the
/// top-level object, the `actions` array and the action's object (depth 3).
fn formatter_at_action_field() -> PrettyFormatter<'static> {
    let mut formatter = formatter_at_actions();
    formatter
        .begin_object(&mut std::io::sink())
        .expect("invariant: writing to io::sink cannot fail");
    formatter
}

/// The end of the plan's non-empty `actions` array, as serde_json writes it.
fn end_actions(out: &mut impl Write) -> Result<(), RenderError> {
    let mut formatter = formatter_at_actions();
    let io = serde_json::Error::io;
    formatter.end_array_value(out).map_err(io)?;
    formatter.end_array(out).map_err(io)?;
    Ok(())
}

/// How many threads render a plan of `actions` actions (1 for small plans).
fn threads_for(actions: usize) -> usize {
    crate::manifest::parallel::cores()
        .min(MAX_THREADS)
        .min(actions / MIN_ACTIONS_PER_THREAD)
        .max(1)
}

/// The first position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{RawContent, RawFile, read_manifests, validate};
    use crate::plan::{Evidence, PlanInput, PlanIssue};
    use crate::state::RecordedState;

    /// A real plan of `targets` targets: upgrades with migrations and release notes whose text
    /// needs escaping (newlines, quotes, tabs, non-ASCII), waves, and a violation.
    fn plan_of(targets: usize) -> Plan {
        let h = "apiVersion: gantry.dev/v1\n";
        let mut yaml = format!(
            "{h}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ steps: {{ deploy: [d, \"{{{{ target.name }}}}\"] }} }}\n---\n\
             {h}kind: Release\nmetadata: {{ name: billing-1.0.0 }}\nspec: {{ component: billing, version: 1.0.0 }}\n---\n\
             {h}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec:\n  component: billing\n  version: 2.0.0\n  breaking: true\n\
             \x20 migrations: [{{ id: m2, up: [m, up] }}]\n\
             \x20 changelog: {{ added: [\"line one\\nline \\\"two\\\"\\ttabbed, ünïcødé ✓\", \"{{ braces }} [brackets]\"] }}\n---\n\
             {h}kind: Release\nmetadata: {{ name: billing-3.0.0 }}\nspec:\n  component: billing\n  version: 3.0.0\n\
             \x20 urgency: emergency\n  reason: \"CVE-2026-0001: \\\"overflow\\\"\"\n  migrations: [{{ id: m3, up: [m, up, \"3\"] }}]\n---\n\
             {h}kind: Policy\nmetadata: {{ name: staged }}\nspec:\n  rollout:\n    waves:\n\
             \x20     - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: all, percent: 100 }}\n"
        );
        for i in 0..targets {
            // Three shared lists of notes and migrations (2.0.0, the emergency 3.0.0, none).
            let version = match i {
                3 => "9.9.9",
                _ if i % 5 == 1 => "3.0.0",
                _ => "2.0.0",
            };
            yaml.push_str(&format!(
                "---\n{h}kind: Target\nmetadata: {{ name: t{i:03}, labels: {{ ring: \"{}\" }} }}\n\
                 spec: {{ component: billing, version: \"{version}\", config: {{ note: \"a\\nb\", n: {i} }} }}\n",
                i % 2
            ));
        }
        let file = RawFile {
            path: "all.yaml".into(),
            content: RawContent::Bytes(yaml.into_bytes()),
        };
        let (manifests, diagnostics) = read_manifests(None, &[file]);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let (desired, _) = validate(manifests);
        let mut plan = crate::plan::plan(&PlanInput {
            desired: &desired,
            windows: &[],
            recorded: &RecordedState::default(),
            evidence: &Evidence::default(),
            now: "2026-11-21T10:00:00Z".parse().unwrap(),
        });
        plan.head = Some("head \"quoted\"\nnewline".into());
        plan.warnings.push(PlanIssue {
            kind: "warning".into(),
            message: "\"actions\": [] inside a message\n  \"actions\": []".into(),
            file: Some("all.yaml".into()),
            line: Some(1),
            column: Some(2),
            target: None,
        });
        plan
    }

    fn reference(plan: &Plan) -> Vec<u8> {
        serde_json::to_vec_pretty(plan).unwrap()
    }

    /// The guarantee of this module: whatever the number of threads and actions, the bytes are
    /// serde_json's own pretty rendering of the whole plan.
    #[test]
    fn rendering_on_threads_gives_serde_jsons_bytes() {
        for targets in [0, 1, 2, 3, 7, 40] {
            let plan = plan_of(targets);
            assert_eq!(plan.actions.len(), targets);
            if targets > 3 {
                assert!(plan.actions.iter().any(|a| !a.violations.is_empty()));
                assert!(plan.actions.iter().any(|a| !a.migrations.is_empty()));
                assert!(!plan.rollouts.is_empty());
                assert!(plan.actions.iter().any(|a| a.urgency.is_some() && a.reason.is_some()));
                assert!(plan.actions.iter().any(|a| a.urgency.is_none()));
            }
            let expected = reference(&plan);
            for threads in 1..=5 {
                for batch in [1, 2, 3, 16, BATCH] {
                    let mut out = Vec::new();
                    write_on(&plan, threads, batch, &mut out).unwrap();
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        String::from_utf8(expected.clone()).unwrap(),
                        "{targets} actions on {threads} threads in batches of {batch}"
                    );
                }
            }
        }
    }

    /// A plan whose strings before `actions` hold the text the splice looks for (escaped, as
    /// JSON strings always are) still splices at the real key.
    #[test]
    fn the_actions_key_is_found_past_lookalike_strings() {
        let mut plan = plan_of(8);
        plan.head = Some("\n  \"actions\": []".into());
        plan.base = Some("  \"actions\": []".into());
        let mut out = Vec::new();
        write_on(&plan, 3, 2, &mut out).unwrap();
        assert_eq!(out, reference(&plan));
    }

    /// A writer that fails (a closed pipe, a full disk) ends the rendering with its error: the
    /// threads rendering ahead stop instead of waiting forever to hand over their batches.
    #[test]
    fn a_failing_writer_stops_every_thread() {
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let plan = plan_of(40);
        let size = reference(&plan).len();
        for fail_after in [0, 100, size / 3, size / 2, size - 10] {
            let error = write_on(&plan, 3, 2, &mut FailAfter(fail_after)).unwrap_err();
            assert!(error.to_string().contains("disk full"), "{error}");
        }
    }

    #[test]
    fn small_plans_render_on_one_thread() {
        assert_eq!(threads_for(0), 1);
        assert_eq!(threads_for(MIN_ACTIONS_PER_THREAD - 1), 1);
        assert!(threads_for(100 * MIN_ACTIONS_PER_THREAD) <= MAX_THREADS);
    }
}
