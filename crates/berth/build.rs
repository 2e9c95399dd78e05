//! Lays out the release executable's code so that what a running node
//! executes lies together.
//!
//! A node runs about 4 MiB of the executable's 21.6 MiB of code, but that
//! code is spread over the whole text section. The kernel maps code in
//! 64 KiB runs around each page fault, so a node kept some 13 MiB of code
//! resident, most of its peak RSS (docs/performance.md, "Code layout").
//! `symbol-order.txt` lists the functions a node executes, hottest first,
//! and the linker places them at the start of the text section in that
//! order. The list is made by `scripts/symbol-order.sh`; a stale list only
//! loses the saving, because names it lacks keep the linker's own order.
//! It names the symbols of `cargo build --release -p berth`: a build with
//! other packages of the workspace unifies dependency features with
//! theirs, and many names change.
//!
//! The option is given only where the linker is known to be LLD: release
//! builds for x86_64 Linux by rustc 1.90 or later (whose default linker
//! there is LLD), with no linker chosen in the configuration. Another
//! linker would refuse `--symbol-ordering-file` and fail the build.
//! `BERTH_SYMBOL_ORDER=0` turns it off.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let order = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("symbol-order.txt");
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-env-changed=BERTH_SYMBOL_ORDER");
    if !links_with_lld() || env::var_os("BERTH_SYMBOL_ORDER").is_some_and(|v| v == "0") {
        return;
    }
    // `-Xlinker` hands each argument over whole, where `-Wl,` would split
    // a path that contains a comma.
    for arg in [
        "--no-warn-symbol-ordering".to_owned(),
        format!("--symbol-ordering-file={}", order.display()),
    ] {
        println!("cargo::rustc-link-arg-bin=berth=-Xlinker");
        println!("cargo::rustc-link-arg-bin=berth={arg}");
    }
}

/// Whether this is a release build whose link step is known to run LLD.
fn links_with_lld() -> bool {
    let var = |name| env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" || var("TARGET") != "x86_64-unknown-linux-gnu" {
        return false;
    }
    // A linker set in `.cargo/config.toml` or by flags may be any linker.
    if env::var_os("RUSTC_LINKER").is_some() || var("CARGO_ENCODED_RUSTFLAGS").contains("link") {
        return false;
    }
    let Ok(out) = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
    else {
        return false;
    };
    // rustc 1.90 made LLD the default linker of x86_64-unknown-linux-gnu.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("release: "))
        .and_then(|release| release.split('.').nth(1)?.parse::<u32>().ok())
        .is_some_and(|minor| minor >= 90)
}
