//! The IR of a node's non-netfilter state: interfaces and addresses
//! (`ip addr`), routes of every table (`ip route show table all`), policy
//! rules (`ip rule`), ipsets (`ipset save` / `ipset list`) and sysctls.
//!
//! Contract: as for [`crate::ruleset`], values are typed and [`Loc`] does
//! not take part in equality. Interfaces keep the kernel's device order,
//! which MASQUERADE's address choice depends on (docs/kernel-semantics.md).

use crate::loc::Loc;
use crate::ruleset::{PortRange, Proto};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Address scope (`scope global|link|host|site|NUMBER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `global` (0).
    Global,
    /// `site` (200).
    Site,
    /// `link` (253).
    Link,
    /// `host` (254).
    Host,
    /// `nowhere` (255).
    Nowhere,
    /// Any other number.
    Other(u8),
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IfAddr {
    /// The address with its prefix (`10.0.0.51/24`).
    pub addr: Ipv4Net,
    /// `peer` address for point-to-point links.
    pub peer: Option<Ipv4Net>,
    /// `brd`.
    pub broadcast: Option<Ipv4Addr>,
    /// `scope`.
    pub scope: Scope,
    /// `secondary` flag: not the first address of its subnet on the device.
    pub secondary: bool,
    /// `noprefixroute` flag: the kernel adds no route for the address's
    /// prefix (a network manager adds its own, or none).
    pub noprefixroute: bool,
    /// The label (`eth0:1`), when it differs from the device name.
    pub label: Option<String>,
    /// Where it was read.
    #[serde(skip)]
    pub loc: Loc,
}

/// One network interface, in device order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// Interface index (the number before the name).
    pub index: u32,
    /// The name, without any `@peer` part.
    pub name: String,
    /// The part after `@` (`NONE` for tunl0, `if4` for a veth, `ens192` for a vlan).
    pub link: Option<String>,
    /// Flags between `<` and `>` (`UP`, `LOWER_UP`, `NOARP`...).
    pub flags: Vec<String>,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `state` (`UP`, `DOWN`, `UNKNOWN`).
    pub state: Option<String>,
    /// `link/ether`, `link/ipip`, `link/loopback`, `link/none`... the kind word.
    pub link_type: Option<String>,
    /// The link-layer address after the kind word.
    pub link_addr: Option<String>,
    /// `link-netns NAME` or `link-netnsid N` of a veth whose peer is elsewhere.
    pub link_netns: Option<String>,
    /// The tunnel or device kind from `ip -d link` (`vxlan`, `ipip`, `veth`),
    /// when known.
    pub kind: Option<String>,
    /// The VXLAN parameters from `ip -d link` when `kind` is `vxlan`.
    pub vxlan: Option<Vxlan>,
    /// IPv4 addresses in the order `ip addr` lists them.
    pub addrs: Vec<IfAddr>,
    /// Where the interface was read.
    #[serde(skip)]
    pub loc: Loc,
}

impl Interface {
    /// Whether the interface is administratively up (flag `UP`).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

/// The parameters of a VXLAN device, as `ip -d link show` prints them
/// (`vxlan id 4096 local 10.0.0.51 dev ens192 srcport 0 0 dstport 4789`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vxlan {
    /// `id`: the VXLAN network identifier.
    pub vni: u32,
    /// `local`: the source address of the outer packets.
    pub local: Option<Ipv4Addr>,
    /// `remote`: the one peer of a point-to-point device.
    pub remote: Option<Ipv4Addr>,
    /// `group`: the multicast group that floods unknown destinations.
    pub group: Option<Ipv4Addr>,
    /// `dev`: the underlay device.
    pub dev: Option<String>,
    /// `dstport`: the UDP port of the outer packets (4789 for Calico,
    /// 8472 for flannel and the Linux default).
    pub dstport: u16,
    /// False for `nolearning`: peers come only from static fdb entries.
    pub learning: bool,
}

/// One neighbour (ARP) entry (`ip neigh show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Neighbor {
    /// The IPv4 address.
    pub addr: Ipv4Addr,
    /// `dev`.
    pub dev: String,
    /// `lladdr`: the link-layer address, when resolved.
    pub lladdr: Option<String>,
    /// `router` flag.
    pub router: bool,
    /// The state words (`PERMANENT`, `REACHABLE`, `STALE`, `FAILED`...).
    pub state: Vec<String>,
    /// Where the entry was read.
    #[serde(skip)]
    pub loc: Loc,
}

/// One forwarding database entry (`bridge fdb show`); for a VXLAN device,
/// `dst` is the peer VTEP that frames for `mac` are sent to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FdbEntry {
    /// The MAC address (`00:00:00:00:00:00` is the default entry for flooding).
    pub mac: String,
    /// `dev`.
    pub dev: String,
    /// `dst`: the remote VTEP address.
    pub dst: Option<Ipv4Addr>,
    /// `vlan`.
    pub vlan: Option<u16>,
    /// `vni`, when it differs from the device's.
    pub vni: Option<u32>,
    /// `master`: the bridge the port belongs to.
    pub master: Option<String>,
    /// Other words (`self`, `permanent`, `extern_learn`...), in order.
    pub flags: Vec<String>,
    /// Where the entry was read.
    #[serde(skip)]
    pub loc: Loc,
}

