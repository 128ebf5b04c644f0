//! Whether `LD_PRELOAD` can reach a program: what the dynamic loader will
//! do with it, read from the file before anything runs it.
//!
//! `preload = true` puts an interposer in the child's `LD_PRELOAD` that turns
//! the server's own `bind()` of a held address into the held socket. That
//! only works when ld.so runs (the ELF has a `PT_INTERP`), honours
//! `LD_PRELOAD` (no secure-execution mode) and the program binds through
//! libc (not Go, whose runtime makes the syscalls itself). `handoff check`
//! and `run` ask [`preload_problem`] and refuse with its message otherwise.
//!
//! The ELF reader is by hand, not `goblin` or `object`: two fields of the
//! program headers and one kind of note do not pay for a dependency in a
//! supervisor whose resident-memory target is 4 MiB. It reads at most a
//! few pages, bounds-checks every field and never panics on a truncated or
//! hostile file: anything it cannot read is [`Kind::Unknown`], which callers
//! report but do not block on.
//!
//! A leaf: it uses nothing of the crate but `program_path`.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::program_path::resolve_program;

/// What the dynamic loader will do with a program, as far as LD_PRELOAD is
/// concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An ELF with `PT_INTERP`: ld.so runs and loads `LD_PRELOAD`.
    Dynamic,
    /// An ELF without `PT_INTERP` (static, static-pie): no loader runs.
    Static,
    /// An ELF with a Go build-id note: dynamic or not, Go calls bind()
    /// itself, without libc.
    Go,
    /// Set-user-ID or set-group-ID to someone else, or with file
    /// capabilities: ld.so runs in secure-execution mode and ignores
    /// `LD_PRELOAD` holding a path with a slash.
    SecureExec,
    /// A `#!` script; `interpreter` is the program the kernel (or `env`)
    /// runs it with, and `kind` what that one is.
    Script {
        interpreter: PathBuf,
        kind: Box<Kind>,
    },
    /// Not ELF, unreadable, too deep a `#!` chain...: why, for the user.
    Unknown(String),
}

/// The kernel reads this much of a file to recognise a `#!` line
/// (`BINPRM_BUF_SIZE`); it is also more than an ELF header.
const HEAD_LEN: u64 = 256;
/// Nested `#!` scripts Linux follows: fs/exec.c gives up past depth 5,
/// the last of which is the ELF (checked on 6.18: five nested scripts run,
/// a sixth fails with ELOOP).
const MAX_SCRIPT_LEVELS: usize = 5;
/// Bounds on what a hostile file can make us read.
const MAX_PROGRAM_HEADERS_LEN: u64 = 64 * 1024;
const MAX_NOTES_LEN: u64 = 64 * 1024;

const PT_INTERP: u64 = 3;
const PT_NOTE: u64 = 4;
/// `NT_GO_BUILDID`, under the owner "Go" (cmd/link's `.note.go.buildid`).
const NT_GO_BUILDID: u64 = 4;

/// What `program` is. A bare name is looked up in `env`'s PATH, as the
/// child's execvp would; `env` is also the PATH `#!/usr/bin/env NAME` uses.
pub fn inspect(program: &Path, env: &[(OsString, OsString)]) -> Kind {
    let path = match resolve(program, env) {
        Ok(path) => path,
        Err(unknown) => return unknown,
    };
    match inspect_at(&path, env, 0) {
        Ok(kind) => kind,
        Err(TooDeep) => Kind::Unknown(format!(
            "`{}` starts a chain of more than {MAX_SCRIPT_LEVELS} `#!` interpreters, \
             which Linux refuses to run",
            path.display()
        )),
    }
}

/// None when preload can reach the program (Dynamic, a script whose
/// interpreter is, or Unknown: the caller cannot tell, so does not block);
/// otherwise why not and what to do instead.
pub fn preload_problem(program: &Path, env: &[(OsString, OsString)]) -> Option<String> {
    let mut kind = inspect(program, env);
    let mut prefix = String::new();
    let mut path = resolve(program, env).ok()?;
    while let Kind::Script {
        interpreter,
        kind: inner,
    } = kind
    {
        prefix.push_str(&format!(
            "`{}` is a #! script for `{}`: ",
            path.display(),
            interpreter.display()
        ));
        path = interpreter;
        kind = *inner;
    }
    let at = path.display();
    let instead = "give it the socket instead ({fd:NAME} or LISTEN_FDS)";
    let problem = match kind {
        Kind::Dynamic | Kind::Unknown(_) | Kind::Script { .. } => return None,
        Kind::Static => format!(
            "`{at}` is statically linked (it has no ELF interpreter): \
             LD_PRELOAD cannot reach its bind(); {instead}"
        ),
        Kind::Go => format!(
            "`{at}` is a Go program: Go calls bind() without libc, so LD_PRELOAD cannot \
             reach it; take the socket from LISTEN_FDS (coreos/go-systemd activation, \
             or net.FileListener(os.NewFile(3, ...)))"
        ),
        Kind::SecureExec => format!(
            "`{at}` {}: ld.so ignores LD_PRELOAD in secure-execution mode; {instead}",
            secure_exec_reason(&path).unwrap_or("runs with raised privileges")
        ),
    };
    Some(prefix + &problem)
}

