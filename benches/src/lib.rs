//! Shared fixtures for the kip benches.
