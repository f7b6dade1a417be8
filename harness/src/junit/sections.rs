//! A run log cut into the sections of its tests. Tests run one after another, and the harness
//! brackets each with `--- start PATH (n/N)` and `--- end PATH STATUS …` (see `runner/execute.rs`
//! and the line format in `logs.rs`); every line between belongs to that test — its `out`/`err`
//! lines, the harness's lines about it, and the lines services print meanwhile. The other lines
//! (phases, services before and after, the run's end) belong to the run.
//!
//! A section keeps at most [`MAX_SECTION_BYTES`] of its lines, the last ones (where a failure
//! shows), and says how much it left out: a CI report must stay readable however much a test
//! prints; the whole log stays at `GET /api/runs/{id}/log`.

use std::{collections::VecDeque, io::BufRead};

/// Most bytes of log lines kept per section.
pub(super) const MAX_SECTION_BYTES: usize = 1 << 20;

/// The last lines of one section of a run log, and how many came before them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Section {
    lines: VecDeque<String>,
    bytes: usize,
    omitted_lines: u64,
    omitted_bytes: u64,
    /// The first harness line saying `error: …` (why a test could not be started).
    pub(super) first_error: Option<String>,
    /// The last harness line but the run's `run N STATUS` (for the run: what ended it).
    pub(super) last_harness_line: Option<String>,
}

