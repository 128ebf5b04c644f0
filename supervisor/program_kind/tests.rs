use super::*;
use std::os::unix::fs::PermissionsExt;

/// A program segment of a hand-made ELF: its type, alignment and bytes.
struct Seg(u64, u64, Vec<u8>);

/// An ELF executable with only a header and `segments`, in any class
/// and byte order; the segments' bytes follow the program headers.
fn elf(is64: bool, big_endian: bool, segments: &[Seg]) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, value: u64, len: usize| {
        let bytes = &value.to_be_bytes()[8 - len..];
        if big_endian {
            out.extend(bytes);
        } else {
            out.extend(bytes.iter().rev());
        }
    };
    let (word, header, entry) = if is64 { (8, 64, 56) } else { (4, 52, 32) };
    let mut out = vec![
        0x7f,
        b'E',
        b'L',
        b'F',
        1 + u8::from(is64),
        1 + u8::from(big_endian),
        1,
    ];
    out.resize(16, 0);
    put(&mut out, 3, 2); // ET_DYN
    put(&mut out, 62, 2); // EM_X86_64
    put(&mut out, 1, 4);
    put(&mut out, 0, word); // e_entry
    put(&mut out, header, word); // e_phoff
    put(&mut out, 0, word); // e_shoff
    put(&mut out, 0, 4); // e_flags
    put(&mut out, header, 2);
    put(&mut out, entry, 2);
    put(&mut out, segments.len() as u64, 2);
    put(&mut out, 0, 6); // no section headers
    assert_eq!(out.len() as u64, header);
    let mut data_at = header + entry * segments.len() as u64;
    for Seg(kind, align, data) in segments {
        let len = data.len() as u64;
        put(&mut out, *kind, 4);
        if is64 {
            put(&mut out, 4, 4); // p_flags
            for value in [data_at, 0, 0, len, len, *align] {
                put(&mut out, value, 8);
            }
        } else {
            for value in [data_at, 0, 0, len, len, 4, *align] {
                put(&mut out, value, 4);
            }
        }
        data_at += len;
    }
    for Seg(_, _, data) in segments {
        out.extend(data);
    }
    out
}

/// One note: sizes, type, then name and desc each padded to `align`.
fn note(big_endian: bool, align: usize, name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let word = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(word(name.len() as u32));
    out.extend(word(desc.len() as u32));
    out.extend(word(kind));
    for part in [name, desc] {
        out.extend(part);
        out.resize(out.len().next_multiple_of(align), 0);
    }
    out
}

fn interp() -> Seg {
    Seg(PT_INTERP, 1, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())
}

/// The notes a Go binary has: GNU's build id first, then Go's.
fn go_notes(big_endian: bool) -> Seg {
    let mut notes = note(big_endian, 4, b"GNU\0", 3, &[0xab; 20]);
    notes.extend(note(big_endian, 4, b"Go\0\0", 4, b"hWaWcadMn2J9_wpk/vTcx"));
    Seg(PT_NOTE, 4, notes)
}

