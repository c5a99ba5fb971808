//! Lowercase hexadecimal text for bytes and back: digests, signatures, and the byte paths of a
//! checkout's inventory, wherever text must carry bytes exactly.

/// `bytes` as lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The bytes `text` spells in hex (either case); `None` for an odd length or anything but hex
/// digits (`from_str_radix` alone would take a sign: `+1`).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)), Some(bytes));
        assert_eq!(encode(b"a.yaml"), "612e79616d6c");
        assert_eq!(decode("0A"), Some(vec![10]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["a", "0g", "+1", "é0"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
