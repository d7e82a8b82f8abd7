//! Link options of the `timefusion` binary.

fn main() {
    // zstd's context constructors and destructors go through `src/zstd_contexts.rs`, which
    // keeps freed contexts for reuse (parquet makes two for every column chunk it reads or
    // writes, and zstd runs `cpuid` for each, which exits to the hypervisor in a VM).
    for symbol in [
        "ZSTD_createCCtx",
        "ZSTD_freeCCtx",
        "ZSTD_createDCtx",
        "ZSTD_freeDCtx",
    ] {
        println!("cargo:rustc-link-arg-bins=-Wl,--wrap={symbol}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
