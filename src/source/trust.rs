//! Signed desired state: SSH commit signatures checked against an ALLOWED SIGNERS file (`[trust]`).
//!
//! With `[trust] allowed_signers = "…"` in `gantry.toml`, a desired commit is reconciled only when
//! its SSH signature (`git commit -S` with `gpg.format = ssh`) verifies against a key in the
//! allowed-signers file, and `Approved-by:` trailers count only for the addresses the signing key
//! is listed for.
//!
//! # Where the allowed signers come from (the trust anchor)
//! Never from the commit being checked alone: whoever can push could add their own key in the
//! same commit. In order:
//! 1. `.git/gantry/allowed_signers` on the reconciler's disk, when present: pinned by the
//!    operator, out of reach of anyone who can only push.
//! 2. Else the file at `[trust] allowed_signers` in the **last commit gantry reconciled** (the
//!    newest `Gantry-Desired-Commit` on the state branch): a change to the signers list takes
//!    effect only once a commit signed by a key of the previous list has been reconciled.
//! 3. Else (bootstrap: nothing reconciled yet) the file in the head commit itself, trusted on
//!    first use. `docs/SECURITY.md` lists this as a residual risk and how to pin instead.
//!
//! Trust is required when the head's `gantry.toml` has `[trust]`, **or** the last reconciled
//! commit had it, or a pinned file exists: a pushed commit cannot switch verification off by
//! deleting `[trust]` (it must itself be signed to be reconciled).
//!
//! # Format
//! `principals [options] keytype base64-key [comment]`, one per line; `#` comments. Principals
//! are comma separated, `*` and `?` wildcards allowed. A `namespaces="…"` option, when present,
//! must list `git`. `cert-authority` lines are not supported and are skipped (never trusted).

use git2::Oid;
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::WatchedRepo;
use crate::manifest::RepoConfig;
use crate::manifest::secrets::glob_match;

/// The SSH signature namespace git signs commits in.
pub const GIT_NAMESPACE: &str = "git";

/// The pinned allowed-signers file, relative to the git dir.
pub const PINNED_SIGNERS: &str = "gantry/allowed_signers";

/// Who signed a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The first principal the key is listed for (usually an email address).
    pub email: String,
    /// Every principal the key is listed for.
    pub principals: Vec<String>,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl Signer {
    /// Whether the key is listed for `address` (an approver in an `Approved-by:` trailer).
    pub fn vouches_for(&self, address: &str) -> bool {
        self.principals
            .iter()
            .any(|p| glob_match(&p.to_ascii_lowercase(), &address.to_ascii_lowercase()))
    }
}

/// Why a commit does not count as signed by an allowed signer.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The commit has no signature at all.
    #[error("it has no signature")]
    Unsigned { commit: Oid },
    /// The commit is signed, but not with an SSH signature (e.g. OpenPGP).
    #[error("its signature is not an SSH signature; sign with `git -c gpg.format=ssh commit -S`")]
    NotSsh { commit: Oid },
    /// The SSH signature does not parse.
    #[error("its SSH signature is malformed: {detail}")]
    Malformed { commit: Oid, detail: String },
    /// The signing key is not in the allowed-signers file (for namespace `git`).
    #[error("it is signed by key {fingerprint}, which is not listed in {source_name}")]
    UnknownKey {
        commit: Oid,
        fingerprint: String,
        source_name: String,
    },
    /// The key is allowed but the signature does not match the commit (tampered or wrong namespace).
    #[error("the signature by key {fingerprint} does not match the commit: {detail}")]
    BadSignature {
        commit: Oid,
        fingerprint: String,
        detail: String,
    },
    /// The allowed-signers file is missing from where trust is anchored.
    #[error("the allowed signers file {source_name} does not exist")]
    MissingSigners { source_name: String },
    /// A line of the allowed-signers file does not parse.
    #[error("{source_name}:{line}: {message}")]
    Signers {
        source_name: String,
        line: usize,
        message: String,
    },
    /// git failed reading the commit.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// One usable line of an allowed-signers file.
#[derive(Debug, Clone)]
struct Entry {
    principals: Vec<String>,
    key: PublicKey,
}

