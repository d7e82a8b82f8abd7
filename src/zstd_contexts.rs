//! zstd contexts kept for reuse instead of made for each use.
//!
//! parquet 59 makes a zstd codec for every column chunk it reads or writes, and each codec
//! makes a compression and a decompression context (`ZSTDCodec::new`), also on a read, which
//! never compresses. zstd asks the CPU whether it has BMI2 each time it makes a context
//! (`ZSTD_cpuSupportsBmi2`: three `cpuid` instructions), and in a virtual machine every
//! `cpuid` exits to the hypervisor: 8.8 µs each on the benchmark machine, so 53 µs a column
//! chunk. That was 8-9% of the CPU of a one-hour dashboard query and of the flushes under a
//! tight memory budget (BENCHMARKS.md, "zstd contexts reused").
//!
//! The binary links with `--wrap` for zstd's four constructors and destructors (`build.rs`),
//! so every reference to them outside zstd itself comes here: a context freed is reset to
//! its defaults (`ZSTD_reset_session_and_parameters`: parameters, dictionary and session, as
//! a fresh one; zstd's documentation recommends reusing contexts) and kept, and the next one
//! asked for is a kept one. What is kept is bounded in count and in bytes
//! ([`MAX_KEPT_BYTES`]); a context past the bound, or one that does not reset, is freed.

use std::sync::Mutex;

use zstd::zstd_safe::zstd_sys::{
    ZSTD_CCtx, ZSTD_CCtx_reset, ZSTD_DCtx, ZSTD_DCtx_reset, ZSTD_ResetDirective, ZSTD_isError,
    ZSTD_sizeof_CCtx, ZSTD_sizeof_DCtx,
};

/// Bytes of kept contexts of each kind, at most. A decompression context is about 160 KiB,
/// an unused compression context a few KiB; one that compressed holds its window and tables
/// (about 1-3 MiB for a Parquet page at parquet's default level), so a few of those fill it.
pub const MAX_KEPT_BYTES: usize = 8 << 20;

/// Contexts of each kind kept, at most.
pub const MAX_KEPT: usize = 64;

/// Kept contexts of one kind: their addresses and their bytes in all.
struct Kept {
    contexts: Vec<(usize, usize)>,
    bytes: usize,
}

impl Kept {
    const fn new() -> Self {
        Kept {
            contexts: Vec::new(),
            bytes: 0,
        }
    }

    fn take(pool: &Mutex<Kept>) -> Option<usize> {
        let mut kept = pool.lock().unwrap_or_else(|e| e.into_inner());
        let (context, bytes) = kept.contexts.pop()?;
        kept.bytes -= bytes;
        Some(context)
    }

    /// Keeps `context` of `bytes`; `false` when the pool is full.
    fn put(pool: &Mutex<Kept>, context: usize, bytes: usize) -> bool {
        let mut kept = pool.lock().unwrap_or_else(|e| e.into_inner());
        if kept.contexts.len() >= MAX_KEPT || kept.bytes + bytes > MAX_KEPT_BYTES {
            return false;
        }
        kept.bytes += bytes;
        kept.contexts.push((context, bytes));
        true
    }
}

static COMPRESSION: Mutex<Kept> = Mutex::new(Kept::new());
static DECOMPRESSION: Mutex<Kept> = Mutex::new(Kept::new());

unsafe extern "C" {
    // zstd's own functions, as `--wrap` names them.
    fn __real_ZSTD_createCCtx() -> *mut ZSTD_CCtx;
    fn __real_ZSTD_freeCCtx(cctx: *mut ZSTD_CCtx) -> usize;
    fn __real_ZSTD_createDCtx() -> *mut ZSTD_DCtx;
    fn __real_ZSTD_freeDCtx(dctx: *mut ZSTD_DCtx) -> usize;
}

/// `ZSTD_createCCtx`: a kept context, or a new one.
#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_createCCtx() -> *mut ZSTD_CCtx {
    match Kept::take(&COMPRESSION) {
        Some(context) => context as *mut ZSTD_CCtx,
        // SAFETY: zstd's constructor, no arguments.
        None => unsafe { __real_ZSTD_createCCtx() },
    }
}

