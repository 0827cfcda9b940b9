//! watcher's user-space logic that needs neither the kernel nor root: the
//! settings and the configuration file, decoding what the kernel sends,
//! filters, the sinks events go to, and the runner of actions. The binary
//! crate keeps the kernel side (BTF, tracefs, loading the programs, the
//! session over their ring buffer) and the commands.
//!
//! Modules are declared from the bottom layer up: each imports only those
//! declared before it (`cargo xtask layers` checks this).

pub mod cgroup;
pub mod choice;
pub mod config;
pub mod error;
pub mod escape;
pub mod event;
pub mod filter;
pub mod journal;
pub mod kind;
pub mod notify;
pub mod output;
pub mod path;
pub mod place;
pub mod privileges;
pub mod runner;
pub mod settings;
pub mod source;
pub mod syscall;
pub mod tally;
pub mod user;
pub mod watch;
