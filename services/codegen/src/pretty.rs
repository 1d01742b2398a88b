//! Lays out ts-rs declarations (one long line each, with JSDoc comments wherever a field has
//! docs) as a person would write them: one field per line, one union member per line when
//! long. Pure text work on a tiny token stream; the type itself is untouched.

const WIDTH: usize = 100;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `/** ... */`, the text between the markers, one entry per line.
    Doc(Vec<String>),
    Str(String),
    Punct(char),
    Word(String),
}

const PUNCT: &[char] = &[
    '{', '}', '<', '>', '[', ']', '(', ')', ',', ';', ':', '|', '&', '=',
];

fn tokenize(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let start = i + 2;
            let mut end = start;
            while end + 1 < chars.len() && !(chars[end] == '*' && chars[end + 1] == '/') {
                end += 1;
            }
            let body: String = chars[start..end.min(chars.len())].iter().collect();
            out.push(Tok::Doc(doc_lines(&body)));
            i = end + 2;
        } else if c == '"' {
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            out.push(Tok::Str(
                chars[i..(end + 1).min(chars.len())].iter().collect(),
            ));
            i = end + 1;
        } else if PUNCT.contains(&c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !PUNCT.contains(&chars[i])
                && chars[i] != '"'
                && !(chars[i] == '/' && chars.get(i + 1) == Some(&'*'))
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    out
}

/// The lines of a comment body (`*` gutters removed, blank edges dropped).
fn doc_lines(body: &str) -> Vec<String> {
    let body = body.strip_prefix('*').unwrap_or(body);
    let mut lines: Vec<String> = body
        .lines()
        .map(|l| {
            let t = l.trim();
            let t = t.strip_prefix('*').unwrap_or(t);
            t.strip_prefix(' ').unwrap_or(t).trim_end().to_owned()
        })
        .collect();
    while lines.first().is_some_and(String::is_empty) {
        lines.remove(0);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

fn render_doc(lines: &[String], indent: &str) -> String {
    match lines {
        [] => String::new(),
        [one] if indent.len() + one.len() + 7 <= WIDTH => format!("{indent}/** {one} */\n"),
        _ => {
            let mut s = format!("{indent}/**\n");
            for l in lines {
                if l.is_empty() {
                    s.push_str(&format!("{indent} *\n"));
                } else {
                    s.push_str(&format!("{indent} * {l}\n"));
                }
            }
            s.push_str(&format!("{indent} */\n"));
            s
        }
    }
}

/// A `/** ... */` comment as ts-rs gives it (`T::docs()`), laid out at `indent`.
pub fn doc_comment(raw: &str, indent: &str) -> String {
    let toks = tokenize(raw);
    let lines: Vec<String> = toks
        .into_iter()
        .flat_map(|t| match t {
            Tok::Doc(l) => l,
            _ => Vec::new(),
        })
        .collect();
    render_doc(&lines, indent)
}

fn is_open(t: &Tok) -> bool {
    matches!(t, Tok::Punct('{' | '<' | '[' | '('))
}
fn is_close(t: &Tok) -> bool {
    matches!(t, Tok::Punct('}' | '>' | ']' | ')'))
}

/// Splits `toks` at `sep` where no bracket is open.
fn split_top(toks: &[Tok], sep: char) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && *t == Tok::Punct(sep) {
            parts.push(&toks[start..i]);
            start = i + 1;
        }
    }
    parts.push(&toks[start..]);
    parts
}

/// The tokens on one line, with the spacing TypeScript is usually written with; a trailing
/// comma before a closing brace is dropped.
fn inline(toks: &[Tok]) -> String {
    let mut s = String::new();
    let mut prev: Option<&Tok> = None;
    for (i, t) in toks.iter().enumerate() {
        if *t == Tok::Punct(',') && matches!(toks.get(i + 1), Some(Tok::Punct('}'))) {
            continue;
        }
        // No space at the start, before closers and separators, after openers, nor between
        // a name and its generic arguments.
        let tight = matches!(
            (prev, t),
            (None, _)
                | (_, Tok::Punct(',' | ':' | ';' | ']' | '>' | ')'))
                | (Some(Tok::Punct('<' | '[' | '(')), _)
                | (Some(Tok::Word(_)), Tok::Punct('<' | '[' | '('))
        );
        if !tight {
            s.push(' ');
        }
        match t {
            Tok::Doc(lines) => s.push_str(&format!("/** {} */", lines.join(" "))),
            Tok::Str(x) | Tok::Word(x) => s.push_str(x),
            Tok::Punct(c) => s.push(*c),
        }
        prev = Some(t);
    }
    s
}

