//! Compressed answers read for usage: a copy of each chunk is decoded as it passes and the
//! decoded bytes go to the usage [`Scanner`]; what the client receives is untouched.
//!
//! - `gzip` (and `x-gzip`), `deflate` (zlib-wrapped as HTTP says, or raw deflate as some
//!   servers send: the first two bytes decide) and `br` are decoded; any other
//!   `content-encoding` (`zstd`, a list of several) is not read, as before.
//! - Memory is bounded: the decoder's own state (a 32 KiB window and a 32 KiB output buffer
//!   for gzip and deflate; for brotli the window the answer declares, which this decoder
//!   allocates whole unless the answer is one last block, and a 4 KiB output buffer) plus the
//!   scanner's bounds. A brotli answer declaring a window over [`MAX_BROTLI_WINDOW_BITS`]
//!   (4 MiB) is not read. Decoded bytes are handed to the scanner in pieces of at most the
//!   output buffer and never kept.
//! - At most [`MAX_DECODED`] decoded bytes are read: past them decoding stops and the answer
//!   counts no tokens (a decompression bomb costs the bounds above and 16 MiB of inflating,
//!   once). A body that fails to decode also counts none, and so does a JSON answer cut short;
//!   a stream cut short (no trailer) counts the events it read whole.

use std::io::{self, Write};

use flate2::write::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use super::usage::{Scanner, Shape, Tokens};

/// Decoded bytes read from one answer at most; past them it counts no tokens.
pub const MAX_DECODED: u64 = 16 * 1024 * 1024;
/// Brotli's output buffer: the largest piece handed to the scanner at once.
const BROTLI_BUFFER: usize = 4096;
/// Largest brotli window read (2^22 bytes, 4 MiB, the reference encoder's default); answers
/// declaring more (up to 16 MiB) count no tokens rather than cost that much per answer.
pub const MAX_BROTLI_WINDOW_BITS: u8 = 22;

/// An answer's `content-encoding`, as far as the usage scan is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    /// Anything else: the answer is not read.
    Unknown,
}

impl Encoding {
    /// From the header's value (`None`: no header).
    pub fn of(value: Option<&[u8]>) -> Encoding {
        let v = value.unwrap_or_default().trim_ascii();
        let is = |name: &[u8]| v.eq_ignore_ascii_case(name);
        match () {
            _ if v.is_empty() || is(b"identity") => Encoding::Identity,
            _ if is(b"gzip") || is(b"x-gzip") => Encoding::Gzip,
            _ if is(b"deflate") => Encoding::Deflate,
            _ if is(b"br") => Encoding::Brotli,
            _ => Encoding::Unknown,
        }
    }
}

/// Where decoded bytes go: the scanner, counted against [`MAX_DECODED`].
#[derive(Debug)]
struct Sink {
    scanner: Scanner,
    decoded: u64,
    /// The scanner saw the stream's first event carrying content since last asked.
    first: bool,
}

