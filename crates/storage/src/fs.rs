//! Filesystem backend (to be written).
