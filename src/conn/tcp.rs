//! The IPVS TCP state machine (ip_vs_proto_tcp.c), normal and secure ("dos") tables,
//! and the protocol timeouts. Pure data and lookups: never allocates.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::wire::l4::tcp_flags;

/// IPVS TCP states, in the kernel's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
}

use TcpState::*;

const ALL: [TcpState; 11] = [
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
];

impl TcpState {
    pub fn from_u8(v: u8) -> TcpState {
        ALL.get(v as usize).copied().unwrap_or(Close)
    }
    /// The name `ipvsadm -L -c` prints.
    pub fn name(self) -> &'static str {
        match self {
            None => "NONE",
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait => "FIN_WAIT",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            SynAck => "SYNACK",
        }
    }
    /// States counted in a destination's ActiveConn (current kernels).
    pub fn is_active(self) -> bool {
        matches!(self, Established | SynSent | SynRecv | SynAck)
    }
}

/// Which way a segment travels relative to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server, NAT connection (or one that has seen output).
    In,
    /// Server to client (only seen with NAT).
    Out,
    /// Client to server while the connection has NO_OUTPUT (DR, TUN).
    InOnly,
}

const ES: TcpState = Established;
const SS: TcpState = SynSent;
const SR: TcpState = SynRecv;
const FW: TcpState = FinWait;
const TW: TcpState = TimeWait;
const CL: TcpState = Close;
const CW: TcpState = CloseWait;
const LA: TcpState = LastAck;
const LI: TcpState = Listen;
const SA: TcpState = SynAck;

type Row = [TcpState; 11];
/// [direction][event: syn, fin, ack, rst][state]
type Table = [[Row; 4]; 3];

