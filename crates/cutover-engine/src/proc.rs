//! Ending a command's whole process group when its step is timed out or
//! aborted (dropping the future). This needs `kill(2)` on a negative pid,
//! which std does not offer.
#![allow(unsafe_code)]

pub struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Guards the group led by `pid` (the child was started with `process_group(0)`).
    pub fn new(pid: Option<u32>) -> Self {
        GroupGuard { pgid: pid }
    }

    /// The command ended by itself: nothing to kill.
    pub fn disarm(mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
            // SAFETY: kill(2) has no memory effects; the group is the one our
            // child leads (it was spawned with process_group(0)), so only
            // processes this step started receive the signal.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Whether a process with this pid exists on this host.
pub fn alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    if r == 0 {
        // A zombie still exists but is dead for our purposes.
        return !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
