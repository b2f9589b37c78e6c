//! Whether a visitor is looking for a product, and for what — without a model. "Do you have
//! red kettles?", "I'm looking for a desk lamp under 50 €", "Was kostet der Wasserkocher?"
//! become a search term (and a price limit); anything else is left to the FAQ. The caller
//! searches only when the FAQ has no confident answer, so "Do you have a return policy?" stays
//! a FAQ question.

/// A product search found in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuery {
    /// What to search for, in the visitor's words.
    pub term: String,
    /// "under 50", "unter 50 €", "less than $50".
    pub max_price: Option<f64>,
}

impl ProductQuery {
    /// The search filters the request asks for.
    pub fn filters(&self) -> crate::catalog::search::Filters {
        crate::catalog::search::Filters { max_price: self.max_price, ..Default::default() }
    }
}

/// Phrases that start a product request, in the widget's languages, longest first where one
/// contains another.
const TRIGGERS: &[&str] = &[
    "do you have any",
    "do you have",
    "do you sell",
    "do you carry",
    "have you got",
    "i'm looking for",
    "i am looking for",
    "looking for",
    "i want to buy",
    "i'd like to buy",
    "show me",
    "how much does",
    "how much is",
    "price of",
    "haben sie",
    "habt ihr",
    "ich suche",
    "gibt es",
    "was kostet",
    "avez-vous",
    "vous avez",
    "je cherche",
    "combien coûte",
    "tienen",
    "busco",
    "cuánto cuesta",
    "чи є у вас",
    "у вас є",
    "шукаю",
    "скільки коштує",
];

/// Words dropped from the start of a term.
const LEADING: &[&str] = &[
    "a", "an", "the", "some", "any", "einen", "eine", "ein", "den", "die", "das", "der", "un", "une", "des", "le",
    "la", "les", "uno", "una", "unos", "unas", "el", "los", "las",
];

/// Endings that say nothing about the product.
const TRAILING: &[&str] = &[
    "please",
    "in stock",
    "for sale",
    "available",
    "cost",
    "costs",
    "bitte",
    "auf lager",
    "s'il vous plaît",
    "por favor",
    "en stock",
];

/// The product search `text` asks for, if it asks for one.
pub fn product_query(text: &str) -> Option<ProductQuery> {
    let lower = text.to_lowercase().replace(['’', '`'], "'");
    let line = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    let (start, trigger) = TRIGGERS
        .iter()
        .filter_map(|t| find_phrase(&line, t).map(|i| (i, *t)))
        .min_by_key(|(i, t)| (*i, usize::MAX - t.len()))?;
    let rest = &line[start + trigger.len()..];
    let (rest, max_price) = price_limit(rest);
    let mut words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'))
        .filter(|w| !w.is_empty())
        .collect();
    while words.first().is_some_and(|w| LEADING.contains(w)) {
        words.remove(0);
    }
    let mut term = words.join(" ");
    loop {
        let before = term.len();
        for t in TRAILING {
            if let Some(cut) = term.strip_suffix(t) {
                term = cut.trim_end().to_string();
            }
        }
        if term.len() == before {
            break;
        }
    }
    let term: String = term.chars().take(100).collect();
    (term.chars().filter(|c| c.is_alphanumeric()).count() >= 2).then_some(ProductQuery { term, max_price })
}

/// Where `phrase` starts in `text` on word boundaries.
fn find_phrase(text: &str, phrase: &str) -> Option<usize> {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(phrase)
        .find(|(i, _)| boundary(text[..*i].chars().next_back()) && boundary(text[i + phrase.len()..].chars().next()))
        .map(|(i, _)| i)
}

/// "under 50 €" and the like: the text without it, and the limit.
fn price_limit(text: &str) -> (String, Option<f64>) {
    const MARKERS: &[&str] =
        &["under", "below", "less than", "cheaper than", "up to", "max", "unter", "bis", "moins de", "menos de", "до"];
    for marker in MARKERS {
        let Some(at) = find_phrase(text, marker) else { continue };
        let after = &text[at + marker.len()..];
        let number: String = after
            .trim_start()
            .trim_start_matches(['€', '$', '£'])
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect();
        if let Ok(limit) = number.replace(',', ".").trim_end_matches('.').parse::<f64>() {
            return (text[..at].to_string(), Some(limit));
        }
    }
    (text.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(text: &str) -> Option<String> {
        product_query(text).map(|q| q.term)
    }

    #[test]
    fn product_requests_in_every_language() {
        assert_eq!(term("Do you have red kettles?").as_deref(), Some("red kettles"));
        assert_eq!(term("Hi! I'm looking for a desk lamp, please").as_deref(), Some("desk lamp"));
        assert_eq!(term("How much is the Lumen desk lamp?").as_deref(), Some("lumen desk lamp"));
        assert_eq!(term("Ich suche einen Wasserkocher").as_deref(), Some("wasserkocher"));
        assert_eq!(term("Avez-vous des lampes de bureau ?").as_deref(), Some("lampes de bureau"));
        assert_eq!(term("Busco una lámpara").as_deref(), Some("lámpara"));
        assert_eq!(term("Шукаю чайник").as_deref(), Some("чайник"));
    }

    #[test]
    fn a_price_limit_is_a_filter_not_part_of_the_term() {
        let q = product_query("I'm looking for a lamp under 50 €").unwrap();
        assert_eq!((q.term.as_str(), q.max_price), ("lamp", Some(50.0)));
        let q = product_query("Haben Sie Wasserkocher unter 29,90?").unwrap();
        assert_eq!((q.term.as_str(), q.max_price), ("wasserkocher", Some(29.9)));
    }

    #[test]
    fn other_messages_are_not_searches() {
        for text in ["How long does shipping take?", "Thanks!", "Do you have", "Do you have a?", "Hello there"] {
            assert_eq!(product_query(text), None, "{text}");
        }
    }
}
