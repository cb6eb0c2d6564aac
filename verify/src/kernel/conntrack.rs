//! Conntrack entries as `conntrack -L` prints them, with their original and
//! reply tuples: the reply tuple of an entry is where its NAT binding shows
//! (a DNAT rewrites the reply's source, an SNAT/MASQUERADE its destination).
//!
//! Contract: never panics; a line that is not an entry is skipped. Kernel
//! facts relied on: conntrack state is per network namespace, and an entry
//! is only listed once confirmed (its first packet left POSTROUTING or
//! INPUT), so a packet dropped before that leaves no entry.

use serde::Serialize;

/// One direction of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tuple {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// Source port (TCP/UDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port (TCP/UDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

impl Tuple {
    fn show(&self) -> String {
        match (self.sport, self.dport) {
            (Some(s), Some(d)) => format!("{}:{s} > {}:{d}", self.src, self.dst),
            _ => format!("{} > {}", self.src, self.dst),
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `tcp`, `udp`, `icmp`, `unknown` ...
    pub proto: String,
    /// Protocol number.
    pub protonum: u8,
    /// TCP state (`SYN_RECV` ...), when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Original direction.
    pub orig: Tuple,
    /// Reply direction.
    pub reply: Tuple,
    /// `[UNREPLIED]`, `[ASSURED]` ...
    pub flags: Vec<String>,
    /// `mark=`.
    pub mark: Option<String>,
    /// The line as printed, minus the timeout (which changes every second).
    pub line: String,
}

impl Entry {
    /// `proto orig -> reply` in one line.
    pub fn summary(&self) -> String {
        let nat = if self.orig.src != self.reply.dst || self.orig.dst != self.reply.src { " (NAT)" } else { "" };
        format!("{} {} | reply {}{nat}", self.proto, self.orig.show(), self.reply.show())
    }

    /// Identity of the entry (the original tuple).
    pub fn key(&self) -> (String, String) {
        (self.proto.clone(), self.orig.show())
    }
}

/// Parse `conntrack -L` output.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(l: &str) -> Option<Entry> {
    let toks: Vec<&str> = l.split_whitespace().collect();
    let proto = toks.first()?.to_string();
    let protonum: u8 = toks.get(1)?.parse().ok()?;
    let mut state = None;
    let mut flags = Vec::new();
    let mut mark = None;
    let mut tuples: Vec<Tuple> = Vec::new();
    let mut cur: Option<Tuple> = None;
    let mut kept: Vec<&str> = vec![toks.first()?, toks.get(1)?];
    for (i, t) in toks.iter().enumerate().skip(2) {
        if i == 2 && t.parse::<u64>().is_ok() {
            continue; // timeout
        }
        kept.push(t);
        if let Some((k, v)) = t.split_once('=') {
            match k {
                "src" => {
                    if let Some(done) = cur.take() {
                        tuples.push(done);
                    }
                    cur = Some(Tuple { src: v.into(), dst: String::new(), sport: None, dport: None });
                }
                "dst" => {
                    if let Some(c) = cur.as_mut() {
                        c.dst = v.into();
                    }
                }
                "sport" => {
                    if let Some(c) = cur.as_mut() {
                        c.sport = v.parse().ok();
                    }
                }
                "dport" => {
                    if let Some(c) = cur.as_mut() {
                        c.dport = v.parse().ok();
                    }
                }
                "mark" => mark = Some(v.to_string()),
                _ => {}
            }
        } else if t.starts_with('[') {
            flags.push(t.to_string());
        } else if t.chars().all(|c| c.is_ascii_uppercase() || c == '_') && tuples.is_empty() && cur.is_none() {
            state = Some(t.to_string());
        }
    }
    if let Some(done) = cur.take() {
        tuples.push(done);
    }
    let mut it = tuples.into_iter();
    let (orig, reply) = (it.next()?, it.next()?);
    Some(Entry { proto, protonum, state, orig, reply, flags, mark, line: kept.join(" ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_unknown_entries() {
        let t = "tcp      6 59 SYN_RECV src=10.0.0.53 dst=10.0.0.51 sport=40000 dport=32220 src=192.168.233.136 dst=192.168.231.64 sport=80 dport=1234 mark=0 use=1\nunknown  4 599 src=10.0.0.51 dst=10.0.0.52 src=10.0.0.52 dst=10.0.0.51 mark=0 use=1\nconntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
        let e = parse(t);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].state.as_deref(), Some("SYN_RECV"));
        assert_eq!(e[0].reply.dport, Some(1234));
        assert!(e[0].summary().ends_with("(NAT)"));
        assert_eq!(e[1].protonum, 4);
        assert!(!e[0].line.contains(" 59 "));
    }
}
