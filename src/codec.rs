//! The binary encoding used on the wire and on disk: a small, gob-like format.
//!
//! Every value is a sequence of primitives:
//!
//! | primitive | encoding                                                    |
//! |-----------|-------------------------------------------------------------|
//! | `u8`      | one byte                                                    |
//! | `bool`    | one byte, `0` or `1` (anything else is corrupt)             |
//! | `uvarint` | LEB128: 7 bits per byte, low group first, high bit = "more" |
//! | `bytes`   | `uvarint` length, then that many bytes                      |
//!
//! Structs are their fields in declaration order; enums are a `u8` tag then the
//! variant's fields; a `Vec<T>` is a `uvarint` count then the elements. Top-level
//! messages start with a version byte (see [`crate::raft::messages`]).
//!
//! Decoding treats its input as untrusted: it never panics, it bounds every
//! length by the bytes actually present before allocating, and it tells
//! "the input ended early" ([`DecodeError::Truncated`]) apart from "the input is
//! wrong" ([`DecodeError::Corrupt`]), as mini-redis's frame parser does.

use std::fmt;

/// Why a decoder rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended in the middle of a value: more bytes might complete it.
    Truncated,
    /// The input can never be valid, whatever follows.
    Corrupt(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "input ended in the middle of a value"),
            DecodeError::Corrupt(why) => write!(f, "corrupt input: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Builds an encoding by appending primitives to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a boolean as `0` or `1`.
    pub fn put_bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// Appends an unsigned integer as a LEB128 varint (1 to 10 bytes).
    pub fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Appends a length-prefixed byte string.
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.put_uvarint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Appends any encodable value.
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode_to(self);
    }

    /// Appends a count-prefixed sequence of values.
    pub fn put_seq<T: Encode>(&mut self, items: &[T]) {
        self.put_uvarint(items.len() as u64);
        for item in items {
            item.encode_to(self);
        }
    }

    /// The bytes written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far, leaving them in place (for an encoder used as
    /// a write buffer: read them, then [`Encoder::clear`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the bytes written so far, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Reads primitives from untrusted bytes, front to back.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads one byte.
    pub fn get_u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a boolean; any byte other than `0` or `1` is corrupt.
    pub fn get_bool(&mut self) -> Result<bool, DecodeError> {
        match self.get_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::Corrupt(format!("bool byte {b}"))),
        }
    }

    /// Reads a LEB128 varint; more than 64 bits of payload is corrupt.
    pub fn get_uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.get_u8()?;
            let group = u64::from(b & 0x7f);
            if shift == 63 && group > 1 {
                return Err(DecodeError::Corrupt("varint overflows 64 bits".into()));
            }
            value |= group << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Corrupt("varint longer than 10 bytes".into()))
    }

    /// Reads a varint that must fit a `usize` no larger than `max`.
    pub fn get_len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.get_uvarint()?;
        if n > max as u64 {
            return Err(DecodeError::Corrupt(format!(
                "length {n} exceeds limit {max}"
            )));
        }
        Ok(n as usize)
    }

    /// Reads a length-prefixed byte string, borrowing it from the input.
    pub fn get_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.get_len(usize::MAX)?;
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// Reads a length-prefixed byte string into an owned vector.
    pub fn get_vec(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.get_bytes()?.to_vec())
    }

    /// Reads any decodable value.
    pub fn get<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode_from(self)
    }

    /// Reads a count-prefixed sequence. The count is checked against the bytes
    /// left (every element takes at least one byte) before anything is allocated.
    pub fn get_seq<T: Decode>(&mut self) -> Result<Vec<T>, DecodeError> {
        let count = self.get_uvarint()?;
        if count > self.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        let mut items = Vec::with_capacity(count as usize);
        for _ in 0..count {
            items.push(T::decode_from(self)?);
        }
        Ok(items)
    }

    /// Succeeds only if every byte was consumed: trailing garbage is corruption.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::Corrupt(format!(
                "{} unexpected trailing bytes",
                self.remaining()
            )))
        }
    }
}

/// A value with a binary encoding.
pub trait Encode {
    /// Appends this value's encoding.
    fn encode_to(&self, e: &mut Encoder);

    /// This value's encoding as a fresh buffer.
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_to(&mut e);
        e.finish()
    }
}

