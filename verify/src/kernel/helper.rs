//! The referee's small programs that must run *inside* a namespace (started
//! by `ip netns exec NS natpath kernel-helper SUBCOMMAND ...`, a hidden
//! subcommand of the one `natpath` binary):
//!
//! - `relay`: the user-space IPIP tunnel behind the TUN device `tunl0`.
//!   Inner packets read from the TUN are sent as real protocol-4 packets
//!   through a raw socket to the gateway of the tunl0 route the inner
//!   destination matches (longest prefix), so the outer packet is locally
//!   generated and crosses OUTPUT and POSTROUTING; protocol-4 packets the
//!   node receives (after PREROUTING and INPUT) are unwrapped and the inner
//!   packet is written to the TUN, so it enters again from tunl0. Unlike the
//!   kernel's ipip driver, the skb mark is not copied to the outer packet
//!   (nor from it to the inner one).
//! - `serve`: a pod's ports (TCP listeners that never accept, UDP echo,
//!   SCTP ports answered in user space: an INIT gets an INIT ACK) and raw
//!   sockets that report the source and destination of every TCP SYN, UDP
//!   datagram and SCTP INIT the pod receives.
//! - `probe`: one TCP SYN (raw socket: no retransmission, the caller drops
//!   the RST the sender's kernel would answer the SYN-ACK with), one UDP
//!   datagram or one SCTP INIT, then the first answer that belongs to it (a
//!   SYN-ACK or RST of its own four addresses and ports, a UDP datagram to
//!   its socket, an INIT ACK or ABORT of its ports and tag, an ICMP error
//!   quoting its protocol, source address and port; redirects are skipped)
//!   with its real source, within a deadline. A send refused
//!   with EPERM (a rule of the sender's own OUTPUT hook dropped or
//!   rejected it) is not a failure: the probe still waits for the ICMP
//!   error a REJECT there sends back.
//! - `hello`: one carrier packet (protocol 4 with an inner protocol-253
//!   header, which relays discard) so tunnel carrier flows are ESTABLISHED
//!   in conntrack, as on a live cluster.
//!
//! Contract: every line on stdout is one JSON event; `relay` and `serve`
//! print `{"ev":"ready"}` once listening and exit when their stdin closes
//! (the harness holds it open, so they die with it); `probe` waits at most
//! `--timeout-ms` (capped at 10 s). Kernel facts relied on: an IPv4 raw
//! socket receives a copy of every locally delivered packet of its protocol
//! with the IP header; with a raw socket open for protocol 4 the kernel
//! sends no "protocol unreachable" for it.

use super::tun;
use super::wire::{self, Ip};
use ipnet::Ipv4Net;
use serde_json::json;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Run a helper subcommand; returns the exit code.
pub fn helper_main(args: &[String]) -> i32 {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("", &[][..]),
    };
    let r = match cmd {
        "relay" => relay(rest),
        "serve" => serve(rest),
        "probe" => probe(rest),
        "hello" => hello(rest),
        _ => Err(format!("unknown helper command `{cmd}`; expected relay, serve, probe or hello")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            emit(json!({"ev": "error", "message": e}));
            eprintln!("natpath kernel-helper {cmd}: {e}");
            1
        }
    }
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w.first().map(String::as_str) == Some(flag))
        .filter_map(|w| w.get(1).map(String::as_str))
        .collect()
}

fn value<'a>(args: &'a [String], flag: &str) -> Result<&'a str, String> {
    values(args, flag).first().copied().ok_or_else(|| format!("expected `{flag} VALUE`"))
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("expected {what}, found `{s}`"))
}

/// Exit when the harness closes our stdin (it died or tore the lab down).
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        // Bounded by the pipe: read returns 0 at EOF or fails when closed.
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn raw_socket(proto: u8) -> Result<Socket, String> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(proto))))
        .map_err(|e| format!("raw socket for protocol {proto}: {e}"))
}

fn sa(ip: Ipv4Addr, port: u16) -> String {
    SocketAddrV4::new(ip, port).to_string()
}

