//! Snapshots as streams: the codec's primitives written to an [`io::Write`]
//! and read from an [`io::Read`] a buffer at a time, ending in a CRC-32.
//!
//! The state machine's snapshot can be far larger than anything else a server
//! encodes (hundreds of megabytes), so it is never built as one buffer:
//! [`SnapshotWriter`] encodes entry by entry into a 64 KiB buffer and hands it
//! on whenever it fills; [`SnapshotReader`] refills a 64 KiB buffer and
//! decodes from it. Both checksum every byte that passes, and a stream ends
//! with the checksum of everything before it:
//!
//! ```text
//! stream = body crc32(body):u32le        (nothing may follow)
//! ```
//!
//! The primitives are the codec's ([`crate::codec`]): `u8`, `bool`, LEB128
//! `uvarint`, length-prefixed `bytes`. Reading treats its input as untrusted,
//! as [`crate::codec::Decoder`] does: it never panics and never allocates more
//! than the bytes that actually arrived. A byte string is copied out as it
//! arrives, so a forged length of 2^62 costs a read to the end of the input and
//! an error, not a 2^62-byte allocation. Errors keep the codec's distinction:
//! input that ended early is [`io::ErrorKind::UnexpectedEof`], input that can
//! never be valid is [`io::ErrorKind::InvalidData`].

use std::io::{self, Read, Write};

use crate::codec::{Crc32, DecodeError, Decoder, Encoder};

/// Bytes gathered before they are handed to the writer, and the most asked of
/// the reader at once.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// The error for input that can never be a valid snapshot.
pub fn corrupt(why: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt snapshot: {}", why.into()),
    )
}

/// The error for input that ended in the middle of a snapshot.
fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "snapshot ends in the middle of a value",
    )
}

/// Encodes a snapshot onto a writer, a buffer at a time, checksumming it.
pub struct SnapshotWriter<W: Write> {
    out: W,
    /// Encoded bytes not yet handed to `out`.
    pending: Encoder,
    /// Checksum of every byte handed to `out`.
    crc: Crc32,
    /// Bytes handed to `out`.
    written: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// A writer that has written nothing yet.
    pub fn new(out: W) -> Self {
        SnapshotWriter {
            out,
            pending: Encoder::new(),
            crc: Crc32::new(),
            written: 0,
        }
    }

    /// Writes one byte.
    pub fn put_u8(&mut self, v: u8) -> io::Result<()> {
        self.pending.put_u8(v);
        self.flush_if_full()
    }

    /// Writes a boolean as `0` or `1`.
    pub fn put_bool(&mut self, v: bool) -> io::Result<()> {
        self.pending.put_bool(v);
        self.flush_if_full()
    }

    /// Writes an unsigned integer as a LEB128 varint.
    pub fn put_uvarint(&mut self, v: u64) -> io::Result<()> {
        self.pending.put_uvarint(v);
        self.flush_if_full()
    }

    /// Writes a length-prefixed byte string. A long one goes straight to the
    /// writer rather than through the buffer.
    pub fn put_bytes(&mut self, v: &[u8]) -> io::Result<()> {
        if v.len() < BUFFER_BYTES {
            self.pending.put_bytes(v);
            return self.flush_if_full();
        }
        self.pending.put_uvarint(v.len() as u64);
        self.flush()?;
        self.emit(v)
    }

