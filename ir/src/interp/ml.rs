//! Classical machine-learning ops (ONNX domain `ai.onnx.ml`).

use std::collections::HashMap;

use super::kernels::{checked_shape, from_f64, map_to_bool};
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::invalid;
use crate::ops::*;
use crate::tensor::{Data, Tensor};

impl Eval for ArrayFeatureExtractor {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, y) = (cx.input(0)?, cx.input(1)?);
        let Some(&c) = x.shape().last() else {
            return invalid!("the input must have at least one dim");
        };
        let picks = y.to_i64_vec();
        for &i in &picks {
            if i < 0 || i as usize >= c {
                return invalid!("index {i} is out of range for {c} features");
            }
        }
        let rows = x.numel() / c.max(1);
        let rows = if c == 0 { 0 } else { rows };
        checked_shape(&[rows as i64, picks.len() as i64])?;
        let mut idx = Vec::with_capacity(rows * picks.len());
        for r in 0..rows {
            idx.extend(picks.iter().map(|&i| r * c + i as usize));
        }
        let mut shape = if x.rank() == 1 {
            vec![1, c]
        } else {
            x.shape().to_vec()
        };
        *shape.last_mut().unwrap() = picks.len();
        Ok(vec![x.gather_flat(shape, &idx)])
    }
}

impl Eval for Binarizer {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let t = self.threshold as f64;
        let above = map_to_bool(x, "Binarizer", |v| v > t, |v| v as f64 > t)?;
        Ok(vec![above.cast(x.dtype(), true)])
    }
}

/// A hashable key for LabelEncoder lookups: floats by bits, with every NaN
/// the same key.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u64),
    Str(String),
}

fn float_key(f: f64) -> Key {
    if f.is_nan() {
        Key::Float(f64::NAN.to_bits())
    } else {
        // +0 and -0 are the same key.
        Key::Float((f + 0.0).to_bits())
    }
}

/// The keys of a tensor's elements.
fn keys_of(t: &Tensor) -> Result<Vec<Key>, OpError> {
    Ok(match t.data() {
        Data::Str(v) => v.iter().cloned().map(Key::Str).collect(),
        _ if t.dtype().is_int() => t.to_i64_vec().into_iter().map(Key::Int).collect(),
        _ if t.dtype().is_float() => t.to_f64_vec().into_iter().map(float_key).collect(),
        _ => return invalid!("LabelEncoder does not take {} keys", t.dtype()),
    })
}

impl Eval for LabelEncoder {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let keys: Vec<Key> = if let Some(k) = &self.keys_floats {
            k.iter().map(|&f| float_key(f as f64)).collect()
        } else if let Some(k) = &self.keys_int64s {
            k.iter().map(|&i| Key::Int(i)).collect()
        } else if let Some(k) = &self.keys_strings {
            k.iter().cloned().map(Key::Str).collect()
        } else if let Some(k) = &self.keys_tensor {
            keys_of(k)?
        } else {
            return invalid!("no keys_* attribute is set");
        };
        // The values as a 1-D tensor and the default as a 1-element one.
        let (values, default) = if let Some(v) = &self.values_floats {
            (
                Tensor::from_vec(vec![v.len()], v.clone()),
                Tensor::scalar(self.default_float),
            )
        } else if let Some(v) = &self.values_int64s {
            (
                Tensor::from_vec(vec![v.len()], v.clone()),
                Tensor::scalar(self.default_int64),
            )
        } else if let Some(v) = &self.values_strings {
            let n = v.len();
            let t = |d, v| Tensor::new(DType::Str, d, Data::Str(v));
            (
                t(vec![n], v.clone()).map_err(|e| OpError::Invalid(e.to_string()))?,
                t(vec![], vec![self.default_string.clone()])
                    .map_err(|e| OpError::Invalid(e.to_string()))?,
            )
        } else if let Some(v) = &self.values_tensor {
            let default = match &self.default_tensor {
                Some(d) if d.numel() == 1 && d.dtype() == v.dtype() => d.clone(),
                Some(_) => return invalid!("default_tensor must be one value of the values' type"),
                None => match v.dtype() {
                    DType::Str => {
                        Tensor::new(DType::Str, vec![], Data::Str(vec!["_Unused".into()]))
                            .map_err(|e| OpError::Invalid(e.to_string()))?
                    }
                    d if d.is_float() => Tensor::scalar(-0.0f32).cast(d, true),
                    d => Tensor::scalar(-1i64).cast(d, true),
                },
            };
            (v.clone(), default)
        } else {
            return invalid!("no values_* attribute is set");
        };
        if keys.len() != values.numel() {
            return invalid!("{} keys but {} values", keys.len(), values.numel());
        }
        // Later keys take precedence.
        let map: HashMap<Key, usize> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        let both = Data::concat(&[values.data(), default.data()], values.dtype());
        let both = Tensor::new(values.dtype(), vec![both.len()], both)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let fallback = values.numel();
        let idx: Vec<usize> = keys_of(x)?
            .iter()
            .map(|k| map.get(k).copied().unwrap_or(fallback))
            .collect();
        Ok(vec![both.gather_flat(x.shape().to_vec(), &idx)])
    }
}

