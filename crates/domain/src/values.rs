//! Value objects: parsed once at the edge, valid by construction afterwards.
//!
//! Each type has `parse(field, raw)`, which names the offending field in its error. Inside the
//! domain and in stored events the types are trusted (`serde(transparent)`): an event is a fact
//! that was valid when it was recorded, and tightening a rule later must not make history
//! unreadable.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Declares a trimmed, non-empty, length-bounded text newtype.
macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, max = $max:expr, multiline = $multi:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Trims and checks the value; `field` names it in the error.
            pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
                parse_text(field, raw, $max, $multi).map($name)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A literal of this crate known to be valid (checked by the tests that use it).
            #[allow(dead_code)]
            pub(crate) fn trusted(s: &'static str) -> Self {
                $name(s.to_string())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn parse_text(field: &str, raw: &str, max: usize, multiline: bool) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(DomainError::invalid(field, format!("is {chars} characters long; at most {max} are allowed")));
    }
    let bad_control = value.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')));
    if bad_control {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_string())
}

bounded_text!(
    /// A customer's or contact's name (a person, a company or an internal department).
    Name,
    max = 200,
    multiline = false
);
bounded_text!(
    /// A short label: a grade, a code, a role, a purpose note.
    Label,
    max = 100,
    multiline = false
);
bounded_text!(
    /// A request category, e.g. `Billing / Overcharge` or `Credit card / Fees`: the classification of what a
    /// request is about (categories are free, so imports keep their source's own).
    Category,
    max = 300,
    multiline = false
);
bounded_text!(
    /// A one-line subject.
    Subject,
    max = 300,
    multiline = false
);
bounded_text!(
    /// Free text written by staff or customers: summaries, descriptions, notes.
    Text,
    max = 8000,
    multiline = true
);

/// An e-mail address, trimmed; the domain part is lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Checks the shape of an address (RFC 5321 lengths, one `@`, a dotted domain).
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim();
        let bad = |why: &str| DomainError::invalid(field, format!("`{value}` is not an e-mail address: {why}"));
        if value.is_empty() {
            return Err(DomainError::invalid(field, "must not be empty"));
        }
        if value.len() > 254 {
            return Err(bad("longer than 254 characters"));
        }
        let (local, domain) = value.split_once('@').ok_or_else(|| bad("no `@`"))?;
        if domain.contains('@') {
            return Err(bad("more than one `@`"));
        }
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before `@` must have 1 to 64 characters"));
        }
        if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces are not allowed"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad("misplaced dot before `@`"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("the domain needs a dot, e.g. example.com"));
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-');
            if !ok {
                return Err(bad("the domain is malformed"));
            }
        }
        let tld = labels.last().copied().unwrap_or_default();
        if tld.chars().count() < 2 || tld.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the top-level domain is malformed"));
        }
        Ok(Email(format!("{local}@{}", domain.to_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A telephone number, normalised to an optional leading `+` and 5 to 15 digits (E.164 length).
///
/// Spaces, dots, dashes and parentheses are accepted as separators and dropped, so
/// `138 0013 8000` and `(010) 6552-9988` are stored as `13800138000` and `01065529988`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses and normalises a phone number.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(DomainError::invalid(field, "must not be empty"));
        }
        let (plus, rest) = match value.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                other => {
                    return Err(DomainError::invalid(
                        field,
                        format!("`{value}` is not a phone number: unexpected `{other}`"),
                    ));
                }
            }
        }
        if !(5..=15).contains(&digits.len()) {
            return Err(DomainError::invalid(
                field,
                format!("`{value}` is not a phone number: {} digits, expected 5 to 15", digits.len()),
            ));
        }
        Ok(PhoneNumber(if plus { format!("+{digits}") } else { digits }))
    }

    /// The normalised number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A postal address. At least one part is present; all parts are free text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Street, building, room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City or district.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Province, state or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Address {
    /// Builds an address from optional parts, trimming them and dropping empty ones.
    pub fn parse(
        field: &str,
        street: Option<&str>,
        city: Option<&str>,
        region: Option<&str>,
        postal_code: Option<&str>,
        country: Option<&str>,
    ) -> Result<Self, DomainError> {
        let part = |name: &str, v: Option<&str>, max: usize| -> Result<Option<String>, DomainError> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_text(&format!("{field}.{name}"), s, max, false).map(Some),
            }
        };
        let country = match country.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(c) if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => Some(c.to_ascii_uppercase()),
            Some(c) => {
                return Err(DomainError::invalid(
                    format!("{field}.country"),
                    format!("`{c}` is not a two-letter ISO 3166 country code"),
                ));
            }
        };
        let address = Address {
            street: part("street", street, 300)?,
            city: part("city", city, 100)?,
            region: part("region", region, 100)?,
            postal_code: part("postalCode", postal_code, 20)?,
            country,
        };
        if address == Address::default() {
            return Err(DomainError::invalid(field, "an address needs at least one part"));
        }
        Ok(address)
    }
}

