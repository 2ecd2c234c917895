//! Reading CRI container log files: lines of `<RFC3339Nano> <stdout|stderr> <P|F> <message>`,
//! as the shim writes them, where `P` lines are parts of one longer line. berthctl's `logs`
//! prints them; the bytes are whatever the container wrote, so the parser takes anything.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One whole line the container wrote (its partial pieces joined), without the newline.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub stream: Stream,
    pub timestamp: String,
    pub text: Vec<u8>,
}

/// Turns CRI log bytes into messages; bytes may arrive in any pieces.
#[derive(Default)]
pub struct Parser {
    /// The start of a line whose newline has not arrived yet.
    unterminated: Vec<u8>,
    /// Partial (`P`) pieces per stream, with the first piece's timestamp.
    partial: [Option<(String, Vec<u8>)>; 2],
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Message> {
        let mut messages = Vec::new();
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(newline);
            rest = &after[1..];
            if self.unterminated.is_empty() {
                self.line(line, &mut messages);
            } else {
                let mut whole = std::mem::take(&mut self.unterminated);
                whole.extend_from_slice(line);
                self.line(&whole, &mut messages);
            }
        }
        self.unterminated.extend_from_slice(rest);
        messages
    }

    /// A file ended (rotated away): a last line without its newline is still a line.
    pub fn end_of_file(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        let last = std::mem::take(&mut self.unterminated);
        if !last.is_empty() {
            self.line(&last, &mut messages);
        }
        messages
    }

    /// No more input: whatever is left, partial lines included, as messages.
    pub fn finish(&mut self) -> Vec<Message> {
        let mut messages = self.end_of_file();
        for (stream, slot) in [Stream::Stdout, Stream::Stderr].into_iter().zip(self.partial.iter_mut()) {
            if let Some((timestamp, text)) = slot.take() {
                messages.push(Message { stream, timestamp, text });
            }
        }
        messages
    }

    fn line(&mut self, line: &[u8], messages: &mut Vec<Message>) {
        let mut fields = line.splitn(4, |&b| b == b' ');
        let (Some(timestamp), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
            return self.unparsed(line, messages);
        };
        let text = fields.next().unwrap_or_default();
        let stream = match stream {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return self.unparsed(line, messages),
        };
        let timestamp = String::from_utf8_lossy(timestamp).into_owned();
        let slot = &mut self.partial[stream as usize];
        let partial = tag.split(|&b| b == b':').next() == Some(b"P");
        let (timestamp, mut whole) = slot.take().unwrap_or((timestamp, Vec::new()));
        whole.extend_from_slice(text);
        if partial {
            *slot = Some((timestamp, whole));
        } else {
            messages.push(Message { stream, timestamp, text: whole });
        }
    }

    /// A line not in the CRI format is printed as it is rather than lost.
    fn unparsed(&mut self, line: &[u8], messages: &mut Vec<Message>) {
        messages.push(Message { stream: Stream::Stdout, timestamp: String::new(), text: line.to_vec() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(messages: &[Message]) -> Vec<(Stream, String)> {
        messages.iter().map(|m| (m.stream, String::from_utf8_lossy(&m.text).into_owned())).collect()
    }

    #[test]
    fn joins_partial_lines_per_stream() {
        let mut parser = Parser::default();
        let log = b"2024-01-01T00:00:00.1Z stdout P hel\n\
                    2024-01-01T00:00:00.2Z stderr F oops\n\
                    2024-01-01T00:00:00.3Z stdout F lo world\n\
                    2024-01-01T00:00:00.4Z stdout F \n";
        let messages = parser.feed(log);
        assert_eq!(
            texts(&messages),
            [
                (Stream::Stderr, "oops".to_string()),
                (Stream::Stdout, "hello world".to_string()),
                (Stream::Stdout, String::new())
            ]
        );
        assert_eq!(messages[1].timestamp, "2024-01-01T00:00:00.1Z");
    }

    #[test]
    fn bytes_in_any_pieces() {
        let log = b"t1 stdout F one\nt2 stdout P tw\nt3 stdout F o\nt4 stderr F three\n";
        for split in 0..log.len() {
            let mut parser = Parser::default();
            let mut messages = parser.feed(&log[..split]);
            messages.extend(parser.feed(&log[split..]));
            messages.extend(parser.finish());
            assert_eq!(
                texts(&messages),
                [
                    (Stream::Stdout, "one".to_string()),
                    (Stream::Stdout, "two".to_string()),
                    (Stream::Stderr, "three".to_string())
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn leftovers_and_odd_lines() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"t1 stdout P unfinished\nt2 stdout F tail-without-newline").is_empty());
        assert_eq!(texts(&parser.end_of_file()), [(Stream::Stdout, "unfinishedtail-without-newline".into())]);
        let mut parser = Parser::default();
        assert_eq!(texts(&parser.feed(b"not a cri line\n")), [(Stream::Stdout, "not a cri line".into())]);
        assert!(parser.feed(b"t1 stderr P half").is_empty());
        assert_eq!(texts(&parser.finish()), [(Stream::Stderr, "half".into())]);
    }
}
