//! align-train