/// A Go note after one whose desc ends off an 8-byte boundary, in a
/// segment aligned to 8: found only if both are padded to 8.
fn aligned_8_notes() -> Seg {
    let mut notes = note(false, 8, b"GNU\0", 5, &[1; 4]);
    notes.extend(note(false, 8, b"Go\0\0", 4, b"id"));
    Seg(PT_NOTE, 8, notes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn no_env() -> Vec<(OsString, OsString)> {
    Vec::new()
}

fn script(kind: Kind, interpreter: &Path) -> Kind {
    Kind::Script {
        interpreter: interpreter.to_path_buf(),
        kind: Box::new(kind),
    }
}

#[test]
fn reads_the_program_headers_in_either_class_and_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    // A GNU property note in an 8-aligned segment, as gcc's output has.
    let property = Seg(PT_NOTE, 8, note(false, 8, b"GNU\0", 5, &[0; 16]));
    let cases = [
        (
            "dynamic",
            elf(true, false, &[property, interp()]),
            Kind::Dynamic,
        ),
        ("static", elf(true, false, &[]), Kind::Static),
        ("go", elf(true, false, &[go_notes(false)]), Kind::Go),
        (
            "cgo",
            elf(true, false, &[interp(), go_notes(false)]),
            Kind::Go,
        ),
        ("be32-dynamic", elf(false, true, &[interp()]), Kind::Dynamic),
        ("be32-static", elf(false, true, &[]), Kind::Static),
        ("be32-go", elf(false, true, &[go_notes(true)]), Kind::Go),
        ("le32-go", elf(false, false, &[go_notes(false)]), Kind::Go),
        // The owner as the gABI spells it, rather than as cmd/link does.
        (
            "go-after-8-aligned",
            elf(true, false, &[aligned_8_notes()]),
            Kind::Go,
        ),
        (
            "gabi-go",
            elf(
                true,
                false,
                &[Seg(PT_NOTE, 4, note(false, 4, b"Go\0", 4, b"id"))],
            ),
            Kind::Go,
        ),
        (
            "other-owner",
            elf(
                true,
                false,
                &[Seg(PT_NOTE, 4, note(false, 4, b"Gone\0", 4, b"id"))],
            ),
            Kind::Static,
        ),
        ("be64-dynamic", elf(true, true, &[interp()]), Kind::Dynamic),
        // The right bytes in the wrong byte order are not Go's note.
        (
            "be32-le-note",
            elf(false, true, &[go_notes(false)]),
            Kind::Static,
        ),
    ];
    for (name, bytes, want) in cases {
        let path = write(dir.path(), name, &bytes);
        assert_eq!(inspect(&path, &no_env()), want, "{name}");
    }
    let go = inspect(
        &write(dir.path(), "g", &elf(true, false, &[go_notes(false)])),
        &no_env(),
    );
    assert_eq!(go, Kind::Go);
    let problem = preload_problem(&dir.path().join("g"), &no_env()).unwrap();
    assert!(
        problem.contains("is a Go program") && problem.contains("LISTEN_FDS"),
        "{problem}"
    );
    let problem = preload_problem(&dir.path().join("static"), &no_env()).unwrap();
    assert!(problem.contains("statically linked"), "{problem}");
    assert_eq!(
        preload_problem(&dir.path().join("dynamic"), &no_env()),
        None
    );
}

#[test]
fn a_truncated_or_hostile_file_is_unknown_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let whole = elf(true, false, &[interp(), go_notes(false)]);
    // Every cut lands in the headers or in the notes, which are read
    // whole: none is a program we can judge.
    for len in 0..whole.len() {
        let path = write(dir.path(), "cut", &whole[..len]);
        let kind = inspect(&path, &no_env());
        assert!(matches!(kind, Kind::Unknown(_)), "{len} bytes: {kind:?}");
        assert_eq!(preload_problem(&path, &no_env()), None, "{len} bytes");
    }
    assert_eq!(
        inspect(&write(dir.path(), "cut", &whole), &no_env()),
        Kind::Go
    );
    // Fields that point anywhere: a count past the cap, an offset past
    // the end, a note whose sizes overflow.
    let mut many = whole.clone();
    many[0x38..0x3a].copy_from_slice(&0xfffeu16.to_le_bytes());
    let mut far = whole.clone();
    far[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut small = whole.clone();
    small[0x36..0x38].copy_from_slice(&8u16.to_le_bytes());
    let mut object = whole.clone();
    object[16] = 1; // ET_REL
    for (name, bytes) in [
        ("many", many),
        ("far", far),
        ("small", small),
        ("object", object),
    ] {
        let kind = inspect(&write(dir.path(), name, &bytes), &no_env());
        assert!(matches!(kind, Kind::Unknown(_)), "{name}: {kind:?}");
    }
    let mut huge = note(false, 4, b"Go\0", 4, b"x");
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut wide = note(false, 4, b"GNU\0", 3, b"x");
    wide[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    wide.extend(note(false, 4, b"Go\0", 4, b"x"));
    for (name, notes) in [("huge", huge), ("wide", wide)] {
        let path = write(
            dir.path(),
            name,
            &elf(true, false, &[Seg(PT_NOTE, 4, notes)]),
        );
        assert_eq!(inspect(&path, &no_env()), Kind::Static, "{name}");
    }
    let text = write(dir.path(), "text", b"just words\n");
    let Kind::Unknown(why) = inspect(&text, &no_env()) else {
        panic!("text is not Unknown");
    };
    assert!(why.contains("neither an ELF file nor a #! script"), "{why}");
    for path in [dir.path().to_path_buf(), dir.path().join("missing")] {
        assert!(
            matches!(inspect(&path, &no_env()), Kind::Unknown(_)),
            "{}",
            path.display()
        );
    }
}

#[test]
fn follows_scripts_to_their_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let sh = write(dir.path(), "sh-script", b"#!/bin/sh\necho hi\n");
    let want = script(Kind::Dynamic, Path::new("/bin/sh"));
    assert_eq!(inspect(&sh, &no_env()), want);
    assert_eq!(preload_problem(&sh, &no_env()), None);

    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let python = write(&bin, "python3", &elf(true, false, &[interp()]));
    let env = vec![(OsString::from("PATH"), bin.clone().into_os_string())];
    for line in [
        "#!/usr/bin/env python3\n",
        "#! /usr/bin/env -S A=1 python3 -u\n",
    ] {
        let path = write(dir.path(), "py", line.as_bytes());
        assert_eq!(
            inspect(&path, &env),
            script(Kind::Dynamic, &python),
            "{line}"
        );
    }
    // A bare name is found in the child's PATH, as execvp would.
    assert_eq!(inspect(Path::new("python3"), &env), Kind::Dynamic);
    let nowhere = vec![(
        OsString::from("PATH"),
        dir.path().join("none").into_os_string(),
    )];
    let Kind::Unknown(why) = inspect(&dir.path().join("py"), &nowhere) else {
        panic!("python3 found in an empty PATH");
    };
    assert!(why.contains("cannot find `python3`"), "{why}");

    let interpreter = write(dir.path(), "static-interp", &elf(true, false, &[]));
    let wrapper = write(dir.path(), "wrapper", b"#!/bin/sh\n");
    let run = write(
        dir.path(),
        "run",
        format!("#!{}\n", interpreter.display()).as_bytes(),
    );
    let problem = preload_problem(&run, &no_env()).unwrap();
    for part in [&run, &interpreter] {
        assert!(
            problem.contains(&format!("`{}`", part.display())),
            "{problem}"
        );
    }
    assert!(problem.contains("statically linked"), "{problem}");
    assert_eq!(preload_problem(&wrapper, &no_env()), None);
    for line in ["#!\n", "#!   \n", "#!/usr/bin/env -i\n"] {
        let path = write(dir.path(), "empty", line.as_bytes());
        assert!(matches!(inspect(&path, &env), Kind::Unknown(_)), "{line:?}");
    }
}

/// Whether the kernel runs `path`: spawned, not the exit status (the
/// script chain ends in `exit 0`). ETXTBSY means another test thread forked
/// while our write's fd was open; it passes when that child execs.
fn kernel_runs(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::process::Command::new(path).status() {
            Ok(_) => return true,
            Err(e)
                if e.raw_os_error() == Some(libc::ETXTBSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::ELOOP),
                    "{}: {e}",
                    path.display()
                );
                return false;
            }
        }
    }
}

