pub mod process;
pub mod syscalls;
pub mod io_uring;
