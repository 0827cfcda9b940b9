pub mod process;
pub mod emit;
pub mod syscalls;
pub mod io_uring;