/// A bare name found in `env`'s PATH; a path as it is.
fn resolve(program: &Path, env: &[(OsString, OsString)]) -> Result<PathBuf, Kind> {
    match program.to_str() {
        Some(name) if !name.contains('/') => {
            resolve_program(name, env).map_err(|e| Kind::Unknown(e.to_string()))
        }
        _ => Ok(program.to_path_buf()),
    }
}

/// The `#!` chain is longer than Linux follows.
struct TooDeep;

fn inspect_at(path: &Path, env: &[(OsString, OsString)], depth: usize) -> Result<Kind, TooDeep> {
    let unknown = |why: String| Ok(Kind::Unknown(format!("`{}` {why}", path.display())));
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return unknown(format!("cannot be read: {e}")),
    };
    let mut head = Vec::new();
    if let Err(e) = (&file).take(HEAD_LEN).read_to_end(&mut head) {
        return unknown(format!("cannot be read: {e}"));
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        // The kernel ignores setuid on scripts: only the interpreter counts.
        if depth >= MAX_SCRIPT_LEVELS {
            return Err(TooDeep);
        }
        let interpreter = match interpreter(line, env) {
            Ok(interpreter) => interpreter,
            Err(why) => return unknown(why),
        };
        let kind = inspect_at(&interpreter, env, depth + 1)?;
        return Ok(Kind::Script {
            interpreter,
            kind: Box::new(kind),
        });
    }
    if !head.starts_with(b"\x7fELF") {
        return unknown("is neither an ELF file nor a #! script".to_string());
    }
    if secure_exec_reason(path).is_some() {
        return Ok(Kind::SecureExec);
    }
    Ok(read_elf(&file, &head)
        .unwrap_or_else(|why| Kind::Unknown(format!("`{}` {why}", path.display()))))
}

/// The program a `#!` line runs: its first word, or for `env` the first
/// word after `env`'s options and assignments, found in `env`'s PATH (the
/// child's). `-u NAME` would be misread; `-S` and `-i` are what scripts use.
fn interpreter(line: &[u8], env: &[(OsString, OsString)]) -> Result<PathBuf, String> {
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Err("has a `#!` line that names no interpreter".to_string());
    };
    if Path::new(first).file_name() != Some("env".as_ref()) {
        return Ok(PathBuf::from(first));
    }
    let Some(name) = words.find(|w| !w.starts_with('-') && !w.contains('=')) else {
        return Err(format!("has a `#!{first}` line that names no program"));
    };
    resolve_program(name, env).map_err(|e| format!("names a #! interpreter that {e}"))
}

/// Why ld.so will run `path` in secure-execution mode (AT_SECURE), if it
/// will: the kernel sets it when exec changes the effective ids away from
/// the real ones (the child's are ours), or a non-root process gains file
/// capabilities; a nosuid mount turns both off.
fn secure_exec_reason(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    let nosuid = nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
        .unwrap_or(false);
    if nosuid {
        return None;
    }
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let mode = meta.mode();
    if mode & 0o4000 != 0 && meta.uid() != uid.as_raw() {
        return Some("is set-user-ID");
    }
    // Setgid without group execute is mandatory locking, not an id change.
    if mode & 0o2010 == 0o2010 && meta.gid() != gid.as_raw() {
        return Some("is set-group-ID");
    }
    if !uid.is_root() && has_file_capabilities(path) {
        return Some("has file capabilities");
    }
    None
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both names are NUL-terminated strings alive across the call;
    // a null buffer of size 0 asks only for the value's length, so the
    // kernel writes nothing. ENODATA (no such attribute) and ENOTSUP are -1.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    len > 0
}

/// Reads fixed-size fields of an ELF in its byte order; `None` past the end.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn get<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        let at = usize::try_from(at).ok()?;
        let mut b: [u8; N] = self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()?;
        if !self.big_endian {
            b.reverse();
        }
        Some(b)
    }
    fn u16(&self, at: u64) -> Option<u64> {
        self.get::<2>(at).map(|b| u16::from_be_bytes(b).into())
    }
    fn u32(&self, at: u64) -> Option<u64> {
        self.get::<4>(at).map(|b| u32::from_be_bytes(b).into())
    }
    fn u64(&self, at: u64) -> Option<u64> {
        self.get::<8>(at).map(u64::from_be_bytes)
    }
}

