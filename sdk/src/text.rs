//! Keeping a command's raw text beside a parsed output, capped.

/// How much raw command text an output document keeps: enough to read, small enough to audit.
pub const RAW_CAP: usize = 64 * 1024;

/// `text` cut to at most [`RAW_CAP`] bytes on a character boundary, and whether it was cut.
pub fn capped(text: &str) -> (String, bool) {
    if text.len() <= RAW_CAP {
        return (text.to_owned(), false);
    }
    let mut end = RAW_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capping_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(capped("abc"), ("abc".to_owned(), false));
        let long = "é".repeat(RAW_CAP); // 2 bytes each
        let (cut, truncated) = capped(&long);
        assert!(truncated);
        assert_eq!(cut.len(), RAW_CAP);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
