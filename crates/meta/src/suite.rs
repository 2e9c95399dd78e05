//! Shared test suite (to be written).
