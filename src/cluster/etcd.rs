//! A small blocking client for etcd's v3 JSON gRPC-gateway: the HTTP API every etcd member
//! serves on its client URLs (`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`, …), documented
//! at <https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/>. Keys and values travel base64,
//! int64 fields come back as JSON strings, and an absent field is its zero value.
//!
//! # Expected flow
//! [`Client::post`] sends one JSON request to the endpoint that answered last, and on a
//! transport failure or an "unavailable" answer (a dead or quorum-less member) tries the next
//! endpoint, until the caller's deadline. An answer etcd gives on purpose (4xx, e.g. "lease not
//! found") is returned at once. The request builders ([`put`], [`range`], [`txn`], …) and the
//! answer readers ([`TxnAnswer`], [`Kv`]) are pure.
//!
//! Calls block: the caller runs them on a blocking thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The endpoint could not be reached or the connection broke.
    #[error("{endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// etcd answered with an error.
    #[error("{endpoint}: HTTP {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// etcd's answer is not the JSON expected.
    #[error("{endpoint}: unreadable answer: {message}")]
    Answer { endpoint: String, message: String },
}

/// How [`Client::post`] failed.
#[derive(Debug)]
pub enum PostError {
    /// No endpoint answered before the deadline.
    TimedOut,
    /// The last failure before giving up.
    Failed(EtcdError),
}

/// The endpoints of one etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    /// The endpoint that answered last (tried first).
    preferred: Arc<AtomicUsize>,
    agent: ureq::Agent,
}

impl Client {
    /// `endpoints` as given to `--etcd` (`http://host:port`; a bare `host:port` means http).
    pub fn new(endpoints: &[String]) -> Client {
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let e = e.trim().trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let config = ureq::Agent::config_builder()
            // etcd's error answers carry JSON we read.
            .http_status_as_error(false)
            // etcd members are addressed directly; an HTTP_PROXY meant for the internet must not apply.
            .proxy(None)
            .build();
        Client {
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// POSTs `body` to `path` (e.g. `/v3/kv/txn`), failing over between endpoints until
    /// `within` has passed. Blocking.
    ///
    /// # Errors
    /// [`PostError::TimedOut`] when the deadline passed while waiting for an answer, else the
    /// last [`EtcdError`].
    pub fn post(&self, path: &str, body: &Value, within: Duration) -> Result<Value, PostError> {
        let deadline = Instant::now() + within;
        let count = self.endpoints.len().max(1);
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let text = body.to_string();
        let mut last: Option<EtcdError> = None;
        for attempt in 0.. {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if attempt > 0 && attempt % count == 0 {
                // Every endpoint failed: a short pause before the next round.
                std::thread::sleep(Duration::from_millis(20).min(left));
                continue;
            }
            let index = (first + attempt) % count;
            let Some(endpoint) = self.endpoints.get(index) else {
                break;
            };
            match self.post_one(endpoint, path, &text, left) {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(One::Final(e)) => return Err(PostError::Failed(e)),
                Err(One::TimedOut) => last = None,
                Err(One::Retry(e)) => last = Some(e),
            }
        }
        Err(last.map_or(PostError::TimedOut, PostError::Failed))
    }

    fn post_one(&self, endpoint: &str, path: &str, body: &str, left: Duration) -> Result<Value, One> {
        let transport = |e: ureq::Error| match e {
            ureq::Error::Timeout(_) => One::TimedOut,
            other => One::Retry(EtcdError::Transport {
                endpoint: endpoint.to_string(),
                message: other.to_string(),
            }),
        };
        let mut response = self
            .agent
            .post(&format!("{endpoint}{path}"))
            .config()
            .timeout_global(Some(left))
            .build()
            .header("content-type", "application/json")
            .send(body)
            .map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(transport)?;
        // A streaming call (lease keep-alive) answers one JSON object per line.
        let answer = serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .next()
            .unwrap_or(Ok(Value::Null));
        if status == 200 {
            return answer.map_err(|e| {
                One::Retry(EtcdError::Answer {
                    endpoint: endpoint.to_string(),
                    message: e.to_string(),
                })
            });
        }
        let answer = answer.unwrap_or(Value::Null);
        let message = answer["message"]
            .as_str()
            .map_or_else(|| text.trim().to_string(), str::to_string);
        let refused = EtcdError::Refused {
            endpoint: endpoint.to_string(),
            status,
            message,
        };
        // gRPC "unavailable" (14): this member cannot serve (no leader, stopping); another may.
        if status >= 500 || answer["code"].as_i64() == Some(14) {
            Err(One::Retry(refused))
        } else {
            Err(One::Final(refused))
        }
    }
}

enum One {
    /// Try the next endpoint.
    Retry(EtcdError),
    /// The deadline passed.
    TimedOut,
    /// etcd's answer on purpose: trying elsewhere would not change it.
    Final(EtcdError),
}

/// Bytes as the gateway wants them.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    Base64::encode_string(bytes.as_ref())
}

/// An int64 field: a JSON string (or number); absent means 0.
pub fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(value: &Value) -> Vec<u8> {
    value
        .as_str()
        .and_then(|s| Base64::decode_vec(s).ok())
        .unwrap_or_default()
}

/// The end of the range of keys starting with `prefix` (etcd's `--prefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: all keys from `prefix` on.
    vec![0]
}

