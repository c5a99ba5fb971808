//! Capturing a step's output: appended in full to the step log, its end kept in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use super::{ExecutorError, StepKind};

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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(err)
}

/// Where output goes while a step runs. Cloning shares the sink, so reader threads of stdout
/// and stderr interleave into one log and one tail, in the order chunks arrive.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    inner: Arc<Mutex<Sink>>,
}

#[derive(Default)]
struct Sink {
    log: Option<File>,
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

    /// Starts capturing for a new step: output goes to `log` and the tail starts empty.
    pub(crate) fn begin(&self, log: File) {
        let mut sink = self.lock();
        sink.log = Some(log);
        sink.tail.clear();
        sink.stdout_tail.clear();
    }

    /// Appends a line of gantry's own to the log (a header or footer), not to the tail.
    pub(crate) fn note(&self, line: &str) {
        if let Some(log) = self.lock().log.as_mut() {
            // The log is a convenience for people; a full disk must not fail the step.
            let _ = writeln!(log, "# gantry: {line}");
        }
    }

    /// Stops capturing: detaches the log and returns the output's tail.
    pub(crate) fn end(&self) -> String {
        let mut sink = self.lock();
        if let Some(mut log) = sink.log.take() {
            let _ = log.flush();
        }
        tail_text(&std::mem::take(&mut sink.tail))
    }

    /// The last non-empty line written to stdout so far, trimmed.
    pub(crate) fn last_stdout_line(&self) -> Option<String> {
        let sink = self.lock();
        let text = String::from_utf8_lossy(&sink.stdout_tail);
        text.lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_owned)
    }

    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut sink = self.lock();
        if let Some(log) = sink.log.as_mut() {
            let _ = log.write_all(bytes);
        }
        keep_end(&mut sink.tail, bytes);
        if stream == Stream::Stdout {
            keep_end(&mut sink.stdout_tail, bytes);
        }
    }

    /// Copies `reader` into this capture on a thread until EOF, then sends on `done`.
    pub(crate) fn spawn_reader(
        &self,
        step: StepKind,
        stream: Stream,
        mut reader: impl Read + Send + 'static,
        done: Sender<()>,
    ) -> Result<(), ExecutorError> {
        let capture = self.clone();
        thread::Builder::new()
            .name("gantry-step-output".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => capture.write(stream, &buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = done.send(());
            })
            .map(|_| ())
            .map_err(|source| ExecutorError::Io {
                step,
                what: "start an output reader thread",
                source,
            })
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

    #[test]
    fn tail_is_bounded_in_bytes() {
        let long = "x".repeat(10 * TAIL_BYTES);
        let tail = tail_text(long.as_bytes());
        assert_eq!(tail.chars().count(), TAIL_BYTES + 1);
    }
}
