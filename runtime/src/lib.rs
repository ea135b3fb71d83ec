//! Saturn runtime.
