//! String ops.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    StringConcat,
    StringNormalizer,
    StringSplit,
    RegexFullMatch,
    TfIdfVectorizer
);
