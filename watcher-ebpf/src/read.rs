//! Reads of kernel memory at addresses the programs hold as numbers, through
//! `bpf_probe_read_kernel*`: a wrong address fails the read instead of
//! faulting. Nothing here knows the layout of a kernel struct.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str};
use watcher_common::NAME_MAX;

use crate::error::Error;

/// What [`read`] reads: integers, of which any bytes are a valid value.
pub trait Plain {}
impl Plain for u32 {}
impl Plain for u64 {}

/// The `T` at kernel address `base + offset`.
#[inline(always)]
pub fn read<T: Plain>(base: u64, offset: u32) -> Result<T, Error> {
    // SAFETY: the helper checks the address itself (a bad one fails the
    // read, it never faults), and any bytes it copies are a valid `T`
    // (an integer, see `Plain`).
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(Error::helper)
}

/// Copies the dentry name at kernel address `name`, with its NUL, to
/// `dst`; the bytes written.
///
/// # Safety
///
/// `dst` must be valid for writes of `NAME_MAX` bytes.
#[inline(always)]
pub unsafe fn read_component(dst: *mut u8, name: u64) -> Option<u32> {
    // SAFETY: the helper writes at most `NAME_MAX` bytes, for which the
    // caller guarantees room at `dst`, and checks the address `name`
    // itself (a bad one fails the read, it never faults).
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, name as *const _) };
    (n > 0).then_some(n as u32)
}
