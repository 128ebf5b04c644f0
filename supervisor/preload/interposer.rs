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
//! - `unlink()` or `remove()` of a held unix socket's file keeps the file
//!   (a server that removes a "stale" socket file before binding would
//!   orphan it).
//!
//! Everything else goes to libc untouched. A held socket is recognised by
//! its cookie, never by its fd number, so a process where the fds did not
//! follow (a helper started with its fds closed) sees no held socket; such
//! a process then removes the library from its own environment
//! (`environ.rs`), so that its children do not load it either.
//!
//! Built by `supervisor/build.rs` with rustc alone, embedded in handoff,
//! and handed to each child by `supervisor/preload.rs`. `no_std`, no
//! allocation, no lock: the hooks run in any process, before `main`, in a
//! child forked by a threaded program. The table of held sockets is
//! written once, by the constructor, then published; the hooks read it
//! only once published (before, as when another library's constructor
//! binds, every call goes to libc).

#![no_std]

mod environ;
mod ffi;
mod matching;

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use ffi::socklen_t;
use matching::{parse, rank, Addr};

/// The most sockets the library looks after (handoff refuses more).
const MAX_HELD: usize = 64;

/// `sizeof(struct sockaddr_storage)`: a longer address is no address of
/// a held socket (and is not read).
const SOCKADDR_MAX: socklen_t = 128;

#[derive(Clone, Copy)]
struct Held {
    fd: c_int,
    cookie: u64,
    ty: c_int,
    domain: c_int,
    protocol: c_int,
    addr: Addr,
    /// The socket file of a unix path socket, (device, inode).
    file: Option<(u64, u64)>,
}

struct Table {
    held: [Option<Held>; MAX_HELD],
    /// `READY=1` goes here at the first listen() of a held socket
    /// (`ready = "listen"`): a `sockaddr_un` and its length.
    notify: [u8; 110],
    notify_len: socklen_t,
}

/// Written by the constructor only, read by the hooks once `PUBLISHED`.
struct Once(UnsafeCell<Table>);
// SAFETY: the one write happens in the constructor, before `PUBLISHED` is
// set (Release); readers read only after seeing it set (Acquire).
unsafe impl Sync for Once {}

static TABLE: Once = Once(UnsafeCell::new(Table {
    held: [None; MAX_HELD],
    notify: [0; 110],
    notify_len: 0,
}));
static PUBLISHED: AtomicBool = AtomicBool::new(false);
static DEBUG: AtomicBool = AtomicBool::new(false);
static READY_SENT: AtomicBool = AtomicBool::new(false);
static REAL_BIND: AtomicUsize = AtomicUsize::new(0);
static REAL_LISTEN: AtomicUsize = AtomicUsize::new(0);
static REAL_SHUTDOWN: AtomicUsize = AtomicUsize::new(0);
static REAL_UNLINK: AtomicUsize = AtomicUsize::new(0);
static REAL_UNLINKAT: AtomicUsize = AtomicUsize::new(0);
static REAL_REMOVE: AtomicUsize = AtomicUsize::new(0);

fn table() -> Option<&'static Table> {
    // SAFETY: see `Once`: published after the only write.
    PUBLISHED.load(Acquire).then(|| unsafe { &*TABLE.0.get() })
}

fn held() -> impl Iterator<Item = &'static Held> {
    table().into_iter().flat_map(|t| t.held.iter().flatten())
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    DEBUG.store(env_is(c"HANDOFF_PRELOAD_DEBUG", b"1"), Relaxed);
    // SAFETY: nothing reads the table before it is published below, and
    // the constructor runs once.
    let t = unsafe { &mut *TABLE.0.get() };
    let mut n = 0;
    if let Some(spec) = env(c"HANDOFF_PRELOAD") {
        for entry in spec.split(|&b| b == b',') {
            let Some((fd, cookie)) = parse_entry(entry) else {
                continue;
            };
            if n == MAX_HELD || ffi::cookie(fd) != Some(cookie) {
                continue;
            }
            let (Some(ty), Some(domain), Some(protocol)) = (
                ffi::sol_socket_int(fd, ffi::SO_TYPE),
                ffi::sol_socket_int(fd, ffi::SO_DOMAIN),
                ffi::sol_socket_int(fd, ffi::SO_PROTOCOL),
            ) else {
                continue;
            };
            let mut name = [0u8; SOCKADDR_MAX as usize];
            let mut name_len = SOCKADDR_MAX;
            // SAFETY: the buffer and its length are ours.
            if unsafe { ffi::getsockname(fd, name.as_mut_ptr().cast(), &mut name_len) } != 0 {
                continue;
            }
            let addr = parse(name.get(..name_len as usize).unwrap_or(&[]));
            t.held[n] = Some(Held {
                fd,
                cookie,
                ty,
                domain,
                protocol,
                addr,
                file: unix_file(&addr),
            });
            n += 1;
        }
    }
    if n == 0 {
        // The sockets did not follow to this process: neither it nor its
        // children have anything to gain from the library.
        environ::forget_library(init as *const c_void);
        return;
    }
    if env_is(c"HANDOFF_PRELOAD_READY", b"1") {
        if let Some(path) = env(c"NOTIFY_SOCKET") {
            if !path.is_empty() && path.len() < t.notify.len() - 2 {
                t.notify[..2].copy_from_slice(&(ffi::AF_UNIX as u16).to_ne_bytes());
                t.notify[2..2 + path.len()].copy_from_slice(path);
                if t.notify[2] == b'@' {
                    t.notify[2] = 0;
                }
                t.notify_len = (2 + path.len()) as socklen_t;
            }
        }
    }
    PUBLISHED.store(true, Release);
}

