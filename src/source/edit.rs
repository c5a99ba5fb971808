//! Commits on the desired branch that gantry proposes (e.g. `gantry rollback`), made with git2.
//!
//! When the branch a commit goes onto is checked out in this repository's work tree, the files
//! it changes must be unmodified there (else the user's edit and the commit would fight) and are
//! brought up to date in the work tree and the index afterwards: a stale checkout used to make
//! the next `git commit -a` silently undo the commit (issue #16).

use std::path::Path;

use git2::{FileMode, Oid};

use super::{SourceError, WatchedRepo};

/// Where a proposed change goes.
#[derive(Debug, Clone)]
pub enum ChangeBranch {
    /// Onto the tip of the desired branch.
    Desired(String),
    /// A new branch from the desired branch's tip, for a pull request.
    New { base: String, name: String },
}

impl WatchedRepo {
    /// Writes the files' new content in one commit whose parent is the tip of the base branch,
    /// SSH-signed by `signer` when given (as `git commit -S` with `gpg.format = ssh` would sign
    /// it). HEAD is never moved; a checked-out branch's work tree and index follow (see the
    /// module). The commit is created first and only then is a branch moved (compare-and-swap
    /// against the tip it was built on), so `check` can refuse it (e.g. when it does not
    /// validate) before anyone sees it.
    ///
    /// # Errors
    /// git failures; [`SourceError::Refused`] when `check` refuses, signing fails, the new
    /// branch exists, or a changed file has changes in the checked-out work tree or index.
    pub fn commit_files_change_signed(
        &self,
        branch: &ChangeBranch,
        files: &[(&str, &[u8])],
        message: &str,
        signer: Option<&super::trust::CommitSigner>,
        check: impl FnOnce(Oid) -> Result<(), String>,
    ) -> Result<Oid, SourceError> {
        let base = match branch {
            ChangeBranch::Desired(b) | ChangeBranch::New { base: b, .. } => b,
        };
        let checked_out = match branch {
            ChangeBranch::Desired(b) => self.checked_out(b),
            ChangeBranch::New { .. } => false,
        };
        if checked_out {
            self.refuse_modified(files)?;
        }
        let tip = self.branch_tip(base)?;
        let parent = self.repo.find_commit(tip)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content)?;
            let mode = parent
                .tree()?
                .get_path(Path::new(path))
                .map(|e| e.filemode())
                .unwrap_or(i32::from(FileMode::Blob));
            let mode = if mode == i32::from(FileMode::BlobExecutable) {
                FileMode::BlobExecutable
            } else {
                FileMode::Blob
            };
            update.upsert(path, blob, mode);
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &parent.tree()?)?)?;
        let (author, committer) = self.operator_signatures(|name| std::env::var(name).ok())?;
        let commit = match signer {
            None => self
                .repo
                .commit(None, &author, &committer, message, &tree, &[&parent])?,
            Some(signer) => signer
                .commit(&self.repo, &author, &committer, message, &tree, &[&parent])
                .map_err(|e| SourceError::Refused(e.to_string()))?,
        };
        check(commit).map_err(SourceError::Refused)?;
        match branch {
            ChangeBranch::Desired(b) => {
                self.repo.reference_matching(
                    &format!("refs/heads/{b}"),
                    commit,
                    true,
                    tip,
                    message.lines().next().unwrap_or(""),
                )?;
                if checked_out {
                    self.update_checkout(files, &tree)?;
                }
            }
            ChangeBranch::New { name, .. } => {
                let refname = format!("refs/heads/{name}");
                if self.repo.find_reference(&refname).is_ok() {
                    return Err(SourceError::Refused(format!(
                        "branch `{name}` already exists; choose another --branch name"
                    )));
                }
                self.repo
                    .reference(&refname, commit, false, message.lines().next().unwrap_or(""))?;
            }
        }
        Ok(commit)
    }
}

impl WatchedRepo {
    /// Whether `branch` is what HEAD names in a repository with a work tree.
    pub fn checked_out(&self, branch: &str) -> bool {
        self.repo.workdir().is_some()
            && self
                .repo
                .find_reference("HEAD")
                .ok()
                .and_then(|head| head.symbolic_target().ok().flatten().map(str::to_string))
                .is_some_and(|target| target == format!("refs/heads/{branch}"))
    }

