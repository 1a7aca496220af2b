//! MAC addresses as text (`aa:bb:cc:dd:ee:ff`, the form CNI results and `ip` use).

pub fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Six colon-separated pairs of hex digits, either case; anything else is `None`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for slot in out.iter_mut() {
        let p = parts.next()?;
        // from_str_radix alone would take a sign ("+a").
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *slot = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mac = [0x02, 0x00, 0xab, 0xcd, 0xef, 0x01];
        assert_eq!(format_mac(&mac), "02:00:ab:cd:ef:01");
        assert_eq!(parse_mac("02:00:AB:cd:ef:01"), Some(mac));
    }

    #[test]
    fn rejects_what_is_not_six_pairs() {
        for bad in [
            "",
            "02:00:ab:cd:ef",
            "02:00:ab:cd:ef:01:02",
            "2:00:ab:cd:ef:01",
            "02:00:ab:cd:ef:0g",
            "02-00-ab-cd-ef-01",
            "+2:00:ab:cd:ef:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
