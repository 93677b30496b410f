//! Embeds the BPF object when `cargo xtask build-ebpf` has built it. Without it netta
//! still builds, and reports "eBPF object not built" at run time before polling /proc.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(netta_embedded)");
    println!("cargo:rerun-if-env-changed=NETTA_BPF_OBJECT");
    let path = match std::env::var_os("NETTA_BPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ebpf/bpfel-unknown-none/release/netta-ebpf"),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    if path.is_file() {
        let path = path.canonicalize().expect("canonical BPF object path");
        println!("cargo:rustc-cfg=netta_embedded");
        println!("cargo:rustc-env=NETTA_BPF_OBJECT={}", path.display());
    } else {
        println!(
            "cargo:warning=BPF object {} not found: netta will fall back to /proc polling (run `cargo xtask build-ebpf`)",
            path.display()
        );
    }
}
