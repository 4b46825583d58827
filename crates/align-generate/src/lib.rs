//! align-generate
