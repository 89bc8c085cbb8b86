//! Field checks. Each returns `DomainError::InvalidArgument` naming the field path, so
//! a department's integration engineer sees exactly which field to fix.

use std::fmt::{self, Display};

use crate::DomainError;

/// `<prefix>.<name>`: a field path that is formatted only if a check fails, since
/// every replica runs these checks on every applied command.
pub struct Path<'a>(pub &'a str, pub &'a str);

impl Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl From<Path<'_>> for String {
    fn from(p: Path<'_>) -> String {
        p.to_string()
    }
}

/// `<field>[<i>]`, formatted only if a check fails.
pub struct Indexed<'a, F: ?Sized>(pub &'a F, pub usize);

impl<F: Display + ?Sized> Display for Indexed<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 4000;
pub const MAX_SHORT_CHARS: usize = 100;
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Required text: non-empty after trimming, at most `max` characters, no control
/// characters other than newline and tab.
pub fn required_text(
    field: &(impl Display + ?Sized),
    value: &str,
    max: usize,
) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field.to_string(), "must not be empty"));
    }
    optional_text(field, value, max)
}

/// Optional text: may be empty; otherwise as [`required_text`].
pub fn optional_text(
    field: &(impl Display + ?Sized),
    value: &str,
    max: usize,
) -> Result<(), DomainError> {
    let n = value.chars().count();
    if n > max {
        return Err(DomainError::invalid(
            field.to_string(),
            format!("{n} characters, at most {max} allowed"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(DomainError::invalid(
            field.to_string(),
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A department code: 2-16 characters of A-Z, 0-9 and `_`, starting with a letter.
pub fn department_code(field: &(impl Display + ?Sized), code: &str) -> Result<(), DomainError> {
    let ok = (2..=16).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else if code.is_empty() {
        Err(DomainError::invalid(field.to_string(), "must not be empty"))
    } else {
        Err(DomainError::invalid(
            field.to_string(),
            format!(
                "{code:?} is not a department code (2-16 of A-Z, 0-9, _, starting with a letter)"
            ),
        ))
    }
}

/// A lower-case identifier such as a supervision field: 1-64 of a-z, 0-9, `_`.
pub fn slug(field: &(impl Display + ?Sized), value: &str) -> Result<(), DomainError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else if value.is_empty() {
        Err(DomainError::invalid(field.to_string(), "must not be empty"))
    } else {
        Err(DomainError::invalid(
            field.to_string(),
            format!("{value:?} must be 1-64 of a-z, 0-9, _"),
        ))
    }
}

/// A client-supplied idempotency key: 1-128 printable ASCII characters without `/`.
pub fn request_id(field: &(impl Display + ?Sized), value: &str) -> Result<(), DomainError> {
    let ok = (1..=MAX_REQUEST_ID_CHARS).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field.to_string(),
            "must be 1-128 printable ASCII characters without '/'",
        ))
    }
}

/// Ids the cluster hands out: `<prefix>` followed by `numbers` dash-separated
/// numbers, e.g. `plan-12`, `task-20-1`, `case-5-1`.
pub fn generated_id(
    field: &(impl Display + ?Sized),
    id: &str,
    prefix: &str,
    numbers: usize,
) -> Result<(), DomainError> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('-').collect();
            parts.len() == numbers
                && parts.iter().all(|n| {
                    !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit())
                })
        });
    if ok {
        Ok(())
    } else {
        let shape = vec!["<number>"; numbers].join("-");
        Err(DomainError::invalid(
            field.to_string(),
            format!("not a {prefix}-{shape} id"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn department_codes() {
        for ok in ["SAMR", "JUST", "A1", "PSB_2"] {
            assert!(department_code("d", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "s",
            "samr",
            "1SAMR",
            "SAMR-X",
            "ABCDEFGHIJKLMNOPQ",
            "市场",
        ] {
            assert!(department_code("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        let name: String = "监".repeat(MAX_NAME_CHARS);
        assert!(required_text("n", &name, MAX_NAME_CHARS).is_ok());
        let long = format!("{name}监");
        let err = required_text("content.name", &long, MAX_NAME_CHARS).unwrap_err();
        assert_eq!(
            err,
            DomainError::invalid("content.name", "201 characters, at most 200 allowed")
        );
        assert!(required_text("n", "  ", 10).is_err());
        assert!(required_text("n", "a\u{0}b", 10).is_err());
        assert!(required_text("n", "line\nnext", 10).is_ok());
    }
}

/// A SHA-256 in lower-case hex: how files kept outside the cluster are named.
pub fn sha256_hex(field: &(impl Display + ?Sized), value: &str) -> Result<(), DomainError> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field.to_string(),
            "must be a SHA-256 in lower-case hex (64 characters)",
        ))
    }
}

/// A list of file digests: at most `max`, each a SHA-256.
pub fn sha256_list(
    field: &(impl Display + ?Sized),
    values: &[String],
    max: usize,
) -> Result<(), DomainError> {
    if values.len() > max {
        return Err(DomainError::invalid(
            field.to_string(),
            format!("at most {max}"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        sha256_hex(&Indexed(field, i), v)?;
    }
    Ok(())
}
