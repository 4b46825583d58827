//! Small text helpers shared by the generators and the judge.

/// A response normalised for word matching: lowercase, apostrophes dropped ("can't" → "cant"), every other
/// non-alphanumeric character a word break.
pub struct Norm {
    pub words: Vec<String>,
    /// `" w1 w2 ... wn "`: phrase search is `padded.contains(" phrase ")`.
    padded: String,
}

impl Norm {
    pub fn new(text: &str) -> Norm {
        let mut cleaned = String::with_capacity(text.len());
        for ch in text.chars() {
            if ch == '\'' || ch == '’' {
                continue;
            }
            if ch.is_alphanumeric() {
                cleaned.extend(ch.to_lowercase());
            } else {
                cleaned.push(' ');
            }
        }
        let words: Vec<String> = cleaned.split_whitespace().map(str::to_string).collect();
        let padded = format!(" {} ", words.join(" "));
        Norm { words, padded }
    }

    /// Whether the normalised phrase occurs as whole words.
    pub fn has(&self, phrase: &str) -> bool {
        let p = Norm::new(phrase);
        if p.words.is_empty() {
            return false;
        }
        self.padded.contains(&p.padded)
    }

    /// Like `has`, but also accepts a plural/singular variant of the last word ("lemon" ~ "lemons").
    pub fn has_loose(&self, phrase: &str) -> bool {
        if self.has(phrase) {
            return true;
        }
        let p = Norm::new(phrase);
        let Some(last) = p.words.last() else { return false };
        let mut alt = p.words.clone();
        let n = alt.len() - 1;
        alt[n] = if let Some(s) = last.strip_suffix("es") {
            s.to_string()
        } else if let Some(s) = last.strip_suffix('s') {
            s.to_string()
        } else {
            format!("{last}s")
        };
        let mut ok = self.padded.contains(&format!(" {} ", alt.join(" ")));
        if !ok && !last.ends_with('s') {
            alt[n] = format!("{last}es");
            ok = self.padded.contains(&format!(" {} ", alt.join(" ")));
        }
        ok
    }

    pub fn has_any(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| self.has(p))
    }

    pub fn starts_with_any(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| {
            let p = Norm::new(p);
            !p.words.is_empty() && self.padded.starts_with(&p.padded)
        })
    }

    /// Integers written as digit words, in order.
    pub fn numbers(&self) -> Vec<i64> {
        self.words.iter().filter_map(|w| parse_int(w)).collect()
    }

    /// Numbers followed by a length unit ("330 meters", "350 m").
    pub fn lengths(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for w in self.words.windows(2) {
            if let Some(n) = parse_int(&w[0]) {
                if matches!(w[1].as_str(), "meters" | "metres" | "meter" | "metre" | "m" | "feet" | "ft") {
                    out.push(n);
                }
            }
        }
        out
    }
}

fn parse_int(w: &str) -> Option<i64> {
    if !w.is_empty() && w.len() <= 12 && w.bytes().all(|b| b.is_ascii_digit()) {
        w.parse().ok()
    } else {
        None
    }
}

/// "The Eiffel Tower" from "the Eiffel Tower".
pub fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// "a, b and c".
pub fn join_and(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// "a, b, then c".
pub fn join_then(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{}, then {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// Swap first-person words for second-person ones ("poison my neighbor" → "poison your neighbor").
pub fn to_second_person(s: &str) -> String {
    s.split(' ')
        .map(|w| match w {
            "my" => "your",
            "me" => "you",
            "I" => "you",
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_matches_whole_words() {
        let n = Norm::new("I can't help with that. Mix 330 meters!");
        assert!(n.has("i cant help"));
        assert!(n.has("mix"));
        assert!(!n.has("mi"));
        assert_eq!(n.numbers(), vec![330]);
        assert_eq!(n.lengths(), vec![330]);
        assert!(Norm::new("two lemons").has_loose("lemon"));
        assert!(Norm::new("ripe tomato").has_loose("tomatoes"));
        assert!(Norm::new("ripe tomatoes").has_loose("tomato"));
    }
}
