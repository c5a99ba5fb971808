//! Signed desired state: SSH commit signatures checked against an ALLOWED SIGNERS file (`[trust]`).
//!
//! With `[trust] allowed_signers = "…"` in `gantry.toml`, a desired commit is reconciled only when
//! its SSH signature (`git commit -S` with `gpg.format = ssh`) verifies against a key in the
//! allowed-signers file, and approvals count only for the addresses the signing key is listed for.
//!
//! # The trust anchor
//! The trust configuration in force (allowed signers file, state branch) is that of the **last
//! reconciled commit**, pinned on the reconciler's disk in `.git/gantry/trust-anchor` (written
//! by every `apply` pass that reconciles a head, never read from any commit). Nothing the
//! untrusted head says (its signers list, its `state_branch`) moves it. In order:
//! 1. `.git/gantry/allowed_signers` on the reconciler's disk, when present: pinned by the
//!    operator, out of reach of anyone who can only push.
//! 2. Else the file at the anchor's `allowed_signers` path **in the anchor commit**: a change to
//!    the signers list takes effect only once a commit signed by a key of the previous list has
//!    been reconciled (key rotation is signed by the old key).
//! 3. Else, before the first pinned pass (a fresh clone), the newest desired commit recorded on
//!    the state branch, with the same rule. A recorded commit that is not in the repository is an
//!    error ([`TrustError::MissingAnchor`]), never a fall back to the head's own list.
//! 4. Else (nothing reconciled anywhere) the file in the head commit itself, trusted on first
//!    use. `docs/SECURITY.md` lists this as a residual risk and how to pin instead.
//!
//! Trust is required when the head's `gantry.toml` has `[trust]`, **or** the anchor had it, or
//! a pinned file exists: a pushed commit cannot switch verification off by deleting `[trust]`.
//!
//! The desired branch also only moves forward from the anchor ([`check_forward`]): replaying
//! an older signed head, or an unrelated history, is refused unless the operator allows it.
//!
//! # Format
//! `principals [options] keytype base64-key [comment]`, one per line; `#` comments. Principals
//! are a comma-separated OpenSSH pattern list: `*` and `?` wildcards, and `!pattern` negation
//! (a principal matching a negated pattern is never vouched for, whatever else matches). A
//! `namespaces="…"` option, when present, must list `git`. `cert-authority` lines are not
//! supported and are skipped (never trusted).

use git2::Oid;
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::WatchedRepo;
use crate::manifest::RepoConfig;
use crate::manifest::secrets::glob_match;

/// The SSH signature namespace git signs commits in.
pub const GIT_NAMESPACE: &str = "git";

/// The pinned allowed-signers file, relative to the git dir.
pub const PINNED_SIGNERS: &str = "gantry/allowed_signers";

/// The pinned trust anchor, relative to the git dir.
pub const ANCHOR_FILE: &str = "gantry/trust-anchor";

/// Who signed a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The first positive principal the key is listed for (usually an email address).
    pub email: String,
    /// Every principal pattern list the key is listed with, one per allowed-signers line.
    pub principals: Vec<Vec<String>>,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl Signer {
    /// Whether the key is listed for `address` (an approver): some line listing the key has a
    /// pattern matching it and no `!pattern` matching it (OpenSSH `match_pattern_list`).
    pub fn vouches_for(&self, address: &str) -> bool {
        self.principals.iter().any(|list| pattern_list_matches(list, address))
    }
}

/// OpenSSH pattern-list semantics: a negated (`!`) pattern that matches denies, whatever else
/// matches; otherwise any positive pattern that matches allows. Case-insensitive.
pub fn pattern_list_matches(patterns: &[String], address: &str) -> bool {
    let address = address.to_ascii_lowercase();
    let mut allowed = false;
    for pattern in patterns {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if glob_match(negated, &address) => return false,
            Some(_) => {}
            None => allowed |= glob_match(&pattern, &address),
        }
    }
    allowed
}

