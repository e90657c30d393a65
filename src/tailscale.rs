//! Finding the address to bind when `tailscale.enabled` is set. Detection is a pure
//! function over the interface list, so it is tested without a Tailscale install; the
//! list itself comes from `getifaddrs`.

use std::net::IpAddr;

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub name: String,
    pub addr: IpAddr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TailscaleError {
    #[error(
        "tailscale.enabled is set but interface `{0}` has no address (is Tailscale up? check `ip addr show {0}` \
         or fix tailscale.interfaceName)"
    )]
    NamedInterfaceMissing(String),
    #[error(
        "tailscale.enabled is set but no Tailscale interface was found (looked for `tailscale0`, and `utun*` \
         interfaces with an address in 100.64.0.0/10); start Tailscale or set tailscale.interfaceName. \
         BroodLink will not fall back to binding all interfaces"
    )]
    NotFound,
    #[error("cannot list network interfaces: {0}")]
    List(String),
}

/// Tailscale's CGNAT range, 100.64.0.0/10.
fn in_tailscale_range(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (64..128).contains(&b)
        }
        IpAddr::V6(_) => false,
    }
}

/// The address to bind: on the configured interface if one is named (IPv4 preferred),
/// else on `tailscale0`, else on a `utun*` interface holding a 100.64.0.0/10 address.
pub fn select(interfaces: &[InterfaceAddr], configured: &str) -> Result<IpAddr, TailscaleError> {
    let on = |name: &str| -> Option<IpAddr> {
        let mut addrs: Vec<IpAddr> = interfaces.iter().filter(|i| i.name == name).map(|i| i.addr).collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        addrs.first().copied()
    };
    if !configured.is_empty() {
        return on(configured).ok_or_else(|| TailscaleError::NamedInterfaceMissing(configured.to_owned()));
    }
    if let Some(addr) = on("tailscale0") {
        return Ok(addr);
    }
    interfaces
        .iter()
        .find(|i| i.name.starts_with("utun") && in_tailscale_range(&i.addr))
        .map(|i| i.addr)
        .ok_or(TailscaleError::NotFound)
}

/// This machine's interface addresses.
pub fn interfaces() -> Result<Vec<InterfaceAddr>, TailscaleError> {
    let list = nix::ifaddrs::getifaddrs().map_err(|e| TailscaleError::List(e.to_string()))?;
    Ok(list
        .filter_map(|iface| {
            let addr = iface.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some(InterfaceAddr { name: iface.interface_name, addr: ip })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: &str) -> InterfaceAddr {
        InterfaceAddr { name: name.into(), addr: addr.parse().unwrap() }
    }

    #[test]
    fn linux_tailscale0_is_found_and_ipv4_preferred() {
        let list = [iface("lo", "127.0.0.1"), iface("tailscale0", "fd7a:115c::1"), iface("tailscale0", "100.101.1.2")];
        assert_eq!(select(&list, ""), Ok("100.101.1.2".parse().unwrap()));
    }

    #[test]
    fn macos_utun_with_a_cgnat_address_is_found() {
        let list = [iface("utun0", "fe80::1"), iface("utun3", "10.0.0.2"), iface("utun4", "100.64.0.7")];
        assert_eq!(select(&list, ""), Ok("100.64.0.7".parse().unwrap()));
    }

    #[test]
    fn utun_outside_the_tailscale_range_is_not_tailscale() {
        let list = [iface("utun3", "100.128.0.1"), iface("eth0", "100.100.0.1")];
        assert_eq!(select(&list, ""), Err(TailscaleError::NotFound));
    }

    #[test]
    fn a_named_interface_wins_and_must_exist() {
        let list = [iface("tailscale0", "100.101.1.2"), iface("wg0", "10.8.0.1")];
        assert_eq!(select(&list, "wg0"), Ok("10.8.0.1".parse().unwrap()));
        assert_eq!(select(&list, "utun9"), Err(TailscaleError::NamedInterfaceMissing("utun9".into())));
    }

    #[test]
    fn nothing_found_never_means_all_interfaces() {
        assert_eq!(select(&[iface("eth0", "192.168.1.5")], ""), Err(TailscaleError::NotFound));
    }
}