/// The compare "`key` was created at revision `revision`" (0: `key` does not exist).
pub fn create_revision_is(key: &str, revision: i64) -> Value {
    json!({
        "key": b64(key),
        "result": "EQUAL",
        "target": "CREATE",
        "create_revision": revision.to_string(),
    })
}

/// A put operation for a transaction, attached to `lease` if given.
pub fn put(key: &str, value: impl AsRef<[u8]>, lease: Option<i64>) -> Value {
    let mut put = json!({"key": b64(key), "value": b64(value)});
    if let Some(lease) = lease {
        put["lease"] = Value::String(lease.to_string());
    }
    json!({ "request_put": put })
}

/// A get of one key, for a transaction.
pub fn get(key: &str) -> Value {
    json!({"request_range": {"key": b64(key)}})
}

/// A delete of one key, for a transaction.
pub fn delete(key: &str) -> Value {
    json!({"request_delete_range": {"key": b64(key)}})
}

/// The body of `/v3/kv/range` for every key under `prefix`.
pub fn range_prefix(prefix: &str) -> Value {
    json!({"key": b64(prefix), "range_end": b64(prefix_end(prefix.as_bytes()))})
}

/// The body of `/v3/kv/txn`.
pub fn txn(compare: &[Value], success: &[Value], failure: &[Value]) -> Value {
    json!({"compare": compare, "success": success, "failure": failure})
}

/// One key-value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub lease: i64,
}

/// The key-values of a range answer (`/v3/kv/range` or a transaction's `response_range`).
pub fn kvs(range: &Value) -> Vec<Kv> {
    range["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| Kv {
                    key: bytes(&kv["key"]),
                    value: bytes(&kv["value"]),
                    create_revision: int(&kv["create_revision"]),
                    lease: int(&kv["lease"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a transaction answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAnswer {
    pub succeeded: bool,
    /// The store's revision after the transaction (a successful put's create revision).
    pub revision: i64,
    /// The key-values of the first range operation that ran.
    pub kvs: Vec<Kv>,
}

impl TxnAnswer {
    pub fn read(answer: &Value) -> TxnAnswer {
        let kvs = answer["responses"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r.get("response_range").is_some()))
            .map(|r| kvs(&r["response_range"]))
            .unwrap_or_default();
        TxnAnswer {
            succeeded: answer["succeeded"].as_bool().unwrap_or(false),
            revision: int(&answer["header"]["revision"]),
            kvs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        for (prefix, end) in [
            (&b"/a/"[..], &b"/a0"[..]),
            (&b"a\xff"[..], &b"b"[..]),
            (&b"\xff\xff"[..], &b"\x00"[..]),
        ] {
            assert_eq!(prefix_end(prefix), end, "{prefix:?}");
        }
    }

    /// Answers as etcd 3.4's gateway writes them: int64 as strings, false/0 fields absent.
    #[test]
    fn txn_answers_are_read() {
        let lost: Value = serde_json::from_str(
            r#"{"header":{"revision":"2","raft_term":"2"},"responses":[{"response_range":
            {"header":{"revision":"2"},"kvs":[{"key":"L2E=","create_revision":"2",
            "mod_revision":"2","version":"1","value":"aGk=","lease":"77"}],"count":"1"}}]}"#,
        )
        .expect("json");
        assert_eq!(
            TxnAnswer::read(&lost),
            TxnAnswer {
                succeeded: false,
                revision: 2,
                kvs: vec![Kv {
                    key: b"/a".to_vec(),
                    value: b"hi".to_vec(),
                    create_revision: 2,
                    lease: 77,
                }],
            }
        );
        let won: Value = serde_json::from_str(
            r#"{"header":{"revision":"9"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"9"}}}]}"#,
        )
        .expect("json");
        let won = TxnAnswer::read(&won);
        assert!(won.succeeded);
        assert_eq!((won.revision, won.kvs.len()), (9, 0));
    }

    #[test]
    fn requests_are_base64_with_string_int64() {
        assert_eq!(
            put("/k", "v", Some(5)),
            json!({"request_put": {"key": "L2s=", "value": "dg==", "lease": "5"}})
        );
        assert_eq!(create_revision_is("/k", 0)["create_revision"], "0");
        assert_eq!(range_prefix("/a/"), json!({"key": "L2Ev", "range_end": "L2Ew"}));
    }
}
