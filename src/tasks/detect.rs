//! Whether a visitor's message asks the shop to do something later — without a model. Only
//! explicit requests count ("please call me back", "I want to return my order", "I'd like a
//! quote"): a question about the return policy is for the FAQ, not a task. Phrases are
//! matched on word boundaries, in the widget's languages (en, de, fr, es, uk).
//!
//! Also here: reading a visitor's yes or no to "shall I pass this on?".

use std::fmt;

/// What kind of follow-up a request needs; each maps to the board's labels of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Callback,
    Bug,
    Complaint,
    Quote,
    Return,
}

impl Category {
    /// Every category, in the order requests are checked (the most specific first).
    pub const ALL: [Category; 5] =
        [Category::Callback, Category::Return, Category::Quote, Category::Bug, Category::Complaint];

    /// The card title's prefix, and the label name it maps to.
    pub fn label(self) -> &'static str {
        match self {
            Category::Callback => "Callback",
            Category::Bug => "Bug",
            Category::Complaint => "Complaint",
            Category::Quote => "Quote",
            Category::Return => "Return",
        }
    }

    /// The names a board's label may have for this category (compared case-insensitively).
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            Category::Callback => &["callback", "call back", "call-back", "rückruf"],
            Category::Bug => &["bug", "bug report", "bugs", "fehler"],
            Category::Complaint => &["complaint", "complaints", "beschwerde", "reklamation"],
            Category::Quote => &["quote", "quotes", "quote request", "angebot"],
            Category::Return => &["return", "returns", "return request", "retoure"],
        }
    }

    /// A category the model named (`create_task`'s free-text `category`), when it is one of
    /// ours or a common synonym.
    pub fn parse(name: &str) -> Option<Category> {
        let n = name.trim().to_lowercase();
        let synonyms: [(Category, &[&str]); 5] = [
            (Category::Callback, &["callback", "call back", "call-back", "call", "phone"]),
            (Category::Bug, &["bug", "bug report", "bug_report", "technical", "website"]),
            (Category::Complaint, &["complaint", "complain"]),
            (Category::Quote, &["quote", "quote request", "quotation", "offer"]),
            (Category::Return, &["return", "return request", "refund", "returns"]),
        ];
        synonyms
            .iter()
            .find(|(c, names)| names.contains(&n.as_str()) || c.label_names().contains(&n.as_str()))
            .map(|(c, _)| *c)
    }

    /// The request phrases of this category.
    fn phrases(self) -> &'static [&'static str] {
        match self {
            Category::Callback => &[
                "call me back",
                "call me",
                "give me a call",
                "phone me",
                "ring me",
                "request a callback",
                "request a call back",
                "callback please",
                "can someone call",
                "could someone call",
                "rufen sie mich an",
                "ruf mich an",
                "rückruf",
                "bitte zurückrufen",
                "rappelez-moi",
                "appelez-moi",
                "rappelez moi",
                "llámame",
                "llamame",
                "llámenme",
                "pueden llamarme",
                "передзвоніть",
                "зателефонуйте мені",
            ],
            Category::Return => &[
                "i want to return",
                "i'd like to return",
                "i would like to return",
                "i need to return",
                "return my order",
                "return this order",
                "return request",
                "request a return",
                "start a return",
                "send it back",
                "i want a refund",
                "i want my money back",
                "refund my order",
                "ich möchte zurückgeben",
                "ich möchte zurücksenden",
                "retoure anmelden",
                "rücksendung beantragen",
                "je veux retourner",
                "je souhaite retourner",
                "demande de retour",
                "je veux être remboursé",
                "quiero devolver",
                "solicitar una devolución",
                "quiero un reembolso",
                "хочу повернути",
                "хочу повернення коштів",
            ],
            Category::Quote => &[
                "request a quote",
                "get a quote",
                "need a quote",
                "want a quote",
                "send me a quote",
                "quotation for",
                "price quote",
                "offer for a bulk",
                "bulk order quote",
                "angebot anfordern",
                "ein angebot für",
                "kostenvoranschlag",
                "un devis",
                "demande de devis",
                "un presupuesto",
                "solicitar presupuesto",
                "una cotización",
                "комерційну пропозицію",
                "кошторис",
            ],
            Category::Bug => &[
                "bug report",
                "report a bug",
                "found a bug",
                "there is a bug",
                "there's a bug",
                "website is broken",
                "site is broken",
                "checkout is broken",
                "page is broken",
                "checkout doesn't work",
                "checkout does not work",
                "error on your site",
                "error on your website",
                "fehler melden",
                "einen fehler gefunden",
                "signaler un bug",
                "signaler un bogue",
                "le site ne fonctionne pas",
                "reportar un error",
                "encontré un error",
                "la web no funciona",
                "повідомити про помилку",
                "знайшов помилку",
                "сайт не працює",
            ],
            Category::Complaint => &[
                "i want to complain",
                "i'd like to complain",
                "i would like to complain",
                "file a complaint",
                "make a complaint",
                "i have a complaint",
                "formal complaint",
                "ich möchte mich beschweren",
                "beschwerde einreichen",
                "eine beschwerde",
                "reklamation",
                "je veux me plaindre",
                "déposer une réclamation",
                "une réclamation",
                "quiero quejarme",
                "poner una queja",
                "una reclamación",
                "хочу поскаржитися",
                "скарга",
            ],
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An explicit request found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub category: Category,
    /// The card's title: the category and the start of the visitor's words.
    pub title: String,
}

/// The request `text` makes, if it makes one explicitly.
pub fn detect(text: &str) -> Option<Detected> {
    let folded = fold(text);
    let category = Category::ALL.into_iter().find(|c| c.phrases().iter().any(|p| contains_phrase(&folded, p)))?;
    Some(Detected { category, title: format!("{}: {}", category.label(), excerpt(text, 80)) })
}

/// The visitor's answer to "shall I pass this on?": `Some(true)` yes, `Some(false)` no,
/// `None` when the message is about something else.
pub fn confirmation(text: &str) -> Option<bool> {
    const YES: &[&str] = &[
        "yes",
        "yes please",
        "yeah",
        "yep",
        "sure",
        "ok",
        "okay",
        "please do",
        "do it",
        "go ahead",
        "ja",
        "ja bitte",
        "ja gerne",
        "gerne",
        "oui",
        "oui merci",
        "d'accord",
        "sí",
        "si",
        "claro",
        "так",
        "добре",
        "авжеж",
    ];
    const NO: &[&str] = &[
        "no",
        "no thanks",
        "no thank you",
        "nope",
        "don't",
        "do not",
        "cancel",
        "nein",
        "nein danke",
        "non",
        "non merci",
        "no gracias",
        "ні",
        "не треба",
    ];
    let plain: String = fold(text).chars().map(|c| if ".!,?;:👍".contains(c) { ' ' } else { c }).collect();
    let answer = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    let answer = answer.as_str();
    if YES.contains(&answer) {
        Some(true)
    } else if NO.contains(&answer) {
        Some(false)
    } else {
        None
    }
}

/// Lower case with typographic apostrophes made plain and whitespace collapsed.
fn fold(text: &str) -> String {
    let lower = text.to_lowercase().replace(['’', '‘', '`'], "'");
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `phrase` occurs in `text` with a word boundary on both sides.
fn contains_phrase(text: &str, phrase: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(phrase)
        .any(|(i, _)| boundary(text[..i].chars().next_back()) && boundary(text[i + phrase.len()..].chars().next()))
}

/// The first `max` characters of `text` on one line, cut at a word, with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max).collect();
    let at_word = cut.rfind(' ').filter(|&i| i > max / 2).map_or(cut.as_str(), |i| &cut[..i]);
    format!("{}…", at_word.trim_end_matches([',', '.', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(text: &str) -> Option<Category> {
        detect(text).map(|d| d.category)
    }

    #[test]
    fn explicit_requests_in_every_language() {
        let cases = [
            ("Could you please call me back tomorrow?", Category::Callback),
            ("Bitte um Rückruf, 0171 2345678", Category::Callback),
            ("Rappelez-moi s'il vous plaît", Category::Callback),
            ("I want to return my order 1001", Category::Return),
            ("Ich möchte zurücksenden, was ich bestellt habe", Category::Return),
            ("Quiero devolver las zapatillas", Category::Return),
            ("Can I get a quote for 50 kettles?", Category::Quote),
            ("Je voudrais un devis pour 20 lampes", Category::Quote),
            ("I found a bug: the checkout is broken on mobile", Category::Bug),
            ("Сайт не працює після оплати", Category::Bug),
            ("I want to complain about the courier", Category::Complaint),
            ("Ich habe eine Beschwerde über die Lieferung", Category::Complaint),
        ];
        for (text, want) in cases {
            assert_eq!(category(text), Some(want), "{text}");
        }
    }

    #[test]
    fn questions_are_not_requests() {
        for text in [
            "What is your return policy?",
            "How long does shipping take?",
            "Do you ship to Austria?",
            "Is there a callbackup option?",
            "What does 'quote' mean on the invoice?",
            "Can I return items after 30 days?",
        ] {
            assert_eq!(detect(text), None, "{text}");
        }
    }

    #[test]
    fn the_title_names_the_category_and_the_request() {
        let d = detect(
            "Please call me back about my order 1001, I have questions about the delivery date and the invoice address",
        )
        .unwrap();
        assert!(d.title.starts_with("Callback: Please call me back about my order 1001"), "{}", d.title);
        assert!(d.title.ends_with('…') && d.title.chars().count() <= 92, "{}", d.title);
    }

    #[test]
    fn yes_and_no() {
        for yes in ["Yes", "yes please!", "OK", "Ja, gerne", "ja bitte", "Oui", "Sí", "так"] {
            assert_eq!(confirmation(yes), Some(true), "{yes}");
        }
        for no in ["No", "no thanks.", "Nein", "non merci", "ні"] {
            assert_eq!(confirmation(no), Some(false), "{no}");
        }
        assert_eq!(confirmation("Yes, but what about shipping to Austria?"), None);
    }

    #[test]
    fn categories_parse_from_the_models_words() {
        assert_eq!(Category::parse("Bug report"), Some(Category::Bug));
        assert_eq!(Category::parse("refund"), Some(Category::Return));
        assert_eq!(Category::parse("CALLBACK"), Some(Category::Callback));
        assert_eq!(Category::parse("gardening"), None);
    }
}