/// Route types (`ip route`'s first word when it is a type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    /// A normal route (no type word).
    Unicast,
    /// `local`: delivered to this host.
    Local,
    /// `broadcast`.
    Broadcast,
    /// `multicast`.
    Multicast,
    /// `anycast`.
    Anycast,
    /// `blackhole`: silently discarded.
    Blackhole,
    /// `unreachable`: discarded with ICMP host unreachable.
    Unreachable,
    /// `prohibit`: discarded with ICMP admin prohibited.
    Prohibit,
    /// `throw`: continue with the next `ip rule`.
    Throw,
    /// `nat` (obsolete).
    Nat,
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NextHop {
    /// `via`.
    pub via: Option<Ipv4Addr>,
    /// `dev`.
    pub dev: Option<String>,
    /// `onlink`: the gateway is on the link even if no prefix says so.
    pub onlink: bool,
    /// `weight` in a multipath route.
    pub weight: Option<u32>,
}

/// Route table id: `main` is 254, `local` 255, `default` 253.
pub type TableId = u32;

/// The `main` routing table.
pub const TABLE_MAIN: TableId = 254;
/// The `local` routing table.
pub const TABLE_LOCAL: TableId = 255;
/// The `default` routing table.
pub const TABLE_DEFAULT: TableId = 253;

/// The id of a routing table as `ip` prints or takes it: a number, or
/// `main` (254), `local` (255), `default` (253), `unspec` (0). Any other
/// name comes from the node's `/etc/iproute2/rt_tables`, which no dump
/// shows; it gets a stable id of its own (a hash of the name with the top
/// bit set), so that `table KABEL` in `ip route` and `lookup KABEL` in
/// `ip rule` name the same table. `None` for a word that is neither a number
/// nor a name (`[A-Za-z_][A-Za-z0-9_.-]*`).
pub fn table_id(name: &str) -> Option<TableId> {
    match name {
        "main" => return Some(TABLE_MAIN),
        "local" => return Some(TABLE_LOCAL),
        "default" => return Some(TABLE_DEFAULT),
        "unspec" => return Some(0),
        _ => {}
    }
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_digit() => {
            if name.bytes().all(|b| b.is_ascii_digit()) {
                name.parse().ok()
            } else {
                None
            }
        }
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            if bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
                // FNV-1a, 32 bits.
                let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
                Some(h | 0x8000_0000)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// Which table (`table` word; `main` when absent).
    pub table: TableId,
    /// The type.
    pub kind: RouteType,
    /// Destination prefix (`default` is 0.0.0.0/0).
    pub dst: Ipv4Net,
    /// `tos`.
    pub tos: Option<u8>,
    /// Next hops (one, or several for `nexthop` lines).
    pub nexthops: Vec<NextHop>,
    /// `proto` (kernel, boot, static, bird, dhcp, number...).
    pub proto: Option<String>,
    /// `scope` (default: link for a direct route, global with a gateway,
    /// host for local).
    pub scope: Option<Scope>,
    /// `src`: preferred source.
    pub src: Option<Ipv4Addr>,
    /// `metric` (also `preference`).
    pub metric: u32,
    /// Other words kept as `(key, value)`, e.g. `mtu 1440`, `linkdown`.
    pub extra: Vec<(String, String)>,
    /// Where the route was read.
    #[serde(skip)]
    pub loc: Loc,
}

/// What an `ip rule` does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RuleAction {
    /// `lookup TABLE`.
    Lookup(TableId),
    /// `goto PRIO`.
    Goto(u32),
    /// `blackhole`.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
    /// `nop`.
    Nop,
}

/// One policy routing rule (`ip rule show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpRule {
    /// The priority before the colon.
    pub priority: u32,
    /// `not`: the selector is inverted.
    pub not: bool,
    /// `from PREFIX` (`all` = None).
    pub from: Option<Ipv4Net>,
    /// `to PREFIX`.
    pub to: Option<Ipv4Net>,
    /// `fwmark V[/M]` (mask default 0xffffffff).
    pub fwmark: Option<(u32, u32)>,
    /// `iif DEV`.
    pub iif: Option<String>,
    /// `oif DEV`.
    pub oif: Option<String>,
    /// `tos`.
    pub tos: Option<u8>,
    /// `ipproto`.
    pub ipproto: Option<Proto>,
    /// `sport`.
    pub sport: Option<PortRange>,
    /// `dport`.
    pub dport: Option<PortRange>,
    /// `uidrange lo-hi`.
    pub uidrange: Option<(u32, u32)>,
    /// `suppress_prefixlength N`.
    pub suppress_prefixlength: Option<u8>,
    /// What to do.
    pub action: RuleAction,
    /// Where the rule was read.
    #[serde(skip)]
    pub loc: Loc,
}

