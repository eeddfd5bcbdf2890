//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` (16-bit big-endian words) added to `initial`,
/// not folded.
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    // The one's-complement sum does not depend on byte order (RFC 1071 §2(B)): add
    // native little-endian 32-bit halves of 64-bit words (w = hi·2^16 + lo ≡ hi + lo
    // mod 0xffff; vectorises), fold to 16 bits and swap the bytes once. No overflow
    // below 2^32 words.
    let mut le = 0u64;
    let mut words = data.chunks_exact(8);
    for c in &mut words {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        le += (v & 0xffff_ffff) + (v >> 32);
    }
    let mut le16 = fold64(le);
    while le16 >> 16 != 0 {
        le16 = (le16 & 0xffff) + (le16 >> 16);
    }
    let mut acc = initial as u64 + (le16 as u16).swap_bytes() as u64;
    let mut chunks = words.remainder().chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Does an option-less IPv4 header check out (its one's-complement sum is all ones)?
/// The common case of every packet, done as five native 32-bit adds: the sum does not
/// depend on byte order and all ones reads the same both ways.
#[inline]
pub fn header20_ok(h: &[u8; 20]) -> bool {
    let w = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as u64;
    let s = fold64(w(0) + w(4) + w(8) + w(12) + w(16));
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

/// Fold a 32-bit accumulator to 16 bits and complement it.
pub fn finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Checksum of a whole buffer.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit field changing m -> m'.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32) + (new as u32);
    finish(acc)
}

/// Incremental update for a 32-bit field (an IPv4 address).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = (!check as u32) + (!(old >> 16) as u16 as u32) + (!(old as u16) as u32) + (new >> 16) + (new & 0xffff);
    finish(acc)
}

/// Pseudo-header sum for TCP/UDP over IPv4.
pub fn pseudo_header(src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, proto: u8, len: u16) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + proto as u32 + len as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header20_agrees_with_the_full_checksum() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            for b in &mut h {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = rng as u8;
            }
            if i % 2 == 0 {
                // Make half of them valid.
                h[10] = 0;
                h[11] = 0;
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(header20_ok(&h), checksum(&h) == 0, "{h:02x?}");
        }
        // All-zero and all-ones sums.
        assert!(!header20_ok(&[0; 20]));
        assert!(header20_ok(&[0xff; 20]));
    }

    #[test]
    fn wide_sum_equals_the_word_by_word_sum() {
        fn reference(initial: u32, d: &[u8]) -> u16 {
            let mut acc = initial as u64;
            for c in d.chunks(2) {
                acc += (u16::from(c[0]) << 8 | u16::from(*c.get(1).unwrap_or(&0))) as u64;
            }
            finish(fold64(acc))
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..200 {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let init = (x >> 20) as u32;
            assert_eq!(finish(sum(init, &d)), reference(init, &d), "len {len}");
            // Chained at an even offset, as the L4 checksum skips its own field.
            let cut = (len / 3) & !1;
            assert_eq!(
                finish(sum(sum(init, &d[..cut]), &d[cut..])),
                reference(init, &d),
                "len {len}"
            );
        }
        assert_eq!(checksum(&[0xff; 4096]), 0);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2, checksum 220d.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), 0x220d);
    }

    #[test]
    fn incremental_equals_full() {
        let mut d = [
            0x45u8, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 10, 203, 0, 113, 5,
        ];
        let c = checksum(&d);
        assert_eq!(c, 0x2A8C, "TV 10.13 original IP header checksum");
        // TTL 64 -> 63 (the TTL/protocol word changes).
        let old = u16::from_be_bytes([d[8], d[9]]);
        d[8] = 63;
        let new = u16::from_be_bytes([d[8], d[9]]);
        let inc = update16(c, old, new);
        assert_eq!(inc, checksum(&d));
        // Destination address change.
        let old32 = u32::from_be_bytes([d[16], d[17], d[18], d[19]]);
        d[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let inc2 = update32(inc, old32, u32::from_be_bytes([10, 0, 0, 2]));
        assert_eq!(inc2, checksum(&d));
        assert_eq!(inc2, 0x5D90, "TV 10.13 NAT IP checksum");
    }
}
