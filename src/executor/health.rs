//! Health checks after a deploy or reload (SPEC §5): `command`, `http` and `prometheus` checks,
//! plus the component's own `health` step, run in a soak loop.
//!
//! The loop runs every check each `interval` until `soak` has passed; a check that fails
//! `failureThreshold` times in a row makes the target unhealthy. Time comes from a [`Clock`] so
//! tests drive the loop with a [`FakeClock`] instead of sleeping.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::manifest::health::{DEFAULT_HTTP_TIMEOUT, DEFAULT_INTERVAL};
use crate::manifest::health::{HealthSettings, MetricBounds, Probe};
use crate::manifest::{Argv, OnNoData};

use super::{
    Executor, ExecutorError, StepKind, StepRequest, TemplateContext, human_duration, render_one, truncate_for_message,
};

/// At most this much of a response body is read.
const MAX_BODY: u64 = 1 << 20;

/// Where the soak loop gets the time from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// Blocks for `d` (a fake clock just moves its time forward).
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that only moves when slept on (or advanced): tests of soak times take no time.
#[derive(Debug)]
pub struct FakeClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    pub fn new() -> Self {
        FakeClock {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// How far the clock moved since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn advance(&self, d: Duration) {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

/// What a probe concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthVerdict {
    /// Every check passed through the soak (and on the last round).
    Healthy { rounds: u32 },
    /// `check` failed `failureThreshold` times in a row; `message` says how it failed last.
    Unhealthy {
        check: String,
        message: String,
        rounds: u32,
    },
}

/// One check, with its settings resolved.
#[derive(Debug, Clone, PartialEq)]
struct Check {
    name: String,
    timeout: Duration,
    kind: CheckKind,
}

#[derive(Debug, Clone, PartialEq)]
enum CheckKind {
    /// The component's `health` step, run by the component's executor.
    Step(Argv),
    /// A policy check, typed by validation (a `command` runs on the local shell executor).
    Declared(Probe),
}

/// The outcome of running one check once.
#[derive(Debug, Clone, PartialEq)]
struct CheckOutcome {
    ok: bool,
    message: String,
}

impl CheckOutcome {
    fn pass(message: impl Into<String>) -> Self {
        CheckOutcome {
            ok: true,
            message: message.into(),
        }
    }
    fn fail(message: impl Into<String>) -> Self {
        CheckOutcome {
            ok: false,
            message: message.into(),
        }
    }
}

/// What a probe needs to run: the values templates see, where commands run, and who runs them.
pub struct ProbeRun<'a> {
    pub context: &'a TemplateContext,
    pub checkout: &'a Path,
    /// Output of `command` checks and the `health` step is appended here.
    pub log_path: &'a Path,
    /// Redaction and log bounds for the command checks' output.
    pub output: &'a super::OutputPolicy,
    /// Runs the component's `health` step (the component's executor, maybe a plugin).
    pub component: &'a mut dyn Executor,
    /// Runs the policy's `command` checks (the shell executor).
    pub local: &'a mut dyn Executor,
    pub clock: &'a dyn Clock,
    /// Extra environment for command checks and the health step (e.g. `GANTRY_REPO`).
    pub extra_env: &'a [(String, String)],
}

/// The health checks for one target after a deploy or reload, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthProbe {
    checks: Vec<Check>,
    interval: Duration,
    soak: Duration,
    failure_threshold: u32,
}

impl HealthProbe {
    /// Builds a probe from a policy's typed `health` settings and the component's `health` step
    /// (which runs first in every round, named `health step`). `step_timeout` bounds command
    /// checks and the step; http and prometheus checks default to 10s.
    pub fn new(health: &HealthSettings, component_step: Option<&Argv>, step_timeout: Duration) -> Self {
        let mut checks = Vec::new();
        if let Some(argv) = component_step {
            checks.push(Check {
                name: "health step".into(),
                timeout: step_timeout,
                kind: CheckKind::Step(argv.clone()),
            });
        }
        checks.extend(health.checks.iter().map(|c| Check {
            name: c.name.clone(),
            timeout: c.timeout_or(step_timeout),
            kind: CheckKind::Declared(c.probe.clone()),
        }));
        HealthProbe {
            checks,
            interval: health.interval,
            soak: health.soak,
            failure_threshold: health.failure_threshold.max(1),
        }
    }

