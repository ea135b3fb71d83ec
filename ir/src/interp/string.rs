//! String ops.

use std::collections::HashMap;

use super::kernels::{broadcast_index, broadcast_shapes, checked_shape};
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::invalid;
use crate::ops::*;
use crate::tensor::{Data, Tensor};

fn strings<'a>(t: &'a Tensor, what: &str) -> Result<&'a [String], OpError> {
    t.as_strings()
        .ok_or_else(|| OpError::Invalid(format!("{what} must be strings, found {}", t.dtype())))
}

fn string_tensor(shape: Vec<usize>, v: Vec<String>) -> Result<Tensor, OpError> {
    Tensor::new(DType::Str, shape, Data::Str(v)).map_err(|e| OpError::Invalid(e.to_string()))
}

impl Eval for StringConcat {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let (x, y) = (strings(a, "X")?, strings(b, "Y")?);
        let shape = broadcast_shapes(&[a.shape(), b.shape()])?;
        let ia = broadcast_index(a.shape(), &shape);
        let ib = broadcast_index(b.shape(), &shape);
        let out = ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| format!("{}{}", x[i], y[j]))
            .collect();
        Ok(vec![string_tensor(shape, out)?])
    }
}

impl Eval for StringNormalizer {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let v = strings(x, "the input")?;
        let two_d = match x.shape() {
            [_] => false,
            [1, _] => true,
            s => return invalid!("the input must be [C] or [1, C], found {s:?}"),
        };
        let fold = |s: &str| {
            if self.is_case_sensitive {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let stop: std::collections::HashSet<String> =
            self.stopwords.iter().map(|s| fold(s)).collect();
        let mut out: Vec<String> = v
            .iter()
            .filter(|s| !stop.contains(&fold(s)))
            .map(|s| match self.case_change_action {
                CaseChange::None => s.clone(),
                CaseChange::Lower => s.to_lowercase(),
                CaseChange::Upper => s.to_uppercase(),
            })
            .collect();
        if out.is_empty() {
            out.push(String::new());
        }
        let c = out.len();
        let shape = if two_d { vec![1, c] } else { vec![c] };
        Ok(vec![string_tensor(shape, out)?])
    }
}

/// Splits on whitespace runs, ignoring leading and trailing whitespace,
/// making at most `max` splits; the rest after the last split is kept
/// whole (less its leading whitespace).
fn split_whitespace(s: &str, max: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if max.is_some_and(|m| out.len() == m) {
            out.push(rest.to_string());
            break;
        }
        match rest.find(char::is_whitespace) {
            Some(end) => {
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            None => {
                out.push(rest.to_string());
                break;
            }
        }
    }
    out
}

impl Eval for StringSplit {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let v = strings(x, "the input")?;
        let max = match self.maxsplit {
            Some(m) if m < 0 => return invalid!("maxsplit must not be negative"),
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            None => None,
        };
        let parts: Vec<Vec<String>> = v
            .iter()
            .map(|s| match self.delimiter.as_deref() {
                Some(d) if !d.is_empty() => match max {
                    Some(m) => s.splitn(m.saturating_add(1), d).map(String::from).collect(),
                    None => s.split(d).map(String::from).collect(),
                },
                _ => split_whitespace(s, max),
            })
            .collect();
        let width = parts.iter().map(Vec::len).max().unwrap_or(0);
        let mut dims: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
        dims.push(width as i64);
        let shape = checked_shape(&dims)?;
        let mut flat = Vec::with_capacity(v.len() * width);
        let mut counts = Vec::with_capacity(v.len());
        for p in parts {
            counts.push(p.len() as i64);
            let pad = width - p.len();
            flat.extend(p);
            flat.extend(std::iter::repeat_n(String::new(), pad));
        }
        Ok(vec![
            string_tensor(shape, flat)?,
            Tensor::from_vec(x.shape().to_vec(), counts),
        ])
    }
}

