//! Reads of kernel memory at addresses the programs hold as numbers, through
//! `bpf_probe_read_kernel*`: a wrong address fails the read instead of
//! faulting. Nothing here knows the layout of a kernel struct.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str};
use watcher_common::NAME_MAX;

use crate::error::Error;

/// The `T` at kernel address `base + offset`.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Result<T, Error> {
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(Error::helper)
}

/// Copies the dentry name at kernel address `name`, with its NUL, to
/// `dst`, which has room for `NAME_MAX` bytes; the bytes written.
#[inline(always)]
pub fn read_component(dst: *mut u8, name: u64) -> Option<u32> {
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, name as *const _) };
    (n > 0).then_some(n as u32)
}
