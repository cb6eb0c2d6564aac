//! The validated IR of one node's IPv4 netfilter rules: tables, chains, rules,
//! matches and targets, every option typed.
//!
//! Contract: the IR says what the kernel will do, not how the text was
//! written. Equivalent spellings parse to the same value (`--or-mark 0x4000`
//! and `--set-xmark 0x4000/0x4000`; `-p ipv4` and `-p ipencap`; `-d 1.2.3.4`
//! and `-d 1.2.3.4/32`), so that [`crate::print`] writes one canonical
//! iptables-save text and parsing it again gives an equal IR. Positions
//! ([`Loc`]) never take part in equality.
//!
//! Semantics follow the kernel's xt modules (net/netfilter/xt_*.c) and the
//! iptables 1.8 extensions (extensions/libxt_*.c) that turn options into the
//! structures the kernel reads; each type below names the one it follows.

use crate::loc::Loc;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The five IPv4 tables, in the order iptables-save of nf_tables prints them
/// does not matter; [`TableName::ALL`] is the kernel's priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableName {
    /// `raw`: before conntrack (priority -300).
    Raw,
    /// `mangle` (priority -150).
    Mangle,
    /// `nat`: DNAT at -100 in PREROUTING/OUTPUT, SNAT at 100 in POSTROUTING/INPUT.
    Nat,
    /// `filter` (priority 0).
    Filter,
    /// `security` (priority 50).
    Security,
}

impl TableName {
    /// Every table, in priority order.
    pub const ALL: [TableName; 5] =
        [TableName::Raw, TableName::Mangle, TableName::Nat, TableName::Filter, TableName::Security];

    /// The name as iptables writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Mangle => "mangle",
            TableName::Nat => "nat",
            TableName::Filter => "filter",
            TableName::Security => "security",
        }
    }

    /// Parse a table name as iptables writes it.
    pub fn from_name(s: &str) -> Option<Self> {
        TableName::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The built-in chains of this table, in the order iptables-save lists them.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            TableName::Raw => &["PREROUTING", "OUTPUT"],
            TableName::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            TableName::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            TableName::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            TableName::Security => &["INPUT", "FORWARD", "OUTPUT"],
        }
    }
}

/// All tables of one node, as one iptables-save dump describes them.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Ruleset {
    /// Tables in the order they appear in the dump.
    pub tables: Vec<Table>,
    /// Things the parser had to assume (a table inferred for a headerless
    /// paste, chains implied by jumps in a partial dump), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// Something the parser assumed rather than read, with where it did so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Where the assumption was made.
    pub loc: Loc,
    /// What was assumed, in lower case.
    pub message: String,
}

impl Ruleset {
    /// The table named `name`, if the dump has it.
    pub fn table(&self, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Total number of rules over all tables.
    pub fn rule_count(&self) -> usize {
        self.tables.iter().map(|t| t.chains.iter().map(|c| c.rules.len()).sum::<usize>()).sum()
    }
}

/// One table: its chains in dump order (built-in and user-defined).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    /// Which table.
    pub name: TableName,
    /// Chains in the order their `:NAME` headers (or `-N`/`-P` lines) appear.
    pub chains: Vec<Chain>,
    /// Where the `*table` line is (or the first line of a headerless paste).
    #[serde(skip)]
    pub loc: Loc,
    /// How the dump gave the table (a complete block, a cut-off block, or
    /// no `*table` line at all); [`crate::print`] writes it back the same
    /// way so that a partial paste stays partial.
    #[serde(skip)]
    pub form: TableForm,
}

/// How a dump gave a table. A complete block is checked like
/// `iptables-restore` checks it (every chain used must be declared); a
/// partial one implies the chains it uses ([`Chain::implied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableForm {
    /// `*table` ... `COMMIT`, as iptables-save and kube-proxy write it.
    #[default]
    Complete,
    /// `*table` with no `COMMIT`: a dump cut off (an issue fragment).
    Unterminated,
    /// No `*table` line: `iptables -S` output or a grep paste; the table
    /// was given by the caller or inferred (noted in [`Ruleset::notes`]).
    Headerless,
}

