//! Git remotes over https and ssh: credentials, TLS and host-key checks, fetch and push.
//!
//! Credentials are host settings ([`GitAuth`], from global flags and environment variables),
//! never read from the watched repository. Every failure is one [`RemoteError`] line that names
//! the remote, the cause (authentication refused, host key unknown or changed, TLS verification
//! failed, unreachable) and what to do. Secrets (the token, a password in a URL) never appear in
//! an error, a log line or the API: URLs are shown with their password removed and the token is
//! held in a type whose `Debug` prints nothing.
//!
//! SSH host keys are checked by gantry itself against an OpenSSH `known_hosts` file (plain and
//! hashed host names, `[host]:port` entries, `@revoked` lines); libgit2's own check is never
//! used, so an unknown or changed key is refused, never accepted or added silently.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Once;

use git2::{CertificateCheckStatus, Cred, CredentialType, Direction, Repository};

/// How gantry authenticates to Git servers (host settings, not repository content).
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// Private key for ssh remotes; an ssh-agent is asked when unset.
    pub ssh_key: Option<PathBuf>,
    /// OpenSSH known_hosts file; `~/.ssh/known_hosts` when unset.
    pub known_hosts: Option<PathBuf>,
    /// File holding the https token (basic auth password).
    pub token_file: Option<PathBuf>,
    /// https basic auth user name (default `git`).
    pub username: Option<String>,
    /// Extra CA certificates (PEM) for https.
    pub ca_file: Option<PathBuf>,
}

impl GitAuth {
    /// The known_hosts file in force.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.known_hosts.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".ssh/known_hosts")
        })
    }

    fn username(&self) -> &str {
        self.username.as_deref().unwrap_or("git")
    }

    /// Installs `ca_file` as extra trusted CAs, once per process, before any connection.
    ///
    /// # Errors
    /// [`RemoteError::CaFile`] when the file cannot be loaded.
    pub fn install_ca(&self) -> Result<(), RemoteError> {
        static INSTALL: Once = Once::new();
        let Some(path) = &self.ca_file else {
            return Ok(());
        };
        if let Err(source) = std::fs::metadata(path) {
            return Err(RemoteError::CaFile {
                path: path.clone(),
                message: source.to_string(),
            });
        }
        let mut result = Ok(());
        INSTALL.call_once(|| {
            // SAFETY: libgit2 documents this option as not thread-safe against concurrent TLS
            // connections; `Once` runs it exactly once, before this process's first connection
            // (every fetch and push goes through `connect`, which calls this first). It adds the
            // file's certificates to the default ones (SSL_CTX_load_verify_locations).
            if let Err(e) = unsafe { git2::opts::set_ssl_cert_file(path.as_os_str().as_encoded_bytes()) } {
                result = Err(RemoteError::CaFile {
                    path: path.clone(),
                    message: e.message().to_string(),
                });
            }
        });
        result
    }
}

/// A token read from a file: never printed.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// Why talking to a remote failed. Each variant's text is one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The repository has no remote of that name.
    #[error("remote `{remote}` is not configured in this repository (add it with `git remote add {remote} URL`)")]
    NoSuchRemote { remote: String },
    /// The server refused the credentials (or none were available).
    #[error("remote `{remote}` ({url}): authentication refused: {detail} ({hint})")]
    AuthRefused {
        remote: String,
        url: String,
        detail: String,
        hint: String,
    },
    /// The server's SSH host key is not in known_hosts.
    #[error(
        "remote `{remote}` ({url}): host key unknown: {host} offers {fingerprint}, which is not in {} (check the \
         fingerprint with the server's administrator, then add the key: `ssh-keyscan{port} {name} >> {}`)",
        known_hosts.display(), known_hosts.display()
    )]
    HostKeyUnknown {
        remote: String,
        url: String,
        host: String,
        name: String,
        port: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    /// The server's SSH host key differs from the one known_hosts has for it (or is revoked).
    #[error(
        "remote `{remote}` ({url}): host key changed: {host} offers {fingerprint}, which does not match {}:{line}; \
         refusing to connect (someone may be intercepting the connection; if the server's key really changed, \
         replace that line)",
        known_hosts.display()
    )]
    HostKeyChanged {
        remote: String,
        url: String,
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    /// The server's TLS certificate did not verify.
    #[error(
        "remote `{remote}` ({url}): TLS verification failed: {detail} (pass --git-ca-file PATH or set \
         GANTRY_GIT_CA_FILE to the CA that signed the server's certificate)"
    )]
    Tls {
        remote: String,
        url: String,
        detail: String,
    },
    /// The server could not be reached.
    #[error("remote `{remote}` ({url}): unreachable: {detail} (check the address and that the server is up)")]
    Unreachable {
        remote: String,
        url: String,
        detail: String,
    },
    /// The server refused to update a ref.
    #[error("remote `{remote}` ({url}): push of {refname} rejected: {detail}")]
    Rejected {
        remote: String,
        url: String,
        refname: String,
        detail: String,
    },
    /// Any other failure of a fetch or push.
    #[error("remote `{remote}` ({url}): {what} failed: {detail}")]
    Other {
        remote: String,
        url: String,
        what: &'static str,
        detail: String,
    },
    /// `--git-ca-file` cannot be used.
    #[error("{}: cannot use as --git-ca-file: {message}", path.display())]
    CaFile { path: PathBuf, message: String },
    /// A local git failure around the transfer (refs, objects).
    #[error("remote `{remote}`: {0}", remote = .1)]
    Local(#[source] git2::Error, String),
}

