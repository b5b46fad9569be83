//! proxy_header: the PROXY protocol header (HAProxy's; v1 text and v2 binary) that a load
//! balancer puts before a connection's own bytes to name the real client: parsing one, and
//! writing one for a target. A pure leaf: bytes in, values out, no sockets.
//!
//! Parsing is incremental without ever asking for a byte past the header: [`parse`] answers
//! [`Step::Need`] with a count that cannot reach into the client's own stream, so a reader can
//! `read_exact` exactly that and hand the socket on untouched (no replay buffer needed).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The longest v1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;

/// v2's 12-byte signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// v2's fixed part: signature, version and command, family and transport, length.
pub const V2_FIXED: usize = 16;

/// The largest v2 address block (addresses and TLVs) accepted. The format allows 65,535; a
/// UNIX address pair is 216 bytes and what HAProxy, AWS and GCP add as TLVs (unique id, ALPN,
/// authority, SSL facts, VPC endpoint) stays well under 1 KiB, so 2 KiB refuses nothing real
/// and bounds what a header can make us read.
pub const V2_MAX_BLOCK: usize = 2048;

/// What can be read before knowing the version: the shortest header ("PROXY UNKNOWN\r\n").
pub const MIN_HEADER: usize = 15;

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// The real client and the address it connected to. `None` when the header names none:
    /// v1 `UNKNOWN`, v2 `LOCAL` (the balancer's own health check), v2 `UNSPEC` or `UNIX`
    /// families; the connection's own peer then stands.
    pub addrs: Option<Addrs>,
}

/// Source and destination of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// One step of parsing what was read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// At least this many more bytes are needed, and reading exactly this many cannot read
    /// past the header.
    Need(usize),
    /// A whole header, `len` bytes long (all of what was given: [`parse`] never asked for
    /// more).
    Done(Header, usize),
}

/// Why bytes are not a header we accept. The reason is fixed text, never the peer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Parses the header at the start of `buf`. Give it at least [`MIN_HEADER`] bytes first, then
/// what each [`Step::Need`] asks for.
pub fn parse(buf: &[u8]) -> Result<Step, Malformed> {
    if buf.len() < MIN_HEADER {
        return Ok(Step::Need(MIN_HEADER - buf.len()));
    }
    if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else if buf.starts_with(&V2_SIGNATURE[..MIN_HEADER.min(12)]) {
        parse_v2(buf)
    } else {
        Err(Malformed("no PROXY header"))
    }
}

/// Whether `first` (a connection's first bytes, as many as arrived) starts like a PROXY
/// header: what a peer that is not trusted must not get away with.
pub fn looks_like_header(first: &[u8]) -> bool {
    let v1 = b"PROXY ";
    let v2 = &V2_SIGNATURE[..];
    let prefix = |sig: &[u8], need: usize| {
        let n = first.len().min(sig.len());
        n >= need && first[..n] == sig[..n]
    };
    // "\r\n\r\n\0" already starts no HTTP request; "PROXY " needs all six bytes to be told
    // from a method such as POST.
    prefix(v1, v1.len()) || prefix(v2, 5)
}

