//! The release build's code layout (crates/berth/build.rs): the committed
//! list of functions, and the script that makes it from a callgrind profile.

use std::{collections::HashSet, path::Path, process::Command};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

#[test]
fn committed_list_names_each_function_once() {
    let list = std::fs::read_to_string(repo().join("crates/berth/symbol-order.txt")).unwrap();
    let names: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
    // A node runs some 3,000 functions; a list much shorter than that was
    // made from a profile that missed most of the serving path.
    assert!(names.len() > 1_000, "{} names", names.len());
    let mut seen = HashSet::new();
    for name in &names {
        assert!(seen.insert(name), "{name} is listed twice");
        // LLD reads one symbol per line; callgrind's recursion marks
        // ("f'2"), its pseudo-functions ("(below main)", "0x401000") and
        // blanks would name no symbol.
        let symbol_char = |c: char| c.is_ascii_alphanumeric() || "_.$".contains(c);
        assert!(
            name.starts_with(|c: char| !c.is_ascii_digit()) && name.chars().all(symbol_char),
            "{name:?} is not a symbol name"
        );
    }
}

/// A profile in callgrind's format with compressed names, a call (whose
/// cost line is the callee's inclusive cost), a recursive activation, a
/// shared library, callgrind's pseudo-functions (which name no symbol) and
/// a return to an object by its id alone.
const PROFILE: &str = "\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) EXECUTABLE
fl=(1) ???
fn=(1) hot
0 100
cfn=(2) cold
calls=1 0
0 5000
fn=(2) cold
0 7
fn=(3) rec
+1 10
fn=(4) rec'2
* 100
fn=(6) (below main)
0 3
fn=(7) 0x0000000000401000
0 2
ob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
fn=(5) malloc
0 99999
ob=(1)
fn=(2)
0 1
";

#[test]
fn script_lists_the_executables_functions_by_their_own_cost() {
    let dir = tempfile::tempdir().unwrap();
    // Callgrind names the executable by its real path, as the script does.
    let executable = dir.path().canonicalize().unwrap().join("berth");
    std::fs::write(&executable, "").unwrap();
    let profile = dir.path().join("profile");
    let text = PROFILE.replace("EXECUTABLE", executable.to_str().unwrap());
    std::fs::write(&profile, text).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("scripts/lib/symbol_order.py"))
        .arg(&profile)
        .arg(&executable)
        .output()
        .expect("python3 runs scripts/lib/symbol_order.py; install python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    // rec: 10 + 100 of its recursion; hot: 100, not the 5,000 of its call;
    // cold: 7 + 1; malloc is libc's; the pseudo-functions are left out.
    assert_eq!(names, ["rec", "hot", "cold"]);
}

/// build.rs gives the linker `--symbol-ordering-file` on x86_64 Linux when
/// rustc is 1.90 or later, trusting that its default linker is then LLD;
/// another linker would fail the release build. This builds a program the
/// same way, with the same toolchain, and checks that the link succeeds
/// and that the order is followed.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
#[test]
fn the_default_linker_follows_a_symbol_order() {
    let version = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let version = String::from_utf8(version.stdout).unwrap();
    let minor: u32 = version
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .and_then(|r| r.split('.').nth(1)?.parse().ok())
        .expect("rustc -vV names its release");
    if minor < 90 {
        eprintln!("rustc 1.{minor}: build.rs gives no symbol order, nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("main.rs");
    std::fs::write(
        &source,
        "#[no_mangle] #[inline(never)] pub extern \"C\" fn layout_first() -> u32 { 1 }\n\
         #[no_mangle] #[inline(never)] pub extern \"C\" fn layout_second() -> u32 { 2 }\n\
         fn main() {\n\
             let f = std::hint::black_box([layout_first as extern \"C\" fn() -> u32, layout_second]);\n\
             std::process::exit((f[0]() + f[1]()) as i32 - 3)\n\
         }\n",
    )
    .unwrap();
    let order = dir.path().join("order.txt");
    std::fs::write(
        &order,
        "# the reverse of the source's order\nlayout_second\nlayout_first\n",
    )
    .unwrap();
    let program = dir.path().join("program");
    let out = Command::new("rustc")
        // Unoptimised, and called through pointers, so that neither
        // function is folded away.
        .args([
            "--edition",
            "2021",
            "-C",
            "opt-level=0",
            "-C",
            "link-arg=-Xlinker",
        ])
        .arg(format!(
            "-Clink-arg=--symbol-ordering-file={}",
            order.display()
        ))
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let symbols = Command::new("nm")
        .arg(&program)
        .output()
        .expect("nm (binutils) runs");
    let symbols = String::from_utf8(symbols.stdout).unwrap();
    let address = |name: &str| {
        let line = symbols
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap();
        u64::from_str_radix(line.split(' ').next().unwrap(), 16).unwrap()
    };
    assert!(
        address("layout_second") < address("layout_first"),
        "the linker ignored the order:\n{symbols}"
    );
}
