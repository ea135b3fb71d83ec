//! Kernel IR text format and verifier: round trips of hand-built and
//! random kernels, parse errors with positions, and the verifier on
//! ill-formed kernels.

use proptest::prelude::*;
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::text::{parse_kernel, parse_kernels, print_kernel};
use saturn_ir::kernel::verify::verify_kernel;
use saturn_ir::kernel::*;
use saturn_ir::{AttrValue, DType};

use DType::*;

fn ty(elem: DType, lanes: u16) -> Ty {
    Ty::vector(elem, lanes)
}

/// The kernel with every name blanked, as a string: what must survive a
/// round trip (printed names are made unique, so they may differ; `Debug`
/// compares NaN constants as equal).
fn structure(k: &Kernel) -> String {
    let mut k = k.clone();
    k.bufs.iter_mut().for_each(|b| b.name.clear());
    k.dims.iter_mut().for_each(|d| d.clear());
    k.vars.iter_mut().for_each(|v| v.name.clear());
    format!("{k:?}")
}

/// Verifies `k`, prints it, parses it back: the text is a fixed point and
/// the parsed kernel has the same structure (variables are numbered in
/// the order the body defines them, as the builder does).
fn round_trip(k: &Kernel) -> String {
    verify_kernel(k).unwrap_or_else(|e| panic!("{e}\n{}", print_kernel(k)));
    let text = print_kernel(k);
    let back = parse_kernel(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print_kernel(&back), text);
    assert_eq!(structure(&back), structure(k), "{text}");
    verify_kernel(&back).unwrap();
    text
}

/// Parses `src`, which must print back exactly as written.
fn check(src: &str) -> Kernel {
    let k = parse_kernel(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    assert_eq!(print_kernel(&k), src);
    k
}

// ---------------------------------------------------------------------------
// Hand-built kernels

fn add_relu() -> Kernel {
    let mut b = KernelBuilder::new("add_relu");
    let x = b.input("x", F32, 1024);
    let bias = b.input("b", F32, 64);
    let y = b.output("y", F32, 1024);
    let n = b.dim("n");
    b.scratch("t", F32, n * 4);
    b.schedule("tile", AttrValue::Ints(vec![4, 8]));
    b.schedule("vector", AttrValue::Int(4));
    b.for_("i", 0, 16, 1, LoopKind::Parallel, |b, i| {
        b.for_("j", 0, 64, 4, LoopKind::Serial, |b, j| {
            let at = i.clone() * 64 + j.clone();
            let a = b.let_("a", Expr::load_vec(x, at.clone(), 4, 1, None));
            let sum = Expr::bin(BinOp::Add, a, Expr::load_vec(bias, j, 4, 1, None));
            b.store_vec(y, at, sum.max(Expr::float(0.0, ty(F32, 4))), 1, None);
        });
    });
    b.finish()
}

#[test]
fn prints_the_documented_form() {
    let text = round_trip(&add_relu());
    assert_eq!(
        text,
        "kernel @add_relu(in %x: f32[1024], in %b: f32[64], out %y: f32[1024], scratch %t: f32[%n * 4]) dims(%n) schedule {tile = [4, 8], vector = 4} {
  parallel for %i = 0 to 16 {
    for %j = 0 to 64 step 4 {
      let %a: f32x4 = load %x[%i * 64 + %j] x4
      store %y[%i * 64 + %j] x4 = max(%a + load %b[%j] x4, 0.0: f32x4)
    }
  }
}
"
    );
    assert_eq!(add_relu().to_string(), text);
}

/// A softmax row with masked remainders, `exp` expanded, reductions and a
/// conditional: loops of every kind, `var`s, masks, strides.
fn softmax() -> Kernel {
    let mut b = KernelBuilder::new("softmax");
    let x = b.input("x", F32, 1000);
    let y = b.output("y", F32, 1000);
    let n = b.dim("n");
    b.schedule("vector", AttrValue::Int(4));
    b.schedule("parallel", AttrValue::Str("row".into()));
    let v4 = ty(F32, 4);
    let sum = b.decl("sum", Expr::float(0.0, v4));
    let max = b.decl("max", Expr::float(f64::NEG_INFINITY, Ty::F32));
    b.for_("i", 0, n.clone(), 4, LoopKind::Unroll(2), |b, i| {
        let left = b.let_("left", (n.clone() - i.clone()).min(Expr::idx(4)));
        let v = b.let_("v", Expr::load_vec(x, i.clone(), 4, 1, Some(left.clone())));
        let m = Expr::Reduce(ReduceOp::Max, Box::new(v.clone()));
        b.assign(max, Expr::Var(max).max(m));
        let e = saturn_ir::kernel::math::exp(b, v);
        b.assign(sum, Expr::bin(BinOp::Add, Expr::Var(sum), e.clone()));
        b.store_vec(y, i.clone(), e, 1, Some(n.clone() - i));
    });
    let total = b.let_(
        "total",
        Expr::Reduce(ReduceOp::Add, Box::new(Expr::Var(sum))),
    );
    b.if_(
        Expr::bin(BinOp::Gt, total.clone(), Expr::f32(0.0)),
        |b| {
            b.range("i", n.clone(), |b, i| {
                let v = Expr::load(y, i.clone());
                b.store(y, i, Expr::bin(BinOp::Div, v, total.clone()));
            })
        },
        |b| b.call("trap", vec![Expr::idx(1)]),
    );
    b.for_("k", 0, 8, 1, LoopKind::Serial, |b, k| {
        let g = Expr::load_vec(x, k.clone() * 2, 2, 2, None);
        b.store_vec(y, k + 500, g, -1, Some(Expr::idx(1)));
    });
    b.finish()
}

