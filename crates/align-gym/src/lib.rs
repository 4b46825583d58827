//! align-gym
