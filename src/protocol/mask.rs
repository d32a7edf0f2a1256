//! Masking (RFC 6455 5.3): XOR with a repeating 4-byte key.
//!
//! The payload is processed 32 bytes at a time against a pre-expanded key so the loop
//! vectorises; on x86_64 an AVX2 copy of the same loop is chosen at run time, because the
//! default target only allows SSE2 and unmasking is the hot path of every read.

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into a masked payload.
///
/// Masking is its own inverse, so this both masks and unmasks. The `offset` lets a
/// payload that arrives in pieces be unmasked piece by piece.
///
/// ```
/// use actix_meta_websocket::protocol::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 5.7
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    #[cfg(target_arch = "x86_64")]
    {
        if buf.len() >= 128 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { apply_mask_avx2(buf, key) };
            return;
        }
    }
    apply_mask_portable(buf, key);
}

fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_portable(buf, key)
}

#[inline(always)]
fn apply_mask_portable(buf: &mut [u8], key: [u8; 4]) {
    let mut wide = [0u8; 32];
    for (i, b) in wide.iter_mut().enumerate() {
        *b = key[i & 3];
    }
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for (b, k) in chunk.iter_mut().zip(wide.iter()) {
            *b ^= *k;
        }
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) & 3];
        }
    }

    #[test]
    fn matches_naive_for_all_lengths_and_offsets() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..300 {
            for offset in 0..4 {
                let orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut a = orig.clone();
                let mut b = orig.clone();
                apply_mask(&mut a, key, offset);
                naive(&mut b, key, offset);
                assert_eq!(a, b, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = orig.clone();
        let mut at = 0;
        for step in [1, 3, 7, 200, 33, 756] {
            apply_mask(&mut pieces[at..at + step], key, at);
            at += step;
        }
        assert_eq!(at, 1000);
        assert_eq!(whole, pieces);
    }
}