    /// Refuses a commit onto the checked-out branch when a file it changes is modified in the
    /// work tree or the index (or is an untracked file the commit would overwrite).
    fn refuse_modified(&self, files: &[(&str, &[u8])]) -> Result<(), SourceError> {
        for (path, _) in files {
            let status = match self.repo.status_file(Path::new(path)) {
                Ok(status) => status,
                // Neither tracked nor present: the commit adds it.
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if !(status - git2::Status::IGNORED).is_empty() {
                return Err(SourceError::Refused(format!(
                    "{path} has changes in the checked-out work tree or index; commit or stash them first, or write the change to a new branch with --branch NAME"
                )));
            }
        }
        Ok(())
    }

    /// Writes the committed files into the work tree and the index, so the checkout matches the
    /// branch it has checked out again.
    fn update_checkout(&self, files: &[(&str, &[u8])], tree: &git2::Tree) -> Result<(), SourceError> {
        let Some(workdir) = self.repo.workdir() else {
            return Ok(());
        };
        let mut index = self.repo.index()?;
        for (path, _) in files {
            let entry = tree.get_path(Path::new(path))?;
            let blob = self.repo.find_blob(entry.id())?;
            let file = workdir.join(path);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| SourceError::Refused(format!("{path}: {e}")))?;
            }
            std::fs::write(&file, blob.content()).map_err(|e| SourceError::Refused(format!("{path}: {e}")))?;
            index.add_path(Path::new(path))?;
        }
        index.write()?;
        Ok(())
    }
}

/// Which person a commit is by: author or committer, named as git's environment variables are.
#[derive(Debug, Clone, Copy)]
enum Role {
    Author,
    Committer,
}

impl Role {
    fn var(self, field: &str) -> String {
        match self {
            Role::Author => format!("GIT_AUTHOR_{field}"),
            Role::Committer => format!("GIT_COMMITTER_{field}"),
        }
    }
}

impl WatchedRepo {
    /// The author and committer of a commit gantry writes for an operator (rollback, retry), as
    /// git decides them: `GIT_AUTHOR_NAME`/`_EMAIL`/`_DATE` and `GIT_COMMITTER_*` override the
    /// repository's `user.name`/`user.email` and the clock; without either, `gantry
    /// <gantry@localhost>`. `env` reads a variable (the process environment in production).
    ///
    /// # Errors
    /// [`SourceError::Refused`] for a `*_DATE` that is neither `@SECONDS [+HHMM]`, `SECONDS
    /// +HHMM` (git's internal form) nor RFC 3339; git errors otherwise.
    pub fn operator_signatures(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(git2::Signature<'static>, git2::Signature<'static>), SourceError> {
        let config = self.repo.config()?;
        let configured = |key: &str| config.get_string(key).ok();
        let sign = |role: Role| -> Result<git2::Signature<'static>, SourceError> {
            let name = env(&role.var("NAME"))
                .or_else(|| configured("user.name"))
                .unwrap_or_else(|| "gantry".to_string());
            let email = env(&role.var("EMAIL"))
                .or_else(|| configured("user.email"))
                .unwrap_or_else(|| "gantry@localhost".to_string());
            match env(&role.var("DATE")) {
                Some(date) => {
                    let time = parse_git_date(&date).ok_or_else(|| {
                        SourceError::Refused(format!(
                            "{}=`{date}` is not a date git reads; use `@SECONDS +HHMM` or RFC 3339 (2026-11-21T10:00:00+01:00)",
                            role.var("DATE")
                        ))
                    })?;
                    Ok(git2::Signature::new(&name, &email, &time)?)
                }
                None => Ok(git2::Signature::now(&name, &email)?),
            }
        };
        Ok((sign(Role::Author)?, sign(Role::Committer)?))
    }
}