/// The trust configuration in force, pinned on the reconciler's disk (`.git/gantry/trust-anchor`)
/// by every pass that reconciles a head: that head, its state branch and its signers path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchor {
    /// The last reconciled desired commit.
    pub commit: String,
    /// Its `state_branch`.
    pub state_branch: String,
    /// Its `[trust] allowed_signers` path, if it had `[trust]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<String>,
}

impl TrustAnchor {
    /// The anchor for `commit` with `config`.
    pub fn of(commit: Oid, config: &RepoConfig) -> TrustAnchor {
        TrustAnchor {
            commit: commit.to_string(),
            state_branch: config.state_branch.clone(),
            allowed_signers: config.trust.as_ref().map(|t| t.allowed_signers.clone()),
        }
    }

    /// The pinned anchor of the repository whose git dir is `git_dir`, if one was pinned.
    ///
    /// # Errors
    /// [`TrustError::Anchor`] when the file cannot be read or does not parse.
    pub fn read(git_dir: &std::path::Path) -> Result<Option<TrustAnchor>, TrustError> {
        let path = git_dir.join(ANCHOR_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TrustError::Anchor(format!(".git/{ANCHOR_FILE}: {e}"))),
        };
        let anchor: TrustAnchor = toml::from_str(&text).map_err(|e| {
            TrustError::Anchor(format!(
                ".git/{ANCHOR_FILE}: {e}; it is written only by gantry: restore it, or delete it to re-pin on the next apply"
            ))
        })?;
        anchor
            .oid()
            .map_err(|_| TrustError::Anchor(format!(".git/{ANCHOR_FILE}: `{}` is not a commit id", anchor.commit)))?;
        Ok(Some(anchor))
    }

    /// Pins this anchor (write to a temporary file, fsync, rename: never half written).
    ///
    /// # Errors
    /// [`TrustError::Anchor`] when it cannot be written.
    pub fn write(&self, git_dir: &std::path::Path) -> Result<(), TrustError> {
        use std::io::Write;
        let path = git_dir.join(ANCHOR_FILE);
        let fail = |e: std::io::Error| TrustError::Anchor(format!("cannot write .git/{ANCHOR_FILE}: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let body = toml::to_string(self).map_err(|e| TrustError::Anchor(e.to_string()))?;
        let text = format!(
            "# The trust anchor: the last desired commit gantry reconciled on this host (docs/SECURITY.md).\n\
             # Written by gantry; never read from a commit.\n{body}"
        );
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }

    /// The anchor commit's id.
    ///
    /// # Errors
    /// When the pinned text is not a commit id (checked by [`TrustAnchor::read`]).
    pub fn oid(&self) -> Result<Oid, git2::Error> {
        Oid::from_str(&self.commit)
    }
}

/// Where the anchor of a pass comes from.
#[derive(Debug, Clone)]
pub enum AnchorSource {
    /// `.git/gantry/trust-anchor`.
    Pinned(TrustAnchor),
    /// Nothing pinned yet on this host: the newest desired commit recorded on the state branch.
    Recorded(Oid),
    /// Nothing reconciled anywhere: trust on first use.
    None,
}

impl AnchorSource {
    /// The pinned anchor, else the state branch's newest recorded desired commit.
    ///
    /// # Errors
    /// As [`TrustAnchor::read`].
    pub fn find(git_dir: &std::path::Path, last_recorded: Option<Oid>) -> Result<AnchorSource, TrustError> {
        Ok(match (TrustAnchor::read(git_dir)?, last_recorded) {
            (Some(anchor), _) => AnchorSource::Pinned(anchor),
            (None, Some(oid)) => AnchorSource::Recorded(oid),
            (None, None) => AnchorSource::None,
        })
    }

    /// The anchor commit, if any.
    pub fn commit(&self) -> Option<Oid> {
        match self {
            AnchorSource::Pinned(a) => a.oid().ok(),
            AnchorSource::Recorded(oid) => Some(*oid),
            AnchorSource::None => None,
        }
    }

    /// How messages name where the anchor is pinned.
    fn describe(&self) -> &'static str {
        match self {
            AnchorSource::Pinned(_) => "pinned in .git/gantry/trust-anchor",
            _ => "the newest desired commit recorded on the state branch",
        }
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
    /// The anchor commit is not in the repository: no fall back to trust on first use.
    #[error(
        "the trust anchor {commit} ({pinned}) is not in this repository: the desired branch was rewritten or \
         the commit was pruned. Fetch it back; or, after checking the new history by hand, pin the signers \
         in .git/gantry/allowed_signers and run once with --allow-rewind"
    )]
    MissingAnchor { commit: Oid, pinned: &'static str },
    /// The desired head does not descend from the anchor (a rewind or an unrelated history).
    #[error(
        "the desired branch moved backwards: {head} does not descend from {anchor}, the last reconciled commit \
         ({pinned}); nothing was applied. Undo a change with a new commit (git revert), or, if replacing the \
         history is deliberate, run with --allow-rewind"
    )]
    Rewind {
        head: Oid,
        anchor: Oid,
        pinned: &'static str,
    },
    /// A signing key cannot be read or cannot sign.
    #[error("signing key {path}: {detail}")]
    Key { path: String, detail: String },
    /// `.git/gantry/trust-anchor` cannot be read or written.
    #[error("trust anchor: {0}")]
    Anchor(String),
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
    /// Whether it is the operator's `.git/gantry/allowed_signers` (then it alone decides).
    pub host_pinned: bool,
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
            host_pinned: false,
        })
    }

    /// A list that trusts no key.
    pub fn none(source_name: &str) -> AllowedSigners {
        AllowedSigners {
            entries: Vec::new(),
            source_name: source_name.to_string(),
            host_pinned: false,
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

/// An SSH key that signs commits in-process (`gantry approve`), as `git commit -S` with
/// `gpg.format = ssh` would: an SSHSIG over the commit buffer in namespace `git`, SHA-512.
pub struct CommitSigner {
    key: ssh_key::PrivateKey,
    /// Where the key was read from, for messages.
    pub source: String,
}

impl CommitSigner {
    /// Reads an unencrypted OpenSSH private key (`ssh-keygen -t ed25519`). Given a `.pub` path
    /// (as git's `user.signingkey` often is), the private key next to it is read.
    ///
    /// # Errors
    /// [`TrustError::Key`] saying why the key cannot sign.
    pub fn from_file(path: &std::path::Path) -> Result<CommitSigner, TrustError> {
        let path = match path.extension() {
            Some(ext) if ext == "pub" => path.with_extension(""),
            _ => path.to_path_buf(),
        };
        let source = path.display().to_string();
        let fail = |detail: String| TrustError::Key {
            path: source.clone(),
            detail,
        };
        // Read first, so a missing or unreadable file says so in the OS's words.
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let key = ssh_key::PrivateKey::from_openssh(text.trim_start())
            .map_err(|e| fail(format!("not an OpenSSH private key ({e})")))?;
        if key.is_encrypted() {
            return Err(fail(
                "it is passphrase-protected; gantry signs only with an unencrypted key file (keep it readable by you alone)"
                    .to_string(),
            ));
        }
        Ok(CommitSigner { key, source })
    }

    /// The public key, as listed in an allowed-signers file.
    pub fn public_key(&self) -> &ssh_key::PublicKey {
        self.key.public_key()
    }

    /// The armored SSH signature of a commit buffer (`git2::Repository::commit_create_buffer`).
    ///
    /// # Errors
    /// [`TrustError::Key`] when signing fails.
    pub fn sign(&self, commit_buffer: &[u8]) -> Result<String, TrustError> {
        let fail = |detail: String| TrustError::Key {
            path: self.source.clone(),
            detail,
        };
        let sig = self
            .key
            .sign(GIT_NAMESPACE, HashAlg::Sha512, commit_buffer)
            .map_err(|e| fail(e.to_string()))?;
        sig.to_pem(ssh_key::LineEnding::LF).map_err(|e| fail(e.to_string()))
    }
}

impl CommitSigner {
    /// Writes a commit signed with this key (a `gpgsig` header holding the SSHSIG, exactly what
    /// `git commit -S` with `gpg.format = ssh` writes, so `git verify-commit` checks it) without
    /// moving any reference. The one place gantry signs commits: approvals and state commits.
    ///
    /// # Errors
    /// [`TrustError::Key`] when signing fails, [`TrustError::Git`] when writing fails.
    pub fn commit(
        &self,
        repo: &git2::Repository,
        author: &git2::Signature<'_>,
        committer: &git2::Signature<'_>,
        message: &str,
        tree: &git2::Tree<'_>,
        parents: &[&git2::Commit<'_>],
    ) -> Result<Oid, TrustError> {
        let buffer = repo.commit_create_buffer(author, committer, message, tree, parents)?;
        let armored = self.sign(&buffer)?;
        let text = std::str::from_utf8(&buffer).map_err(|_| TrustError::Key {
            path: self.source.clone(),
            detail: "the commit to sign is not UTF-8 text".to_string(),
        })?;
        Ok(repo.commit_signed(text, &armored, None)?)
    }

    /// The line listing this key in an ALLOWED SIGNERS file, for `principal`.
    pub fn allowed_signers_line(&self, principal: &str) -> String {
        let public = self.public_key();
        format!(
            "{principal} namespaces=\"{GIT_NAMESPACE}\" {} {}",
            public.to_openssh().unwrap_or_default(),
            public.fingerprint(HashAlg::Sha256)
        )
    }
}

impl AllowedSigners {
    /// Whether `key` is listed (for namespace `git`), whatever its principals.
    pub fn lists(&self, key: &ssh_key::PublicKey) -> bool {
        self.entries.iter().any(|e| e.key.key_data() == key.key_data())
    }

    /// The addresses `key` is listed for: positive principals without wildcards, in file order.
    pub fn addresses_of(&self, key: &ssh_key::PublicKey) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.key.key_data() == key.key_data())
            .flat_map(|e| e.principals.iter())
            .filter(|p| !p.starts_with('!') && !p.contains(['*', '?']) && p.contains('@'))
            .map(|p| p.to_ascii_lowercase())
            .collect()
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
    let principals: Vec<Vec<String>> = listed.iter().map(|e| e.principals.clone()).collect();
    Ok(Signer {
        email: principals
            .iter()
            .flatten()
            .find(|p| !p.starts_with('!'))
            .cloned()
            .unwrap_or_default(),
        principals,
        fingerprint,
    })
}

/// The allowed signers in force for reconciling `head`, or `None` when trust is not configured
/// (see the module docs for the anchor's order).
///
/// # Errors
/// [`TrustError::MissingAnchor`] when the anchor commit is gone, [`TrustError::MissingSigners`]
/// when trust is required but the file is not where it should be, [`TrustError::Signers`] when
/// it does not parse, git failures.
pub fn signers_for(
    repo: &WatchedRepo,
    head: Oid,
    head_config: &RepoConfig,
    anchor: &AnchorSource,
) -> Result<Option<AllowedSigners>, TrustError> {
    let pinned = repo.repo.path().join(PINNED_SIGNERS);
    if pinned.is_file() {
        let name = format!(".git/{PINNED_SIGNERS}");
        let text = std::fs::read_to_string(&pinned).map_err(|e| TrustError::Signers {
            source_name: name.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        let mut signers = AllowedSigners::parse(&text, &name)?;
        signers.host_pinned = true;
        return Ok(Some(signers));
    }
    let previous = match anchor {
        AnchorSource::None => None,
        _ => {
            let oid = anchor
                .commit()
                .ok_or_else(|| TrustError::Anchor("unreadable anchor".to_string()))?;
            if repo.repo.find_commit(oid).is_err() {
                return Err(TrustError::MissingAnchor {
                    commit: oid,
                    pinned: anchor.describe(),
                });
            }
            let path = match anchor {
                AnchorSource::Pinned(a) => a.allowed_signers.clone(),
                _ => trust_path_at(repo, oid),
            };
            path.map(|path| (oid, path))
        }
    };
    let (anchor, path) = match (previous, &head_config.trust) {
        (Some((oid, path)), _) => (oid, path),
        // Trust switched on by this head (nothing to anchor it yet): the head's own list.
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

/// Refuses a head that does not descend from the anchor commit (a replayed older head, a
/// force-pushed unrelated history). The same commit, or any newer one, passes; so does a revert,
/// which is a new commit.
///
/// # Errors
/// [`TrustError::Rewind`], or [`TrustError::MissingAnchor`] when the anchor commit is gone.
pub fn check_forward(repo: &WatchedRepo, head: Oid, anchor: &AnchorSource) -> Result<(), TrustError> {
    let Some(anchor_oid) = anchor.commit() else {
        return Ok(());
    };
    if head == anchor_oid {
        return Ok(());
    }
    if repo.repo.find_commit(anchor_oid).is_err() {
        return Err(TrustError::MissingAnchor {
            commit: anchor_oid,
            pinned: anchor.describe(),
        });
    }
    if repo.repo.graph_descendant_of(head, anchor_oid)? {
        return Ok(());
    }
    Err(TrustError::Rewind {
        head,
        anchor: anchor_oid,
        pinned: anchor.describe(),
    })
}

/// The allowed signers in the tree of `commit` (its `[trust] allowed_signers` file), if it has
/// `[trust]` and the file; used to check an approving commit against the list in force
/// **before** it (its first parent), so a commit cannot vouch for an address through a key it
/// maps to that address itself.
///
/// # Errors
/// [`TrustError::Signers`] when the file does not parse, git failures.
pub fn signers_at(repo: &WatchedRepo, commit: Oid) -> Result<Option<AllowedSigners>, TrustError> {
    let Some(path) = trust_path_at(repo, commit) else {
        return Ok(None);
    };
    let short = &commit.to_string()[..7];
    let name = format!("{path} at {short}");
    match repo.read_file(commit, &path) {
        Ok(Some(bytes)) => AllowedSigners::parse(&String::from_utf8_lossy(&bytes), &name).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(TrustError::Signers {
            source_name: name,
            line: 0,
            message: e.to_string(),
        }),
    }
}

/// The addresses among `named` that the signature of `commit` vouches for: its key must be
/// listed for the address in `signers` (the anchored list) and, unless that list is the
/// operator's pinned file, also in the list at the commit's first parent (the list before the
/// commit changed it). Returns the signer and the addresses not vouched for.
///
/// # Errors
/// [`TrustError`] when the commit is not signed by an allowed signer.
pub fn vouched(
    repo: &WatchedRepo,
    commit: Oid,
    signers: &AllowedSigners,
    named: impl IntoIterator<Item = String>,
) -> Result<(Signer, Vec<String>, Vec<String>), TrustError> {
    let signer = verify_commit(&repo.repo, commit, signers)?;
    let before = match (signers.host_pinned, repo.repo.find_commit(commit)?.parent_ids().next()) {
        (false, Some(parent)) => signers_at(repo, parent)?
            .map(|list| verify_commit(&repo.repo, commit, &list).ok())
            .unwrap_or(None)
            .map(Some),
        _ => None,
    };
    let (kept, dropped) = named.into_iter().partition(|a| {
        signer.vouches_for(a)
            && match &before {
                // The parent had a list: the key must have been listed for the address there too.
                Some(before) => before.as_ref().is_some_and(|b| b.vouches_for(a)),
                None => true,
            }
    });
    Ok((signer, kept, dropped))
}

/// `[trust] allowed_signers` of the `gantry.toml` at `commit`, if it has one.
fn trust_path_at(repo: &WatchedRepo, commit: Oid) -> Option<String> {
    let bytes = repo.read_file(commit, "gantry.toml").ok()??;
    let config: RepoConfig = toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()?;
    config.trust.map(|t| t.allowed_signers)
}

/// The private key git's `user.signingkey` names (read through git2's config, never by running
/// git), for the commits gantry signs as an operator (`approve`, `rollback`, `retry`).
///
/// # Errors
/// What to do, when the setting is missing or holds a literal public key (ssh-agent signing).
pub fn git_signing_key(repo: &git2::Repository) -> Result<std::path::PathBuf, String> {
    let missing =
        || "no signing key: set git's user.signingkey to the path of an unencrypted OpenSSH private key".to_string();
    let config = repo.config().map_err(|e| e.to_string())?;
    let value = config.get_string("user.signingkey").map_err(|_| missing())?;
    if value.starts_with("key::") || value.starts_with("ssh-") {
        return Err(
            "user.signingkey holds a literal public key (ssh-agent signing); gantry needs the private key file"
                .to_string(),
        );
    }
    match value.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|home| std::path::PathBuf::from(home).join(rest))
            .ok_or_else(missing),
        None => Ok(std::path::PathBuf::from(value)),
    }
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
            principals: vec![vec!["alice@example.com".into(), "*@ops.example.com".into()]],
            fingerprint: "SHA256:x".into(),
        };
        assert!(s.vouches_for("Alice@Example.com"));
        assert!(s.vouches_for("pager@ops.example.com"));
        assert!(!s.vouches_for("bob@example.com"));
    }

    /// Attack 8 of issue #18: `*@ops.x,!intruder@ops.x` let the negated principal through.
    #[test]
    fn negated_principals_follow_openssh_pattern_lists() {
        let list = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        for (patterns, address, want) in [
            (list(&["*@ops.x", "!intruder@ops.x"]), "alice@ops.x", true),
            (list(&["*@ops.x", "!intruder@ops.x"]), "intruder@ops.x", false),
            (list(&["*@ops.x", "!Intruder@OPS.x"]), "INTRUDER@ops.x", false),
            (list(&["!intruder@ops.x", "*@ops.x"]), "intruder@ops.x", false),
            (list(&["!intruder@ops.x"]), "alice@ops.x", false),
            (list(&["*", "!*@evil.x"]), "mallory@evil.x", false),
            (list(&["*", "!*@evil.x"]), "bob@good.x", true),
        ] {
            assert_eq!(
                pattern_list_matches(&patterns, address),
                want,
                "{patterns:?} vs {address}"
            );
        }
        let s = Signer {
            email: "*@ops.x".into(),
            principals: vec![list(&["*@ops.x", "!intruder@ops.x"])],
            fingerprint: "SHA256:x".into(),
        };
        assert!(!s.vouches_for("intruder@ops.x"));
        assert!(s.vouches_for("alice@ops.x"));
    }

    #[test]
    fn anchor_round_trips_and_bad_files_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TrustAnchor::read(dir.path()).unwrap(), None);
        let anchor = TrustAnchor {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            state_branch: "gantry/state".into(),
            allowed_signers: Some("trust/allowed_signers".into()),
        };
        anchor.write(dir.path()).unwrap();
        assert_eq!(TrustAnchor::read(dir.path()).unwrap(), Some(anchor));
        std::fs::write(
            dir.path().join(ANCHOR_FILE),
            "commit = \"nope\"\nstate_branch = \"s\"\n",
        )
        .unwrap();
        let err = TrustAnchor::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`nope` is not a commit id"), "{err}");
        std::fs::write(dir.path().join(ANCHOR_FILE), "garbage").unwrap();
        let err = TrustAnchor::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("delete it to re-pin"), "{err}");
    }
}