/// Every operation and constant form, on the types it applies to.
fn every_op() -> Kernel {
    let mut b = KernelBuilder::new("every op");
    let xf = b.input("xf", F32, 64);
    let xi = b.input("xi", I32, 64);
    let xb = b.input("xb", Bool, 64);
    let xu = b.input("xu", U64, 64);
    let xd = b.input("xd", F64, 64);
    let s8 = b.scratch("s8", U8, 64);
    let out_f = b.output("out_f", F32, 64);
    let out_i = b.output("out_i", I32, 64);
    let out_d = b.output("out_d", F64, 64);
    b.schedule("eps", AttrValue::Float(1e-5));
    b.schedule("mode", AttrValue::Sym("fast".into()));
    b.schedule("scales", AttrValue::Floats(vec![0.5, -2.0]));
    b.schedule("odd key", AttrValue::Strs(vec!["a".into(), "b c".into()]));
    let f = b.let_("f", Expr::load(xf, Expr::idx(0)));
    let fv = b.let_("fv", Expr::load_vec(xf, Expr::idx(4), 4, 1, None));
    let i = b.let_("i", Expr::load(xi, Expr::idx(0)));
    let iv = b.let_("iv", Expr::load_vec(xi, Expr::idx(8), 4, 3, None));
    let bo = b.let_("bo", Expr::load(xb, Expr::idx(0)));
    let bv = b.let_("bv", Expr::load_vec(xb, Expr::idx(0), 4, 1, None));
    let u = b.let_("u", Expr::load(xu, Expr::idx(0)));
    let d = b.let_("d", Expr::load(xd, Expr::idx(0)));
    let by = b.let_("by", Expr::load(s8, Expr::idx(0)));
    use UnOp::*;
    for op in [Neg, Abs] {
        b.let_("un", Expr::un(op, f.clone()));
        b.let_("un", Expr::un(op, i.clone()));
    }
    for op in [Sqrt, Floor, Ceil, Round, Trunc] {
        b.let_("un", Expr::un(op, fv.clone()));
    }
    b.let_("un", Expr::un(Not, bo.clone()));
    b.let_("un", Expr::un(Not, i.clone()));
    use BinOp::*;
    for op in [Add, Sub, Mul, Div, Rem, Min, Max, Ldexp] {
        b.let_("bin", Expr::bin(op, fv.clone(), fv.clone()));
    }
    for op in [Rem, Shl, Shr, And, Or, Xor] {
        b.let_("bin", Expr::bin(op, iv.clone(), iv.clone()));
    }
    for op in [And, Or, Xor] {
        b.let_("bin", Expr::bin(op, bv.clone(), bv.clone()));
        b.let_("bin", Expr::bin(op, by.clone(), by.clone()));
    }
    for op in [Eq, Ne, Lt, Le, Gt, Ge] {
        b.let_("cmp", Expr::bin(op, fv.clone(), fv.clone()));
        b.let_("cmp", Expr::bin(op, u.clone(), u.clone()));
    }
    // Precedence and associativity: each needs (or not) its parentheses.
    let (a, c) = (i.clone(), Expr::int(3, Ty::scalar(I32)));
    let prec = [
        Expr::bin(Sub, a.clone(), Expr::bin(Sub, c.clone(), a.clone())),
        Expr::bin(Sub, Expr::bin(Sub, a.clone(), c.clone()), a.clone()),
        Expr::bin(Mul, Expr::bin(Add, a.clone(), c.clone()), a.clone()),
        Expr::bin(Add, a.clone(), Expr::bin(Mul, c.clone(), a.clone())),
        Expr::bin(Shl, Expr::bin(Add, a.clone(), c.clone()), c.clone()),
        Expr::bin(And, Expr::bin(Or, a.clone(), c.clone()), c.clone()),
        Expr::bin(
            Or,
            Expr::bin(And, a.clone(), c.clone()),
            Expr::bin(Xor, c.clone(), a.clone()),
        ),
        Expr::bin(Div, a.clone(), Expr::bin(Rem, c.clone(), a.clone())),
    ];
    for e in prec {
        b.let_("prec", e);
    }
    let lt = Expr::bin(Lt, a.clone(), c.clone());
    b.let_("prec", Expr::bin(Eq, lt.clone(), lt.clone()));
    b.let_("prec", Expr::bin(And, lt.clone(), lt));
    b.let_(
        "fma",
        Expr::mul_add(d.clone(), d.clone(), Expr::float(0.5, Ty::scalar(F64))),
    );
    let cmp = Expr::bin(Gt, fv.clone(), Expr::float(0.0, ty(F32, 4)));
    b.let_(
        "sel",
        Expr::select(cmp, fv.clone(), Expr::float(f64::INFINITY, ty(F32, 4))),
    );
    b.let_("cast", f.clone().cast(I32));
    b.let_("cast", i.clone().cast(F64));
    b.let_("cast", bv.clone().cast(F32));
    b.let_("cast", iv.clone().cast(Bool));
    b.let_("bits", f.clone().bitcast(I32));
    b.let_("bits", u.clone().bitcast(F64));
    b.let_("splat", f.clone().splat(8));
    b.let_("lane", Expr::Extract(Box::new(fv.clone()), 3));
    for op in [ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max] {
        b.let_("red", Expr::Reduce(op, Box::new(fv.clone())));
        b.let_("red", Expr::Reduce(op, Box::new(iv.clone())));
    }
    let call = Expr::Call("expf".into(), vec![f.clone()], Ty::F32);
    b.let_("call", call);
    b.let_("call", Expr::Call("rand".into(), vec![], ty(U32, 4)));
    b.call("fence", vec![]);
    b.call("trace", vec![f.clone(), i.clone(), Expr::idx(7)]);
    b.prefetch(xf, i.clone().cast(DType::I64) + 4096);
    // Constants of every kernel dtype, at their extremes.
    let ints = [
        (I8, -128),
        (I16, 32767),
        (I32, -5),
        (I64, i64::MIN),
        (U8, 255),
        (U16, 0),
        (U32, u32::MAX as i64),
        (U64, -1),
        (Bool, 1),
    ];
    for (dt, v) in ints {
        b.let_(
            "c",
            Expr::bin(
                Eq,
                Expr::int(v, Ty::scalar(dt)),
                Expr::int(v, Ty::scalar(dt)),
            ),
        );
        b.let_(
            "c",
            Expr::bin(Eq, Expr::int(v, ty(dt, 2)), Expr::int(v, ty(dt, 2))),
        );
    }
    b.let_(
        "c",
        Expr::bin(Add, Expr::int(7, ty(I64, 2)), Expr::int(-7, ty(I64, 2))),
    );
    let floats = [
        0.1,
        1.0 / 3.0,
        -0.0,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        -1e300,
        f64::NAN,
        -f64::NAN,
        f64::NEG_INFINITY,
        f32::MAX as f64,
        f32::MIN_POSITIVE as f64 / 8.0,
        1e16,
        123456789.0,
    ];
    for v in floats {
        let t = Ty::scalar(F64);
        b.let_("k", Expr::bin(Add, Expr::float(v, t), Expr::float(v, t)));
        let t = ty(F32, 4);
        b.let_("k", Expr::bin(Sub, Expr::float(v, t), Expr::float(v, t)));
    }
    // Stores of every shape.
    b.store(out_f, Expr::idx(0), f.clone());
    b.store_vec(out_f, Expr::idx(4), fv.clone(), 1, None);
    b.store_vec(out_i, Expr::idx(8), iv, 2, Some(Expr::idx(3)));
    b.store_vec(s8, Expr::idx(1), by.clone().splat(4), 0, None);
    b.store(out_d, Expr::idx(1), d);
    b.store(out_i, Expr::idx(3), i.clone());
    // A mask and an index that are not names.
    let m = Expr::bin(
        Sub,
        Expr::idx(4),
        Expr::bin(Rem, i.clone().cast(I64), Expr::idx(4)),
    );
    let ld = Expr::load_vec(xf, Expr::idx(0), 4, 1, Some(m.clone()));
    b.store_vec(out_f, Expr::idx(0) + 8, ld, 1, Some(m));
    b.finish()
}

#[test]
fn hand_built_kernels_round_trip() {
    for k in [add_relu(), softmax(), every_op()] {
        round_trip(&k);
    }
}

