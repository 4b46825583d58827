//! align-core: what every align crate shares and nothing model-specific.
//!
//! - [`error`]: the shared error type for I/O and format problems.
//! - [`atomic`]: write a file or a directory so that a crash never leaves half of it.
//! - [`seed`]: the one seeded RNG type and how its state is saved and restored.
//! - [`metrics`]: a JSONL metrics sink, one line per logging step.

pub mod atomic;
pub mod bench;
pub mod error;
pub mod metrics;
pub mod seed;

pub use error::{CoreError, Result};
