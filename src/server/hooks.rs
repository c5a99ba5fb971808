//! `POST /api/hooks/git`: push deliveries from Git servers, so a push is fetched and reconciled
//! at once instead of at the next poll.
//!
//! A delivery counts only when it proves it knows the secret (`--webhook-secret-file`):
//! GitHub-style `X-Hub-Signature-256: sha256=HEX` (HMAC-SHA256 of the exact body) or
//! GitLab-style `X-Gitlab-Token: SECRET`. Both are compared in constant time. Anything else
//! (no header, a wrong signature, no secret configured) is 401 and triggers nothing. A verified
//! delivery only asks for a fetch and a pass, exactly like `POST /api/refresh`: its body is never
//! trusted for what to reconcile (that always comes from the fetched commit).

use std::path::Path;

use axum::http::HeaderMap;
use hmac::Mac;
use subtle::ConstantTimeEq;

/// The shared secret: never printed.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Reads the secret from a file (surrounding whitespace, such as the final newline, is not
    /// part of it).
    ///
    /// # Errors
    /// A message naming the file when it cannot be read or is empty.
    pub fn from_file(path: &Path) -> Result<WebhookSecret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the webhook secret: {e}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!(
                "{}: the webhook secret file is empty (write a long random string into it)",
                path.display()
            ));
        }
        Ok(WebhookSecret(secret.as_bytes().to_vec()))
    }
}

/// Why a delivery was refused (the 401 body; never echoes what was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The daemon has no secret, so no delivery can be verified.
    #[error("webhooks are off: start the daemon with --webhook-secret-file PATH")]
    NoSecret,
    /// Neither header is present.
    #[error("unsigned delivery: expected X-Hub-Signature-256 or X-Gitlab-Token")]
    Unsigned,
    /// The header is present and wrong.
    #[error("bad signature")]
    BadSignature,
}

/// Which kind of delivery verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    GitHub,
    GitLab,
}

/// Verifies a delivery's headers against the body and the secret.
///
/// # Errors
/// [`Refused`].
pub fn verify(headers: &HeaderMap, body: &[u8], secret: Option<&WebhookSecret>) -> Result<Sender, Refused> {
    let secret = secret.ok_or(Refused::NoSecret)?;
    if let Some(value) = headers.get("x-hub-signature-256") {
        let hex = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .ok_or(Refused::BadSignature)?;
        let signature = crate::hex::decode(hex).ok_or(Refused::BadSignature)?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret.0).map_err(|_| Refused::BadSignature)?;
        mac.update(body);
        // `verify_slice` compares in constant time.
        return mac
            .verify_slice(&signature)
            .map(|()| Sender::GitHub)
            .map_err(|_| Refused::BadSignature);
    }
    if let Some(value) = headers.get("x-gitlab-token") {
        return if bool::from(value.as_bytes().ct_eq(&secret.0)) {
            Ok(Sender::GitLab)
        } else {
            Err(Refused::BadSignature)
        };
    }
    Err(Refused::Unsigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn deliveries() {
        let secret = WebhookSecret(b"topsecret".to_vec());
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"topsecret", body);
        let other_body = sign(b"topsecret", b"{}");
        let wrong_key = sign(b"guess", body);
        type Case<'a> = (
            Vec<(&'static str, &'a str)>,
            Option<&'a WebhookSecret>,
            Result<Sender, Refused>,
        );
        let cases: Vec<Case<'_>> = vec![
            (vec![("x-hub-signature-256", &good)], Some(&secret), Ok(Sender::GitHub)),
            (
                vec![("x-hub-signature-256", &other_body)],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (
                vec![("x-hub-signature-256", &wrong_key)],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (
                vec![("x-hub-signature-256", "sha256=zz")],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (
                vec![("x-hub-signature-256", "sha1=00")],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (
                vec![("x-hub-signature-256", &good[..20])],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (vec![("x-gitlab-token", "topsecret")], Some(&secret), Ok(Sender::GitLab)),
            (
                vec![("x-gitlab-token", "topsecre")],
                Some(&secret),
                Err(Refused::BadSignature),
            ),
            (vec![("x-gitlab-token", "")], Some(&secret), Err(Refused::BadSignature)),
            (vec![], Some(&secret), Err(Refused::Unsigned)),
            (vec![("x-hub-signature-256", &good)], None, Err(Refused::NoSecret)),
        ];
        for (headers, secret, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in &headers {
                map.insert(*k, v.parse().unwrap());
            }
            assert_eq!(verify(&map, body, secret), want, "{headers:?}");
        }
    }

    #[test]
    fn secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  \n").unwrap();
        assert!(WebhookSecret::from_file(&path).unwrap_err().contains("is empty"));
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = WebhookSecret::from_file(&path).unwrap();
        assert_eq!(secret.0, b"s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        assert!(WebhookSecret::from_file(&dir.path().join("absent")).is_err());
    }
}
