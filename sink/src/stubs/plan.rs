//! [`Plan`]: the stub that will answer one callback, before its `seq` is known, and the insert's
//! hook that turns the `seq` into the scripted response (see `annotate.rs`).

use std::sync::Arc;

use super::{Answer, Stub, Then};
use crate::{annotate::Annotation, record::write_json_str};

/// The stub matched to a callback's key (chosen before the insert, outside every lock).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(super) id: Arc<str>,
    pub(super) stub: Arc<Stub>,
}

impl Plan {
    /// The index in `responses` that answers `seq`, or `None` for the sink's usual answer
    /// (`then: default` past the end). Arithmetic only: `times` is never expanded.
    pub(crate) fn pick(&self, seq: u64) -> Option<usize> {
        let responses = &self.stub.responses;
        let total: u64 = responses
            .iter()
            .map(|r| r.times)
            .fold(0, u64::saturating_add);
        let at = seq.saturating_sub(1);
        let at = if at < total {
            at
        } else {
            match self.stub.then {
                Then::Last => return responses.len().checked_sub(1),
                Then::Cycle => at % total.max(1),
                Then::Default => return None,
            }
        };
        let mut end = 0u64;
        responses.iter().position(|r| {
            end = end.saturating_add(r.times);
            at < end
        })
    }

    /// The insert's hook: the response for `seq` as the record's `"response"` field and the
    /// [`Answer`] the handler gives. Quick and lock-free (it runs under the key's lock).
    pub(crate) fn annotate(&self, seq: u64) -> Option<Annotation<Answer>> {
        let index = self.pick(seq)?;
        let scripted = &self.stub.responses[index];
        let mut response = Vec::with_capacity(64 + self.id.len());
        response.extend_from_slice(b"{\"status\":");
        if scripted.drop {
            response.extend_from_slice(b"null");
        } else {
            response.extend_from_slice(scripted.status.to_string().as_bytes());
        }
        response.extend_from_slice(b",\"delay_ms\":");
        let delay_ms = scripted.delay.map_or(0, |d| d.as_millis() as u64);
        response.extend_from_slice(delay_ms.to_string().as_bytes());
        response.extend_from_slice(b",\"stub\":");
        write_json_str(&mut response, &self.id);
        response.extend_from_slice(if scripted.drop {
            b",\"dropped\":true}"
        } else {
            b",\"dropped\":false}"
        });
        Some(Annotation {
            response,
            answer: Answer {
                plan: self.clone(),
                index,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stubs::{Responded, StubResponse};

    fn plan(then: Then) -> Plan {
        Plan {
            id: Arc::from("s"),
            stub: Arc::new(
                Stub::for_key(
                    "k",
                    [
                        StubResponse::status(503).times(2),
                        StubResponse::status(200),
                    ],
                )
                .then(then),
            ),
        }
    }

    #[test]
    fn seqs_walk_the_expanded_script_then_follow_then() {
        let picks = |then| (1..=7).map(|seq| plan(then).pick(seq)).collect::<Vec<_>>();
        let (a, b) = (Some(0), Some(1));
        assert_eq!(picks(Then::Last), [a, a, b, b, b, b, b]);
        assert_eq!(picks(Then::Cycle), [a, a, b, a, a, b, a]);
        assert_eq!(picks(Then::Default), [a, a, b, None, None, None, None]);
    }

    #[test]
    fn the_annotation_is_the_records_response_field() {
        let annotation = plan(Then::Last).annotate(1).expect("scripted");
        let responded: Responded = serde_json::from_slice(&annotation.response).expect("JSON");
        assert_eq!(
            responded,
            Responded {
                status: Some(503),
                delay_ms: 0,
                stub: "s".into(),
                dropped: false
            }
        );
        assert_eq!(annotation.answer.index, 0);
    }
}