/// ipset types (`hash:ip`, `hash:net,port`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SetType {
    /// `hash:ip`.
    HashIp,
    /// `hash:net`.
    HashNet,
    /// `hash:ip,port`.
    HashIpPort,
    /// `hash:net,port`.
    HashNetPort,
    /// `hash:ip,port,ip`.
    HashIpPortIp,
    /// `hash:ip,port,net`.
    HashIpPortNet,
    /// `hash:net,iface`.
    HashNetIface,
    /// `bitmap:port`.
    BitmapPort,
    /// `bitmap:ip`.
    BitmapIp,
    /// `list:set`.
    ListSet,
}

impl SetType {
    /// The name as ipset writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashNet => "hash:net",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashNetPort => "hash:net,port",
            SetType::HashIpPortIp => "hash:ip,port,ip",
            SetType::HashIpPortNet => "hash:ip,port,net",
            SetType::HashNetIface => "hash:net,iface",
            SetType::BitmapPort => "bitmap:port",
            SetType::BitmapIp => "bitmap:ip",
            SetType::ListSet => "list:set",
        }
    }
}

/// One member of a set; which fields are set depends on the set's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SetEntry {
    /// The first address or network dimension.
    pub net: Option<Ipv4Net>,
    /// `proto:port` dimension (proto defaults to tcp); a range for bitmap:port.
    pub port: Option<(Proto, PortRange)>,
    /// The second address dimension (`hash:ip,port,ip|net`).
    pub net2: Option<Ipv4Net>,
    /// The interface dimension (`hash:net,iface`).
    pub iface: Option<String>,
    /// The member set name (`list:set`).
    pub set: Option<String>,
    /// `nomatch`: an exception inside a larger network.
    pub nomatch: bool,
    /// Other per-entry options (`timeout 30`, `comment "x"`), as written.
    pub options: Vec<(String, String)>,
}

/// Whether `a` is in the networks of `entries`: the most specific entry
/// that holds it decides (a `nomatch` one inside a larger network
/// excludes it); of equally specific ones, the first listed.
pub fn net_member<'e>(entries: impl IntoIterator<Item = &'e SetEntry>, a: Ipv4Addr) -> bool {
    let mut best: Option<(u8, bool)> = None;
    for e in entries {
        if let Some(n) = e.net {
            if n.contains(&a) && best.is_none_or(|(l, _)| n.prefix_len() > l) {
                best = Some((n.prefix_len(), !e.nomatch));
            }
        }
    }
    best.is_some_and(|(_, m)| m)
}

/// One ipset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpSet {
    /// The set's name.
    pub name: String,
    /// The type.
    pub kind: SetType,
    /// `family inet` (true) or `inet6`.
    pub inet: bool,
    /// Create options (`hashsize 1024`, `maxelem 65536`, `timeout 0`,
    /// `counters`, `comment`, `range 1-65535`...), as `(key, value)`.
    pub options: Vec<(String, String)>,
    /// Members, in the order listed.
    pub entries: Vec<SetEntry>,
    /// Where the set was created.
    #[serde(skip)]
    pub loc: Loc,
}

/// What `fib_validate_source` reads of the arrival device: the effective
/// rp_filter, and whether `src_valid_mark` and `accept_local` are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpfConf {
    /// `IN_DEV_RPFILTER`: the maximum of `all` and the device's value.
    pub rp_filter: i64,
    /// `IN_DEV_SRC_VMARK`: `all` or the device.
    pub src_valid_mark: bool,
    /// `IN_DEV_ACCEPT_LOCAL`: `all` or the device (which falls back to
    /// `default`, as rp_filter's does).
    pub accept_local: bool,
}

/// Sysctl values of one node, `key -> value` as `sysctl net.ipv4` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Sysctl {
    /// Values by full key (`net.ipv4.conf.all.rp_filter`).
    pub values: BTreeMap<String, String>,
}

impl Sysctl {
    /// A numeric value, if present and numeric.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.values.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// `net.ipv4.ip_forward` (default 1 when absent, docs/snapshot-format.md).
    pub fn ip_forward(&self) -> bool {
        self.int("net.ipv4.ip_forward").or_else(|| self.int("net.ipv4.conf.all.forwarding")).unwrap_or(1) != 0
    }

