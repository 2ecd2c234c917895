//! The `bandwidth` capability, from the pod annotations `kubernetes.io/ingress-bandwidth` and
//! `kubernetes.io/egress-bandwidth` (Kubernetes quantities in bits per second).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::CniError;

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// kubelet's bounds: below 1k or above 1P is surely a mistake.
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 1_000_000_000_000_000;

/// Rates in bit/s and bursts in bits, as the `bandwidth` plugin reads them; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl Bandwidth {
    /// The pod's limits, if it asks for any. Bursts are left effectively unlimited, as
    /// containerd does (the annotations carry no burst).
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Option<Self>, CniError> {
        let ingress = rate(annotations, INGRESS_ANNOTATION)?;
        let egress = rate(annotations, EGRESS_ANNOTATION)?;
        if ingress.is_none() && egress.is_none() {
            return Ok(None);
        }
        let burst = u64::from(u32::MAX);
        let mut bandwidth = Self::default();
        if let Some(rate) = ingress {
            bandwidth.ingress_rate = rate;
            bandwidth.ingress_burst = burst;
        }
        if let Some(rate) = egress {
            bandwidth.egress_rate = rate;
            bandwidth.egress_burst = burst;
        }
        Ok(Some(bandwidth))
    }
}

fn rate(annotations: &HashMap<String, String>, annotation: &str) -> Result<Option<u64>, CniError> {
    let Some(value) = annotations.get(annotation) else {
        return Ok(None);
    };
    let invalid = |reason: String| CniError::InvalidBandwidth {
        annotation: annotation.into(),
        value: value.clone(),
        reason,
    };
    let rate = parse_quantity(value).map_err(invalid)?;
    if rate < MIN_RATE {
        return Err(invalid("resource is unreasonably small (< 1kbit)".into()));
    }
    if rate > MAX_RATE {
        return Err(invalid("resource is unreasonably large (> 1Pbit)".into()));
    }
    Ok(Some(rate))
}

/// A Kubernetes quantity ("10M", "1Gi", "1.5k", "2e6", "500m") as an integer, rounded up the way
/// `Quantity.Value()` rounds.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a quantity (like 10M or 1Gi)");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(bad());
    }
    let (binary_shift, decimal_exponent): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent if exponent.starts_with(['e', 'E']) => (0, exponent[1..].parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 {
        return Err(format!("{text:?} has too many digits"));
    }
    let mantissa: u128 = digits.parse().map_err(|_| bad())?;
    if negative && mantissa != 0 {
        return Err(format!("{text:?} is negative"));
    }
    let too_large = || format!("{text:?} is too large");
    let fraction_digits = i32::try_from(fraction.len()).map_err(|_| bad())?;
    let scale = decimal_exponent - fraction_digits;
    let mut numerator = mantissa.checked_mul(1u128 << binary_shift).ok_or_else(too_large)?;
    let mut denominator: u128 = 1;
    let power = 10u128.checked_pow(scale.unsigned_abs()).ok_or_else(too_large)?;
    if scale >= 0 {
        numerator = numerator.checked_mul(power).ok_or_else(too_large)?;
    } else {
        denominator = power;
    }
    u64::try_from(numerator.div_ceil(denominator)).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases = [
            ("10M", 10_000_000),
            ("1Gi", 1 << 30),
            ("1.5k", 1_500),
            ("100Ki", 102_400),
            ("2e6", 2_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1500m", 2),
            ("1n", 1),
            ("0.5", 1),
            ("+42", 42),
            ("1000", 1_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_quantity(text), Ok(want), "{text}");
        }
        for bad in ["", "M", "10 M", "1.2.3", "10mb", "-5k", "1e", "99999999999999999999999999999999"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
        assert!(parse_quantity("100Ei").is_err(), "overflows u64");
    }

    #[test]
    fn annotations_to_capability() {
        let annotations = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(Bandwidth::from_annotations(&annotations(&[("other", "1")])).unwrap(), None);
        let both = Bandwidth::from_annotations(&annotations(&[
            (INGRESS_ANNOTATION, "10M"),
            (EGRESS_ANNOTATION, "1Gi"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            both,
            Bandwidth {
                ingress_rate: 10_000_000,
                ingress_burst: u64::from(u32::MAX),
                egress_rate: 1 << 30,
                egress_burst: u64::from(u32::MAX),
            }
        );
        let ingress_only =
            Bandwidth::from_annotations(&annotations(&[(INGRESS_ANNOTATION, "1k")])).unwrap().unwrap();
        assert_eq!((ingress_only.egress_rate, ingress_only.egress_burst), (0, 0));
        let err = Bandwidth::from_annotations(&annotations(&[(EGRESS_ANNOTATION, "10")])).unwrap_err();
        assert!(err.to_string().contains("unreasonably small"), "{err}");
        let err = Bandwidth::from_annotations(&annotations(&[(INGRESS_ANNOTATION, "2P")])).unwrap_err();
        assert!(err.to_string().contains("unreasonably large"), "{err}");
        let err = Bandwidth::from_annotations(&annotations(&[(INGRESS_ANNOTATION, "fast")])).unwrap_err();
        assert!(err.to_string().contains(INGRESS_ANNOTATION), "{err}");
    }
}
