//! The one hook an insert offers: [`Annotation`], computed from a record's `seq` at the moment
//! the store assigns it.
//!
//! A record is encoded once, on arrival, up to its `seq` (see `record.rs`); `seq` is only known
//! inside the store's insert, under the key's lock. Anything about a record that depends on its
//! `seq` (today: the scripted answer a stub gives it, `stubs/`) must therefore be decided there.
//! Every backend's insert takes a `FnOnce(u64) -> Option<Annotation<A>>` and calls it exactly
//! once, after assigning `seq` and before writing the record, then:
//!
//! - splices [`Annotation::response`] into the record as its `"response"` field (through
//!   `Encoded::finish_with`), so the stored bytes (and the log's, and a replay's) carry it;
//! - hands [`Annotation::answer`] back to the caller with the `seq`, if the record was stored.
//!
//! The hook must be quick and must not block or lock anything a backend's insert holds: the
//! embedded store calls it under the key's shard lock. A PostgreSQL backend would call it between
//! taking the key's next `seq` and its `INSERT`, in the same transaction.

/// What an insert's hook adds to the record whose `seq` it was given.
#[derive(Debug)]
pub(crate) struct Annotation<A> {
    /// The JSON value (an object) stored as the record's `"response"` field.
    pub(crate) response: Vec<u8>,
    /// Given back to the inserting caller once the record is stored.
    pub(crate) answer: A,
}

/// The hook of an insert that adds nothing (for the store's own tests).
#[cfg(test)]
pub(crate) fn nothing(_seq: u64) -> Option<Annotation<()>> {
    None
}