impl Table {
    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The index of the chain named `name` in [`Table::chains`].
    pub fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }
}

/// A built-in chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Policy {
    /// `ACCEPT`.
    Accept,
    /// `DROP`.
    Drop,
}

/// Packet and byte counters, `[packets:bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Counters {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// One chain: built-in chains have a policy, user chains `None` (`-`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    /// The chain's name.
    pub name: String,
    /// `Some` for built-in chains.
    pub policy: Option<Policy>,
    /// The chain header's counters, when the dump has them; `[0:0]` (what
    /// iptables-save writes for a chain never counted, and what
    /// [`crate::print`] writes for `None`) is read as `None`.
    pub counters: Option<Counters>,
    /// Rules in order; rule number n (1-based, as `iptables -L --line-numbers`)
    /// is `rules[n - 1]`.
    pub rules: Vec<Rule>,
    /// True when no header declared the chain and the parser created it
    /// because a rule of a partial dump used it (noted in [`Ruleset::notes`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
    /// Where the chain was declared.
    #[serde(skip)]
    pub loc: Loc,
}

/// A value with an optional `!` in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Neg<T> {
    /// True when the match is inverted with `!`.
    pub neg: bool,
    /// What is matched.
    pub value: T,
}

impl<T> Neg<T> {
    /// A match that is not inverted.
    pub fn pos(value: T) -> Self {
        Neg { neg: false, value }
    }
}

/// An interface name as `-i`/`-o`/`--physdev-in` take it; a trailing `+`
/// makes it a prefix (`cali+` matches every name that starts with `cali`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Iface {
    /// The name without the `+`.
    pub name: Box<str>,
    /// True for a trailing `+`.
    pub wildcard: bool,
}

impl Iface {
    /// Whether the device named `dev` matches (xt `ifname_compare`).
    pub fn matches(&self, dev: &str) -> bool {
        if self.wildcard {
            dev.starts_with(&*self.name)
        } else {
            dev == &*self.name
        }
    }
}

/// An IP protocol number as `-p` takes it; 0 is `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Proto(pub u8);

impl Proto {
    /// `all` (every protocol).
    pub const ALL: Proto = Proto(0);
    /// ICMP.
    pub const ICMP: Proto = Proto(1);
    /// IP-in-IP (`ipencap`, also spelt `ipv4`).
    pub const IPIP: Proto = Proto(4);
    /// TCP.
    pub const TCP: Proto = Proto(6);
    /// UDP.
    pub const UDP: Proto = Proto(17);
    /// SCTP.
    pub const SCTP: Proto = Proto(132);
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (>= `lo`).
    pub hi: u16,
}

impl PortRange {
    /// One port.
    pub fn single(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }

    /// Whether `p` is in the range.
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// An inclusive IPv4 address range (`-m iprange`, NAT ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct AddrRange {
    /// First address.
    pub lo: Ipv4Addr,
    /// Last address.
    pub hi: Ipv4Addr,
}

/// One rule: the header matches every rule has, the `-m` modules in order,
/// and at most one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// `-s`: source prefix (a bare address is a /32).
    pub src: Option<Neg<Ipv4Net>>,
    /// `-d`: destination prefix.
    pub dst: Option<Neg<Ipv4Net>>,
    /// `-i`: input interface.
    pub in_iface: Option<Neg<Iface>>,
    /// `-o`: output interface.
    pub out_iface: Option<Neg<Iface>>,
    /// `-p`: protocol.
    pub proto: Option<Neg<Proto>>,
    /// `-f` (true) or `! -f` (false): non-first fragments.
    pub fragment: Option<bool>,
    /// `-m` modules, in the order written; all must hold (side effects of
    /// `statistic`, `recent`, `limit` happen in this order).
    pub matches: Vec<Match>,
    /// `-j`/`-g`; `None` for a rule that only counts (a comment-only rule).
    pub target: Option<Target>,
    /// `[packets:bytes]` of `iptables-save -c`.
    pub counters: Option<Box<Counters>>,
    /// Where the rule was read.
    #[serde(skip)]
    pub loc: Loc,
}

