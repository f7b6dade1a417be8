//! API tests of the sink: every route of SPEC "The sink", its bad inputs, and its concurrency
//! guarantees, against a real server on port 0.

mod bodies;
mod connections;
mod helpers;
mod ingest;
mod metrics;
mod persistence;
mod reading;
mod stubs;
mod verifiers;
mod waiting;
mod watching;
