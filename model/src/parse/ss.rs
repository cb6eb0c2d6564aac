//! `ss -tuln` output into [`Listener`]s: what a node answers on.
//!
//! Contract: never panics; every line is checked and every problem is a
//! [`ParseError`] with file, line and column. Accepted forms: `ss -tuln`
//! (with or without its header, with `-H`, with `-p`'s process column),
//! `ss -tln` and `ss -uln` (no `Netid` column: LISTEN is TCP, UNCONN is
//! UDP), and `sctp` lines. Only listening sockets count (TCP `LISTEN`, UDP
//! and SCTP `UNCONN`/`LISTEN`). A local address of `0.0.0.0`, `*` or
//! `[::]` listens on every IPv4 address (Linux's default
//! `net.ipv6.bindv6only = 0` lets an IPv6 wildcard socket take IPv4); an
//! IPv4 address listens on that address only; any other IPv6 address takes
//! no IPv4 packet and is skipped. `ADDR%DEV` (bound to a device) is kept
//! with its device.

use super::iproute::lex;
use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A socket that accepts packets on a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listener {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// The address it is bound to; `None`: every address.
    pub addr: Option<Ipv4Addr>,
    /// Its port.
    pub port: u16,
    /// `%DEV`: the device it is bound to.
    pub dev: Option<String>,
    /// Where it was read.
    #[serde(skip)]
    pub loc: Loc,
}

impl Listener {
    /// Whether a packet of `proto` to `dst:port` finds this socket.
    pub fn takes(&self, proto: u8, dst: Ipv4Addr, port: u16) -> bool {
        self.proto == proto && self.port == port && self.addr.is_none_or(|a| a == dst)
    }
}

