//! Fused CPU kernels for the non-matmul parts of a BERT layer, run as candle custom ops.
//!
//! candle would run each of these as several passes (bias add, residual add, layer norm,
//! activation; copies to split Q/K/V), each allocating and walking the whole activation.
//! Here each is one pass over packed rows, parallel over row blocks on rayon's pool (the
//! one candle's matmul uses), so the encoder stays close to its matmul cost.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// Rows handed to one rayon task: enough work to amortise the split, few enough to balance.
const ROWS_PER_TASK: usize = 32;

/// Feed-forward activation, as named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu` in transformers: the exact erf form (not the tanh approximation).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// erf(x) to within 3e-7 absolute (Abramowitz & Stegun 7.1.28), branch-light and free of
/// calls so that the activation loop vectorises; f32 rounding is of the same order.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let p = 1.0
        + a * (0.070_523_08
            + a * (0.042_282_01
                + a * (0.009_270_527 + a * (0.000_152_014_3 + a * (0.000_276_567_2 + a * 0.000_043_063_8)))));
    let p2 = p * p;
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let r = 1.0 - 1.0 / (p8 * p8);
    r.copysign(x)
}

#[inline(always)]
fn activate(x: f32, act: Activation) -> f32 {
    match act {
        Activation::GeluErf => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        }
        Activation::Relu => x.max(0.0),
    }
}

