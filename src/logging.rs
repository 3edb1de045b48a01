//! The process's log: `tracing` events formatted as text or JSON lines on standard error,
//! written by a thread of their own in batches.
//!
//! A request's log line is only copied into memory by the request's thread, never written by
//! it: a request must not wait for a disk that a sync's writes keep busy. And the lines go out
//! together, one write at most every [`BATCH_INTERVAL`] under load: waking the writer thread for
//! every line would cost system calls per request (the wake-up and the write) that are a large
//! share of a cached page's time (figures in `docs/benchmarks.md`). When the log was
//! quiet a line is written at once. Nothing is dropped: with [`MAX_PENDING`] bytes waiting, a
//! caller waits for the writer.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::Settings;

/// The shortest time between two writes of the log.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(10);
/// How many bytes of lines may wait for the writer before callers wait too.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// Sets up logging (level from `RUST_LOG`, else info); the returned guard writes what is left
/// when it is dropped.
pub fn init(settings: &Settings) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    // Colours only for a person at a terminal: a log file or pipe gets plain text, and any ESC
    // in it is escaped.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = BatchedWriter::start(std::io::stderr());
    let writer = writer.keeping_escapes(ansi);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let _ = if settings.log_format == "json" { builder.json().try_init() } else { builder.try_init() };
    guard
}

/// Lines waiting for the writer thread, and what each side waits for.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer thread waits for a first line (callers then wake it; otherwise they don't,
    /// since a wake-up is a system call even when nobody waits).
    writer_idle: bool,
    /// Callers waiting for room.
    callers_waiting: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a line arrives for an idle writer, and at close.
    arrived: Condvar,
    /// Signalled when the writer took the pending lines, for callers waiting for room.
    taken: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A `tracing_subscriber` writer that hands lines to the writer thread.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
    /// Leave ESC as it is (a terminal's colours), or escape it like any control character.
    keep_escapes: bool,
}

impl BatchedWriter {
    /// Starts the writer thread, writing to `out`.
    pub fn start(mut out: impl Write + Send + 'static) -> (Self, LogGuard) {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let mut batch = Vec::new();
                loop {
                    let mut pending = s.lock();
                    while pending.lines.is_empty() && !pending.closed {
                        pending.writer_idle = true;
                        pending = s.arrived.wait(pending).unwrap_or_else(|e| e.into_inner());
                    }
                    let closed = pending.closed;
                    std::mem::swap(&mut batch, &mut pending.lines);
                    if pending.callers_waiting > 0 {
                        s.taken.notify_all();
                    }
                    drop(pending);
                    // Nothing to be done about a log that cannot be written.
                    let _ = out.write_all(&batch).and_then(|()| out.flush());
                    batch.clear();
                    if closed {
                        return;
                    }
                    std::thread::sleep(BATCH_INTERVAL);
                }
            })
            .expect("cannot start the log writer thread");
        (BatchedWriter { shared: shared.clone(), keep_escapes: false }, LogGuard { shared, thread: Some(thread) })
    }

    /// Whether ESC is written as it is: only for a terminal, whose colours the formatter writes
    /// with it. Elsewhere an ESC in a log line can only be text someone sent.
    pub fn keeping_escapes(self, keep: bool) -> Self {
        Self { keep_escapes: keep, ..self }
    }

    fn push(&self, line: &[u8]) {
        let mut pending = self.shared.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending.callers_waiting += 1;
            pending = self.shared.taken.wait(pending).unwrap_or_else(|e| e.into_inner());
            pending.callers_waiting -= 1;
        }
        pending.lines.extend_from_slice(line);
        if std::mem::take(&mut pending.writer_idle) {
            self.shared.arrived.notify_one();
        }
    }
}

/// Written through a reference, so that an event borrows the writer (no reference count
/// moved per line).
impl Write for &BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(&inert_line(buf, self.keep_escapes));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = &'a BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Characters that would forge or disguise log lines: line breaks (a second, fake line), other
/// control characters (ESC moves a terminal's cursor and hides text), and layout controls
/// (text shown in another order than stored). ESC may be kept for a terminal's colours.
fn is_deceptive(c: char, keep_escapes: bool) -> bool {
    (c.is_control() && c != '\t' && !(keep_escapes && c == '\u{1b}')) || crate::domain::text::is_layout_control(c)
}

/// One formatted event as it may be written: every deceptive character but the line's final
/// newline becomes a visible `\uXXXX` escape (also a valid escape inside a JSON string).
fn inert_line(buf: &[u8], keep_escapes: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(body) => (body, "\n"),
        None => (buf, ""),
    };
    // Most lines are printable ASCII throughout: nothing to escape, and no need to decode them.
    if body.iter().all(|&b| matches!(b, b' '..=b'~' | b'\t')) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let text = String::from_utf8_lossy(body);
    if !text.chars().any(|c| is_deceptive(c, keep_escapes)) && matches!(text, std::borrow::Cow::Borrowed(_)) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = String::with_capacity(buf.len() + 16);
    for c in text.chars() {
        if is_deceptive(c, keep_escapes) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push_str(end);
    std::borrow::Cow::Owned(out.into_bytes())
}

/// Writes the lines still waiting and stops the writer thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_breaks_and_bidi_overrides_are_escaped_but_the_final_newline_kept() {
        let forged = "INFO refused: access_denied\r\nINFO forged: admin signed in \u{202e}txt.exe\n";
        let out = String::from_utf8(super::inert_line(forged.as_bytes(), false).into_owned()).unwrap();
        assert_eq!(out, "INFO refused: access_denied\\u000d\\u000aINFO forged: admin signed in \\u202etxt.exe\n");
        let coloured = "INFO \u{1b}[32mok\u{1b}[0m\tdone\n";
        assert!(
            matches!(super::inert_line(coloured.as_bytes(), true), std::borrow::Cow::Borrowed(_)),
            "a terminal's colours"
        );
        let hidden =
            String::from_utf8(super::inert_line("a\u{1b}[8mhidden\u{2028}b\n".as_bytes(), false).into_owned()).unwrap();
        assert_eq!(hidden, "a\\u001b[8mhidden\\u2028b\n");
        let ascii_controls = super::inert_line(b"a\rb\x1b[8m\x00c\n", false);
        assert_eq!(ascii_controls.as_ref(), b"a\\u000db\\u001b[8m\\u0000c\n", "ASCII, but not printable");
        let plain = "INFO request method=GET path=/endpoints/7\tstatus=200\n";
        assert!(matches!(super::inert_line(plain.as_bytes(), false), std::borrow::Cow::Borrowed(_)));
        let (del, accented) = ("x\u{7f}y\n", "café\n");
        assert_eq!(super::inert_line(del.as_bytes(), false).as_ref(), b"x\\u007fy\n", "DEL is a control character");
        assert!(matches!(super::inert_line(accented.as_bytes(), false), std::borrow::Cow::Borrowed(_)));
    }

    use super::*;

    /// A shared buffer standing in for standard error, counting the writes it received.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_quiet_log_is_written_at_once_and_a_busy_one_in_batches_losing_nothing() {
        let sink = Sink::default();
        let (writer, guard) = BatchedWriter::start(sink.clone());
        (&writer).write_all(b"first\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "a single line is written without waiting for more");
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        (&w).write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let (text, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 1 + 4 * 5_000, "every line, whole");
        for t in 0..4 {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            assert_eq!(mine.len(), 5_000);
            assert!(mine.iter().enumerate().all(|(i, l)| *l == format!("thread {t} line {i}")), "in order");
        }
        assert!(writes < 1_000, "20,001 lines in {writes} writes");
    }
}
