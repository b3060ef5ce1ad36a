//! `siesta audit replay FILE`: the ingest path over a JSON-lines file, on one
//! core, with throughput and totals. What the benchmark and a curious admin run.
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::ingest::{Ingest, Tally};
use super::rules::Rules;
use crate::activity::{AllAwake, Reporter};

/// Bytes read per step; lines are never split across steps.
const CHUNK: usize = 4 << 20;

/// What a replay saw, and how fast.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub bytes: u64,
    pub tally: Tally,
    pub elapsed: Duration,
}

impl Report {
    pub fn events_per_second(&self) -> f64 {
        self.tally.total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events      {}", self.tally.total())?;
        writeln!(f, "counted     {}", self.tally.counted)?;
        writeln!(f, "ignored     {}", self.tally.ignored)?;
        writeln!(f, "invalid     {}", self.tally.invalid)?;
        writeln!(f, "bytes       {}", self.bytes)?;
        writeln!(f, "seconds     {:.3}", self.elapsed.as_secs_f64())?;
        writeln!(f, "events/s    {:.0}", self.events_per_second())?;
        write!(f, "MB/s        {:.1}", self.megabytes_per_second())
    }
}

/// Replay `reader` through the ingest with these rules; nothing is written anywhere.
pub fn replay(mut reader: impl Read, rules: Rules) -> crate::Result<Report> {
    let reporter = Reporter::new(Arc::new(AllAwake), None, None, Arc::default());
    let ingest = Ingest::new(rules, reporter);
    let started = tokio::time::Instant::now();
    let mut report = Report::default();
    let mut buf = vec![0u8; CHUNK];
    // Bytes at the start of `buf` carried over from the last step (a partial line).
    let mut carried = 0;
    loop {
        if carried == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = reader.read(&mut buf[carried..])?;
        report.bytes += n as u64;
        let filled = carried + n;
        if n == 0 {
            report.tally.add(ingest.lines(&buf[..filled]));
            break;
        }
        let cut = memchr::memrchr(b'\n', &buf[carried..filled]).map_or(0, |i| carried + i + 1);
        report.tally.add(ingest.lines(&buf[..cut]));
        buf.copy_within(cut..filled, 0);
        carried = filled - cut;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Replay a file.
pub fn replay_file(path: &Path, rules: Rules) -> crate::Result<Report> {
    let file = std::fs::File::open(path)
        .map_err(|e| crate::Error::Other(format!("{}: {e}", path.display())))?;
    replay(file, rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ingest::tests::line;

    #[test]
    fn replay_counts_every_line_across_chunk_boundaries() {
        let mut text = String::new();
        let mut n = 0;
        while text.len() < CHUNK * 2 + 1000 {
            let user = if n % 3 == 0 {
                "system:kube-scheduler"
            } else {
                "alice"
            };
            text += &line(
                &n.to_string(),
                user,
                "get",
                &format!("audit-r{}", n % 7),
                "2026-01-02T03:04:05Z",
            );
            text.push('\n');
            n += 1;
        }
        text += "{broken";
        let report = replay(text.as_bytes(), Rules::default()).unwrap();
        assert_eq!(report.tally.total(), n + 1);
        assert_eq!(report.tally.ignored, n.div_ceil(3));
        assert_eq!(report.tally.invalid, 1);
        assert_eq!(report.bytes, text.len() as u64);
        assert!(report.to_string().contains("MB/s"));
    }
}
