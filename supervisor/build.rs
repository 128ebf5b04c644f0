//! Builds the preload library (`supervisor/preload/interposer.rs`) that
//! handoff embeds and hands to children with `preload = true`.
//!
//! rustc is called directly, not a second Cargo package: `cargo install`
//! installs only a package's binaries, so a `cdylib` member would never
//! reach the machine, and an embedded copy cannot drift from the handoff
//! that speaks its private `HANDOFF_PRELOAD` format. The library is
//! `no_std` with no dependency, so rustc alone is enough (about 0.3 s).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "supervisor/preload/interposer.rs";
    println!("cargo:rerun-if-changed=supervisor/preload");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("libhandoff_preload.so");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    // A musl library cannot be loaded into glibc programs (nearly every
    // server): such a handoff is built without one and says so.
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let libc = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || libc != "gnu" {
        std::fs::write(&out, b"").expect("write an empty preload library");
        println!(
            "cargo:warning=built without the preload library: target {target} is not linux-gnu"
        );
        return;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition=2021",
        "--crate-type=cdylib",
        "--crate-name=handoff_preload",
        "-Cpanic=abort",
        "-Copt-level=2",
        // Without LTO, code from the precompiled `core` (built to unwind)
        // leaves an undefined `rust_eh_personality`, and the loader
        // refuses the library.
        "-Clto=fat",
        "-Cstrip=symbols",
        "-Cdebuginfo=0",
        "--target",
        &target,
        "-o",
    ])
    .arg(&out)
    .arg(source);
    // Not CARGO_ENCODED_RUSTFLAGS: flags meant for handoff (a linker
    // script, a sanitizer) would break a library loaded into other
    // programs.
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("-Clinker=");
        arg.push(linker);
        cmd.arg(arg);
    }
    let status = cmd
        .status()
        .expect("run rustc to build the preload library");
    assert!(
        status.success(),
        "building the preload library ({source}) failed"
    );
}
