//! Server-sent events parsed from bytes, as the WHATWG event-stream algorithm says and with
//! the pitfalls model servers really produce (`shared/contracts/openai.md` §10): reads split
//! anywhere (inside a UTF-8 character, between `\r` and `\n`), `\r\n`, `\n` or a lone `\r`
//! as line ends, a byte-order mark, comment keep-alives, several `data:` lines in one event,
//! and a final `data: [DONE]` without its blank line. Lines are decoded only once whole, and
//! both a line and an event are capped so a broken upstream cannot grow the buffer forever.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if the server sent one (Anthropic does; OpenAI does not).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why the stream cannot be parsed further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// An incremental parser: feed it whatever each read returned.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    /// The previous read ended in `\r`: a `\n` opening this one ends no second line.
    after_cr: bool,
    /// Bytes seen so far, for the byte-order mark, which only counts at the very start.
    seen: usize,
    event: Option<String>,
    data: String,
    has_data: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser that refuses lines and events over `limit` bytes.
    pub fn new(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            seen: 0,
            event: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Feeds the next bytes of the stream; returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        for &b in bytes {
            self.seen += 1;
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    if let Some(event) = self.end_line()? {
                        events.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.limit {
                        return Err(SseError::TooLarge { limit: self.limit });
                    }
                    self.line.push(b);
                    if self.seen == BOM.len() && self.line == BOM {
                        self.line.clear();
                    }
                }
            }
        }
        Ok(events)
    }

    /// The stream ended. An unterminated event is dropped, as the specification says,
    /// except a final `[DONE]` whose blank line never came.
    pub fn finish(mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            let _ = self.end_line();
        }
        self.data.pop(); // the `\n` after the last data line
        (self.has_data && self.data.trim() == "[DONE]")
            .then(|| SseEvent { event: self.event.take(), data: std::mem::take(&mut self.data) })
    }

    fn end_line(&mut self) -> Result<Option<SseEvent>, SseError> {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last data line
            return Ok(Some(SseEvent { event, data }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {} // `id`, `retry` and unknown fields mean nothing for a POST stream
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    /// Feeds `input` split at every possible pair of offsets and checks every split yields
    /// the same events as one read.
    fn same_for_every_split(input: &[u8]) -> Vec<SseEvent> {
        let mut whole = SseParser::new(1 << 20);
        let expected = whole.push(input).unwrap();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut p = SseParser::new(1 << 20);
                let mut got = p.push(&input[..i]).unwrap();
                got.extend(p.push(&input[i..j]).unwrap());
                got.extend(p.push(&input[j..]).unwrap());
                assert_eq!(got, expected, "split at {i}, {j}");
            }
        }
        expected
    }

    #[test]
    fn line_endings_comments_and_multi_line_data() {
        let input = "\u{FEFF}: OPENROUTER PROCESSING\r\n\r\ndata: {\"a\":\"é\"}\r\n\r\ndata:x\rdata: y\r\rid: 7\nretry: 10\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n";
        let events = same_for_every_split(input.as_bytes());
        assert_eq!(data(&events), ["{\"a\":\"é\"}", "x\ny", "{}", "[DONE]"]);
        assert_eq!(events[2].event.as_deref(), Some("ping"));
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn a_byte_order_mark_only_counts_at_the_start() {
        let mut p = SseParser::new(1024);
        assert_eq!(data(&p.push("data: a\u{FEFF}\n\n".as_bytes()).unwrap()), ["a\u{FEFF}"]);
    }

    #[test]
    fn unicode_line_separators_do_not_split() {
        let mut p = SseParser::new(1024);
        let events = p.push("data: {\"t\":\"a\u{2028}b\u{2029}c\"}\n\n".as_bytes()).unwrap();
        assert_eq!(data(&events), ["{\"t\":\"a\u{2028}b\u{2029}c\"}"]);
    }

    #[test]
    fn the_end_of_the_stream() {
        let mut p = SseParser::new(1024);
        assert!(p.push(b"data: {\"half\":").unwrap().is_empty());
        assert_eq!(p.finish(), None, "an unterminated event is dropped");
        let mut p = SseParser::new(1024);
        assert!(p.push(b"data: [DONE]").unwrap().is_empty());
        assert_eq!(p.finish().map(|e| e.data).as_deref(), Some("[DONE]"), "but not a final [DONE]");
        let mut p = SseParser::new(1024);
        assert!(p.push(b"event: message_stop\ndata: {}\n").unwrap().is_empty());
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut p = SseParser::new(16);
        assert_eq!(p.push(&[b'x'; 17]), Err(SseError::TooLarge { limit: 16 }));
        let mut p = SseParser::new(16);
        assert_eq!(p.push(b"data: 01234567\ndata: 01234567\n"), Err(SseError::TooLarge { limit: 16 }));
        let mut p = SseParser::new(16);
        assert_eq!(data(&p.push(b"data: 0123456789\n\n").unwrap()), ["0123456789"]);
    }
}