fn relay(args: &[String]) -> Result<(), String> {
    let name = value(args, "--tun")?;
    let mut routes: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
    for r in values(args, "--route") {
        let (net, gw) = r.split_once('=').ok_or_else(|| format!("expected `--route CIDR=GW`, found `{r}`"))?;
        routes.push((parse(net, "a prefix")?, parse(gw, "a gateway address")?));
    }
    let tun_rx = tun::attach(name).map_err(|e| format!("attaching to TUN `{name}`: {e}"))?;
    let mut tun_tx = tun_rx.try_clone().map_err(|e| e.to_string())?;
    let raw_tx = raw_socket(wire::PROTO_IPIP)?;
    let raw_rx = raw_tx.try_clone().map_err(|e| e.to_string())?;
    exit_on_stdin_eof();
    // Outbound: TUN -> outer packet to the route's gateway.
    std::thread::spawn(move || {
        let mut tun_rx = tun_rx;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match tun_rx.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    emit(json!({"ev": "error", "message": format!("reading the TUN: {e}")}));
                    return;
                }
            };
            let pkt = buf.get(..n).unwrap_or(&[]);
            let Some(h) = wire::ip(pkt) else { continue };
            let best = routes.iter().filter(|(net, _)| net.contains(&h.dst)).max_by_key(|(net, _)| net.prefix_len());
            match best {
                Some((_, gw)) => {
                    let to = SockAddr::from(SocketAddrV4::new(*gw, 0));
                    let sent = raw_tx.send_to(pkt, &to);
                    emit(json!({"ev": "encap", "inner": describe(pkt, &h), "outer_dst": gw.to_string(),
                                "ok": sent.is_ok()}));
                }
                None => emit(json!({"ev": "no-route", "inner": describe(pkt, &h)})),
            }
        }
    });
    // Inbound: outer packet delivered locally -> inner packet into the TUN.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match (&raw_rx).read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    emit(json!({"ev": "error", "message": format!("reading protocol 4: {e}")}));
                    return;
                }
            };
            let pkt = buf.get(..n).unwrap_or(&[]);
            let Some(outer) = wire::ip(pkt) else { continue };
            let inner = pkt.get(outer.header_len..).unwrap_or(&[]);
            let Some(ih) = wire::ip(inner) else { continue };
            if ih.proto == wire::PROTO_HELLO {
                emit(json!({"ev": "hello", "from": outer.src.to_string()}));
                continue;
            }
            let wrote = tun_tx.write(inner);
            emit(json!({"ev": "decap", "outer_src": outer.src.to_string(), "inner": describe(inner, &ih),
                        "ok": wrote.is_ok()}));
        }
    });
    emit(json!({"ev": "ready"}));
    // The threads run until the process exits (stdin EOF or a kill).
    loop {
        std::thread::park();
    }
}

fn describe(pkt: &[u8], h: &Ip) -> String {
    let l4 = pkt.get(h.header_len..).unwrap_or(&[]);
    match (h.proto, wire::ports(l4)) {
        (wire::PROTO_TCP | wire::PROTO_UDP, Some((sp, dp))) => {
            let p = if h.proto == wire::PROTO_TCP { "tcp" } else { "udp" };
            format!("{p} {} > {}", sa(h.src, sp), sa(h.dst, dp))
        }
        (p, _) => format!("proto {p} {} > {}", h.src, h.dst),
    }
}

