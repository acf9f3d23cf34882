//! Bounding what a check reports as its output.

use crate::catalog::types::CheckDefinition;
use std::collections::VecDeque;

/// Consul's default `check_output_max_size`.
pub const DEFAULT_OUTPUT_MAX: usize = 4096;

/// The output limit of a check: `OutputMaxSize` may only lower the default.
pub fn max_size(d: &CheckDefinition) -> usize {
    match usize::try_from(d.output_max_size) {
        Ok(n) if n > 0 => n.min(DEFAULT_OUTPUT_MAX),
        _ => DEFAULT_OUTPUT_MAX,
    }
}

/// Keeps the last `cap` bytes written to it and counts all of them, as a
/// script check's output is kept: the end of a long output is the part that
/// says what went wrong.
#[derive(Debug)]
pub struct TailBuffer {
    cap: usize,
    bytes: VecDeque<u8>,
    total: usize,
}

impl TailBuffer {
    pub fn new(cap: usize) -> TailBuffer {
        TailBuffer {
            cap,
            bytes: VecDeque::with_capacity(cap.min(DEFAULT_OUTPUT_MAX)),
            total: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.total += data.len();
        let keep = &data[data.len().saturating_sub(self.cap)..];
        let overflow = (self.bytes.len() + keep.len()).saturating_sub(self.cap);
        self.bytes.drain(..overflow.min(self.bytes.len()));
        self.bytes.extend(keep);
    }

    /// The kept text, prefixed `Captured N of M bytes` when some was dropped.
    pub fn render(&self) -> String {
        let kept: Vec<u8> = self.bytes.iter().copied().collect();
        let text = String::from_utf8_lossy(&kept);
        if self.total > self.bytes.len() {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                self.bytes.len(),
                self.total,
                text
            )
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let mut b = TailBuffer::new(10);
        b.write(b"hello ");
        b.write(b"world");
        assert_eq!(b.render(), "Captured 10 of 11 bytes\n...\nello world");
        let mut b = TailBuffer::new(16);
        b.write(b"hello");
        assert_eq!(b.render(), "hello");
    }

    #[test]
    fn long_writes_keep_the_tail() {
        let mut b = TailBuffer::new(4);
        b.write(b"abcdefgh");
        assert_eq!(b.render(), "Captured 4 of 8 bytes\n...\nefgh");
        b.write(b"ij");
        assert_eq!(b.render(), "Captured 4 of 10 bytes\n...\nghij");
    }

    #[test]
    fn output_max_size_only_lowers_the_default() {
        let mut d = CheckDefinition::default();
        assert_eq!(max_size(&d), 4096);
        d.output_max_size = 100;
        assert_eq!(max_size(&d), 100);
        d.output_max_size = 1 << 20;
        assert_eq!(max_size(&d), 4096);
    }
}