/// `FD:HEXCOOKIE`.
fn parse_entry(entry: &[u8]) -> Option<(c_int, u64)> {
    let colon = entry.iter().position(|&b| b == b':')?;
    let (fd, cookie) = (entry.get(..colon)?, entry.get(colon + 1..)?);
    if cookie.is_empty() || cookie.len() > 16 {
        return None;
    }
    let n = environ::decimal(fd)?;
    let mut c: u64 = 0;
    for &d in cookie {
        c = c << 4 | u64::from(char::from(d).to_digit(16)?);
    }
    Some((n, c))
}

fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name and returns null or a
    // NUL-terminated string that lives as long as the environment entry;
    // the library reads it in the constructor only.
    unsafe {
        let v = ffi::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
    }
}

fn env_is(name: &CStr, value: &[u8]) -> bool {
    env(name) == Some(value)
}

/// The file of a unix path socket address, as (device, inode).
fn unix_file(addr: &Addr) -> Option<(u64, u64)> {
    let path = addr.unix_path()?;
    let mut c_path = [0u8; matching::UNIX_PATH_MAX + 1];
    c_path.get_mut(..path.len())?.copy_from_slice(path);
    let c_path = CStr::from_bytes_until_nul(&c_path).ok()?;
    ffi::file_id(ffi::AT_FDCWD, c_path)
}

/// The held socket `fd` is (a copy of), if any.
fn held_by_fd(fd: c_int) -> Option<&'static Held> {
    held().next()?;
    let cookie = ffi::cookie(fd)?;
    held().find(|h| h.cookie == cookie)
}

/// The held socket a bind of `fd` to `asked` (of `family`) is meant for:
/// one of the same type and protocol, for an address of the socket's own
/// family (the kernel refuses the others), the best match.
fn held_for_bind(fd: c_int, family: c_int, asked: &Addr) -> Option<&'static Held> {
    let ty = ffi::sol_socket_int(fd, ffi::SO_TYPE)?;
    let domain = ffi::sol_socket_int(fd, ffi::SO_DOMAIN)?;
    let protocol = ffi::sol_socket_int(fd, ffi::SO_PROTOCOL)?;
    if family != domain {
        return None;
    }
    let by_file = unix_file(asked);
    let mut best: Option<(u8, &Held)> = None;
    for h in held().filter(|h| h.ty == ty && h.protocol == protocol) {
        // An IPv4 socket never becomes an IPv6 one: a server that accepts
        // into a `sockaddr_in` would read a truncated IPv6 address. (The
        // other way, a `sockaddr_in` fits where a `sockaddr_in6` would.)
        if domain == ffi::AF_INET && h.domain == ffi::AF_INET6 {
            continue;
        }
        let r = match by_file {
            Some(id) if h.file == Some(id) => Some(0),
            _ => rank(asked, &h.addr),
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
    let saved = ffi::errno();
    if !addr.is_null() && (2..=SOCKADDR_MAX).contains(&len) && held().next().is_some() {
        // SAFETY: the caller passes `len` readable bytes at `addr`, and
        // `len` is at most a sockaddr_storage.
        let bytes = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), len as usize) };
        let family = c_int::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let asked = parse(bytes);
        if let Some(h) = held_for_bind(fd, family, &asked) {
            return take(fd, h);
        }
    }
    ffi::set_errno(saved);
    let real = ffi::real(&REAL_BIND, c"bind");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
        return -1;
    }
    // SAFETY: the pointer is libc's bind, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, *const c_void, socklen_t) -> c_int =
        unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(fd, addr, len) }
}

