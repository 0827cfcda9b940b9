//! Link options for the eBPF object.

fn main() {
    // bpf-linker asks LLVM to expand copies in order (`memcpy` patterns a
    // JIT may match), which also stops it from expanding `memset`: every
    // run of zeroed fields became a call to a byte loop that the verifier
    // unrolls at each call site. Without it LLVM writes them as stores.
    println!("cargo::rustc-link-arg=--disable-expand-memcpy-in-order");
}