impl Eval for RegexFullMatch {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let v = strings(x, "the input")?;
        let re = regex::Regex::new(&format!("^(?:{})$", self.pattern))
            .map_err(|e| OpError::Invalid(format!("bad pattern: {e}")))?;
        let out = v.iter().map(|s| re.is_match(s)).collect();
        Ok(vec![Tensor::from_vec(x.shape().to_vec(), out)])
    }
}

/// One token of a TfIdfVectorizer sequence.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Token<'a> {
    Int(i64),
    Str(&'a str),
}

impl TfIdfVectorizer {
    /// The pool's n-grams of lengths `[min, max]`, each with its output
    /// coordinate. Section `i` of the pool (from `ngram_counts[i]`) holds
    /// n-grams of length `i + 1`.
    fn pool(&self) -> Result<HashMap<Vec<Token<'_>>, usize>, OpError> {
        let tokens: Vec<Token> = match (&self.pool_strings, &self.pool_int64s) {
            (Some(s), None) => s.iter().map(|s| Token::Str(s)).collect(),
            (None, Some(i)) => i.iter().map(|&i| Token::Int(i)).collect(),
            _ => return invalid!("exactly one of pool_strings and pool_int64s must be set"),
        };
        let mut map = HashMap::new();
        let mut id = 0usize;
        for (k, &start) in self.ngram_counts.iter().enumerate() {
            let end = self
                .ngram_counts
                .get(k + 1)
                .map_or(tokens.len() as i64, |&e| e);
            if start < 0 || end < start || end as usize > tokens.len() {
                return invalid!("ngram_counts {:?} do not fit the pool", self.ngram_counts);
            }
            let n = k + 1;
            let section = &tokens[start as usize..end as usize];
            for gram in section.chunks_exact(n) {
                if n as i64 >= self.min_gram_length && n as i64 <= self.max_gram_length {
                    let &index = self.ngram_indexes.get(id).ok_or_else(|| {
                        OpError::Invalid("ngram_indexes is shorter than the pool".into())
                    })?;
                    map.insert(gram.to_vec(), index as usize);
                }
                id += 1;
            }
        }
        Ok(map)
    }
}

