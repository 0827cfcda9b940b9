//! Reads of kernel memory at addresses the programs hold as numbers: a
//! wrong address never faults. Nothing here knows the layout of a kernel
//! struct.
//!
//! With `FAST_READS` on (the kernel's `bpf_rdonly_cast` can make a number
//! a pointer, see `watcher_common::kfunc`), a read is a direct load, which
//! the JIT makes fault-safe; otherwise it goes through
//! `bpf_probe_read_kernel`, a helper call per read. The verifier knows
//! which: the flag is a read-only global, and the other branch is dead
//! code it removes.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str};
use watcher_common::{NAME_MAX, kfunc};

use crate::error::HelperError;

/// Whether reads are direct loads: set by user space when the kernel can
/// take the `bpf_rdonly_cast` calls.
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static FAST_READS: u32 = 0;

/// `-EFAULT`, what the helper fails with on a bad address.
const EFAULT: i64 = -14;

/// What [`read`] reads: integers, of which any bytes are a valid value.
pub trait Plain {}
impl Plain for u32 {}
impl Plain for u64 {}

/// The `T` at kernel address `base + offset`. A `base` of 0 (a NULL
/// pointer read earlier) fails the read, as the helper would; any other
/// address the load cannot read gives 0.
#[inline(always)]
pub fn read<T: Plain>(base: u64, offset: u32) -> Result<T, HelperError> {
    let addr = base + u64::from(offset);
    // SAFETY: a reference to a static is valid and aligned, and nothing
    // writes the static once the program is loaded; volatile, so that the
    // value user space sets is read, not the initialiser.
    if unsafe { core::ptr::read_volatile(&FAST_READS) } != 0 {
        if base == 0 {
            return Err(HelperError(EFAULT));
        }
        // SAFETY: the pointer comes from `bpf_rdonly_cast`, through which
        // the verifier turns the load into a fault-safe one (a bad address
        // reads as 0), and any bytes are a valid `T` (an integer, see
        // `Plain`).
        return Ok(unsafe { core::ptr::read_volatile(untrusted(addr).cast::<T>()) });
    }
    // SAFETY: the helper checks the address itself (a bad one fails the
    // read, it never faults), and any bytes it copies are a valid `T`.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|code| HelperError(code.into()))
}

/// `bpf_rdonly_cast(addr, 0)`: `addr` as a pointer the verifier lets a
/// program load from (read-only, untrusted memory of any size). Verifier
/// workaround: the kfunc call is written as its raw instruction, whose BTF
/// id user space fills in (see `watcher_common::kfunc`), because the
/// loader cannot resolve kfuncs; the verifier rewrites the call into a
/// register move, so it costs nothing at run time.
#[inline(always)]
unsafe fn untrusted(addr: u64) -> *const u8 {
    let ptr: u64;
    // SAFETY: the instruction is a kfunc call, which takes its arguments
    // in r1-r2, returns in r0 and may clobber r1-r5, as declared; it
    // touches no memory and no stack of the program.
    unsafe {
        core::arch::asm!(
            ".quad {call}",
            call = const kfunc::CALL_INSN,
            inlateout("r1") addr => _,
            inlateout("r2") 0u64 => _,
            lateout("r0") ptr,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(pure, nomem, nostack),
        );
    }
    ptr as *const u8
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
