//! Taking the preload library out of a process's environment, where it
//! has nothing to do (the held sockets did not follow), so that the
//! process's own children do not load it either.

use core::ffi::{c_int, c_void, CStr};

use crate::ffi::{self, DlInfo};

/// The seals handoff puts on the library's memfd (`F_SEAL_SEAL`,
/// `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_WRITE`).
const HANDOFF_SEALS: c_int = 0x1 | 0x2 | 0x4 | 0x8;

/// Removes this library's element from `LD_PRELOAD` and the
/// `HANDOFF_PRELOAD*` variables from `environ`, in place, and closes the
/// memfd it was loaded from (when it was). Called from the constructor:
/// before `main` copies the environment anywhere.
pub fn forget_library(anchor: *const c_void) {
    let mut info = DlInfo {
        fname: core::ptr::null(),
        fbase: core::ptr::null_mut(),
        sname: core::ptr::null(),
        saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr fills `info` for an address in this library; the
    // name it gives lives as long as the library.
    let own: &[u8] = unsafe {
        if ffi::dladdr(anchor, &mut info) == 0 || info.fname.is_null() {
            return;
        }
        CStr::from_ptr(info.fname).to_bytes()
    };
    // SAFETY: `environ` is the process's NULL-terminated array of
    // NUL-terminated strings; the constructor edits it in place (drops
    // entries, shortens one string), which every reader of it allows.
    unsafe {
        let env = ffi::environ;
        if env.is_null() {
            return;
        }
        let mut read = 0;
        let mut write = 0;
        loop {
            let entry = *env.add(read);
            if entry.is_null() {
                *env.add(write) = entry;
                break;
            }
            read += 1;
            let bytes = CStr::from_ptr(entry).to_bytes();
            if bytes.starts_with(b"HANDOFF_PRELOAD=") || bytes.starts_with(b"HANDOFF_PRELOAD_") {
                continue;
            }
            if bytes.starts_with(b"LD_PRELOAD=") && remove_element(entry.cast(), bytes, own) {
                continue;
            }
            *env.add(write) = entry;
            write += 1;
        }
    }
    if let Some(fd) = own.strip_prefix(b"/proc/self/fd/").and_then(decimal) {
        // Only if it still is handoff's sealed memfd: a library loaded
        // before this constructor ran may have closed it and opened
        // something else at that number.
        // SAFETY: fcntl F_GET_SEALS on an fd number; close of that fd,
        // which is handoff's memfd, already mapped.
        unsafe {
            if ffi::fcntl(fd, ffi::F_GET_SEALS) == HANDOFF_SEALS {
                ffi::close(fd);
            }
        }
    }
}

/// A small non-negative decimal number (an fd).
pub fn decimal(digits: &[u8]) -> Option<c_int> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut n: c_int = 0;
    for &d in digits {
        n = n * 10 + c_int::try_from(char::from(d).to_digit(10)?).ok()?;
    }
    Some(n)
}

/// Removes `own` from the `LD_PRELOAD=` string at `entry` (in place);
/// true when nothing is left of it.
///
/// # Safety
/// `entry` points at the NUL-terminated string `bytes` is.
unsafe fn remove_element(entry: *mut u8, bytes: &[u8], own: &[u8]) -> bool {
    let start = b"LD_PRELOAD=".len();
    let mut out = start;
    let mut kept = 0;
    let value = bytes.get(start..).unwrap_or(&[]);
    for element in value.split(|&b| b == b':' || b == b' ') {
        if element.is_empty() || element == own {
            continue;
        }
        if kept > 0 {
            // SAFETY: `out` stays below the original length: the result
            // is never longer than what was read.
            unsafe { *entry.add(out) = b':' };
            out += 1;
        }
        for &b in element {
            // SAFETY: as above.
            unsafe { *entry.add(out) = b };
            out += 1;
        }
        kept += 1;
    }
    // SAFETY: as above; the terminator goes at most where it was.
    unsafe { *entry.add(out) = 0 };
    kept == 0
}