/// A parsed ALLOWED SIGNERS file and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
    /// E.g. `trust/allowed_signers at 4f0c1d2` or `.git/gantry/allowed_signers`.
    pub source_name: String,
}

impl AllowedSigners {
    /// Parses the ssh-keygen ALLOWED SIGNERS format.
    ///
    /// # Errors
    /// [`TrustError::Signers`] naming the line of the first malformed entry.
    pub fn parse(text: &str, source_name: &str) -> Result<AllowedSigners, TrustError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| TrustError::Signers {
                source_name: source_name.to_string(),
                line: i + 1,
                message,
            };
            let tokens = tokenize(line);
            let Some((principals, rest)) = tokens.split_first() else {
                continue;
            };
            // Options come before the key type when the second token is not a key type.
            let (options, key_tokens) = match rest.first() {
                Some(t) if !looks_like_key_type(t) => (Some(t.as_str()), &rest[1..]),
                _ => (None, rest),
            };
            let mut namespaces_ok = true;
            let mut cert_authority = false;
            for option in options.map(split_options).unwrap_or_default() {
                let (name, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => {
                        namespaces_ok = value
                            .trim_matches('"')
                            .split(',')
                            .any(|n| glob_match(n.trim(), GIT_NAMESPACE))
                    }
                    "cert-authority" => cert_authority = true,
                    // Validity periods need the commit time in a trusted form; not supported.
                    "valid-after" | "valid-before" => {
                        return Err(bad(format!(
                            "option `{name}` is not supported by gantry; remove it or rotate the key instead"
                        )));
                    }
                    other => return Err(bad(format!("unknown option `{other}`"))),
                }
            }
            if key_tokens.len() < 2 {
                return Err(bad("expected `principals [options] keytype base64-key`".to_string()));
            }
            let key = PublicKey::from_openssh(&format!("{} {}", key_tokens[0], key_tokens[1]))
                .map_err(|e| bad(format!("key does not parse: {e}")))?;
            if !namespaces_ok || cert_authority {
                continue;
            }
            entries.push(Entry {
                principals: principals.split(',').map(str::to_string).collect(),
                key,
            });
        }
        Ok(AllowedSigners {
            entries,
            source_name: source_name.to_string(),
        })
    }

    /// A list that trusts no key.
    pub fn none(source_name: &str) -> AllowedSigners {
        AllowedSigners {
            entries: Vec::new(),
            source_name: source_name.to_string(),
        }
    }

    /// How many keys are usable for namespace `git`.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits a line on whitespace, keeping double-quoted parts (option values) together.
