//! HMAC-SHA256 (RFC 2104) and a constant-time comparison of tags.
//!
//! `HMAC(K, m) = H((K0 ⊕ opad) ‖ H((K0 ⊕ ipad) ‖ m))`, where `K0` is the key
//! zero-padded to the 64-byte block, or its SHA-256 digest zero-padded when the
//! key is *longer* than a block (a 64-byte key is used as is). Tags are kept
//! whole (32 bytes, no truncation) and compared with [`ct_eq`].

use super::sha256::{Sha256, BLOCK_LEN, DIGEST_LEN};

/// Bytes in a tag.
pub const TAG_LEN: usize = DIGEST_LEN;

/// An HMAC-SHA256 key, ready to start computations (both pads precomputed).
#[derive(Clone)]
pub struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    /// Prepares `key` (any length; RFC 2104 §3 advises at least 32 bytes).
    pub fn new(key: &[u8]) -> Self {
        let mut k0 = [0u8; BLOCK_LEN];
        if key.len() > BLOCK_LEN {
            k0[..DIGEST_LEN].copy_from_slice(&super::sha256::sha256(key));
        } else {
            k0[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(&k0.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(&k0.map(|b| b ^ 0x5c));
        HmacKey { inner, outer }
    }

    /// Starts a tag computation.
    pub fn start(&self) -> Hmac {
        Hmac {
            inner: self.inner.clone(),
            outer: self.outer.clone(),
        }
    }

    /// The tag of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut h = self.start();
        h.update(data);
        h.finish()
    }
}

/// An incremental HMAC computation.
pub struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    /// Feeds more of the message.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The tag: the outer hash over the inner digest (raw bytes, not hex).
    pub fn finish(self) -> [u8; TAG_LEN] {
        let inner = self.inner.finish();
        let mut outer = self.outer;
        outer.update(&inner);
        outer.finish()
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    HmacKey::new(key).tag(data)
}

/// Whether `a == b`, in time that depends only on the lengths. Lengths are not
/// secret, so a length mismatch returns early; an empty or short tag never
/// matches a full one. `black_box` keeps the compiler from turning the loop
/// into an early exit (best effort: std documents no hard guarantee).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::super::sha256::to_hex;
    use super::*;

    fn check(key: &[u8], data: &[u8], want: &str) {
        assert_eq!(to_hex(&hmac_sha256(key, data)), want);
    }

    /// RFC 4231 §4, test cases 1–4, 6 and 7 (5 is truncation, below).
    #[test]
    fn tags_match_rfc_4231() {
        check(
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        );
        check(
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        );
        check(
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        );
        let key4: Vec<u8> = (0x01..=0x19).collect();
        check(
            &key4,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        );
        check(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        );
        check(
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than \
block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        );
    }

    /// RFC 4231 test case 5 prints only the first 128 bits; we keep all 256.
    #[test]
    fn the_truncation_case_matches_in_full() {
        let tag = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
        assert_eq!(to_hex(&tag[..16]), "a3b6167473100ee06e0c796c2955552b");
        assert_eq!(
            to_hex(&tag),
            "a3b6167473100ee06e0c796c2955552bfa6f7c0a6a8aef8b93f860aab0cd20c5"
        );
    }

    /// NIST's HMAC_SHA256 example values: keys shorter than, exactly one, and
    /// longer than a block. A 64-byte key must not be hashed.
    #[test]
    fn keys_of_exactly_one_block_are_not_hashed() {
        let key: Vec<u8> = (0..=0x63).collect();
        check(
            &key[..64],
            b"Sample message for keylen=blocklen",
            "8bb9a1db9806f20df7f77b82138c7914d174d59e13dc4d0169c9057b133e1d62",
        );
        check(
            &key[..32],
            b"Sample message for keylen<blocklen",
            "a28cf43130ee696a98f14a37678b56bcfcbdd9e5cf69717fecf5480f0ebdf790",
        );
        check(
            &key,
            b"Sample message for keylen=blocklen",
            "bdccb6c72ddeadb500ae768386cb38cc41c63dbb0878ddb9c7a38a431b78378d",
        );
    }

    #[test]
    fn incremental_tags_equal_one_shot_tags() {
        let key = HmacKey::new(b"Jefe");
        let data = b"what do ya want for nothing?";
        for split in 0..=data.len() {
            let mut h = key.start();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), key.tag(data), "split at {split}");
        }
    }

    #[test]
    fn tags_of_the_wrong_length_never_match() {
        let tag = hmac_sha256(b"key", b"message");
        assert!(ct_eq(&tag, &tag));
        assert!(!ct_eq(&tag, &[]));
        assert!(!ct_eq(&tag, &tag[..31]));
        let mut long = tag.to_vec();
        long.push(0);
        assert!(!ct_eq(&tag, &long));
        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(!ct_eq(&tag, &flipped));
    }
}
