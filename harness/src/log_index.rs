//! Where the lines of a run's log are: a sparse index of line starts (every [`STRIDE`]th line) and
//! the outline of the harness's `--- start`/`--- end` lines (and of each script's `--- script NAME
//! starts:` / `--- script NAME STATE exit=N in Xs` lines), built by one scan of the file and
//! extended by scanning only what was appended since. With it a range of lines, the tail, or the
//! line of a search hit is found by reading at most [`STRIDE`] lines, not the whole log — what lets
//! the web UI open a 60 MB log at its end.
//!
//! Indexes are kept per run in a small cache ([`LogIndexes`]); a scan is cheap enough (memchr, one
//! pass) that an evicted index is simply rebuilt.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::Path,
    sync::Arc,
};

use parking_lot::Mutex;
use serde::Serialize;

/// Every how many lines the index keeps a start: reading a range first skips at most this many
/// lines (about 60 KB of a typical log).
pub(crate) const STRIDE: u64 = 1024;

/// Index of one log file (complete lines only: a line still being written is not counted).
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    /// `marks[k]` is the byte where line `k * STRIDE` starts (0-based lines).
    marks: Vec<u64>,
    /// Complete lines in `[0, bytes)`.
    lines: u64,
    /// End of the last complete line scanned: the next scan starts here.
    bytes: u64,
    /// One entry per `--- start` (or `--- script NAME starts:`) line, closed by its end line.
    sections: Vec<Section>,
}

/// What a section of the log is the part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SectionKind {
    /// A test: from its `--- start PATH (i/n)` line to its `--- end PATH STATUS exit=N in Xs`.
    Test,
    /// A script of the run's `eventual.toml` (a build step, a service, a cleanup): from its
    /// `--- script NAME starts: COMMAND` line to its `--- script NAME STATE exit=N in Xs` line.
    /// A service runs beside the tests, so its section holds theirs.
    Script,
}

/// A test's or a script's part of the log, from its start line to its end line.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Section {
    /// A test or a script.
    pub(crate) kind: SectionKind,
    /// The test's path, or the script's name.
    pub(crate) path: String,
    /// 0-based line of `--- start`.
    pub(crate) start: u64,
    /// 0-based line of `--- end`; `None` while the test runs (or if the run was cut short).
    pub(crate) end: Option<u64>,
    /// The test's status (a script's state) as the end line gives it.
    pub(crate) status: Option<String>,
    /// The exit code (`None` for `exit=-`).
    pub(crate) exit_code: Option<i64>,
    /// Seconds the test took.
    pub(crate) duration_s: Option<f64>,
}

/// What the harness's own lines look like from their 24th byte: the timestamp
/// (`2026-11-24T08:47:45.873Z`) ends there, then the tag `---`.
const HARNESS_START: &[u8] = b"Z --- start ";
const HARNESS_END: &[u8] = b"Z --- end ";
const HARNESS_SCRIPT: &[u8] = b"Z --- script ";
const TIMESTAMP_LEN: usize = 23;

impl LineIndex {
    /// Complete lines in the log when last refreshed.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// The sections found so far.
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Scans what was appended to `file` since the last refresh (everything, if the file shrank:
    /// it was replaced).
    pub(crate) fn refresh(&mut self, file: &mut File) -> io::Result<()> {
        let len = file.metadata()?.len();
        if len < self.bytes {
            *self = Self::default();
        }
        if self.marks.is_empty() {
            self.marks.push(0);
        }
        if len == self.bytes {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.bytes))?;
        let mut reader = file.take(len - self.bytes);
        let mut buf = vec![0u8; 1 << 20];
        // `carry` bytes at the front of `buf` are the start of a line the last block cut.
        let mut carry = 0usize;
        loop {
            let n = reader.read(&mut buf[carry..])?;
            if n == 0 {
                return Ok(());
            }
            let filled = carry + n;
            let mut line_start = 0usize;
            for nl in memchr::memchr_iter(b'\n', &buf[..filled]) {
                self.line(&buf[line_start..nl]);
                line_start = nl + 1;
            }
            carry = filled - line_start;
            buf.copy_within(line_start..filled, 0);
            if carry == buf.len() {
                // One line longer than the buffer: grow it rather than cut the line.
                buf.resize(buf.len() * 2, 0);
            }
        }
    }