impl Rule {
    /// A rule with no match and no target, read at `loc`.
    pub fn empty(loc: Loc) -> Self {
        Rule {
            src: None,
            dst: None,
            in_iface: None,
            out_iface: None,
            proto: None,
            fragment: None,
            matches: Vec::new(),
            target: None,
            counters: None,
            loc,
        }
    }

    /// The `--comment` texts of the rule, in order.
    pub fn comments(&self) -> impl Iterator<Item = &str> {
        self.matches.iter().filter_map(|m| match m {
            Match::Comment(c) => Some(c.as_str()),
            _ => None,
        })
    }
}

/// A bit value and the mask it is compared under: matches when
/// `(x & mask) == value` (`-m mark --mark V/M`, connmark, `0x4000/0x4000`).
/// Without `/M` the mask is `0xffffffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MarkMask {
    /// The value after masking.
    pub value: u32,
    /// The mask.
    pub mask: u32,
}

/// Conntrack states as `--ctstate`/`--state` list them (xt_conntrack,
/// xt_state): a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct CtStates(pub u8);

impl CtStates {
    /// `INVALID`.
    pub const INVALID: u8 = 1 << 0;
    /// `NEW`.
    pub const NEW: u8 = 1 << 1;
    /// `ESTABLISHED`.
    pub const ESTABLISHED: u8 = 1 << 2;
    /// `RELATED`.
    pub const RELATED: u8 = 1 << 3;
    /// `UNTRACKED`.
    pub const UNTRACKED: u8 = 1 << 4;
    /// `SNAT` (a virtual state of xt_conntrack: the connection's source is translated).
    pub const SNAT: u8 = 1 << 5;
    /// `DNAT` (the connection's destination is translated).
    pub const DNAT: u8 = 1 << 6;

    /// Whether state bit `bit` is in the set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Conntrack status bits (`--ctstatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct CtStatus(pub u8);

impl CtStatus {
    /// `EXPECTED`.
    pub const EXPECTED: u8 = 1 << 0;
    /// `SEEN_REPLY`.
    pub const SEEN_REPLY: u8 = 1 << 1;
    /// `ASSURED`.
    pub const ASSURED: u8 = 1 << 2;
    /// `CONFIRMED`.
    pub const CONFIRMED: u8 = 1 << 3;
}

/// Direction of a packet within its connection (`--ctdir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CtDir {
    /// `ORIGINAL`.
    Original,
    /// `REPLY`.
    Reply,
}

/// `-m conntrack` (xt_conntrack revision 3): every option present must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ConntrackMatch {
    /// `--ctstate`.
    pub state: Option<Neg<CtStates>>,
    /// `--ctstatus`.
    pub status: Option<Neg<CtStatus>>,
    /// `--ctproto`.
    pub proto: Option<Neg<Proto>>,
    /// `--ctorigsrc`.
    pub orig_src: Option<Neg<Ipv4Net>>,
    /// `--ctorigdst`.
    pub orig_dst: Option<Neg<Ipv4Net>>,
    /// `--ctreplsrc`.
    pub repl_src: Option<Neg<Ipv4Net>>,
    /// `--ctrepldst`.
    pub repl_dst: Option<Neg<Ipv4Net>>,
    /// `--ctorigsrcport`.
    pub orig_src_port: Option<Neg<PortRange>>,
    /// `--ctorigdstport`.
    pub orig_dst_port: Option<Neg<PortRange>>,
    /// `--ctreplsrcport`.
    pub repl_src_port: Option<Neg<PortRange>>,
    /// `--ctrepldstport`.
    pub repl_dst_port: Option<Neg<PortRange>>,
    /// `--ctexpire lo[:hi]` in seconds.
    pub expire: Option<Neg<(u32, u32)>>,
    /// `--ctdir`.
    pub dir: Option<CtDir>,
}

/// `--tcp-flags MASK COMP`: the flags in `mask` must be exactly `comp`;
/// `--syn` is `SYN,RST,ACK,FIN SYN`. Bits as in the TCP header (FIN = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TcpFlags {
    /// Flags examined.
    pub mask: u8,
    /// Flags that must be set among them.
    pub comp: u8,
}