/// Makes `fd` a copy of the held socket, as if the bind succeeded.
fn take(fd: c_int, h: &Held) -> c_int {
    if held_by_fd(fd).is_some() {
        // Bound already (it is a held socket): what the kernel says to a
        // second bind.
        ffi::set_errno(ffi::EINVAL);
        return -1;
    }
    if ffi::cookie(h.fd) != Some(h.cookie) {
        // The server closed the held fd, or put something else there: to
        // the kernel, the address is in use.
        ffi::set_errno(ffi::EADDRINUSE);
        return -1;
    }
    // SAFETY: fcntl and dup3 on fd numbers; errors are returned.
    unsafe {
        let fd_flags = ffi::fcntl(fd, ffi::F_GETFD);
        let fl_flags = ffi::fcntl(fd, ffi::F_GETFL);
        if fd_flags < 0 || fl_flags < 0 {
            return -1;
        }
        let cloexec = if fd_flags & ffi::FD_CLOEXEC != 0 {
            ffi::O_CLOEXEC
        } else {
            0
        };
        if ffi::dup3(h.fd, fd, cloexec) < 0 {
            return -1;
        }
        // O_NONBLOCK belongs to the open file, which is the held socket
        // now: the server's choice (an event loop's non-blocking, a
        // blocking accept loop's blocking) wins. On a socket generations
        // share, it is every generation's (the README says so).
        let shared = ffi::fcntl(fd, ffi::F_GETFL);
        if shared >= 0 && (shared ^ fl_flags) & ffi::O_NONBLOCK != 0 {
            ffi::fcntl(
                fd,
                ffi::F_SETFL,
                (shared & !ffi::O_NONBLOCK) | (fl_flags & ffi::O_NONBLOCK),
            );
        }
    }
    if h.ty == ffi::SOCK_DGRAM {
        // A datagram server never listens: bound, it receives.
        notify_ready();
    }
    if DEBUG.load(Relaxed) {
        say(&[
            b"handoff-preload: bind on fd ",
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
    let saved = ffi::errno();
    if held_by_fd(fd).is_some() {
        // handoff listens with the backlog its config gives; another
        // listen() would change it for every generation.
        notify_ready();
        ffi::set_errno(saved);
        return 0;
    }
    ffi::set_errno(saved);
    let real = ffi::real(&REAL_LISTEN, c"listen");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
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
    let saved = ffi::errno();
    if held_by_fd(fd).is_some_and(|h| h.ty != ffi::SOCK_DGRAM) {
        // On a listening socket shutdown() drops the queue every
        // generation shares.
        ffi::set_errno(saved);
        return 0;
    }
    ffi::set_errno(saved);
    let real = ffi::real(&REAL_SHUTDOWN, c"shutdown");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
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
    let saved = ffi::errno();
    // SAFETY: the caller passes a NUL-terminated path.
    let id = ffi::file_id(dir, unsafe { CStr::from_ptr(path) });
    ffi::set_errno(saved);
    id.is_some_and(|id| held().any(|h| h.file == Some(id)))
}

/// # Safety
/// As unlink(2).
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    if is_held_file(ffi::AT_FDCWD, path) {
        return 0;
    }
    let real = ffi::real(&REAL_UNLINK, c"unlink");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
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
    let real = ffi::real(&REAL_UNLINKAT, c"unlinkat");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
        return -1;
    }
    // SAFETY: the pointer is libc's unlinkat, resolved by dlsym.
    let real: unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int =
        unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(dir, path, flags) }
}

/// glibc's `remove()` unlinks through an internal call the `unlink` hook
/// never sees.
///
/// # Safety
/// As remove(3).
#[no_mangle]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    if is_held_file(ffi::AT_FDCWD, path) {
        return 0;
    }
    let real = ffi::real(&REAL_REMOVE, c"remove");
    if real == 0 {
        ffi::set_errno(ffi::ENOSYS);
        return -1;
    }
    // SAFETY: the pointer is libc's remove, resolved by dlsym.
    let real: unsafe extern "C" fn(*const c_char) -> c_int = unsafe { core::mem::transmute(real) };
    // SAFETY: as the caller's.
    unsafe { real(path) }
}

/// `ready = "listen"`: the server listens on a held socket, so it is about
/// to accept (what queues meanwhile waits in the socket); or it bound a
/// held datagram socket.
fn notify_ready() {
    let Some(t) = table() else {
        return;
    };
    if t.notify_len == 0 || READY_SENT.swap(true, Relaxed) {
        return;
    }
    let msg = b"READY=1";
    // SAFETY: a datagram socket of ours, closed below; the address buffer
    // holds `notify_len` bytes.
    unsafe {
        let s = ffi::socket(ffi::AF_UNIX, ffi::SOCK_DGRAM | ffi::O_CLOEXEC, 0);
        if s >= 0 {
            ffi::sendto(
                s,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                t.notify.as_ptr().cast(),
                t.notify_len,
            );
            ffi::close(s);
        }
    }
}

/// Writes the pieces to stderr (`HANDOFF_PRELOAD_DEBUG=1`).
fn say(pieces: &[&[u8]]) {
    for p in pieces {
        // SAFETY: writing our own bytes to fd 2.
        unsafe { ffi::write(2, p.as_ptr().cast(), p.len()) };
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
    unsafe { ffi::abort() }
}