/// What the callbacks saw, to turn libgit2's generic error into a precise one.
#[derive(Debug, Default)]
struct Seen {
    auth_attempts: u32,
    /// Tries per kind of credential: user name, SSH key, user and token.
    tries: [u32; 3],
    /// The credentials callback refused to go on (no usable or no accepted credential).
    gave_up: bool,
    auth_detail: Option<String>,
    host_key: Option<HostKeyProblem>,
}

#[derive(Debug, Clone)]
enum HostKeyProblem {
    Unknown { fingerprint: String },
    Changed { fingerprint: String, line: usize },
    Unreadable { message: String },
}

/// Where a remote lives, parsed from its URL for known_hosts lookups and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    scheme: Scheme,
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ssh,
    Https,
    Http,
    Local,
}

impl Endpoint {
    /// Parses `ssh://user@host:port/path`, `user@host:path` (scp form), `https://…`, paths.
    fn parse(url: &str) -> Endpoint {
        let local = Endpoint {
            scheme: Scheme::Local,
            user: None,
            host: String::new(),
            port: None,
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("ssh://") {
            (Scheme::Ssh, rest)
        } else if let Some(rest) = url.strip_prefix("git+ssh://") {
            (Scheme::Ssh, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if url.contains("://") || url.starts_with('/') || url.starts_with('.') {
            return local;
        } else if let Some((authority, _)) = url.split_once(':')
            && !authority.contains('/')
        {
            // scp-like `user@host:path`: no port in this form.
            let (user, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h.to_string()),
                None => (None, authority.to_string()),
            };
            return Endpoint {
                scheme: Scheme::Ssh,
                user,
                host,
                port: None,
            };
        } else {
            return local;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or_default().to_string()), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            // [::1]:22
            match inner.split_once(']') {
                Some((h, p)) => (h.to_string(), p.strip_prefix(':').and_then(|p| p.parse().ok())),
                None => (inner.to_string(), None),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()),
                None => (hostport.to_string(), None),
            }
        };
        Endpoint {
            scheme,
            user,
            host,
            port,
        }
    }

    /// The name known_hosts uses: `host`, or `[host]:port` off port 22.
    fn known_hosts_name(&self) -> String {
        match self.port {
            Some(port) if port != 22 => format!("[{}]:{port}", self.host),
            _ => self.host.clone(),
        }
    }
}

/// A URL as shown to people: any password (`user:secret@`) removed.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// A remote of a repository, with the credentials to reach it.
pub struct Remote<'r> {
    repo: &'r Repository,
    name: String,
    url: String,
    auth: &'r GitAuth,
}

