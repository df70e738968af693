//! Kernels hold O(chunk) or O(models^2) state, never a whole tensor: the
//! peak heap a kernel allocates while merging a tensor fed in fixed-size
//! chunks must not grow with the tensor's size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use smelt::merge::{self, Chunk, Method, ParamMap, ParamValue, TensorParams};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHUNK: usize = 1 << 14;
const ROW: usize = 1024;

/// Deterministic synthetic values for (input, flat index).
fn value(input: usize, i: usize) -> f32 {
    let h = (i as u64 ^ ((input as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
}

/// Peak bytes allocated above the starting point while a kernel merges a
/// `numel`-element tensor generated chunk by chunk into reused buffers.
fn peak_bytes(method: Method, numel: usize) -> usize {
    let n = match method {
        Method::Slerp | Method::Nearswap | Method::Passthrough | Method::ArceeFusion => 1,
        Method::Nuslerp => 2,
        _ => 3,
    };
    let mut global = ParamMap::default();
    global.set("t", ParamValue::Float(0.4));
    global.set("select_topk", ParamValue::Float(0.3));
    let mut m = ParamMap::default();
    m.set("weight", ParamValue::Float(0.5));
    m.set("density", ParamValue::Float(0.3));
    let tp = TensorParams {
        tensor: "w".into(),
        global,
        models: vec![m; n],
        seed: 9,
    };
    let mut bufs = vec![vec![0f32; CHUNK]; n + 1];
    let mut out = vec![0f32; CHUNK];
    let fill = |bufs: &mut [Vec<f32>], start: usize, len: usize| {
        for (k, b) in bufs.iter_mut().enumerate() {
            for (j, x) in b[..len].iter_mut().enumerate() {
                *x = value(k, start + j);
            }
        }
    };
    let base_line = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base_line, Ordering::SeqCst);
    let mut kernel = merge::kernel(method, &tp, numel, n).expect("kernel");
    let mut sweep = |kernel: &mut dyn merge::Kernel, apply: bool, bufs: &mut Vec<Vec<f32>>| {
        let mut start = 0;
        while start < numel {
            let len = CHUNK.min(numel - start);
            fill(bufs, start, len);
            let (base, models) = bufs.split_first().expect("buffers");
            let ms: [&[f32]; 3] = [
                &models[0][..len],
                &models[models.len().min(2) - 1][..len],
                &models[models.len() - 1][..len],
            ];
            let chunk = Chunk {
                start,
                numel,
                row_len: ROW,
                base: Some(&base[..len]),
                models: &ms[..n],
            };
            if apply {
                kernel.apply(&chunk, &mut out[..len]);
            } else {
                kernel.observe(&chunk);
            }
            start += len;
        }
    };
    while kernel.wants_pass() {
        kernel.begin_pass();
        sweep(kernel.as_mut(), false, &mut bufs);
        kernel.end_pass();
    }
    sweep(kernel.as_mut(), true, &mut bufs);
    drop(kernel);
    PEAK.load(Ordering::SeqCst) - base_line
}

#[test]
fn kernel_memory_does_not_grow_with_tensor_size() {
    for method in Method::all().filter(|m| !matches!(m, Method::Zipit | Method::Permute)) {
        // Both sizes are past the point where top-k selectors add their
        // fixed prediction tables (1M elements).
        let small = peak_bytes(method, 1 << 20);
        let large = peak_bytes(method, 1 << 22);
        eprintln!(
            "{:>16}: kernel peak {small} B (1M elements), {large} B (4M)",
            method.name()
        );
        // 4x the elements (16 MiB per input): the kernel's own peak may only
        // differ by small bookkeeping.
        assert!(
            large <= small + 4096,
            "{}: peak {small} B at 1M elements, {large} B at 4M",
            method.name()
        );
        // Fixed tables: at most two selectors per model, 1.8 MiB each.
        assert!(large < 12 << 20, "{}: peak {large} B", method.name());
    }
}
