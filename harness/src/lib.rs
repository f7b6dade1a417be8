//! Eventual's test-runner service: catalog, runs on exclusive environments, supervised test
//! processes and durable history.
//!
//! Not built yet: `eventual serve` starts only the sink until the harness lands (see README).
