//! The text format: round trips, literals, errors with positions; and the
//! verifier on hand-written graphs.

use saturn_ir::text::{parse, print};
use saturn_ir::verify::verify;
use saturn_ir::{Tensor, interp};

/// Parses, checks the printed form equals the input, verifies.
fn round_trip(src: &str) {
    let g = parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    assert_eq!(print(&g), src);
    verify(&g).unwrap();
}

/// Parsing fails with this message at this position.
fn parse_error(src: &str, at: (usize, usize), msg: &str) {
    let e = parse(src).unwrap_err();
    assert_eq!((e.line, e.col), at, "{e}");
    assert!(e.msg.contains(msg), "`{}` does not contain `{msg}`", e.msg);
}

/// Parses fine but the verifier rejects it, naming the node.
fn verify_error(src: &str, msg: &str) {
    let g = parse(src).unwrap();
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains(msg), "`{e}` does not contain `{msg}`");
}

#[test]
fn round_trips() {
    round_trip("graph @g(%x: f32[2,3]) {\n  %y: f32[2,3] = relu(%x)\n  return %y\n}\n");
    round_trip(
        "graph @\"a graph\"(%\"onnx::In:0\": f32[N,3], %k: i64[1]) {\n  %c: f32[3] = const [0.5, -1.0, inf]\n  %y: f32[N,3] = mul(%\"onnx::In:0\", %c) loc(\"Mul 0\")\n  return %y, %k\n}\n",
    );
    round_trip(
        "graph @g(%x: f32[4,6]) {\n  %a: f32[4,?], %b: f32[4,?] = split(%x) {axis = 1, num_outputs = 2}\n  return %a, %b\n}\n",
    );
    round_trip(
        "graph @g(%x: f32[*], %s: bool[]) {\n  %y: f32[*] = leaky_relu(%x) {alpha = 0.25}\n  return %y\n}\n",
    );
    round_trip(
        "graph @g(%x: f32[2]) {\n  %s: string[2] = const [\"a\\\"b\", \"\\n\"]\n  %h: f16[2] = const [0.5, -2.0]\n  %u: u64[1] = const [18446744073709551615]\n  return %x, %s, %h, %u\n}\n",
    );
}

#[test]
fn subgraphs_with_captures() {
    round_trip(concat!(
        "graph @g(%c: bool[], %x: f32[2]) {\n",
        "  %y: f32[2] = if(%c) {then_branch = graph @then() captures(%x: f32[2]) {\n",
        "    %t: f32[2] = relu(%x)\n",
        "    return %t\n",
        "  }, else_branch = graph @else() captures(%x: f32[2]) {\n",
        "    %e: f32[2] = neg(%x)\n",
        "    return %e\n",
        "  }}\n",
        "  return %y\n",
        "}\n"
    ));
    verify_error(
        "graph @g(%c: bool[]) {\n  %y: f32[2] = if(%c) {then_branch = graph @t() captures(%nope: f32[2]) {\n    return %nope\n  }, else_branch = graph @e() captures(%nope: f32[2]) {\n    return %nope\n  }} loc(\"branch\")\n  return %y\n}\n",
        "captured value `nope` is not defined",
    );
}

