//! The checks that are requests: `http` (status and body) and `prometheus` (an instant query's
//! first sample within bounds), each bounded by its timeout and a response size limit.

use std::time::Duration;

use crate::manifest::OnNoData;
use crate::manifest::health::MetricBounds;

use crate::executor::{human_duration, truncate_for_message};

use super::CheckOutcome;

/// At most this much of a response body is read.
pub(super) const MAX_BODY: u64 = 1 << 20;

pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // Status codes are the check's business, not transport errors.
        .http_status_as_error(false)
        // Checks target services directly; an HTTP_PROXY meant for the internet must not apply.
        .proxy(None)
        .build();
    ureq::Agent::new_with_config(config)
}

/// GET `url`; healthy when the status is `expect` and the body contains `body` (if given).
pub(super) fn http_check(url: &str, expect: u16, body: Option<&str>, timeout: Duration) -> CheckOutcome {
    let mut response = match agent(timeout).get(url).call() {
        Ok(r) => r,
        Err(e) => {
            return CheckOutcome::fail(format!("GET {url}: {}", transport_error(&e, timeout)));
        }
    };
    let status = response.status().as_u16();
    if status != expect {
        return CheckOutcome::fail(format!("GET {url}: status {status}, expected {expect}"));
    }
    let Some(needle) = body else {
        return CheckOutcome::pass(format!("GET {url}: status {status}"));
    };
    match response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .lossy_utf8(true)
        .read_to_string()
    {
        Ok(text) if text.contains(needle) => CheckOutcome::pass(format!("GET {url}: status {status}, body matches")),
        Ok(_) => CheckOutcome::fail(format!(
            "GET {url}: status {status} but the body does not contain {needle:?}"
        )),
        Err(e) => CheckOutcome::fail(format!(
            "GET {url}: cannot read the body: {}",
            transport_error(&e, timeout)
        )),
    }
}

pub(super) fn transport_error(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {}", human_duration(timeout)),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The metric range of a prometheus check (validation guarantees one end at least).
pub(super) type Bounds = MetricBounds;

impl Bounds {
    pub(super) fn check(self, value: f64) -> CheckOutcome {
        if value.is_nan() {
            return CheckOutcome::fail("value is NaN");
        }
        if let Some(max) = self.max
            && value > max
        {
            return CheckOutcome::fail(format!("value {value} is above max {max}"));
        }
        if let Some(min) = self.min
            && value < min
        {
            return CheckOutcome::fail(format!("value {value} is below min {min}"));
        }
        let bounds = match (self.min, self.max) {
            (Some(min), Some(max)) => format!("min {min}, max {max}"),
            (Some(min), None) => format!("min {min}"),
            (None, Some(max)) => format!("max {max}"),
            (None, None) => "no bounds".to_owned(),
        };
        CheckOutcome::pass(format!("value {value} is within bounds ({bounds})"))
    }
}

/// Runs an instant query and compares the first sample with the bounds.
pub(super) fn prometheus_check(
    url: &str,
    query: &str,
    bounds: Bounds,
    on_no_data: OnNoData,
    timeout: Duration,
) -> CheckOutcome {
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let fail = |what: String| CheckOutcome::fail(format!("query {query:?} at {url}: {what}"));
    let mut response = match agent(timeout).get(&endpoint).query("query", query).call() {
        Ok(r) => r,
        Err(e) => return fail(transport_error(&e, timeout)),
    };
    let status = response.status().as_u16();
    let text = match response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .lossy_utf8(true)
        .read_to_string()
    {
        Ok(t) => t,
        Err(e) => {
            return fail(format!("cannot read the answer: {}", transport_error(&e, timeout)));
        }
    };
    // Prometheus answers errors (bad query: 400, timeout: 503) with the same JSON envelope.
    match first_sample(&text) {
        Ok(Some(value)) => {
            let outcome = bounds.check(value);
            CheckOutcome {
                ok: outcome.ok,
                message: format!("query {query:?}: {}", outcome.message),
            }
        }
        Ok(None) => match on_no_data {
            OnNoData::Pass => CheckOutcome::pass(format!("query {query:?} returned no data (onNoData: pass)")),
            OnNoData::Fail => fail("returned no data (set onNoData: pass if that is healthy)".into()),
        },
        Err(problem) if status != 200 => fail(format!("status {status}: {problem}")),
        Err(problem) => fail(problem),
    }
}

/// The value of the first sample of an instant query answer (vector or scalar); `None` for an
/// empty vector.
pub(super) fn first_sample(text: &str) -> Result<Option<f64>, String> {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a Prometheus API answer ({e}): {:?}",
            truncate_for_message(text, 200)
        )
    })?;
    if doc["status"] != "success" {
        let kind = doc["errorType"].as_str().unwrap_or("error");
        let error = doc["error"].as_str().unwrap_or("no error message");
        return Err(format!("{kind}: {error}"));
    }
    let result = &doc["data"]["result"];
    let sample = match doc["data"]["resultType"].as_str() {
        Some("vector") => match result.as_array().map(Vec::as_slice) {
            Some([]) => return Ok(None),
            Some([first, ..]) => &first["value"],
            None => return Err("vector result is not a list".into()),
        },
        Some("scalar") => result,
        other => {
            return Err(format!(
                "expected an instant vector or scalar, got {}",
                other.unwrap_or("nothing")
            ));
        }
    };
    // A sample is `[timestamp, "value"]`; the value is a string so NaN and ±Inf survive JSON.
    let raw = sample[1].as_str().ok_or_else(|| format!("malformed sample {sample}"))?;
    let value = match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => raw
            .parse::<f64>()
            .map_err(|_| format!("sample value {raw:?} is not a number"))?,
    };
    Ok(Some(value))
}
