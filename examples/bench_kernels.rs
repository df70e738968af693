//! Throughput of every kernel on in-memory data (no file I/O):
//! `cargo run --release --example bench_kernels [-- ties,dare_ties]`.

use std::time::Instant;

use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};

fn main() {
    let n = 1 << 24; // 16M elements per input
    let row = 4096;
    let mut s = 1u64;
    let mut gen = || {
        (0..n)
            .map(|_| {
                let r = smelt::mlp::splitmix64(&mut s);
                ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02
            })
            .collect::<Vec<f32>>()
    };
    let base = gen();
    let models: Vec<Vec<f32>> = (0..3).map(|_| gen()).collect();
    // An argument such as `ties,dare_ties` limits the run to those methods.
    let only = std::env::args().nth(1);
    for method in Method::all().filter(|m| !matches!(m, Method::Zipit | Method::Permute)) {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|n| n == method.name()))
        {
            continue;
        }
        let k = match method {
            Method::Slerp | Method::Nearswap | Method::Passthrough | Method::ArceeFusion => 1,
            Method::Nuslerp => 2,
            _ => 3,
        };
        let mut global = ParamMap::default();
        global.set("t", ParamValue::Float(0.3));
        global.set("select_topk", ParamValue::Float(0.5));
        let mut m = ParamMap::default();
        m.set("weight", ParamValue::Float(0.5));
        m.set("density", ParamValue::Float(0.5));
        let tp = TensorParams {
            tensor: "x".into(),
            global,
            models: vec![m; k],
            seed: 1,
        };
        let inputs: Vec<&[f32]> = models.iter().take(k).map(|m| m.as_slice()).collect();
        let b = (!matches!(
            method,
            Method::Linear | Method::Karcher | Method::Passthrough
        ))
        .then_some(base.as_slice());
        let t0 = Instant::now();
        let mut kern = merge::kernel(method, &tp, n, k).expect("kernel");
        let out = merge::merge_slices(kern.as_mut(), b, &inputs, row, 1 << 20);
        let dt = t0.elapsed().as_secs_f64();
        std::hint::black_box(&out);
        let bytes = (n * 4 * (k + usize::from(b.is_some()))) as f64;
        eprintln!(
            "{:>16}: {:6.1} ms, {:6.2} GB/s of input",
            method.name(),
            dt * 1e3,
            bytes / dt / 1e9
        );
    }
}