fn tokenize(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Splits `a,b="x,y",c` on commas outside quotes.
fn split_options(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in options.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

fn looks_like_key_type(token: &str) -> bool {
    token.starts_with("ssh-") || token.starts_with("ecdsa-") || token.starts_with("sk-")
}

/// Checks that `commit` carries an SSH signature by a key in `signers`, over exactly the
/// commit's content.
///
/// # Errors
/// [`TrustError`] saying why the commit does not count as signed.
pub fn verify_commit(repo: &git2::Repository, commit: Oid, signers: &AllowedSigners) -> Result<Signer, TrustError> {
    let (signature, payload) = match repo.extract_signature(&commit, None) {
        Ok(parts) => parts,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(TrustError::Unsigned { commit }),
        Err(e) => return Err(TrustError::Git(e)),
    };
    let armored = std::str::from_utf8(&signature).map_err(|_| TrustError::NotSsh { commit })?;
    if !armored.trim_start().starts_with("-----BEGIN SSH SIGNATURE-----") {
        return Err(TrustError::NotSsh { commit });
    }
    let sig = SshSig::from_pem(armored.trim()).map_err(|e| TrustError::Malformed {
        commit,
        detail: e.to_string(),
    })?;
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let listed: Vec<&Entry> = signers
        .entries
        .iter()
        .filter(|e| e.key.key_data() == sig.public_key())
        .collect();
    let Some(first) = listed.first() else {
        return Err(TrustError::UnknownKey {
            commit,
            fingerprint,
            source_name: signers.source_name.clone(),
        });
    };
    first
        .key
        .verify(GIT_NAMESPACE, &payload, &sig)
        .map_err(|e| TrustError::BadSignature {
            commit,
            fingerprint: fingerprint.clone(),
            detail: e.to_string(),
        })?;
    let principals: Vec<String> = listed.iter().flat_map(|e| e.principals.iter().cloned()).collect();
    Ok(Signer {
        email: principals.first().cloned().unwrap_or_default(),
        principals,
        fingerprint,
    })
}

/// The allowed signers in force for reconciling `head`, or `None` when trust is not configured
/// (see the module docs for the anchor's order).
///
/// `last_reconciled` is the newest desired commit recorded on the state branch, if any.
///
/// # Errors
/// [`TrustError::MissingSigners`] when trust is required but the file is not where it should
/// be, [`TrustError::Signers`] when it does not parse, git failures.
pub fn signers_for(
    repo: &WatchedRepo,
    head: Oid,
    head_config: &RepoConfig,
    last_reconciled: Option<Oid>,
) -> Result<Option<AllowedSigners>, TrustError> {
    let pinned = repo.repo.path().join(PINNED_SIGNERS);
    if pinned.is_file() {
        let name = format!(".git/{PINNED_SIGNERS}");
        let text = std::fs::read_to_string(&pinned).map_err(|e| TrustError::Signers {
            source_name: name.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        return AllowedSigners::parse(&text, &name).map(Some);
    }
    let previous = last_reconciled
        .filter(|oid| repo.repo.find_commit(*oid).is_ok())
        .and_then(|oid| trust_path_at(repo, oid).map(|path| (oid, path)));
    let (anchor, path) = match (previous, &head_config.trust) {
        (Some((oid, path)), _) => (oid, path),
        (None, Some(trust)) => (head, trust.allowed_signers.clone()),
        (None, None) => return Ok(None),
    };
    let short = &anchor.to_string()[..7];
    let name = format!("{path} at {short}");
    let bytes = repo
        .read_file(anchor, &path)
        .map_err(|e| TrustError::Signers {
            source_name: name.clone(),
            line: 0,
            message: e.to_string(),
        })?
        .ok_or_else(|| TrustError::MissingSigners {
            source_name: name.clone(),
        })?;
    let text = String::from_utf8_lossy(&bytes);
    AllowedSigners::parse(&text, &name).map(Some)
}

/// `[trust] allowed_signers` of the `gantry.toml` at `commit`, if it has one.
fn trust_path_at(repo: &WatchedRepo, commit: Oid) -> Option<String> {
    let bytes = repo.read_file(commit, "gantry.toml").ok()??;
    let config: RepoConfig = toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()?;
    config.trust.map(|t| t.allowed_signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    #[test]
    fn parses_principals_options_and_comments() {
        let text = format!(
            "# team\n\nalice@example.com {KEY} laptop\nbob@example.com,ci@example.com namespaces=\"git,file\" {KEY}\n\
             carol@example.com namespaces=\"file\" {KEY}\n"
        );
        let signers = AllowedSigners::parse(&text, "f").unwrap();
        // carol's key is only for `file`, so it never verifies commits.
        assert_eq!(signers.len(), 2);
        assert_eq!(signers.entries[1].principals, ["bob@example.com", "ci@example.com"]);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = AllowedSigners::parse(
            "alice@example.com ssh-ed25519 notbase64!",
            "trust/allowed_signers at abc",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("trust/allowed_signers at abc:1: key does not parse"),
            "{err}"
        );
        let err = AllowedSigners::parse(&format!("\nalice valid-before=\"20300101\" {KEY}"), "f").unwrap_err();
        assert!(
            err.to_string().contains("f:2: option `valid-before` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("*@example.com", "alice@example.com", true),
            ("*@example.com", "alice@evil.com", false),
            ("a?ice@x", "alice@x", true),
            ("alice@x", "alice@x", true),
            ("alice@x", "alice@xy", false),
            ("*", "", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn signer_vouches_only_for_its_principals() {
        let s = Signer {
            email: "alice@example.com".into(),
            principals: vec!["alice@example.com".into(), "*@ops.example.com".into()],
            fingerprint: "SHA256:x".into(),
        };
        assert!(s.vouches_for("Alice@Example.com"));
        assert!(s.vouches_for("pager@ops.example.com"));
        assert!(!s.vouches_for("bob@example.com"));
    }
}
