//! How alertcall ends when it cannot go on: the exit statuses a supervisor sees (systemd's
//! `Restart=always`, Docker's `--restart`), and never a silent death by SIGBUS.

/// `serve` stopped because the database cannot be written (sysexits' EX_IOERR).
pub const UNWRITABLE: u8 = 74;

/// The process caught SIGBUS: 128 + SIGBUS (7), what a shell shows for a death by SIGBUS.
pub const BUS_ERROR: i32 = 135;

const BUS_ERROR_LINE: &[u8] =
    b"alertcall: FATAL: bus error (SIGBUS): a memory-mapped file failed, \
most likely the SQLite database's -shm file (truncated, on a full or failing disk, or made \
unreadable); exiting with status 135 for the supervisor to restart alertcall\n";

/// Installs the SIGBUS handler: one fixed line on stderr, then `_exit(BUS_ERROR)`.
///
/// SQLite maps its `-shm` file; when that file is truncated or its disk fails, touching the
/// mapping raises SIGBUS, whose default action kills the process without a word (Rust's
/// own handler only reports stack overflows). The handler is safe to run at any moment:
/// it calls only `write(2)` and `_exit(2)`, both async-signal-safe, on a constant buffer;
/// it takes no lock, allocates nothing and touches no Rust state, so whatever the
/// interrupted thread held cannot deadlock or corrupt it. It never returns: a SIGBUS from a
/// faulting access would re-execute that access and fault again. `_exit` skips destructors
/// and atexit handlers, which is right for a process whose memory may be inconsistent; the
/// database's WAL keeps every committed transaction.
pub fn report_bus_errors() {
    // SAFETY: the handler is async-signal-safe (see above); `sigaction` only sets the
    // disposition of SIGBUS, with a zeroed (empty) mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bus_error as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // On the thread's alternate stack when it has one (Rust sets one up per thread), in
        // case the fault came from the stack itself.
        action.sa_flags = libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_bus_error(_signal: libc::c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is a constant.
    unsafe {
        libc::write(2, BUS_ERROR_LINE.as_ptr().cast(), BUS_ERROR_LINE.len());
        libc::_exit(BUS_ERROR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_error_line_names_its_status() {
        assert_eq!(BUS_ERROR, 128 + libc::SIGBUS);
        let line = std::str::from_utf8(BUS_ERROR_LINE).unwrap();
        assert!(line.contains(&format!("status {BUS_ERROR} ")), "{line}");
        assert_eq!(line.matches('\n').count(), 1, "one line");
    }
}