    /// Takes one complete line (without its `\n`) that starts at `self.bytes`.
    fn line(&mut self, text: &[u8]) {
        let number = self.lines;
        self.lines += 1;
        self.bytes += text.len() as u64 + 1;
        if self.lines % STRIDE == 0 {
            self.marks.push(self.bytes);
        }
        let Some(rest) = text.get(TIMESTAMP_LEN..) else {
            return;
        };
        if let Some(what) = rest.strip_prefix(HARNESS_START) {
            // `PATH (i/n)`
            let what = String::from_utf8_lossy(what);
            let path = what.rsplit_once(" (").map_or(&*what, |(p, _)| p);
            self.sections.push(Section {
                kind: SectionKind::Test,
                path: path.to_owned(),
                start: number,
                end: None,
                status: None,
                exit_code: None,
                duration_s: None,
            });
        } else if let Some(what) = rest.strip_prefix(HARNESS_END) {
            // `PATH STATUS exit=N in Xs`, read from the right (a path may hold spaces).
            let what = String::from_utf8_lossy(what);
            let mut words = what.rsplitn(5, ' ');
            let (Some(secs), Some("in"), Some(exit), Some(status), Some(path)) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return;
            };
            self.close(SectionKind::Test, path, number, status, exit, secs);
        } else if let Some(what) = rest.strip_prefix(HARNESS_SCRIPT) {
            // `NAME starts: COMMAND` or `NAME STATE exit=N in Xs` (a name has no spaces); other
            // lines about a script (`NAME is ready after Xs`, `NAME skipped: why`) are neither.
            let what = String::from_utf8_lossy(what);
            let Some((name, tail)) = what.split_once(' ') else {
                return;
            };
            if tail.starts_with("starts: ") {
                self.sections.push(Section {
                    kind: SectionKind::Script,
                    path: name.to_owned(),
                    start: number,
                    end: None,
                    status: None,
                    exit_code: None,
                    duration_s: None,
                });
                return;
            }
            let words: Vec<&str> = tail.split(' ').collect();
            if let [state, exit, "in", secs] = words[..]
                && exit.starts_with("exit=")
            {
                self.close(SectionKind::Script, name, number, state, exit, secs);
            }
        }
    }

    /// Closes the newest open section of `kind` named `path` at line `number`.
    fn close(
        &mut self,
        kind: SectionKind,
        path: &str,
        number: u64,
        status: &str,
        exit: &str,
        secs: &str,
    ) {
        if let Some(section) = self
            .sections
            .iter_mut()
            .rev()
            .find(|s| s.end.is_none() && s.kind == kind && s.path == path)
        {
            section.end = Some(number);
            section.status = Some(status.to_owned());
            section.exit_code = exit.strip_prefix("exit=").and_then(|c| c.parse().ok());
            section.duration_s = secs.strip_suffix('s').and_then(|s| s.parse().ok());
        }
    }

    /// The byte where 0-based line `line` starts; the end of the indexed lines for a line past
    /// them.
    pub(crate) fn start_of(&self, file: &mut File, line: u64) -> io::Result<u64> {
        if line >= self.lines {
            return Ok(self.bytes);
        }
        let mark = self.marks[(line / STRIDE) as usize];
        let mut skip = line % STRIDE;
        if skip == 0 {
            return Ok(mark);
        }
        file.seek(SeekFrom::Start(mark))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = mark;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                // Cannot happen for an indexed line unless the file was replaced meanwhile.
                return Ok(self.bytes);
            }
            for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
                skip -= 1;
                if skip == 0 {
                    return Ok(pos + nl as u64 + 1);
                }
            }
            pos += n as u64;
        }
    }

    /// Bytes `[start, end)` of lines `first..first + count` (clamped to the indexed lines).
    pub(crate) fn byte_range(
        &self,
        file: &mut File,
        first: u64,
        count: u64,
    ) -> io::Result<(u64, u64)> {
        let start = self.start_of(file, first)?;
        let end = self.start_of(file, first.saturating_add(count))?;
        Ok((start, end))
    }

    /// The end of the indexed lines.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Lines that contain `needle`, in the complete lines of `file` up to `end`.