impl<'r> Remote<'r> {
    /// The remote `name` of `repo`.
    ///
    /// # Errors
    /// [`RemoteError::NoSuchRemote`].
    pub fn open(repo: &'r Repository, name: &str, auth: &'r GitAuth) -> Result<Remote<'r>, RemoteError> {
        let handle = repo.find_remote(name).map_err(|_| RemoteError::NoSuchRemote {
            remote: name.to_string(),
        })?;
        let url = handle.url().unwrap_or_default().to_string();
        Ok(Remote {
            repo,
            name: name.to_string(),
            url,
            auth,
        })
    }

    /// The remote's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches `refspecs` (tags are not fetched).
    ///
    /// # Errors
    /// [`RemoteError`] naming the cause.
    pub fn fetch(&self, refspecs: &[String]) -> Result<(), RemoteError> {
        self.auth.install_ca()?;
        let seen = RefCell::new(Seen::default());
        let mut handle = self.handle()?;
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(self.callbacks(&seen));
        options.download_tags(git2::AutotagOption::None);
        let result = handle.fetch(refspecs, Some(&mut options), None);
        result.map_err(|e| self.classify(&e, &seen.borrow(), "fetch"))
    }

    /// The remote's default branch (what its HEAD points at), e.g. `main`.
    ///
    /// # Errors
    /// [`RemoteError`] naming the cause.
    pub fn default_branch(&self) -> Result<Option<String>, RemoteError> {
        self.auth.install_ca()?;
        let seen = RefCell::new(Seen::default());
        let mut handle = self.handle()?;
        let connection = handle
            .connect_auth(Direction::Fetch, Some(self.callbacks(&seen)), None)
            .map_err(|e| self.classify(&e, &seen.borrow(), "connect"))?;
        let branch = connection
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_string))
            .and_then(|b| b.strip_prefix("refs/heads/").map(str::to_string));
        Ok(branch)
    }

    /// Pushes `src:dst` refspecs. The remote refuses a non-fast-forward unless the refspec
    /// starts with `+`; a refused ref is [`Pushed::Rejected`], not an error.
    ///
    /// # Errors
    /// [`RemoteError`] naming the cause, for transport failures.
    pub fn push(&self, refspecs: &[String]) -> Result<Pushed, RemoteError> {
        self.auth.install_ca()?;
        let seen = RefCell::new(Seen::default());
        let rejected: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
        let mut handle = self.handle()?;
        let result = {
            let mut callbacks = self.callbacks(&seen);
            callbacks.push_update_reference(|refname, status| {
                if let Some(status) = status {
                    rejected.borrow_mut().push((refname.to_string(), status.to_string()));
                }
                Ok(())
            });
            let mut options = git2::PushOptions::new();
            options.remote_callbacks(callbacks);
            handle.push(refspecs, Some(&mut options))
        };
        match result {
            Ok(()) => {
                let rejected = rejected.into_inner();
                Ok(if rejected.is_empty() {
                    Pushed::Accepted
                } else {
                    Pushed::Rejected(rejected)
                })
            }
            // libgit2 reports a non-fast-forward found locally as an error, not a status.
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
                Ok(Pushed::Rejected(vec![(refspecs.join(" "), e.message().to_string())]))
            }
            Err(e) => Err(self.classify(&e, &seen.borrow(), "push")),
        }
    }

    fn handle(&self) -> Result<git2::Remote<'r>, RemoteError> {
        self.repo
            .find_remote(&self.name)
            .map_err(|e| RemoteError::Local(e, self.name.clone()))
    }

    fn callbacks<'a>(&'a self, seen: &'a RefCell<Seen>) -> git2::RemoteCallbacks<'a> {
        let endpoint = Endpoint::parse(&self.url);
        let mut callbacks = git2::RemoteCallbacks::new();
        let auth = self.auth;
        callbacks.credentials(move |_url, url_user, allowed| {
            let mut seen = seen.borrow_mut();
            seen.auth_attempts += 1;
            // libgit2 asks again after every refusal: one try per kind of credential, then give
            // up with a clear cause instead of looping.
            let kind = if allowed.contains(CredentialType::USERNAME) {
                0
            } else if allowed.contains(CredentialType::SSH_KEY) {
                1
            } else {
                2
            };
            seen.tries[kind] += 1;
            if seen.tries[kind] > 1 {
                seen.auth_detail
                    .get_or_insert_with(|| "the server did not accept the credentials".into());
                seen.gave_up = true;
                return Err(git2::Error::from_str("authentication refused"));
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(url_user.unwrap_or(auth.username()));
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                let user = url_user.unwrap_or(auth.username());
                return match &auth.ssh_key {
                    Some(key) => {
                        if let Err(e) = std::fs::metadata(key) {
                            seen.auth_detail = Some(format!("cannot read the SSH key {}: {e}", key.display()));
                            seen.gave_up = true;
                            return Err(git2::Error::from_str("unreadable key"));
                        }
                        seen.auth_detail = Some(format!("the server did not accept the SSH key {}", key.display()));
                        Cred::ssh_key(user, None, key, None)
                    }
                    None => {
                        seen.auth_detail =
                            Some("the server accepted no key of the ssh-agent (no --git-ssh-key given)".into());
                        Cred::ssh_key_from_agent(user)
                    }
                };
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                let Some(path) = &auth.token_file else {
                    seen.auth_detail = Some("the server asks for credentials and no token is configured".into());
                    seen.gave_up = true;
                    return Err(git2::Error::from_str("no token"));
                };
                let token = match read_token(path) {
                    Ok(token) => token,
                    Err(message) => {
                        seen.auth_detail = Some(message);
                        seen.gave_up = true;
                        return Err(git2::Error::from_str("unreadable token"));
                    }
                };
                let user = url_user.unwrap_or(auth.username());
                seen.auth_detail = Some(format!(
                    "the server did not accept user `{user}` with the token from {}",
                    path.display()
                ));
                return Cred::userpass_plaintext(user, &token.0);
            }
            seen.auth_detail = Some(format!(
                "the server asks for credentials gantry cannot give ({allowed:?})"
            ));
            {
                seen.gave_up = true;
                Err(git2::Error::from_str("no usable credential type"))
            }
        });
        let known_hosts = self.auth.known_hosts_path();
        callbacks.certificate_check(move |cert, _host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: OpenSSL's verdict (with the default CAs plus --git-ca-file) stands.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(key) = hostkey.hostkey() else {
                seen.borrow_mut().host_key = Some(HostKeyProblem::Unreadable {
                    message: "the server's host key could not be read".into(),
                });
                return Err(git2::Error::from_str("host key unreadable"));
            };
            match check_known_hosts(&known_hosts, &endpoint, key) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(problem) => {
                    seen.borrow_mut().host_key = Some(problem);
                    Err(git2::Error::from_str("host key refused"))
                }
            }
        });
        callbacks
    }

    /// Turns libgit2's error into the cause users can act on.
    fn classify(&self, e: &git2::Error, seen: &Seen, what: &'static str) -> RemoteError {
        let remote = self.name.clone();
        let url = display_url(&self.url);
        let endpoint = Endpoint::parse(&self.url);
        let known_hosts = self.auth.known_hosts_path();
        match &seen.host_key {
            Some(HostKeyProblem::Unknown { fingerprint }) => {
                return RemoteError::HostKeyUnknown {
                    remote,
                    url,
                    host: endpoint.known_hosts_name(),
                    name: endpoint.host.clone(),
                    port: endpoint.port.map(|p| format!(" -p {p}")).unwrap_or_default(),
                    fingerprint: fingerprint.clone(),
                    known_hosts,
                };
            }
            Some(HostKeyProblem::Changed { fingerprint, line }) => {
                return RemoteError::HostKeyChanged {
                    remote,
                    url,
                    host: endpoint.known_hosts_name(),
                    fingerprint: fingerprint.clone(),
                    known_hosts,
                    line: *line,
                };
            }
            Some(HostKeyProblem::Unreadable { message }) => {
                return RemoteError::Other {
                    remote,
                    url,
                    what,
                    detail: message.clone(),
                };
            }
            None => {}
        }
        let message = e.message().to_string();
        let lower = message.to_ascii_lowercase();
        let auth_failed = e.code() == git2::ErrorCode::Auth
            || seen.gave_up
            || lower.contains("authentication")
            || lower.contains("status code: 401")
            || lower.contains("status code: 403");
        if auth_failed {
            let hint = match endpoint.scheme {
                Scheme::Ssh => "pass --git-ssh-key PATH or set GANTRY_GIT_SSH_KEY to a key the server accepts",
                _ => {
                    "pass --git-token-file PATH (and --git-username NAME) or set GANTRY_GIT_TOKEN_FILE to a token \
                     the server accepts"
                }
            };
            return RemoteError::AuthRefused {
                remote,
                url,
                detail: seen
                    .auth_detail
                    .clone()
                    .unwrap_or_else(|| "the server refused the credentials".into()),
                hint: hint.to_string(),
            };
        }
        if e.code() == git2::ErrorCode::Certificate || e.class() == git2::ErrorClass::Ssl {
            return RemoteError::Tls {
                remote,
                url,
                detail: message,
            };
        }
        let unreachable = matches!(e.class(), git2::ErrorClass::Net | git2::ErrorClass::Os)
            && (lower.contains("connect")
                || lower.contains("refused")
                || lower.contains("resolve")
                || lower.contains("unreachable")
                || lower.contains("timed out"))
            || lower.contains("failed to connect")
            || lower.contains("failed to start ssh session")
            || lower.contains("failed to resolve");
        if unreachable {
            return RemoteError::Unreachable {
                remote,
                url,
                detail: message,
            };
        }
        RemoteError::Other {
            remote,
            url,
            what,
            detail: message,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Every ref was updated.
    Accepted,
    /// The server refused these refs (name, reason), typically not a fast-forward.
    Rejected(Vec<(String, String)>),
}

fn read_token(path: &Path) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(Secret(token.to_string()))
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
fn fingerprint(key: &[u8]) -> String {
    use base64ct::Encoding;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key);
    format!("SHA256:{}", base64ct::Base64Unpadded::encode_string(&digest))
}

