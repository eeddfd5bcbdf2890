//! Turning the parsed ipvsadm state into a [`Command`] (the part of `process_options`
//! after all checks, where ipvsadm would call libipvs).

use std::net::{IpAddr, Ipv4Addr};

use super::args::Ce;
use super::table::*;
use super::{Command, DaemonConfig, ListOptions, ListView, ParseError};
use crate::service::{DestConfig, Netmask, Protocol, ServiceAddr, ServiceConfig, TunnelCsum, TunnelType};

impl Ce {
    fn service_addr(&self) -> ServiceAddr {
        if self.fwmark != 0 {
            ServiceAddr::Fwmark {
                mark: self.fwmark,
                ipv6: self.af == 6,
            }
        } else {
            ServiceAddr::Inet {
                proto: self.proto.unwrap_or(Protocol::Tcp),
                addr: self.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port: self.port,
            }
        }
    }

    fn service_config(&self) -> ServiceConfig {
        let netmask = if self.af == 6 {
            Netmask::V6Prefix(u8::try_from(self.netmask).unwrap_or(128))
        } else {
            Netmask::V4(Ipv4Addr::from_bits(self.netmask))
        };
        ServiceConfig {
            addr: self.service_addr(),
            scheduler: self.sched.clone(),
            flags: self.flags,
            timeout: self.timeout,
            netmask,
            pe: (!self.pe.is_empty()).then(|| self.pe.clone()),
        }
    }

    fn dest_config(&self) -> DestConfig {
        DestConfig {
            addr: self.dest_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: self.dest_port,
            method: self.method,
            weight: self.weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            tun_type: [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre][self.tun_type],
            tun_port: self.tun_port,
            tun_csum: if self.tun_flags & TUN_FLAG_REMCSUM != 0 {
                TunnelCsum::RemCsum
            } else if self.tun_flags & TUN_FLAG_CSUM != 0 {
                TunnelCsum::Csum
            } else {
                TunnelCsum::NoCsum
            },
        }
    }

    fn list_options(&self) -> ListOptions {
        let view = [
            (O_STATS, ListView::Stats),
            (O_RATE, ListView::Rate),
            (O_THRESHOLDS, ListView::Thresholds),
            (O_PERSISTENTCONN, ListView::PersistentConn),
            (O_TUN_INFO, ListView::TunInfo),
        ]
        .into_iter()
        .find(|(o, _)| self.has(*o))
        .map_or(ListView::Default, |(_, v)| v);
        ListOptions {
            service: self.has(O_SERVICE).then(|| self.service_addr()),
            numeric: self.has(O_NUMERIC),
            connections: self.has(O_CONNECTION),
            timeout: self.has(O_TIMEOUT),
            daemon: self.has(O_DAEMON),
            view,
            exact: self.has(O_EXACT),
            nosort: self.has(O_NOSORT),
        }
    }

    /// The command, after the list-specific conflict check.
    pub(super) fn into_command(self) -> Result<Command, ParseError> {
        Ok(match self.cmd {
            Cmd::List => {
                let sel = self.has(O_CONNECTION) || self.has(O_TIMEOUT) || self.has(O_DAEMON);
                let views = self.has(O_STATS) || self.has(O_RATE) || self.has(O_THRESHOLDS);
                let td = self.has(O_TIMEOUT) || self.has(O_DAEMON);
                if (sel && views) || (td && self.has(O_PERSISTENTCONN)) {
                    return Err(ParseError::fail("options conflicts in the list command"));
                }
                Command::List(self.list_options())
            }
            Cmd::Restore => Command::Restore,
            Cmd::Save => Command::Save {
                numeric: self.has(O_NUMERIC),
            },
            Cmd::Flush => Command::Clear,
            Cmd::Add => Command::AddService(self.service_config()),
            Cmd::Edit => Command::EditService(self.service_config()),
            Cmd::Del => Command::DeleteService(self.service_addr()),
            Cmd::Zero => Command::Zero(self.has(O_SERVICE).then(|| self.service_addr())),
            Cmd::AddDest => Command::AddServer(self.service_addr(), self.dest_config()),
            Cmd::EditDest => Command::EditServer(self.service_addr(), self.dest_config()),
            Cmd::DelDest => {
                let d = self.dest_config();
                Command::DeleteServer(self.service_addr(), d.addr, d.port)
            }
            Cmd::Timeout => {
                let [tcp, tcpfin, udp] = self.timeouts;
                Command::SetTimeouts { tcp, tcpfin, udp }
            }
            Cmd::StartDaemon => Command::StartDaemon(DaemonConfig {
                state: self.state,
                mcast_ifn: self.mcast_ifn,
                syncid: self.syncid,
                sync_maxlen: self.sync_maxlen,
                mcast_group: self.mcast_group,
                mcast_port: self.mcast_port,
                mcast_ttl: self.mcast_ttl,
            }),
            Cmd::StopDaemon => Command::StopDaemon {
                state: self.state,
                syncid: self.syncid,
            },
        })
    }
}
