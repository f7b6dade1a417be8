//! Processes as `/proc` shows them: whether one still runs, and which run below a directory
//! (test processes found by their working directory, without knowing their pids).

use std::path::Path;

/// The state letter of `pid` (`R`, `S`, `Z`…), or `None` if there is no such process.
fn state(stat: &str) -> Option<&str> {
    stat.rfind(')')
        .and_then(|close| stat[close + 1..].split_whitespace().next())
}

/// Whether `pid` still runs. A zombie has ended (it only waits to be reaped, and a container's
/// init may not reap orphans).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !matches!(state(&stat), Some("Z" | "X") | None))
}

/// Processes (not zombies) whose working directory is `dir` or below it, as `(pid, name)`,
/// sorted by pid. Processes that cannot be read (another user's, or gone) are not listed.
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !cwd.starts_with(dir) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !matches!(state(&stat), Some("Z" | "X") | None) {
            found.push((pid, stat[open + 1..close].to_owned()));
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_found_in_its_working_directory() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX), "no such pid");
        let here = std::env::current_dir().expect("cwd");
        assert!(
            processes_in(&here)
                .iter()
                .any(|(pid, _)| *pid == std::process::id())
        );
    }
}