/// Checks the server's host key blob against `known_hosts` for the endpoint's name.
fn check_known_hosts(known_hosts: &Path, endpoint: &Endpoint, key: &[u8]) -> Result<(), HostKeyProblem> {
    let fingerprint = fingerprint(key);
    let text = match std::fs::read_to_string(known_hosts) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(HostKeyProblem::Unreadable {
                message: format!("cannot read {}: {e}", known_hosts.display()),
            });
        }
    };
    let name = endpoint.known_hosts_name();
    let mut other_key_line = None;
    let mut matched = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = first.strip_prefix('@').map(str::to_string);
        if marker.is_some() {
            first = fields.next().unwrap_or_default();
        }
        let (Some(_kind), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, &name) {
            continue;
        }
        let same = decode_base64(blob).is_some_and(|b| b == key);
        match marker.as_deref() {
            Some("revoked") if same => {
                return Err(HostKeyProblem::Changed {
                    fingerprint,
                    line: index + 1,
                });
            }
            Some(_) => {}
            None if same => matched = true,
            None => {
                other_key_line.get_or_insert(index + 1);
            }
        }
    }
    if matched {
        return Ok(());
    }
    match other_key_line {
        Some(line) => Err(HostKeyProblem::Changed { fingerprint, line }),
        None => Err(HostKeyProblem::Unknown { fingerprint }),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64ct::Encoding;
    base64ct::Base64::decode_vec(text).ok()
}

