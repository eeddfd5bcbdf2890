//! Passive health checks, the workers' half (NAT only: a NAT real server's replies pass
//! the director, in DR and TUN they go straight to the client). Three signals, each
//! counted at most once per connection attempt on the destination's
//! [`PassiveFailures`](crate::service::PassiveFailures) (one relaxed atomic add; no
//! allocation, no event, nothing on a packet of a healthy connection beyond one flag
//! test):
//!
//! - **RST**: the server answers a client's SYN with a reset (nothing listens);
//! - **ICMP unreachable**: it sends a destination-unreachable (network, host,
//!   protocol, port, or administratively prohibited; not fragmentation-needed) about a
//!   TCP handshake it never answered, or about any UDP datagram;
//! - **SYN timeout**: a handshake still unanswered at two consecutive once-a-second
//!   expiry sweeps, i.e. no SYN-ACK within 1 to 2 s (the client's first SYN
//!   retransmission comes after 1 s on Linux, RFC 6298's initial RTO).
//!
//! The control side ([`crate::keepalived::passive`]) reads the counters and applies
//! the threshold. Only the flags a connection carries decide, so each function is pure
//! in (entry, packet).

use crate::conn::tcp::TcpState;
use crate::conn::{Conn, conn_flags};
use crate::service::PassiveSignal;
use crate::wire::{icmp, ipv4, l4::tcp_flags};

/// Is this a NAT handshake the real server has not answered and nobody counted yet?
#[inline]
fn unanswered(flags: u8, state: TcpState) -> bool {
    flags & (conn_flags::NO_OUTPUT | conn_flags::REPLIED | conn_flags::PASSIVE_REPORTED) == 0
        && state == TcpState::SynRecv
}

/// A real server's TCP segment on its NAT entry, looked at before the state machine
/// accounts it: a reset to a SYN it never answered is a failure.
#[inline]
pub fn reply_signal(flags: u8, state: TcpState, seg_flags: u8) -> Option<PassiveSignal> {
    (seg_flags & tcp_flags::RST != 0 && unanswered(flags, state)).then_some(PassiveSignal::Rst)
}

/// An ICMP error (`icmp_type`, `code`) from a NAT real server about the entry's packet.
pub fn icmp_signal(flags: u8, state: TcpState, proto: u8, icmp_type: u8, code: u8) -> Option<PassiveSignal> {
    // RFC 1812 5.2.7.1 codes: 0 net, 1 host, 2 protocol, 3 port, 9/10 net/host
    // administratively prohibited, 13 communication administratively prohibited.
    let unreachable = icmp_type == icmp::TYPE_DEST_UNREACH && matches!(code, 0..=3 | 9 | 10 | 13);
    let counts = match proto {
        ipv4::proto::TCP => unanswered(flags, state),
        ipv4::proto::UDP => flags & (conn_flags::NO_OUTPUT | conn_flags::PASSIVE_REPORTED) == 0,
        _ => false,
    };
    (unreachable && counts).then_some(PassiveSignal::Unreachable)
}

/// The once-a-second sweep's look at a live TCP entry: the first sweep that finds a
/// handshake unanswered marks it, the second counts a SYN timeout. Mutates only flags.
#[inline]
pub fn sweep_signal(flags: &mut u8, state: TcpState) -> Option<PassiveSignal> {
    if !unanswered(*flags, state) {
        return None;
    }
    if *flags & conn_flags::SYN_AGED == 0 {
        *flags |= conn_flags::SYN_AGED;
        return None;
    }
    *flags |= conn_flags::PASSIVE_REPORTED;
    Some(PassiveSignal::SynTimeout)
}

/// Count `s` (if any) on the entry's destination, once per handshake.
#[inline]
pub fn report(c: &mut Conn, s: Option<PassiveSignal>) {
    if let Some(s) = s {
        c.flags |= conn_flags::PASSIVE_REPORTED;
        c.dest.passive.add(s);
    }
}

/// Hook: a real server's TCP segment on its NAT entry (before the state machine).
#[inline]
pub fn on_reply(c: &mut Conn, seg_flags: u8) {
    let s = reply_signal(c.flags, c.state, seg_flags);
    report(c, s);
}

/// Hook: an ICMP error (the whole IPv4 packet `ip`) from a NAT real server about the
/// entry's packet of protocol `proto`.
pub fn on_icmp(c: &mut Conn, proto: u8, ip: &[u8]) {
    let (t, code) = icmp_type_code(ip);
    let s = icmp_signal(c.flags, c.state, proto, t, code);
    report(c, s);
}

/// The sweep's visitor ([`crate::conn::ConnTable::expire_visit`]).
#[inline]
pub fn sweep(k: &crate::conn::ConnKey, c: &mut Conn) {
    if k.proto == ipv4::proto::TCP {
        let s = sweep_signal(&mut c.flags, c.state);
        report(c, s);
    }
}