    /// Whether there is nothing to check (no policy checks, no component `health` step).
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Consecutive failures of one check that make a target unhealthy.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Runs every check once: one analysis round (SPEC §8, continuous analysis), in order.
    ///
    /// # Errors
    /// As [`HealthProbe::run`]: a check that cannot even be attempted.
    pub fn round(&self, run: &mut ProbeRun<'_>) -> Result<Vec<crate::policy::analysis::CheckResult>, ExecutorError> {
        self.checks
            .iter()
            .map(|check| {
                let outcome = run_check(check, run)?;
                Ok(crate::policy::analysis::CheckResult {
                    check: check.name.clone(),
                    ok: outcome.ok,
                    message: outcome.message,
                })
            })
            .collect()
    }

    /// Runs the checks until the soak has passed (healthy) or one check failed
    /// `failureThreshold` times in a row (unhealthy). With no soak, one passing round suffices;
    /// a round with a failure below the threshold is retried after `interval`, so a probe never
    /// ends healthy on a round with a failing check.
    ///
    /// # Errors
    ///
    /// A check that cannot even be attempted: a url, query or argv that does not render, or an
    /// executor `Err` (see the [`Executor`] contract).
    pub fn run(&self, run: &mut ProbeRun<'_>) -> Result<HealthVerdict, ExecutorError> {
        if self.checks.is_empty() {
            return Ok(HealthVerdict::Healthy { rounds: 0 });
        }
        let started = run.clock.now();
        let mut consecutive = vec![0u32; self.checks.len()];
        let mut rounds = 0;
        loop {
            rounds += 1;
            let round_started = run.clock.now();
            let mut all_passed = true;
            for (check, failures) in self.checks.iter().zip(consecutive.iter_mut()) {
                let outcome = run_check(check, run)?;
                if outcome.ok {
                    *failures = 0;
                    continue;
                }
                all_passed = false;
                *failures += 1;
                // The rendered URL may carry a credential (`?token=…`): masked before it is
                // logged or recorded (issue #18).
                let message = crate::manifest::secrets::mask_url_credentials(&outcome.message);
                tracing::info!(check = %check.name, failures = *failures, threshold = self.failure_threshold, message = %message, "health check failed");
                if *failures >= self.failure_threshold {
                    return Ok(HealthVerdict::Unhealthy {
                        check: check.name.clone(),
                        message,
                        rounds,
                    });
                }
            }
            if all_passed && run.clock.now().saturating_duration_since(started) >= self.soak {
                return Ok(HealthVerdict::Healthy { rounds });
            }
            // Fixed rate from the start of the round, so slow checks do not stretch the soak.
            let wait = (round_started + self.interval).saturating_duration_since(run.clock.now());
            run.clock.sleep(wait);
        }
    }
}

fn run_check(check: &Check, run: &mut ProbeRun<'_>) -> Result<CheckOutcome, ExecutorError> {
    match &check.kind {
        CheckKind::Step(argv) => {
            let req = step_request(argv, check.timeout, run);
            Ok(step_outcome(run.component.run(&req)?))
        }
        CheckKind::Declared(Probe::Command(argv)) => {
            let req = step_request(argv, check.timeout, run);
            Ok(step_outcome(run.local.run(&req)?))
        }
        CheckKind::Declared(Probe::Http { url, expect, body }) => {
            let url = render_url(check, url, run.context)?;
            Ok(http_check(&url, *expect, body.as_deref(), check.timeout))
        }
        CheckKind::Declared(Probe::Prometheus {
            url,
            query,
            bounds,
            on_no_data,
        }) => {
            let url = render_url(check, url, run.context)?;
            let query = render_one(StepKind::Health, "query", query, run.context)?;
            Ok(prometheus_check(&url, &query, *bounds, *on_no_data, check.timeout))
        }
    }
}