impl Section {
    fn push(&mut self, line: &str, cap: usize) {
        if let Some((tag, text)) = tag_and_text(line) {
            if tag == "---" {
                if self.first_error.is_none() && text.starts_with("error: ") {
                    self.first_error = Some(text.to_owned());
                }
                if !is_run_end(text) {
                    self.last_harness_line = Some(text.to_owned());
                }
            }
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_owned());
        while self.bytes > cap && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
                self.omitted_lines += 1;
                self.omitted_bytes += old.len() as u64 + 1;
            }
        }
    }

    /// The section as text, one log line per line, after a note of what was left out.
    pub(super) fn text(&self) -> String {
        let mut text = String::with_capacity(self.bytes + 128);
        if self.omitted_lines > 0 {
            text.push_str(&format!(
                "[{} earlier line(s), {} bytes, left out: the whole log is at GET /api/runs/ID/log]\n",
                self.omitted_lines, self.omitted_bytes
            ));
        }
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Its last `n` lines.
    pub(super) fn tail(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        let mut text = String::new();
        for line in self.lines.iter().skip(skip) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// A run log's sections: one per test, by index, and the run's own lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Sections {
    pub(super) tests: Vec<Section>,
    pub(super) run: Section,
}

/// Whether `text` is the run's last line, `run N STATUS`.
fn is_run_end(text: &str) -> bool {
    let mut words = text.split(' ');
    words.next() == Some("run")
        && words.next().is_some_and(|n| n.parse::<i64>().is_ok())
        && words
            .next()
            .and_then(crate::model::RunStatus::parse)
            .is_some()
        && words.next().is_none()
}

/// `TIMESTAMP TAG TEXT` → `(TAG, TEXT)`.
fn tag_and_text(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(' ')?;
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

/// Which test a `--- start PATH (n/N)` line starts, if it is one for a test of `tests`.
fn started(text: &str, tests: &[String]) -> Option<usize> {
    let rest = text.strip_prefix("start ")?;
    let (path, counter) = rest.rsplit_once(" (")?;
    let (n, total) = counter.strip_suffix(')')?.split_once('/')?;
    let (n, total) = (n.parse::<usize>().ok()?, total.parse::<usize>().ok()?);
    (total == tests.len() && n >= 1 && tests.get(n - 1).is_some_and(|t| t == path)).then(|| n - 1)
}

/// Cuts the log read from `log` into the sections of `tests` (the run's test paths, in order),
/// keeping at most `cap` bytes of each.
pub(super) fn split(log: impl BufRead, tests: &[String], cap: usize) -> std::io::Result<Sections> {
    let mut sections = Sections {
        tests: vec![Section::default(); tests.len()],
        run: Section::default(),
    };
    let mut current: Option<usize> = None;
    for line in log.split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let harness_text = tag_and_text(&line)
            .filter(|(tag, _)| *tag == "---")
            .map(|(_, text)| text);
        if let Some(i) = harness_text.and_then(|text| started(text, tests)) {
            // A start without the previous test's end (the server died under it) closes it.
            current = Some(i);
            continue;
        }
        match current {
            Some(i) => {
                let ends = harness_text
                    .and_then(|text| text.strip_prefix("end "))
                    .and_then(|rest| rest.strip_prefix(tests[i].as_str()))
                    .is_some_and(|rest| rest.starts_with(' '));
                if ends {
                    current = None;
                } else {
                    sections.tests[i].push(&line, cap);
                }
            }
            None => sections.run.push(&line, cap),
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    const LOG: &str = "\
2026-11-24T08:47:45.870Z --- phase preparation: 1 test(s) that start the work
2026-11-24T08:47:45.873Z --- start a.sh (1/2)
2026-11-24T08:47:45.877Z out hello --- start b.sh (2/2)
2026-11-24T08:47:45.877Z err a warning
2026-11-24T08:47:45.877Z --- end a.sh passed exit=0 in 0.004s
2026-11-24T08:47:45.878Z sut/out between tests
2026-11-24T08:47:45.879Z --- start b.sh (2/2)
2026-11-24T08:47:45.879Z --- error: b.sh is no longer in the catalog
2026-11-24T08:47:45.880Z --- end b.sh error exit=- in 0.000s
2026-11-24T08:47:45.881Z --- run 1 error
";

    #[test]
    fn each_test_gets_the_lines_between_its_start_and_end_and_the_run_keeps_the_rest() {
        let s = split(LOG.as_bytes(), &paths(&["a.sh", "b.sh"]), MAX_SECTION_BYTES).expect("split");
        assert_eq!(
            s.tests[0].text(),
            "2026-11-24T08:47:45.877Z out hello --- start b.sh (2/2)\n\
             2026-11-24T08:47:45.877Z err a warning\n"
        );
        assert_eq!(
            s.tests[1].first_error.as_deref(),
            Some("error: b.sh is no longer in the catalog")
        );
        assert!(
            s.run.text().contains("sut/out between tests"),
            "{}",
            s.run.text()
        );
        assert!(
            s.run.text().contains("phase preparation"),
            "{}",
            s.run.text()
        );
        assert_eq!(
            s.run.last_harness_line.as_deref(),
            Some("phase preparation: 1 test(s) that start the work")
        );
    }

    #[test]
    fn a_test_that_never_ended_keeps_its_lines_up_to_the_next_start() {
        let log = "T --- start a.sh (1/2)\nT out one\nT --- start a.sh (2/2)\nT out two\n";
        let s = split(log.as_bytes(), &paths(&["a.sh", "a.sh"]), MAX_SECTION_BYTES).expect("split");
        assert_eq!(s.tests[0].text(), "T out one\n");
        assert_eq!(s.tests[1].text(), "T out two\n");
    }

    #[test]
    fn a_long_section_keeps_its_last_lines_and_says_how_many_it_left_out() {
        let mut log = String::from("T --- start a.sh (1/1)\n");
        for i in 0..100 {
            log.push_str(&format!("T out line {i:03}\n"));
        }
        let s = split(log.as_bytes(), &paths(&["a.sh"]), 10 * 15).expect("split");
        let text = s.tests[0].text();
        assert!(
            text.starts_with("[90 earlier line(s), 1350 bytes, left out"),
            "{text}"
        );
        assert!(text.ends_with("T out line 099\n"), "{text}");
        assert_eq!(s.tests[0].tail(1), "T out line 099\n");
    }
}
