//! IPv4 header options: the receive-side validity check Linux applies before IPVS
//! sees a packet (`ip_options.c: __ip_options_compile`, `ip_input.c: ip_rcv_options`).

/// Why an IPv4 header's options are refused, as Linux's `ip_options_compile` and
/// `ip_options_rcv_srr` (with the host default accept_source_route = 0) refuse them
/// before IPVS sees the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsError {
    /// What `ip_options.c: __ip_options_compile` rejects for a received packet
    /// (the kernel drops it in `ip_rcv_options` and answers a parameter problem).
    Malformed,
    /// A well-formed loose or strict source route: `ip_input.c: ip_rcv_options`
    /// drops it when the interface does not accept source routes (the default).
    SourceRoute,
}

/// IP option types `__ip_options_compile` looks into (include/uapi/linux/ip.h).
mod opt {
    pub const END: u8 = 0;
    pub const NOOP: u8 = 1;
    pub const RR: u8 = 7;
    pub const TIMESTAMP: u8 = 68;
    pub const CIPSO: u8 = 134;
    pub const LSRR: u8 = 131;
    pub const SSRR: u8 = 137;
    pub const RA: u8 = 148;
    /// Timestamp flags (the low nibble of the fourth byte).
    pub const TS_TSANDADDR: u8 = 1;
    pub const TS_PRESPEC: u8 = 3;
}

