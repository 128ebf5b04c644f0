//! handoff's preload library, for servers that bind their own port.
//!
//! handoff puts this library in the child's `LD_PRELOAD` (`preload = true`)
//! and names the sockets it holds for the child in `HANDOFF_PRELOAD`
//! (`FD:COOKIE,...`: the fd number and the socket's `SO_COOKIE` in hex).
//! Then, in the server:
//! - `bind()` to an address handoff holds (matched as `matching.rs` says)
//!   makes the server's fd a copy of the held socket (`dup3` over it,
//!   keeping the server's FD_CLOEXEC and O_NONBLOCK) instead of binding;
//! - `listen()` on a held socket succeeds without touching it (a second
//!   `listen()` would reset the backlog the whole queue shares);
//! - `shutdown()` of a held socket does nothing (it would drop the queue);
//! - `unlink()` of a held unix socket's file keeps the file (a server
//!   that removes a "stale" socket file before binding would orphan it).
//!
//! Everything else goes to libc untouched. A held socket is recognised by
//! its cookie, never by its fd number, so a process where the fds did not
//! follow (a helper started with its fds closed) sees no held socket; such
//! a process then removes the library from its own environment, so that
//! its children do not load it either.
//!
//! Built by `supervisor/build.rs` with rustc alone, embedded in handoff,
//! and handed to each child as a sealed memfd (`supervisor/preload.rs`).
//! `no_std`, no allocation, no lock: the hooks run in any process, before
//! `main`, in a child forked by a threaded program. The table of held
//! sockets is written once, by the constructor, before any thread of the
//! process exists, and only read afterwards.

#![no_std]

mod matching;

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use matching::{parse, rank, Addr};

#[allow(non_camel_case_types)]
type socklen_t = u32;

#[repr(C)]
struct DlInfo {
    fname: *const c_char,
    fbase: *mut c_void,
    sname: *const c_char,
    saddr: *mut c_void,
}

#[link(name = "c")]
#[link(name = "dl")]
extern "C" {
    static mut environ: *mut *mut c_char;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    fn getenv(name: *const c_char) -> *const c_char;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, v: *mut c_void, l: *mut socklen_t)
        -> c_int;
    fn getsockname(fd: c_int, addr: *mut c_void, len: *mut socklen_t) -> c_int;
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    fn sendto(
        fd: c_int,
        buf: *const c_void,
        len: usize,
        flags: c_int,
        addr: *const c_void,
        addrlen: socklen_t,
    ) -> isize;
    fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    fn syscall(number: i64, ...) -> i64;
    fn __errno_location() -> *mut c_int;
    fn abort() -> !;
}

const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const SOL_SOCKET: c_int = 1;
const SO_TYPE: c_int = 3;
const SO_COOKIE: c_int = 57;
const F_GETFD: c_int = 1;
const F_GETFL: c_int = 3;
const F_SETFL: c_int = 4;
const FD_CLOEXEC: c_int = 1;
const O_NONBLOCK: c_int = 0o4000;
const O_CLOEXEC: c_int = 0o2000000;
const EINVAL: c_int = 22;
const AF_UNIX: c_int = 1;
const SOCK_DGRAM: c_int = 2;
const AT_FDCWD: c_int = -100;
const AT_SYMLINK_NOFOLLOW: c_int = 0x100;
#[cfg(target_arch = "x86_64")]
const SYS_NEWFSTATAT: i64 = 262;
#[cfg(target_arch = "aarch64")]
const SYS_NEWFSTATAT: i64 = 79;

/// The most sockets the library looks after (handoff refuses more).
const MAX_HELD: usize = 64;

#[derive(Clone, Copy)]
struct Held {
    fd: c_int,
    cookie: u64,
    ty: c_int,
    addr: Addr,
    /// The socket file of a unix path socket, (st_dev, st_ino).
    file: Option<(u64, u64)>,
}

struct Table {
    held: [Option<Held>; MAX_HELD],
    /// `READY=1` goes here at the first listen() of a held socket
    /// (`ready = "listen"`): a `sockaddr_un` and its length.
    notify: [u8; 110],
    notify_len: socklen_t,
}

/// Written by the constructor only, read by the hooks.
struct Once(UnsafeCell<Table>);
// SAFETY: the one write happens in the constructor, which the dynamic
// loader runs before `main` and before any thread of the process exists;
// every later access reads.
unsafe impl Sync for Once {}

static TABLE: Once = Once(UnsafeCell::new(Table {
    held: [None; MAX_HELD],
    notify: [0; 110],
    notify_len: 0,
}));
static DEBUG: AtomicBool = AtomicBool::new(false);
static READY_SENT: AtomicBool = AtomicBool::new(false);
static REAL_BIND: AtomicUsize = AtomicUsize::new(0);
static REAL_LISTEN: AtomicUsize = AtomicUsize::new(0);
static REAL_SHUTDOWN: AtomicUsize = AtomicUsize::new(0);
static REAL_UNLINK: AtomicUsize = AtomicUsize::new(0);
static REAL_UNLINKAT: AtomicUsize = AtomicUsize::new(0);