/// `-m tcp` (xt_tcpudp).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TcpMatch {
    /// `--sport`.
    pub sport: Option<Neg<PortRange>>,
    /// `--dport`.
    pub dport: Option<Neg<PortRange>>,
    /// `--tcp-flags` (and `--syn`).
    pub flags: Option<Neg<TcpFlags>>,
    /// `--tcp-option N`.
    pub option: Option<Neg<u8>>,
}

/// `-m udp` (xt_tcpudp).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UdpMatch {
    /// `--sport`.
    pub sport: Option<Neg<PortRange>>,
    /// `--dport`.
    pub dport: Option<Neg<PortRange>>,
}

/// `-m sctp` (xt_sctp): ports only; chunk matching is
/// [`SctpMatch::chunk_types`], kept as the option text was given.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SctpMatch {
    /// `--sport`.
    pub sport: Option<Neg<PortRange>>,
    /// `--dport`.
    pub dport: Option<Neg<PortRange>>,
    /// `--chunk-types all|any|only TYPE[,TYPE...]` (rarely used by Kubernetes).
    pub chunk_types: Option<Neg<(String, Vec<String>)>>,
}

/// `-m icmp --icmp-type T[/C]`; `any` is type 255 with no code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct IcmpType {
    /// ICMP type (255 for `any`).
    pub ty: u8,
    /// Code range matched: `(0, 255)` when no code was given.
    pub code: (u8, u8),
}

/// Which ports `-m multiport` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MultiportKind {
    /// `--sports`.
    Source,
    /// `--dports`.
    Destination,
    /// `--ports`: either.
    Either,
}

/// `addrtype` types (RTN_* of the routing table, xt_addrtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct AddrTypes(pub u16);

impl AddrTypes {
    /// The names in the kernel's bit order (bit 0 = `UNSPEC`).
    pub const NAMES: [&'static str; 12] = [
        "UNSPEC",
        "UNICAST",
        "LOCAL",
        "BROADCAST",
        "ANYCAST",
        "MULTICAST",
        "BLACKHOLE",
        "UNREACHABLE",
        "PROHIBIT",
        "THROW",
        "NAT",
        "XRESOLVE",
    ];
    /// `LOCAL`.
    pub const LOCAL: u16 = 1 << 2;
    /// `UNICAST`.
    pub const UNICAST: u16 = 1 << 1;
    /// `BROADCAST`.
    pub const BROADCAST: u16 = 1 << 3;
    /// `MULTICAST`.
    pub const MULTICAST: u16 = 1 << 5;
    /// `BLACKHOLE`.
    pub const BLACKHOLE: u16 = 1 << 6;
    /// `UNREACHABLE`.
    pub const UNREACHABLE: u16 = 1 << 7;
    /// `PROHIBIT`.
    pub const PROHIBIT: u16 = 1 << 8;
}

/// `-m addrtype` (xt_addrtype revision 1).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AddrTypeMatch {
    /// `--src-type`.
    pub src_type: Option<Neg<AddrTypes>>,
    /// `--dst-type`.
    pub dst_type: Option<Neg<AddrTypes>>,
    /// `--limit-iface-in`: look the address up only on the input interface.
    pub limit_iface_in: bool,
    /// `--limit-iface-out`: only on the output interface.
    pub limit_iface_out: bool,
}

/// Which packet field an ipset dimension reads (`src` or `dst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SetDir {
    /// `src`.
    Src,
    /// `dst`.
    Dst,
}

/// `-m set --match-set NAME src[,dst...]` (xt_set revision 4 and older).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetMatch {
    /// `!` before `--match-set`.
    pub neg: bool,
    /// The set's name (any bytes but whitespace, e.g. Weave's `weave-;rGqyMIl1HN^cfDki~Z$3]6!N`).
    pub name: String,
    /// One direction per dimension of the set, in order.
    pub dirs: Vec<SetDir>,
    /// `--return-nomatch`.
    pub return_nomatch: bool,
    /// `! --update-counters`: do not update the element's counters.
    pub no_update_counters: bool,
    /// `! --update-subcounters`.
    pub no_update_subcounters: bool,
    /// Counter conditions (`--packets-eq` etc.), kept as `(option, negated, value)`.
    pub counter_conds: Vec<(String, bool, u64)>,
}

