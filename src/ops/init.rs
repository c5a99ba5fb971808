//! `gantry init [DIR]`: writes the bundled example repository, with history and recorded state.
//! (`cli/init.rs` prints the report.)
//!
//! The example is `examples/demo/` of the gantry project, embedded file by file in the binary.
//! `init` makes two commits so that the user's first `gantry apply` is a real multi-hop upgrade:
//!
//! 1. "Initial fleet": every target pinned at 1.0.0. `init` reconciles it once itself (quietly),
//!    so the state branch records 1.0.0 installed everywhere.
//! 2. "Upgrade billing to 2.0.0, storefront to 1.1.0": the targets as `examples/demo/` has them
//!    (billing 2.0.0, ledger `^1.0`, storefront 1.1.0). Reconciling it takes billing 1.0.0 →
//!    1.2.0 → 1.3.0 → 2.0.0 with four migrations, canary wave first, and moves each storefront's
//!    traffic to 1.1.0 in the policy's `traffic` steps (25, 50, 100 %) through the example
//!    plugin.
//!
//! init's own pass runs at a fixed instant (`--now`, else the time it starts), so the health
//! holds of the initial installs run on a simulated clock: init does not wait out the demo's
//! traffic analysis. The user's `apply` then shows the real thing.

use std::path::{Path, PathBuf};

use crate::manifest::schema::{self, SchemaKind};
use crate::reconcile::apply::{ApplyError, ApplyOptions, apply};
use crate::reconcile::attempt::{ProgressEvent, ProgressSink};
use crate::source::WatchedRepo;

/// Whether a written file gets the executable bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Regular,
    Executable,
}

/// One file of the bundled example.
#[derive(Debug)]
pub struct DemoFile {
    /// Path relative to the example's root, with `/` separators.
    pub path: &'static str,
    pub contents: &'static [u8],
    pub mode: Mode,
}

macro_rules! demo_files {
    ($($path:literal => $mode:ident),* $(,)?) => {
        &[$(DemoFile {
            path: $path,
            contents: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/", $path)),
            mode: Mode::$mode,
        }),*]
    };
}

/// Every file of `examples/demo/` (a unit test checks this list against the folder).
pub const DEMO_FILES: &[DemoFile] = demo_files![
    ".gitignore" => Regular,
    "README.md" => Regular,
    "gantry.toml" => Regular,
    "components/billing.yaml" => Regular,
    "components/ledger.yaml" => Regular,
    "components/storefront.yaml" => Regular,
    "releases/billing.yaml" => Regular,
    "releases/ledger.yaml" => Regular,
    "releases/storefront.yaml" => Regular,
    "targets/acme.yaml" => Regular,
    "targets/globex.yaml" => Regular,
    "targets/initech.yaml" => Regular,
    "policies/production.yaml" => Regular,
    "windows/year-end-freeze.yaml" => Regular,
    "migrations/billing/migrate.sh" => Executable,
    "scripts/deploy.sh" => Executable,
    "scripts/health.sh" => Executable,
    "scripts/reload.sh" => Executable,
    "scripts/restore.sh" => Executable,
    "scripts/snapshot.sh" => Executable,
    // A symlink to `examples/plugins/`, so the example plugin has one copy; init writes the file.
    "plugins/gantry-executor-demo.py" => Executable,
];

/// The version every target is pinned at in the first commit.
pub const INITIAL_VERSION: &str = "1.0.0";

/// Where the demo's schema modelines point inside the gantry project, and in an initialised
/// repository (which gets its own `schemas/`).
const PROJECT_SCHEMA_PREFIX: &str = "$schema=../../../schemas/";
const INIT_SCHEMA_PREFIX: &str = "$schema=../schemas/";

/// Why `gantry init` stopped.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory has files in it; init only writes into a new or empty place.
    #[error(
        "{dir} is not empty: gantry init writes a new example repository into an empty directory \
         (or an empty git repository); choose another, e.g. `gantry init gantry-demo`"
    )]
    NotEmpty { dir: PathBuf },
    /// The directory is a git repository that already has commits.
    #[error(
        "{dir} is a git repository with commits: gantry init only writes into an empty one; \
         choose another directory, e.g. `gantry init gantry-demo`"
    )]
    HasCommits { dir: PathBuf },
    /// The path exists and is not a directory.
    #[error("{dir} exists and is not a directory")]
    NotADirectory { dir: PathBuf },
    /// Writing a file or directory failed.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A git operation failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// Reconciling the initial fleet failed.
    #[error("reconciling the initial fleet failed: {0}")]
    Apply(#[source] ApplyError),
    /// The embedded example does not have the shape init relies on (a bug in gantry).
    #[error("the bundled example is malformed: {0}")]
    Example(String),
}