/// One branch of a tree node: another node or a leaf.
#[derive(Clone, Copy)]
enum Branch {
    Node(usize),
    Leaf(usize),
}

impl TreeEnsemble {
    fn branch(&self, leaf: i64, id: i64, nodes: usize, leaves: usize) -> Result<Branch, OpError> {
        let (what, limit) = if leaf != 0 {
            ("leaf", leaves)
        } else {
            ("node", nodes)
        };
        if id < 0 || id as usize >= limit {
            return invalid!("{what} id {id} is out of range");
        }
        Ok(if leaf != 0 {
            Branch::Leaf(id as usize)
        } else {
            Branch::Node(id as usize)
        })
    }
}

impl Eval for TreeEnsemble {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let &[rows, features] = x.shape() else {
            return invalid!("the input must be [N, F], found {:?}", x.shape());
        };
        let targets = self.targets()?;
        let n = self.nodes_featureids.len();
        let modes = self.nodes_modes.to_i64_vec();
        let splits = self.nodes_splits.to_f64_vec();
        let missing = self
            .nodes_missing_value_tracks_true
            .clone()
            .unwrap_or_default();
        if [
            self.nodes_falseleafs.len(),
            self.nodes_falsenodeids.len(),
            self.nodes_trueleafs.len(),
            self.nodes_truenodeids.len(),
            modes.len(),
            splits.len(),
        ]
        .iter()
        .any(|&l| l != n)
            || !(missing.is_empty() || missing.len() == n)
        {
            return invalid!("the nodes_* attributes have different lengths");
        }
        let weights = self.leaf_weights.to_f64_vec();
        let leaves = weights.len();
        if self.leaf_targetids.len() != leaves {
            return invalid!("leaf_targetids and leaf_weights have different lengths");
        }
        if let Some(&t) = self
            .leaf_targetids
            .iter()
            .find(|&&t| t < 0 || t as usize >= targets)
        {
            return invalid!("leaf target id {t} is out of range");
        }
        if let Some(&f) = self
            .nodes_featureids
            .iter()
            .find(|&&f| f < 0 || f as usize >= features)
        {
            return invalid!("feature id {f} is out of range for {features} features");
        }
        // Member sets, in the order the member nodes are listed, NaN-separated.
        let mut sets: Vec<Vec<f64>> = vec![Vec::new(); n];
        let members = self
            .membership_values
            .as_ref()
            .map(|t| t.to_f64_vec())
            .unwrap_or_default();
        let mut groups = members.split(|v| v.is_nan());
        for (i, &m) in modes.iter().enumerate() {
            if !(0..=6).contains(&m) {
                return invalid!("node mode {m} is not valid");
            }
            if m == 6 {
                sets[i] = groups
                    .next()
                    .ok_or_else(|| OpError::Invalid("too few membership sets".into()))?
                    .to_vec();
            }
        }
        let mut branches = Vec::with_capacity(n);
        for i in 0..n {
            branches.push((
                self.branch(
                    self.nodes_trueleafs[i],
                    self.nodes_truenodeids[i],
                    n,
                    leaves,
                )?,
                self.branch(
                    self.nodes_falseleafs[i],
                    self.nodes_falsenodeids[i],
                    n,
                    leaves,
                )?,
            ));
        }
        let roots: Vec<usize> = self
            .tree_roots
            .iter()
            .map(|&r| {
                usize::try_from(r)
                    .ok()
                    .filter(|&r| r < n)
                    .ok_or_else(|| OpError::Invalid(format!("tree root {r} is out of range")))
            })
            .collect::<Result<_, _>>()?;

        let xs = x.to_f64_vec();
        let agg = self.aggregate_function;
        let (init, big) = match (agg, x.dtype()) {
            (0 | 1, _) => (0.0, 0.0),
            (2 | 3, DType::F16) => (0.0, 65504.0),
            (2 | 3, DType::F32) => (0.0, f32::MAX as f64),
            (2 | 3, _) => (0.0, f64::MAX),
            _ => return invalid!("aggregate_function {agg} is not valid"),
        };
        let start = match agg {
            2 => big,
            3 => -big,
            _ => init,
        };
        checked_shape(&[rows as i64, targets as i64])?;
        let mut out = vec![start; rows * targets];
        for r in 0..rows {
            let row = &xs[r * features..(r + 1) * features];
            let acc = &mut out[r * targets..(r + 1) * targets];
            for &root in &roots {
                let mut at = Branch::Node(root);
                let mut steps = 0;
                let leaf = loop {
                    let i = match at {
                        Branch::Leaf(l) => break l,
                        Branch::Node(i) => i,
                    };
                    steps += 1;
                    if steps > n {
                        return invalid!("the tree at root {root} has a cycle");
                    }
                    let v = row[self.nodes_featureids[i] as usize];
                    let s = splits[i];
                    let hit = match modes[i] {
                        0 => v <= s,
                        1 => v < s,
                        2 => v >= s,
                        3 => v > s,
                        4 => v == s,
                        5 => v != s,
                        _ => sets[i].contains(&v),
                    } || (v.is_nan() && missing.get(i).is_some_and(|&m| m != 0));
                    at = if hit { branches[i].0 } else { branches[i].1 };
                };
                let (w, t) = (weights[leaf], self.leaf_targetids[leaf] as usize);
                acc[t] = match agg {
                    0 => acc[t] + w / roots.len() as f64,
                    1 => acc[t] + w,
                    2 => acc[t].min(w),
                    _ => acc[t].max(w),
                };
            }
            post_transform(self.post_transform, acc)?;
        }
        Ok(vec![from_f64(x.dtype(), vec![rows, targets], out)?])
    }
}

