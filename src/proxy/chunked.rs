//! Finding the end of a chunked message body (RFC 9112 7.1) that is passed
//! through unchanged: the bytes are not decoded, only followed, so that the
//! proxy knows where one response ends and the connection can be reused.
//!
//! Lines (chunk sizes with extensions, trailer fields) are limited in length,
//! so a broken or hostile upstream cannot make the scanner wait forever on
//! one line; a malformed body is an error, and the connection is closed.

use super::target::hex;

/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// After the size: whitespace, then `;` or CR.
    SizeWs,
    /// A chunk extension, up to CR.
    SizeExt,
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// At the final LF of the empty line that ends the message.
    EndLf,
    Done,
}

/// A scanner over a chunked body, fed the bytes as they arrive.
#[derive(Debug)]
pub struct ChunkedEnd {
    state: State,
    size: u64,
    line: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

impl Default for ChunkedEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedEnd {
    pub fn new() -> ChunkedEnd {
        ChunkedEnd {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Follow `bytes`; `Some(n)`: the body ends after the first `n` of them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data { left } = self.state {
                // Skip chunk data in one step.
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data { left: left - take }
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = self.step(b)?;
            if self.state == State::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn step(&mut self, b: u8) -> Result<State, Malformed> {
        Ok(match self.state {
            State::Size { digits } => match hex(b) {
                Some(v) if digits < 16 => {
                    self.size = (self.size << 4) | u64::from(v);
                    State::Size { digits: digits + 1 }
                }
                Some(_) => return Err(Malformed),
                None if digits == 0 => return Err(Malformed),
                None => {
                    self.line = 0;
                    self.size_rest(b, false)?
                }
            },
            State::SizeWs => self.size_rest(b, false)?,
            State::SizeExt => self.size_rest(b, true)?,
            State::SizeLf if b == b'\n' => {
                let size = std::mem::take(&mut self.size);
                if size == 0 {
                    State::TrailerStart
                } else {
                    State::Data { left: size }
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { digits: 0 },
            State::TrailerStart if b == b'\r' => State::EndLf,
            State::TrailerStart | State::TrailerLine if b == b'\r' => State::TrailerLf,
            // A bare LF or a control byte in a trailer line is malformed.
            State::TrailerStart | State::TrailerLine if b == b'\n' || ctl(b) => {
                return Err(Malformed);
            }
            State::TrailerStart | State::TrailerLine => {
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(Malformed);
                }
                State::TrailerLine
            }
            State::TrailerLf if b == b'\n' => {
                self.line = 0;
                State::TrailerStart
            }
            State::EndLf if b == b'\n' => State::Done,
            _ => return Err(Malformed),
        })
    }

    /// After a chunk size: optional whitespace, then CR, or `;` and an
    /// extension (`;name=value`, visible bytes and whitespace) up to CR, as
    /// hyper's decoder reads it. Anything else after the size is malformed.
    fn size_rest(&mut self, b: u8, in_ext: bool) -> Result<State, Malformed> {
        if b == b'\r' {
            return Ok(State::SizeLf);
        }
        if b == b'\n' || ctl(b) {
            return Err(Malformed);
        }
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(Malformed);
        }
        Ok(match (in_ext, b) {
            (true, _) | (false, b';') => State::SizeExt,
            (false, b' ' | b'\t') => State::SizeWs,
            (false, _) => return Err(Malformed),
        })
    }
}

/// A control byte other than HTAB.
fn ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn end_of(body: &[u8]) -> Result<Option<usize>, Malformed> {
        ChunkedEnd::new().feed(body)
    }

    #[test]
    fn the_end_is_found_after_the_last_chunk_and_the_trailers() {
        let body = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(end_of(body), Ok(Some(body.len() - 4)));
        let body = b"A;ext=1\r\n0123456789\r\n0\r\nx-sum: 1\r\nx-n: 2\r\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
        let body = b"1 ; a=\"b c\"\r\nx\r\n0\r\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
        assert_eq!(end_of(b"3\r\nabc\r\n0\r\n"), Ok(None));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b"x\r\n"[..],
            b"3\r\nabcd\r\n",
            b"3\nabc\r\n",
            b"11111111111111111\r\n",
            b"3 \x01\r\n",
            b"0\r\n\r\r",
            // junk after the size, not an extension
            b"3x\r\nabc\r\n0\r\n\r\n",
            b"3 junk\r\nabc\r\n0\r\n\r\n",
            // a bare LF in the trailers, or as the last line
            b"0\r\nx-a: 1\nx-b: 2\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nx-a: \x01\r\n\r\n",
        ] {
            assert_eq!(
                end_of(body),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long = [&b"1;"[..], &[b'a'; MAX_LINE + 1]].concat();
        assert_eq!(end_of(&long), Err(Malformed));
    }

    fn encode(chunks: &[Vec<u8>], trailers: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend(c);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n");
        for t in trailers {
            out.extend(format!("x-{t}: v\r\n").as_bytes());
        }
        out.extend(b"\r\n");
        out
    }

    proptest! {
        /// However the body is split into reads, the end is found exactly
        /// where it is, and nothing after it is taken.
        #[test]
        fn the_end_is_found_wherever_the_reads_split_the_body(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            trailers in proptest::collection::vec("[a-z]{1,8}", 0..3),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut body = encode(&chunks, &trailers);
            let len = body.len();
            body.extend(b"HTTP/1.1 200 OK\r\n");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(body.len())).collect();
            cuts.push(body.len());
            cuts.sort_unstable();
            let mut scanner = ChunkedEnd::new();
            let (mut from, mut end) = (0, None);
            for cut in cuts {
                if let Some(n) = scanner.feed(&body[from..cut]).unwrap() {
                    end = Some(from + n);
                    break;
                }
                from = cut;
            }
            prop_assert_eq!(end, Some(len));
            prop_assert!(scanner.done());
        }
    }
}