fn serve(args: &[String]) -> Result<(), String> {
    let addr: Ipv4Addr = parse(value(args, "--addr")?, "an address")?;
    let mut keep = Vec::new();
    for p in values(args, "--tcp") {
        let port: u16 = parse(p, "a port")?;
        keep.push(TcpListener::bind((addr, port)).map_err(|e| format!("listening on tcp/{port}: {e}"))?);
    }
    for p in values(args, "--udp") {
        let port: u16 = parse(p, "a port")?;
        let sock = UdpSocket::bind((addr, port)).map_err(|e| format!("binding udp/{port}: {e}"))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(buf.get(..n).unwrap_or(&[]), from);
            }
        });
    }
    let sctp: Vec<u16> = values(args, "--sctp").into_iter().map(|p| parse(p, "a port")).collect::<Result<_, _>>()?;
    // SCTP: this kernel has no SCTP stack, so the pod speaks the first two
    // chunks itself: an INIT to a port it listens on is reported and
    // answered with an INIT ACK (conntrack sees a real handshake start).
    // The raw socket also keeps the kernel from answering SCTP with an
    // ICMP protocol unreachable; an INIT to another port gets no answer.
    {
        let raw = raw_socket(wire::PROTO_SCTP)?;
        raw.bind(&SockAddr::from(SocketAddrV4::new(addr, 0))).map_err(|e| format!("binding the SCTP socket: {e}"))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut tag: u32 = 0x7e57_0001;
            while let Ok(n) = (&raw).read(&mut buf) {
                let pkt = buf.get(..n).unwrap_or(&[]);
                let Some(h) = wire::ip(pkt) else { continue };
                let l4 = pkt.get(h.header_len..).unwrap_or(&[]);
                let (Some((sp, dp)), Some((wire::SCTP_INIT, _))) = (wire::ports(l4), wire::sctp_first_chunk(l4)) else {
                    continue;
                };
                if h.dst != addr || !sctp.contains(&dp) {
                    continue;
                }
                emit(json!({"ev": "sctp-init", "src": sa(h.src, sp), "dst": sa(h.dst, dp)}));
                tag = tag.wrapping_add(1);
                if let Some(ack) = wire::sctp_init_ack(l4, tag) {
                    let _ = raw.send_to(&ack, &SockAddr::from(SocketAddrV4::new(h.src, 0)));
                }
            }
        });
    }
    for proto in [wire::PROTO_TCP, wire::PROTO_UDP] {
        let raw = raw_socket(proto)?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = (&raw).read(&mut buf) {
                let pkt = buf.get(..n).unwrap_or(&[]);
                let Some(h) = wire::ip(pkt) else { continue };
                let l4 = pkt.get(h.header_len..).unwrap_or(&[]);
                let Some((sp, dp)) = wire::ports(l4) else { continue };
                let ev = if h.proto == wire::PROTO_TCP {
                    let f = wire::tcp_flags(l4).unwrap_or(0);
                    if f & wire::SYN == 0 || f & wire::ACK != 0 {
                        continue;
                    }
                    "tcp-syn"
                } else {
                    "udp"
                };
                emit(json!({"ev": ev, "src": sa(h.src, sp), "dst": sa(h.dst, dp)}));
            }
        });
    }
    exit_on_stdin_eof();
    emit(json!({"ev": "ready"}));
    loop {
        std::thread::park();
        let _ = &keep;
    }
}

/// What came back to the prober.
enum Answer {
    Tcp(Ip, u16, u16, u8),
    Udp(SocketAddrV4, SocketAddrV4),
    Sctp(Ip, u16, u16, u8),
    Icmp(Ip, wire::IcmpError),
}

/// Send `pkt` (`what`, an L4 packet of protocol `proto`) to `dst` from a
/// raw socket and read that socket, until `deadline`, for the first packet
/// `answer` takes as the answer; it goes to `tx`. `Ok(true)` when the send
/// was refused with EPERM: a rule of the sender's own OUTPUT hook dropped or
/// rejected it (a REJECT there answers with an ICMP error to ourselves,
/// which the ICMP reader still catches); any other failure is an error.
/// The errors with which the sender's own node refuses a packet it sends,
/// so that nothing leaves: a DROP in OUTPUT (EPERM), and a route that
/// fails once the OUTPUT hook's NAT made it look again (`ip_route_me_harder`:
/// a `prohibit` route EACCES, a blackhole EINVAL, an `unreachable` route
/// EHOSTUNREACH, none ENETUNREACH).
fn own_refusal(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::PermissionDenied | K::InvalidInput | K::HostUnreachable | K::NetworkUnreachable)
}