/// Defines `$name` to run `$imp` compiled for AVX2 (8-wide) when the CPU has it, else the
/// portable build (x86-64 baseline: SSE2, 4-wide). The kernels below are plain loops that
/// the compiler vectorises for whichever target it compiles them for.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $imp:ident) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, as just checked.
                    return unsafe { wide($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

/// Dot product with eight independent partial sums, so that it vectorises (a single
/// running sum would force strict left-to-right order).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum with eight partial sums (see [`dot`]).
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// LayerNorm of `row` in place: two-pass mean and variance, as PyTorch does.
#[inline(always)]
fn normalise(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = row.len();
    let (gamma, beta) = (&gamma[..h], &beta[..h]);
    let mean = sum(row) / h as f32;
    row.iter_mut().for_each(|x| *x -= mean);
    let var = dot(row, row) / h as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for j in 0..h {
        row[j] = row[j] * inv * gamma[j] + beta[j];
    }
}

/// `out = act(x + bias)` over whole rows of `bias.len()`; one loop per activation so that
/// each vectorises.
#[inline(always)]
fn bias_act_rows_impl(x: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) {
    let n = bias.len();
    for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let x = &x[..n];
        match act {
            Activation::GeluErf => (0..n).for_each(|j| out[j] = activate(x[j] + bias[j], Activation::GeluErf)),
            Activation::GeluTanh => (0..n).for_each(|j| out[j] = activate(x[j] + bias[j], Activation::GeluTanh)),
            Activation::Relu => (0..n).for_each(|j| out[j] = activate(x[j] + bias[j], Activation::Relu)),
        }
    }
}

avx2_dispatch!(fn bias_act_rows(x: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) => bias_act_rows_impl);

/// `out = LayerNorm(y + bias + residual)` over whole rows of `bias.len()`.
#[inline(always)]
fn norm_rows_impl(y: &[f32], res: &[f32], op: &BiasResidualNorm<'_>, out: &mut [f32]) {
    let h = op.bias.len();
    for ((out, y), r) in out.chunks_exact_mut(h).zip(y.chunks_exact(h)).zip(res.chunks_exact(h)) {
        let (y, r, b) = (&y[..h], &r[..h], &op.bias[..h]);
        for j in 0..h {
            out[j] = y[j] + r[j] + b[j];
        }
        normalise(out, op.gamma, op.beta, op.eps);
    }
}

avx2_dispatch!(fn norm_rows(y: &[f32], res: &[f32], op: &BiasResidualNorm<'_>, out: &mut [f32]) => norm_rows_impl);

/// e^x for x <= 0 (softmax after subtracting the max) to ~1e-7 relative: Cody-Waite
/// reduction to r in [-ln2/2, ln2/2], a degree-6 Taylor polynomial, 2^n from the exponent
/// bits. Plain arithmetic, so that the softmax loop vectorises (libm's expf is a call).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Keys handled together when scoring one query (four 8-lane accumulators).
const KEY_BLOCK: usize = 32;

/// Self-attention of one sequence: its rows of the fused Q|K|V projection (bias not yet
/// added) in, its context rows out. Every token attends to every token of the sequence.
/// Keys are stored transposed per head so that a query's scores come out 32 keys at a time
/// from broadcast multiply-adds (no per-score horizontal sums).
#[inline(always)]
fn attend_impl(qkv: &[f32], bias: &[f32], heads: usize, out: &mut [f32]) {
    let h3 = bias.len();
    let hidden = h3 / 3;
    let d = hidden / heads;
    let len = qkv.len() / h3;
    let stride = len.div_ceil(KEY_BLOCK) * KEY_BLOCK;
    let scale = 1.0 / (d as f32).sqrt();
    // One pass over the rows: q[head][t][..d] (scaled), kt[head][..d][t] (zero-padded to
    // `stride` keys), v[head][t][..d]; biases added.
    let mut q = vec![0f32; len * hidden];
    let mut kt = vec![0f32; heads * d * stride];
    let mut v = vec![0f32; len * hidden];
    for (t, row) in qkv.chunks_exact(h3).enumerate() {
        for head in 0..heads {
            let (dst, src) = ((head * len + t) * d, head * d);
            for j in 0..d {
                q[dst + j] = (row[src + j] + bias[src + j]) * scale;
                kt[(head * d + j) * stride + t] = row[hidden + src + j] + bias[hidden + src + j];
                v[dst + j] = row[2 * hidden + src + j] + bias[2 * hidden + src + j];
            }
        }
    }
    let mut p = vec![0f32; stride];
    let mut acc = vec![0f32; d];
    for head in 0..heads {
        let kt = &kt[head * d * stride..(head + 1) * d * stride];
        let v = &v[head * len * d..(head + 1) * len * d];
        for (t, qt) in q[head * len * d..(head + 1) * len * d].chunks_exact(d).enumerate() {
            for (j0, block) in p.chunks_exact_mut(KEY_BLOCK).enumerate() {
                let mut s = [0f32; KEY_BLOCK];
                for (&qv, krow) in qt.iter().zip(kt.chunks_exact(stride)) {
                    let k: &[f32; KEY_BLOCK] =
                        krow[j0 * KEY_BLOCK..(j0 + 1) * KEY_BLOCK].try_into().expect("a key block");
                    for l in 0..KEY_BLOCK {
                        s[l] += qv * k[l];
                    }
                }
                block.copy_from_slice(&s);
            }
            let scores = &mut p[..len];
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            scores.iter_mut().for_each(|x| *x = exp_nonpositive(*x - max));
            let inv = 1.0 / sum(scores);
            acc.fill(0.0);
            for (&w, vt) in scores.iter().zip(v.chunks_exact(d)) {
                for (a, &b) in acc.iter_mut().zip(vt) {
                    *a += w * b;
                }
            }
            let o = &mut out[t * hidden + head * d..t * hidden + (head + 1) * d];
            for (o, &a) in o.iter_mut().zip(&acc) {
                *o = a * inv;
            }
        }
    }
}

avx2_dispatch!(fn attend(qkv: &[f32], bias: &[f32], heads: usize, out: &mut [f32]) => attend_impl);

/// Dot products of `query` with each `query.len()`-long row of `rows`, in signed bytes with
/// 32-bit sums (16 independent lanes, so that it vectorises).
#[inline(always)]
fn dot_rows_i8_impl(rows: &[i8], query: &[i8], out: &mut [i32]) {
    let dim = query.len();
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let mut acc = [0i32; 16];
        let (rc, qc) = (row.chunks_exact(16), query.chunks_exact(16));
        let tail: i32 = rc.remainder().iter().zip(qc.remainder()).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
        for (r, q) in rc.zip(qc) {
            for k in 0..16 {
                acc[k] += i32::from(r[k]) * i32::from(q[k]);
            }
        }
        *o = acc.iter().sum::<i32>() + tail;
    }
}

avx2_dispatch!(fn dot_rows_i8_dispatch(rows: &[i8], query: &[i8], out: &mut [i32]) => dot_rows_i8_impl);

/// Dot products of `query` with each row of `rows` (row-major, `query.len()` per row) into
/// `out` (one per row): the exhaustive search over int8 vectors.
pub(crate) fn dot_rows_i8(rows: &[i8], query: &[i8], out: &mut [i32]) {
    if query.is_empty() {
        out.fill(0);
        return;
    }
    dot_rows_i8_dispatch(rows, query, out)
}

/// Word + position(+type 0) embedding rows for packed tokens, then LayerNorm.
#[inline(always)]
fn embed_rows_impl(tables: &EmbeddingTables<'_>, ids: &[u32], positions: &[u32], out: &mut [f32]) {
    let h = tables.gamma.len();
    for ((row, &id), &pos) in out.chunks_exact_mut(h).zip(ids).zip(positions) {
        let w = &tables.word[id as usize * h..(id as usize + 1) * h];
        let p = &tables.position_and_type[pos as usize * h..(pos as usize + 1) * h];
        for j in 0..h {
            row[j] = w[j] + p[j];
        }
        normalise(row, tables.gamma, tables.beta, tables.eps);
    }
}

avx2_dispatch!(fn embed_rows(tables: &EmbeddingTables<'_>, ids: &[u32], positions: &[u32], out: &mut [f32]) => embed_rows_impl);

/// Rows of `x` per register tile of the matmul kernel.
const MR: usize = 6;
/// Output columns per register tile (two 8-lane vectors) and per weight panel.
const NR: usize = 16;
/// Packed rows of `x` handled together (floats): 64 KiB, well inside a core's L2.
const ROW_BLOCK_FLOATS: usize = 16 * 1024;

/// A dense layer's weight, pre-arranged at load time for [`PackedMatmul`]: panels of
/// [`NR`] output columns, each panel `k` rows of `NR` values (zero-padded past `n`), so the
/// kernel reads every weight exactly once per row tile, front to back.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl PackedWeight {
    /// Packs a PyTorch `Linear` weight, `(n, k)` row-major (`y = x @ w.T`).
    pub(crate) fn new(w: &[f32], n: usize, k: usize) -> Self {
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0f32; n_panels * k * NR];
        for (j, row) in w.chunks_exact(k).enumerate().take(n) {
            let (p, l) = (j / NR, j % NR);
            for (kk, &v) in row.iter().enumerate() {
                panels[(p * k + kk) * NR + l] = v;
            }
        }
        Self { k, n, panels }
    }
}

/// Packs `x` (`m x k`) into row tiles of [`MR`], each transposed (`xt[kk][r]`, zero rows
/// past `m`), so the kernel finds the MR values for one `kk` side by side.
fn pack_rows(x: &[f32], k: usize) -> Vec<f32> {
    let m = x.len() / k;
    let mut xt = vec![0f32; m.div_ceil(MR) * k * MR];
    for (i, row) in x.chunks_exact(k).enumerate() {
        let (t, r) = (i / MR, i % MR);
        for (kk, &v) in row.iter().enumerate() {
            xt[(t * k + kk) * MR + r] = v;
        }
    }
    xt
}

/// `out = x @ W` for panels `p0..p1` of `w`, every row tile of `xt`; `out` is
/// `(m, width)` with column 0 at panel `p0`. The inner loop is an MR x NR register tile
/// (twelve 8-lane accumulators); `FMA` selects fused multiply-adds, only where compiled
/// for them.
#[inline(always)]
fn matmul_panels_impl<const FMA: bool>(xt: &[f32], m: usize, w: &PackedWeight, p0: usize, p1: usize, out: &mut [f32]) {
    let k = w.k;
    let width = out.len() / m;
    // Row tiles are taken in blocks that stay in L2 while every panel passes over them.
    let block = (ROW_BLOCK_FLOATS / (k * MR)).max(1);
    for (b, tiles) in xt.chunks(block * k * MR).enumerate() {
        for p in p0..p1 {
            let panel = &w.panels[p * k * NR..(p + 1) * k * NR];
            let col = (p - p0) * NR;
            let cols = NR.min(w.n - p * NR);
            for (t, tile) in tiles.chunks_exact(k * MR).enumerate() {
                let mut acc = [[0f32; NR]; MR];
                for (xv, wv) in tile.chunks_exact(MR).zip(panel.chunks_exact(NR)) {
                    for r in 0..MR {
                        for l in 0..NR {
                            acc[r][l] = if FMA { xv[r].mul_add(wv[l], acc[r][l]) } else { acc[r][l] + xv[r] * wv[l] };
                        }
                    }
                }
                let first = (b * block + t) * MR;
                for (r, a) in acc.iter().enumerate().take(m - first) {
                    let i = first + r;
                    out[i * width + col..i * width + col + cols].copy_from_slice(&a[..cols]);
                }
            }
        }
    }
}

/// [`matmul_panels_impl`] compiled for AVX2 + FMA when the CPU has both, else portable.
fn matmul_panels(xt: &[f32], m: usize, w: &PackedWeight, p0: usize, p1: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn wide(xt: &[f32], m: usize, w: &PackedWeight, p0: usize, p1: usize, out: &mut [f32]) {
            matmul_panels_impl::<true>(xt, m, w, p0, p1, out)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, as just checked.
            return unsafe { wide(xt, m, w, p0, p1, out) };
        }
    }
    matmul_panels_impl::<false>(xt, m, w, p0, p1, out)
}

/// `x @ w.T` with a [`PackedWeight`]; `x` is `(m, k)` contiguous. Splits the panels over
/// rayon's threads so that each streams its own share of the weights.
pub(crate) struct PackedMatmul<'a>(pub &'a PackedWeight);