fn table() -> &'static Table {
    // SAFETY: see `Once`: no write happens after the constructor.
    unsafe { &*TABLE.0.get() }
}

fn held() -> impl Iterator<Item = &'static Held> {
    table().held.iter().flatten()
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    // SAFETY: dlsym with RTLD_NEXT and NUL-terminated names; a null result
    // is handled where the pointer is used.
    unsafe {
        REAL_BIND.store(dlsym(RTLD_NEXT, c"bind".as_ptr()) as usize, Relaxed);
        REAL_LISTEN.store(dlsym(RTLD_NEXT, c"listen".as_ptr()) as usize, Relaxed);
        REAL_SHUTDOWN.store(dlsym(RTLD_NEXT, c"shutdown".as_ptr()) as usize, Relaxed);
        REAL_UNLINK.store(dlsym(RTLD_NEXT, c"unlink".as_ptr()) as usize, Relaxed);
        REAL_UNLINKAT.store(dlsym(RTLD_NEXT, c"unlinkat".as_ptr()) as usize, Relaxed);
    }
    DEBUG.store(env_is(c"HANDOFF_PRELOAD_DEBUG", b"1"), Relaxed);
    // SAFETY: the constructor runs before any other code of the process
    // can read the table (see `Once`).
    let t = unsafe { &mut *TABLE.0.get() };
    let mut n = 0;
    if let Some(spec) = env(c"HANDOFF_PRELOAD") {
        for entry in spec.split(|&b| b == b',') {
            let Some((fd, cookie)) = parse_entry(entry) else {
                continue;
            };
            if n == MAX_HELD || socket_cookie(fd) != Some(cookie) {
                continue;
            }
            let mut ty: c_int = 0;
            let mut len = size_of::<c_int>() as socklen_t;
            let mut name = [0u8; 128];
            let mut name_len = name.len() as socklen_t;
            // SAFETY: the buffers and lengths are ours and as large as
            // the lengths say.
            let known = unsafe {
                getsockopt(fd, SOL_SOCKET, SO_TYPE, (&raw mut ty).cast(), &mut len) == 0
                    && getsockname(fd, name.as_mut_ptr().cast(), &mut name_len) == 0
            };
            if !known {
                continue;
            }
            let addr = parse(name.get(..name_len as usize).unwrap_or(&[]));
            let file = addr.unix_path().and_then(|p| file_id(AT_FDCWD, p));
            t.held[n] = Some(Held {
                fd,
                cookie,
                ty,
                addr,
                file,
            });
            n += 1;
        }
    }
    if n == 0 {
        // The sockets did not follow to this process: neither it nor its
        // children have anything to gain from the library.
        forget_library();
        return;
    }
    if env_is(c"HANDOFF_PRELOAD_READY", b"1") {
        if let Some(path) = env(c"NOTIFY_SOCKET") {
            if !path.is_empty() && path.len() < t.notify.len() - 2 {
                t.notify[..2].copy_from_slice(&(AF_UNIX as u16).to_ne_bytes());
                t.notify[2..2 + path.len()].copy_from_slice(path);
                if t.notify[2] == b'@' {
                    t.notify[2] = 0;
                }
                t.notify_len = (2 + path.len()) as socklen_t;
            }
        }
    }
}

/// `FD:HEXCOOKIE`.
fn parse_entry(entry: &[u8]) -> Option<(c_int, u64)> {
    let colon = entry.iter().position(|&b| b == b':')?;
    let (fd, cookie) = (entry.get(..colon)?, entry.get(colon + 1..)?);
    if cookie.is_empty() || cookie.len() > 16 {
        return None;
    }
    let n = decimal(fd)?;
    let mut c: u64 = 0;
    for &d in cookie {
        c = c << 4 | u64::from(char::from(d).to_digit(16)?);
    }
    Some((n, c))
}

fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name and returns null or a
    // NUL-terminated string that lives as long as the environment entry;
    // the library reads it in the constructor only, before anything can
    // change the environment.
    unsafe {
        let v = getenv(name.as_ptr());
        (!v.is_null()).then(|| core::ffi::CStr::from_ptr(v).to_bytes())
    }
}

fn env_is(name: &core::ffi::CStr, value: &[u8]) -> bool {
    env(name) == Some(value)
}

fn socket_cookie(fd: c_int) -> Option<u64> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as socklen_t;
    // SAFETY: an 8-byte buffer and its length; a bad fd gives an error.
    let ok = unsafe {
        getsockopt(
            fd,
            SOL_SOCKET,
            SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        ) == 0
    };
    (ok && len == 8).then_some(cookie)
}

