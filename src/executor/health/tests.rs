//! Health check tests: the soak loop on a fake clock, and real HTTP and Prometheus-shaped
//! answers from a loopback server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use super::requests::{Bounds, first_sample};
use super::*;
use crate::executor::testutil::context;
use crate::executor::{RecordingExecutor, Reply};
use crate::manifest::OnNoData;

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

/// The expected body is a template (issue #16): a version page must show the version being
/// deployed, not a fixed string.
#[test]
fn http_check_body_is_rendered_with_the_step_context() {
    let (url, server) = serve(vec![(200, "running 2.0.0"), (200, "running 1.2.0")]);
    let mut health = policy(1, "0s");
    health.checks[0].probe = Probe::Http {
        url: format!("{url}/version"),
        expect: 200,
        body: Some("running {{ version }}".into()),
    };
    let clock = FakeClock::new();
    let healthy = probe(&health, &mut RecordingExecutor::new(), &clock);
    assert_eq!(healthy, HealthVerdict::Healthy { rounds: 1 });
    let stale = probe(&health, &mut RecordingExecutor::new(), &clock);
    assert!(
        matches!(&stale, HealthVerdict::Unhealthy { message, .. } if message.ends_with("but the body does not contain \"running 2.0.0\"")),
        "{stale:?}"
    );
    server.join().unwrap();
}
