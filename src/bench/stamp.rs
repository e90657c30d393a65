//! What the load generator writes into each message: a number and the (intended) send
//! time, so a recipient can measure send→delivery latency and which message it got
//! without asking anyone. Both ends run in the same process, on one monotonic clock.

use std::fmt::Write;
use std::time::Instant;

const PREFIX: &str = "bench";

/// The run's time origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { origin: Instant::now() }
    }

    /// Microseconds from the origin to `at` (0 for earlier instants).
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }
}

/// A message's number in the run and when it was (meant to be) sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub id: u64,
    pub sent_us: u64,
}

impl Stamp {
    /// The message text: the stamp, padded with `x` to `size` bytes.
    pub fn content(&self, size: usize) -> String {
        let mut text = String::with_capacity(size.max(32));
        let _ = write!(text, "{PREFIX} {} {} ", self.id, self.sent_us);
        while text.len() < size {
            text.push('x');
        }
        text
    }

    /// Reads a stamp back from a message's text; `None` if it carries none.
    pub fn parse(content: &str) -> Option<Stamp> {
        let mut words = content.split(' ');
        if words.next()? != PREFIX {
            return None;
        }
        let id = words.next()?.parse().ok()?;
        let sent_us = words.next()?.parse().ok()?;
        Some(Stamp { id, sent_us })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip_and_pads_to_size() {
        let stamp = Stamp { id: 42, sent_us: 1_234_567 };
        let text = stamp.content(100);
        assert_eq!(text.len(), 100);
        assert_eq!(Stamp::parse(&text), Some(stamp));
        assert_eq!(Stamp::parse(&Stamp { id: 1, sent_us: 2 }.content(0)), Some(Stamp { id: 1, sent_us: 2 }));
    }

    #[test]
    fn foreign_text_has_no_stamp() {
        assert_eq!(Stamp::parse("hello there"), None);
        assert_eq!(Stamp::parse("bench x 1"), None);
        assert_eq!(Stamp::parse(""), None);
    }
}
