//! align-data
