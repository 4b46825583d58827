//! Stop strings over streamed text: which part of the text so far can be sent to the client.
//!
//! The text is cut before the first stop string (OpenAI does not return it). While streaming,
//! the tail that could still grow into a stop string is held back, so a client never receives
//! the beginning of a stop string that a later token completes.

/// Tracks one completion's text against its stop strings.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops, ..Default::default() }
    }

    /// Adds a decoded piece; returns the text that is now safe to send and whether a stop
    /// string was reached (then nothing more is accepted).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text.push_str(piece);
        // A stop string cannot start before `sent`: that text was sent only once no stop
        // string could begin there.
        let first = self.stops.iter().filter_map(|s| self.text[self.sent..].find(s.as_str()).map(|i| self.sent + i)).min();
        if let Some(at) = first {
            self.stopped = true;
            return (self.take_to(at), true);
        }
        let hold = self.held_back();
        (self.take_to(self.text.len() - hold), false)
    }

    /// The generation ended without a stop string: the held-back tail is sent too.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        self.take_to(self.text.len())
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Length of the longest unsent suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let unsent = &self.text[self.sent..];
        let mut best = 0;
        for s in &self.stops {
            for (i, _) in unsent.char_indices() {
                let tail = &unsent[i..];
                if tail.len() <= best {
                    break;
                }
                if s.starts_with(tail) {
                    best = tail.len();
                    break;
                }
            }
        }
        best
    }

    fn take_to(&mut self, end: usize) -> String {
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = vec![];
        let mut stopped = false;
        for p in pieces {
            let (t, s) = m.push(p);
            out.push(t);
            stopped |= s;
        }
        let rest = m.finish();
        (out, stopped, rest)
    }

    #[test]
    fn no_stops_passes_everything() {
        let (out, stopped, rest) = feed(&[], &["ab", "c"]);
        assert_eq!(out, ["ab", "c"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn stop_split_across_pieces_is_never_sent() {
        let (out, stopped, rest) = feed(&["\n\n"], &["hello\n", "\nworld"]);
        assert_eq!(out, ["hello", ""]);
        assert!(stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn false_alarm_is_released() {
        let (out, stopped, rest) = feed(&["END"], &["the E", "ND", "x"]);
        assert_eq!(out.concat(), "the ");
        assert!(stopped);
        assert_eq!(rest, "");
        let (out, stopped, rest) = feed(&["END"], &["the E", "nd"]);
        assert_eq!(out, ["the ", "End"]);
        assert!(!stopped);
        assert_eq!(rest, "");
        // The generation ends while a prefix is held back: it is sent at the end.
        let (out, _, rest) = feed(&["END"], &["abc EN"]);
        assert_eq!(out, ["abc "]);
        assert_eq!(rest, "EN");
    }

    #[test]
    fn earliest_of_several_stops_and_multibyte() {
        let (out, stopped, _) = feed(&["b", "é!"], &["aé!xb"]);
        assert_eq!(out, ["a"]);
        assert!(stopped);
        let (out, _, rest) = feed(&["éé"], &["xé"]);
        assert_eq!(out, ["x"]);
        assert_eq!(rest, "é");
    }
}
