//! Stabilisation of partial lines by local agreement: a word is committed once two
//! consecutive hypotheses of the growing utterance agree on it and on every word before
//! it; committed words never change, later hypotheses only add to them.
//!
//! Design: whisper re-decodes the whole utterance at each partial, and its tail flickers
//! (the last word is often cut, misheard or repeated). Showing only committed words plus
//! the newest tail, and never rewriting the committed part, is the LocalAgreement-2 rule
//! of Macháček et al. ("Turning Whisper into Real-Time Transcription System", 2023).

/// Units of a text that agreement compares: words for spaced scripts, characters for
/// Chinese (which has no spaces).
pub fn units(text: &str, language: &str) -> Vec<String> {
    if language == "zh" {
        text.chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect()
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    }
}

/// Joins units back into text.
pub fn join(units: &[String], language: &str) -> String {
    if language == "zh" {
        units.concat()
    } else {
        units.join(" ")
    }
}

/// Comparison key of a unit: case and surrounding punctuation do not matter.
fn key(unit: &str) -> String {
    unit.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// The stabiliser of one utterance.
#[derive(Debug, Clone, Default)]
pub struct Agreement {
    /// Committed units: never change.
    committed: Vec<String>,
    /// The previous hypothesis, in units.
    previous: Vec<String>,
}

impl Agreement {
    /// Takes a new hypothesis of the whole utterance; returns (committed, tail): the
    /// committed units (a prefix that only grows) and the unstable rest to show after them.
    pub fn update(&mut self, hypothesis: Vec<String>) -> (&[String], Vec<String>) {
        let n = self.committed.len();
        // Agreement is sought past what is already committed.
        let agreed = hypothesis
            .iter()
            .skip(n)
            .zip(self.previous.iter().skip(n))
            .take_while(|(a, b)| key(a) == key(b))
            .count();
        self.committed
            .extend(hypothesis.iter().skip(n).take(agreed).cloned());
        let tail = hypothesis
            .iter()
            .skip(self.committed.len())
            .cloned()
            .collect();
        self.previous = hypothesis;
        (&self.committed, tail)
    }

    /// The final text given the final hypothesis: the committed units, then the final
    /// hypothesis past them.
    pub fn finish(&self, hypothesis: &[String]) -> Vec<String> {
        let mut out = self.committed.clone();
        out.extend(hypothesis.iter().skip(self.committed.len()).cloned());
        out
    }

    /// Committed units so far.
    pub fn committed(&self) -> &[String] {
        &self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        units(s, "en")
    }

    #[test]
    fn words_are_committed_when_two_hypotheses_agree_and_never_change_after() {
        let mut a = Agreement::default();
        let (c, tail) = a.update(w("the court is"));
        assert!(c.is_empty());
        assert_eq!(tail, w("the court is"));
        let (c, tail) = a.update(w("the court is now in"));
        assert_eq!(c, w("the court is").as_slice());
        assert_eq!(tail, w("now in"));
        // Whisper changes its mind about an early word: the committed part stands.
        let (c, tail) = a.update(w("a court is now in session"));
        assert_eq!(c, w("the court is now in").as_slice());
        assert_eq!(tail, w("session"));
        let (c, _) = a.update(w("the court is now in session."));
        assert_eq!(c, w("the court is now in session.").as_slice());
    }

    #[test]
    fn agreement_ignores_case_and_punctuation_at_word_edges() {
        let mut a = Agreement::default();
        a.update(w("Please rise,"));
        let (c, _) = a.update(w("please rise. The"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn the_final_line_keeps_the_committed_words_and_takes_the_rest_from_the_final_decode() {
        let mut a = Agreement::default();
        a.update(w("call the first"));
        a.update(w("call the first witness to"));
        let fin = a.finish(&w("Call the first witness to the stand."));
        assert_eq!(fin, w("call the first witness to the stand."));
    }

    #[test]
    fn chinese_agrees_character_by_character() {
        let mut a = Agreement::default();
        a.update(units("现在开庭", "zh"));
        let (c, tail) = a.update(units("现在开庭请坐", "zh"));
        assert_eq!(join(c, "zh"), "现在开庭");
        assert_eq!(join(&tail, "zh"), "请坐");
    }
}