#[test]
fn follows_as_many_scripts_as_the_kernel_runs_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut previous = PathBuf::from("/bin/sh");
    let mut want = Kind::Dynamic;
    let mut ran = 0;
    for level in 1..=8 {
        let path = write(
            dir.path(),
            &format!("s{level}"),
            format!("#!{}\nexit 0\n", previous.display()).as_bytes(),
        );
        want = script(want, &previous);
        let kind = inspect(&path, &no_env());
        if kernel_runs(&path) {
            assert_eq!(kind, want, "{level} levels, which the kernel runs");
            ran = level;
        } else {
            let Kind::Unknown(why) = kind else {
                panic!("{level} levels, which the kernel refuses: {kind:?}");
            };
            assert!(
                why.contains("`#!` interpreters, which Linux refuses"),
                "{why}"
            );
        }
        previous = path;
    }
    assert_eq!(ran, MAX_SCRIPT_LEVELS, "the kernel ran {ran} levels");
}

#[test]
fn set_id_programs_of_another_owner_are_secure_exec() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = elf(true, false, &[interp()]);
    let ours = write(dir.path(), "ours", &bytes);
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // The child runs with our ids, and a setuid program of its own
    // user changes none: no secure-execution mode.
    assert_eq!(inspect(&ours, &no_env()), Kind::Dynamic);
    let locking = write(dir.path(), "locking", &bytes);
    if nix::unistd::getuid().is_root() {
        std::os::unix::fs::chown(&locking, None, Some(65534)).unwrap();
    }
    std::fs::set_permissions(&locking, std::fs::Permissions::from_mode(0o2745)).unwrap();
    assert_eq!(
        inspect(&locking, &no_env()),
        Kind::Dynamic,
        "setgid without g+x"
    );

    let theirs = if nix::unistd::getuid().is_root() {
        let path = write(dir.path(), "theirs", &bytes);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
        path
    } else {
        // Not root: a setuid program someone else owns, if any.
        let Some(path) = ["/usr/bin/passwd", "/usr/bin/gpasswd", "/usr/bin/su"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o4000 != 0))
        else {
            eprintln!("skipped: not root and no setuid program found");
            return;
        };
        path
    };
    assert_eq!(inspect(&theirs, &no_env()), Kind::SecureExec);
    let problem = preload_problem(&theirs, &no_env()).unwrap();
    assert!(
        problem.contains("is set-user-ID") && problem.contains("secure-execution"),
        "{problem}"
    );
}