/// A progress sink that drops every event: init reports a summary instead.
struct Quiet;

impl ProgressSink for Quiet {
    fn event(&self, _event: &ProgressEvent) {}
}

/// What `init` did, for the summary.
#[derive(Debug)]
pub struct InitReport {
    pub initial_commit: git2::Oid,
    pub upgrade_commit: git2::Oid,
    /// Targets recorded at [`INITIAL_VERSION`] by init's own reconcile pass.
    pub installed: usize,
    /// Targets the pass left blocked (e.g. a freeze window is in force today).
    pub blocked: usize,
    /// Targets whose install failed.
    pub failed: usize,
}

/// Writes the example into `dir`, commits the initial fleet, reconciles it, and commits the
/// upgrade.
///
/// # Errors
/// [`InitError`]: `dir` is not empty (or is a repository with commits), a write or git
/// operation failed, or the initial reconcile pass could not run.
pub fn init(dir: &Path, now: Option<jiff::Timestamp>) -> Result<InitReport, InitError> {
    let git = prepare(dir)?;
    let signature = git
        .signature()
        .or_else(|_| git2::Signature::now("gantry init", "gantry@localhost"))?;

    write_example(dir, Fleet::Initial)?;
    let initial_commit = commit_all(
        &git,
        &signature,
        "Initial fleet: billing, ledger and storefront 1.0.0\n\n\
         Every target is pinned at 1.0.0; `gantry init` reconciled this commit once, so the state\n\
         branch records 1.0.0 installed everywhere.\n",
    )?;

    let watched = WatchedRepo::open(dir).map_err(|e| InitError::Apply(ApplyError::Source(e)))?;
    let options = ApplyOptions {
        targets: Vec::new(),
        dry_run: false,
        // A fixed instant: holds and soaks of this bookkeeping pass take no real time.
        now: Some(now.unwrap_or_else(jiff::Timestamp::now)),
        allow_rewind: false,
    };
    let pass = apply(&watched, &options, &Quiet).map_err(InitError::Apply)?;
    let failed = pass
        .outcomes
        .iter()
        .filter(|o| o.outcome != crate::state::Outcome::Succeeded)
        .count();
    let installed = pass.outcomes.len() - failed;
    let blocked = pass.plan.as_ref().map_or(0, |p| p.summary.blocked);

    write_example(dir, Fleet::Upgraded)?;
    let upgrade_commit = commit_all(
        &git,
        &signature,
        "Upgrade billing to 2.0.0, storefront to 1.1.0\n\n\
         billing 2.0.0 needs >=1.3.0 and 1.3.0 needs >=1.1.0, so targets on 1.0.0 stop at 1.2.0\n\
         and 1.3.0 on the way, with the migrations of 1.1.0, 1.2.0, 1.3.0 and 2.0.0.\n\
         ledger follows ^1.0 (1.1.0), which billing depends on.\n\
         storefront 1.1.0 takes 25%, then 50%, then all of the traffic (the policy's traffic steps).\n",
    )?;

    Ok(InitReport {
        initial_commit,
        upgrade_commit,
        installed,
        blocked,
        failed,
    })
}

/// Creates `dir` if needed and opens a fresh repository with `main` as its unborn branch.
fn prepare(dir: &Path) -> Result<git2::Repository, InitError> {
    let io = |source| InitError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(InitError::NotADirectory { dir: dir.to_path_buf() });
        }
        let names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        match names.as_slice() {
            [] => {}
            [only] if only == ".git" => {
                let git = git2::Repository::open(dir).map_err(|_| InitError::NotEmpty { dir: dir.to_path_buf() })?;
                if !git.is_empty()? {
                    return Err(InitError::HasCommits { dir: dir.to_path_buf() });
                }
                git.set_head("refs/heads/main")?;
                return Ok(git);
            }
            _ => return Err(InitError::NotEmpty { dir: dir.to_path_buf() }),
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    Ok(git2::Repository::init_opts(dir, &opts)?)
}

/// Which version of the targets to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fleet {
    /// Every target pinned at [`INITIAL_VERSION`].
    Initial,
    /// The targets as the example has them.
    Upgraded,
}

