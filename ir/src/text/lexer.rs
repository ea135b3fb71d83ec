//! Tokens of the text format, shared by Graph IR and Kernel IR text (the
//! operator characters `+ - / % & | ^ !` only mean something in the latter).

use super::parse::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// `%name` or `%"name"`.
    Value(String),
    /// `@name` or `@"name"`.
    At(String),
    Ident(String),
    /// A number, kept as written so that it converts exactly to the type
    /// it ends up with.
    Num(String),
    /// `0x…` raw bytes.
    Hex(Vec<u8>),
    Str(String),
    Punct(char),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Value(v) => format!("value `%{v}`"),
            Tok::At(v) => format!("`@{v}`"),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(n) => format!("number `{n}`"),
            Tok::Hex(_) => "hex data".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

/// Characters allowed in bare value names after `%`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '$')
}

pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, col, msg: String| ParseError { line, col, msg };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
            for _ in 0..n {
                if chars[*i] == '\n' {
                    *line += 1;
                    *col = 1;
                } else {
                    *col += 1;
                }
                *i += 1;
            }
        };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        let start = i;
        let tok = if c == '%'
            && chars
                .get(i + 1)
                .is_none_or(|&n| n != '"' && !is_name_char(n))
        {
            // The remainder operator of Kernel IR text.
            advance(&mut i, &mut line, &mut col, 1);
            Tok::Punct('%')
        } else if c == '%' || c == '@' {
            advance(&mut i, &mut line, &mut col, 1);
            let name = if i < chars.len() && chars[i] == '"' {
                let (s, n) = lex_string(&chars[i..]).map_err(|m| err(tl, tc, m))?;
                advance(&mut i, &mut line, &mut col, n);
                s
            } else {
                let s = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                if s == i {
                    return Err(err(tl, tc, format!("expected a name after `{c}`")));
                }
                chars[s..i].iter().collect()
            };
            if c == '%' {
                Tok::Value(name)
            } else {
                Tok::At(name)
            }
        } else if c == '"' {
            let (s, n) = lex_string(&chars[i..]).map_err(|m| err(tl, tc, m))?;
            advance(&mut i, &mut line, &mut col, n);
            Tok::Str(s)
        } else if c == '0' && chars.get(i + 1) == Some(&'x') {
            advance(&mut i, &mut line, &mut col, 2);
            let s = i;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                advance(&mut i, &mut line, &mut col, 1);
            }
            let hex: String = chars[s..i].iter().collect();
            if !hex.len().is_multiple_of(2) {
                return Err(err(tl, tc, "hex data has an odd number of digits".into()));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap())
                .collect();
            Tok::Hex(bytes)
        } else if c.is_ascii_digit()
            || ((c == '-' || c == '+')
                && chars
                    .get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == 'i' || *d == 'n'))
        {
            advance(&mut i, &mut line, &mut col, 1);
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                advance(&mut i, &mut line, &mut col, 1);
            }
            let text: String = chars[start..i].iter().collect();
            number(&text).ok_or_else(|| err(tl, tc, format!("bad number `{text}`")))?
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                advance(&mut i, &mut line, &mut col, 1);
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if "()[]{},:=<>?*+-/&|^!".contains(c) {
            advance(&mut i, &mut line, &mut col, 1);
            Tok::Punct(c)
        } else {
            return Err(err(tl, tc, format!("unexpected character `{c}`")));
        };
        toks.push(Token {
            tok,
            line: tl,
            col: tc,
        });
    }
    toks.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(toks)
}

fn number(text: &str) -> Option<Tok> {
    let ok = matches!(text, "+inf" | "-inf" | "+nan" | "-nan")
        || text.parse::<i128>().is_ok()
        || (text.contains(['.', 'e', 'E']) && text.parse::<f64>().is_ok());
    ok.then(|| Tok::Num(text.to_string()))
}

/// Reads a double-quoted string with Rust-style escapes; returns it and the
/// number of characters consumed.
fn lex_string(chars: &[char]) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut i = 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated string".into());
        };
        i += 1;
        match c {
            '"' => return Ok((out, i)),
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'u' => {
                        if chars.get(i) != Some(&'{') {
                            return Err("bad \\u escape".into());
                        }
                        let end = chars[i..]
                            .iter()
                            .position(|&c| c == '}')
                            .ok_or("bad \\u escape")?;
                        let hex: String = chars[i + 1..i + end].iter().collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape")?;
                        out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                        i += end + 1;
                    }
                    other => return Err(format!("unknown escape `\\{other}`")),
                }
            }
            c => out.push(c),
        }
    }
}
