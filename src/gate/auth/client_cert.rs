//! `ClientCertCNAuth`: the client must have presented a certificate that `--verify-client`
//! verified, whose subject CN is one of `--auth-source`'s (space-separated); anything else is a
//! 403, as the reference.
//!
//! The CN is read from the connection's [`TlsInfo`](crate::conninfo::TlsInfo) only, which the
//! TLS handshake filled. The reference hands it to the plugin as a request header,
//! `SSL_CLIENT_S_DN_CN`, after deleting the client's own headers that start with `SSL_`; that
//! deletion matches the header name case-sensitively, so a client sending
//! `ssl_client_s_dn_cn: admin` without a certificate passes there. Here no header is read at
//! all: whatever a client sends in its request cannot stand in for a certificate.

use crate::conninfo::ConnInfo;
use crate::error::{Error, Kind, Side, StartError};

/// `ClientCertCNAuth` and its allowed common names.
#[derive(Debug)]
pub struct ClientCertCnAuth {
    allowed: Vec<String>,
}

impl ClientCertCnAuth {
    /// From `--auth-source "alice bob"`. No CN at all is a start-up error (the reference
    /// starts, then refuses everyone).
    pub fn new(source: Option<&str>) -> Result<Self, StartError> {
        Ok(ClientCertCnAuth {
            allowed: super::words(
                source,
                "ClientCertCNAuth",
                "allowed client-certificate common names",
            )?,
        })
    }

    pub fn authenticate(&self, info: &ConnInfo) -> Result<(), Error> {
        let cn = info.tls.as_ref().and_then(|tls| tls.client_cn.as_deref());
        match cn {
            Some(cn) if self.allowed.iter().any(|a| a == cn) => Ok(()),
            Some(_) => Err(Error::new(
                Side::Client,
                Kind::Forbidden,
                "Client certificate not allowed",
            )),
            None => Err(Error::new(
                Side::Client,
                Kind::Forbidden,
                "No verified client certificate",
            )),
        }
    }

    pub fn describe(&self) -> String {
        self.allowed.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::{Addr, TlsInfo};

    fn conn(tls: Option<TlsInfo>) -> ConnInfo {
        ConnInfo {
            id: 1,
            peer: Addr::Tcp("127.0.0.1:40000".parse().unwrap()),
            via: None,
            local: Addr::Tcp("127.0.0.1:6080".parse().unwrap()),
            tls,
        }
    }

    fn with_cn(cn: Option<&str>) -> ConnInfo {
        conn(Some(TlsInfo {
            sni: Some("localhost".into()),
            client_cn: cn.map(Into::into),
        }))
    }

    #[test]
    fn only_a_verified_certificate_with_a_listed_cn_passes() {
        let plugin = ClientCertCnAuth::new(Some("alice bob")).unwrap();
        assert!(plugin.authenticate(&with_cn(Some("alice"))).is_ok());
        assert!(plugin.authenticate(&with_cn(Some("bob"))).is_ok());
        for (info, why) in [
            (with_cn(Some("mallory")), "Client certificate not allowed"),
            (with_cn(Some("Alice")), "Client certificate not allowed"),
            (with_cn(Some("alice bob")), "Client certificate not allowed"),
            (with_cn(Some("")), "Client certificate not allowed"),
            (with_cn(None), "No verified client certificate"),
            (conn(None), "No verified client certificate"),
        ] {
            let err = plugin.authenticate(&info).unwrap_err();
            assert_eq!((err.status(), err.context), (403, why), "{info:?}");
        }
    }
}