/// The type and code of an ICMP message in the IPv4 packet `ip` (already validated
/// by the classifier).
pub fn icmp_type_code(ip: &[u8]) -> (u8, u8) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    (ip.get(hl).copied().unwrap_or(0), ip.get(hl + 1).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::conn_flags::*;
    use TcpState::{Close, Established, SynRecv, TimeWait};
    const NONE: TcpState = TcpState::None;

    const SYN: u8 = tcp_flags::SYN;
    const RST: u8 = tcp_flags::RST;
    const ACK: u8 = tcp_flags::ACK;

    #[test]
    fn a_reset_to_an_unanswered_syn_is_a_failure_once() {
        assert_eq!(reply_signal(0, SynRecv, RST | ACK), Some(PassiveSignal::Rst));
        assert_eq!(reply_signal(OUT_INDEXED, SynRecv, RST), Some(PassiveSignal::Rst));
        // A SYN-ACK is the answer, not a failure.
        assert_eq!(reply_signal(0, SynRecv, SYN | ACK), None);
        // A reset after the server answered (an application abort) is not one.
        assert_eq!(reply_signal(REPLIED, SynRecv, RST), None);
        assert_eq!(reply_signal(REPLIED, Established, RST), None);
        // Nor on an entry not in a handshake (e.g. synced ESTABLISHED), nor twice,
        // nor on DR/TUN entries (the director never sees their replies anyway).
        assert_eq!(reply_signal(0, Established, RST), None);
        assert_eq!(reply_signal(PASSIVE_REPORTED, SynRecv, RST), None);
        assert_eq!(reply_signal(NO_OUTPUT, SynRecv, RST), None);
    }

    #[test]
    fn icmp_unreachable_codes_count_frag_needed_does_not() {
        let tcp = ipv4::proto::TCP;
        let udp = ipv4::proto::UDP;
        for code in [0, 1, 2, 3, 9, 10, 13] {
            assert_eq!(
                icmp_signal(0, SynRecv, tcp, icmp::TYPE_DEST_UNREACH, code),
                Some(PassiveSignal::Unreachable),
                "code {code}"
            );
        }
        assert_eq!(
            icmp_signal(0, SynRecv, tcp, icmp::TYPE_DEST_UNREACH, icmp::CODE_FRAG_NEEDED),
            None
        );
        assert_eq!(icmp_signal(0, SynRecv, tcp, icmp::TYPE_TIME_EXCEEDED, 0), None);
        assert_eq!(icmp_signal(0, SynRecv, tcp, icmp::TYPE_SOURCE_QUENCH, 0), None);
        // TCP: only about a handshake the server never answered.
        assert_eq!(icmp_signal(REPLIED, Established, tcp, 3, 3), None);
        // UDP: any datagram of a NAT entry (UDP has no handshake), once.
        assert_eq!(icmp_signal(REPLIED, NONE, udp, 3, 3), Some(PassiveSignal::Unreachable));
        assert_eq!(icmp_signal(PASSIVE_REPORTED, NONE, udp, 3, 3), None);
        assert_eq!(icmp_signal(NO_OUTPUT, NONE, udp, 3, 3), None);
        assert_eq!(icmp_signal(0, NONE, 132, 3, 3), None);
    }

    #[test]
    fn a_handshake_unanswered_at_two_sweeps_is_a_syn_timeout_once() {
        let mut f = OUT_INDEXED;
        assert_eq!(sweep_signal(&mut f, SynRecv), None, "first sweep only marks");
        assert_ne!(f & SYN_AGED, 0);
        assert_eq!(sweep_signal(&mut f, SynRecv), Some(PassiveSignal::SynTimeout));
        assert_eq!(sweep_signal(&mut f, SynRecv), None, "counted once");
        // Answered in between: no failure.
        let mut f = 0;
        sweep_signal(&mut f, SynRecv);
        f |= REPLIED;
        assert_eq!(sweep_signal(&mut f, SynRecv), None);
        // Established, closing, DR entries: never.
        for (mut f, st) in [(0, Established), (0, Close), (0, TimeWait), (NO_OUTPUT, SynRecv)] {
            assert_eq!(sweep_signal(&mut f, st), None);
            assert_eq!(sweep_signal(&mut f, st), None);
        }
    }

    #[test]
    fn icmp_type_and_code_follow_the_ip_header_length() {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[20] = 3;
        p[21] = 1;
        assert_eq!(icmp_type_code(&p), (3, 1));
        let mut p = vec![0u8; 32];
        p[0] = 0x46;
        p[24] = 3;
        p[25] = 13;
        assert_eq!(icmp_type_code(&p), (3, 13));
        assert_eq!(icmp_type_code(&[0x4f, 0]), (0, 0), "short: nothing");
    }
}
