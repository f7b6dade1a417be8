//! Server-Sent Events as a client reads them (the WHATWG `text/event-stream` format): bytes go
//! in as they arrive, whole events come out.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (`message` when absent).
    pub event: String,
    /// `id:`, if the event has one.
    pub id: Option<String>,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// Its data as JSON; panics (failing the test) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event {} carries JSON ({e}): {}", self.event, self.data))
    }
}

/// Turns the chunks of a stream into events. Comments and blocks without data (keep-alives)
/// are skipped; `\r\n` line ends are accepted.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: String,
}

impl SseParser {
    /// Adds bytes as they arrived (an event may span chunks).
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer
            .push_str(&String::from_utf8_lossy(chunk).replace("\r\n", "\n"));
    }

    /// The next whole event received, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                event: "message".to_owned(),
                id: None,
                data: String::new(),
            };
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    v.trim_start().clone_into(&mut event.event);
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.id = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !data.is_empty() {
                event.data = data.join("\n");
                return Some(event);
            }
        }
        None
    }

    /// What is buffered but not yet a whole event (for failure messages).
    pub fn pending(&self) -> &str {
        &self.buffer
    }

    /// Every whole event in `text`.
    pub fn parse_all(text: &str) -> Vec<SseEvent> {
        let mut parser = Self::default();
        parser.push(text.as_bytes());
        std::iter::from_fn(|| parser.next_event()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_and_keep_alives_are_skipped() {
        let mut parser = SseParser::default();
        parser.push(b": keep-alive\n\nevent: callback\nid: 1\nda");
        assert_eq!(parser.next_event(), None, "half an event is not an event");
        parser.push(b"ta: {\"a\":\r\ndata: 1}\r\n\r\ndata: plain\n\n");
        assert_eq!(
            parser.next_event(),
            Some(SseEvent {
                event: "callback".into(),
                id: Some("1".into()),
                data: "{\"a\":\n1}".into()
            })
        );
        let plain = parser.next_event().expect("a second event");
        assert_eq!(
            (plain.event.as_str(), plain.data.as_str()),
            ("message", "plain")
        );
        assert_eq!(parser.next_event(), None);
    }
}
