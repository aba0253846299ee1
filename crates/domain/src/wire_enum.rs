//! Closed vocabularies (channels, tiers, states…) shared by commands, events and `proto/`.
//!
//! Every vocabulary is declared with [`wire_enum!`], which fixes three spellings per value:
//! the Rust variant, the short name used at the edges (`PHONE`, also the GraphQL enum value),
//! and the Protocol Buffers name (`CHANNEL_PHONE`) that the stored JSON and the Kafka payload
//! carry. The proto names follow protobuf's scoping rule (values are prefixed with the enum
//! name), so the same short name may appear in two vocabularies without clashing.

/// Declares a closed vocabulary. See the module documentation.
///
/// ```
/// kefu_domain::wire_enum! {
///     /// How loud something is.
///     pub enum Loudness: "LOUDNESS" {
///         Quiet = "QUIET",
///         Loud = "LOUD",
///     }
/// }
/// assert_eq!(Loudness::Loud.wire_name(), "LOUDNESS_LOUD");
/// assert_eq!("quiet".parse::<Loudness>().unwrap(), Loudness::Quiet);
/// ```
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $short:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The protobuf enum's value prefix (the enum name in SCREAMING_SNAKE_CASE).
            pub const PROTO_PREFIX: &'static str = $prefix;
            /// The vocabulary's name, as in `proto/`.
            pub const NAME: &'static str = stringify!($name);

            /// The short name used at the edges, e.g. `PHONE`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $short),+ }
            }

            /// The protobuf value name, e.g. `CHANNEL_PHONE`.
            pub fn wire_name(self) -> &'static str {
                match self { $($name::$variant => concat!($prefix, "_", $short)),+ }
            }

            /// Parses the protobuf value name (exact).
            pub fn from_wire_name(s: &str) -> Option<Self> {
                match s {
                    $(concat!($prefix, "_", $short) => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// All short names, for error messages.
            pub fn short_names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownVariant;
            /// Accepts the short name or the protobuf name, case-insensitively.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let upper = s.trim().to_ascii_uppercase();
                let short = upper
                    .strip_prefix(concat!($prefix, "_"))
                    .unwrap_or(&upper);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == short)
                    .ok_or_else(|| $crate::UnknownVariant {
                        vocabulary: stringify!($name),
                        value: s.to_string(),
                        expected: $name::short_names().join(", "),
                    })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.wire_name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                $name::from_wire_name(&s).ok_or_else(|| {
                    ::serde::de::Error::custom(format!(
                        "unknown {} value `{}`",
                        stringify!($name),
                        s
                    ))
                })
            }
        }
    };
}

/// A value that is not in a closed vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {vocabulary}; expected one of: {expected}")]
pub struct UnknownVariant {
    /// Which vocabulary (e.g. `Channel`).
    pub vocabulary: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted short names, comma separated.
    pub expected: String,
}

#[cfg(test)]
#[allow(dead_code)]
mod tests {
    crate::wire_enum! {
        enum Sample: "SAMPLE" { One = "ONE", TwoWords = "TWO_WORDS" }
    }

    #[test]
    fn spellings_round_trip() {
        for v in Sample::ALL {
            assert_eq!(Sample::from_wire_name(v.wire_name()), Some(*v));
            assert_eq!(v.as_str().parse::<Sample>().unwrap(), *v);
            assert_eq!(v.wire_name().parse::<Sample>().unwrap(), *v);
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), *v);
        }
        assert_eq!(Sample::TwoWords.wire_name(), "SAMPLE_TWO_WORDS");
    }

    #[test]
    fn unknown_values_name_the_choices() {
        let err = "three".parse::<Sample>().unwrap_err();
        assert_eq!(err.expected, "ONE, TWO_WORDS");
        assert!(serde_json::from_str::<Sample>("\"SAMPLE_THREE\"").is_err());
        // The wire form is exact: the short name alone is not a stored value.
        assert!(serde_json::from_str::<Sample>("\"ONE\"").is_err());
    }
}