/// Whether a known_hosts host field (`a,b,!c`, `*.example.org`, `|1|salt|hash`) names `name`.
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        use hmac::Mac;
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (decode_base64(salt), decode_base64(hash)) else {
            return false;
        };
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(name.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut positive = false;
    for pattern in field.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, name) {
                return false;
            }
        } else if glob(pattern, name) {
            positive = true;
        }
    }
    positive
}

/// OpenSSH's `*` and `?` wildcards, case-insensitive.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for (url, scheme, user, host, port, name) in [
            (
                "ssh://git@127.0.0.1:2222/srv/fleet.git",
                Scheme::Ssh,
                Some("git"),
                "127.0.0.1",
                Some(2222),
                "[127.0.0.1]:2222",
            ),
            (
                "ssh://git@example.org/fleet.git",
                Scheme::Ssh,
                Some("git"),
                "example.org",
                None,
                "example.org",
            ),
            (
                "ssh://example.org:22/fleet.git",
                Scheme::Ssh,
                None,
                "example.org",
                Some(22),
                "example.org",
            ),
            (
                "git@github.com:acme/fleet.git",
                Scheme::Ssh,
                Some("git"),
                "github.com",
                None,
                "github.com",
            ),
            (
                "ssh://git@[::1]:2200/x",
                Scheme::Ssh,
                Some("git"),
                "::1",
                Some(2200),
                "[::1]:2200",
            ),
            (
                "https://user:tok@git.example.org:8443/x.git",
                Scheme::Https,
                Some("user"),
                "git.example.org",
                Some(8443),
                "[git.example.org]:8443",
            ),
            ("/srv/fleet.git", Scheme::Local, None, "", None, ""),
            ("file:///srv/fleet.git", Scheme::Local, None, "", None, ""),
        ] {
            let e = Endpoint::parse(url);
            assert_eq!(e.scheme, scheme, "{url}");
            assert_eq!(e.user.as_deref(), user, "{url}");
            assert_eq!(e.host, host, "{url}");
            assert_eq!(e.port, port, "{url}");
            assert_eq!(e.known_hosts_name(), name, "{url}");
        }
    }

    /// A token in a URL must never reach a message.
    #[test]
    fn display_url_drops_passwords() {
        for (url, shown) in [
            (
                "https://bot:s3cret@git.example.org/x.git",
                "https://bot@git.example.org/x.git",
            ),
            ("https://git.example.org/x.git", "https://git.example.org/x.git"),
            ("ssh://git@h:22/x", "ssh://git@h:22/x"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
        ] {
            assert_eq!(display_url(url), shown);
            assert!(!display_url(url).contains("s3cret"));
        }
    }

    #[test]
    fn host_patterns() {
        // `|1|` entry for "[127.0.0.1]:2222" made with `ssh-keygen -H` (salt, HMAC-SHA1).
        let salt = [7u8; 20];
        let hash = {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
            mac.update(b"[127.0.0.1]:2222");
            mac.finalize().into_bytes()
        };
        use base64ct::Encoding;
        let hashed = format!(
            "|1|{}|{}",
            base64ct::Base64::encode_string(&salt),
            base64ct::Base64::encode_string(&hash)
        );
        for (field, name, want) in [
            ("example.org", "example.org", true),
            ("EXAMPLE.org", "example.org", true),
            ("a.org,example.org", "example.org", true),
            ("*.org", "example.org", true),
            ("*.org,!example.org", "example.org", false),
            ("exampl?.org", "example.org", true),
            ("[127.0.0.1]:2222", "[127.0.0.1]:2222", true),
            ("127.0.0.1", "[127.0.0.1]:2222", false),
            (hashed.as_str(), "[127.0.0.1]:2222", true),
            (hashed.as_str(), "127.0.0.1", false),
        ] {
            assert_eq!(hosts_match(field, name), want, "{field} vs {name}");
        }
    }

    #[test]
    fn known_hosts_verdicts() {
        use base64ct::Encoding;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key = b"\x00\x00\x00\x0bssh-ed25519 key one".to_vec();
        let other = b"\x00\x00\x00\x0bssh-ed25519 key two".to_vec();
        let b64 = |k: &[u8]| base64ct::Base64::encode_string(k);
        let endpoint = Endpoint::parse("ssh://git@127.0.0.1:2222/x");
        std::fs::write(
            &path,
            format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {}\n", b64(&key)),
        )
        .unwrap();
        assert!(check_known_hosts(&path, &endpoint, &key).is_ok());
        assert!(matches!(
            check_known_hosts(&path, &endpoint, &other),
            Err(HostKeyProblem::Changed { line: 2, .. })
        ));
        std::fs::write(&path, format!("otherhost ssh-ed25519 {}\n", b64(&key))).unwrap();
        assert!(matches!(
            check_known_hosts(&path, &endpoint, &key),
            Err(HostKeyProblem::Unknown { .. })
        ));
        assert!(matches!(
            check_known_hosts(&dir.path().join("absent"), &endpoint, &key),
            Err(HostKeyProblem::Unknown { .. })
        ));
        std::fs::write(
            &path,
            format!(
                "[127.0.0.1]:2222 ssh-ed25519 {k}\n@revoked [127.0.0.1]:2222 ssh-ed25519 {k}\n",
                k = b64(&key)
            ),
        )
        .unwrap();
        assert!(matches!(
            check_known_hosts(&path, &endpoint, &key),
            Err(HostKeyProblem::Changed { line: 2, .. })
        ));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "(secret)");
    }
}
