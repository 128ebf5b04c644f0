//! The preload library's view of libc: the declarations it needs (no
//! `libc` crate: the library is built by rustc alone, with no dependency),
//! and small safe wrappers over them.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[allow(non_camel_case_types)]
pub type socklen_t = u32;

#[repr(C)]
pub struct DlInfo {
    pub fname: *const c_char,
    pub fbase: *mut c_void,
    pub sname: *const c_char,
    pub saddr: *mut c_void,
}

// libdl for a glibc older than 2.34, where dlsym and dladdr live there; a
// newer glibc keeps an empty libdl for it.
#[link(name = "c")]
#[link(name = "dl")]
extern "C" {
    pub static mut environ: *mut *mut c_char;
    pub fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    pub fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    pub fn getenv(name: *const c_char) -> *const c_char;
    pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    pub fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, v: *mut c_void, l: *mut socklen_t)
        -> c_int;
    pub fn getsockname(fd: c_int, addr: *mut c_void, len: *mut socklen_t) -> c_int;
    pub fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    pub fn sendto(
        fd: c_int,
        buf: *const c_void,
        len: usize,
        flags: c_int,
        addr: *const c_void,
        addrlen: socklen_t,
    ) -> isize;
    pub fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    // glibc 2.28 and later; it falls back to fstatat where the kernel has
    // no statx. Its layout is the same on every architecture.
    fn statx(dir: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut Statx)
        -> c_int;
    fn __errno_location() -> *mut c_int;
    pub fn abort() -> !;
}

pub const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const SOL_SOCKET: c_int = 1;
pub const SO_TYPE: c_int = 3;
pub const SO_PROTOCOL: c_int = 38;
pub const SO_DOMAIN: c_int = 39;
const SO_COOKIE: c_int = 57;
pub const F_GETFD: c_int = 1;
pub const F_GETFL: c_int = 3;
pub const F_SETFL: c_int = 4;
pub const F_GET_SEALS: c_int = 1034;
pub const FD_CLOEXEC: c_int = 1;
pub const O_NONBLOCK: c_int = 0o4000;
pub const O_CLOEXEC: c_int = 0o2000000;
pub const EINVAL: c_int = 22;
pub const EADDRINUSE: c_int = 98;
pub const ENOSYS: c_int = 38;
pub const AF_UNIX: c_int = 1;
pub const AF_INET: c_int = 2;
pub const AF_INET6: c_int = 10;
pub const SOCK_DGRAM: c_int = 2;
pub const AT_FDCWD: c_int = -100;
const AT_SYMLINK_NOFOLLOW: c_int = 0x100;
const STATX_INO: c_uint = 0x100;

#[repr(C, align(8))]
struct Statx([u8; 256]);

/// An integer socket option of `fd` at SOL_SOCKET.
pub fn sol_socket_int(fd: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: a c_int buffer and its length; a bad fd gives an error.
    let r = unsafe { getsockopt(fd, SOL_SOCKET, name, (&raw mut value).cast(), &mut len) };
    (r == 0).then_some(value)
}

/// The socket's `SO_COOKIE` (Linux 4.12 and later), the same in every
/// process that holds a copy of it.
pub fn cookie(fd: c_int) -> Option<u64> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as socklen_t;
    // SAFETY: an 8-byte buffer and its length; a bad fd gives an error.
    let r = unsafe {
        getsockopt(
            fd,
            SOL_SOCKET,
            SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    (r == 0 && len == 8).then_some(cookie)
}

/// (device, inode) of a NUL-terminated path relative to `dir`, without
/// following a final symlink.
pub fn file_id(dir: c_int, path: &CStr) -> Option<(u64, u64)> {
    let mut buf = Statx([0; 256]);
    // SAFETY: a NUL-terminated path and a buffer of struct statx's size.
    let r = unsafe { statx(dir, path.as_ptr(), AT_SYMLINK_NOFOLLOW, STATX_INO, &mut buf) };
    if r != 0 {
        return None;
    }
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(buf.0.get(at..at + 4)?);
        Some(u32::from_ne_bytes(b))
    };
    let mut ino = [0u8; 8];
    ino.copy_from_slice(buf.0.get(32..40)?);
    // stx_dev_major at 136, stx_dev_minor at 140.
    let dev = (u64::from(u32_at(136)?) << 32) | u64::from(u32_at(140)?);
    Some((dev, u64::from_ne_bytes(ino)))
}

pub fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *__errno_location() }
}

pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *__errno_location() = e };
}

/// libc's own `name`, found once with `dlsym(RTLD_NEXT)` (in a hook
/// called before the library's constructor, as another library's
/// constructor may do, it is found then); 0 when there is none.
pub fn real(slot: &AtomicUsize, name: &CStr) -> usize {
    match slot.load(Relaxed) {
        0 => {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
            let f = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) } as usize;
            slot.store(f, Relaxed);
            f
        }
        f => f,
    }
}
