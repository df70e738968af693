//! smelt: merge neural-network checkpoints, and see what the merge does.
//!
//! The library is the engine; the TUI and the CLI (in `main.rs`) are two
//! front ends over the same API: build a [`recipe::Recipe`], turn it into a
//! [`plan::Plan`], run it with [`engine::run`] and a progress sink and a
//! cancel flag. `examples/library.rs` does exactly that in about thirty
//! lines.
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | safetensors folders: headers, chunked reads, dtype conversion, layer catalogue, atomic sharded writing |
//! | [`merge`] | one streaming kernel per method, pure math over `&[f32]` chunks, exact top-k selection |
//! | [`recipe`] | the recipe type, TOML and mergekit YAML, parameter values, validation |
//! | [`plan`], [`engine`] | which inputs feed which output tensor; running that plan in bounded memory (and multi-document recipes in dependency order) |
//! | [`analysis`] | sign agreement and other interference statistics |
//! | [`mlp`], [`zip`], [`eval`] | small MLP checkpoints, ZipIt!/permutation merging, accuracy |
//! | [`extract`] | LoRA extraction: a PEFT adapter from a fine-tune and its base (SVD per module) |
//! | [`moe`] | mixture-of-experts assembly from dense models (mergekit-moe recipes) |
//! | `tui` | the workbench (cargo feature `tui`, on by default) |
//! | [`text`] | names and paths made safe to print |

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod analysis;
pub mod engine;
pub mod eval;
pub mod extract;
pub mod fsutil;
pub mod merge;
pub mod mlp;
pub mod model;
pub mod moe;
pub mod plan;
pub mod recipe;
pub mod simd;
pub mod text;
pub mod tokenizer;
#[cfg(feature = "tui")]
pub mod tui;
pub mod units;
pub mod zip;
