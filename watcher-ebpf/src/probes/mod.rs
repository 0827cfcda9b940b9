pub mod open;
pub mod process;
