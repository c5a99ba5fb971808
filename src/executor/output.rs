//! Capturing a step's output: redacted as it streams, written to the step log as a bounded head
//! and tail (the middle of a huge output is dropped and counted), its end kept in memory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ExecutorError;
use crate::manifest::secrets::{Redactor, StreamRedactor};

/// How much of a step's output its log keeps, by default: the first and the last half of this.
pub const DEFAULT_MAX_STEP_LOG_BYTES: u64 = 8 << 20;
/// The most `[logs] max_step_bytes` may ask for: the tail half is held in memory while the step
/// runs, and the repository must not be able to make gantry hold more.
pub const MAX_STEP_LOG_BYTES_CEILING: u64 = 256 << 20;

/// What a step's output goes through before it is kept anywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPolicy {
    /// `[secrets]` values, replaced by `***` in the log and the tail as the output streams.
    pub redactor: Redactor,
    /// Log bytes kept per step: the first half as it comes, the last half at the end.
    pub max_log_bytes: u64,
}

impl Default for OutputPolicy {
    fn default() -> Self {
        OutputPolicy {
            redactor: Redactor::default(),
            max_log_bytes: DEFAULT_MAX_STEP_LOG_BYTES,
        }
    }
}

/// At most this many bytes of output are kept for the step result (and so for recorded state).
pub(crate) const TAIL_BYTES: usize = 4096;
/// …and at most this many lines.
pub(crate) const TAIL_LINES: usize = 40;

/// Opens (creating it and its directory) a step log for appending.
pub(crate) fn open_log(path: &Path) -> Result<File, ExecutorError> {
    let err = |source| ExecutorError::Log {
        path: path.to_path_buf(),
        source,
    };
    let open = || OpenOptions::new().create(true).append(true).open(path);
    match open() {
        // The directory is made only when missing: once per repository, not once per step.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            open().map_err(err)
        }
        other => other.map_err(err),
    }
}

/// Where output goes while a step runs. Cloning shares the sink, so stdout and stderr (and a
/// plugin's reader thread) interleave into one log and one tail, in the order chunks arrive.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    inner: Arc<Mutex<Sink>>,
}

#[derive(Default)]
struct Sink {
    log: Option<BoundedLog>,
    /// One redactor per stream, so bytes held back on one never mix with the other's.
    redact: [StreamRedactor; 2],
    /// Bytes kept from the end of the output; trimmed to `TAIL_BYTES` when read.
    tail: Vec<u8>,
    /// The same for stdout alone: an `observe` step reports its version there, and stderr
    /// chatter must not be mistaken for it.
    stdout_tail: Vec<u8>,
}

/// Which stream a reader copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// stdout alone (read separately only when a version is expected on it).
    Stdout,
    /// stderr, or stdout and stderr sharing one pipe.
    Other,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, Sink> {
        // A reader thread cannot panic while holding the lock (it only copies bytes), but if
        // one ever did, the output is still worth keeping.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts capturing for a new step: output goes to `log` under `policy`, the tail starts
    /// empty.
    pub(crate) fn begin(&self, log: File, policy: &OutputPolicy) {
        let mut sink = self.lock();
        sink.log = Some(BoundedLog::new(log, policy.max_log_bytes));
        sink.redact = [
            StreamRedactor::new(policy.redactor.clone()),
            StreamRedactor::new(policy.redactor.clone()),
        ];
        sink.tail.clear();
        sink.stdout_tail.clear();
    }

    /// Appends a line of gantry's own to the log (a header or footer), not to the tail. Output
    /// held back so far is written first, so the note comes after it.
    pub(crate) fn note(&self, line: &str) {
        let mut sink = self.lock();
        sink.release_held();
        // gantry's own lines may quote a rendered argv (a program that does not exist).
        let line = sink.redact[0].redactor().redact(line);
        if let Some(log) = sink.log.as_mut() {
            log.note(&line);
        }
    }

    /// Stops capturing: detaches the log (writing its kept tail) and returns the output's tail.
    pub(crate) fn end(&self) -> String {
        let mut sink = self.lock();
        sink.release_held();
        if let Some(log) = sink.log.take() {
            log.finish();
        }
        tail_text(&std::mem::take(&mut sink.tail))
    }

    /// The last non-empty line written to stdout so far, trimmed (call once the step is over:
    /// it releases what redaction held back).
    pub(crate) fn last_stdout_line(&self) -> Option<String> {
        let mut sink = self.lock();
        sink.release_held();
        let text = String::from_utf8_lossy(&sink.stdout_tail);
        text.lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_owned)
    }

    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut sink = self.lock();
        let released = sink.redact[stream as usize].push(bytes);
        sink.keep(stream, &released);
    }
}

impl Sink {
    /// Writes redacted bytes to the log and the tails.
    fn keep(&mut self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(log) = self.log.as_mut() {
            log.write(bytes);
        }
        keep_end(&mut self.tail, bytes);
        if stream == Stream::Stdout {
            keep_end(&mut self.stdout_tail, bytes);
        }
    }

    /// Releases the bytes each stream's redactor held back (the stream is over, or paused).
    fn release_held(&mut self) {
        for stream in [Stream::Stdout, Stream::Other] {
            let held = self.redact[stream as usize].finish();
            self.keep(stream, &held);
        }
    }
}

