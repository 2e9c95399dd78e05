//! The macro that turns the one declaration of the configuration
//! (`keys.rs`) into the typed sections and the table of keys everything else
//! is derived from.

/// Declares the configuration: sections, and in each its keys.
///
/// ```text
/// /// What the section holds (its doc comment).
/// [section] SectionStruct {
///     /// What the key means, for the README table and `--help`.
///     field: Type = "default", flag "flag-name", Option, Option;
/// }
/// ```
///
/// For each key this produces a field `field: Type` of `SectionStruct`
/// (with the doc comment), its default (parsed from the default text by
/// [`Setting::from_default`](super::values::Setting::from_default)), and a
/// [`Key`](super::Key) entry in `KEYS` that the TOML reader, the flags, the
/// environment, `berth config check` and the README table all read. The
/// flag is `--flag-name`; the environment variable and the top-level TOML
/// spelling of older configuration files follow from it (`BERTH_FLAG_NAME`,
/// `flag_name`). The options are [`KeyOption`](super::KeyOption)s.
macro_rules! declare_config {
    (
        $(
            $(#[doc = $section_doc:literal])*
            [$section:ident] $Section:ident {
                $(
                    $(#[doc = $doc:literal])*
                    $field:ident: $ty:ty = $default:literal, flag $flag:literal $(, $option:expr)* ;
                )*
            }
        )*
    ) => {
        /// The effective configuration of a Berth process: one struct per
        /// section, one field per key (declared in `config/keys.rs`).
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $(
                $(#[doc = $section_doc])*
                pub $section: $Section,
            )*
        }

        $(
            $(#[doc = $section_doc])*
            #[derive(Clone, Debug, PartialEq)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])*
                    pub $field: $ty,
                )*
            }
        )*

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $(
                        $section: $Section {
                            $(
                                $field: <$ty as $crate::config::values::Setting>::from_default($default),
                            )*
                        },
                    )*
                }
            }
        }

        /// The sections, in declaration order: name and description.
        pub static SECTIONS: &[$crate::config::Section] = &[
            $(
                $crate::config::Section {
                    name: stringify!($section),
                    heading: concat!("Configuration [", stringify!($section), "]"),
                    doc: concat!($($section_doc, "\n"),*),
                },
            )*
        ];

        /// Every key, in declaration order.
        pub static KEYS: &[$crate::config::Key] = &[
            $($(
                $crate::config::Key {
                    section: stringify!($section),
                    name: stringify!($field),
                    flag: $flag,
                    default: $default,
                    doc: concat!($($doc, "\n"),*),
                    value_name: <$ty as $crate::config::values::Setting>::VALUE_NAME,
                    options: &[$($option),*],
                    set: |config: &mut Config, raw: $crate::config::values::Raw<'_>| {
                        config.$section.$field =
                            <$ty as $crate::config::values::Setting>::parse(raw)?;
                        Ok(())
                    },
                    show: |config: &Config| {
                        $crate::config::values::Setting::show(&config.$section.$field)
                    },
                },
            )*)*
        ];
    };
}
