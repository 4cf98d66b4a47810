//! SHA-256 (FIPS 180-4), written out so the crate needs no dependency.
//!
//! Used only inside HMAC-SHA256 (peer authentication) and to derive nonces.
//! The code follows the standard's sections: §4.1.2 functions, §4.2.2
//! constants, §5.1.1 padding, §5.3.3 initial hash value, §6.2.2 compression.
//! Every word is a big-endian `u32` and every addition wraps (`wrapping_add`;
//! a plain `+` would panic on overflow in debug builds).

/// Bytes in one block of input.
pub const BLOCK_LEN: usize = 64;
/// Bytes in a digest.
pub const DIGEST_LEN: usize = 32;

/// §5.3.3: the initial hash value.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// §4.2.2: the round constants.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// An incremental SHA-256 computation: [`Sha256::update`] any number of times,
/// then [`Sha256::finish`].
#[derive(Clone, Debug)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes not yet compressed. Invariant: `buffered < BLOCK_LEN`.
    buffer: [u8; BLOCK_LEN],
    buffered: usize,
    /// Bytes fed so far (the padding ends with this, in bits).
    length: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A computation over no input yet.
    pub fn new() -> Self {
        Sha256 {
            state: H0,
            buffer: [0; BLOCK_LEN],
            buffered: 0,
            length: 0,
        }
    }

    /// Feeds more input.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        // Top up a partly filled buffer first.
        if self.buffered > 0 {
            let take = (BLOCK_LEN - self.buffered).min(data.len());
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < BLOCK_LEN {
                return;
            }
            let block = self.buffer;
            compress(&mut self.state, &block);
            self.buffered = 0;
        }
        // Whole blocks straight from the input, then keep the tail.
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            let mut b = [0u8; BLOCK_LEN];
            b.copy_from_slice(block);
            compress(&mut self.state, &b);
        }
        let tail = blocks.remainder();
        self.buffer[..tail.len()].copy_from_slice(tail);
        self.buffered = tail.len();
        debug_assert!(self.buffered < BLOCK_LEN);
    }

    /// §5.1.1: pads the message and returns its digest.
    pub fn finish(mut self) -> [u8; DIGEST_LEN] {
        let bits = self.length.wrapping_mul(8);
        // 0x80, then zeros until 56 bytes into a block, then the length in bits
        // as a big-endian u64. From 56 buffered bytes on, that spills into a
        // second block.
        let mut padding = [0u8; 2 * BLOCK_LEN];
        padding[0] = 0x80;
        let zeros = if self.buffered < 56 {
            55 - self.buffered
        } else {
            119 - self.buffered
        };
        let end = 1 + zeros;
        padding[end..end + 8].copy_from_slice(&bits.to_be_bytes());
        let length = self.length;
        self.update(&padding[..end + 8]);
        self.length = length;
        debug_assert_eq!(self.buffered, 0);
        let mut digest = [0u8; DIGEST_LEN];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// §6.2.2: one block into the hash state.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    // The message schedule W: 16 words from the block, 48 derived (§6.2.2 step 1).
    let mut w = [0u32; 64];
    for (t, word) in block.chunks_exact(4).enumerate() {
        w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for t in 16..64 {
        w[t] = small_sigma1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(small_sigma0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let t1 = h
            .wrapping_add(big_sigma1(e))
            .wrapping_add(ch(e, f, g))
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let t2 = big_sigma0(a).wrapping_add(maj(a, b, c));
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

// §4.1.2. The last term of the two small sigmas is a shift, not a rotation.
fn ch(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (!x & z)
}
fn maj(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (x & z) ^ (y & z)
}
fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// Lower-case hex of `bytes` (digests in tests and logs).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const B2_448: &[u8] = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const B_896: &[u8] = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno\
ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

    fn hex(data: &[u8]) -> String {
        to_hex(&sha256(data))
    }

    /// FIPS 180-4 example values (FIPS 180-2 appendix B) and the 896-bit message.
    #[test]
    fn digests_match_the_fips_180_examples() {
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(B2_448.len(), 56);
        assert_eq!(
            hex(B2_448),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(B_896.len(), 112);
        assert_eq!(
            hex(B_896),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
    }

    /// FIPS 180-2 B.3: one million 'a', one-shot and in 1-, 63-, 64- and
    /// 1000-byte chunks.
    #[test]
    fn a_million_a_gives_the_same_digest_in_any_chunking() {
        let want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        let data = vec![b'a'; 1_000_000];
        assert_eq!(hex(&data), want);
        for chunk in [1, 63, 64, 1000] {
            let mut h = Sha256::new();
            for piece in data.chunks(chunk) {
                h.update(piece);
            }
            assert_eq!(to_hex(&h.finish()), want, "chunks of {chunk}");
        }
    }

    /// Lengths around the padding boundary: 55 bytes fit one block with the
    /// length; 56..=63 spill the length into a second block.
    #[test]
    fn padding_boundaries_are_right() {
        let cases = [
            (
                55,
                "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            ),
            (
                56,
                "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            ),
            (
                63,
                "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            ),
            (
                64,
                "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            ),
            (
                65,
                "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            ),
        ];
        for (n, want) in cases {
            assert_eq!(hex(&vec![b'a'; n]), want, "{n} bytes of 'a'");
        }
    }

    /// `update` split at every point of the 896-bit message gives the one-shot
    /// digest (a split ending exactly on a block boundary included).
    #[test]
    fn every_split_point_gives_the_one_shot_digest() {
        let want = sha256(B_896);
        for split in 0..=B_896.len() {
            let mut h = Sha256::new();
            h.update(&B_896[..split]);
            h.update(&B_896[split..]);
            assert_eq!(h.finish(), want, "split at {split}");
        }
    }
}