impl CustomOp1 for PackedMatmul<'_> {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let w = self.0;
        let (m, k) = l.shape().dims2()?;
        if k != w.k || m == 0 {
            candle_core::bail!("packed-matmul: {m}x{k} @ {}x{}", w.k, w.n);
        }
        let xt = pack_rows(x, k);
        let n_panels = w.n.div_ceil(NR);
        let parts = rayon::current_num_threads().clamp(1, n_panels);
        let bounds: Vec<usize> = (0..=parts).map(|p| n_panels * p / parts).collect();
        let run = |b: &[usize]| {
            let width = (b[1] * NR).min(w.n) - b[0] * NR;
            let mut out = vec![0f32; m * width];
            matmul_panels(&xt, m, w, b[0], b[1], &mut out);
            out
        };
        if parts == 1 {
            return Ok((CpuStorage::F32(run(&bounds)), Shape::from((m, w.n))));
        }
        let blocks: Vec<Vec<f32>> = bounds.par_windows(2).map(run).collect();
        let mut y = vec![0f32; m * w.n];
        for (b, block) in bounds.windows(2).zip(&blocks) {
            let (c0, c1) = (b[0] * NR, (b[1] * NR).min(w.n));
            for (i, row) in block.chunks_exact(c1 - c0).enumerate() {
                y[i * w.n + c0..i * w.n + c1].copy_from_slice(row);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, w.n))))
    }
}

