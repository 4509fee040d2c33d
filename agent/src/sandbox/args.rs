//! Shell-like splitting of a deal's `iexec_args` into argv.
//!
//! The rules are those of a POSIX shell without expansions: blanks (space, tab, newline) separate
//! words; `'…'` keeps everything literally; `"…"` keeps everything except that `\"` and `\\`
//! stand for `"` and `\`; outside quotes `\x` stands for `x`; quotes glue to the surrounding word
//! (`a"b c"d` is one word `ab cd`) and `""` is an empty word. Nothing else is special: no `$`,
//! globs, `~`, comments or redirections.
//!
//! iExec's Java worker splits with Ant's `Commandline.translateCommandline`, which knows quotes but
//! no backslash escapes: the two agree on every string without a backslash.

/// Why an argument string cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// A quote was opened and never closed.
    #[error("unterminated {quote} quote opened at byte {position} of the arguments")]
    UnterminatedQuote {
        /// `'` or `"`.
        quote: char,
        /// Byte offset of the opening quote.
        position: usize,
    },
    /// The string ends with a lone backslash.
    #[error("the arguments end with a lone backslash")]
    DanglingEscape,
}

/// Splits `args` into words as described in the module documentation.
///
/// # Errors
/// [`ArgsError`] for an unterminated quote or a trailing lone backslash.
pub fn split_args(args: &str) -> Result<Vec<String>, ArgsError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word is under way, even an empty one (`""`).
    let mut in_word = false;
    let mut chars = args.char_indices();
    while let Some((position, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, inner)) => word.push(inner),
                        None => return Err(ArgsError::UnterminatedQuote { quote: c, position }),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, escaped @ ('"' | '\\'))) => word.push(escaped),
                            Some((_, other)) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => {
                                return Err(ArgsError::UnterminatedQuote { quote: c, position })
                            }
                        },
                        Some((_, inner)) => word.push(inner),
                        None => return Err(ArgsError::UnterminatedQuote { quote: c, position }),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some((_, escaped)) => word.push(escaped),
                    None => return Err(ArgsError::DanglingEscape),
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_args(s).unwrap()
    }

    #[test]
    fn blanks_separate_words_and_repeats_are_ignored() {
        assert_eq!(split("  a b\t\tc\nd  "), ["a", "b", "c", "d"]);
        assert!(split("").is_empty());
        assert!(split(" \t ").is_empty());
    }

    #[test]
    fn single_quotes_keep_everything_literally() {
        assert_eq!(split(r#"'a b' 'c"d' 'e\f'"#), ["a b", "c\"d", "e\\f"]);
    }

    #[test]
    fn double_quotes_honour_only_quote_and_backslash_escapes() {
        assert_eq!(
            split(r#""a b" "say \"hi\"" "back\\slash" "keep\n""#),
            ["a b", "say \"hi\"", "back\\slash", "keep\\n"]
        );
    }

    #[test]
    fn backslash_outside_quotes_escapes_the_next_character() {
        assert_eq!(split(r"a\ b c\'d \\"), ["a b", "c'd", "\\"]);
    }

    #[test]
    fn quotes_glue_to_the_surrounding_word_and_empty_quotes_make_an_empty_word() {
        assert_eq!(split(r#"a"b c"d '' """#), ["ab cd", "", ""]);
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(split("héllo 'wörld ✓'"), ["héllo", "wörld ✓"]);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_with_its_position() {
        assert_eq!(
            split_args("ok 'open"),
            Err(ArgsError::UnterminatedQuote {
                quote: '\'',
                position: 3
            })
        );
        assert_eq!(
            split_args(r#"x "a\""#),
            Err(ArgsError::UnterminatedQuote {
                quote: '"',
                position: 2
            })
        );
    }

    #[test]
    fn a_trailing_lone_backslash_is_an_error() {
        assert_eq!(split_args(r"a \"), Err(ArgsError::DanglingEscape));
    }
}