/// A step log that keeps the first half of its budget as output comes and the last half in
/// memory until the step ends; what falls between is counted and dropped, so a step printing
/// 1 GiB costs neither the disk nor gantry's memory more than the budget.
struct BoundedLog {
    file: File,
    /// Bytes still written straight to the file.
    head_left: u64,
    /// The end of the output past the head (at most `tail_cap` once trimmed).
    tail: Vec<u8>,
    tail_cap: usize,
    /// Bytes dropped from the middle.
    dropped: u64,
    budget: u64,
}

impl BoundedLog {
    fn new(file: File, budget: u64) -> BoundedLog {
        BoundedLog {
            file,
            head_left: budget / 2,
            tail: Vec::new(),
            tail_cap: usize::try_from(budget - budget / 2).unwrap_or(usize::MAX),
            dropped: 0,
            budget,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let head = bytes.len().min(usize::try_from(self.head_left).unwrap_or(usize::MAX));
        if head > 0 {
            // The log is a convenience for people; a full disk must not fail the step.
            let _ = self.file.write_all(&bytes[..head]);
            self.head_left -= head as u64;
        }
        let rest = &bytes[head..];
        if rest.is_empty() {
            return;
        }
        self.tail.extend_from_slice(rest);
        // Trim lazily (at twice the cap) so each byte is moved O(1) times on average.
        if self.tail.len() > 2 * self.tail_cap.max(1) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.tail.len() > self.tail_cap {
            let cut = self.tail.len() - self.tail_cap;
            self.dropped += cut as u64;
            self.tail.drain(..cut);
        }
    }

    /// Writes the kept tail (after a line counting what was dropped).
    fn flush_tail(&mut self) {
        self.trim();
        if self.dropped > 0 {
            let _ = write!(
                self.file,
                "\n# gantry: {} bytes of output omitted here (the log keeps the first and last {} of each step: [logs] max_step_bytes = {})\n",
                self.dropped,
                crate::render::sandbox::human_bytes(self.budget / 2),
                self.budget
            );
            self.dropped = 0;
        }
        let _ = self.file.write_all(&self.tail);
        self.tail.clear();
    }

    fn note(&mut self, line: &str) {
        self.flush_tail();
        let _ = writeln!(self.file, "# gantry: {line}");
    }

    fn finish(mut self) {
        self.flush_tail();
        let _ = self.file.flush();
    }
}

/// Appends `bytes`, keeping at least the last `TAIL_BYTES`. Trims lazily so a chatty step
/// costs amortised O(1) per byte.
fn keep_end(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(bytes);
    if buf.len() > 4 * TAIL_BYTES {
        let cut = buf.len() - TAIL_BYTES;
        buf.drain(..cut);
    }
}

/// The last `TAIL_LINES` lines within the last `TAIL_BYTES` bytes, as text. A cut at the front
/// is marked with `…`; bytes that are not UTF-8 (or a character cut in half) become `�`.
pub(crate) fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = body.split('\n').collect();
    let keep = lines.len().min(TAIL_LINES);
    let mut out = lines[lines.len() - keep..].join("\n");
    if start > 0 || keep < lines.len() {
        out.insert(0, '…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_marks_the_cut() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let tail = tail_text(text.as_bytes());
        assert!(tail.starts_with("…line 61\n"), "{tail}");
        assert!(tail.ends_with("line 100"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert_eq!(tail_text(b"short\n"), "short");
    }

    fn log_of(budget: u64, policy_redactor: Redactor, chunks: &[&[u8]]) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step.log");
        let capture = Capture::default();
        capture.begin(
            open_log(&path).unwrap(),
            &OutputPolicy {
                redactor: policy_redactor,
                max_log_bytes: budget,
            },
        );
        for chunk in chunks {
            capture.write(Stream::Other, chunk);
        }
        let tail = capture.end();
        (std::fs::read_to_string(&path).unwrap(), tail)
    }

    /// Issue #12: a step printing 1 GiB wrote a 1 GiB log. The log keeps a head and a tail.
    #[test]
    fn log_keeps_head_and_tail_and_counts_what_it_dropped() {
        let chunks: Vec<Vec<u8>> = (0..1000).map(|i| format!("line {i:04}\n").into_bytes()).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let (log, tail) = log_of(200, Redactor::default(), &refs);
        assert!(log.starts_with("line 0000\nline 0001\n"), "{log}");
        assert!(log.ends_with("line 0998\nline 0999\n"), "{log}");
        assert!(
            log.contains("# gantry: 9800 bytes of output omitted here (the log keeps the first and last 100 B of each step: [logs] max_step_bytes = 200)"),
            "{log}"
        );
        assert!(log.len() < 400, "{}", log.len());
        assert!(tail.ends_with("line 0999"), "{tail}");
        // Under the budget, nothing is dropped or marked.
        let (small, _) = log_of(200, Redactor::default(), &[b"short\n"]);
        assert_eq!(small, "short\n");
    }

    /// A secret split across two reads of the pipe is still redacted in the log and the tail.
    #[test]
    fn secret_split_across_chunks_is_redacted_in_log_and_tail() {
        let redactor = Redactor::new(["hunter2-secret".to_string()]);
        let (log, tail) = log_of(1 << 20, redactor, &[b"token=hunter2", b"-secret done\n"]);
        assert_eq!(log, "token=*** done\n");
        assert_eq!(tail, "token=*** done");
    }

    #[test]
    fn tail_is_bounded_in_bytes() {
        let long = "x".repeat(10 * TAIL_BYTES);
        let tail = tail_text(long.as_bytes());
        assert_eq!(tail.chars().count(), TAIL_BYTES + 1);
    }
}