/// An object type `{ a: T, b: U }` with one field per line (and its docs above it).
fn object_block(inner: &[Tok]) -> String {
    let mut s = String::from("{\n");
    for field in split_top(inner, ',') {
        if field.is_empty() {
            continue;
        }
        let mut rest = field;
        while let Some((Tok::Doc(lines), tail)) = rest.split_first() {
            s.push_str(&render_doc(lines, "  "));
            rest = tail;
        }
        s.push_str(&format!("  {};\n", inline(rest)));
    }
    s.push('}');
    s
}

/// Whether `toks` is exactly one `{ ... }` (so its fields may be laid out one per line).
fn single_object(toks: &[Tok]) -> Option<&[Tok]> {
    if toks.first() != Some(&Tok::Punct('{')) || toks.last() != Some(&Tok::Punct('}')) {
        return None;
    }
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate() {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
            if depth == 0 && i != toks.len() - 1 {
                return None;
            }
        }
    }
    Some(&toks[1..toks.len() - 1])
}

/// `type X = ...;` as one readable declaration.
pub fn declaration(decl: &str) -> String {
    let toks = tokenize(decl);
    let Some(eq) = toks.iter().position(|t| *t == Tok::Punct('=')) else {
        return decl.to_owned();
    };
    let head = inline(&toks[..eq]);
    let mut body = &toks[eq + 1..];
    if body.last() == Some(&Tok::Punct(';')) {
        body = &body[..body.len() - 1];
    }
    if let Some(inner) = single_object(body) {
        let has_docs = inner.iter().any(|t| matches!(t, Tok::Doc(_)));
        let one_line = format!("{head} = {};", inline(body));
        if !has_docs && one_line.len() <= WIDTH {
            return one_line;
        }
        return format!("{head} = {};", object_block(inner));
    }
    let members = split_top(body, '|');
    let one_line = format!("{head} = {};", inline(body));
    if members.len() < 2 || one_line.len() <= WIDTH {
        return one_line;
    }
    let mut s = format!("{head} =");
    for m in members {
        s.push_str(&format!("\n  | {}", inline(m)));
    }
    s.push(';');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_one_per_line_with_docs() {
        let src = "type A = { a: number, \n/**\n * Why: `x`, `y` {z}.\n */\nb?: string | null, c: { [key in string]: number }, };";
        assert_eq!(
            declaration(src),
            "type A = {\n  a: number;\n  /** Why: `x`, `y` {z}. */\n  b?: string | null;\n  c: { [key in string]: number };\n};"
        );
    }

    #[test]
    fn short_types_stay_on_one_line() {
        assert_eq!(
            declaration("type S = \"A\" | \"B\";"),
            "type S = \"A\" | \"B\";"
        );
        assert_eq!(
            declaration("type M = { \"type\": \"resync\" };"),
            "type M = { \"type\": \"resync\" };"
        );
        assert_eq!(
            declaration("type H = { events: Array<E>, };"),
            "type H = { events: Array<E> };"
        );
    }

    #[test]
    fn long_unions_one_member_per_line() {
        let src = "type F = { \"type\": \"snapshot\" } & FeedSnapshot | { \"type\": \"status\", data: StatusChange, } | { \"type\": \"alert\", data: AlertEvent, };";
        assert_eq!(
            declaration(src),
            "type F =\n  | { \"type\": \"snapshot\" } & FeedSnapshot\n  | { \"type\": \"status\", data: StatusChange }\n  | { \"type\": \"alert\", data: AlertEvent };"
        );
    }

    #[test]
    fn multi_line_docs() {
        let long = "x".repeat(120);
        assert_eq!(
            doc_comment(&format!("/**\n * {long}\n * second\n */\n"), ""),
            format!("/**\n * {long}\n * second\n */\n")
        );
        assert_eq!(doc_comment("/**\n * short\n */\n", ""), "/** short */\n");
    }
}
