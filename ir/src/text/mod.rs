//! The `.tir` text format of Graph IR.
//!
//! ```text
//! # Lines starting with '#' are comments.
//! graph @main(%x: f32[1,3,N], %k: i64[1]) {
//!   %w: f32[3] = const [0.5, 1.0, -2.0]
//!   %y: f32[1,3,N] = mul(%x, %w) loc("Mul_0")
//!   %a: f32[1,1,N], %b: f32[1,2,N] = split(%y) {axis = 1, num_outputs = 2}
//!   return %a, %b
//! }
//! ```
//!
//! - Values are `%name` (quoted, `%"onnx::Add_3"`, when the name has other
//!   characters); every value is written once with its type.
//! - Types are `dtype[dims]`: a dim is a number, a symbol (`N`, `"batch size"`)
//!   or `?` (unknown); `[*]` is an unknown rank, `[]` a scalar.
//! - A node is `outputs = op(inputs) {attributes} loc("node name")`; an
//!   omitted optional input is `_`. Attributes at their default values are
//!   not printed.
//! - Constants are `const [elements]` (flat, row-major) or `const 0x…`
//!   (little-endian bytes, one byte per element for the sub-byte types).
//! - Subgraphs (attributes of `if`, `loop`, `scan`) are nested `graph`s that
//!   list the enclosing values they use in `captures(...)`.
//!
//! `parse(print(g))` prints identically to `g`.

pub(crate) mod lexer;
pub(crate) mod parse;
pub(crate) mod print;

pub use parse::{ParseError, parse};
pub use print::{PrintOptions, print, print_with};
