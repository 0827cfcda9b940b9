//! Builds watcher-ebpf for the BPF target and leaves the object in OUT_DIR,
//! where `src/bpf.rs` embeds it.

fn main() -> anyhow::Result<()> {
    // The eBPF programs are built from these crates; aya-build only tracks
    // the first.
    println!("cargo:rerun-if-changed=../watcher-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "watcher-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../watcher-ebpf"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
