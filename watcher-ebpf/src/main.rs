//! watcher's eBPF programs. Each group of syscalls has its module under
//! `probes/`; maps and globals are shared by all of them.
#![no_std]
#![no_main]
// Inline assembly on the BPF target (`read::untrusted`, a kfunc call).
#![feature(asm_experimental_arch)]

// From the bottom layer up: a module imports only modules declared above
// it.

// Why a program stops short of an event.
mod error;
// Reads of kernel memory, knowing no kernel struct.
mod read;
// Files, dentries and mounts, through the offsets from BTF.
mod vfs;
// The types of the per-CPU scratch state that the walks share.
mod scratch;
// Every map, and the scratch value's accessors.
mod maps;
// The globals user space sets at load time, and the reloadable settings.
mod config;
// The flags (`DIRTY`) and loss counts (`LOST`) user space reads.
mod account;
// The walks that decide about a syscall's files and write their paths.
mod walk;
// Open files: their verdicts, their writes and their descriptors.
mod files;
// The process that made the change.
mod who;
// The event: the decision, then the ring-buffer record.
mod event;
// The programs.
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Never reached: any reachable panic makes the verifier reject the
    // program, so the code is written with `.get()` and explicit bounds.
    loop {}
}

// SAFETY: the kernel reads the program's license from this section, which
// holds nothing else, and no other symbol has this name.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
