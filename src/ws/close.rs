//! close: close codes, and the rules for the close frame a client sends (RFC 6455 §5.5.1, §7.4).

use super::Violation;

/// Close codes we send (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Not sent on the wire: the peer closed without a code.
    pub const NO_STATUS: u16 = 1005;

    /// Whether a peer may send `code` in a close frame.
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

/// What a close frame from the client says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// None when the frame had no payload.
    pub code: Option<u16>,
    pub reason: String,
}

/// Checks a client's close payload (RFC 6455 §5.5.1, §7.4).
pub fn parse_close(payload: &[u8]) -> Result<CloseInfo, Violation> {
    match payload.len() {
        0 => Ok(CloseInfo {
            code: None,
            reason: String::new(),
        }),
        1 => Err(Violation::new(
            close_code::PROTOCOL_ERROR,
            "close frame with a one-byte payload",
        )),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_valid_on_wire(code) {
                return Err(Violation::new(
                    close_code::PROTOCOL_ERROR,
                    "invalid close code",
                ));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| {
                Violation::new(close_code::INVALID_PAYLOAD, "close reason is not UTF-8")
            })?;
            Ok(CloseInfo {
                code: Some(code),
                reason: reason.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payload_rules() {
        assert_eq!(parse_close(&[]).unwrap().code, None);
        assert!(parse_close(&[3]).is_err());
        assert_eq!(
            parse_close(&[0x03, 0xE8, b'o', b'k']).unwrap().code,
            Some(1000)
        );
        assert!(parse_close(&1005u16.to_be_bytes()).is_err());
        assert!(parse_close(&999u16.to_be_bytes()).is_err());
        assert_eq!(
            parse_close(&3000u16.to_be_bytes()).unwrap().code,
            Some(3000)
        );
        let bad_reason = [0x03, 0xE8, 0xFF];
        assert!(matches!(
            parse_close(&bad_reason),
            Err(Violation { code: 1007, .. })
        ));
    }
}