/// The held socket `fd` is (a copy of), if any.
fn held_by_fd(fd: c_int) -> Option<&'static Held> {
    let mut any = held().peekable();
    any.peek()?;
    let cookie = socket_cookie(fd)?;
    held().find(|h| h.cookie == cookie)
}

/// (st_dev, st_ino) of a path, without following a final symlink.
fn file_id(dir: c_int, path: &[u8]) -> Option<(u64, u64)> {
    let mut c_path = [0u8; matching::UNIX_PATH_MAX + 1];
    c_path.get_mut(..path.len())?.copy_from_slice(path);
    // struct stat is 144 bytes on x86_64 and 128 on aarch64; both start
    // with st_dev and st_ino, 8 bytes each.
    let mut st = [0u64; 32];
    // SAFETY: newfstatat with a NUL-terminated path and a buffer larger
    // than struct stat.
    let r = unsafe {
        syscall(
            SYS_NEWFSTATAT,
            dir as i64,
            c_path.as_ptr(),
            st.as_mut_ptr(),
            AT_SYMLINK_NOFOLLOW as i64,
        )
    };
    (r == 0).then_some((st[0], st[1]))
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *__errno_location() = e };
}

/// The held socket a bind of `fd` to `addr` is meant for.
fn held_for_bind(fd: c_int, addr: &Addr) -> Option<&'static Held> {
    let mut ty: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: a c_int buffer and its length.
    if unsafe { getsockopt(fd, SOL_SOCKET, SO_TYPE, (&raw mut ty).cast(), &mut len) } != 0 {
        return None;
    }
    let by_file = addr.unix_path().and_then(|p| file_id(AT_FDCWD, p));
    let mut best: Option<(u8, &Held)> = None;
    for h in held().filter(|h| h.ty == ty) {
        let r = match by_file {
            Some(id) if h.file == Some(id) => Some(0),
            _ => rank(addr, &h.addr),
        };
        if let Some(r) = r {
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, h));
            }
        }
    }
    best.map(|(_, h)| h)
}

/// # Safety
/// As bind(2).
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const c_void, len: socklen_t) -> c_int {
    if !addr.is_null() && held().next().is_some() {
        // SAFETY: the caller passes `len` readable bytes at `addr`.
        let bytes = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), len as usize) };
        let asked = parse(bytes);
        if let Some(h) = held_for_bind(fd, &asked) {
            return take(fd, h);
        }
    }
    let real = REAL_BIND.load(Relaxed);
    if real == 0 {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: the pointer is libc's bind, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, *const c_void, socklen_t) -> c_int =
        unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(fd, addr, len) }
}

/// Makes `fd` a copy of the held socket, as the bind succeeded.
fn take(fd: c_int, h: &Held) -> c_int {
    if held_by_fd(fd).is_some() {
        // Bound already (it is a held socket): what the kernel says to a
        // second bind.
        set_errno(EINVAL);
        return -1;
    }
    if socket_cookie(h.fd) != Some(h.cookie) {
        // The server closed the held fd, or put something else there: it
        // binds for itself, and meets EADDRINUSE.
        set_errno(98);
        return -1;
    }
    // SAFETY: fcntl and dup3 on fd numbers; errors are returned.
    unsafe {
        let fd_flags = fcntl(fd, F_GETFD);
        let fl_flags = fcntl(fd, F_GETFL);
        if fd_flags < 0 || fl_flags < 0 {
            return -1;
        }
        let cloexec = if fd_flags & FD_CLOEXEC != 0 {
            O_CLOEXEC
        } else {
            0
        };
        if dup3(h.fd, fd, cloexec) < 0 {
            return -1;
        }
        // O_NONBLOCK belongs to the open file, which is the held socket
        // now: the server's choice (an event loop's non-blocking, a
        // blocking accept loop's blocking) wins.
        let shared = fcntl(fd, F_GETFL);
        if shared >= 0 && (shared ^ fl_flags) & O_NONBLOCK != 0 {
            fcntl(
                fd,
                F_SETFL,
                (shared & !O_NONBLOCK) | (fl_flags & O_NONBLOCK),
            );
        }
    }
    if h.ty == SOCK_DGRAM {
        // A datagram server never listens: bound, it receives.
        notify_ready();
    }
    if DEBUG.load(Relaxed) {
        say(&[
            b"bind on fd ",
            num(fd).as_bytes(),
            b" takes handoff's socket at fd ",
        ]);
        say(&[num(h.fd).as_bytes(), b"\n"]);
    }
    0
}

/// # Safety
/// As listen(2).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if held_by_fd(fd).is_some() {
        // handoff listens with the backlog its config gives; another
        // listen() would change it for every generation.
        notify_ready();
        return 0;
    }
    let real = REAL_LISTEN.load(Relaxed);
    if real == 0 {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: the pointer is libc's listen, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, c_int) -> c_int = unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(fd, backlog) }
}

