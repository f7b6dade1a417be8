//! What the test suites of Eventual's crates share, so that each suite does not grow its own
//! copy: reading Server-Sent Events off a response ([`sse`]) and looking at processes in `/proc`
//! ([`procfs`]). Test-only: no crate of the product depends on it except as a dev-dependency.

pub mod procfs;
pub mod sse;