/// An identifier of a staff member as the identity provider knows them (the token subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StaffId(String);

impl StaffId {
    /// Staff ids are 1 to 100 visible characters without spaces.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim();
        if value.is_empty() || value.len() > 100 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::invalid(field, "a staff id has 1 to 100 characters and no spaces"));
        }
        Ok(StaffId(value.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member of staff (or a team) as referenced from events: id plus the name at the time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffRef {
    /// Stable id.
    pub id: StaffId,
    /// Display name when the event was recorded (names change; events keep what was true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse("e", " Li.Lei@Example.COM ").unwrap().as_str(), "Li.Lei@example.com");
        assert_eq!(Email::parse("e", "客服@例子.公司").unwrap().as_str(), "客服@例子.公司");
        for bad in ["", "plain", "a@b", "a@@b.com", "a b@c.com", "@c.com", "a@-c.com", "a@c.1", ".a@c.com", "a@c..com"]
        {
            let err = Email::parse("contacts.email", bad).unwrap_err();
            assert!(matches!(&err, DomainError::Invalid { field, .. } if field == "contacts.email"), "{bad}: {err:?}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(PhoneNumber::parse("p", "138 0013 8000").unwrap().as_str(), "13800138000");
        assert_eq!(PhoneNumber::parse("p", "(010) 6552-9988").unwrap().as_str(), "01065529988");
        assert_eq!(PhoneNumber::parse("p", "+86 138-0013-8000").unwrap().as_str(), "+8613800138000");
        for bad in ["", "1234", "1234567890123456", "138x0013", "++86 1380013800", "call me"] {
            assert!(PhoneNumber::parse("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("name", "  华为技术有限公司 ").unwrap().as_str(), "华为技术有限公司");
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", &"x".repeat(201)).is_err());
        assert!(Name::parse("name", "a\u{0}b").is_err());
        assert!(Text::parse("summary", "line one\nline two").is_ok());
        assert!(Name::parse("name", "line one\nline two").is_err());
    }

    #[test]
    fn addresses_need_a_part_and_a_real_country() {
        assert!(Address::parse("address", None, Some("  "), None, None, None).is_err());
        let a = Address::parse("address", Some("建国路 88 号"), Some("北京"), None, None, Some("cn")).unwrap();
        assert_eq!(a.country.as_deref(), Some("CN"));
        let err = Address::parse("address", None, Some("Paris"), None, None, Some("France")).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field, .. } if field == "address.country"));
    }

    proptest! {
        #[test]
        fn a_normalised_phone_parses_to_itself(digits in "[0-9]{5,15}", plus in any::<bool>()) {
            let raw = if plus { format!("+{digits}") } else { digits };
            let once = PhoneNumber::parse("p", &raw).unwrap();
            let twice = PhoneNumber::parse("p", once.as_str()).unwrap();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn parsing_an_email_is_idempotent(local in "[a-z0-9._%+-]{1,20}", domain in "[a-z0-9]{1,10}\\.[a-z]{2,6}") {
            if let Ok(once) = Email::parse("e", &format!("{local}@{domain}")) {
                let twice = Email::parse("e", once.as_str()).unwrap();
                prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn text_never_keeps_outer_whitespace(s in "\\PC{0,50}") {
            if let Ok(t) = Text::parse("t", &s) {
                prop_assert_eq!(t.as_str(), t.as_str().trim());
                prop_assert!(!t.as_str().is_empty());
            }
        }
    }
}