/// # Safety
/// As shutdown(2).
#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if held_by_fd(fd).is_some_and(|h| h.ty != SOCK_DGRAM) {
        // On a listening socket shutdown() drops the queue every
        // generation shares.
        return 0;
    }
    let real = REAL_SHUTDOWN.load(Relaxed);
    if real == 0 {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: the pointer is libc's shutdown, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, c_int) -> c_int = unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(fd, how) }
}

/// Whether `path` (relative to `dir`) is a held unix socket's file.
fn is_held_file(dir: c_int, path: *const c_char) -> bool {
    if path.is_null() || !held().any(|h| h.file.is_some()) {
        return false;
    }
    // SAFETY: the caller passes a NUL-terminated path.
    let path = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    match file_id(dir, path) {
        Some(id) => held().any(|h| h.file == Some(id)),
        None => false,
    }
}

/// # Safety
/// As unlink(2).
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    if is_held_file(AT_FDCWD, path) {
        return 0;
    }
    let real = REAL_UNLINK.load(Relaxed);
    if real == 0 {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: the pointer is libc's unlink, resolved by dlsym.
    let real: unsafe extern "C" fn(*const c_char) -> c_int = unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(path) }
}

/// # Safety
/// As unlinkat(2).
#[no_mangle]
pub unsafe extern "C" fn unlinkat(dir: c_int, path: *const c_char, flags: c_int) -> c_int {
    if is_held_file(dir, path) {
        return 0;
    }
    let real = REAL_UNLINKAT.load(Relaxed);
    if real == 0 {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: the pointer is libc's unlinkat, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int =
        unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(dir, path, flags) }
}

/// `ready = "listen"`: the server listens on a held socket, so it is about
/// to accept (what queues meanwhile waits in the socket); or it bound a
/// held datagram socket.
fn notify_ready() {
    let t = table();
    if t.notify_len == 0 || READY_SENT.swap(true, Relaxed) {
        return;
    }
    let msg = b"READY=1";
    // SAFETY: a datagram socket of ours, closed below; the address buffer
    // holds `notify_len` bytes.
    unsafe {
        let s = socket(AF_UNIX, SOCK_DGRAM | O_CLOEXEC, 0);
        if s >= 0 {
            sendto(
                s,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                t.notify.as_ptr().cast(),
                t.notify_len,
            );
            close(s);
        }
    }
}

/// Takes the library out of this process's environment (before `main`
/// copies it anywhere): its `LD_PRELOAD` element, `HANDOFF_PRELOAD*`, and
/// closes the memfd it was loaded from.
fn forget_library() {
    let mut info = DlInfo {
        fname: core::ptr::null(),
        fbase: core::ptr::null_mut(),
        sname: core::ptr::null(),
        saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr fills `info` for an address in this library.
    let own: &[u8] = unsafe {
        if dladdr(init as *const c_void, &mut info) == 0 || info.fname.is_null() {
            return;
        }
        core::ffi::CStr::from_ptr(info.fname).to_bytes()
    };
    // SAFETY: `environ` is the process's NULL-terminated array of
    // NUL-terminated strings; nothing else runs while the constructor
    // edits it in place (removing entries, shortening one string).
    unsafe {
        let env = environ;
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
            let bytes = core::ffi::CStr::from_ptr(entry).to_bytes();
            if bytes.starts_with(b"HANDOFF_PRELOAD") {
                continue;
            }
            if bytes.starts_with(b"LD_PRELOAD=") && remove_element(entry.cast(), bytes, own) {
                continue;
            }
            *env.add(write) = entry;
            write += 1;
        }
    }
    if let Some(n) = own.strip_prefix(b"/proc/self/fd/") {
        if let Some(fd) = decimal(n) {
            // SAFETY: the fd the library was loaded from, mapped already.
            unsafe { close(fd) };
        }
    }
}

/// A small non-negative decimal number (an fd).
fn decimal(digits: &[u8]) -> Option<c_int> {
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
    let value = &bytes[start..];
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

/// Writes the pieces to stderr (`HANDOFF_PRELOAD_DEBUG=1`).
fn say(pieces: &[&[u8]]) {
    for p in pieces {
        // SAFETY: writing our own bytes to fd 2.
        unsafe { write(2, p.as_ptr().cast(), p.len()) };
    }
}

struct Num {
    digits: [u8; 12],
    start: usize,
}

impl Num {
    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or(&[])
    }
}

fn num(n: c_int) -> Num {
    let mut digits = [0u8; 12];
    let mut start = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || start == 1 {
            break;
        }
    }
    if n < 0 {
        start -= 1;
        digits[start] = b'-';
    }
    Num { digits, start }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { abort() }
}