#[test]
fn reads_the_capability_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "capable", &elf(true, false, &[interp()]));
    assert!(!has_file_capabilities(&path));
    // vfs_cap_data revision 2, effective, CAP_NET_BIND_SERVICE permitted.
    let mut value = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        value.extend(word.to_le_bytes());
    }
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated names and a buffer of the length given,
    // all alive across the call.
    let set = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if set != 0 {
        eprintln!(
            "skipped: cannot set file capabilities here: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    assert!(has_file_capabilities(&path));
    // Root gains nothing from file capabilities; anyone else does.
    let want = if nix::unistd::getuid().is_root() {
        Kind::Dynamic
    } else {
        Kind::SecureExec
    };
    assert_eq!(inspect(&path, &no_env()), want);
}

#[test]
fn real_programs_on_this_machine() {
    assert_eq!(inspect(Path::new("/bin/sh"), &no_env()), Kind::Dynamic);
    // Static-pie: PT_DYNAMIC but no PT_INTERP (checked with readelf -l).
    let ldconfig = Path::new("/sbin/ldconfig");
    if ldconfig.exists() {
        assert_eq!(inspect(ldconfig, &no_env()), Kind::Static);
        let problem = preload_problem(ldconfig, &no_env()).unwrap();
        assert!(problem.contains("statically linked"), "{problem}");
    } else {
        eprintln!("skipped: no /sbin/ldconfig");
    }
    let docker = Path::new("/usr/local/bin/docker");
    if docker.exists() {
        assert_eq!(inspect(docker, &no_env()), Kind::Go);
    } else {
        eprintln!("skipped: no Go program at /usr/local/bin/docker");
    }
}
