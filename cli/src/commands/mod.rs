//! One module per subcommand, each with its `Args` and its `run`.

pub mod audit;
pub mod build;
pub mod check;
pub mod compile;
pub mod describe;
pub mod new;
pub mod refs;
pub mod render;
mod scaffold;
pub mod serve;
