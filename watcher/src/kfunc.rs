//! The programs' direct reads of kernel memory (`watcher_common::kfunc`):
//! whether this kernel takes them, and the object with its
//! `bpf_rdonly_cast` calls made for this kernel before aya loads it.

use std::os::fd::{FromRawFd as _, OwnedFd};

use btf_rs::{Btf, Type};
use object::{Object as _, ObjectSection as _, SectionKind};
use watcher_common::kfunc;

/// What reading without [`fast_reads`] means, for the log and `watcher
/// check`.
pub const SLOW_READS: &str = "kernel memory read through bpf_probe_read_kernel, slower: this \
                              kernel's verifier does not take loads through bpf_rdonly_cast \
                              (Linux 6.17 and later do)";

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the eBPF object is not a readable ELF file: {0}")]
    Elf(#[source] object::Error),
    #[error("the eBPF object has no bpf_rdonly_cast call to fill in")]
    NoCall,
}

/// The BTF id of the `bpf_rdonly_cast` kfunc in the kernel's BTF, when the
/// verifier takes the programs' loads through it (Linux 6.17 and later;
/// the kfunc itself came in 6.2); `None` otherwise, and the programs read
/// through `bpf_probe_read_kernel`.
pub fn fast_reads(btf: &Btf) -> Option<u32> {
    let id = btf
        .resolve_ids_by_name("bpf_rdonly_cast")
        .ok()?
        .into_iter()
        .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(Type::Func(_))))?;
    verifier_takes(id).then_some(id)
}

/// Whether the verifier takes a load through `bpf_rdonly_cast(addr, 0)`
/// (kfunc BTF id `id`) in a tracepoint program: one of seven
/// instructions, loaded and closed.
fn verifier_takes(id: u32) -> bool {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
    // bpf_get_current_task's helper number.
    const GET_CURRENT_TASK: i32 = 35;
    let call = |src_reg: u8, imm: i32| insn(0x85, 0, src_reg, 0, imm);
    let insns = [
        call(0, GET_CURRENT_TASK),
        // r1 = r0; r2 = 0
        insn(0xbf, 1, 0, 0, 0),
        insn(0xb7, 2, 0, 0, 0),
        // r0 = bpf_rdonly_cast(r1, r2), a kfunc call (src_reg 2).
        call(2, id as i32),
        // r0 = *(u64 *)(r0 + 0)
        insn(0x79, 0, 0, 0, 0),
        // r0 = 0; exit
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD, its first fields: prog_type,
    // insn_cnt, insns, license; the rest zero.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(BPF_PROG_TYPE_TRACEPOINT) | ((insns.len() as u64) << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    // SAFETY: attr is a zeroed bpf_attr with the fields above, which point
    // to live arrays for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_ptr(),
            size_of_val(&attr),
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel returned a new descriptor, owned here and closed
    // on drop.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    true
}

/// One instruction, as the kernel reads it (`struct bpf_insn`).
fn insn(code: u8, dst_reg: u8, src_reg: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst_reg | (src_reg << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// A copy of `elf` whose `bpf_rdonly_cast` calls name kfunc `id`, or,
/// without one, are [`kfunc::NOOP`]s (the programs then read through the
/// helper and never reach them). Only instructions, in the executable
/// sections, are looked at. The copy is 8-byte aligned, as aya needs.
pub fn patch(elf: &[u8], id: Option<u32>) -> Result<Vec<u64>, PatchError> {
    let file = object::File::parse(elf).map_err(PatchError::Elf)?;
    let with = match id {
        Some(id) => (kfunc::CALL_INSN & 0xffff_ffff) | (u64::from(id) << 32),
        None => kfunc::NOOP,
    };
    let mut copy = elf.to_vec();
    let mut patched = 0;
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let Some((offset, size)) = section.file_range() else {
            continue;
        };
        let Some(code) = copy.get_mut(offset as usize..(offset + size) as usize) else {
            continue;
        };
        for insn in code.chunks_exact_mut(8) {
            if insn == kfunc::CALL_INSN.to_le_bytes() {
                insn.copy_from_slice(&with.to_le_bytes());
                patched += 1;
            }
        }
    }
    if patched == 0 {
        return Err(PatchError::NoCall);
    }
    Ok(copy
        .chunks(8)
        .map(|chunk| {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_ne_bytes(word)
        })
        .collect())
}

/// `words` as the bytes they hold.
pub fn bytes(words: &[u64]) -> &[u8] {
    // SAFETY: any u64 is 8 valid bytes, and u8 has no alignment to keep.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), size_of_val(words)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels watcher is tested on (6.18) take them.
    #[test]
    fn this_kernel_takes_fast_reads() {
        let btf = Btf::from_file(crate::btf::VMLINUX).unwrap();
        assert!(fast_reads(&btf).is_some());
    }

    #[test]
    fn an_instruction_is_laid_out_as_the_kernel_reads_it() {
        assert_eq!(
            insn(0x85, 0, 2, 0, kfunc::PLACEHOLDER as i32),
            kfunc::CALL_INSN
        );
        assert_eq!(insn(0xb7, 0, 0, 0, 0), kfunc::NOOP);
        assert_eq!(insn(0x79, 1, 2, -8, 0), 0xfff8_2179);
    }
}
