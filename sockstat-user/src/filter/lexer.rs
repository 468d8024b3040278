//! Splitting the filter text into tokens, each with its position for error messages.
//!
//! Like ss: words are separated by spaces and tabs, and a backslash escapes the next
//! character. Unlike ss, parentheses glued to a word (`(sport`, `:22)`) are split off.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Not,
    And,
    Or,
    LParen,
    RParen,
    Cmp(Cmp),
    Kw(Kw),
    Word(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kw {
    Src,
    Dst,
    Sport,
    Dport,
    Dev,
    Fwmark,
    Cgroup,
    Autobound,
    State,
    Exclude,
}

/// A token, its text as written and its 1-based character position in the filter text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    pub tok: Tok,
    pub text: String,
    pub pos: usize,
}

pub fn classify(word: &str) -> Tok {
    match word {
        "!" | "not" => Tok::Not,
        "&" | "&&" | "and" => Tok::And,
        "|" | "||" | "or" => Tok::Or,
        "(" => Tok::LParen,
        ")" => Tok::RParen,
        "src" => Tok::Kw(Kw::Src),
        "dst" => Tok::Kw(Kw::Dst),
        "sport" => Tok::Kw(Kw::Sport),
        "dport" => Tok::Kw(Kw::Dport),
        "dev" => Tok::Kw(Kw::Dev),
        "fwmark" => Tok::Kw(Kw::Fwmark),
        "cgroup" => Tok::Kw(Kw::Cgroup),
        "autobound" => Tok::Kw(Kw::Autobound),
        "state" => Tok::Kw(Kw::State),
        "exclude" | "excl" => Tok::Kw(Kw::Exclude),
        ">=" | "ge" | "geq" => Tok::Cmp(Cmp::Ge),
        "<=" | "le" | "leq" => Tok::Cmp(Cmp::Le),
        "!=" | "ne" | "neq" => Tok::Cmp(Cmp::Ne),
        "=" | "==" | "eq" => Tok::Cmp(Cmp::Eq),
        ">" | "gt" => Tok::Cmp(Cmp::Gt),
        "<" | "lt" => Tok::Cmp(Cmp::Lt),
        other => Tok::Word(other.to_string()),
    }
}

/// Tokenizes `text`.
pub fn lex(text: &str) -> Vec<Spanned> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut start = 0usize;
    let mut chars = text.chars().enumerate().peekable();
    let flush = |word: &mut String, start: usize, out: &mut Vec<Spanned>| {
        if word.is_empty() {
            return;
        }
        push_word(std::mem::take(word), start, out);
    };
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => flush(&mut word, start, &mut out),
            '\\' => {
                if word.is_empty() {
                    start = i + 1;
                }
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            _ => {
                if word.is_empty() {
                    start = i + 1;
                }
                word.push(c);
            }
        }
    }
    flush(&mut word, start, &mut out);
    out
}

fn push_word(word: String, pos: usize, out: &mut Vec<Spanned>) {
    // Split leading '(' and trailing ')' off ordinary words.
    let lead = word.chars().take_while(|&c| c == '(').count();
    let body_and_tail = &word[lead..];
    let trail = body_and_tail
        .chars()
        .rev()
        .take_while(|&c| c == ')')
        .count();
    for k in 0..lead {
        out.push(Spanned {
            tok: Tok::LParen,
            text: "(".into(),
            pos: pos + k,
        });
    }
    let body = &body_and_tail[..body_and_tail.len() - trail];
    if !body.is_empty() {
        out.push(Spanned {
            tok: classify(body),
            text: body.to_string(),
            pos: pos + lead,
        });
    }
    for k in 0..trail {
        out.push(Spanned {
            tok: Tok::RParen,
            text: ")".into(),
            pos: pos + lead + body.chars().count() + k,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_keywords_and_positions() {
        let t = lex("( dport = :80 or  dport == :443 )");
        let texts: Vec<_> = t.iter().map(|s| (s.text.as_str(), s.pos)).collect();
        assert_eq!(
            texts,
            [
                ("(", 1),
                ("dport", 3),
                ("=", 9),
                (":80", 11),
                ("or", 15),
                ("dport", 19),
                ("==", 25),
                (":443", 28),
                (")", 33)
            ]
        );
        assert_eq!(t[4].tok, Tok::Or);
        assert_eq!(t[6].tok, Tok::Cmp(Cmp::Eq));
    }

    #[test]
    fn glued_parentheses_and_escapes() {
        assert_eq!(
            toks("(sport :22)"),
            [
                Tok::LParen,
                Tok::Kw(Kw::Sport),
                Tok::Word(":22".into()),
                Tok::RParen
            ]
        );
        assert_eq!(
            toks(r"src unix:/tmp/a\ b && ! autobound"),
            [
                Tok::Kw(Kw::Src),
                Tok::Word("unix:/tmp/a b".into()),
                Tok::And,
                Tok::Not,
                Tok::Kw(Kw::Autobound)
            ]
        );
        assert_eq!(
            toks("sport ge :1 lt gt le ne eq"),
            [
                Tok::Kw(Kw::Sport),
                Tok::Cmp(Cmp::Ge),
                Tok::Word(":1".into()),
                Tok::Cmp(Cmp::Lt),
                Tok::Cmp(Cmp::Gt),
                Tok::Cmp(Cmp::Le),
                Tok::Cmp(Cmp::Ne),
                Tok::Cmp(Cmp::Eq),
            ]
        );
    }
}
