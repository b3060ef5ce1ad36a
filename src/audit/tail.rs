//! Follows an audit log file like `tail -F`: lines appended are ingested,
//! a rename rotation is followed to the new file once the old one is read to
//! its end, a truncated file is read again from its start, and a partial last
//! line waits for its newline.
//!
//! After a restart, old lines are not counted again: with a state file, the
//! follower resumes at the saved offset of the same file (device and inode);
//! without one, or when the file changed, it reads the file from its start but
//! ignores events older than `not_before` (the process start minus a margin).
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ingest::{Ingest, Tally};

/// How often the file is looked at when nothing new was read.
pub const POLL: Duration = Duration::from_millis(250);
/// Bytes read per step.
const CHUNK: usize = 1 << 20;
/// A "line" longer than this without a newline is dropped as invalid.
const MAX_LINE: usize = 16 << 20;

/// Where and how to follow.
#[derive(Clone, Debug)]
pub struct Options {
    pub path: PathBuf,
    /// Saves the position (device, inode, offset) so a restart resumes there.
    pub state_file: Option<PathBuf>,
    /// Events older than this are not counted (used when there is no saved position).
    pub not_before: Option<DateTime<Utc>>,
}

/// The identity of a file across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The follower's state; [`Tailer::step`] does one round of reading, without sleeping.
pub struct Tailer {
    options: Options,
    file: Option<(File, FileId)>,
    /// Offset just past the last complete line handed to the ingest.
    offset: u64,
    partial: Vec<u8>,
    /// The first file opened may resume from the state file.
    resumed: bool,
    saved: Option<(FileId, u64)>,
    buf: Vec<u8>,
}

impl Tailer {
    pub fn new(options: Options) -> Tailer {
        Tailer {
            options,
            file: None,
            offset: 0,
            partial: Vec::new(),
            resumed: false,
            saved: None,
            buf: vec![0; CHUNK],
        }
    }

    /// Read what is new; returns what was ingested. Missing files are not errors.
    pub fn step(&mut self, ingest: &Ingest) -> io::Result<Tally> {
        let mut tally = Tally::default();
        if self.file.is_none() && !self.open()? {
            return Ok(tally);
        }
        tally.add(self.read_to_end(ingest)?);
        // The file is read to its end: has the path moved on, or the file shrunk?
        let Some((file, id)) = &self.file else {
            return Ok(tally);
        };
        match std::fs::metadata(&self.options.path) {
            Ok(meta) if FileId::of(&meta) != *id => {
                // Rotated: what the old file ends with will never complete.
                if !self.partial.is_empty() {
                    tally.invalid += 1;
                    self.partial.clear();
                }
                self.file = None;
                self.offset = 0;
                if self.open()? {
                    tally.add(self.read_to_end(ingest)?);
                }
            }
            Ok(_) if file.metadata()?.len() < self.offset + self.partial.len() as u64 => {
                tracing::info!(path = %self.options.path.display(), "audit log truncated; reading it from the start");
                self.partial.clear();
                self.offset = 0;
                if let Some((file, _)) = &mut self.file {
                    file.seek(SeekFrom::Start(0))?;
                }
                tally.add(self.read_to_end(ingest)?);
            }
            _ => {}
        }
        self.save_state();
        Ok(tally)
    }

    /// Open the path; false when it does not exist (yet).
    fn open(&mut self) -> io::Result<bool> {
        let mut file = match File::open(&self.options.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        self.offset = 0;
        if !self.resumed {
            self.resumed = true;
            if let Some((saved_id, offset)) =
                self.options.state_file.as_deref().and_then(load_state)
                && saved_id == id
                && offset <= meta.len()
            {
                self.offset = offset;
                self.options.not_before = None;
            }
        } else {
            // Every file after the first is new: all of it counts.
            self.options.not_before = None;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        self.file = Some((file, id));
        self.partial.clear();
        Ok(true)
    }

    fn read_to_end(&mut self, ingest: &Ingest) -> io::Result<Tally> {
        let mut tally = Tally::default();
        let Some((file, _)) = &mut self.file else {
            return Ok(tally);
        };
        loop {
            let n = file.read(&mut self.buf)?;
            if n == 0 {
                return Ok(tally);
            }
            let chunk = &self.buf[..n];
            let Some(last_newline) = memchr::memrchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                if self.partial.len() > MAX_LINE {
                    self.offset += self.partial.len() as u64;
                    self.partial.clear();
                    tally.invalid += 1;
                }
                continue;
            };
            let (complete, rest) = chunk.split_at(last_newline + 1);
            let consumed = (self.partial.len() + complete.len()) as u64;
            if self.partial.is_empty() {
                tally.add(ingest.lines_since(complete, self.options.not_before));
            } else {
                self.partial.extend_from_slice(complete);
                tally.add(ingest.lines_since(&self.partial, self.options.not_before));
                self.partial.clear();
            }
            self.offset += consumed;
            self.partial.extend_from_slice(rest);
        }
    }

    fn save_state(&mut self) {
        let (Some(path), Some((_, id))) = (&self.options.state_file, &self.file) else {
            return;
        };
        let now = (*id, self.offset);
        if self.saved == Some(now) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let text = format!("{} {} {}\n", id.dev, id.ino, self.offset);
        match std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
            Ok(()) => self.saved = Some(now),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the audit log position")
            }
        }
    }
}

