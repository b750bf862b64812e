//! Text in a legacy encoding or UTF-16, decoded to UTF-8 as it streams. Bytes the encoding
//! cannot decode (a lone UTF-16 surrogate, invalid Shift_JIS) stop the read with their line,
//! as invalid UTF-8 does: replacing them with U+FFFD would merge distinct user IDs into one.

use std::io::{self, Read};

use encoding_rs::{DecoderResult, Encoding};

/// Bytes the encoding cannot decode, carried inside an `io::Error` so that every reader's
/// message names its line.
#[derive(Debug)]
pub(super) struct Malformed {
    pub line: u64,
    encoding: &'static str,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bytes that are not valid {} text; give the file's --encoding, or re-export it \
             (as UTF-8 if the system can)",
            self.encoding
        )
    }
}

impl std::error::Error for Malformed {}

pub(super) struct Decoding<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    /// The part of `input` not decoded yet.
    pending: std::ops::Range<usize>,
    output: Vec<u8>,
    /// The part of `output` not handed out yet.
    ready: std::ops::Range<usize>,
    eof: bool,
    done: bool,
    /// LFs handed out.
    lines: u64,
}

impl<R: Read> Decoding<R> {
    /// A decoder for `encoding`; a BOM at the start overrides it (as browsers do) and is
    /// dropped.
    pub fn new(inner: R, encoding: &'static Encoding) -> Decoding<R> {
        Decoding {
            inner,
            decoder: encoding.new_decoder(),
            input: vec![0; 64 << 10],
            pending: 0..0,
            output: vec![0; 128 << 10],
            ready: 0..0,
            eof: false,
            done: false,
            lines: 0,
        }
    }
}

impl<R: Read> Read for Decoding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.ready.is_empty() {
                let n = buf.len().min(self.ready.len());
                let from = self.ready.start;
                buf[..n].copy_from_slice(&self.output[from..from + n]);
                self.lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                self.ready.start += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if self.pending.is_empty() && !self.eof {
                let n = loop {
                    match self.inner.read(&mut self.input) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        other => break other?,
                    }
                };
                self.eof = n == 0;
                self.pending = 0..n;
            }
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.pending.clone()],
                &mut self.output,
                self.eof,
            );
            self.pending.start += read;
            self.ready = 0..written;
            match result {
                DecoderResult::InputEmpty => self.done = self.eof,
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(..) => {
                    let before = memchr::memchr_iter(b'\n', &self.output[..written]).count();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Malformed {
                            line: self.lines + before as u64 + 1,
                            encoding: self.decoder.encoding().name(),
                        },
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], encoding: &'static Encoding) -> io::Result<String> {
        let mut text = String::new();
        Decoding::new(bytes, encoding).read_to_string(&mut text)?;
        Ok(text)
    }

    #[test]
    fn good_text_decodes_and_a_bom_overrides() {
        assert_eq!(
            decode(b"caf\xe9\nna\xefve\n", encoding_rs::WINDOWS_1252).unwrap(),
            "café\nnaïve\n"
        );
        let utf16: Vec<u8> = b"\xFF\xFEa\0\n\0b\0".to_vec();
        assert_eq!(decode(&utf16, encoding_rs::WINDOWS_1252).unwrap(), "a\nb");
    }

    #[test]
    fn bytes_the_encoding_cannot_decode_stop_the_read_at_their_line() {
        // Line 3 holds a lone high surrogate (D800) followed by `x`.
        let mut utf16 = b"\xFF\xFE".to_vec();
        for unit in "a\nb\n".encode_utf16().chain([0xD800, u16::from(b'x')]) {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        let err = decode(&utf16, encoding_rs::UTF_16LE).unwrap_err();
        let m = err.get_ref().unwrap().downcast_ref::<Malformed>().unwrap();
        assert_eq!(m.line, 3);
        assert!(m.to_string().contains("not valid UTF-16LE text"), "{m}");
        // Shift_JIS: 0x81 must be followed by a trail byte.
        let err = decode(b"ok\n\x81\n", encoding_rs::SHIFT_JIS).unwrap_err();
        let m = err.get_ref().unwrap().downcast_ref::<Malformed>().unwrap();
        assert_eq!(m.line, 2);
    }
}
