//! Builds the rebind shim (src/process/rebind.c) as a shared object that the binary embeds
//! (`include_bytes!`) and writes to a private file when it wraps a program: nothing to `make`
//! or to find at run time.

use std::path::PathBuf;

fn main() {
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