#[test]
fn precedence_prints_minimal_parentheses() {
    let text = round_trip(&every_op());
    for line in [
        "let %prec: i32 = %i - (3: i32 - %i)",
        "let %prec.1: i32 = %i - 3: i32 - %i",
        "let %prec.2: i32 = (%i + 3: i32) * %i",
        "let %prec.3: i32 = %i + 3: i32 * %i",
        "let %prec.4: i32 = %i + 3: i32 << 3: i32",
        "let %prec.5: i32 = (%i | 3: i32) & 3: i32",
        "let %prec.6: i32 = %i & 3: i32 | 3: i32 ^ %i",
        "let %prec.7: i32 = %i / (3: i32 % %i)",
        "let %prec.8: bool = (%i < 3: i32) == (%i < 3: i32)",
        "let %prec.9: bool = (%i < 3: i32) & (%i < 3: i32)",
        "store %out_f[8] x4 mask (4 - cast<i64>(%i) % 4) = load %xf[0] x4 mask (4 - cast<i64>(%i) % 4)",
        "store %s8[1] x4 stride 0 = splat<4>(%by)",
        "store %out_i[8] x4 stride 2 mask 3 = %iv",
        "let %iv: i32x4 = load %xi[8] x4 stride 3",
        "let %c.14: bool = 18446744073709551615: u64 == 18446744073709551615: u64",
        "let %call.1: u32x4 = call @rand(): u32x4",
        "call @trace(%f, %i, 7)",
        "let %k.14: f64 = nan: f64 + nan: f64",
        "let %k.16: f64 = -nan: f64 + -nan: f64",
        "let %k.19: f32x4 = -inf: f32x4 - -inf: f32x4",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    // `&` binds tighter than `<`: the printed form of `a < b & c < d`
    // as a tree of `<` over `&` has parentheses.
    let k = parse_kernel("kernel @k(out %y: bool[1]) {\n  store %y[0] = 1 < (2 & 3) < 4\n}\n");
    assert!(k.unwrap_err().msg.contains("comparisons do not chain"));
}

#[test]
fn float_constants_are_exact() {
    let k = every_op();
    let back = parse_kernel(&print_kernel(&k)).unwrap();
    let mut want = Vec::new();
    let mut got = Vec::new();
    visit_exprs(&k.body, &mut |e| {
        if let Expr::Float(v, _) = e {
            want.push(v.to_bits());
        }
    });
    visit_exprs(&back.body, &mut |e| {
        if let Expr::Float(v, _) = e {
            got.push(v.to_bits());
        }
    });
    // NaN payloads are not spelled; the sign is.
    let canon = |b: u64| {
        let v = f64::from_bits(b);
        if v.is_nan() {
            (b >> 63, u64::MAX)
        } else {
            (0, b)
        }
    };
    assert_eq!(want.len(), got.len());
    assert!(want.len() > 50);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            canon(*w),
            canon(*g),
            "{} vs {}",
            f64::from_bits(*w),
            f64::from_bits(*g)
        );
    }
}

#[test]
fn names_are_made_unique() {
    let mut b = KernelBuilder::new("names");
    let x = b.input("x", F32, 8);
    let y = b.output("x", F32, 8);
    let n = b.dim("n");
    let n2 = b.dim("n");
    b.range("n", n.clone(), |b, i| {
        let v = b.let_("x", Expr::load(x, i.clone()));
        b.store(y, i, v);
    });
    b.range("n", n2, |b, i| {
        let e = saturn_ir::kernel::math::exp(b, Expr::load(x, i.clone()));
        b.store(y, i, e);
    });
    let k = b.finish();
    let text = round_trip(&k);
    let head = "kernel @names(in %x: f32[8], out %x.1: f32[8]) dims(%n, %n.1) {\n  for %n.2 = 0 to %n {\n    let %x.2: f32 = load %x[%n.2]\n    store %x.1[%n.2] = %x.2\n  }\n  for %n.3 = 0 to %n.1 {\n    let %x.3: f32 = load %x[%n.3]\n    let %n.4: f32 = round(%x.3 * 1.4426950408889634: f32)\n";
    assert!(text.starts_with(head), "{text}");
}

/// A variable may be defined in disjoint blocks (a pass that copies a loop
/// body does that); it keeps one name, so it reads back as one variable.
#[test]
fn one_variable_defined_in_two_blocks() {
    let mut k = add_relu();
    let again = k.body[0].clone();
    k.body.push(again);
    let text = round_trip(&k);
    assert_eq!(text.matches("parallel for %i = 0 to 16 {").count(), 2);
    assert_eq!(text.matches("let %a: f32x4").count(), 2);
    assert_eq!(parse_kernel(&text).unwrap().vars.len(), 3);
}

#[test]
fn hand_written_text() {
    // Scoped names: `%j` and `%t` are defined in two sibling blocks, with
    // one type, so each is one variable; types are inferred where left
    // out; comments and free spacing.
    let src = "
        # a comment
        kernel @k(in %a: i32[%n], out %b: i32[%n]) dims(%n) {
          var %acc: i32 = 0: i32
          for %j = 0 to %n { let %t = load %a[%j]   %acc = %acc+%t }
          for %j = 0 to %n {
            let %t: i32 = load %a[%j] * 2: i32   # doubled
            store %b[%j] = %t - %acc
          }
        }";
    let k = parse_kernel(src).unwrap();
    verify_kernel(&k).unwrap();
    assert_eq!(k.vars.len(), 3, "{:?}", k.vars);
    assert_eq!(
        print_kernel(&k),
        "kernel @k(in %a: i32[%n], out %b: i32[%n]) dims(%n) {
  var %acc: i32 = 0: i32
  for %j = 0 to %n {
    let %t: i32 = load %a[%j]
    %acc = %acc + %t
  }
  for %j = 0 to %n {
    let %t: i32 = load %a[%j] * 2: i32
    store %b[%j] = %t - %acc
  }
}
"
    );
    // A number right after an operand is an operator and a number.
    let k = check("kernel @k(out %y: i64[4]) {\n  store %y[0] = 3 - -1\n}\n");
    let Stmt::Store { value, .. } = &k.body[0] else {
        panic!()
    };
    assert_eq!(*value, Expr::bin(BinOp::Sub, Expr::idx(3), Expr::idx(-1)));
    let k = parse_kernel("kernel @k(out %y: i64[4]) {\n  store %y[0] = 3 -1 +2\n}\n").unwrap();
    let Stmt::Store { value, .. } = &k.body[0] else {
        panic!()
    };
    let want = Expr::bin(
        BinOp::Add,
        Expr::bin(BinOp::Sub, Expr::idx(3), Expr::idx(1)),
        Expr::idx(2),
    );
    assert_eq!(*value, want);
}

#[test]
fn loops_ifs_and_kernels_in_one_file() {
    let a = "kernel @a(out %y: f32[4]) schedule {unroll = 2} {
  unroll 2 for %i = 0 to 4 {
    if %i % 2 == 0 {
      store %y[%i] = 1.0: f32
    } else {
      if %i > 2 {
        call @\"note it\"(%i)
      }
    }
  }
}
";
    let b = "kernel @b() {\n}\n";
    let both = parse_kernels(&format!("{a}\n# between\n{b}")).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(print_kernel(&both[0]), a);
    assert_eq!(print_kernel(&both[1]), b);
    verify_kernel(&both[0]).unwrap();
    assert_eq!(both[0].schedule["unroll"], AttrValue::Int(2));
    assert_eq!(parse_kernels("  # nothing\n").unwrap(), vec![]);
}

// ---------------------------------------------------------------------------
// Parse errors

/// Parsing fails with this message at this position.
fn parse_error(src: &str, at: (usize, usize), msg: &str) {
    let e = parse_kernel(src).unwrap_err();
    assert_eq!((e.line, e.col), at, "{e}");
    assert!(e.msg.contains(msg), "`{}` does not contain `{msg}`", e.msg);
}

