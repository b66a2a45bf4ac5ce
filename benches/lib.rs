//! Benchmarks for shoal.
