//! API tests of the sink: every route of SPEC "The sink", its bad inputs, and its concurrency
//! guarantees, against a real server on port 0.

mod bodies;
mod helpers;
mod ingest;
mod metrics;
mod persistence;
mod reading;
mod verifiers;
mod waiting;