fn parse_v1(buf: &[u8]) -> Result<Step, Malformed> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(Malformed("PROXY v1 header longer than 107 bytes"));
        }
        if buf.contains(&b'\n') {
            return Err(Malformed("PROXY v1 header with a bare LF"));
        }
        // Two more bytes can be the header's end only if the last one is not its CR.
        let need = if buf.last() == Some(&b'\r') { 1 } else { 2 };
        return Ok(Step::Need(need.min(V1_MAX - buf.len())));
    };
    if end + 2 != buf.len() {
        // Only reachable if a caller read past what `Need` asked for.
        return Err(Malformed("bytes after the v1 header's CRLF"));
    }
    let line =
        std::str::from_utf8(&buf[6..end]).map_err(|_| Malformed("PROXY v1 header not ASCII"))?;
    if !line.is_ascii() || line.contains(['\r', '\n']) {
        return Err(Malformed("PROXY v1 header not one line of ASCII"));
    }
    let mut words = line.split(' ');
    let proto = words.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The specification: whatever follows UNKNOWN is ignored.
        return Ok(Step::Done(
            Header {
                version: Version::V1,
                addrs: None,
            },
            buf.len(),
        ));
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(Malformed("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Malformed(
            "PROXY v1 header needs 4 fields after the protocol",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, Malformed> {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| Malformed("PROXY v1 address malformed"))?;
        if ip.is_ipv6() != v6 {
            return Err(Malformed("PROXY v1 address of the wrong family"));
        }
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, Malformed> {
        let plain = !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !plain {
            return Err(Malformed("PROXY v1 port malformed"));
        }
        s.parse()
            .map_err(|_| Malformed("PROXY v1 port out of range"))
    };
    let addrs = Addrs {
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    };
    Ok(Step::Done(
        Header {
            version: Version::V1,
            addrs: Some(addrs),
        },
        buf.len(),
    ))
}

fn parse_v2(buf: &[u8]) -> Result<Step, Malformed> {
    if buf.len() < V2_FIXED {
        return Ok(Step::Need(V2_FIXED - buf.len()));
    }
    if buf[..12] != V2_SIGNATURE {
        return Err(Malformed("PROXY v2 signature malformed"));
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0F);
    if version != 2 {
        return Err(Malformed("PROXY v2 version is not 2"));
    }
    let block_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block_len > V2_MAX_BLOCK {
        return Err(Malformed("PROXY v2 address block longer than 2048 bytes"));
    }
    let total = V2_FIXED + block_len;
    if buf.len() < total {
        return Ok(Step::Need(total - buf.len()));
    }
    if buf.len() > total {
        return Err(Malformed("bytes after the v2 header"));
    }
    let block = &buf[V2_FIXED..];
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0F);
    let local = match command {
        0 => true,
        1 => false,
        _ => return Err(Malformed("PROXY v2 command is not LOCAL or PROXY")),
    };
    if family > 3 || transport > 2 {
        return Err(Malformed("PROXY v2 family or transport unknown"));
    }
    let done = |addrs| {
        Ok(Step::Done(
            Header {
                version: Version::V2,
                addrs,
            },
            total,
        ))
    };
    // LOCAL (a health check) and UNSPEC carry nothing we use: the block is skipped unread, as
    // the specification says.
    if local || family == 0 {
        return done(None);
    }
    if transport != 1 {
        return Err(Malformed("PROXY v2 transport is not a stream"));
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        _ => 216,
    };
    if block.len() < addr_len {
        return Err(Malformed("PROXY v2 address block too short for its family"));
    }
    check_tlvs(&block[addr_len..])?;
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let addrs = match family {
        1 => {
            let ip =
                |at: usize| IpAddr::from([block[at], block[at + 1], block[at + 2], block[at + 3]]);
            Some(Addrs {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        2 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::from(octets)
            };
            Some(Addrs {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // UNIX: no IP address to name the client by; the connection's own peer stands.
        _ => None,
    };
    done(addrs)
}

/// TLVs are not used, but their framing must be whole: a header whose TLVs overrun is not one
/// a correct balancer sent.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Malformed> {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(Malformed("PROXY v2 TLV truncated"));
        }
        let len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        let Some(rest) = tlvs.get(3 + len..) else {
            return Err(Malformed("PROXY v2 TLV longer than the header"));
        };
        tlvs = rest;
    }
    Ok(())
}

/// The v1 header naming `addrs` (IPv4 and IPv6 mixed: both as IPv6), or `PROXY UNKNOWN`.
pub fn encode_v1(addrs: Option<Addrs>) -> Vec<u8> {
    match addrs.map(same_family) {
        None => b"PROXY UNKNOWN\r\n".to_vec(),
        Some((src, dst)) => {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
    }
}

/// The v2 header (command PROXY) naming `addrs`, or with the UNSPEC family when unknown.
pub fn encode_v2(addrs: Option<Addrs>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match addrs.map(same_family) {
        None => out.extend_from_slice(&[0x00, 0, 0]),
        Some((src, dst)) => {
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Both addresses in one family: IPv4 when both are (IPv4-mapped IPv6 counts as IPv4), IPv6
/// otherwise.
fn same_family(addrs: Addrs) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (canon(addrs.source), canon(addrs.destination));
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        let wide = |a: SocketAddr| SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port());
        (wide(src), wide(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` the way a reader does (only what `Need` asks for) and returns the result
    /// and how many bytes were taken.
    fn feed(bytes: &[u8]) -> Result<(Header, usize), Malformed> {
        let mut have = MIN_HEADER.min(bytes.len());
        loop {
            match parse(&bytes[..have])? {
                Step::Done(h, len) => return Ok((h, len)),
                Step::Need(n) => {
                    assert!(n > 0);
                    if have + n > bytes.len() {
                        return Err(Malformed("truncated (test)"));
                    }
                    have += n;
                }
            }
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_client_and_stop_at_the_crlf() {
        let mut input =
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n".to_vec();
        let (h, len) = feed(&input).unwrap();
        assert_eq!(len, 44);
        assert_eq!(h.version, Version::V1);
        let a = h.addrs.unwrap();
        assert_eq!(a.source, sa("203.0.113.7:56324"));
        assert_eq!(a.destination, sa("192.0.2.1:443"));
        input.truncate(len);
        assert_eq!(encode_v1(h.addrs), input);

        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
        let (h, _) = feed(v6).unwrap();
        assert_eq!(h.addrs.unwrap().source, sa("[2001:db8::7]:65535"));
        assert_eq!(encode_v1(h.addrs), v6);
    }

    #[test]
    fn v1_unknown_leaves_the_peer_and_ignores_the_rest() {
        let (h, len) = feed(b"PROXY UNKNOWN\r\nxx").unwrap();
        assert_eq!((h.addrs, len), (None, 15));
        let (h, _) = feed(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap();
        assert_eq!(h.addrs, None);
    }

    #[test]
    fn v1_malformed_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::2 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(feed(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn v1_is_bounded_at_107_bytes() {
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(91));
        assert_eq!(long.len(), 107);
        assert!(feed(long.as_bytes()).is_ok());
        let too_long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(92));
        assert_eq!(
            feed(too_long.as_bytes()),
            Err(Malformed("PROXY v1 header longer than 107 bytes"))
        );
    }

    #[test]
    fn v1_never_asks_for_a_byte_past_the_crlf() {
        // Whatever the split, the bytes asked for end exactly at the CRLF.
        let header = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n";
        let mut have = MIN_HEADER;
        while let Ok(Step::Need(n)) = parse(&header[..have]) {
            have += n;
            assert!(have <= header.len());
        }
        assert_eq!(have, header.len());
    }

    fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(cmd);
        out.push(fam);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v2_proxy_inet_and_inet6_with_tlvs() {
        let mut block = vec![203, 0, 113, 7, 192, 0, 2, 1, 0xDC, 0x04, 0x01, 0xBB];
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]); // NOOP TLV
        block.extend_from_slice(&[0x05, 0x00, 0x03, 1, 2, 3]); // UNIQUE_ID TLV
        let input = v2(0x21, 0x11, &block);
        let (h, len) = feed(&input).unwrap();
        assert_eq!(len, input.len());
        let a = h.addrs.unwrap();
        assert_eq!(a.source, sa("203.0.113.7:56324"));
        assert_eq!(a.destination, sa("192.0.2.1:443"));
        assert_eq!(encode_v2(h.addrs), v2(0x21, 0x11, &block[..12]));

        let mut block6 = Vec::new();
        block6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block6.extend_from_slice(&[0, 80, 0, 81]);
        let (h, _) = feed(&v2(0x21, 0x21, &block6)).unwrap();
        assert_eq!(h.addrs.unwrap().source, sa("[2001:db8::7]:80"));
    }

    #[test]
    fn v2_local_unspec_and_unix_leave_the_peer() {
        assert_eq!(feed(&v2(0x20, 0x00, &[])).unwrap().0.addrs, None);
        // LOCAL with addresses: ignored, as the specification says.
        assert_eq!(feed(&v2(0x20, 0x11, &[1; 12])).unwrap().0.addrs, None);
        assert_eq!(feed(&v2(0x21, 0x00, &[9; 7])).unwrap().0.addrs, None);
        assert_eq!(feed(&v2(0x21, 0x31, &[0; 216])).unwrap().0.addrs, None);
    }

    #[test]
    fn v2_malformed_headers_are_refused() {
        let ok_block = [1u8; 12];
        let cases: Vec<Vec<u8>> = vec![
            v2(0x11, 0x11, &ok_block),                                // version 1
            v2(0x22, 0x11, &ok_block),                                // command 2
            v2(0x21, 0x12, &ok_block),                                // DGRAM
            v2(0x21, 0x41, &ok_block),                                // family 4
            v2(0x21, 0x11, &ok_block[..11]),                          // short block
            v2(0x21, 0x21, &[0; 35]),                                 // short for IPv6
            v2(0x21, 0x11, &[&ok_block[..], &[1, 0]].concat()),       // TLV truncated
            v2(0x21, 0x11, &[&ok_block[..], &[1, 0, 9, 1]].concat()), // TLV overruns
            v2(0x21, 0x11, &vec![0; V2_MAX_BLOCK + 1]),               // too long
        ];
        for bad in cases {
            assert!(feed(&bad).is_err(), "{bad:?}");
        }
        let mut sig = v2(0x21, 0x11, &ok_block);
        sig[11] = b'X';
        assert!(feed(&sig).is_err());
    }

    #[test]
    fn v2_asks_for_exactly_its_length() {
        let input = v2(0x21, 0x11, &[7; 12]);
        assert_eq!(parse(&input[..15]), Ok(Step::Need(1)));
        assert_eq!(parse(&input[..16]), Ok(Step::Need(12)));
        let big = v2(0x21, 0x11, &[0; V2_MAX_BLOCK]);
        assert!(matches!(parse(&big[..16]), Ok(Step::Need(V2_MAX_BLOCK))));
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let addrs = Addrs {
            source: sa("192.0.2.7:1000"),
            destination: sa("[2001:db8::1]:443"),
        };
        assert_eq!(
            encode_v1(Some(addrs)),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1000 443\r\n"
        );
        assert_eq!(encode_v2(Some(addrs))[13], 0x21);
        assert_eq!(encode_v1(None), b"PROXY UNKNOWN\r\n");
        assert_eq!(encode_v2(None), v2(0x21, 0x00, &[]));
    }

    #[test]
    fn only_full_signatures_look_like_headers() {
        assert!(looks_like_header(b"PROXY TCP4 "));
        assert!(looks_like_header(b"\r\n\r\n\0"));
        assert!(looks_like_header(&V2_SIGNATURE));
        assert!(!looks_like_header(b"PROX"));
        assert!(!looks_like_header(b"POST / HTTP/1.1"));
        assert!(!looks_like_header(b"GET /"));
        assert!(!looks_like_header(b"\x16\x03\x01"));
    }

    #[test]
    fn versions_and_reasons_display_as_logged() {
        assert_eq!(Version::V1.to_string(), "v1");
        assert_eq!(Version::V2.to_string(), "v2");
        assert_eq!(
            Malformed("PROXY v2 TLV truncated").to_string(),
            "PROXY v2 TLV truncated"
        );
    }

    #[test]
    fn a_short_start_asks_for_exactly_the_shortest_header() {
        assert_eq!(parse(b""), Ok(Step::Need(MIN_HEADER)));
        assert_eq!(parse(b"PROXY"), Ok(Step::Need(10)));
        assert_eq!(parse(b"PROXY UNKNOWN\r"), Ok(Step::Need(1)));
    }

    #[test]
    fn v1_asks_for_no_byte_past_its_107_byte_bound() {
        // 105 bytes in, no CR yet: the CRLF may still come, in exactly the 2 bytes left.
        let head = format!("PROXY UNKNOWN {}", "x".repeat(91));
        assert_eq!(head.len(), 105);
        assert_eq!(parse(head.as_bytes()), Ok(Step::Need(2)));
        // 106 in: one byte left before the bound, whatever it is.
        let head = format!("{head}x");
        assert_eq!(parse(head.as_bytes()), Ok(Step::Need(1)));
    }

    #[test]
    fn v1_lines_with_a_bare_lf_or_non_ascii_text_before_the_crlf_are_refused() {
        let one_line = Err(Malformed("PROXY v1 header not one line of ASCII"));
        // Given whole (a reader that read past what `Need` asked for).
        assert_eq!(parse(b"PROXY UNKNOWN\nGET /\r\n"), one_line);
        assert_eq!(parse(b"PROXY UNKNOWN caf\xc3\xa9\r\n"), one_line);
    }

    #[test]
    fn v2_refuses_bytes_past_its_length() {
        let mut input = v2(0x21, 0x11, &[7; 12]);
        input.push(b'G');
        assert_eq!(parse(&input), Err(Malformed("bytes after the v2 header")));
    }

    #[test]
    fn v2_families_and_transports_are_judged_each_with_its_reason() {
        let unknown = Err(Malformed("PROXY v2 family or transport unknown"));
        // Family 4 with a block long enough for any family: refused for the family itself.
        assert_eq!(parse(&v2(0x21, 0x41, &[0; 216])), unknown);
        // Transport 3 is unknown, even in a LOCAL header whose block is skipped.
        assert_eq!(parse(&v2(0x20, 0x13, &[0; 12])), unknown);
        assert_eq!(parse(&v2(0x21, 0x13, &[0; 12])), unknown);
        // Transport 2 (DGRAM) is known, but not a stream.
        assert_eq!(
            parse(&v2(0x21, 0x12, &[0; 12])),
            Err(Malformed("PROXY v2 transport is not a stream"))
        );
    }

    #[test]
    fn v2_a_last_tlv_with_no_value_is_whole() {
        let mut block = vec![203, 0, 113, 7, 192, 0, 2, 1, 0xDC, 0x04, 0x01, 0xBB];
        block.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP TLV, empty
        let (h, len) = feed(&v2(0x21, 0x11, &block)).unwrap();
        assert_eq!(len, 16 + 15);
        assert_eq!(h.addrs.unwrap().source, sa("203.0.113.7:56324"));
    }
}