/// `-m recent` command (xt_recent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RecentCmd {
    /// `--set`: add the address, always matches.
    Set,
    /// `--rcheck`: match if the address is in the list.
    Rcheck,
    /// `--update`: like rcheck, and refresh the timestamp.
    Update,
    /// `--remove`: remove the address, match if it was there.
    Remove,
}

/// `-m recent` (xt_recent), as kube-proxy uses it for session affinity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentMatch {
    /// `!` before the command.
    pub neg: bool,
    /// What the rule does with the list.
    pub cmd: RecentCmd,
    /// `--name` (default `DEFAULT`).
    pub name: String,
    /// `--rsource` (true, the default) or `--rdest` (false).
    pub rsource: bool,
    /// `--seconds`.
    pub seconds: Option<u32>,
    /// `--hitcount`.
    pub hitcount: Option<u32>,
    /// `--reap`.
    pub reap: bool,
    /// `--rttl`.
    pub rttl: bool,
    /// `--mask` (default 255.255.255.255).
    pub mask: Ipv4Addr,
}

/// `-m statistic` (xt_statistic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StatisticMode {
    /// `--mode random --probability p`: `p31` is `lround(p * 2^31)` as
    /// iptables computes it; the kernel matches when
    /// `(get_random_u32() & 0x7fffffff) < p31`, so the exact probability is
    /// `p31 / 2^31`.
    Random {
        /// The probability scaled by 2^31.
        p31: u32,
    },
    /// `--mode nth --every n --packet p` (0-based packet).
    Nth {
        /// `--every`.
        every: u32,
        /// `--packet`.
        packet: u32,
    },
}

/// Rate of `-m limit` / `-m hashlimit`: `count` per `per_secs`-long unit
/// (`5/sec`, `3/min`, `100/hour`, `1/day`). The kernel keeps only the mean
/// interval between events (libxt_limit: `10000 * per_secs / count` ticks;
/// hashlimit: `1000000 * per_secs / count`), so the parser normalises a rate
/// to the unit iptables prints that interval with: `120/min` is `2/sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rate {
    /// Events.
    pub count: u32,
    /// The unit's length in seconds (1, 60, 3600, 86400).
    pub per_secs: u32,
}

/// `-m hashlimit` (xt_hashlimit revision 1+), every option typed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HashlimitMatch {
    /// `--hashlimit-upto` (false) or `--hashlimit-above` (true).
    pub above: bool,
    /// The rate.
    pub rate: Rate,
    /// `--hashlimit-burst` (default 5).
    pub burst: u32,
    /// `--hashlimit-mode` fields: `srcip`, `srcport`, `dstip`, `dstport`.
    pub mode: Vec<String>,
    /// `--hashlimit-name`.
    pub name: String,
    /// `--hashlimit-srcmask`.
    pub srcmask: Option<u8>,
    /// `--hashlimit-dstmask`.
    pub dstmask: Option<u8>,
    /// `--hashlimit-htable-size`.
    pub htable_size: Option<u32>,
    /// `--hashlimit-htable-max`.
    pub htable_max: Option<u32>,
    /// `--hashlimit-htable-expire` (ms).
    pub htable_expire: Option<u32>,
    /// `--hashlimit-htable-gcinterval` (ms).
    pub htable_gcinterval: Option<u32>,
    /// `--hashlimit-rate-match` (revision 3): match on the measured rate
    /// instead of limiting.
    pub rate_match: bool,
    /// `--hashlimit-rate-interval` in seconds (revision 3).
    pub rate_interval: Option<u32>,
}

/// `-m physdev` (xt_physdev): bridge port matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PhysdevMatch {
    /// `--physdev-in`.
    pub physdev_in: Option<Neg<Iface>>,
    /// `--physdev-out`.
    pub physdev_out: Option<Neg<Iface>>,
    /// `--physdev-is-in` (negatable).
    pub is_in: Option<bool>,
    /// `--physdev-is-out`.
    pub is_out: Option<bool>,
    /// `--physdev-is-bridged`.
    pub is_bridged: Option<bool>,
}