#[derive(Debug, Serialize)]
pub(crate) struct SearchHits {
    /// Matching lines (0-based), at most the limit asked for.
    pub(crate) matches: Vec<u64>,
    /// How many lines match in all.
    pub(crate) count: u64,
    /// `count` is more than `matches` holds.
    pub(crate) truncated: bool,
}

/// How a search finds its text: byte for byte, or ignoring case — ASCII text in a copy of each
/// block in lower case (as fast as a byte-for-byte search), other text by Unicode simple case
/// folding (as a browser's `RegExp` with the `iu` flags does, so the viewer highlights what was
/// counted).
enum Finder<'a> {
    Exact(memchr::memmem::Finder<'a>),
    AsciiFolded(memchr::memmem::Finder<'static>),
    Folded(regex::bytes::Regex),
}

impl<'a> Finder<'a> {
    fn new(needle: &'a str, ignore_case: bool) -> Self {
        if ignore_case && needle.is_ascii() {
            let lower = needle.to_ascii_lowercase();
            return Self::AsciiFolded(memchr::memmem::Finder::new(lower.as_bytes()).into_owned());
        }
        if ignore_case {
            let folded = regex::bytes::RegexBuilder::new(&regex::escape(needle))
                .case_insensitive(true)
                .size_limit(1 << 24)
                .build();
            if let Ok(re) = folded {
                return Self::Folded(re);
            }
        }
        Self::Exact(memchr::memmem::Finder::new(needle.as_bytes()))
    }

    /// Whether `find` wants the block in ASCII lower case.
    fn lowers(&self) -> bool {
        matches!(self, Self::AsciiFolded(_))
    }

    /// Where the first match in `hay` starts.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self {
            Self::Exact(f) | Self::AsciiFolded(f) => f.find(hay),
            Self::Folded(re) => re.find(hay).map(|m| m.start()),
        }
    }
}

/// Finds the lines of `file` (its first `end` bytes) holding `needle` (with `ignore_case`, in any
/// case), one pass over the file.
pub(crate) fn search(
    file: &mut File,
    end: u64,
    needle: &str,
    ignore_case: bool,
    limit: usize,
) -> io::Result<SearchHits> {
    let finder = Finder::new(needle, ignore_case);
    let mut lowered = Vec::new();
    let mut hits = SearchHits {
        matches: Vec::new(),
        count: 0,
        truncated: false,
    };
    file.seek(SeekFrom::Start(0))?;
    let mut reader = file.take(end);
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    // The 0-based line at the start of `buf`.
    let mut line = 0u64;
    loop {
        let n = reader.read(&mut buf[carry..])?;
        let filled = carry + n;
        // Search whole lines only; the cut one waits for the next block (or is the last line).
        let whole = if n == 0 {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(nl) => nl + 1,
                None if filled == buf.len() => {
                    buf.resize(buf.len() * 2, 0);
                    carry = filled;
                    continue;
                }
                None => {
                    carry = filled;
                    continue;
                }
            }
        };
        let block = if finder.lowers() {
            // Same length, same newlines: line numbers and positions hold in the copy.
            lowered.clear();
            lowered.extend_from_slice(&buf[..whole]);
            lowered.make_ascii_lowercase();
            &lowered[..]
        } else {
            &buf[..whole]
        };
        let mut counted_to = 0usize;
        let mut at = 0usize;
        while let Some(found) = finder.find(&block[at..]) {
            let hit = at + found;
            line += memchr::memchr_iter(b'\n', &block[counted_to..hit]).count() as u64;
            counted_to = hit;
            hits.count += 1;
            if hits.matches.len() < limit {
                hits.matches.push(line);
            } else {
                hits.truncated = true;
            }
            // One hit per line: go on after this line's end.
            match memchr::memchr(b'\n', &block[hit..]) {
                Some(nl) => at = hit + nl + 1,
                None => break,
            }
        }
        line += memchr::memchr_iter(b'\n', &block[counted_to..]).count() as u64;
        if n == 0 {
            return Ok(hits);
        }
        buf.copy_within(whole..filled, 0);
        carry = filled - whole;
    }
}