impl Sink {
    fn new(shape: Shape) -> Sink {
        Sink {
            scanner: Scanner::new(shape),
            decoded: 0,
            first: false,
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.decoded += buf.len() as u64;
        if self.decoded > MAX_DECODED {
            return Err(io::Error::other("decoded size limit"));
        }
        self.first |= self.scanner.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    /// Not encoded, or decoding finished: the scanner reads what it is given.
    Plain(Scanner),
    /// `deflate` before its first two bytes arrived (zlib or raw), `br` before its first one
    /// (its window).
    Sniff(Sink, Vec<u8>, Encoding),
    Gzip(MultiGzDecoder<Sink>),
    Zlib(ZlibDecoder<Sink>),
    Raw(DeflateDecoder<Sink>),
    Brotli(Box<brotli::DecompressorWriter<Sink>>),
    /// Over the limit or corrupt: nothing is counted.
    Dropped,
}

/// The usage reader of one answer: its scanner, behind a decoder when the answer is encoded.
pub struct Reader {
    shape: Shape,
    state: State,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("shape", &self.shape)
            .finish()
    }
}

impl Reader {
    /// A reader for an answer of this shape and encoding; `None` when it is not read.
    pub fn new(shape: Shape, encoding: Encoding) -> Option<Reader> {
        if shape == Shape::Other {
            return None;
        }
        let sink = || Sink::new(shape);
        let state = match encoding {
            Encoding::Identity => State::Plain(Scanner::new(shape)),
            Encoding::Gzip => State::Gzip(MultiGzDecoder::new(sink())),
            Encoding::Deflate | Encoding::Brotli => State::Sniff(sink(), Vec::new(), encoding),
            Encoding::Unknown => return None,
        };
        Some(Reader { shape, state })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Reads one chunk as it was sent. `true` when it held the stream's first event carrying
    /// content.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if let State::Sniff(_, head, enc) = &mut self.state {
            let need = if *enc == Encoding::Deflate { 2 } else { 1 };
            let before = head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(need - before)]);
            if head.len() < need {
                return false;
            }
            let State::Sniff(sink, head, enc) = std::mem::replace(&mut self.state, State::Dropped)
            else {
                unreachable!("matched above")
            };
            self.state = match enc {
                Encoding::Deflate if zlib_header(&head) => State::Zlib(ZlibDecoder::new(sink)),
                Encoding::Deflate => State::Raw(DeflateDecoder::new(sink)),
                _ if brotli_window_bits(head[0]).is_some_and(|b| b <= MAX_BROTLI_WINDOW_BITS) => {
                    let d = brotli::DecompressorWriter::new(sink, BROTLI_BUFFER);
                    State::Brotli(Box::new(d))
                }
                _ => return false,
            };
            // The bytes an earlier chunk gave, then all of this one.
            return self.write(&head[..before]) | self.write(chunk);
        }
        self.write(chunk)
    }

    /// Reads the answer's last chunk (`Scanner::feed_last` when the answer is not encoded).
    pub fn feed_last(&mut self, chunk: &[u8]) -> bool {
        match &mut self.state {
            State::Plain(s) => s.feed_last(chunk),
            _ => self.feed(chunk),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let (written, sink) = match &mut self.state {
            State::Plain(s) => return s.feed(bytes),
            State::Sniff(..) | State::Dropped => return false,
            // flate2's writers hand on what they decoded at the next write: flushed now, so a
            // stream's events reach the scanner with the chunk that completes them.
            State::Gzip(d) => (d.write_all(bytes).and_then(|()| d.flush()), d.get_mut()),
            State::Zlib(d) => (d.write_all(bytes).and_then(|()| d.flush()), d.get_mut()),
            State::Raw(d) => (d.write_all(bytes).and_then(|()| d.flush()), d.get_mut()),
            State::Brotli(d) => (d.write_all(bytes), d.get_mut()),
        };
        let first = std::mem::take(&mut sink.first);
        if written.is_err() {
            self.state = State::Dropped;
        }
        first
    }

    /// The answer ended: the decoder gives what it still holds and the scanner reads its end.
    /// A stream that ends early (a streaming client often leaves once it has the last event,
    /// before the compressed stream's trailer arrives) keeps the events it read whole; a JSON
    /// answer cut short counts nothing; bytes that failed to decode dropped the answer already,
    /// in `write`. Called again, it does nothing more.
    pub fn finish(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Dropped);
        let (complete, mut sink) = match state {
            State::Plain(mut s) => {
                s.finish();
                self.state = State::Plain(s);
                return;
            }
            State::Sniff(..) | State::Dropped => return,
            State::Gzip(mut d) => (d.try_finish().is_ok(), self.take(d.get_mut())),
            State::Zlib(mut d) => (d.try_finish().is_ok(), self.take(d.get_mut())),
            State::Raw(mut d) => (d.try_finish().is_ok(), self.take(d.get_mut())),
            State::Brotli(d) => match d.into_inner() {
                Ok(sink) => (true, sink),
                Err(partial) => (false, partial),
            },
        };
        if !complete && self.shape != Shape::Sse {
            return;
        }
        sink.scanner.finish();
        self.state = State::Plain(sink.scanner);
    }

    /// The decoder's sink, taken out of it.
    fn take(&self, sink: &mut Sink) -> Sink {
        std::mem::replace(sink, Sink::new(self.shape))
    }

    /// The answer's tokens and model (none when it was dropped).
    pub fn result(&self) -> (Tokens, Option<&str>) {
        match &self.state {
            State::Plain(s) => (s.tokens, s.model.as_deref()),
            _ => (Tokens::default(), None),
        }
    }
}

/// The window a brotli stream declares in its first byte (RFC 7932, 9.1), as bits;
/// `None` for the large-window extension (not standard HTTP brotli).
fn brotli_window_bits(b: u8) -> Option<u8> {
    if b & 1 == 0 {
        return Some(16);
    }
    match ((b >> 1) & 7, (b >> 4) & 7) {
        (0, 1) => None,
        (0, 0) => Some(17),
        (0, m) => Some(8 + m),
        (n, _) => Some(17 + n),
    }
}

/// Whether two bytes start a zlib stream (RFC 1950: method 8, window at most 32 KiB, check).
fn zlib_header(h: &[u8]) -> bool {
    let (cmf, flg) = (h[0], h[1]);
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