/// A value that can be read back from its binary encoding.
pub trait Decode: Sized {
    /// Reads one value, leaving the decoder just past it.
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// Reads exactly one value from `bytes`; trailing bytes are corruption.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let v = Self::decode_from(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

impl Encode for u64 {
    fn encode_to(&self, e: &mut Encoder) {
        e.put_uvarint(*self);
    }
}

impl Decode for u64 {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.get_uvarint()
    }
}

impl Encode for Vec<u8> {
    fn encode_to(&self, e: &mut Encoder) {
        e.put_bytes(self);
    }
}

impl Decode for Vec<u8> {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.get_vec()
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial `0xEDB88320`), used to checksum
/// records on disk and snapshot streams.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// A CRC-32 computed over bytes that arrive in pieces (a streamed snapshot):
/// `update` with each piece, then `finish`. Equal to [`crc32`] of the pieces
/// joined.
///
/// Trade-off: "slicing by 8" (eight 1 KiB tables, eight bytes folded in per
/// step) instead of the bitwise definition (kept in the tests as the
/// reference). About 1.8 GB/s instead of 0.2 GB/s on this machine, which
/// matters once a snapshot is hundreds of megabytes.
#[derive(Debug, Clone, Copy)]
pub struct Crc32 {
    /// The running register, complemented (as the standard keeps it).
    state: u32,
}

/// `CRC_TABLES[0][b]` is the register after shifting byte `b` through it bit
/// by bit; `CRC_TABLES[k][b]` is the same followed by `k` zero bytes, so the
/// eight bytes of a word can be looked up independently and combined by XOR.
const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            bit += 1;
        }
        tables[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let previous = tables[k - 1][b];
            tables[k][b] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    tables
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// The checksum of no bytes yet.
    pub fn new() -> Self {
        Crc32 { state: !0 }
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        let t = &CRC_TABLES;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            // The register meets the first four bytes; the last four only
            // need shifting through the tables for their distance from the end.
            let low = self.state ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let [l0, l1, l2, l3] = low.to_le_bytes();
            self.state = t[7][usize::from(l0)]
                ^ t[6][usize::from(l1)]
                ^ t[5][usize::from(l2)]
                ^ t[4][usize::from(l3)]
                ^ t[3][usize::from(w[4])]
                ^ t[2][usize::from(w[5])]
                ^ t[1][usize::from(w[6])]
                ^ t[0][usize::from(w[7])];
        }
        for &b in words.remainder() {
            self.state = (self.state >> 8) ^ t[0][usize::from(self.state as u8 ^ b)];
        }
    }

    /// The checksum of every byte added so far.
    pub fn finish(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut e = Encoder::new();
            e.put_uvarint(v);
            let bytes = e.finish();
            let mut d = Decoder::new(&bytes);
            assert_eq!(d.get_uvarint(), Ok(v));
            assert!(d.finish().is_ok());
        }
    }

    #[test]
    fn truncated_input_is_told_apart_from_corrupt_input() {
        let mut d = Decoder::new(&[0x80]);
        assert_eq!(d.get_uvarint(), Err(DecodeError::Truncated));
        let mut d = Decoder::new(&[0xff; 11]);
        assert!(matches!(d.get_uvarint(), Err(DecodeError::Corrupt(_))));
        let mut d = Decoder::new(&[2]);
        assert!(matches!(d.get_bool(), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        let mut e = Encoder::new();
        e.put_uvarint(u64::MAX / 2);
        let bytes = e.finish();
        assert_eq!(
            Decoder::new(&bytes).get_bytes(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Decoder::new(&bytes).get_seq::<u64>(),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn trailing_bytes_are_corrupt() {
        assert!(matches!(u64::decode(&[1, 2]), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// The CRC's definition: each byte shifted through the register bit by bit.
    fn bitwise_crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }

    #[test]
    fn the_table_driven_crc_equals_the_bitwise_definition() {
        let mut x = 1u32;
        let bytes: Vec<u8> = (0..4099)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        for len in (0..40).chain([4096, 4099]) {
            assert_eq!(crc32(&bytes[..len]), bitwise_crc32(&bytes[..len]), "{len}");
        }
    }

    #[test]
    fn a_crc_fed_in_pieces_equals_the_crc_of_the_whole() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for cut in [0, 1, 7, 500, 999, 1000] {
            let mut crc = Crc32::new();
            crc.update(&bytes[..cut]);
            crc.update(&bytes[cut..]);
            assert_eq!(crc.finish(), crc32(&bytes), "cut at {cut}");
        }
    }
}
