//! Process inspection through /proc (Linux).

use std::path::Path;

/// Every PID in /proc.
pub fn all_pids() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                out.push(p);
            }
        }
    }
    out
}

/// Fields of /proc/PID/stat after the `(comm)`: index 0 is the state,
/// 1 the ppid, 19 the start time.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = s.rfind(')')?;
    Some(
        s[close + 1..]
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

pub fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Start time in clock ticks since boot: with the PID, identifies a process.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

pub fn is_zombie(pid: i32) -> bool {
    matches!(state(pid), Some('Z') | Some('X'))
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Live direct children of `pid` (zombies excluded).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid) && !is_zombie(p))
        .collect();
    out.sort_unstable();
    out
}

/// Every live descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let pids = all_pids();
    let parents: Vec<(i32, i32)> = pids.iter().filter_map(|&p| Some((p, ppid(p)?))).collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == cur && !out.contains(&p) && !is_zombie(p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Number of threads of `pid` (entries in /proc/PID/task).
pub fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// The command line, NULs replaced by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `/proc/PID/comm`, trimmed ("" if the process is gone).
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Live children of `parent` whose comm is `name`.
pub fn children_named(parent: i32, name: &str) -> Vec<i32> {
    children(parent)
        .into_iter()
        .filter(|&p| comm(p) == name)
        .collect()
}

/// The `edge-worker` children of the arbiter `pid`.
pub fn workers_of(pid: i32) -> Vec<i32> {
    children_named(pid, "edge-worker")
}

/// The `edge-front` children of the arbiter `pid`.
pub fn fronts_of(pid: i32) -> Vec<i32> {
    children_named(pid, "edge-front")
}

/// Whether every pid in `pids` is gone within `timeout`.
pub fn wait_gone(pids: &[i32], timeout: std::time::Duration) -> bool {
    super::poll(timeout, std::time::Duration::from_millis(25), || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    })
    .is_some()
}

/// The scheduling policy (sched(7): 0 `SCHED_OTHER`, 3 `SCHED_BATCH`) of
/// each thread of `pid`, by thread id.
pub fn sched_policies(pid: i32) -> Vec<(i32, u32)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        // Field 41 of stat(5); index 38 after the `(comm)`.
        let policy = s
            .rfind(')')
            .and_then(|close| s[close + 1..].split_whitespace().nth(38)?.parse().ok());
        if let Some(p) = policy {
            out.push((tid, p));
        }
    }
    out.sort_unstable();
    out
}
