//! The Unified Social Credit Code (统一社会信用代码, GB 32100-2015): 18 characters
//! from a 31-character alphabet, an administrative area code in positions 3-8 and a
//! check character computed over the first 17.

use crate::DomainError;

/// The code's alphabet; a character's value is its position here (no I, O, S, V, Z).
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn value(c: char) -> Option<u32> {
    ALPHABET.find(c).map(|i| i as u32)
}

/// The check character for the first 17 characters (which must be in the alphabet).
pub fn check_character(first17: &str) -> Option<char> {
    let mut sum = 0u32;
    for (c, w) in first17.chars().zip(WEIGHTS) {
        sum += value(c)? * w;
    }
    let v = (31 - sum % 31) % 31;
    ALPHABET.chars().nth(v as usize)
}

/// Checks `code`, naming the rule that fails: length, character, area code or check
/// character.
pub fn validate(field: &(impl std::fmt::Display + ?Sized), code: &str) -> Result<(), DomainError> {
    let invalid = |reason: String| Err(DomainError::invalid(field.to_string(), reason));
    let length = code.chars().count();
    if length != 18 {
        return invalid(format!(
            "a unified social credit code has 18 characters, not {length} (length)"
        ));
    }
    if let Some((i, c)) = code.chars().enumerate().find(|(_, c)| value(*c).is_none()) {
        return invalid(format!(
            "character {} ({c:?}) is not one of {ALPHABET} (character)",
            i + 1
        ));
    }
    // Every character is in the (ASCII) alphabet now, so bytes are characters.
    let bytes = code.as_bytes();
    if !bytes[2..8].iter().all(u8::is_ascii_digit) {
        return invalid(
            "positions 3-8 must be digits: the administrative area code (area code)".into(),
        );
    }
    let expected = check_character(&code[..17]).unwrap_or('?');
    let last = char::from(bytes[17]);
    if last != expected {
        return invalid(format!(
            "the check character is {last:?} but the first 17 characters give {expected:?} (check character)"
        ));
    }
    Ok(())
}

/// The administrative area code (positions 3-8) of a valid code.
pub fn area_code(code: &str) -> &str {
    code.get(2..8).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_example_is_valid() {
        validate("uscc", "91310110666007217T").unwrap();
        assert_eq!(area_code("91310110666007217T"), "310110");
    }

    #[test]
    fn each_rule_is_named() {
        for (code, rule) in [
            ("91310110666007217", "(length)"),
            ("91310110666007217TX", "(length)"),
            ("", "(length)"),
            ("91310110666007217I", "(character)"),
            ("9131011066600721OT", "(character)"),
            ("91310110666007217t", "(character)"),
            ("913101106660072１7T", "(character)"),
            ("91A10110666007217T", "(area code)"),
            ("913101106660072170", "(check character)"),
        ] {
            let e = validate("uscc", code).unwrap_err().to_string();
            assert!(e.contains(rule), "{code}: {e}");
        }
    }
}