    /// Whether a packet received by `iif` may be forwarded: the input
    /// device's own `forwarding` (`IN_DEV_FORWARD(in_dev)` in
    /// `ip_route_input_slow` and `ip_error`), not `ip_forward`.
    pub fn forwarding(&self, iif: &str) -> bool {
        self.forwarding_source(iif).1
    }

    /// [`Self::forwarding`] and the key it was read from (`None`: no key,
    /// the default 1). A device without a key of its own has the value it
    /// was created with, `conf.default.forwarding`; the kernel's writes of
    /// `ip_forward` (which is `conf.all.forwarding`) set every device's and
    /// `default`'s, so without a `default` key that is `all`'s, then
    /// `ip_forward`'s (docs/snapshot-format.md).
    pub fn forwarding_source(&self, iif: &str) -> (Option<String>, bool) {
        let found = self.dev_key(iif, "forwarding").or_else(|| {
            ["net.ipv4.conf.default.forwarding", "net.ipv4.conf.all.forwarding", "net.ipv4.ip_forward"]
                .into_iter()
                .find_map(|k| self.int(k).map(|v| (k.to_string(), v)))
        });
        match found {
            Some((k, v)) => (Some(k), v != 0),
            None => (None, true),
        }
    }

    /// The sysctl key that turns forwarding off for packets received by
    /// `iif` ([`Self::forwarding_source`]; the device's own key when no key
    /// says so and the default applies), or `None` when they are forwarded.
    pub fn not_forwarding(&self, iif: &str) -> Option<String> {
        match self.forwarding_source(iif) {
            (_, true) => None,
            (key, false) => Some(key.unwrap_or_else(|| format!("net.ipv4.conf.{iif}.forwarding"))),
        }
    }

    /// `net.ipv4.conf.DEV.KEY` of device `dev`, as `sysctl -a` writes it
    /// (a `.` in a device name printed as `/`: `vxlan/calico`) or dotted.
    pub fn dev_int(&self, dev: &str, key: &str) -> Option<i64> {
        self.dev_key(dev, key).map(|(_, v)| v)
    }

    /// [`Self::dev_int`] with the key it was read from.
    fn dev_key(&self, dev: &str, key: &str) -> Option<(String, i64)> {
        let mut forms = vec![format!("net.ipv4.conf.{dev}.{key}")];
        if dev.contains('.') {
            forms.insert(0, format!("net.ipv4.conf.{}.{key}", dev.replace('.', "/")));
        }
        forms.into_iter().find_map(|k| self.int(&k).map(|v| (k, v)))
    }

    /// The effective rp_filter of `iface`: the maximum of `all` and the
    /// interface's value (default 0 when absent).
    pub fn rp_filter(&self, iface: &str) -> i64 {
        let all = self.int("net.ipv4.conf.all.rp_filter").unwrap_or(0);
        let dev = self.dev_int(iface, "rp_filter").or_else(|| self.int("net.ipv4.conf.default.rp_filter")).unwrap_or(0);
        all.max(dev)
    }

    /// `IN_DEV_SRC_VMARK`: `src_valid_mark` is on for `iface` (`all` or the
    /// interface).
    pub fn src_valid_mark(&self, iface: &str) -> bool {
        self.int("net.ipv4.conf.all.src_valid_mark").unwrap_or(0) != 0
            || self.dev_int(iface, "src_valid_mark").unwrap_or(0) != 0
    }

    /// `IN_DEV_ACCEPT_LOCAL`: `accept_local` is on for `iface` (`all`, or
    /// the interface's own value, which falls back to `conf.default` as
    /// rp_filter's does).
    pub fn accept_local(&self, iface: &str) -> bool {
        self.int("net.ipv4.conf.all.accept_local").unwrap_or(0) != 0
            || self
                .dev_int(iface, "accept_local")
                .or_else(|| self.int("net.ipv4.conf.default.accept_local"))
                .unwrap_or(0)
                != 0
    }

    /// What `fib_validate_source` reads of arrival device `iface`
    /// ([`Self::rp_filter`], [`Self::src_valid_mark`], [`Self::accept_local`]).
    pub fn rpf_conf(&self, iface: &str) -> RpfConf {
        RpfConf {
            rp_filter: self.rp_filter(iface),
            src_valid_mark: self.src_valid_mark(iface),
            accept_local: self.accept_local(iface),
        }
    }

    /// The effective route_localnet of `iface` (either `all` or the interface).
    pub fn route_localnet(&self, iface: &str) -> bool {
        self.int("net.ipv4.conf.all.route_localnet").unwrap_or(0) != 0
            || self.dev_int(iface, "route_localnet").unwrap_or(0) != 0
    }
}