fn load_state(path: &Path) -> Option<(FileId, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    let (dev, ino, offset) = (fields.next()??, fields.next()??, fields.next()??);
    Some((FileId { dev, ino }, offset))
}

/// Follow until the task is dropped.
pub async fn follow(options: Options, ingest: Ingest) -> crate::Result<()> {
    tracing::info!(path = %options.path.display(), "following the audit log");
    let mut tailer = Tailer::new(options);
    loop {
        let (back, result) = {
            let ingest = ingest.clone();
            tokio::task::spawn_blocking(move || {
                let r = tailer.step(&ingest);
                (tailer, r)
            })
            .await
            .map_err(|e| crate::Error::Other(format!("audit log follower: {e}")))?
        };
        tailer = back;
        match result {
            Ok(t) if t.total() > 0 => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "audit log read failed; retrying");
                ingest.metrics().error(crate::metrics::ErrorKind::AuditBody);
                tailer.file = None;
                tailer.partial.clear();
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ingest::tests::{ingest, line};
    use std::io::Write;

    fn now_line(id: &str, namespace: &str) -> String {
        line(id, "alice", "get", namespace, &Utc::now().to_rfc3339()) + "\n"
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn options(path: &Path) -> Options {
        Options {
            path: path.to_path_buf(),
            state_file: None,
            not_before: None,
        }
    }

    #[test]
    fn appended_lines_are_read_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let (ingest, _) = ingest();
        let mut t = Tailer::new(options(&log));
        assert_eq!(t.step(&ingest).unwrap().total(), 0, "no file yet");
        append(&log, &now_line("1", "audit-t1"));
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
        let second = now_line("2", "audit-t1");
        let (head, tail) = second.split_at(100);
        append(&log, head);
        assert_eq!(t.step(&ingest).unwrap().total(), 0, "a partial line waits");
        append(&log, tail);
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
        assert_eq!(t.step(&ingest).unwrap().total(), 0);
    }

    #[test]
    fn rename_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let (ingest, _) = ingest();
        let mut t = Tailer::new(options(&log));
        append(&log, &now_line("1", "audit-t2"));
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
        // The writer adds a last line, then the file is renamed and a new one begun.
        append(&log, &now_line("2", "audit-t2"));
        std::fs::rename(&log, dir.path().join("audit-1.log")).unwrap();
        assert_eq!(
            t.step(&ingest).unwrap().counted,
            1,
            "the old file's last line, path missing meanwhile"
        );
        append(&log, &now_line("3", "audit-t2"));
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
        append(&log, &now_line("4", "audit-t2"));
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
    }

    #[test]
    fn a_truncated_file_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let (ingest, _) = ingest();
        let mut t = Tailer::new(options(&log));
        append(
            &log,
            &(now_line("1", "audit-t3") + &now_line("2", "audit-t3")),
        );
        assert_eq!(t.step(&ingest).unwrap().counted, 2);
        std::fs::write(&log, now_line("3", "audit-t3")).unwrap();
        assert_eq!(t.step(&ingest).unwrap().counted, 1);
    }

    #[test]
    fn a_restart_with_a_state_file_does_not_count_old_lines_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let state = dir.path().join("audit.pos");
        let opts = Options {
            state_file: Some(state.clone()),
            ..options(&log)
        };
        append(&log, &now_line("1", "audit-t4"));
        let (ingest1, _) = ingest();
        assert_eq!(Tailer::new(opts.clone()).step(&ingest1).unwrap().counted, 1);
        append(&log, &now_line("2", "audit-t4"));
        let (ingest2, _) = ingest();
        assert_eq!(
            Tailer::new(opts.clone()).step(&ingest2).unwrap().counted,
            1,
            "only the new line"
        );
        // Another file at the same path: the saved position is not its own.
        std::fs::remove_file(&log).unwrap();
        append(&log, &now_line("3", "audit-t4"));
        let (ingest3, _) = ingest();
        assert_eq!(Tailer::new(opts).step(&ingest3).unwrap().counted, 1);
    }

    #[test]
    fn without_a_state_file_old_events_are_skipped_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(
            &log,
            &line("old", "alice", "get", "audit-t5", "2020-01-01T00:00:00Z"),
        );
        append(&log, "\n");
        append(&log, &now_line("new", "audit-t5"));
        let (ingest, _) = ingest();
        let opts = Options {
            not_before: Some(Utc::now() - chrono::Duration::minutes(1)),
            ..options(&log)
        };
        assert_eq!(
            Tailer::new(opts).step(&ingest).unwrap(),
            Tally {
                counted: 1,
                ignored: 1,
                invalid: 0
            }
        );
    }

    #[tokio::test]
    async fn follow_picks_up_lines_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let (ingest, reporter) = ingest();
        let task = tokio::spawn(follow(options(&log), ingest));
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&log, &now_line("1", "audit-t6"));
        let mut seen = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen |= reporter.seen("audit-t6").is_some();
        }
        task.abort();
        assert!(seen);
    }
}
