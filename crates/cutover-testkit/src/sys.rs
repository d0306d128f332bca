//! The few libc calls the testkit needs. This is the only module allowed to
//! use `unsafe`.
#![allow(unsafe_code)]

/// Whether this process runs with an effective uid of 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid() takes no arguments, touches no memory we own and
    // cannot fail (POSIX: "shall always be successful").
    unsafe { libc::geteuid() == 0 }
}

/// Registers `handler` to run at normal process exit (`exit(3)`, including a
/// return from `main` and `std::process::exit`). Returns false if libc
/// refused.
pub(crate) fn at_exit(handler: extern "C" fn()) -> bool {
    // SAFETY: `handler` is a plain `extern "C" fn()` with a 'static lifetime
    // (a function item), which is exactly what atexit(3) expects; the handler
    // itself must not unwind, which the caller guarantees by catching panics.
    unsafe { libc::atexit(handler) == 0 }
}

/// Sends `signal` to `pid`. Returns false if the process does not exist or
/// may not be signalled. Callers must have checked that `pid` is a
/// postmaster this crate started.
pub(crate) fn send_signal(pid: i32, signal: i32) -> bool {
    if pid <= 0 {
        // 0 and negative pids address process groups: never do that.
        return false;
    }
    // SAFETY: kill(2) only reads its two integer arguments; pid > 0 so it
    // addresses exactly one process.
    unsafe { libc::kill(pid, signal) == 0 }
}

pub(crate) const SIGQUIT: i32 = libc::SIGQUIT;
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