/// `-m owner` (xt_owner): only meaningful in OUTPUT/POSTROUTING.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct OwnerMatch {
    /// `--uid-owner lo[-hi]` (names are kept unresolved as `Err(name)`).
    pub uid: Option<Neg<Result<(u32, u32), String>>>,
    /// `--gid-owner lo[-hi]`.
    pub gid: Option<Neg<Result<(u32, u32), String>>>,
    /// `--socket-exists`.
    pub socket_exists: Option<bool>,
    /// `--suppl-groups`.
    pub suppl_groups: bool,
}

/// `--pkt-type` values (xt_pkttype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PktType {
    /// `unicast` (PACKET_HOST).
    Unicast,
    /// `broadcast`.
    Broadcast,
    /// `multicast`.
    Multicast,
}

/// `-m policy` (xt_policy): IPsec policy matching.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyMatch {
    /// `--dir in` (true) or `--dir out` (false).
    pub dir_in: bool,
    /// `--pol none` (false) or `--pol ipsec` (true).
    pub ipsec: bool,
    /// `--strict`.
    pub strict: bool,
    /// Per-element options after `--strict`/`--next`, kept as `(option, negated, value)`.
    pub elements: Vec<(String, bool, String)>,
}

/// `-m connlimit` (xt_connlimit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ConnlimitMatch {
    /// `--connlimit-above` (true) or `--connlimit-upto` (false).
    pub above: bool,
    /// The connection count.
    pub count: u32,
    /// `--connlimit-mask` prefix length (default 32).
    pub mask: u8,
    /// `--connlimit-saddr` (true, default) or `--connlimit-daddr`.
    pub saddr: bool,
}

/// A `-m` match module with its options.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// `-m comment --comment TEXT`: always matches.
    Comment(String),
    /// `-m tcp`.
    Tcp(TcpMatch),
    /// `-m udp`.
    Udp(UdpMatch),
    /// `-m sctp`.
    Sctp(Box<SctpMatch>),
    /// `-m icmp --icmp-type`.
    Icmp(Option<Neg<IcmpType>>),
    /// `-m multiport [!] --dports|--sports|--ports P[,P:Q...]`.
    Multiport {
        /// Which ports.
        kind: MultiportKind,
        /// `!`.
        neg: bool,
        /// Ports and ranges (at most 15 entries).
        ports: Vec<PortRange>,
    },
    /// `-m mark [!] --mark V[/M]`.
    Mark(Neg<MarkMask>),
    /// `-m connmark [!] --mark V[/M]`.
    Connmark(Neg<MarkMask>),
    /// `-m conntrack`.
    Conntrack(Box<ConntrackMatch>),
    /// `-m state [!] --state S[,S...]`.
    State(Neg<CtStates>),
    /// `-m statistic`.
    Statistic {
        /// `!` before `--probability`/`--every`.
        neg: bool,
        /// Random or nth.
        mode: StatisticMode,
    },
    /// `-m addrtype`.
    Addrtype(AddrTypeMatch),
    /// `-m set`.
    Set(Box<SetMatch>),
    /// `-m recent`.
    Recent(Box<RecentMatch>),
    /// `-m rpfilter` (xt_rpfilter): reverse-path check by a route lookup.
    Rpfilter {
        /// `--loose`.
        loose: bool,
        /// `--validmark`: use the packet's mark in the lookup.
        validmark: bool,
        /// `--accept-local`.
        accept_local: bool,
        /// `--invert`: match packets that fail the check.
        invert: bool,
    },
    /// `-m physdev`.
    Physdev(Box<PhysdevMatch>),
    /// `-m iprange`.
    Iprange {
        /// `--src-range`.
        src: Option<Neg<AddrRange>>,
        /// `--dst-range`.
        dst: Option<Neg<AddrRange>>,
    },
    /// `-m limit --limit R --limit-burst B`.
    Limit {
        /// The rate (default 3/hour).
        rate: Rate,
        /// The burst (default 5).
        burst: u32,
    },
    /// `-m mac [!] --mac-source XX:XX:XX:XX:XX:XX`.
    Mac(Neg<[u8; 6]>),
    /// `-m owner`.
    Owner(Box<OwnerMatch>),
    /// `-m pkttype [!] --pkt-type T`.
    Pkttype(Neg<PktType>),
    /// `-m policy`.
    Policy(PolicyMatch),
    /// `-m socket`.
    Socket {
        /// `--transparent`.
        transparent: bool,
        /// `--nowildcard`.
        nowildcard: bool,
        /// `--restore-skmark`.
        restore_skmark: bool,
    },
    /// `-m length [!] --length lo[:hi]`.
    Length(Neg<(u16, u16)>),
    /// `-m hashlimit`.
    Hashlimit(Box<HashlimitMatch>),
    /// `-m nfacct --nfacct-name NAME`: counts, always matches.
    Nfacct(String),
    /// `-m connlimit`.
    Connlimit(ConnlimitMatch),
    /// `-m tos [!] --tos V[/M]`.
    Tos(Neg<MarkMask>),
    /// `-m dscp [!] --dscp V`.
    Dscp(Neg<u8>),
    /// `-m ttl --ttl-eq|--ttl-lt|--ttl-gt N` (`!` with `--ttl-eq` is stored as `ne`).
    Ttl {
        /// `eq`, `ne`, `lt`, `gt`.
        op: String,
        /// The TTL.
        value: u8,
    },
    /// `-m helper [!] --helper NAME`.
    Helper(Neg<String>),
    /// A module natpath does not model, kept only in lenient mode: every
    /// verdict that depends on this rule is unknown.
    Unsupported {
        /// The module's name.
        module: String,
        /// Its arguments as written.
        args: Vec<String>,
    },
}

