pub mod process;
pub mod syscalls;
