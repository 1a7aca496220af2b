//! Kubernetes resource quantities (`64M`, `64Mi`, `500m`, `1e3`), parsed exactly as
//! `k8s.io/apimachinery/pkg/api/resource` does: the value is kept exact (digits, a power of
//! ten and a power of two) and rounded up only when an integer is asked for.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity as written, with its exact value. Serialized as written (a later API server
/// may want [`Quantity::canonical`], as Kubernetes returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    /// value = sign * digits * 10^exp10 * 2^exp2
    negative: bool,
    digits: u128,
    exp10: i32,
    exp2: u32,
}

/// Why a quantity string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Kubernetes' own text for every malformed quantity (`resource.ErrFormatWrong`).
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// Kubernetes' `ErrNumeric`: more digits than we keep exactly.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

// Kubernetes caps a quantity's integer value at int64; more digits than this cannot be exact.
const MAX_DIGITS: usize = 36;

impl Quantity {
    /// Parses a quantity string (`^[+-]?digits[.digits][suffix]$`, suffix one of `Ki Mi Gi Ti Pi
    /// Ei`, `n u m k M G T P E`, or `e`/`E` with a signed integer exponent).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let s = text;
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        let mut int_digits = String::new();
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            int_digits.push(bytes[i] as char);
            i += 1;
        }
        let mut frac_digits = String::new();
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                frac_digits.push(bytes[i] as char);
                i += 1;
            }
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Format);
        }
        let suffix = &s[i..];
        let (exp10_suffix, exp2) = match suffix {
            "" => (0, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            other => {
                let rest = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or(QuantityError::Format)?;
                let (sign, num) = match rest.as_bytes().first() {
                    Some(b'+') => (1, &rest[1..]),
                    Some(b'-') => (-1, &rest[1..]),
                    _ => (1, rest),
                };
                if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Format);
                }
                let n: i32 = num.parse().map_err(|_| QuantityError::Numeric)?;
                (sign * n, 0)
            }
        };
        let all = format!("{int_digits}{frac_digits}");
        let trimmed = all.trim_start_matches('0');
        if trimmed.len() > MAX_DIGITS {
            return Err(QuantityError::Numeric);
        }
        let digits: u128 = if trimmed.is_empty() {
            0
        } else {
            trimmed.parse().map_err(|_| QuantityError::Numeric)?
        };
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| QuantityError::Numeric)?;
        Ok(Quantity {
            text: text.to_string(),
            negative: negative && digits != 0,
            digits,
            exp10: exp10_suffix - frac_len,
            exp2,
        })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `Value()`: the value rounded up (away from zero) to an integer; `None` past int64.
    pub fn value(&self) -> Option<i64> {
        self.scaled_value(0)
    }

    /// `MilliValue()`: the value in thousandths, rounded up (away from zero).
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled_value(3)
    }

    pub fn is_zero(&self) -> bool {
        self.digits == 0
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Kubernetes' canonical form (what `Quantity.String()` prints and the API server
    /// returns): `1000M` → `1G`, `0.5Gi` → `512Mi`, `1.5` → `1500m`. Values below a nano
    /// round up to one, as Kubernetes rounds them when parsing.
    pub fn canonical(&self) -> String {
        if self.digits == 0 {
            return "0".to_string();
        }
        let sign = if self.negative { "-" } else { "" };
        let Some(mut m) = 1u128
            .checked_shl(self.exp2)
            .and_then(|p| self.digits.checked_mul(p))
        else {
            return self.text.clone();
        };
        let mut e = self.exp10;
        if e < -9 {
            // Round up (away from zero) to nano precision.
            let Some(d) = u32::try_from(-9 - e)
                .ok()
                .and_then(|x| 10u128.checked_pow(x))
            else {
                return format!("{sign}1n");
            };
            m = m / d + u128::from(!m.is_multiple_of(d));
            e = -9;
        }
        let binary = self.text.ends_with('i');
        let exponent = !binary && self.text.contains(['e', 'E']) && !self.text.ends_with('E');
        if binary {
            // BinarySI only for integers of at least 1024; otherwise Kubernetes prints decimal.
            let int = 10u128.checked_pow(e.unsigned_abs()).and_then(|p| {
                if e >= 0 {
                    m.checked_mul(p)
                } else {
                    m.is_multiple_of(p).then(|| m / p)
                }
            });
            if let Some(mut n) = int.filter(|n| *n >= 1024) {
                let mut k = 0;
                while k < 6 && n.is_multiple_of(1024) {
                    n /= 1024;
                    k += 1;
                }
                return format!("{sign}{n}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k]);
            }
        }
        while m.is_multiple_of(10) {
            m /= 10;
            e += 1;
        }
        let extra = e.rem_euclid(3);
        for _ in 0..extra {
            match m.checked_mul(10) {
                Some(x) => m = x,
                None => return self.text.clone(),
            }
        }
        e -= extra;
        while e > 18 {
            match m.checked_mul(1000) {
                Some(x) => m = x,
                None => return self.text.clone(),
            }
            e -= 3;
        }
        let suffix = if exponent {
            if e == 0 {
                String::new()
            } else {
                format!("e{e}")
            }
        } else {
            match e {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                18 => "E",
                _ => "",
            }
            .to_string()
        };
        format!("{sign}{m}{suffix}")
    }

    /// The value times 10^scale, rounded away from zero.
    fn scaled_value(&self, scale: i32) -> Option<i64> {
        let mut n: u128 = self.digits.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let e = self.exp10 + scale;
        if e >= 0 {
            n = n.checked_mul(10u128.checked_pow(u32::try_from(e).ok()?)?)?;
        } else {
            let d = match 10u128.checked_pow(u32::try_from(-e).ok()?) {
                Some(d) => d,
                // Dividing by more than u128 holds leaves a fraction: rounds up to one.
                None => {
                    return Some(if n == 0 {
                        0
                    } else if self.negative {
                        -1
                    } else {
                        1
                    })
                }
            };
            n = n / d + u128::from(!n.is_multiple_of(d));
        }
        let v = i64::try_from(n).ok()?;
        Some(if self.negative { -v } else { v })
    }
}

/// Prints the canonical form, as Go's `Quantity.String()` (KubeVirt's messages use it);
/// [`Quantity::as_str`] has the text as written.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (string or number), e.g. \"64Mi\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(|e| E::custom(format_args!("quantity {v:?}: {e}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                // A JSON/YAML float such as 1e3 or 0.5: its shortest exact decimal form.
                self.visit_str(&format!("{v}"))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // As Kubernetes publishes resource.Quantity in CRDs.
        schemars::json_schema!({
            "anyOf": [{ "type": "integer" }, { "type": "string" }],
            "x-kubernetes-int-or-string": true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<i64> {
        Quantity::parse(s).expect(s).value()
    }

    #[test]
    fn table_of_values() {
        let cases: &[(&str, i64)] = &[
            ("64M", 64_000_000),
            ("64Mi", 67_108_864),
            ("1G", 1_000_000_000),
            ("1Gi", 1_073_741_824),
            ("1Ki", 1024),
            ("1k", 1000),
            ("0", 0),
            ("1024", 1024),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1e+3", 1000),
            ("5e-1", 1),
            ("1.5Gi", 1_610_612_736),
            ("0.5", 1),
            ("500m", 1),
            ("1500m", 2),
            ("-1500m", -2),
            ("+12", 12),
            (".5k", 500),
            ("1.", 1),
            ("1Ei", 1_152_921_504_606_846_976),
            ("1n", 1),
            ("0.000m", 0),
        ];
        for (s, want) in cases {
            assert_eq!(v(s), Some(*want), "{s}");
        }
    }

    #[test]
    fn milli_values() {
        let m = |s: &str| Quantity::parse(s).expect(s).milli_value();
        assert_eq!(m("500m"), Some(500));
        assert_eq!(m("1"), Some(1000));
        assert_eq!(m("0.1"), Some(100));
        assert_eq!(m("1u"), Some(1));
        assert_eq!(m("2.5"), Some(2500));
    }

    #[test]
    fn canonical_forms() {
        let cases: &[(&str, &str)] = &[
            ("64M", "64M"),
            ("1000M", "1G"),
            ("64Mi", "64Mi"),
            ("0.5Gi", "512Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024", "1024"),
            ("1024Ki", "1Mi"),
            ("100Ki", "100Ki"),
            ("0.5Ki", "512"),
            ("1.5", "1500m"),
            ("500m", "500m"),
            ("0.1", "100m"),
            ("1e3", "1e3"),
            ("1000e0", "1e3"),
            ("1E3", "1e3"),
            ("12E", "12E"),
            ("0", "0"),
            ("0Mi", "0"),
            ("-1500m", "-1500m"),
            ("1.0000000001", "1000000001n"),
            ("512k", "512k"),
        ];
        for (s, want) in cases {
            assert_eq!(Quantity::parse(s).expect(s).canonical(), *want, "{s}");
        }
    }

    #[test]
    fn malformed_are_refused() {
        for s in [
            "", "M", "1MB", "1 Mi", "1mi", "1KI", "-", ".", "1e", "1e1.5", "1..2", "0x10", "1Mi ",
            "e3", "1i", "1ee3", "++1",
        ] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Format), "{s:?}");
        }
    }

    #[test]
    fn past_int64_has_no_integer_value() {
        assert_eq!(v("10E"), None);
        assert_eq!(v("16Ei"), None);
        assert_eq!(v("9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn numbers_deserialize_too() {
        let q: Quantity = serde_json::from_str("1024").expect("int");
        assert_eq!(q.value(), Some(1024));
        let q: Quantity = serde_json::from_str("1e3").expect("float");
        assert_eq!(q.value(), Some(1000));
        let q: Quantity = serde_json::from_str("\"64Mi\"").expect("str");
        assert_eq!(q.value(), Some(67_108_864));
        assert!(serde_json::from_str::<Quantity>("\"64MB\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn binary_suffixes_are_powers_of_two(n in 0i64..1_000_000, s in 0usize..4) {
            let (suffix, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)][s];
            let q = Quantity::parse(&format!("{n}{suffix}")).expect("valid");
            proptest::prop_assert_eq!(q.value(), Some(n << shift));
        }

        #[test]
        fn decimal_suffixes_are_powers_of_ten(n in 0i64..1_000_000, s in 0usize..4) {
            let (suffix, mult) = [("k", 1_000i64), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000)][s];
            let q = Quantity::parse(&format!("{n}{suffix}")).expect("valid");
            proptest::prop_assert_eq!(q.value(), Some(n * mult));
            let e = Quantity::parse(&format!("{n}e{}", mult.ilog10())).expect("valid");
            proptest::prop_assert_eq!(e.value(), Some(n * mult));
        }

        #[test]
        fn milli_rounds_up(n in 0i64..10_000_000) {
            let q = Quantity::parse(&format!("{n}m")).expect("valid");
            proptest::prop_assert_eq!(q.milli_value(), Some(n));
            proptest::prop_assert_eq!(q.value(), Some((n + 999) / 1000));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = Quantity::parse(&s).map(|q| (q.value(), q.milli_value()));
        }
    }
}