/// The address and port part of DNAT/SNAT (`--to-destination`/`--to-source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct NatRange {
    /// Address range (`None` for `:port` only, which DNAT allows).
    pub addrs: Option<AddrRange>,
    /// Port range.
    pub ports: Option<PortRange>,
}

/// `--reject-with` values (ipt_REJECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RejectWith {
    /// `icmp-net-unreachable`.
    NetUnreachable,
    /// `icmp-host-unreachable`.
    HostUnreachable,
    /// `icmp-port-unreachable` (the default).
    PortUnreachable,
    /// `icmp-proto-unreachable`.
    ProtoUnreachable,
    /// `icmp-net-prohibited`.
    NetProhibited,
    /// `icmp-host-prohibited`.
    HostProhibited,
    /// `icmp-admin-prohibited`.
    AdminProhibited,
    /// `tcp-reset`.
    TcpReset,
}

impl RejectWith {
    /// The name `--reject-with` takes and iptables-save prints.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectWith::NetUnreachable => "icmp-net-unreachable",
            RejectWith::HostUnreachable => "icmp-host-unreachable",
            RejectWith::PortUnreachable => "icmp-port-unreachable",
            RejectWith::ProtoUnreachable => "icmp-proto-unreachable",
            RejectWith::NetProhibited => "icmp-net-prohibited",
            RejectWith::HostProhibited => "icmp-host-prohibited",
            RejectWith::AdminProhibited => "icmp-admin-prohibited",
            RejectWith::TcpReset => "tcp-reset",
        }
    }
}

/// CONNMARK's operations (xt_CONNMARK revision 1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ConnmarkOp {
    /// `--set-xmark V/M`: ctmark = (ctmark & !M) ^ V (also `--set-mark`,
    /// `--and-mark`, `--or-mark`, `--xor-mark`, normalised as for MARK).
    SetXmark {
        /// Value.
        value: u32,
        /// Mask.
        mask: u32,
    },
    /// `--save-mark --nfmask N --ctmask C`:
    /// ctmark = (ctmark & !C) ^ (mark & N).
    Save {
        /// Mask applied to the packet mark.
        nfmask: u32,
        /// Mask of ctmark bits replaced.
        ctmask: u32,
    },
    /// `--restore-mark --nfmask N --ctmask C`:
    /// mark = (mark & !N) ^ (ctmark & C).
    Restore {
        /// Mask of packet-mark bits replaced.
        nfmask: u32,
        /// Mask applied to ctmark.
        ctmask: u32,
    },
}