#[test]
fn parse_errors_say_where_and_what() {
    parse_error("kernal @k() {}", (1, 1), "expected `kernel`");
    parse_error("kernel k() {}", (1, 8), "expected the kernel's name");
    parse_error(
        "kernel @k(inout %x: f32[4]) {}",
        (1, 11),
        "expected a buffer (`in`, `out` or `scratch`",
    );
    parse_error(
        "kernel @k(in %x: f33[4]) {}",
        (1, 18),
        "expected an element type",
    );
    parse_error(
        "kernel @k(in %x: f32[4) {}",
        (1, 21),
        "this `[` is never closed",
    );
    parse_error(
        "kernel @k(in %x: f32[%m]) {}",
        (1, 22),
        "`%m` is not defined",
    );
    parse_error(
        "kernel @k(in %x: f32[4], in %x: f32[4]) {}",
        (1, 29),
        "buffer `%x` is declared twice",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = 1.5\n}",
        (2, 17),
        "a float constant needs its type",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = %z\n}",
        (2, 17),
        "`%z` is not defined",
    );
    parse_error(
        "kernel @k(in %x: f32[4], out %y: f32[4]) {\n  store %y[0] = %x\n}",
        (2, 17),
        "`%x` is a buffer; read it with `load %x[index]`",
    );
    parse_error(
        "kernel @k(out %y: i64[4]) {\n  for %i = 0 to 4 {\n  }\n  store %y[0] = %i\n}",
        (4, 17),
        "`%i` is not in scope here",
    );
    parse_error(
        "kernel @k(out %y: i64[4]) {\n  for %i = 0 until 4 {\n  }\n}",
        (2, 14),
        "expected `to`, found `until`",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] x4 = 1.0: f32x8\n}",
        (2, 15),
        "the store says x4 but the value has type f32x8",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = frobnicate(1)\n}",
        (2, 17),
        "`frobnicate`, which is not an operation",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = max(1.0: f32)\n}",
        (2, 17),
        "`max` takes 2 arguments, not 1",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  let %a: f32x = 1.0: f32\n}",
        (2, 11),
        "expected a type such as `f32` or `f32x4`",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  let %a = 1 +\n}",
        (3, 1),
        "expected an expression, found `}`",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  load %y[0]\n}",
        (2, 3),
        "expected a statement",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  %a = 1\n}",
        (2, 3),
        "`%a` is not a variable in scope",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = 1 < 2 < 3\n}",
        (2, 23),
        "comparisons do not chain",
    );
    parse_error(
        "kernel @k(out %y: i8[4]) {\n  store %y[0] = 99999999999999999999: i8\n}",
        (2, 17),
        "does not fit i8",
    );
    parse_error(
        "kernel @k(out %y: f32[4]) {\n  store %y[0] = 1\n",
        (3, 1),
        "expected a statement",
    );
    parse_error(
        "kernel @k() schedule {a = 1, a = 2} {\n}",
        (1, 30),
        "schedule key `a` is given twice",
    );
    parse_error(
        "kernel @k() {\n}\nkernel @j() {}",
        (3, 1),
        "expected end of input",
    );
    parse_error(
        "kernel @k() {\n  let %a = 1 ~ 2\n}",
        (2, 14),
        "unexpected character",
    );
    let deep = format!(
        "kernel @k(out %y: i64[1]) {{\n  store %y[0] = {}1{}\n}}",
        "(".repeat(300),
        ")".repeat(300)
    );
    parse_error(&deep, (2, 272), "nest more than 256 deep");
    // `-` may be part of a name (as in Graph IR): space it as an operator.
    parse_error(
        "kernel @k() {\n  let %a = 1\n  let %b = %a-%a\n}",
        (3, 12),
        "`%a-` is not defined",
    );
}

// ---------------------------------------------------------------------------
// The verifier

