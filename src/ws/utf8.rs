//! utf8: streaming UTF-8 validation across frame and read boundaries. It fails as soon as a
//! byte cannot start or continue a valid sequence, without waiting for the message's end.

/// Carries at most one incomplete character (≤ 3 bytes) between pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// The text was not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece of a message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let want = sequence_len(self.carry[0]);
            let take = (want - have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            self.carry_len += take as u8;
            data = &data[take..];
            match std::str::from_utf8(&self.carry[..self.carry_len as usize]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()), // still incomplete
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends a message: a character cut off at the end is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.carry_len == 0;
        self.carry_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Length of the sequence a (valid) lead byte starts. Only called on bytes that `from_utf8`
/// reported as the start of an incomplete sequence, so they are valid lead bytes.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let whole = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                let r = v
                    .feed(&bytes[..a])
                    .and_then(|_| v.feed(&bytes[a..b]))
                    .and_then(|_| v.feed(&bytes[b..]))
                    .and_then(|_| v.finish());
                assert_eq!(r.is_ok(), whole, "split {a}/{b} of {bytes:x?}");
            }
        }
        if whole {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "\u{10FFFF}\u{FFFF}a\u{80}".as_bytes(),
            // A 3-byte character cut after its lead, the next piece ending inside a 2-byte
            // one: the carry must take exactly 2 more bytes, not 3.
            "€ü€".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"ab\xf0\x9f\x98",
            b"\xff",
        ];
        for s in samples {
            let _ = check_split_everywhere(s);
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_continuation() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok \xce").is_ok());
        // 0xCE needs a continuation byte; 'a' can never complete it.
        assert_eq!(v.feed(b"a"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        // 0xED 0xA0 starts a surrogate: invalid before the third byte arrives.
        assert_eq!(v.feed(b"\xed\xa0"), Err(InvalidUtf8));
    }
}
