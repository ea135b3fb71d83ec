//! String ops.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(CaseChange { None = "NONE", Lower = "LOWER", Upper = "UPPER" });

no_infer!(
    StringConcat,
    StringNormalizer,
    StringSplit,
    RegexFullMatch,
    TfIdfVectorizer
);
