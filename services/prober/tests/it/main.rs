//! Prober integration tests.
