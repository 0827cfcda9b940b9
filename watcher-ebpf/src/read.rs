//! Reads of kernel memory at addresses the programs hold as numbers, through
//! `bpf_probe_read_kernel*`: a wrong address fails the read instead of
//! faulting. Nothing here knows the layout of a kernel struct.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str};
use watcher_common::NAME_MAX;

use crate::error::HelperError;

/// What [`read`] reads: integers, of which any bytes are a valid value.
pub trait Plain {}
impl Plain for u32 {}
impl Plain for u64 {}

/// The `T` at kernel address `base + offset`.
#[inline(always)]
pub fn read<T: Plain>(base: u64, offset: u32) -> Result<T, HelperError> {
    // SAFETY: the helper checks the address itself (a bad one fails the
    // read, it never faults), and any bytes it copies are a valid `T`
    // (an integer, see `Plain`).
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }
        .map_err(|code| HelperError(code.into()))
}

/// Copies the dentry name at kernel address `name`, with its NUL, into
/// `buf` at `at & MASK`; the bytes written. Verifier: masked, the offset
/// has a bound it can check, whatever `at` is; `MASK + NAME_MAX` must fit
/// in `buf`, which the compiler checks.
#[inline(always)]
pub fn read_component<const N: usize, const MASK: usize>(
    buf: &mut [u8; N],
    at: usize,
    name: u64,
) -> Option<u32> {
    const { assert!(MASK + NAME_MAX <= N) };
    // SAFETY: `at & MASK` is at most MASK, so inside `buf`.
    let dst = unsafe { buf.as_mut_ptr().add(at & MASK) };
    // SAFETY: the helper writes at most NAME_MAX bytes, which fit in `buf`
    // after `dst` (asserted above), and checks the address `name` itself
    // (a bad one fails the read, it never faults).
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, name as *const _) };
    (n > 0).then_some(n as u32)
}