/// The contiguous f32 data of a custom op's input, or an error for anything else.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{what}: input must be contiguous");
    };
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// Runs `f(rows_in, rows_out)` over `width`-wide rows, in parallel when there are many.
fn par_rows(input: &[f32], width: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; input.len()];
    let chunk = ROWS_PER_TASK * width;
    if input.len() <= chunk {
        f(input, &mut out);
    } else {
        out.par_chunks_mut(chunk).zip(input.par_chunks(chunk)).for_each(|(o, i)| f(i, o));
    }
    out
}

/// `act(y + bias)` row by row: the feed-forward expansion's epilogue.
pub(crate) struct BiasAct<'a> {
    pub bias: &'a [f32],
    pub act: Activation,
}

impl CustomOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s, l, self.name())?;
        let n = self.bias.len();
        if l.dims().last() != Some(&n) {
            candle_core::bail!("bias-act: last dim {:?} != bias {n}", l.dims());
        }
        let out = par_rows(y, n, |i, o| bias_act_rows(i, self.bias, self.act, o));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// `LayerNorm(y + bias + residual)` row by row: the epilogue of both sublayers.
pub(crate) struct BiasResidualNorm<'a> {
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

impl CustomOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let res = f32_slice(s2, l2, self.name())?;
        let h = self.bias.len();
        if y.len() != res.len() || l1.dims().last() != Some(&h) {
            candle_core::bail!("bias-residual-norm: shapes {:?} / {:?}, hidden {h}", l1.dims(), l2.dims());
        }
        // Row blocks of `y` and `res` line up, so zip the residual in by block offset.
        let chunk = ROWS_PER_TASK * h;
        let mut out = vec![0f32; y.len()];
        let body = |(o, (yi, ri)): (&mut [f32], (&[f32], &[f32]))| norm_rows(yi, ri, self, o);
        if y.len() <= chunk {
            body((&mut out, (y, res)));
        } else {
            out.par_chunks_mut(chunk).zip(y.par_chunks(chunk).zip(res.par_chunks(chunk))).for_each(body);
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Bidirectional self-attention over packed sequences, reading the fused Q|K|V projection
/// `(tokens, 3 * hidden)` (bias not yet added) and writing the context `(tokens, hidden)`.
/// Each sequence attends only to itself, which is what the padding mask does in a padded
/// batch; sequences run in parallel.
pub(crate) struct PackedAttention<'a> {
    /// Bias of the fused projection, `3 * hidden`.
    pub bias: &'a [f32],
    /// Length of each packed sequence, in order.
    pub lens: &'a [usize],
    pub heads: usize,
}