    /// Ends the stream with the checksum of everything written, flushes the
    /// writer, and returns the stream's length in bytes (checksum included).
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush()?;
        let crc = self.crc.finish().to_le_bytes();
        self.out.write_all(&crc)?;
        self.out.flush()?;
        Ok(self.written + crc.len() as u64)
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.pending.as_bytes().len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the buffered bytes to the writer.
    fn flush(&mut self) -> io::Result<()> {
        let bytes = self.pending.as_bytes();
        self.crc.update(bytes);
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Hands `bytes` to the writer directly (the buffer must be empty).
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(self.pending.as_bytes().is_empty());
        self.crc.update(bytes);
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Decodes a snapshot from a reader, a buffer at a time, checksumming it.
pub struct SnapshotReader<R: Read> {
    input: R,
    buf: Box<[u8]>,
    /// The bytes read but not yet decoded are `buf[start..end]`.
    start: usize,
    /// Invariant: `start <= end <= buf.len()`.
    end: usize,
    /// Checksum of every byte decoded.
    crc: Crc32,
    /// Whether `input` has reported its end.
    at_eof: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// A reader at the start of `input`.
    pub fn new(input: R) -> Self {
        SnapshotReader {
            input,
            buf: vec![0; BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            crc: Crc32::new(),
            at_eof: false,
        }
    }

    /// Reads one byte.
    pub fn get_u8(&mut self) -> io::Result<u8> {
        self.decode(|d| d.get_u8())
    }

    /// Reads a boolean; any byte other than `0` or `1` is corrupt.
    pub fn get_bool(&mut self) -> io::Result<bool> {
        self.decode(|d| d.get_bool())
    }

    /// Reads a LEB128 varint.
    pub fn get_uvarint(&mut self) -> io::Result<u64> {
        self.decode(|d| d.get_uvarint())
    }

    /// Reads a length-prefixed byte string, copying it out as it arrives: the
    /// allocation grows with the bytes actually read, never with the length
    /// the input claims.
    pub fn get_vec(&mut self) -> io::Result<Vec<u8>> {
        let mut left = self.get_uvarint()?;
        let mut bytes = Vec::new();
        while left > 0 {
            if self.start == self.end {
                self.refill()?;
                if self.start == self.end {
                    return Err(truncated());
                }
            }
            let available = self.end - self.start;
            let n = usize::try_from(left).map_or(available, |left| left.min(available));
            bytes.extend_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            left -= n as u64;
        }
        Ok(bytes)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn get_string(&mut self) -> io::Result<String> {
        String::from_utf8(self.get_vec()?).map_err(|_| corrupt("invalid UTF-8"))
    }

    /// Reads the checksum that ends the stream, checks it against the bytes
    /// decoded, and checks that nothing follows it.
    pub fn finish(mut self) -> io::Result<()> {
        let expected = self.crc.finish();
        let trailer = self.decode(|d| Ok([d.get_u8()?, d.get_u8()?, d.get_u8()?, d.get_u8()?]))?;
        let found = u32::from_le_bytes(trailer);
        if found != expected {
            return Err(corrupt(format!(
                "checksum {found:#010x}, but the bytes have {expected:#010x}"
            )));
        }
        self.expect_end()
    }

    /// Checks that nothing follows, without a checksum (for the encodings
    /// from before it had one).
    pub fn finish_unchecked(mut self) -> io::Result<()> {
        self.expect_end()
    }

    fn expect_end(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.refill()?;
        }
        if self.start < self.end {
            return Err(corrupt("unexpected bytes after the end"));
        }
        Ok(())
    }

    /// Decodes one primitive (at most a few bytes long) with the codec's
    /// decoder, reading more input while it reports "need more bytes".
    fn decode<T>(
        &mut self,
        get: impl Fn(&mut Decoder<'_>) -> Result<T, DecodeError>,
    ) -> io::Result<T> {
        loop {
            let available = &self.buf[self.start..self.end];
            let mut d = Decoder::new(available);
            match get(&mut d) {
                Ok(v) => {
                    let used = available.len() - d.remaining();
                    self.consume(used);
                    return Ok(v);
                }
                Err(DecodeError::Truncated) if !self.at_eof => self.refill()?,
                Err(DecodeError::Truncated) => return Err(truncated()),
                Err(DecodeError::Corrupt(why)) => return Err(corrupt(why)),
            }
        }
    }

    /// Marks `n` buffered bytes decoded.
    fn consume(&mut self, n: usize) {
        self.crc.update(&self.buf[self.start..self.start + n]);
        self.start += n;
    }

    /// Moves the undecoded bytes to the front of the buffer and reads more
    /// after them; notes the input's end if it has no more.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        debug_assert!(self.end < self.buf.len(), "refilled only for a few bytes");
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.at_eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input that hands out at most `step` bytes per read, and remembers
    /// the largest read it was asked for.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        largest_ask: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.largest_ask = self.largest_ask.max(buf.len());
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn trickle(bytes: &[u8], step: usize) -> Trickle<'_> {
        Trickle {
            bytes,
            step,
            largest_ask: 0,
        }
    }

    const STRING_LENGTHS: [usize; 6] = [
        0,
        1,
        BUFFER_BYTES - 1,
        BUFFER_BYTES,
        7,
        3 * BUFFER_BYTES + 5,
    ];

    /// Writes a stream that crosses the buffer's edges in every way: varints
    /// of every width, short strings, and strings longer than the buffer.
    fn sample_stream() -> (Vec<u8>, u64) {
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        for i in 0..20_000u64 {
            w.put_uvarint(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64))
                .unwrap();
            w.put_bool(i % 3 == 0).unwrap();
        }
        for len in STRING_LENGTHS {
            w.put_bytes(&vec![len as u8; len]).unwrap();
            w.put_u8(0xAB).unwrap();
        }
        let written = w.finish().unwrap();
        (bytes, written)
    }

    fn read_sample(r: &mut SnapshotReader<impl Read>) -> io::Result<()> {
        for i in 0..20_000u64 {
            assert_eq!(
                r.get_uvarint()?,
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64)
            );
            assert_eq!(r.get_bool()?, i % 3 == 0);
        }
        for len in STRING_LENGTHS {
            assert_eq!(r.get_vec()?, vec![len as u8; len]);
            assert_eq!(r.get_u8()?, 0xAB);
        }
        Ok(())
    }

    #[test]
    fn primitives_round_trip_across_buffer_edges_even_one_byte_per_read() {
        let (bytes, written) = sample_stream();
        assert_eq!(written, bytes.len() as u64);
        for step in [1, 3, BUFFER_BYTES, usize::MAX] {
            let mut r = SnapshotReader::new(trickle(&bytes, step));
            read_sample(&mut r).unwrap();
            r.finish().unwrap();
        }
    }

    #[test]
    fn a_wrong_checksum_or_bytes_after_the_end_are_corrupt_and_a_short_stream_is_truncated() {
        let (bytes, _) = sample_stream();
        let kind = |bytes: &[u8]| {
            let mut r = SnapshotReader::new(bytes);
            read_sample(&mut r)
                .and_then(|()| r.finish())
                .map_err(|e| e.kind())
        };
        assert_eq!(kind(&bytes), Ok(()));
        let mut wrong_crc = bytes.clone();
        *wrong_crc.last_mut().unwrap() ^= 1;
        assert_eq!(kind(&wrong_crc), Err(io::ErrorKind::InvalidData));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(kind(&longer), Err(io::ErrorKind::InvalidData));
        for cut in [bytes.len() - 1, bytes.len() - 4, bytes.len() / 2, 1] {
            assert_eq!(
                kind(&bytes[..cut]),
                Err(io::ErrorKind::UnexpectedEof),
                "{cut}"
            );
        }
    }

    /// A length prefix of 2^62 over a few real bytes: the reader copies what
    /// arrives and fails when the input ends. Allocating the claimed length up
    /// front would abort the process instead (the allocation fails).
    #[test]
    fn a_forged_huge_length_is_truncated_input_not_a_huge_allocation() {
        let mut e = Encoder::new();
        e.put_uvarint(1 << 62);
        let mut forged = e.finish();
        forged.extend_from_slice(&[b'x'; 3 * BUFFER_BYTES]);
        let mut input = trickle(&forged, usize::MAX);
        let mut r = SnapshotReader::new(&mut input);
        let refused = r.get_vec().unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::UnexpectedEof, "{refused}");
        assert!(input.largest_ask <= BUFFER_BYTES, "{}", input.largest_ask);
    }
}
