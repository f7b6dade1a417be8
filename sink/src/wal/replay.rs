//! Replay: reading the log's frames back at open, and cutting off a torn tail.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
};

use super::frame::{self, HEADER_LEN, MAX_FRAME, Op};

/// What replay found.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    /// Frames applied.
    pub frames: u64,
    /// Bytes cut off the end because they did not form a whole, valid frame.
    pub truncated_bytes: u64,
}

/// Hands every whole, valid frame of the log at `path` to `apply`, in order. Stops at the first
/// frame that is short, fails its checksum or does not decode: that tail is cut off with a
/// warning (and kept beside the log for a post-mortem).
pub(super) fn replay(path: &Path, mut apply: impl FnMut(Op)) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stats),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut reader, &mut header)? {
            0 => break,
            HEADER_LEN => {}
            _ => break, // torn header
        }
        let (len, crc) = frame::header(header);
        if len == 0 || len > MAX_FRAME {
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut reader, &mut payload)? != len as usize {
            break;
        }
        if crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(op) = frame::decode(&payload) else {
            break;
        };
        apply(op);
        offset += HEADER_LEN as u64 + u64::from(len);
        stats.frames += 1;
    }
    if offset < total {
        stats.truncated_bytes = total - offset;
        let kept = keep_torn_tail(path, offset);
        tracing::warn!(
            path = %path.display(),
            valid_bytes = offset,
            truncated_bytes = stats.truncated_bytes,
            kept_in = ?kept,
            "the callback log ends in a torn or corrupt frame (an interrupted write); cut it off and kept every record before it"
        );
        OpenOptions::new().write(true).open(path)?.set_len(offset)?;
    }
    Ok(stats)
}

/// Copies the bytes past `offset` beside the log, so a truncation never destroys evidence.
fn keep_torn_tail(path: &Path, offset: u64) -> Option<PathBuf> {
    let bytes = std::fs::read(path).ok()?;
    let tail = bytes.get(offset as usize..)?;
    let dest = path.with_extension(format!("log.torn-{}", crate::record::now_ms()));
    std::fs::write(&dest, tail).ok()?;
    Some(dest)
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