impl CustomOp1 for PackedAttention<'_> {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(s, l, self.name())?;
        let h3 = self.bias.len();
        let hidden = h3 / 3;
        let total: usize = self.lens.iter().sum();
        if qkv.len() != total * h3 || self.heads == 0 || !hidden.is_multiple_of(self.heads) {
            candle_core::bail!("packed-attention: {:?} does not match {total} tokens x {h3}", l.dims());
        }
        let mut out = vec![0f32; total * hidden];
        // Split input and output into per-sequence row ranges, then run them in parallel.
        let mut jobs = Vec::with_capacity(self.lens.len());
        let (mut rest_in, mut rest_out) = (qkv, out.as_mut_slice());
        for &len in self.lens {
            let (i, ri) = rest_in.split_at(len * h3);
            let (o, ro) = rest_out.split_at_mut(len * hidden);
            jobs.push((i, o));
            (rest_in, rest_out) = (ri, ro);
        }
        if jobs.len() == 1 {
            let (i, o) = jobs.pop().expect("one job");
            attend(i, self.bias, self.heads, o);
        } else {
            jobs.into_par_iter().for_each(|(i, o)| attend(i, self.bias, self.heads, o));
        }
        Ok((CpuStorage::F32(out), Shape::from((total, hidden))))
    }
}

/// The embedding tables and their LayerNorm.
pub(crate) struct EmbeddingTables<'a> {
    /// Word embeddings, `(vocab, hidden)` row-major.
    pub word: &'a [f32],
    /// Position embeddings plus the token-type-0 row, `(positions, hidden)` row-major.
    pub position_and_type: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

impl EmbeddingTables<'_> {
    /// The encoder's input: embedding rows for packed tokens (ids and in-sequence positions,
    /// both already range-checked), normalised.
    pub(crate) fn embed(&self, ids: &[u32], positions: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; ids.len() * self.gamma.len()];
        embed_rows(self, ids, positions, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_matmul_matches_candle() {
        use candle_core::{Device, Tensor};
        for (m, k, n) in [(1, 8, 16), (7, 384, 1152), (13, 40, 37), (6, 3, 5), (2, 1536, 384), (100, 64, 200)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let packed = PackedWeight::new(&w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), n, k);
            let got =
                x.apply_op1_no_bwd(&PackedMatmul(&packed)).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() < 1e-3 * (1.0 + a.abs()), "{m}x{k}x{n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn exp_matches_std() {
        // Down to the clamp at -87 (below it a softmax weight is 0 next to the max's 1).
        for i in 0..=1740 {
            let x = -(i as f32) * 0.05;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!((got - want).abs() <= 4e-7 * want + 1e-38, "exp({x}) = {got} want {want}");
        }
        let (clamped, floor) = (exp_nonpositive(-1000.0), (-87.0f32).exp());
        assert!((clamped - floor).abs() <= 1e-6 * floor, "clamped to e^-87: {clamped}");
    }

    #[test]
    fn erf_matches_reference_values() {
        // Reference values of erf, to 9 digits.
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916),
            (0.5, 0.520_499_876),
            (1.0, 0.842_700_793),
            (2.0, 0.995_322_265),
            (-1.5, -0.966_105_146),
            (6.0, 1.0),
        ] {
            assert!((f64::from(erf(x)) - want).abs() < 4e-7, "erf({x}) = {} want {want}", erf(x));
        }
    }
}