fn raw_exchange(
    proto: u8,
    pkt: &[u8],
    what: &str,
    dst: SocketAddrV4,
    deadline: Instant,
    tx: mpsc::Sender<Answer>,
    answer: impl Fn(Ip, &[u8]) -> Option<Answer> + Send + 'static,
) -> Result<Option<String>, String> {
    let raw = raw_socket(proto)?;
    raw.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
    let refused = match raw.send_to(pkt, &SockAddr::from(SocketAddrV4::new(*dst.ip(), 0))) {
        Ok(_) => None,
        Err(e) if own_refusal(&e) => Some(e.to_string()),
        Err(e) => return Err(format!("sending {what}: {e}")),
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok(n) = (&raw).read(&mut buf) else { continue };
            let pkt = buf.get(..n).unwrap_or(&[]);
            let Some(h) = wire::ip(pkt) else { continue };
            if let Some(a) = answer(h, pkt.get(h.header_len..).unwrap_or(&[])) {
                let _ = tx.send(a);
                return;
            }
        }
    });
    Ok(refused)
}

fn probe(args: &[String]) -> Result<(), String> {
    let proto = value(args, "--proto")?;
    let dst: SocketAddrV4 = parse(value(args, "--dst")?, "IP:PORT")?;
    let sport: u16 = parse(value(args, "--sport")?, "a port")?;
    let timeout_ms: u64 = parse(value(args, "--timeout-ms")?, "milliseconds")?;
    let timeout = Duration::from_millis(timeout_ms.min(10_000));
    // The source address the kernel picks for this destination.
    let route = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    route.connect(dst).map_err(|e| format!("no route to {dst}: {e}"))?;
    let src = match route.local_addr().map_err(|e| e.to_string())? {
        std::net::SocketAddr::V4(a) => *a.ip(),
        std::net::SocketAddr::V6(_) => return Err("expected an IPv4 source".into()),
    };
    drop(route);
    let l4 = match proto {
        "tcp" => wire::PROTO_TCP,
        "udp" => wire::PROTO_UDP,
        "sctp" => wire::PROTO_SCTP,
        other => return Err(format!("expected tcp, udp or sctp after `--proto`, found `{other}`")),
    };
    let (tx, rx) = mpsc::channel::<Answer>();
    let icmp = raw_socket(wire::PROTO_ICMP)?;
    icmp.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + timeout;
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while Instant::now() < deadline {
                let Ok(n) = (&icmp).read(&mut buf) else { continue };
                let pkt = buf.get(..n).unwrap_or(&[]);
                let Some(h) = wire::ip(pkt) else { continue };
                let Some(err) = pkt.get(h.header_len..).and_then(wire::icmp_error) else { continue };
                // A redirect is advice, not an answer: the packet went on.
                if err.kind == wire::ICMP_REDIRECT {
                    continue;
                }
                // The error must quote the probe itself: its protocol, and
                // its source address and port as the sender wrote them
                // (conntrack restores them in the quote when it had
                // translated them). The quoted destination is reported,
                // not required: a node that refuses a packet it translated
                // before confirming the connection quotes the translation.
                if err.quoted.proto == l4
                    && err.quoted.src == src
                    && err.quoted_ports.is_some_and(|(sp, _)| sp == sport)
                {
                    let _ = tx.send(Answer::Icmp(h, err));
                }
            }
        });
    }
    let sent = sa(src, sport);
    let mut refused_here: Option<String> = None;
    match proto {
        "tcp" => {
            let seq = u32::try_from(started.elapsed().as_nanos() % u128::from(u32::MAX)).unwrap_or(1) ^ 0x5eed_1234;
            let syn = wire::tcp_syn(src, *dst.ip(), sport, dst.port(), seq);
            refused_here = raw_exchange(wire::PROTO_TCP, &syn, "the SYN", dst, deadline, tx.clone(), move |h, l4| {
                let (sp, dp) = wire::ports(l4)?;
                let f = wire::tcp_flags(l4)?;
                let synack = f & (wire::SYN | wire::ACK) == wire::SYN | wire::ACK;
                // The probe's own connection: its four addresses and ports.
                let ours = h.dst == src && dp == sport && h.src == *dst.ip() && sp == dst.port();
                (ours && (synack || f & wire::RST != 0)).then_some(Answer::Tcp(h, sp, dp, f))
            })?;
        }
        "udp" => {
            let sock = UdpSocket::bind((src, sport)).map_err(|e| format!("binding udp/{sport}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
            match sock.send_to(b"natpath-probe", dst) {
                Ok(_) => {}
                Err(e) if own_refusal(&e) => refused_here = Some(e.to_string()),
                Err(e) => return Err(format!("sending the datagram: {e}")),
            }
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while Instant::now() < deadline {
                    // The probe's own exchange only: a datagram from
                    // another address or port (a reply whose NAT was not
                    // undone) is not the answer of the flow the client
                    // opened, as a SYN-ACK from the wrong source is not
                    // for TCP. The socket stays unconnected, so that such
                    // a datagram is read here and dropped, not answered by
                    // the kernel with a port unreachable the model would
                    // not count.
                    if let Ok((_, std::net::SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
                        if from == dst {
                            let _ = tx.send(Answer::Udp(from, SocketAddrV4::new(src, sport)));
                            return;
                        }
                    }
                }
            });
        }
        "sctp" => {
            let tag =
                (u32::try_from(started.elapsed().as_nanos() % u128::from(u32::MAX)).unwrap_or(1) ^ 0x5c7b_0001).max(1);
            let init = wire::sctp_init(sport, dst.port(), tag);
            refused_here =
                raw_exchange(wire::PROTO_SCTP, &init, "the INIT", dst, deadline, tx.clone(), move |h, l4| {
                    let (sp, dp) = wire::ports(l4)?;
                    let (chunk, vtag) = wire::sctp_first_chunk(l4)?;
                    // The probe's own association: its addresses, ports and tag.
                    let ours = h.dst == src && dp == sport && h.src == *dst.ip() && sp == dst.port() && vtag == tag;
                    (ours && (chunk == wire::SCTP_INIT_ACK || chunk == wire::SCTP_ABORT))
                        .then_some(Answer::Sctp(h, sp, dp, chunk))
                })?;
        }
        other => return Err(format!("expected tcp, udp or sctp after `--proto`, found `{other}`")),
    }
    drop(tx);
    let answer = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let reply = match answer {
        Ok(Answer::Tcp(h, sp, dp, f)) => {
            let kind = if f & wire::RST != 0 { "rst" } else { "syn-ack" };
            json!({"kind": kind, "src": sa(h.src, sp), "dst": sa(h.dst, dp)})
        }
        Ok(Answer::Sctp(h, sp, dp, chunk)) => {
            let kind = if chunk == wire::SCTP_ABORT { "abort" } else { "init-ack" };
            json!({"kind": kind, "src": sa(h.src, sp), "dst": sa(h.dst, dp)})
        }
        Ok(Answer::Udp(from, to)) => json!({"kind": "udp", "src": from.to_string(), "dst": to.to_string()}),
        Ok(Answer::Icmp(h, e)) => json!({"kind": format!("icmp {}/{}", e.kind, e.code),
                                         "src": h.src.to_string(), "dst": h.dst.to_string(),
                                         "quoted_dst": e.quoted_ports.map(|(_, dp)| sa(e.quoted.dst, dp))}),
        Err(_) => serde_json::Value::Null,
    };
    emit(json!({"ev": "result", "sent": {"src": sent, "dst": dst.to_string()}, "reply": reply,
                "elapsed_us": elapsed_us, "refused_by_own_output": refused_here.is_some(),
                "send_error": refused_here}));
    Ok(())
}

fn hello(args: &[String]) -> Result<(), String> {
    let to: Ipv4Addr = parse(value(args, "--to")?, "an address")?;
    let raw = raw_socket(wire::PROTO_IPIP)?;
    raw.send_to(&wire::hello(), &SockAddr::from(SocketAddrV4::new(to, 0)))
        .map_err(|e| format!("sending the hello to {to}: {e}"))?;
    emit(json!({"ev": "hello-sent", "to": to.to_string()}));
    Ok(())
}