/// Writes every example file (and the JSON Schemas its modelines point at) into `dir`.
fn write_example(dir: &Path, fleet: Fleet) -> Result<(), InitError> {
    for file in DEMO_FILES {
        let path = dir.join(file.path);
        let contents = example_contents(file, fleet)?;
        write_file(&path, &contents, file.mode)?;
    }
    for kind in SchemaKind::all() {
        let path = dir.join("schemas").join(kind.file_name());
        write_file(&path, schema::schema_text(*kind).as_bytes(), Mode::Regular)?;
    }
    Ok(())
}

/// A file's contents as init writes it: schema modelines re-pointed, targets pinned for the
/// initial fleet.
fn example_contents(file: &DemoFile, fleet: Fleet) -> Result<Vec<u8>, InitError> {
    if !file.path.ends_with(".yaml") {
        return Ok(file.contents.to_vec());
    }
    let text = std::str::from_utf8(file.contents)
        .map_err(|_| InitError::Example(format!("{} is not UTF-8", file.path)))?
        .replace(PROJECT_SCHEMA_PREFIX, INIT_SCHEMA_PREFIX);
    if fleet == Fleet::Initial && file.path.starts_with("targets/") {
        return pin_targets(&text, INITIAL_VERSION)
            .map(String::into_bytes)
            .map_err(|e| InitError::Example(format!("{}: {e}", file.path)));
    }
    Ok(text.into_bytes())
}

/// Replaces the `spec.version` line of every Target document in `text` with `version`.
///
/// The example's target files are written for this: one `  version:` line (two spaces, under
/// `spec:`) per document. Anything else is reported rather than guessed at.
fn pin_targets(text: &str, version: &str) -> Result<String, String> {
    let documents = text.lines().filter(|l| l.trim_end() == "kind: Target").count();
    let mut replaced = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("  version:") {
            out.push_str("  version: ");
            out.push_str(version);
            out.push('\n');
            replaced += 1;
        } else {
            out.push_str(line);
        }
    }
    if replaced != documents || documents == 0 {
        return Err(format!(
            "expected one `  version:` line per Target document, found {replaced} in {documents} documents"
        ));
    }
    Ok(out)
}

fn write_file(path: &Path, contents: &[u8], mode: Mode) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)?;
    if mode == Mode::Executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(())
}

/// Stages the whole work tree (honouring `.gitignore`) and commits it on HEAD.
fn commit_all(git: &git2::Repository, signature: &git2::Signature<'_>, message: &str) -> Result<git2::Oid, InitError> {
    let mut index = git.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"], None)?;
    index.write()?;
    let tree = git.find_tree(index.write_tree()?)?;
    let parent = match git.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch || e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    Ok(git.commit(Some("HEAD"), signature, signature, message, &tree, &parents)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards against a file added to `examples/demo/` but not embedded (or a lost executable bit).
    #[test]
    fn embedded_files_match_the_example_folder() {
        use std::os::unix::fs::PermissionsExt;
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Mode)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                // Left behind by running the demo in place; `.gitignore` keeps them out of git.
                if rel == "deployed" || rel == "snapshots" {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    walk(root, &path, out);
                } else {
                    let executable = entry.metadata().unwrap().permissions().mode() & 0o111 != 0;
                    out.push((rel, if executable { Mode::Executable } else { Mode::Regular }));
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<(String, Mode)> = DEMO_FILES.iter().map(|f| (f.path.to_string(), f.mode)).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn pin_targets_replaces_one_version_line_per_document() {
        let text = "kind: Target\nspec:\n  component: a\n  version: 2.0.0\n---\nkind: Target\nspec:\n  version: ^1.0\n";
        let pinned = pin_targets(text, "1.0.0").unwrap();
        assert_eq!(
            pinned,
            "kind: Target\nspec:\n  component: a\n  version: 1.0.0\n---\nkind: Target\nspec:\n  version: 1.0.0\n"
        );
    }

    #[test]
    fn pin_targets_refuses_a_shape_it_does_not_know() {
        let err = pin_targets("kind: Target\nspec: { version: 2.0.0 }\n", "1.0.0").unwrap_err();
        assert!(err.contains("found 0 in 1 documents"), "{err}");
        assert!(pin_targets("kind: Component\n", "1.0.0").is_err());
    }

    #[test]
    fn every_example_target_file_can_be_pinned() {
        for file in DEMO_FILES.iter().filter(|f| f.path.starts_with("targets/")) {
            let text = String::from_utf8(example_contents(file, Fleet::Initial).unwrap()).unwrap();
            assert!(
                !text.contains("2.0.0") && !text.contains("^1.0"),
                "{}: {text}",
                file.path
            );
        }
    }
}