/// Parses fine but the verifier rejects it with a message naming the
/// problem and the statement.
fn verify_error(src: &str, msg: &str, at: &str) {
    let k = parse_kernel(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let e = verify_kernel(&k).unwrap_err();
    assert!(e.msg.contains(msg), "`{e}` does not contain `{msg}`");
    assert_eq!(e.at, at, "{e}");
    assert!(e.to_string().starts_with(&format!("kernel @{}: ", k.name)));
}

/// A kernel with one body built from `body`.
fn kernel_src(body: &str) -> String {
    format!(
        "kernel @bad(in %x: f32[%n], in %i: i32[16], out %y: f32[%n], out %m: bool[4]) dims(%n) {{\n{body}\n}}\n"
    )
}

#[test]
fn verifier_rejects_ill_typed_text() {
    let cases = [
        (
            "  let %a: f32 = 1: i32",
            "has type f32, but `let` gives it i32",
            "let %a: f32 = 1: i32",
        ),
        (
            "  let %a: f32 = 1.0: f32 + 1: i32",
            "the operands of `+` have different types f32 and i32",
            "let %a: f32 = 1.0: f32 + 1: i32",
        ),
        (
            "  let %a: i32 = load %i[0] + load %i[1] x4",
            "different types i32 and i32x4",
            "let %a: i32 = load %i[0] + load %i[1] x4",
        ),
        (
            "  let %c: bool = 1.0: f32 < 2.0: f32\n  let %a: bool = %c + %c",
            "`+` does not apply to bool",
            "let %a: bool = %c + %c",
        ),
        (
            "  let %a: f32 = 1.5: f32 << 2.0: f32",
            "`<<` does not apply to f32",
            "let %a: f32 = 1.5: f32 << 2.0: f32",
        ),
        (
            "  let %a: i32 = sqrt(3: i32)",
            "`sqrt` does not apply to i32",
            "let %a: i32 = sqrt(3: i32)",
        ),
        (
            "  let %a: f32 = not(1.0: f32)",
            "`not` does not apply to f32",
            "let %a: f32 = not(1.0: f32)",
        ),
        (
            "  let %a: f32x4 = select(1: bool, 1.0: f32x4, 2.0: f32x4)",
            "the condition of `select` must be boolx4, not bool",
            "let %a: f32x4 = select(1: bool, 1.0: f32x4, 2.0: f32x4)",
        ),
        (
            "  let %a: f32 = select(1: bool, 1.0: f32, 2.0: f64)",
            "the arms of `select` have different types f32 and f64",
            "let %a: f32 = select(1: bool, 1.0: f32, 2.0: f64)",
        ),
        (
            "  let %a: f32 = fma(1.0: f32, 1.0: f32, 1.0: f64)",
            "the operands of `fma` have different types f32, f32 and f64",
            "let %a: f32 = fma(1.0: f32, 1.0: f32, 1.0: f64)",
        ),
        (
            "  let %a: f32x4 = splat<4>(1.0: f32x2)",
            "`splat` needs a scalar, not f32x2",
            "let %a: f32x4 = splat<4>(1.0: f32x2)",
        ),
        (
            "  let %a: f32 = extract(1.0: f32x4, 4)",
            "`extract` of lane 4 from f32x4",
            "let %a: f32 = extract(1.0: f32x4, 4)",
        ),
        (
            "  let %a: f32 = reduce_add(1.0: f32)",
            "`reduce_add` needs a numeric vector, not f32",
            "let %a: f32 = reduce_add(1.0: f32)",
        ),
        (
            "  let %a: f64 = bitcast<f64>(1.0: f32)",
            "`bitcast` from f32 to f64 does not keep the width",
            "let %a: f64 = bitcast<f64>(1.0: f32)",
        ),
        (
            "  let %a: f16 = cast<f16>(1.0: f32)",
            "dtype f16, which is not a kernel dtype",
            "let %a: f16 = cast<f16>(1.0: f32)",
        ),
        (
            "  let %a: i32 = 1.0: i32",
            "a float constant has non-float type i32",
            "let %a: i32 = 1.0: i32",
        ),
        (
            "  let %a: f32 = 1: f32",
            "an integer constant has float type f32",
            "let %a: f32 = 1: f32",
        ),
        (
            "  let %a: u8 = 256: u8",
            "256 does not fit u8",
            "let %a: u8 = 256: u8",
        ),
        (
            "  let %a: bool = 2: bool",
            "2 does not fit bool",
            "let %a: bool = 2: bool",
        ),
        (
            "  let %a: f32x0 = 1.0: f32x0",
            "with no lanes",
            "let %a: f32x0 = 1.0: f32x0",
        ),
        (
            "  let %a: f32 = load %x[1.0: f32]",
            "a load index must have the index type i64, not f32",
            "let %a: f32 = load %x[1.0: f32]",
        ),
        (
            "  let %a: f32x4 = load %x[0] x4 mask 1: i32",
            "a load mask must have the index type i64, not i32",
            "let %a: f32x4 = load %x[0] x4 mask 1: i32",
        ),
        (
            "  store %x[0] = 1.0: f32",
            "stores to input buffer %x",
            "store %x[0] = 1.0: f32",
        ),
        (
            "  store %y[0] = 1: i32",
            "stores a value of type i32 into buffer %y of f32",
            "store %y[0] = 1: i32",
        ),
        (
            "  store %y[0] x4 mask 1.0: f32 = 1.0: f32x4",
            "a store mask must have the index type",
            "store %y[0] x4 mask 1.0: f32 = 1.0: f32x4",
        ),
        (
            "  store %y[load %i[0]] = 1.0: f32",
            "a store index must have the index type i64, not i32",
            "store %y[load %i[0]] = 1.0: f32",
        ),
        (
            "  prefetch %x[1.0: f32]",
            "a prefetch index must have the index type i64, not f32",
            "prefetch %x[1.0: f32]",
        ),
        (
            "  for %j = 0 to 1.0: f32 {\n  }",
            "a loop end must have the index type i64, not f32",
            "for %j = 0 to 1.0: f32",
        ),
        (
            "  for %j = 0: i32 to 4 {\n  }",
            "a loop start must have the index type",
            "for %j = 0: i32 to 4",
        ),
        (
            "  for %j = 0 to 4 step 0 {\n  }",
            "the loop step must be positive, not 0",
            "for %j = 0 to 4 step 0",
        ),
        (
            "  for %j = 0 to 4 step -2 {\n  }",
            "the loop step must be positive, not -2",
            "for %j = 0 to 4 step -2",
        ),
        (
            "  unroll 0 for %j = 0 to 4 {\n  }",
            "the unroll factor must be at least 1",
            "unroll 0 for %j = 0 to 4",
        ),
        (
            "  for %j: i32 = 0 to 4 {\n  }",
            "loop variable %j must have the index type i64, not i32",
            "for %j: i32 = 0 to 4",
        ),
        (
            "  if 1 {\n  }",
            "the condition must be a bool scalar, not i64",
            "if 1",
        ),
        (
            "  let %a: f32 = 1.0: f32\n  %a = 2.0: f32",
            "assigns %a, which is not mutable",
            "%a = 2.0: f32",
        ),
        (
            "  var %a: f32 = 1.0: f32\n  %a = 2.0: f64",
            "assigns a value of type f64 to %a of type f32",
            "%a = 2.0: f64",
        ),
        ("  let %a: f32 = 1.0: f32\n  let %a: f32 = %a", "", ""),
    ];
    for (body, msg, at) in cases {
        if msg.is_empty() {
            // Shadowing in text makes a second variable: well-formed.
            let k = parse_kernel(&kernel_src(body)).unwrap();
            verify_kernel(&k).unwrap();
            continue;
        }
        verify_error(&kernel_src(body), msg, at);
    }
    verify_error(
        "kernel @k(in %x: f16[4]) {\n}",
        "buffer dtype f16 is not a kernel dtype",
        "buffer %x",
    );
    verify_error(
        "kernel @k(in %x: f32[4], in %y: f32[load %x[0]]) {\n}",
        "a buffer length cannot load",
        "buffer %y",
    );
    verify_error(
        "kernel @k(in %x: f32[1.0: f32]) {\n}",
        "a buffer length must have the index type i64, not f32",
        "buffer %x",
    );
}

/// Kernels whose problem the text cannot express: references to things
/// that do not exist, scoping, and mutability of the variable table.
#[test]
fn verifier_rejects_bad_references_and_scopes() {
    let check = |k: &Kernel, msg: &str| {
        let e = verify_kernel(k).unwrap_err();
        assert!(e.msg.contains(msg), "`{e}` does not contain `{msg}`");
        assert_eq!(e.kernel, k.name);
    };
    let base = add_relu();
    verify_kernel(&base).unwrap();
    fn inner(k: &mut Kernel) -> &mut Vec<Stmt> {
        let Stmt::For { body, .. } = &mut k.body[0] else {
            panic!()
        };
        let Stmt::For { body, .. } = &mut body[0] else {
            panic!()
        };
        body
    }

    // A variable used after its loop, and before its definition.
    let mut k = base.clone();
    k.body.push(Stmt::Store {
        buf: BufId(2),
        index: Expr::Var(VarId(0)),
        value: Expr::f32(1.0),
        stride: 1,
        mask: None,
    });
    check(&k, "%i is used outside the scope of its definition");
    let e = verify_kernel(&k).unwrap_err();
    assert_eq!(e.at, "store %y[%i] = 1.0: f32");
    assert_eq!(e.expr.as_deref(), Some("%i"));
    let mut k = base.clone();
    inner(&mut k).swap(0, 1);
    check(&k, "%a is used outside the scope of its definition");

    // Defined again while in scope.
    let mut k = base.clone();
    let again = inner(&mut k)[0].clone();
    inner(&mut k).push(again);
    check(&k, "%a is defined again while in scope");

    // Things that do not exist.
    let mut k = base.clone();
    inner(&mut k)[1] = Stmt::Store {
        buf: BufId(9),
        index: Expr::idx(0),
        value: Expr::f32(1.0),
        stride: 1,
        mask: None,
    };
    check(&k, "buffer #9 does not exist (the kernel has 4)");
    let mut k = base.clone();
    inner(&mut k)[1] = Stmt::Let {
        var: VarId(2),
        value: Expr::Var(VarId(7)),
    };
    check(&k, "variable #7 does not exist (the kernel has 3)");
    let mut k = base.clone();
    k.bufs[3].len = Expr::Dim(3);
    check(&k, "extent #3 does not exist (the kernel has 1)");
    let e = verify_kernel(&k).unwrap_err();
    assert_eq!(e.at, "buffer %t");
    assert_eq!(e.expr.as_deref(), Some("%?dim3"));

    // Mutability recorded in the variable table.
    let mut k = base.clone();
    k.vars[2].mutable = true;
    check(&k, "`let` binds %a, which is mutable");
    let mut k = base.clone();
    k.vars[0].mutable = true;
    check(&k, "the loop binds %i, which is mutable");
    let mut k = base.clone();
    k.body.insert(
        0,
        Stmt::Decl {
            var: VarId(2),
            init: Expr::float(0.0, ty(F32, 4)),
        },
    );
    check(&k, "`var` declares %a, which is not mutable");

    // Assigning a variable out of scope.
    let mut k = softmax();
    verify_kernel(&k).unwrap();
    let Stmt::Decl { var, .. } = k.body[0].clone() else {
        panic!()
    };
    k.body.remove(0);
    k.body.push(Stmt::Decl {
        var,
        init: Expr::float(0.0, ty(F32, 4)),
    });
    check(&k, "assigns %sum, which is not in scope");

    // The message names the kernel, the statement and the expression.
    let mut k = base.clone();
    inner(&mut k)[1] = Stmt::Store {
        buf: BufId(2),
        index: Expr::idx(0),
        value: Expr::bin(BinOp::Add, Expr::Var(VarId(2)), Expr::f32(1.0)),
        stride: 1,
        mask: None,
    };
    assert_eq!(
        verify_kernel(&k).unwrap_err().to_string(),
        "kernel @add_relu: the operands of `+` have different types f32x4 and f32, in `%a + 1.0: f32`, at `store %y[0] x4 = %a + 1.0: f32`"
    );
}

// ---------------------------------------------------------------------------
// Random kernels

/// splitmix64: a small deterministic generator driven by proptest's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const DTYPES: [DType; 11] = [Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64];
const LANES: [u16; 4] = [1, 2, 4, 8];
/// Few names, so that many collide.
const NAMES: [&str; 5] = ["a", "n", "x", "x.1", "acc"];

/// Builds random well-typed kernels: every expression is generated for a
/// type, from the operations that give that type.
struct Gen {
    r: Rng,
    k: Kernel,
    /// Variables in scope, innermost last.
    scope: Vec<VarId>,
    stmts: usize,
}

impl Gen {
    fn kernel(seed: u64) -> Kernel {
        let mut g = Gen {
            r: Rng(seed),
            k: Kernel::new("random"),
            scope: Vec::new(),
            stmts: 0,
        };
        for _ in 0..1 + g.r.below(2) {
            let n = g.name();
            g.k.dims.push(n);
        }
        for (i, &d) in DTYPES.iter().enumerate() {
            let kind = if i % 3 == 0 {
                BufKind::Input
            } else if i % 3 == 1 {
                BufKind::Output
            } else {
                BufKind::Scratch
            };
            let len = Expr::bin(BinOp::Mul, Expr::Dim(0), Expr::idx(8));
            let name = g.name();
            g.k.bufs.push(Buf {
                name,
                dtype: d,
                len,
                kind,
                reuses: None,
            });
        }
        if g.r.chance(50) {
            g.k.schedule.insert("vector".into(), AttrValue::Int(4));
            g.k.schedule
                .insert("tile".into(), AttrValue::Ints(vec![2, 8]));
        }
        let body = g.block(3);
        g.k.body = body;
        g.k
    }

    fn name(&mut self) -> String {
        self.r.pick(&NAMES).to_string()
    }

    fn ty(&mut self) -> Ty {
        ty(self.r.pick(&DTYPES), self.r.pick(&LANES))
    }

    fn new_var(&mut self, ty: Ty, mutable: bool) -> VarId {
        let name = self.name();
        self.k.vars.push(Var { name, ty, mutable });
        VarId(self.k.vars.len() as u32 - 1)
    }

    fn block(&mut self, depth: usize) -> Vec<Stmt> {
        let mark = self.scope.len();
        let mut out = Vec::new();
        for _ in 0..1 + self.r.below(4) {
            if self.stmts > 40 {
                break;
            }
            self.stmts += 1;
            out.push(self.stmt(depth));
        }
        self.scope.truncate(mark);
        out
    }

    fn stmt(&mut self, depth: usize) -> Stmt {
        let mutable: Vec<VarId> = self
            .scope
            .iter()
            .copied()
            .filter(|v| self.k.vars[v.0 as usize].mutable)
            .collect();
        match self.r.below(8) {
            0 | 1 => {
                let t = self.ty();
                let value = self.expr(t, 3);
                let var = self.new_var(t, false);
                self.scope.push(var);
                Stmt::Let { var, value }
            }
            2 => {
                let t = self.ty();
                let init = self.expr(t, 2);
                let var = self.new_var(t, true);
                self.scope.push(var);
                Stmt::Decl { var, init }
            }
            3 if !mutable.is_empty() => {
                let var = self.r.pick(&mutable);
                let value = self.expr(self.k.vars[var.0 as usize].ty, 3);
                Stmt::Assign { var, value }
            }
            4 | 3 => {
                let outs: Vec<usize> = (0..self.k.bufs.len())
                    .filter(|&b| self.k.bufs[b].kind != BufKind::Input)
                    .collect();
                let b = self.r.pick(&outs);
                let t = ty(self.k.bufs[b].dtype, self.r.pick(&LANES));
                Stmt::Store {
                    buf: BufId(b as u32),
                    index: self.expr(Ty::INDEX, 2),
                    value: self.expr(t, 3),
                    stride: self.r.below(5) as i64 - 1,
                    mask: self.r.chance(30).then(|| self.expr(Ty::INDEX, 1)),
                }
            }
            5 | 6 if depth > 0 => {
                let start = self.expr(Ty::INDEX, 1);
                let end = self.expr(Ty::INDEX, 2);
                let kind = match self.r.below(3) {
                    0 => LoopKind::Serial,
                    1 => LoopKind::Parallel,
                    _ => LoopKind::Unroll(1 + self.r.below(8) as u32),
                };
                let var = self.new_var(Ty::INDEX, false);
                self.scope.push(var);
                let body = self.block(depth - 1);
                self.scope.pop();
                Stmt::For {
                    var,
                    start,
                    end,
                    step: 1 + self.r.below(4) as i64,
                    kind,
                    body,
                }
            }
            7 if depth > 0 => {
                let cond = self.expr(Ty::BOOL, 2);
                let then_ = self.block(depth - 1);
                let else_ = if self.r.chance(50) {
                    self.block(depth - 1)
                } else {
                    Vec::new()
                };
                Stmt::If { cond, then_, else_ }
            }
            _ if self.r.chance(30) => {
                let b = self.r.below(self.k.bufs.len());
                Stmt::Prefetch {
                    buf: BufId(b as u32),
                    index: self.expr(Ty::INDEX, 2),
                }
            }
            _ => {
                let args = (0..self.r.below(3))
                    .map(|_| {
                        let t = self.ty();
                        self.expr(t, 1)
                    })
                    .collect();
                Stmt::Call {
                    name: self.r.pick(&["sync", "trace", "odd name"]).into(),
                    args,
                }
            }
        }
    }

    fn float(&mut self, elem: DType) -> f64 {
        match self.r.below(6) {
            0 => f64::from_bits(self.r.next()),
            1 => f32::from_bits(self.r.next() as u32) as f64,
            2 => self.r.pick(&[
                0.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                5e-324,
                f64::MAX,
            ]),
            3 if elem == F32 => (self.r.next() as i32 as f32 / 1024.0) as f64,
            _ => (self.r.next() as i32) as f64 / 1e3,
        }
    }

    fn int(&mut self, elem: DType) -> i64 {
        let x = self.r.next() as i64;
        match elem {
            Bool => x & 1,
            I64 | U64 => x,
            _ => {
                let bits = elem.bits() as u32;
                if elem.is_signed_int() || self.r.chance(30) {
                    (x << (64 - bits)) >> (64 - bits)
                } else {
                    ((x as u64) >> (64 - bits)) as i64
                }
            }
        }
    }

    fn leaf(&mut self, t: Ty, depth: usize) -> Expr {
        let vars: Vec<VarId> = self
            .scope
            .iter()
            .copied()
            .filter(|v| self.k.vars[v.0 as usize].ty == t)
            .collect();
        let bufs: Vec<usize> = (0..self.k.bufs.len())
            .filter(|&b| self.k.bufs[b].dtype == t.elem)
            .collect();
        match self.r.below(4) {
            0 if !vars.is_empty() => Expr::Var(self.r.pick(&vars)),
            1 if t == Ty::INDEX => Expr::Dim(self.r.below(self.k.dims.len()) as u32),
            2 if !bufs.is_empty() && depth > 0 => Expr::Load {
                buf: BufId(self.r.pick(&bufs) as u32),
                index: Box::new(self.expr(Ty::INDEX, depth - 1)),
                lanes: t.lanes,
                stride: self.r.below(4) as i64 - 1,
                mask: self
                    .r
                    .chance(30)
                    .then(|| Box::new(self.expr(Ty::INDEX, depth - 1))),
            },
            _ if t.elem.is_float() => Expr::Float(self.float(t.elem), t),
            _ => Expr::Int(self.int(t.elem), t),
        }
    }

    /// An expression of type `t`.
    fn expr(&mut self, t: Ty, depth: usize) -> Expr {
        if depth == 0 || self.r.chance(25) {
            return self.leaf(t, depth);
        }
        let d = depth - 1;
        let b = Box::new;
        let e = t.elem;
        let numeric = e.is_int() || e.is_float();
        use BinOp::*;
        match self.r.below(12) {
            0 | 1 if e.is_float() => {
                let op = self.r.pick(&[Add, Sub, Mul, Div, Min, Max, Ldexp]);
                Expr::bin(op, self.expr(t, d), self.expr(t, d))
            }
            0 | 1 if numeric => {
                let op = self.r.pick(&[Add, Sub, Mul, Div, Min, Max]);
                Expr::bin(op, self.expr(t, d), self.expr(t, d))
            }
            1 | 2 if e.is_int() => {
                let op = self.r.pick(&[Rem, Shl, Shr, And, Or, Xor]);
                Expr::bin(op, self.expr(t, d), self.expr(t, d))
            }
            2 if e == Bool => {
                let op = self.r.pick(&[And, Or, Xor]);
                Expr::bin(op, self.expr(t, d), self.expr(t, d))
            }
            3 if e == Bool => {
                let u = ty(self.r.pick(&DTYPES), t.lanes);
                let op = self.r.pick(&[Eq, Ne, Lt, Le, Gt, Ge]);
                Expr::bin(op, self.expr(u, d), self.expr(u, d))
            }
            3 | 4 => {
                use UnOp::*;
                let ops: &[UnOp] = if e.is_float() {
                    &[Neg, Abs, Sqrt, Floor, Ceil, Round, Trunc]
                } else if e.is_int() {
                    &[Neg, Abs, Not]
                } else {
                    &[Not]
                };
                Expr::Unary(self.r.pick(ops), b(self.expr(t, d)))
            }
            5 if numeric => {
                Expr::MulAdd(b(self.expr(t, d)), b(self.expr(t, d)), b(self.expr(t, d)))
            }
            6 => Expr::Select(
                b(self.expr(t.with_elem(Bool), d)),
                b(self.expr(t, d)),
                b(self.expr(t, d)),
            ),
            7 => {
                let from = ty(self.r.pick(&DTYPES), t.lanes);
                Expr::Cast(e, b(self.expr(from, d)))
            }
            8 if numeric => {
                let same: Vec<DType> = DTYPES
                    .iter()
                    .copied()
                    .filter(|x| *x != Bool && x.bits() == e.bits())
                    .collect();
                let from = t.with_elem(self.r.pick(&same));
                Expr::Bitcast(e, b(self.expr(from, d)))
            }
            9 if t.is_vector() => Expr::Splat(t.lanes, b(self.expr(t.with_lanes(1), d))),
            10 if t.is_vector() => {
                let from = t.with_lanes(self.r.pick(&[1, 2, 4, 8]));
                let idx = (0..t.lanes)
                    .map(|_| self.r.below(2 * from.lanes as usize) as u16)
                    .collect();
                Expr::Shuffle(b(self.expr(from, d)), b(self.expr(from, d)), idx)
            }
            9 | 10 if !t.is_vector() && numeric => {
                let lanes = self.r.pick(&[2, 4, 8]);
                let v = self.expr(t.with_lanes(lanes), d);
                if self.r.chance(50) {
                    let op =
                        self.r
                            .pick(&[ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max]);
                    Expr::Reduce(op, b(v))
                } else {
                    Expr::Extract(b(v), self.r.below(lanes as usize) as u16)
                }
            }
            11 => {
                let args = (0..self.r.below(3))
                    .map(|_| {
                        let u = self.ty();
                        self.expr(u, d)
                    })
                    .collect();
                Expr::Call(self.r.pick(&["expf", "f"]).into(), args, t)
            }
            _ => self.leaf(t, depth),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_kernels_round_trip(seed in any::<u64>()) {
        let k = Gen::kernel(seed);
        round_trip(&k);
    }

    /// Damaged text never panics the parser, the verifier or the printer,
    /// and whatever still parses and verifies prints as a fixed point.
    #[test]
    fn damaged_text_is_handled(seed in any::<u64>()) {
        let mut r = Rng(seed);
        let mut chars: Vec<char> = print_kernel(&Gen::kernel(seed)).chars().collect();
        for _ in 0..1 + r.below(3) {
            let at = r.below(chars.len());
            match r.below(3) {
                0 => {
                    let end = (at + 1 + r.below(6)).min(chars.len());
                    chars.drain(at..end);
                }
                1 => chars.insert(at, r.pick(&['(', ')', '{', '}', '[', ']', '%', '-', ':', '<', '=', 'x', '1', ' ', '\n'])),
                _ => {
                    let other = r.below(chars.len());
                    chars.swap(at, other);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(k) = parse_kernel(&text) {
            let printed = print_kernel(&k);
            if verify_kernel(&k).is_ok() {
                let back = parse_kernel(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
                prop_assert_eq!(print_kernel(&back), printed);
            }
        }
    }

    /// Single expressions of every type, deeper than in whole kernels.
    #[test]
    fn random_expressions_round_trip(seed in any::<u64>()) {
        let mut g = Gen { r: Rng(seed), k: Gen::kernel(seed ^ 0x5555), scope: Vec::new(), stmts: 0 };
        let outs: Vec<usize> = (0..g.k.bufs.len()).filter(|&b| g.k.bufs[b].kind != BufKind::Input).collect();
        let b = g.r.pick(&outs);
        let t = ty(g.k.bufs[b].dtype, g.r.pick(&LANES));
        let value = g.expr(t, 6);
        let mut k = g.k;
        k.body = vec![Stmt::Store { buf: BufId(b as u32), index: Expr::idx(0), value, stride: 1, mask: None }];
        k.vars.clear();
        round_trip(&k);
    }
}

/// What a kernel is made of: expression and statement kinds, operators.
fn constructs(k: &Kernel, out: &mut std::collections::BTreeSet<String>) {
    fn variant(dbg: String) -> String {
        dbg.split(['(', ' ']).next().unwrap_or_default().to_string()
    }
    fn stmts(s: &[Stmt], out: &mut std::collections::BTreeSet<String>) {
        for s in s {
            out.insert(match s {
                Stmt::For { kind, .. } => format!("stmt For {}", variant(format!("{kind:?}"))),
                other => format!("stmt {}", variant(format!("{other:?}"))),
            });
            match s {
                Stmt::For { body, .. } => stmts(body, out),
                Stmt::If { then_, else_, .. } => {
                    stmts(then_, out);
                    stmts(else_, out);
                }
                _ => {}
            }
        }
    }
    stmts(&k.body, out);
    visit_exprs(&k.body, &mut |e| {
        out.insert(match e {
            Expr::Unary(op, _) => format!("Unary {op:?}"),
            Expr::Binary(op, ..) => format!("Binary {op:?}"),
            Expr::Reduce(op, _) => format!("Reduce {op:?}"),
            Expr::Load { mask: Some(_), .. } => "Load masked".into(),
            other => variant(format!("{other:?}")),
        });
    });
}

/// The generator reaches every construct, so the round-trip properties
/// above exercise all of the grammar.
#[test]
fn random_kernels_cover_every_construct() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..300 {
        constructs(&Gen::kernel(seed), &mut seen);
    }
    let mut want: Vec<String> = [
        "stmt Let",
        "stmt Decl",
        "stmt Assign",
        "stmt Store",
        "stmt For Serial",
        "stmt For Parallel",
        "stmt For Unroll",
        "stmt If",
        "stmt Call",
        "stmt Prefetch",
        "Call",
        "Var",
        "Dim",
        "Int",
        "Float",
        "Load",
        "Load masked",
        "MulAdd",
        "Select",
        "Cast",
        "Bitcast",
        "Splat",
        "Extract",
        "Shuffle",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for op in [
        "Neg", "Abs", "Sqrt", "Floor", "Ceil", "Round", "Trunc", "Not",
    ] {
        want.push(format!("Unary {op}"));
    }
    for op in [
        "Add", "Sub", "Mul", "Div", "Rem", "Min", "Max", "And", "Or", "Xor", "Shl", "Shr", "Eq",
        "Ne", "Lt", "Le", "Gt", "Ge", "Ldexp",
    ] {
        want.push(format!("Binary {op}"));
    }
    for op in ["Add", "Mul", "Min", "Max"] {
        want.push(format!("Reduce {op}"));
    }
    for w in want {
        assert!(seen.contains(&w), "no `{w}` in random kernels: {seen:?}");
    }
}

#[test]
fn an_output_may_reuse_an_inputs_memory() {
    let src = "kernel @add_in_place(in %x: f32[%n], in %r: f32[%n], out %y: f32[%n] reuses %r) dims(%n) {\n  for %i = 0 to %n {\n    store %y[%i] = load %x[%i] + load %r[%i]\n  }\n}\n";
    let k = check(src);
    verify_kernel(&k).unwrap();
    assert_eq!(k.bufs[2].reuses, Some(saturn_ir::kernel::BufId(1)));
    round_trip(&k);
    // Dropping an unused buffer keeps the reused one pointing at its input;
    // dropping the reused input drops the permission.
    let mut kept = k.clone();
    kept.retain_bufs(&[true, true, true]);
    assert_eq!(kept.bufs[2].reuses, Some(saturn_ir::kernel::BufId(1)));
    let mut b = saturn_ir::kernel::build::KernelBuilder::new("k");
    let x = b.input("x", DType::F32, 4);
    let unused = b.input("u", DType::F32, 4);
    let y = b.output("y", DType::F32, 4);
    b.reuse(y, x);
    let _ = unused;
    let mut k = b.finish();
    k.retain_bufs(&[true, false, true]);
    assert_eq!(k.bufs[1].reuses, Some(saturn_ir::kernel::BufId(0)));
    k.retain_bufs(&[false, true]);
    assert_eq!(k.bufs[0].reuses, None);
}

#[test]
fn reuses_is_checked() {
    parse_error(
        "kernel @k(in %x: f32[4], in %y: f32[4] reuses %x) {}",
        (1, 47),
        "only an `out` buffer may reuse",
    );
    parse_error(
        "kernel @k(out %y: f32[4] reuses %x, in %x: f32[4]) {}",
        (1, 33),
        "`reuses %x` names no buffer declared before it",
    );
    for bufs in [
        "in %x: f32[4], out %y: f32[8] reuses %x",
        "in %x: i32[4], out %y: f32[4] reuses %x",
        "scratch %x: f32[4], out %y: f32[4] reuses %x",
    ] {
        let k = parse_kernel(&format!("kernel @k({bufs}) {{\n}}\n")).unwrap();
        let e = verify_kernel(&k).unwrap_err();
        assert!(
            e.msg
                .contains("only an output may reuse the memory of an input"),
            "{bufs}: {e}"
        );
    }
}

#[test]
fn shuffles_print_parse_and_verify() {
    let src = "kernel @k(in %x: f32[8], out %y: f32[6]) {\n  let %a: f32x4 = load %x[0] x4\n  let %b: f32x4 = load %x[4] x4\n  store %y[0] x6 = shuffle(%a, %b, [0, 4, 1, 5, 7, 7])\n}\n";
    let k = check(src);
    verify_kernel(&k).unwrap();
    round_trip(&k);
    verify_error(
        "kernel @k(in %x: f32[8], in %i: i32[4], out %y: f32[2]) {\n  store %y[0] x2 = shuffle(load %x[0] x4, load %i[0] x4, [0, 1])\n}\n",
        "the operands of `shuffle` have different types f32x4 and i32x4",
        "store %y[0] x2 = shuffle(load %x[0] x4, load %i[0] x4, [0, 1])",
    );
    verify_error(
        "kernel @k(in %x: f32[8], out %y: f32[2]) {\n  store %y[0] x2 = shuffle(load %x[0] x4, load %x[4] x4, [0, 8])\n}\n",
        "`shuffle` of lane 8 from two vectors of 4 lanes",
        "store %y[0] x2 = shuffle(load %x[0] x4, load %x[4] x4, [0, 8])",
    );
    parse_error(
        "kernel @k(in %x: f32[8], out %y: f32[2]) {\n  store %y[0] x2 = shuffle(load %x[0] x4, load %x[4] x4, 0)\n}\n",
        (2, 58),
        "expected `[`",
    );
}

/// A buffer only prefetched is still used: dropping it would leave the
/// prefetch naming a buffer the kernel no longer has.
#[test]
fn prefetched_buffers_are_used() {
    let k = check(
        "kernel @k(in %a: f32[8], in %b: f32[8], in %c: f32[8], out %y: f32[8]) {\n  prefetch %b[4]\n  store %y[0] = load %a[0]\n}\n",
    );
    assert_eq!(k.used_bufs(), vec![true, true, false, true]);
}
