//! Criterion micro-benchmarks of the hot paths (placeholder; see docs/PERFORMANCE.md).
fn main() {}
