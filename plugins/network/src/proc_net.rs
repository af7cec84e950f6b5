//! Parser of `/proc/net/{tcp,tcp6,udp,udp6}`: the kernel's socket tables, hex encoded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TCP state `LISTEN` in the `st` column.
const TCP_LISTEN: &str = "0A";
/// `TCP_CLOSE`, which an unconnected UDP socket reports: what `ss -lu` lists as listening.
const UDP_UNCONNECTED: &str = "07";

/// Why a socket table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A socket line came before any table header.
    #[error("line {0}: a socket line before any table header")]
    NoHeader(usize),
    /// A socket line has too few fields.
    #[error("line {line}: expected at least 10 fields, found {found}")]
    Fields {
        /// 1-based line number.
        line: usize,
        /// How many there were.
        found: usize,
    },
    /// A field is not what the kernel prints.
    #[error("line {line}: bad {field} `{value}`")]
    Field {
        /// 1-based line number.
        line: usize,
        /// Which field.
        field: &'static str,
        /// Its text.
        value: String,
    },
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Listener {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub protocol: String,
    /// Local address, e.g. `0.0.0.0`, `127.0.0.1` or `::`.
    pub address: String,
    /// Local port.
    pub port: u16,
    /// Owner's user id.
    pub uid: u32,
    /// Socket inode (matches `/proc/PID/fd` links, to find the process).
    pub inode: u64,
}

/// The listening sockets in `text`: one or more of the four tables concatenated, each starting
/// with its header line. A table's protocol is told by its header (UDP's ends with `drops`) and
/// by the address width (32 hex digits for IPv6).
pub fn listeners(text: &str) -> Result<Vec<Listener>, ParseError> {
    let mut udp = None;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("sl ") {
            udp = Some(line.ends_with("drops"));
            continue;
        }
        let line_no = n + 1;
        let Some(udp) = udp else { return Err(ParseError::NoHeader(line_no)) };
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        let [_, local, remote, state, _, _, _, uid, _, inode, ..] = fields[..] else {
            return Err(ParseError::Fields { line: line_no, found: fields.len() });
        };
        let listening = if udp { state == UDP_UNCONNECTED && remote.ends_with(":0000") } else { state == TCP_LISTEN };
        if !listening {
            continue;
        }
        let bad = |field, value: &str| ParseError::Field { line: line_no, field, value: value.to_owned() };
        let (address, port) = endpoint(local).ok_or_else(|| bad("local address", local))?;
        let family = if address.is_ipv6() { "6" } else { "" };
        found.push(Listener {
            protocol: format!("{}{family}", if udp { "udp" } else { "tcp" }),
            address: address.to_string(),
            port,
            uid: uid.parse().map_err(|_| bad("uid", uid))?,
            inode: inode.parse().map_err(|_| bad("inode", inode))?,
        });
    }
    found.sort_by(|a, b| (a.port, &a.protocol, &a.address).cmp(&(b.port, &b.protocol, &b.address)));
    Ok(found)
}

/// `0100007F:0050` into `127.0.0.1` and 80. The address is printed as 32-bit words in the host's
/// byte order (little-endian on the machines we run on); the port in network order.
fn endpoint(hex: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    // Captured on a Debian 12 host running sshd, nginx, postgres (localhost) and systemd-resolved.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 20411 1 0000000000000000 100 0 0 10 0
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19877 1 0000000000000000 100 0 0 10 0
   3: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 16012 1 0000000000000000 100 0 0 10 5
   4: 0F02000A:0016 0202000A:D3B4 01 00000000:00000000 02:0009D2A2 00000000     0        0 31337 4 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18236 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 20410 1 0000000000000000 100 0 0 10 0
";
    // The kernel pads the IPv4 headers to 127 columns.
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  411: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 16011 2 0000000000000000 0
  527: 0F02000A:0044 0202000A:0043 01 00000000:00000000 00:00000000 00000000     0        0 17520 2 0000000000000000 0
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1023: 000080FE00000000FF005450B6AC10FE:0222 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 17501 2 0000000000000000 0
";

    #[test]
    fn the_four_tables_give_every_listener_and_nothing_connected() {
        let text = [TCP, TCP6, UDP, UDP6].concat();
        let found = listeners(&text).expect("parsed");
        let shown: Vec<String> = found.iter().map(|l| format!("{} {}:{}", l.protocol, l.address, l.port)).collect();
        assert_eq!(
            shown,
            [
                "tcp 0.0.0.0:22",
                "tcp6 :::22",
                "tcp 127.0.0.53:53",
                "udp 127.0.0.53:53",
                "tcp 0.0.0.0:80",
                "udp6 fe80::5054:ff:fe10:acb6:546",
                "tcp 127.0.0.1:5432",
                "tcp6 ::1:5432",
            ]
        );
        let pg = found.iter().find(|l| l.port == 5432 && l.protocol == "tcp").expect("postgres");
        assert_eq!((pg.uid, pg.inode), (106, 20411));
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_list() {
        assert_eq!(listeners("   0: 00000000:0016 00000000:0000 0A\n"), Err(ParseError::NoHeader(1)));
        let header =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let short = format!("{header}   0: 00000000:0016 00000000:0000 0A\n");
        assert_eq!(listeners(&short), Err(ParseError::Fields { line: 2, found: 4 }));
        let bad = format!("{header}   0: ZZ:0016 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n");
        let err = listeners(&bad).expect_err("bad address");
        assert_eq!(err.to_string(), "line 2: bad local address `ZZ:0016`");
        assert_eq!(listeners("").expect("empty"), []);
    }
}
