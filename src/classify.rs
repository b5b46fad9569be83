//! classify: looks at a connection's first bytes to tell TLS from plain HTTP (and the Flash
//! policy request of the seed), without consuming them.

/// What a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (0x16).
    Tls,
    /// Anything else: plain HTTP (the HTTP layer judges it).
    Http,
}

/// Classifies from the first byte(s); `first` must not be empty.
pub fn classify(first: &[u8]) -> Protocol {
    match first.first() {
        Some(0x16) => Protocol::Tls,
        _ => Protocol::Http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_record_byte_means_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Protocol::Tls);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Protocol::Http);
        assert_eq!(classify(b"<policy-file-request/>\0"), Protocol::Http);
    }
}