/// The indexes of recently read logs, by run.
#[derive(Debug, Default)]
pub(crate) struct LogIndexes {
    /// Most recently used last. A std mutex: held only to find or insert an entry, never across
    /// an `.await` or a file read.
    recent: Mutex<VecDeque<(i64, Arc<Mutex<LineIndex>>)>>,
}

/// How many runs' indexes are kept (each is ~8 KB per million lines).
const KEPT: usize = 64;

impl LogIndexes {
    /// The index of run `id`'s log (empty if new: refresh it before use).
    pub(crate) fn of(&self, id: i64) -> Arc<Mutex<LineIndex>> {
        let mut recent = self.recent.lock();
        if let Some(i) = recent.iter().position(|(run, _)| *run == id) {
            let entry = recent.remove(i).expect("present");
            let index = entry.1.clone();
            recent.push_back(entry);
            return index;
        }
        let index = Arc::new(Mutex::new(LineIndex::default()));
        recent.push_back((id, index.clone()));
        if recent.len() > KEPT {
            recent.pop_front();
        }
        index
    }
}

/// Opens `path` and refreshes `index` over it: the file and the index, ready to read ranges.
/// Blocking: call from `spawn_blocking`.
pub(crate) fn open_indexed<'a>(
    path: &Path,
    index: &'a Mutex<LineIndex>,
) -> io::Result<(File, parking_lot::MutexGuard<'a, LineIndex>)> {
    let mut file = File::open(path)?;
    let mut guard = index.lock();
    guard.refresh(&mut file)?;
    Ok((file, guard))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn log_of(lines: &[String]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        for l in lines {
            writeln!(tmp, "{l}").expect("write");
        }
        tmp.flush().expect("flush");
        let file = File::open(tmp.path()).expect("open");
        (tmp, file)
    }

    #[test]
    fn finds_the_start_of_every_line_and_extends_over_appended_lines() {
        let lines: Vec<String> = (0..5000)
            .map(|i| format!("line {i} {}", "x".repeat(i % 7)))
            .collect();
        let (mut tmp, mut file) = log_of(&lines);
        let mut index = LineIndex::default();
        index.refresh(&mut file).expect("refresh");
        assert_eq!(index.lines(), 5000);
        let text = std::fs::read_to_string(tmp.path()).expect("read");
        for n in [0u64, 1, 1023, 1024, 1025, 2047, 4999] {
            let at = index.start_of(&mut file, n).expect("start") as usize;
            assert!(
                text[at..].starts_with(&format!("{}\n", lines[n as usize])),
                "line {n}"
            );
        }
        assert_eq!(
            index.start_of(&mut file, 5000).expect("end"),
            text.len() as u64
        );
        // A line being written (no newline yet) is not counted until it is complete.
        write!(tmp, "partial").expect("write");
        tmp.flush().expect("flush");
        index.refresh(&mut file).expect("refresh");
        assert_eq!(index.lines(), 5000);
        writeln!(tmp, " now whole").expect("write");
        tmp.flush().expect("flush");
        index.refresh(&mut file).expect("refresh");
        assert_eq!(index.lines(), 5001);
        let at = index.start_of(&mut file, 5000).expect("start");
        assert_eq!(at, text.len() as u64);
    }

    #[test]
    fn outlines_each_test_from_its_start_line_to_its_end_line() {
        let ts = "2026-11-24T08:47:45.873Z";
        let lines = vec![
            format!("{ts} --- start a b.sh (1/2)"),
            format!("{ts} out --- start fake.sh (9/9)"),
            format!("{ts} --- end a b.sh failed exit=1 in 0.250s"),
            format!("{ts} --- start c.sh (2/2)"),
        ];
        let (_tmp, mut file) = log_of(&lines);
        let mut index = LineIndex::default();
        index.refresh(&mut file).expect("refresh");
        assert_eq!(
            index.sections(),
            &[
                Section {
                    kind: SectionKind::Test,
                    path: "a b.sh".into(),
                    start: 0,
                    end: Some(2),
                    status: Some("failed".into()),
                    exit_code: Some(1),
                    duration_s: Some(0.25),
                },
                Section {
                    kind: SectionKind::Test,
                    path: "c.sh".into(),
                    start: 3,
                    end: None,
                    status: None,
                    exit_code: None,
                    duration_s: None,
                },
            ]
        );
    }

    #[test]
    fn search_gives_each_matching_line_once_and_counts_past_the_limit() {
        let lines: Vec<String> = (0..3000)
            .map(|i| format!("{i} needle {}", if i % 2 == 0 { "needle" } else { "" }))
            .collect();
        let (tmp, mut file) = log_of(&lines);
        let len = std::fs::metadata(tmp.path()).expect("meta").len();
        let hits = search(&mut file, len, "needle", false, 10).expect("search");
        assert_eq!(hits.count, 3000);
        assert_eq!(hits.matches, (0..10).collect::<Vec<_>>());
        assert!(hits.truncated);
        let hits = search(&mut file, len, "2999 ", false, 10).expect("search");
        assert_eq!((hits.count, hits.matches), (1, vec![2999]));
    }

    #[test]
    fn search_ignoring_case_finds_every_casing_and_only_when_asked() {
        let lines: Vec<String> = [
            "Needle one",
            "a NEEDLE",
            "nEeDlE",
            "needles",
            "noodle",
            "ÉTÉ été",
        ]
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
        let (tmp, mut file) = log_of(&lines);
        let len = std::fs::metadata(tmp.path()).expect("meta").len();
        let hits = search(&mut file, len, "needle", true, 10).expect("search");
        assert_eq!((hits.count, hits.matches), (4, vec![0, 1, 2, 3]));
        let hits = search(&mut file, len, "needle", false, 10).expect("search");
        assert_eq!((hits.count, hits.matches), (1, vec![3]));
        // Beyond ASCII too, as the browser folds it.
        let hits = search(&mut file, len, "été", true, 10).expect("search");
        assert_eq!((hits.count, hits.matches), (1, vec![5]));
        // Regex syntax in the text is literal.
        let hits = search(&mut file, len, "n.edle", true, 10).expect("search");
        assert_eq!(hits.count, 0);
    }

    #[test]
    fn outlines_each_script_from_its_start_line_to_its_state_line_around_the_tests() {
        let ts = "2026-11-24T08:47:45.873Z";
        let lines = vec![
            format!("{ts} --- script build starts: echo building"),
            format!("{ts} build/out building"),
            format!("{ts} --- script build passed exit=0 in 0.012s"),
            format!("{ts} --- script sut starts: exec ./sut --port 4000"),
            format!("{ts} --- script sut is ready after 0.100s"),
            format!("{ts} --- start t.sh (1/1)"),
            format!("{ts} sut/out GET /health"),
            format!("{ts} --- end t.sh passed exit=0 in 0.500s"),
            format!("{ts} --- stopping sut: the tests have ended"),
            format!("{ts} --- script sut passed exit=- in 1.250s"),
            format!("{ts} --- script notify skipped: tests is passed"),
            format!("{ts} out --- script fake starts: printed by a test"),
            format!("{ts} --- script cleanup starts: rm -rf data"),
        ];
        let (_tmp, mut file) = log_of(&lines);
        let mut index = LineIndex::default();
        index.refresh(&mut file).expect("refresh");
        let script =
            |path: &str, start, end, status: Option<&str>, exit_code, duration_s| Section {
                kind: SectionKind::Script,
                path: path.into(),
                start,
                end,
                status: status.map(Into::into),
                exit_code,
                duration_s,
            };
        assert_eq!(
            index.sections(),
            &[
                script("build", 0, Some(2), Some("passed"), Some(0), Some(0.012)),
                script("sut", 3, Some(9), Some("passed"), None, Some(1.25)),
                Section {
                    kind: SectionKind::Test,
                    path: "t.sh".into(),
                    start: 5,
                    end: Some(7),
                    status: Some("passed".into()),
                    exit_code: Some(0),
                    duration_s: Some(0.5),
                },
                script("cleanup", 12, None, None, None, None),
            ]
        );
    }
}