impl Eval for TfIdfVectorizer {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let size = self.output_size()?;
        let (rows, cols, out_shape) = match x.shape() {
            [] => (1, 1, vec![size]),
            &[c] => (1, c, vec![size]),
            &[b, c] => (b, c, vec![b, size]),
            s => return invalid!("the input must be [C] or [N, C], found {s:?}"),
        };
        checked_shape(&out_shape.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
        let tokens: Vec<Token> = match x.data() {
            Data::Str(v) => v.iter().map(|s| Token::Str(s)).collect(),
            Data::I32(v) => v.iter().map(|&i| Token::Int(i as i64)).collect(),
            Data::I64(v) => v.iter().map(|&i| Token::Int(i)).collect(),
            _ => return invalid!("the input must be strings, int32 or int64"),
        };
        let pool = self.pool()?;
        let (min, max) = (self.min_gram_length, self.max_gram_length);
        if min < 1 || max < min {
            return invalid!("gram lengths [{min}, {max}] are not valid");
        }
        if self.max_skip_count < 0 {
            return invalid!("max_skip_count must not be negative");
        }
        let (min, max) = (min as usize, max as usize);
        let mut counts = vec![0u64; rows * size];
        for r in 0..rows {
            let row = &tokens[r * cols..(r + 1) * cols];
            let freq = &mut counts[r * size..(r + 1) * size];
            let mut gram = Vec::with_capacity(max);
            let max_skip = (self.max_skip_count as usize).min(cols);
            for skip in 0..=max_skip {
                let step = skip + 1;
                // 1-grams do not depend on the skip: count them once.
                let first = if skip > 0 { min.max(2) } else { min };
                for start in 0..cols {
                    gram.clear();
                    for n in 1..=max {
                        let Some(&t) = row.get(start + (n - 1) * step) else {
                            break;
                        };
                        gram.push(t);
                        if n >= first
                            && let Some(&i) = pool.get(&gram)
                        {
                            freq[i] += 1;
                        }
                    }
                }
            }
        }
        let w = self.weights.as_deref().unwrap_or(&[]);
        let out: Vec<f32> = counts
            .iter()
            .enumerate()
            .map(|(p, &c)| {
                let weight = w.get(p % size).copied();
                match (self.mode.as_str(), weight) {
                    ("IDF", Some(w)) => {
                        if c > 0 {
                            w
                        } else {
                            0.0
                        }
                    }
                    ("IDF", None) => (c > 0) as u8 as f32,
                    ("TFIDF", Some(w)) => w * c as f32,
                    _ => c as f32,
                }
            })
            .collect();
        if !matches!(self.mode.as_str(), "TF" | "IDF" | "TFIDF") {
            return invalid!("mode must be TF, IDF or TFIDF, found {}", self.mode);
        }
        Ok(vec![Tensor::from_vec(out_shape, out)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_splitting() {
        assert_eq!(split_whitespace("  a  b c ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("  a  b c ", Some(1)), vec!["a", "b c "]);
        assert_eq!(split_whitespace("   ", None), Vec::<String>::new());
        assert_eq!(split_whitespace("a", Some(0)), vec!["a"]);
    }

    fn tfidf(skip: i64, min: i64, max: i64, x: Vec<i64>) -> Vec<f32> {
        // Pool: 1-grams [2, 3], 2-grams [(5, 6), (2, 3)].
        let op = TfIdfVectorizer {
            max_gram_length: max,
            max_skip_count: skip,
            min_gram_length: min,
            mode: "TF".into(),
            ngram_counts: vec![0, 2],
            ngram_indexes: vec![0, 1, 2, 3],
            pool_int64s: Some(vec![2, 3, 5, 6, 2, 3]),
            pool_strings: None,
            weights: None,
        };
        let x = Tensor::from_vec(vec![x.len()], x);
        let out = super::super::eval_op(&Op::from(op), &[Some(&x)], &[]).unwrap();
        out[0].as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn tfidf_counts_grams_with_skips() {
        // 2 3 5 2 6 3: unigrams 2 (×2), 3 (×2); bigram (2,3) once without
        // skips; with one skip also (5,6) and (2,3) at distance 2: 2_5? no.
        let x = vec![2, 3, 5, 2, 6, 3];
        assert_eq!(tfidf(0, 1, 2, x.clone()), vec![2.0, 2.0, 0.0, 1.0]);
        // Distance 2 adds (5, 6) (positions 2, 4) and (2, 3) (positions 3, 5);
        // unigrams are not counted again.
        assert_eq!(tfidf(1, 1, 2, x.clone()), vec![2.0, 2.0, 1.0, 2.0]);
        assert_eq!(tfidf(1, 2, 2, x), vec![0.0, 0.0, 1.0, 2.0]);
    }

    fn strings_of(v: &[&str]) -> Tensor {
        string_tensor(vec![v.len()], v.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn regex_matches_whole_strings_only() {
        let op = RegexFullMatch {
            pattern: "a+b".into(),
        };
        let x = strings_of(&["aab", "xaab", "ab", "aabx"]);
        let y = super::super::eval_op(&op.into(), &[Some(&x)], &[]).unwrap();
        assert_eq!(
            y[0].as_slice::<bool>().unwrap(),
            &[true, false, true, false]
        );
        let bad = RegexFullMatch {
            pattern: "(".into(),
        };
        assert!(super::super::eval_op(&bad.into(), &[Some(&x)], &[]).is_err());
    }

    #[test]
    fn normalizer_drops_stop_words_ignoring_case() {
        let op = StringNormalizer {
            case_change_action: CaseChange::Upper,
            is_case_sensitive: false,
            locale: None,
            stopwords: vec!["the".into()],
        };
        let x = strings_of(&["The", "cat", "THE"]);
        let y = super::super::eval_op(&op.into(), &[Some(&x)], &[]).unwrap();
        assert_eq!(y[0].as_strings().unwrap(), &["CAT".to_string()]);
    }
}