#[test]
fn large_constants_are_hex_and_exact() {
    let mut g = saturn_ir::Graph::new("g");
    let vals: Vec<f32> = (0..40).map(|i| (i as f32 * 0.1).sin()).collect();
    let mut nan = vals.clone();
    nan[3] = f32::from_bits(0x7fc0_1234); // a NaN with a payload
    let c = g.add_const("c", Tensor::from_vec(vec![40], vals)).unwrap();
    let d = g
        .add_const("d", Tensor::from_vec(vec![2, 20], nan.clone()))
        .unwrap();
    g.set_outputs(vec![c, d]);
    let text = print(&g);
    assert!(text.contains("%c: f32[40] = const 0x"), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(print(&back), text);
    let t = back.const_value(back.lookup("d").unwrap()).unwrap();
    assert_eq!(t.as_slice::<f32>().unwrap()[3].to_bits(), 0x7fc0_1234);
}

#[test]
fn parse_errors_have_positions() {
    parse_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = relu(%z)\n  return %y\n}\n",
        (2, 21),
        "`%z` is not defined",
    );
    parse_error(
        "graph @g(%x: f33[2]) {\n}\n",
        (1, 14),
        "unknown dtype `f33`",
    );
    parse_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = frobnicate(%x)\n  return %y\n}\n",
        (2, 16),
        "unknown op `frobnicate`",
    );
    parse_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = leaky_relu(%x) {alpha = \"big\"}\n  return %y\n}\n",
        (2, 16),
        "attribute `alpha` expects a float",
    );
    parse_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = relu(%x) {beta = 1}\n  return %y\n}\n",
        (2, 16),
        "unknown attribute `beta`",
    );
    parse_error(
        "graph @g(%x: f32[2]) {\n  %x: f32[2] = relu(%x)\n  return %x\n}\n",
        (2, 3),
        "defined twice",
    );
    parse_error(
        "graph @g() {\n  %c: f32[3] = const [1.0, 2.0]\n  return %c\n}\n",
        (2, 22),
        "has 3 elements but the literal has 2",
    );
    parse_error(
        "graph @g() {\n  %c: i8[1] = const [300]\n  return %c\n}\n",
        (2, 22),
        "does not fit i8",
    );
    parse_error(
        "graph @g() {\n  %c: f32[N] = const [1.0]\n  return %c\n}\n",
        (2, 22),
        "fully known shape",
    );
    parse_error(
        "graph @g() {\n  %c: f32[1] = const [1.0]\n  return %c\n",
        (4, 1),
        "expected",
    );
    parse_error(
        "graph @g() {\n  %s: string[1] = const [\"open]\n}\n",
        (2, 26),
        "unterminated string",
    );
    parse_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = relu(%x) ~\n}\n",
        (2, 25),
        "unexpected character",
    );
}

#[test]
fn verifier_rejects_ill_typed_graphs() {
    verify_error(
        "graph @g(%x: f32[2]) {\n  %y: i64[2] = relu(%x) loc(\"r\")\n  return %y\n}\n",
        "node `r` (relu): output 0 (`y`) is recorded as i64[2] but the op gives f32[2]",
    );
    verify_error(
        "graph @g(%x: f32[2], %w: f32[3]) {\n  %y: f32[2] = add(%x, %w) loc(\"plus\")\n  return %y\n}\n",
        "node `plus` (add): shapes [2] and [3] do not broadcast",
    );
    verify_error(
        "graph @g(%x: f32[2], %w: i64[2]) {\n  %y: f32[2] = add(%x, %w) loc(\"mixed\")\n  return %y\n}\n",
        "node `mixed` (add): inputs 0 and 1 have different types",
    );
    verify_error(
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = add(%x) loc(\"short\")\n  return %y\n}\n",
        "node `short` (add): has 1 inputs",
    );
}

#[test]
fn verifier_rejects_cycles() {
    // Text cannot express a use before its definition, so build the cycle
    // by editing a graph: make the first node read the second's output.
    let mut g = parse(
        "graph @g(%x: f32[2]) {\n  %a: f32[2] = relu(%x) loc(\"first\")\n  %b: f32[2] = neg(%a) loc(\"second\")\n  return %b\n}\n",
    )
    .unwrap();
    let b = g.lookup("b").unwrap();
    let first = g.node_ids().next().unwrap();
    g.node_mut(first).inputs[0] = Some(b);
    let e = verify(&g).unwrap_err().to_string();
    assert!(
        e.contains("node `first` (relu)") && e.contains("cycle"),
        "{e}"
    );
}

#[test]
fn parsed_graphs_run() {
    let g = parse("graph @g(%x: f32[3]) {\n  %c: f32[3] = const [1.0, 2.0, 3.0]\n  %y: f32[3] = mul(%x, %c)\n  return %y\n}\n").unwrap();
    let y = interp::run(&g, vec![Tensor::from_vec(vec![3], vec![2.0f32, 2.0, 2.0])]).unwrap();
    assert_eq!(y[0].as_slice::<f32>().unwrap(), &[2.0, 4.0, 6.0]);
}
