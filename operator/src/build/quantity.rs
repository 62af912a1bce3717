//! Quantities written the way the API server writes them back. The server stores every quantity in its canonical
//! form (`0.5` becomes `500m`, `1024Mi` becomes `1Gi`); a built object that says otherwise never matches the live
//! one, so every reconcile would write again. Pure.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Binary suffixes, largest first, with their power of 1024.
const BINARY: [(&str, u32); 6] = [
    ("Ei", 6),
    ("Pi", 5),
    ("Ti", 4),
    ("Gi", 3),
    ("Mi", 2),
    ("Ki", 1),
];
/// Decimal suffixes, largest first, with their power of ten relative to nano units.
const DECIMAL: [(&str, u32); 10] = [
    ("E", 27),
    ("P", 24),
    ("T", 21),
    ("G", 18),
    ("M", 15),
    ("k", 12),
    ("", 9),
    ("m", 6),
    ("u", 3),
    ("n", 0),
];

/// `text` (a quantity the CRD's pattern accepted: digits, an optional fraction, an optional suffix) in the API
/// server's canonical form; unchanged when it is not such a quantity (validation reports those).
pub fn canonical(text: &str) -> Quantity {
    Quantity(canonical_text(text).unwrap_or_else(|| text.to_owned()))
}

fn canonical_text(text: &str) -> Option<String> {
    let split = text
        .find(|character: char| !(character.is_ascii_digit() || character == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let fraction_scale = 10_i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let binary = BINARY.iter().find(|(name, _)| *name == suffix);
    let decimal = DECIMAL.iter().find(|(name, _)| *name == suffix);
    // The value in nano units, rounded up as the server rounds.
    let nano_multiplier: i128 = match (binary, decimal) {
        (Some((_, power)), _) => 1024_i128.checked_pow(*power)?.checked_mul(1_000_000_000)?,
        (None, Some((_, power))) => 10_i128.checked_pow(*power)?,
        (None, None) => return None,
    };
    let scaled = digits.checked_mul(nano_multiplier)?;
    let nano = scaled / fraction_scale + i128::from(scaled % fraction_scale != 0);
    if nano == 0 {
        return Some("0".to_owned());
    }
    if binary.is_some() && nano % 1_000_000_000 == 0 {
        let bytes = nano / 1_000_000_000;
        for (name, power) in BINARY {
            let unit = 1024_i128.pow(power);
            if bytes % unit == 0 {
                return Some(format!("{}{name}", bytes / unit));
            }
        }
    }
    DECIMAL.iter().find_map(|(name, power)| {
        let unit = 10_i128.pow(*power);
        (nano % unit == 0).then(|| format!("{}{name}", nano / unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_written_as_the_server_writes_them() {
        for (written, canonical_form) in [
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("64Mi", "64Mi"),
            ("2000", "2k"),
            ("1536", "1536"),
            ("1.5Ki", "1536"),
            ("5Gi", "5Gi"),
            ("0", "0"),
            ("0.0001", "100u"),
            ("0.3333333333", "333333334n"),
            ("1.0000000000", "1"),
            ("250M", "250M"),
        ] {
            assert_eq!(canonical(written).0, canonical_form, "{written}");
        }
    }

    #[test]
    fn what_is_not_a_quantity_is_left_for_validation_to_report() {
        assert_eq!(canonical("lots").0, "lots");
        assert_eq!(canonical("1.2.3Gi").0, "1.2.3Gi");
    }
}