const NORMAL: Table = [
    // IN
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // IN-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

const SECURE: Table = [
    // IN
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
        [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
    // OUT
    [
        [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // IN-ONLY
    [
        [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// Next state for a segment with `flags` (precedence RST > SYN > FIN > ACK; a segment
/// with none of them sends the entry to CLOSE).
pub fn transition(state: TcpState, dir: Direction, flags: u8, secure: bool) -> TcpState {
    let event = if flags & tcp_flags::RST != 0 {
        3
    } else if flags & tcp_flags::SYN != 0 {
        0
    } else if flags & tcp_flags::FIN != 0 {
        1
    } else if flags & tcp_flags::ACK != 0 {
        2
    } else {
        return Close;
    };
    let d = match dir {
        Direction::In => 0,
        Direction::Out => 1,
        Direction::InOnly => 2,
    };
    let t = if secure { &SECURE } else { &NORMAL };
    t[d][event][state as usize]
}

/// Protocol timeouts in seconds. `tcp`, `tcpfin` and `udp` are what
/// `ipvsadm --set` changes; the others are fixed as in IPVS.
#[derive(Debug)]
pub struct Timeouts {
    tcp: AtomicU32,
    tcpfin: AtomicU32,
    udp: AtomicU32,
    /// The other states' timeouts (IPVS defaults; `uvs run --timeout STATE=SECS`
    /// changes them, as the old /proc/sys/net/ipv4/vs/timeout_* files did).
    other: [AtomicU32; 11],
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: AtomicU32::new(900),
            tcpfin: AtomicU32::new(120),
            udp: AtomicU32::new(300),
            other: [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120].map(AtomicU32::new),
        }
    }
}

impl Timeouts {
    /// Seconds an entry in `state` lives without a packet.
    pub fn tcp(&self, state: TcpState) -> u32 {
        match state {
            Established => self.tcp.load(Relaxed),
            FinWait => self.tcpfin.load(Relaxed),
            s => self.other[s as usize].load(Relaxed),
        }
    }
    /// Set one state's timeout (ESTABLISHED and FIN_WAIT are `tcp` and `tcpfin`).
    pub fn set_state(&self, state: TcpState, secs: u32) {
        match state {
            Established => self.tcp.store(secs, Relaxed),
            FinWait => self.tcpfin.store(secs, Relaxed),
            s => self.other[s as usize].store(secs, Relaxed),
        }
    }
    /// The state named as `ipvsadm -L -c` prints it (any case), or `udp`'s `None`.
    pub fn state_by_name(name: &str) -> Option<TcpState> {
        ALL.iter().copied().find(|s| s.name().eq_ignore_ascii_case(name))
    }
    pub fn udp(&self) -> u32 {
        self.udp.load(Relaxed)
    }
    /// `(tcp, tcpfin, udp)`, as `ipvsadm -L --timeout` prints them.
    pub fn get(&self) -> (u32, u32, u32) {
        (
            self.tcp.load(Relaxed),
            self.tcpfin.load(Relaxed),
            self.udp.load(Relaxed),
        )
    }
    /// `ipvsadm --set`: a 0 leaves that value unchanged.
    pub fn set(&self, tcp: u32, tcpfin: u32, udp: u32) {
        for (slot, v) in [(&self.tcp, tcp), (&self.tcpfin, tcpfin), (&self.udp, udp)] {
            if v != 0 {
                slot.store(v, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::l4::tcp_flags::*;

    fn run(dir_flags: &[(Direction, u8)], secure: bool) -> Vec<TcpState> {
        let mut s = None;
        dir_flags
            .iter()
            .map(|&(d, f)| {
                s = transition(s, d, f, secure);
                s
            })
            .collect()
    }

    #[test]
    fn tv_10_10_nat_client_closes() {
        use Direction::*;
        let got = run(
            &[
                (In, SYN),
                (Out, SYN | ACK),
                (In, ACK),
                (Out, ACK),
                (In, FIN | ACK),
                (Out, FIN | ACK),
                (In, ACK),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                SynRecv,
                SynRecv,
                Established,
                Established,
                CloseWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn tv_10_10_nat_server_closes() {
        use Direction::*;
        let got = run(
            &[(In, SYN), (In, ACK), (Out, FIN | ACK), (In, FIN | ACK), (Out, ACK)],
            false,
        );
        assert_eq!(got[2..], [FinWait, TimeWait, TimeWait]);
    }

    #[test]
    fn tv_10_10_dr() {
        use Direction::*;
        let got = run(
            &[
                (InOnly, SYN),
                (InOnly, ACK),
                (InOnly, ACK | PSH),
                (InOnly, FIN | ACK),
                (InOnly, ACK),
            ],
            false,
        );
        assert_eq!(got, vec![SynRecv, Established, Established, FinWait, FinWait]);
        let got = run(&[(InOnly, SYN), (InOnly, ACK), (InOnly, RST)], false);
        assert_eq!(got[2], Close);
        let got = run(&[(InOnly, SYN), (InOnly, ACK), (InOnly, PSH)], false);
        assert_eq!(got[2], Close, "a segment with only PSH closes the entry");
    }

    #[test]
    fn tv_10_10_secure() {
        use Direction::*;
        let got = run(
            &[
                (In, SYN),
                (Out, SYN | ACK),
                (In, ACK),
                (In, ACK | PSH),
                (Out, ACK | PSH),
            ],
            true,
        );
        assert_eq!(got, vec![SynRecv, SynAck, SynAck, SynAck, Established]);
        let got = run(&[(InOnly, SYN), (InOnly, ACK)], true);
        assert_eq!(got, vec![SynAck, Established]);
    }

    #[test]
    fn secure_differs_from_normal_only_in_listed_cells() {
        let mut diffs = 0;
        for d in 0..3 {
            for e in 0..4 {
                for s in 0..11 {
                    if NORMAL[d][e][s] != SECURE[d][e][s] {
                        diffs += 1;
                    }
                }
            }
        }
        // IN syn SA, IN fin SA, IN ack SR+SA, IN rst SA, OUT syn SR+SA,
        // IN-ONLY syn NO, FW, TW, CL, CW, LA, LI, SA.
        assert_eq!(diffs, 1 + 1 + 2 + 1 + 2 + 8);
    }

    #[test]
    fn timeouts_set_keeps_zero_values() {
        let t = Timeouts::default();
        assert_eq!(t.get(), (900, 120, 300));
        t.set(0, 60, 0);
        assert_eq!(t.get(), (900, 60, 300));
        assert_eq!(t.tcp(FinWait), 60);
        assert_eq!(t.tcp(Established), 900);
    }
}