fn proto_of(netid: &str) -> Option<u8> {
    match netid {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// Parse `ss -tuln` output.
pub fn parse(text: &str, file: &str) -> Result<Vec<Listener>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut errs = ParseErrors::default();
    // Sockets in a listening state, and where the first connection is:
    // a file of connections only is `ss -tun` (without `-l`), which would
    // read as a node that answers on no port.
    let mut listening = 0usize;
    let mut connection: Option<Loc> = None;
    for (n, line) in lex::lines(text) {
        let ws = lex::words(line, 1);
        let words: Vec<&str> = ws.iter().map(|w| w.text).collect();
        let Some(&first) = words.first() else { continue };
        if first == "Netid" || first == "State" || first.starts_with('#') {
            continue;
        }
        // The column of word `k`, or just past the line when it is missing.
        let end = u32::try_from(line.chars().count()).unwrap_or(u32::MAX).saturating_add(1);
        let at = |k: usize| Loc::new(&file, n, ws.get(k).map_or(end, |w| w.col));
        // With a Netid column or without (ss -tln / -uln).
        let (proto, state_at) = match proto_of(first) {
            Some(p) => (p, 1),
            None => match first {
                "LISTEN" => (6, 0),
                "UNCONN" => (17, 0),
                _ if matches!(
                    first,
                    "raw"
                        | "u_str"
                        | "u_dgr"
                        | "u_seq"
                        | "nl"
                        | "p_raw"
                        | "p_dgr"
                        | "mptcp"
                        | "tipc"
                        | "v_str"
                        | "v_dgr"
                        | "xdp"
                ) =>
                {
                    continue
                }
                _ => {
                    errs.push(ParseError::new(
                        at(0),
                        format!(
                            "expected an `ss -tuln` line (tcp, udp or sctp, then the state), found `{}`",
                            lex::show(first)
                        ),
                    ));
                    continue;
                }
            },
        };
        let Some(&state) = words.get(state_at) else {
            errs.push(ParseError::new(at(state_at), "expected the socket's state, found the end of the line"));
            continue;
        };
        if !matches!(state, "LISTEN" | "UNCONN") {
            // A connection (`ss -tuan` lists both): not a listener.
            connection.get_or_insert_with(|| at(state_at));
            continue;
        }
        listening += 1;
        let local_at = state_at + 3;
        let Some(&local) = words.get(local_at) else {
            errs.push(ParseError::new(at(local_at), "expected `Local Address:Port`, found the end of the line"));
            continue;
        };
        let Some((addr, port)) = local.rsplit_once(':') else {
            errs.push(ParseError::new(at(local_at), format!("expected `ADDRESS:PORT`, found `{}`", lex::show(local))));
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            errs.push(ParseError::new(
                at(local_at),
                format!("expected a port number after `:`, found `{}` in `{}`", lex::show(port), lex::show(local)),
            ));
            continue;
        };
        let (addr, dev) = match addr.split_once('%') {
            Some((a, d)) => (a, Some(d.to_string())),
            None => (addr, None),
        };
        let addr = match addr {
            "*" | "0.0.0.0" | "[::]" => None,
            a if a.starts_with('[') && a.ends_with(']') => {
                // A specific IPv6 address (or IPv4-mapped): only the mapped form takes IPv4.
                match a
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .strip_prefix("::ffff:")
                    .map(str::parse::<Ipv4Addr>)
                {
                    Some(Ok(v4)) => Some(v4),
                    _ => continue,
                }
            }
            a => match a.parse::<Ipv4Addr>() {
                Ok(v4) => Some(v4),
                Err(_) if a.contains(':') => continue,
                Err(_) => {
                    errs.push(ParseError::new(
                        at(local_at),
                        format!("expected an IPv4 address, `*` or `[::]` before `:{port}`, found `{}`", lex::show(a)),
                    ));
                    continue;
                }
            },
        };
        out.push(Listener { proto, addr, port, dev, loc: at(local_at) });
    }
    if let Some(loc) = connection.filter(|_| listening == 0) {
        errs.push(ParseError::new(
            loc,
            "expected listening sockets (`ss -tuln`), found only connections: was `-l` left out? Read as it is, the node would answer on no port",
        ));
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_ss_prints() {
        let t = "Netid State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n\
tcp   LISTEN 0      4096       127.0.0.1:2380      0.0.0.0:*\n\
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*  users:((\"sshd\",pid=1,fd=3))\n\
udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*\n\
tcp   LISTEN 0      4096               *:10250           *:*\n\
tcp   LISTEN 0      4096            [::]:80           [::]:*\n\
tcp   LISTEN 0      4096           [::1]:631          [::]:*\n\
tcp   ESTAB  0      0          10.0.0.51:22      10.0.0.9:5000\n";
        let l = parse(t, "ss-listen").unwrap();
        let got: Vec<(u8, Option<Ipv4Addr>, u16)> = l.iter().map(|x| (x.proto, x.addr, x.port)).collect();
        assert_eq!(
            got,
            [
                (6, Some(Ipv4Addr::new(127, 0, 0, 1)), 2380),
                (6, None, 22),
                (17, Some(Ipv4Addr::new(127, 0, 0, 53)), 53),
                (6, None, 10250),
                (6, None, 80)
            ]
        );
        assert_eq!(l.get(2).and_then(|x| x.dev.as_deref()), Some("lo"));
        assert!(l.get(1).is_some_and(|x| x.takes(6, Ipv4Addr::new(10, 0, 0, 51), 22)));
        assert!(!l.first().is_some_and(|x| x.takes(6, Ipv4Addr::new(10, 0, 0, 51), 2380)));
    }

    #[test]
    fn connections_only_are_not_a_node_without_listeners() {
        let t = "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port\n\
tcp   ESTAB 0      0      10.0.0.51:22      10.0.0.9:5000\n\
udp   ESTAB 0      0      10.0.0.51:41000   10.0.0.2:53\n";
        let e = parse(t, "ss-listen").map(|_| ()).unwrap_err().to_string();
        assert!(e.starts_with("ss-listen:2:7: expected listening sockets (`ss -tuln`), found only connections"), "{e}");
        // An empty file, or listeners beside connections, are what ss said.
        assert_eq!(parse("", "f").map(|l| l.len()), Ok(0));
        let both = format!("{t}tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n");
        assert_eq!(parse(&both, "f").map(|l| l.len()), Ok(1));
    }

    #[test]
    fn without_netid_the_state_says_the_protocol() {
        let l = parse("LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\nUNCONN 0 0 0.0.0.0:68 0.0.0.0:*\n", "f").unwrap();
        assert_eq!(l.iter().map(|x| (x.proto, x.port)).collect::<Vec<_>>(), [(6, 22), (17, 68)]);
    }

    #[test]
    fn bad_lines_are_located() {
        let e = parse("tcp LISTEN 0 128 0.0.0.0:ssh 0.0.0.0:*\nbanana\n", "ss-listen").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("ss-listen:1:18: expected a port number after `:`, found `ssh`"), "{s}");
        assert!(s.contains("ss-listen:2:1: expected an `ss -tuln` line"), "{s}");
    }
}
