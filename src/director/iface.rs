//! Interface facts for the director: index, MAC, IPv4 addresses, MTU
//! (discovery through pnet; the MTU through an ioctl).

use crate::pipeline::Iface;

/// Look up `name` in the current network namespace.
pub fn discover(name: &str) -> Result<Iface, String> {
    let all = pnet::datalink::interfaces();
    let i = all
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| format!("no interface named '{name}' in this network namespace"))?;
    let mac = i
        .mac
        .map(|m| m.octets())
        .ok_or_else(|| format!("interface '{name}' has no MAC address"))?;
    if !i.is_up() {
        return Err(format!("interface '{name}' is down (ip link set {name} up)"));
    }
    let addrs = i
        .ips
        .iter()
        .filter_map(|n| match n.ip() {
            std::net::IpAddr::V4(a) => Some(a.octets()),
            _ => None,
        })
        .collect();
    let mtu = crate::ring::iface_mtu(name).map_err(|e| format!("cannot read the MTU of '{name}': {e}"))?;
    Ok(Iface {
        ifindex: i.index,
        name: name.to_string(),
        mac,
        addrs,
        mtu: mtu.into(),
    })
}