/// `@SECONDS [+HHMM]`, `SECONDS +HHMM` or RFC 3339, as a git time.
fn parse_git_date(text: &str) -> Option<git2::Time> {
    let text = text.trim();
    let (seconds, offset) = text.split_once(' ').unwrap_or((text, "+0000"));
    if let Ok(seconds) = seconds.trim_start_matches('@').parse::<i64>() {
        let sign = match offset.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits = &offset[1..];
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let minutes = digits[..2].parse::<i32>().ok()? * 60 + digits[2..].parse::<i32>().ok()?;
        return Some(git2::Time::new(seconds, sign * minutes));
    }
    let pieces = jiff::fmt::temporal::Pieces::parse(text).ok()?;
    let offset_minutes = match pieces.offset() {
        Some(jiff::fmt::temporal::PiecesOffset::Numeric(n)) => n.offset().seconds() / 60,
        _ => 0,
    };
    let zoned: jiff::Timestamp = text.parse().ok()?;
    Some(git2::Time::new(zoned.as_second(), offset_minutes))
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    #[test]
    fn git_dates() {
        let cases = [
            ("@1790000000 +0100", Some((1_790_000_000, 60))),
            ("1790000000 -0230", Some((1_790_000_000, -150))),
            ("@1790000000", Some((1_790_000_000, 0))),
            ("2026-11-21T10:00:00+01:00", Some((1_795_251_600, 60))),
            ("2026-11-21T10:00:00Z", Some((1_795_255_200, 0))),
            ("yesterday", None),
            ("@1790000000 0100", None),
        ];
        for (text, want) in cases {
            let got = parse_git_date(text).map(|t| (t.seconds(), t.offset_minutes()));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn environment_overrides_config_per_role_like_git() {
        let dir = tempfile::tempdir().unwrap();
        let git = git2::Repository::init(dir.path()).unwrap();
        git.config().unwrap().set_str("user.name", "Config User").unwrap();
        git.config()
            .unwrap()
            .set_str("user.email", "config@example.com")
            .unwrap();
        let repo = WatchedRepo::open(dir.path()).unwrap();
        let env = |name: &str| match name {
            "GIT_AUTHOR_NAME" => Some("Ada Author".to_string()),
            "GIT_AUTHOR_EMAIL" => Some("ada@example.com".to_string()),
            "GIT_AUTHOR_DATE" => Some("@1790000000 +0000".to_string()),
            _ => None,
        };
        let (author, committer) = repo.operator_signatures(env).unwrap();
        assert_eq!(
            (author.name().unwrap(), author.email().unwrap()),
            ("Ada Author", "ada@example.com")
        );
        assert_eq!(author.when().seconds(), 1_790_000_000);
        // Like git: the committer does not take the author's variables.
        assert_eq!(
            (committer.name().unwrap(), committer.email().unwrap()),
            ("Config User", "config@example.com")
        );
        let bad = |name: &str| (name == "GIT_COMMITTER_DATE").then(|| "soon".to_string());
        let Err(err) = repo.operator_signatures(bad) else {
            panic!("a bad GIT_COMMITTER_DATE must be refused");
        };
        let err = err.to_string();
        assert!(err.contains("GIT_COMMITTER_DATE=`soon`"), "{err}");
    }
}

#[cfg(test)]
mod checkout_tests {
    use super::*;

    /// A repository on `main` with one committed file, checked out.
    fn checked_out_repo() -> (tempfile::TempDir, WatchedRepo) {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let git = git2::Repository::init_opts(dir.path(), &opts).unwrap();
        git.config().unwrap().set_str("user.name", "T").unwrap();
        git.config().unwrap().set_str("user.email", "t@example.com").unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
        let mut index = git.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.write().unwrap();
        let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git.signature().unwrap();
        git.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[]).unwrap();
        let repo = WatchedRepo::open(dir.path()).unwrap();
        (dir, repo)
    }

    fn commit(repo: &WatchedRepo, path: &str, content: &str) -> Result<Oid, SourceError> {
        let branch = ChangeBranch::Desired("main".into());
        repo.commit_files_change_signed(&branch, &[(path, content.as_bytes())], "change", None, |_| Ok(()))
    }

    fn clean(repo: &WatchedRepo) -> bool {
        let mut options = git2::StatusOptions::new();
        options.include_untracked(true);
        repo.repo.statuses(Some(&mut options)).unwrap().is_empty()
    }

    /// A new file committed onto the checked-out branch lands in the work tree and the index;
    /// an untracked file already at that path is the user's, and the commit is refused (SPEC
    /// §8, issue #16) with the branch unmoved and the file untouched.
    #[test]
    fn a_new_file_is_checked_out_and_an_untracked_file_in_its_way_refuses_the_commit() {
        let (dir, repo) = checked_out_repo();
        commit(&repo, "approvals/x.yaml", "approved\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("approvals/x.yaml")).unwrap(),
            "approved\n"
        );
        assert!(clean(&repo), "work tree and index match the new commit");

        let tip = repo.repo.refname_to_id("refs/heads/main").unwrap();
        std::fs::write(dir.path().join("approvals/y.yaml"), "mine\n").unwrap();
        let err = commit(&repo, "approvals/y.yaml", "gantry's\n").unwrap_err().to_string();
        assert!(
            err.contains("approvals/y.yaml has changes in the checked-out work tree or index"),
            "{err}"
        );
        assert_eq!(repo.repo.refname_to_id("refs/heads/main").unwrap(), tip);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("approvals/y.yaml")).unwrap(),
            "mine\n"
        );

        // A change staged in the index (work tree equal to it) is refused too.
        std::fs::remove_file(dir.path().join("approvals/y.yaml")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "staged\n").unwrap();
        let mut index = repo.repo.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.write().unwrap();
        assert!(commit(&repo, "a.txt", "two\n").is_err());
        assert_eq!(repo.repo.refname_to_id("refs/heads/main").unwrap(), tip);
    }
}