/// Check the options area of an IPv4 header (the bytes after the first 20) the way
/// `ip_options.c: __ip_options_compile` checks a received packet's (`skb != NULL`):
///
/// - an option other than END/NOOP without room for its length byte, or with a
///   length below 2 or past the header;
/// - a source route (LSRR/SSRR) shorter than 3, with a pointer below 4, or a second
///   one; record route: a second one, shorter than 3, a pointer below 4, or a
///   pointer inside the option with no room for an address at it;
/// - timestamp: a second one, shorter than 4, a pointer below 5, a pointer inside
///   the option with no room for a 4-byte entry at it (8 for the address+time and
///   prespecified flags), or a full option (pointer past the end) whose overflow
///   counter is already 15 (except prespecified);
/// - router alert shorter than 4;
/// - CIPSO: a second one, or any that `cipso_ipv4.c: cipso_v4_validate` refuses;
///   it refuses every CIPSO option whose DOI is not configured, and a host has no
///   DOI unless netlabelctl added one (uvs has no netlabel configuration, so it
///   refuses them all, as a default host does).
///
/// Security, stream ID and unknown options are accepted (as the kernel accepts them
/// on received packets); END ends the list. Source routes are reported only once
/// the whole list has compiled, as `ip_rcv_options` checks `opt->srr` afterwards.
pub fn check_options(opts: &[u8]) -> Result<(), OptionsError> {
    let bad = Err(OptionsError::Malformed);
    let (mut srr, mut rr, mut ts) = (false, false, false);
    let mut i = 0;
    while i < opts.len() {
        let t = opts[i];
        match t {
            opt::END => break,
            opt::NOOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let l = opts.len() - i;
        if l < 2 {
            return bad;
        }
        let o = &opts[i..];
        let optlen = usize::from(o[1]);
        if optlen < 2 || optlen > l {
            return bad;
        }
        // Byte k of the option (only read once `optlen` is known to cover it).
        let at = |k: usize| o.get(k).copied().unwrap_or(0);
        match t {
            opt::LSRR | opt::SSRR => {
                if optlen < 3 || at(2) < 4 || srr {
                    return bad;
                }
                srr = true;
            }
            opt::RR => {
                if rr || optlen < 3 || at(2) < 4 {
                    return bad;
                }
                let ptr = usize::from(at(2));
                if ptr <= optlen && ptr + 3 > optlen {
                    return bad;
                }
                rr = true;
            }
            opt::TIMESTAMP => {
                if ts || optlen < 4 || at(2) < 5 {
                    return bad;
                }
                let ptr = usize::from(at(2));
                let flag = at(3) & 0x0f;
                if ptr <= optlen {
                    if ptr + 3 > optlen {
                        return bad;
                    }
                    if (flag == opt::TS_TSANDADDR || flag == opt::TS_PRESPEC) && ptr + 7 > optlen {
                        return bad;
                    }
                } else if flag != opt::TS_PRESPEC && at(3) >> 4 == 15 {
                    return bad;
                }
                ts = true;
            }
            opt::RA if optlen < 4 => return bad,
            opt::CIPSO => return bad,
            _ => {}
        }
        i += optlen;
    }
    if srr { Err(OptionsError::SourceRoute) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_checks() {
        assert_eq!(check_options(&[]), Ok(()));
        assert_eq!(check_options(&[1, 1, 0, 9]), Ok(()), "EOL ends the list");
        assert_eq!(check_options(&[7, 7, 4, 0, 0, 0, 0, 0]), Ok(()));
        assert_eq!(check_options(&[7, 9, 4, 0]), Err(OptionsError::Malformed));
        assert_eq!(check_options(&[7, 1, 0, 0]), Err(OptionsError::Malformed));
        assert_eq!(check_options(&[1, 1, 1, 7]), Err(OptionsError::Malformed));
        assert_eq!(
            check_options(&[131, 7, 4, 1, 2, 3, 4, 0]),
            Err(OptionsError::SourceRoute)
        );
        assert_eq!(check_options(&[137, 3, 4, 0]), Err(OptionsError::SourceRoute));
    }

    /// One vector per rejection in `ip_options.c: __ip_options_compile` (received
    /// packet), and the valid neighbours of each that it accepts.
    #[test]
    fn options_as_ip_options_compile() {
        use OptionsError::{Malformed as Bad, SourceRoute as Srr};
        let cases: &[(&str, &[u8], Result<(), OptionsError>)] = &[
            // Framing: l < 2, optlen < 2, optlen > l.
            ("lone type byte at the end", &[1, 1, 1, 68], Err(Bad)),
            ("length 0", &[130, 0, 0, 0], Err(Bad)),
            ("length 1", &[130, 1, 0, 0], Err(Bad)),
            ("length past the header", &[130, 5, 0, 0], Err(Bad)),
            ("END then garbage is ignored", &[0, 68, 0xff, 0], Ok(())),
            ("NOOPs", &[1, 1, 1, 1], Ok(())),
            // Source route: optlen < 3, pointer < 4, a second one; valid ones are
            // dropped as source routes (accept_source_route = 0).
            ("LSRR length 2", &[131, 2, 1, 1], Err(Bad)),
            ("LSRR pointer 3", &[131, 7, 3, 1, 2, 3, 4, 0], Err(Bad)),
            ("two source routes", &[131, 3, 4, 137, 3, 4, 0, 0], Err(Bad)),
            ("SSRR valid", &[137, 7, 4, 1, 2, 3, 4, 0], Err(Srr)),
            ("LSRR then a bad RR", &[131, 3, 4, 7, 2, 0, 0, 0], Err(Bad)),
            // Record route: a second one, optlen < 3, pointer < 4, pointer inside
            // with no room for an address.
            ("RR twice", &[7, 3, 4, 7, 3, 4, 0, 0], Err(Bad)),
            ("RR length 2", &[7, 2, 1, 0], Err(Bad)),
            ("RR pointer 3", &[7, 7, 3, 0, 0, 0, 0, 0], Err(Bad)),
            ("RR pointer 5 of 7", &[7, 7, 5, 0, 0, 0, 0, 0], Err(Bad)),
            ("RR full (pointer 8 of 7)", &[7, 7, 8, 1, 2, 3, 4, 0], Ok(())),
            ("RR pointer 4 of 3 (no room, full)", &[7, 3, 4, 0], Ok(())),
            // Timestamp: a second one, optlen < 4, pointer < 5, no room at the
            // pointer, no room for address+time or prespecified, overflow 15.
            ("TS twice", &[68, 4, 5, 0, 68, 4, 5, 0], Err(Bad)),
            ("TS length 3", &[68, 3, 5, 0], Err(Bad)),
            ("TS pointer 4", &[68, 8, 4, 0, 0, 0, 0, 0], Err(Bad)),
            ("TS pointer 6 of 8", &[68, 8, 6, 0, 0, 0, 0, 0], Err(Bad)),
            ("TS only, room for one", &[68, 8, 5, 0, 0, 0, 0, 0], Ok(())),
            ("TS+addr, room for 4 only", &[68, 8, 5, 1, 0, 0, 0, 0], Err(Bad)),
            ("TS prespec, room for 4 only", &[68, 8, 5, 3, 0, 0, 0, 0], Err(Bad)),
            ("TS+addr, room for 8", &[68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0], Ok(())),
            ("TS unknown flag", &[68, 8, 5, 2, 0, 0, 0, 0], Ok(())),
            ("TS full, overflow 15", &[68, 8, 9, 0xf0, 0, 0, 0, 0], Err(Bad)),
            ("TS full, overflow 14", &[68, 8, 9, 0xe0, 0, 0, 0, 0], Ok(())),
            ("TS full prespec, overflow 15", &[68, 8, 9, 0xf3, 0, 0, 0, 0], Ok(())),
            // Router alert shorter than 4.
            ("RA length 2", &[148, 2, 1, 1], Err(Bad)),
            ("RA", &[148, 4, 0, 0], Ok(())),
            // CIPSO: refused without a configured DOI.
            ("CIPSO", &[134, 8, 0, 0, 0, 1, 1, 2], Err(Bad)),
            // Security, stream ID and unknown options pass on received packets.
            ("security", &[130, 4, 0, 0], Ok(())),
            ("stream ID", &[136, 4, 0, 1], Ok(())),
            ("unknown", &[25, 4, 0, 1], Ok(())),
        ];
        for (name, opts, want) in cases {
            assert_eq!(check_options(opts), *want, "{name}: {opts:?}");
        }
    }
}
