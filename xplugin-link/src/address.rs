//! Addresses as `ADDR:PORT`: an IPv4 address, `[IPv6]` or a host name, with
//! the port defaulting to [`DEFAULT_PORT`]. Addresses are normalised so that
//! the address a pendant was paired at and the one given later compare equal.

use crate::error::LinkError;
use std::net::{IpAddr, SocketAddr};

/// The pendant link's documented default port (used when an address names
/// none). No port is opened unless `listen` is configured or given.
pub const DEFAULT_PORT: u16 = 7411;

/// `10.0.0.2` -> `10.0.0.2:7411`, `[::1]:9000` stays, `Robot-1` ->
/// `robot-1:7411`.
///
/// # Errors
/// [`LinkError::BadAddress`] for an empty text, a bad port or a malformed
/// IPv6 address.
pub fn normalize(text: &str) -> Result<String, LinkError> {
    let t = text.trim();
    let bad = |why: &str| LinkError::BadAddress {
        address: t.to_string(),
        why: why.to_string(),
    };
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok(sa.to_string());
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT).to_string());
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let ip: IpAddr = inner.parse().map_err(|_| bad("not an IPv6 address"))?;
        return Ok(SocketAddr::new(ip, DEFAULT_PORT).to_string());
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
        ),
        None => (t, DEFAULT_PORT),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(bad("not an IP address or host name"));
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_the_default_port_and_compare_equal() {
        assert_eq!(normalize("127.0.0.1").unwrap(), "127.0.0.1:7411");
        assert_eq!(normalize(" 127.0.0.1:9000 ").unwrap(), "127.0.0.1:9000");
        assert_eq!(normalize("[::1]").unwrap(), "[::1]:7411");
        assert_eq!(normalize("[::1]:8000").unwrap(), "[::1]:8000");
        assert_eq!(normalize("Robot-1").unwrap(), "robot-1:7411");
        assert!(normalize("robot:99999").is_err());
        assert!(normalize("a b").is_err());
        assert!(normalize("").is_err());
    }
}
