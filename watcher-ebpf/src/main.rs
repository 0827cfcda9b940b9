//! watcher's eBPF programs. Each group of syscalls has its module under
//! `probes/`; maps and globals are shared by all of them.
#![no_std]
#![no_main]

mod config;
mod emit;
mod maps;
mod probes;
mod read;
mod scratch;
mod vfs;
mod who;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Never reached: any reachable panic makes the verifier reject the
    // program, so the code is written with `.get()` and explicit bounds.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
