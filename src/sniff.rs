//! sniff: looks at a connection's first byte to tell TLS from plain HTTP and from the Flash
//! socket-policy request of the seed, without consuming it; and answers that policy request
//! (the one answer given before any TLS or HTTP).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

/// What a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (0x16).
    Tls,
    /// `<`, which cannot start an HTTP request: a Flash socket-policy request, or nothing we
    /// speak ([`check_policy_request`] tells).
    FlashPolicy,
    /// Anything else: plain HTTP (the HTTP layer judges it).
    Http,
}

/// Classifies from the first byte(s); `first` must not be empty.
pub fn classify(first: &[u8]) -> Protocol {
    match first.first() {
        Some(0x16) => Protocol::Tls,
        Some(b'<') => Protocol::FlashPolicy,
        _ => Protocol::Http,
    }
}

/// What Flash Player sends to ask for the socket policy, NUL included.
pub const POLICY_REQUEST: &[u8] = b"<policy-file-request/>\0";

/// The answer: any domain may connect to any port (as the original websockify), NUL-terminated.
pub const POLICY_RESPONSE: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\" /></cross-domain-policy>\0";

/// How the bytes read so far compare with [`POLICY_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyCheck {
    /// A proper prefix so far: read more.
    Incomplete,
    /// Exactly the request.
    Complete,
    /// Something else (or more than the request).
    Wrong,
}

/// Compares the first bytes of a connection with the policy request.
pub fn check_policy_request(got: &[u8]) -> PolicyCheck {
    if got.len() > POLICY_REQUEST.len() || !POLICY_REQUEST.starts_with(got) {
        PolicyCheck::Wrong
    } else if got.len() == POLICY_REQUEST.len() {
        PolicyCheck::Complete
    } else {
        PolicyCheck::Incomplete
    }
}

/// The seed's Flash socket policy: reads at most the request's 23 bytes within `timeout`; the
/// exact request gets the policy document, anything else is dropped. Either way the connection
/// then closes.
pub async fn answer_flash_policy<S>(mut stream: S, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read_request = async {
        let mut got = [0u8; POLICY_REQUEST.len()];
        let mut n = 0;
        loop {
            match check_policy_request(&got[..n]) {
                PolicyCheck::Complete => return true,
                PolicyCheck::Wrong => return false,
                PolicyCheck::Incomplete => {}
            }
            match stream.read(&mut got[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => n += k,
            }
        }
    };
    match tokio::time::timeout(timeout, read_request).await {
        Ok(true) => {}
        Ok(false) => return debug!("dropped: starts with '<' but is no Flash policy request"),
        Err(_) => return debug!("dropped: no complete Flash policy request within {timeout:?}"),
    }
    let write = async {
        stream.write_all(POLICY_RESPONSE).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => debug!("Flash policy request answered"),
        Ok(Err(err)) => debug!("Flash policy answer failed: {err}"),
        Err(_) => debug!("Flash policy answer not taken within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_record_byte_means_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Protocol::Tls);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Protocol::Http);
    }

    #[test]
    fn angle_bracket_means_flash_policy() {
        assert_eq!(classify(b"<policy-file-request/>\0"), Protocol::FlashPolicy);
        assert_eq!(classify(b"<"), Protocol::FlashPolicy);
    }

    #[test]
    fn policy_request_is_checked_byte_for_byte() {
        assert_eq!(check_policy_request(b""), PolicyCheck::Incomplete);
        assert_eq!(check_policy_request(b"<policy"), PolicyCheck::Incomplete);
        assert_eq!(
            check_policy_request(b"<policy-file-request/>"),
            PolicyCheck::Incomplete
        );
        assert_eq!(check_policy_request(POLICY_REQUEST), PolicyCheck::Complete);
        assert_eq!(check_policy_request(b"<polite"), PolicyCheck::Wrong);
        assert_eq!(check_policy_request(b"<html>"), PolicyCheck::Wrong);
        assert_eq!(
            check_policy_request(b"<policy-file-request/>\0x"),
            PolicyCheck::Wrong
        );
        assert_eq!(
            check_policy_request(b"<policy-file-request/>\n"),
            PolicyCheck::Wrong
        );
    }

    #[test]
    fn policy_response_is_the_permissive_document_with_a_nul() {
        assert!(POLICY_RESPONSE.starts_with(b"<cross-domain-policy>"));
        assert!(POLICY_RESPONSE.ends_with(b"</cross-domain-policy>\0"));
        assert_eq!(POLICY_REQUEST.len(), 23);
    }
}
