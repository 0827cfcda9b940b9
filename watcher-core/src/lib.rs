//! watcher's user-space logic that needs neither the kernel nor root: the
//! settings and the configuration file, decoding what the kernel sends,
//! filters, the sinks events go to, and the runner of actions. The binary
//! crate keeps the kernel side (BTF, tracefs, loading the programs, the
//! session over their ring buffer) and the commands.
//!
//! Modules are declared from the bottom layer up: each imports only those
//! declared before it (`cargo xtask layers` checks this).

pub mod escape;
pub mod choice;
pub mod error;
pub mod notify;
pub mod privileges;
pub mod user;
pub mod kind;
pub mod syscall;
pub mod path;
pub mod mountinfo;
pub mod cgroup;
pub mod event;
pub mod images;
pub mod filter;
pub mod watch;
pub mod routes;
pub mod place;
pub mod journal;
pub mod text;
pub mod json;
pub mod output;
pub mod tally;
pub mod settings;
pub mod writers;
pub mod source;
pub mod metrics;
pub mod runner;
pub mod config;