/// `ZSTD_freeCCtx`: `cctx` reset and kept, or freed.
///
/// # Safety
/// `cctx` is null or a context zstd made that no one uses after this call, as zstd requires.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wrap_ZSTD_freeCCtx(cctx: *mut ZSTD_CCtx) -> usize {
    if cctx.is_null() {
        return 0;
    }
    // SAFETY: `cctx` is a live context (above); reset and sizeof read and write only it.
    let kept = unsafe {
        ZSTD_isError(ZSTD_CCtx_reset(
            cctx,
            ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
        )) == 0
            && Kept::put(&COMPRESSION, cctx as usize, ZSTD_sizeof_CCtx(cctx))
    };
    if kept {
        0
    } else {
        // SAFETY: as above; freed once, here.
        unsafe { __real_ZSTD_freeCCtx(cctx) }
    }
}

/// `ZSTD_createDCtx`: a kept context, or a new one.
#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_createDCtx() -> *mut ZSTD_DCtx {
    match Kept::take(&DECOMPRESSION) {
        Some(context) => context as *mut ZSTD_DCtx,
        // SAFETY: zstd's constructor, no arguments.
        None => unsafe { __real_ZSTD_createDCtx() },
    }
}

/// `ZSTD_freeDCtx`: `dctx` reset and kept, or freed.
///
/// # Safety
/// As [`__wrap_ZSTD_freeCCtx`].
#[unsafe(no_mangle)]
unsafe extern "C" fn __wrap_ZSTD_freeDCtx(dctx: *mut ZSTD_DCtx) -> usize {
    if dctx.is_null() {
        return 0;
    }
    // SAFETY: as in `__wrap_ZSTD_freeCCtx`.
    let kept = unsafe {
        ZSTD_isError(ZSTD_DCtx_reset(
            dctx,
            ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
        )) == 0
            && Kept::put(&DECOMPRESSION, dctx as usize, ZSTD_sizeof_DCtx(dctx))
    };
    if kept {
        0
    } else {
        // SAFETY: as above.
        unsafe { __real_ZSTD_freeDCtx(dctx) }
    }
}

/// Contexts kept now, compression and decompression (for the tests).
#[cfg(test)]
fn kept() -> (usize, usize) {
    let count = |pool: &Mutex<Kept>| pool.lock().map(|k| k.contexts.len()).unwrap_or(0);
    (count(&COMPRESSION), count(&DECOMPRESSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests count what the pools hold: one at a time.
    static POOL_TESTS: Mutex<()> = Mutex::new(());

    /// The contexts parquet makes go through the wrappers, come back reset, and compress and
    /// decompress as new ones do: the same bytes out, whatever the last user set.
    #[test]
    fn contexts_are_kept_reset_and_reused() {
        let _alone = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let fresh = zstd::bulk::compress(&data, 3).unwrap();

        // A user that sets a level, a checksum and a dictionary, then frees its contexts. The
        // dictionary is bytes no run of `data` repeats, which its frame then refers to.
        let mut state = 0x2545_f491_u32;
        let dictionary: Vec<u8> = (0..65_536)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let with_dictionary = [&dictionary[..], &data[..]].concat();
        let mut compressor =
            zstd::bulk::Compressor::with_dictionary(19, &dictionary).expect("a compressor");
        compressor.include_checksum(true).unwrap();
        let odd = compressor.compress(&with_dictionary).unwrap();
        let mut decompressor = zstd::bulk::Decompressor::with_dictionary(&dictionary).unwrap();
        assert_eq!(
            decompressor
                .decompress(&odd, with_dictionary.len())
                .unwrap(),
            with_dictionary
        );
        drop(compressor);
        drop(decompressor);
        let (compression, decompression) = kept();
        assert!(compression >= 1, "the compression context was kept");
        assert!(decompression >= 1, "the decompression context was kept");

        // The next contexts are kept ones, with zstd's defaults again.
        let mut compressor = zstd::bulk::Compressor::new(3).unwrap();
        assert_eq!(compressor.compress(&data).unwrap(), fresh);
        let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
        assert_eq!(decompressor.decompress(&fresh, data.len()).unwrap(), data);
        // No dictionary is left behind: a frame made with one does not decompress.
        let without = decompressor.decompress(&odd, with_dictionary.len());
        assert!(without.is_err(), "decompressed without the dictionary");
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let _alone = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let contexts: Vec<_> = (0..MAX_KEPT + 8)
            .map(|_| zstd::bulk::Decompressor::new().unwrap())
            .collect();
        drop(contexts);
        let (_, decompression) = kept();
        assert!(decompression <= MAX_KEPT);
        let bytes = DECOMPRESSION.lock().unwrap().bytes;
        assert!(bytes <= MAX_KEPT_BYTES, "{bytes} bytes kept");
    }
}