/// Dynamic, Static or Go, from the program headers; `Err` says why not.
fn read_elf(file: &File, head: &[u8]) -> Result<Kind, String> {
    let is64 = match head.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("is an ELF file of an unknown class".to_string()),
    };
    let big_endian = match head.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("is an ELF file of an unknown byte order".to_string()),
    };
    let h = Fields {
        bytes: head,
        big_endian,
    };
    let truncated = || "is a truncated ELF file".to_string();
    // ET_EXEC or ET_DYN (executables, PIE, static-pie); not objects or cores.
    match h.u16(16).ok_or_else(truncated)? {
        2 | 3 => {}
        other => return Err(format!("is an ELF file of type {other}, not an executable")),
    }
    // e_phoff, e_phentsize, e_phnum.
    let (phoff, entsize, count) = if is64 {
        (h.u64(0x20), h.u16(0x36), h.u16(0x38))
    } else {
        (h.u32(0x1c), h.u16(0x2a), h.u16(0x2c))
    };
    let (phoff, entsize, count) = (
        phoff.ok_or_else(truncated)?,
        entsize.ok_or_else(truncated)?,
        count.ok_or_else(truncated)?,
    );
    if entsize < if is64 { 56 } else { 32 } {
        return Err(format!("has program headers of {entsize} bytes, too small"));
    }
    let table_len = entsize * count;
    if table_len > MAX_PROGRAM_HEADERS_LEN {
        return Err(format!("has {count} program headers, more than we read"));
    }
    let table = read_at(file, phoff, table_len).ok_or_else(truncated)?;
    let t = Fields {
        bytes: &table,
        big_endian,
    };
    let word = |at: u64| if is64 { t.u64(at) } else { t.u32(at) };
    let mut has_interp = false;
    let mut notes_budget = MAX_NOTES_LEN;
    for entry in (0..count).map(|i| i * entsize) {
        let (offset, filesz, align) = if is64 {
            (word(entry + 8), word(entry + 32), word(entry + 48))
        } else {
            (word(entry + 4), word(entry + 16), word(entry + 28))
        };
        let ((offset, filesz), align) = offset.zip(filesz).zip(align).ok_or_else(truncated)?;
        match t.u32(entry).ok_or_else(truncated)? {
            PT_INTERP => has_interp = true,
            PT_NOTE if notes_budget > 0 => {
                let len = filesz.min(notes_budget);
                notes_budget -= len;
                let notes = read_at(file, offset, len).ok_or_else(truncated)?;
                if has_go_note(
                    &Fields {
                        bytes: &notes,
                        big_endian,
                    },
                    align,
                ) {
                    // Before Dynamic: a cgo binary has PT_INTERP, but Go's
                    // net package still makes the bind syscall itself.
                    return Ok(Kind::Go);
                }
            }
            _ => {}
        }
    }
    Ok(if has_interp {
        Kind::Dynamic
    } else {
        Kind::Static
    })
}

/// Whether a PT_NOTE segment holds a note owned by "Go" of type
/// NT_GO_BUILDID. Notes are (namesz, descsz, type, name, desc), name and
/// desc padded to 4 bytes, or 8 in a segment aligned to 8 (gABI; what
/// readelf does too).
fn has_go_note(notes: &Fields, segment_align: u64) -> bool {
    let pad = |n: u64| {
        if segment_align == 8 {
            n.next_multiple_of(8)
        } else {
            n.next_multiple_of(4)
        }
    };
    let mut at = 0u64;
    while let (Some(namesz), Some(descsz), Some(kind)) =
        (notes.u32(at), notes.u32(at + 4), notes.u32(at + 8))
    {
        let name_at = at + 12;
        let name = usize::try_from(name_at).ok().and_then(|from| {
            notes
                .bytes
                .get(from..from.checked_add(usize::try_from(namesz).ok()?)?)
        });
        // cmd/link writes the owner as "Go\0\0" (namesz 4), the gABI way
        // would be "Go\0": take both.
        if kind == NT_GO_BUILDID && matches!(name, Some(b"Go\0" | b"Go\0\0")) {
            return true;
        }
        // u32 sizes in a u64 offset cannot overflow; a note past the end
        // ends the loop at the next read.
        at = pad(pad(name_at + namesz) + descsz);
    }
    false
}

/// `len` bytes at `offset`, or None if the file is shorter.
fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests;