/// `-j CT` options (xt_CT).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CtTarget {
    /// `--notrack`: the packet is untracked (skips nat).
    pub notrack: bool,
    /// `--helper NAME`.
    pub helper: Option<String>,
    /// `--zone N` (and `--zone-orig`/`--zone-reply` kept as written).
    pub zone: Option<String>,
    /// `--ctevents`, `--expevents`, `--timeout`, kept as `(option, value)`.
    pub other: Vec<(String, String)>,
}

/// `-j LOG` options (xt_LOG).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LogTarget {
    /// `--log-prefix`.
    pub prefix: Option<String>,
    /// `--log-level` (0-7).
    pub level: Option<u8>,
    /// `--log-tcp-sequence`, `--log-tcp-options`, `--log-ip-options`,
    /// `--log-uid`, `--log-macdecode` (in that order when printed).
    pub flags: Vec<String>,
}

/// `-j NFLOG` options (xt_NFLOG).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NflogTarget {
    /// `--nflog-group`.
    pub group: Option<u16>,
    /// `--nflog-prefix`.
    pub prefix: Option<String>,
    /// `--nflog-range` / `--nflog-size`.
    pub size: Option<u32>,
    /// `--nflog-threshold`.
    pub threshold: Option<u16>,
}

/// The target of a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `-j ACCEPT`: ends this table's chain walk for the hook.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j REJECT [--reject-with W]`: dropped, with an answer.
    Reject(RejectWith),
    /// `-j DNAT --to-destination R [--random] [--persistent]`.
    Dnat {
        /// Ranges (several `--to-destination` on old kernels; one today).
        to: Vec<NatRange>,
        /// `--random`.
        random: bool,
        /// `--persistent`.
        persistent: bool,
    },
    /// `-j SNAT --to-source R [--random] [--random-fully] [--persistent]`.
    Snat {
        /// Ranges.
        to: Vec<NatRange>,
        /// `--random`.
        random: bool,
        /// `--random-fully`.
        random_fully: bool,
        /// `--persistent`.
        persistent: bool,
    },
    /// `-j MASQUERADE [--to-ports P[-Q]] [--random] [--random-fully]`.
    Masquerade {
        /// `--to-ports`.
        ports: Option<PortRange>,
        /// `--random`.
        random: bool,
        /// `--random-fully`.
        random_fully: bool,
    },
    /// `-j REDIRECT [--to-ports P[-Q]] [--random]`.
    Redirect {
        /// `--to-ports`.
        ports: Option<PortRange>,
        /// `--random`.
        random: bool,
    },
    /// `-j MARK`: mark = (mark & !mask) ^ value (xt_MARK revision 2; every
    /// spelling, `--set-mark`, `--or-mark`, `--and-mark`, `--xor-mark`, is
    /// normalised to this).
    Mark {
        /// XOR value.
        value: u32,
        /// Mask of bits cleared first.
        mask: u32,
    },
    /// `-j CONNMARK`.
    Connmark(ConnmarkOp),
    /// `-j CT`.
    Ct(Box<CtTarget>),
    /// `-j NOTRACK` (the same as `-j CT --notrack`, printed as written).
    Notrack,
    /// `-j LOG`.
    Log(Box<LogTarget>),
    /// `-j NFLOG`.
    Nflog(Box<NflogTarget>),
    /// `-j TRACE`.
    Trace,
    /// `-j CHECKSUM --checksum-fill`.
    Checksum,
    /// `-j TCPMSS --set-mss N` (`Some`) or `--clamp-mss-to-pmtu` (`None`).
    Tcpmss(Option<u16>),
    /// `-j CHAIN`: call a user chain.
    Jump(String),
    /// `-g CHAIN`: go to a user chain; its RETURN returns to this chain's caller.
    Goto(String),
    /// A target natpath does not model, kept only in lenient mode.
    Unsupported {
        /// The target's name.
        name: String,
        /// Its arguments as written.
        args: Vec<String>,
    },
}

impl Target {
    /// The user chain this target calls or goes to.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Target::Jump(c) | Target::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the target ends the chain walk (for this hook, or the packet).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Target::Accept
                | Target::Drop
                | Target::Return
                | Target::Reject(_)
                | Target::Dnat { .. }
                | Target::Snat { .. }
                | Target::Masquerade { .. }
                | Target::Redirect { .. }
        )
    }
}
