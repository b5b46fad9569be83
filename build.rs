//! Two jobs before the crate compiles:
//! - builds the rebind shim (src/process/rebind.c) as a shared object that the binary embeds
//!   (`include_bytes!`) and writes to a private file when it wraps a program: nothing to `make`
//!   or to find at run time;
//! - finds the commit the binary is built from, for `--version` (`WEBSOCKIFY_COMMIT`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    rebind_shim();
    let commit = commit();
    println!("cargo:rustc-env=WEBSOCKIFY_COMMIT={commit}");
}

fn rebind_shim() {
    let source = "src/process/rebind.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shim = out.join("rebind.so");
    // cc finds the C compiler the way cargo users expect (CC, the target's cross compiler);
    // it builds static archives only, so the link into a shared object is ours.
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o"])
        .arg(&shim)
        .arg(source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler for {source}: {e}"));
    assert!(status.success(), "building {source} failed: {status}");
}

/// The short commit hash, from the first of: `WEBSOCKIFY_COMMIT` (whoever builds from an
/// unpacked archive and knows it), this checkout's git (only if the checkout is this crate:
/// an archive unpacked inside some other repository must not take that one's commit), the
/// `.git-commit` file that `git archive` fills in (export-subst); else "unknown".
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=WEBSOCKIFY_COMMIT");
    if let Some(commit) = std::env::var("WEBSOCKIFY_COMMIT")
        .ok()
        .filter(|c| is_hash(c))
    {
        return commit;
    }
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    if let Some(commit) = from_git(&manifest_dir) {
        return commit;
    }
    let archival = manifest_dir.join(".git-commit");
    println!("cargo:rerun-if-changed={}", archival.display());
    std::fs::read_to_string(&archival)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|c| is_hash(c))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn from_git(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status.success().then_some(())?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself (another branch), the branch's ref (a commit),
    // packed-refs (the ref packed away). Only files that exist: cargo would rerun this script
    // on every build for a missing one.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(head_ref);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    is_hash(&commit).then_some(commit)
}

/// A hex commit hash of 7 to 40 digits: anything else (an unexpanded `$Format:%h$`, a typo in
/// the environment) is no commit.
fn is_hash(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}