fn step_request(argv: &Argv, timeout: Duration, run: &ProbeRun<'_>) -> StepRequest {
    StepRequest {
        kind: StepKind::Health,
        argv: argv.clone(),
        context: run.context.clone(),
        checkout: run.checkout.to_path_buf(),
        timeout,
        log_path: run.log_path.to_path_buf(),
        output: run.output.clone(),
        extra_env: run.extra_env.to_vec(),
    }
}

fn step_outcome(r: super::StepResult) -> CheckOutcome {
    // The last output line usually says why a check script failed.
    match r
        .output_tail
        .lines()
        .next_back()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != r.message)
    {
        Some(last) if !r.ok => CheckOutcome::fail(format!("{}: {}", r.message, truncate_for_message(last, 200))),
        _ => CheckOutcome {
            ok: r.ok,
            message: r.message,
        },
    }
}

fn render_url(check: &Check, url: &str, context: &TemplateContext) -> Result<String, ExecutorError> {
    let url = render_one(StepKind::Health, "url", url, context)?;
    if !url.starts_with("http://") {
        return Err(ExecutorError::InvalidCheck {
            check: check.name.clone(),
            problem: format!("url {url:?} must start with http:// (health checks do not speak TLS)"),
        });
    }
    Ok(url)
}

fn agent(timeout: Duration) -> ureq::Agent {
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
fn http_check(url: &str, expect: u16, body: Option<&str>, timeout: Duration) -> CheckOutcome {
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

fn transport_error(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {}", human_duration(timeout)),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The bounds a metric must stay within.
/// The metric range of a prometheus check (validation guarantees one end at least).
type Bounds = MetricBounds;

impl Bounds {
    fn check(self, value: f64) -> CheckOutcome {
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
fn prometheus_check(url: &str, query: &str, bounds: Bounds, on_no_data: OnNoData, timeout: Duration) -> CheckOutcome {
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
fn first_sample(text: &str) -> Result<Option<f64>, String> {
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::executor::testutil::context;
    use crate::executor::{RecordingExecutor, Reply};

    /// Serves each of `responses` (status, body) to one connection in turn, then stops.
    /// Returns the base URL and a handle yielding the request lines it received.
    fn serve(responses: Vec<(u16, &'static str)>) -> (String, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in responses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                // Skip headers up to the blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                seen.push(request_line.trim_end().to_owned());
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, handle)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn http_check_status_and_body() {
        let (url, server) = serve(vec![
            (200, "status: ready"),
            (500, "oops"),
            (200, "status: starting"),
            (200, ""),
        ]);
        let ok = http_check(&format!("{url}/health"), 200, Some("ready"), T);
        assert!(ok.ok, "{ok:?}");
        let err = http_check(&format!("{url}/health"), 200, Some("ready"), T);
        assert_eq!(
            err,
            CheckOutcome::fail(format!("GET {url}/health: status 500, expected 200"))
        );
        let mismatch = http_check(&format!("{url}/health"), 200, Some("ready"), T);
        assert!(!mismatch.ok);
        assert!(
            mismatch.message.ends_with("but the body does not contain \"ready\""),
            "{}",
            mismatch.message
        );
        assert!(http_check(&url, 200, None, T).ok);
        assert_eq!(server.join().unwrap()[0], "GET /health HTTP/1.1");
    }

    #[test]
    fn http_check_connection_refused_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let outcome = http_check(&url, 200, None, T);
        assert!(!outcome.ok);
        assert!(
            outcome.message.starts_with(&format!("GET {url}: ")),
            "{}",
            outcome.message
        );
    }

    fn vector(value: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"job":"billing"}},"value":[1767225600.0,"{value}"]}}]}}}}"#
        )
    }
    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

    #[test]
    fn prometheus_check_compares_the_first_sample() {
        let above = Box::leak(vector("0.08").into_boxed_str());
        let below = Box::leak(vector("0.01").into_boxed_str());
        let (url, server) = serve(vec![(200, above), (200, below), (200, EMPTY), (200, EMPTY)]);
        let max = Bounds {
            max: Some(0.05),
            min: None,
        };
        let q = "sum(rate(errors[5m])) / sum(rate(requests[5m]))";

        let high = prometheus_check(&url, q, max, OnNoData::Fail, T);
        assert_eq!(
            high,
            CheckOutcome::fail(format!("query {q:?}: value 0.08 is above max 0.05"))
        );
        let low = prometheus_check(&format!("{url}/"), q, max, OnNoData::Fail, T);
        assert_eq!(
            low,
            CheckOutcome::pass(format!("query {q:?}: value 0.01 is within bounds (max 0.05)"))
        );
        let none = prometheus_check(&url, q, max, OnNoData::Fail, T);
        assert!(!none.ok);
        assert!(none.message.contains("returned no data"), "{}", none.message);
        assert!(prometheus_check(&url, q, max, OnNoData::Pass, T).ok);

        let requests = server.join().unwrap();
        assert_eq!(
            requests[0],
            "GET /api/v1/query?query=sum(rate(errors%5B5m%5D))%20%2F%20sum(rate(requests%5B5m%5D)) HTTP/1.1"
        );
        assert!(
            requests[1].starts_with("GET /api/v1/query?"),
            "trailing slash doubled: {}",
            requests[1]
        );
    }

    #[test]
    fn prometheus_answers_are_parsed_strictly() {
        let cases: &[(&str, Result<Option<f64>, &str>)] = &[
            (
                r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"3"]}}"#,
                Ok(Some(3.0)),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"+Inf"]}]}}"#,
                Ok(Some(f64::INFINITY)),
            ),
            (EMPTY, Ok(None)),
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#,
                Err("bad_data: parse error at char 4"),
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                Err("expected an instant vector or scalar, got matrix"),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"abc"]}]}}"#,
                Err("sample value \"abc\" is not a number"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(first_sample(text), want.map_err(str::to_owned), "{text}");
        }
        assert!(
            first_sample("<html>")
                .unwrap_err()
                .starts_with("not a Prometheus API answer")
        );
        assert!(
            !Bounds {
                max: Some(1.0),
                min: None
            }
            .check(f64::NAN)
            .ok
        );
        assert_eq!(
            Bounds {
                max: None,
                min: Some(5.0)
            }
            .check(2.0)
            .message,
            "value 2 is below min 5"
        );
    }

    fn policy(failure_threshold: u32, soak: &str) -> HealthSettings {
        HealthSettings {
            checks: vec![crate::manifest::health::PolicyCheck {
                name: "smoke".into(),
                timeout: None,
                probe: Probe::Command(vec!["scripts/smoke.sh".into(), "{{ target.name }}".into()]),
            }],
            interval: Duration::from_secs(10),
            soak: crate::manifest::values::parse_duration(soak).unwrap(),
            failure_threshold,
            peers: false,
        }
    }

    fn probe(health: &HealthSettings, local: &mut RecordingExecutor, clock: &FakeClock) -> HealthVerdict {
        let ctx = context();
        let mut component = RecordingExecutor::new();
        let probe = HealthProbe::new(health, None, Duration::from_secs(60));
        probe
            .run(&mut ProbeRun {
                extra_env: &[],
                context: &ctx,
                checkout: Path::new("/co"),
                log_path: Path::new("/co/log"),
                output: &Default::default(),
                component: &mut component,
                local,
                clock,
            })
            .unwrap()
    }

    #[test]
    fn soak_two_failures_then_success_is_healthy() {
        let clock = FakeClock::new();
        let mut local = RecordingExecutor::new().fail_call(1, "502").fail_call(2, "502");
        let verdict = probe(&policy(3, "0s"), &mut local, &clock);
        assert_eq!(verdict, HealthVerdict::Healthy { rounds: 3 });
        assert_eq!(clock.elapsed(), Duration::from_secs(20));
        assert_eq!(local.recording().lines()[0], "health scripts/smoke.sh acme");
    }

    #[test]
    fn soak_three_consecutive_failures_is_unhealthy() {
        let clock = FakeClock::new();
        let mut local = RecordingExecutor::new().fail_kind(StepKind::Health, "connection refused");
        let verdict = probe(&policy(3, "2m"), &mut local, &clock);
        assert_eq!(
            verdict,
            HealthVerdict::Unhealthy {
                check: "smoke".into(),
                message: "connection refused".into(),
                rounds: 3
            }
        );
        assert_eq!(clock.elapsed(), Duration::from_secs(20));
    }

    #[test]
    fn soak_runs_checks_every_interval_until_it_has_passed() {
        let clock = FakeClock::new();
        // A failure in the middle resets the count; the soak still completes.
        let mut local = RecordingExecutor::new().fail_call(3, "blip").fail_call(4, "blip");
        let verdict = probe(&policy(3, "1m"), &mut local, &clock);
        assert_eq!(verdict, HealthVerdict::Healthy { rounds: 7 });
        assert_eq!(clock.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn no_soak_runs_checks_once() {
        let clock = FakeClock::new();
        let mut local = RecordingExecutor::new();
        assert_eq!(
            probe(&policy(1, "0s"), &mut local, &clock),
            HealthVerdict::Healthy { rounds: 1 }
        );
        assert_eq!(clock.elapsed(), Duration::ZERO);
        assert_eq!(local.recording().kinds().len(), 1);
    }

    #[test]
    fn component_health_step_runs_through_the_component_executor() {
        let clock = FakeClock::new();
        let ctx = context();
        let mut component = RecordingExecutor::new().on_kind(StepKind::Health, Reply::Fail("503".into()));
        let mut local = RecordingExecutor::new();
        let step = vec!["scripts/health.sh".to_owned(), "{{ target.name }}".to_owned()];
        let probe = HealthProbe::new(&HealthSettings::default(), Some(&step), Duration::from_secs(60));
        let verdict = probe
            .run(&mut ProbeRun {
                extra_env: &[],
                context: &ctx,
                checkout: Path::new("/co"),
                log_path: Path::new("/co/log"),
                output: &Default::default(),
                component: &mut component,
                local: &mut local,
                clock: &clock,
            })
            .unwrap();
        assert!(
            matches!(verdict, HealthVerdict::Unhealthy { ref check, .. } if check == "health step"),
            "{verdict:?}"
        );
        assert_eq!(component.recording().lines(), ["health scripts/health.sh acme"]);
        assert!(local.recording().steps().is_empty());
    }

    #[test]
    fn https_urls_are_refused_with_a_reason() {
        let mut h = policy(1, "0s");
        h.checks[0].probe = Probe::Http {
            url: "https://{{ target.vars.host }}/health".into(),
            expect: 200,
            body: None,
        };
        let clock = FakeClock::new();
        let ctx = context();
        let probe = HealthProbe::new(&h, None, T);
        let err = probe
            .run(&mut ProbeRun {
                extra_env: &[],
                context: &ctx,
                checkout: Path::new("/co"),
                log_path: Path::new("/co/log"),
                output: &Default::default(),
                component: &mut RecordingExecutor::new(),
                local: &mut RecordingExecutor::new(),
                clock: &clock,
            })
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"https://clinic-1.internal/health\" must start with http://"),
            "{err}"
        );
    }
}