/// The score transform of tree ensembles, on one row of scores.
fn post_transform(kind: i64, v: &mut [f64]) -> Result<(), OpError> {
    match kind {
        0 => {}
        1 => {
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
            v.iter_mut().for_each(|x| *x = (*x - m).exp() / s);
        }
        2 => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
        3 => {
            // Softmax over the non-zero scores; zeros stay zero.
            let m = v
                .iter()
                .copied()
                .filter(|&x| x != 0.0)
                .fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = v.iter().filter(|&&x| x != 0.0).map(|x| (x - m).exp()).sum();
            v.iter_mut().for_each(|x| {
                if *x != 0.0 {
                    *x = (*x - m).exp() / s
                }
            });
        }
        4 => return crate::unsupported!("the PROBIT post transform"),
        k => return invalid!("post_transform {k} is not valid"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;

    fn run(op: impl Into<Op>, inputs: &[&Tensor]) -> Tensor {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        eval_op(&op.into(), &inputs, &[]).unwrap().remove(0)
    }

    #[test]
    fn label_encoder_maps_with_default() {
        let op = LabelEncoder {
            default_float: -0.0,
            default_int64: 7,
            default_string: "_Unused".into(),
            default_tensor: None,
            keys_floats: Some(vec![1.5, f32::NAN]),
            keys_int64s: None,
            keys_strings: None,
            keys_tensor: None,
            values_floats: None,
            values_int64s: Some(vec![10, 20]),
            values_strings: None,
            values_tensor: None,
        };
        let x = Tensor::from_vec(vec![3], vec![f32::NAN, 1.5, 2.0]);
        assert_eq!(run(op, &[&x]).as_slice::<i64>().unwrap(), &[20, 10, 7]);
    }

    #[test]
    fn tree_ensemble_walks_and_averages() {
        // Two one-node trees on feature 0: x <= 1 → leaf 0 (w 2) else leaf 1
        // (w 4); x > 5 → leaf 2 (w 10) else leaf 3 (w 0). Average of 2 trees.
        let op = TreeEnsemble {
            aggregate_function: 0,
            leaf_targetids: vec![0, 0, 0, 0],
            leaf_weights: Tensor::from_vec(vec![4], vec![2.0f32, 4.0, 10.0, 0.0]),
            membership_values: None,
            n_targets: Some(1),
            nodes_falseleafs: vec![1, 1],
            nodes_falsenodeids: vec![1, 3],
            nodes_featureids: vec![0, 0],
            nodes_hitrates: None,
            nodes_missing_value_tracks_true: None,
            nodes_modes: Tensor::from_vec(vec![2], vec![0u8, 3]),
            nodes_splits: Tensor::from_vec(vec![2], vec![1.0f32, 5.0]),
            nodes_trueleafs: vec![1, 1],
            nodes_truenodeids: vec![0, 2],
            post_transform: 0,
            tree_roots: vec![0, 1],
        };
        let x = Tensor::from_vec(vec![3, 1], vec![0.5f32, 3.0, 6.0]);
        // 0.5: (2 + 0)/2; 3: (4 + 0)/2; 6: (4 + 10)/2.
        assert_eq!(run(op, &[&x]).as_slice::<f32>().unwrap(), &[1.0, 2.0, 7.0]);
    }

    #[test]
    fn array_feature_extractor_of_a_vector_is_a_row() {
        let x = Tensor::from_vec(vec![4], vec![1i64, 2, 3, 4]);
        let y = Tensor::from_vec(vec![2], vec![3i64, 0]);
        let z = run(ArrayFeatureExtractor {}, &[&x, &y]);
        assert_eq!(z.shape(), &[1, 2]);
        assert_eq!(z.as_slice::<i64>().unwrap(), &[4, 1]);
        let bad = Tensor::from_vec(vec![1], vec![4i64]);
        let inputs = [Some(&x), Some(&bad)];
        assert!(eval_op(&ArrayFeatureExtractor {}.into(), &inputs, &[]).is_err());
    }
}
