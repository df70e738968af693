//! PyTorch `.bin` checkpoints (tests/fixtures/torchbin, written by torch
//! 2.15 through make.py there): every tensor read from a `.bin` is its
//! safetensors twin's bytes; a merge of `.bin` inputs writes the same bytes
//! as the same merge of the twins, and mergekit's numbers; hostile pickles
//! are refused, naming the file, and nothing in them runs.

mod common;
use common::{smelt, text};
use smelt::model::{Model, ModelError};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchbin")
}

fn open(p: &Path) -> Model {
    Model::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Same names, dtypes, shapes and bytes, tensor for tensor.
fn assert_same(bin: &Model, st: &Model) {
    let names = |m: &Model| {
        m.tensors()
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(bin), names(st));
    for t in st.tensors() {
        let b = bin.tensor(&t.name).expect("tensor");
        assert_eq!(b.dtype, t.dtype, "{}", t.name);
        assert_eq!(b.shape, t.shape, "{}", t.name);
        assert_eq!(bin.raw(b), st.raw(t), "{}", t.name);
        // And through the chunked reader the engine uses.
        if t.dtype.is_mergeable() {
            let (x, y) = (bin.read_all_f32(&t.name), st.read_all_f32(&t.name));
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(x.expect("bin")), bits(y.expect("st")), "{}", t.name);
        }
    }
}

#[test]
fn every_bin_tensor_equals_its_safetensors_twin() {
    for name in ["base", "a", "b", "bf16", "f16", "sharded"] {
        let bin = open(&dir().join("models").join(name));
        let st = open(&dir().join("models").join(format!("{name}_st")));
        assert!(
            bin.shard_paths()
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "bin")),
            "{name} read from {:?}",
            bin.shard_paths()
        );
        assert_same(&bin, &st);
        assert_eq!(bin.num_layers(), 2);
        assert_eq!(bin.architecture(), Some("LlamaForCausalLM"));
    }
    let sharded = open(&dir().join("models/sharded"));
    assert_eq!(sharded.shard_paths().len(), 3);
    assert_eq!(sharded.name(), "sharded");
}

#[test]
fn a_bin_file_opens_by_itself_and_as_its_index() {
    let folder = open(&dir().join("models/base"));
    let file = open(&dir().join("models/base/pytorch_model.bin"));
    assert_same(&file, &folder);
    assert_eq!(file.name(), "base");
    assert!(
        file.config().is_some(),
        "pytorch_model.bin reads its folder's config"
    );
    let index = open(&dir().join("models/sharded/pytorch_model.bin.index.json"));
    assert_same(&index, &open(&dir().join("models/sharded_st")));
}

#[test]
fn storage_offsets_and_shared_storages_read_their_own_bytes() {
    let bin = open(&dir().join("misc/views.bin"));
    let st = open(&dir().join("misc/views.safetensors"));
    assert_same(&bin, &st);
    // Views of one flat storage: offsets into the same record.
    let (first, second) = (
        bin.tensor("first").expect("first"),
        bin.tensor("second").expect("second"),
    );
    assert_eq!(second.start, first.start + 20 * 4);
    assert_eq!(
        bin.tensor("tail").expect("tail").start,
        first.start + 90 * 4
    );
    assert_eq!(
        bin.tensor("scalar").expect("scalar").shape,
        Vec::<usize>::new()
    );
    assert_eq!(bin.tensor("empty").expect("empty").nbytes(), 0);
    // Tied: both names over the same bytes.
    let (e, l) = (
        bin.tensor("embed.weight").expect("embed"),
        bin.tensor("lm_head.weight").expect("head"),
    );
    assert_eq!((e.start, e.end), (l.start, l.end));
}

#[test]
fn every_dtype_reads_as_torch_wrote_it() {
    let bin = open(&dir().join("misc/dtypes.bin"));
    let st = open(&dir().join("misc/dtypes.safetensors"));
    assert_same(&bin, &st);
    assert_eq!(bin.tensors().len(), 10);
}

#[test]
fn a_tied_state_dict_reads_both_names() {
    let bin = open(&dir().join("models/tied"));
    let st = open(&dir().join("models/tied/twin.safetensors"));
    assert_same(&bin, &st);
    let e = bin.tensor("model.embed_tokens.weight").expect("embed");
    let l = bin.tensor("lm_head.weight").expect("head");
    assert_eq!((e.start, e.end), (l.start, l.end));
}

/// `ties.yml` with its model paths pointing at `suffix`ed twins, written
/// into `d`; returns the recipe's path.
fn recipe_in(d: &Path, suffix: &str) -> PathBuf {
    let text = std::fs::read_to_string(dir().join("ties.yml")).expect("recipe");
    let models = dir().join("models");
    let text = ["base", "a", "b"].iter().fold(text, |t, m| {
        t.replace(
            &format!("./models/{m}\n"),
            &format!("{}\n", models.join(format!("{m}{suffix}")).display()),
        )
    });
    assert_eq!(
        text.matches(&*models.to_string_lossy()).count(),
        3,
        "{text}"
    );
    let p = d.join(format!("ties{suffix}.yml"));
    std::fs::write(&p, text).expect("write recipe");
    p
}

fn merged(d: &Path, suffix: &str) -> Vec<u8> {
    let recipe = recipe_in(d, suffix);
    let out = format!("out{suffix}");
    let o = smelt(
        &["merge", recipe.to_str().expect("utf-8"), "--out", &out],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::read(d.join(out).join("model.safetensors")).expect("output")
}

#[test]
fn a_merge_of_bin_inputs_writes_the_bytes_of_the_safetensors_merge_and_mergekits_numbers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let from_bin = merged(tmp.path(), "");
    let from_st = merged(tmp.path(), "_st");
    assert!(
        from_bin == from_st,
        "the .bin merge differs from the safetensors merge"
    );

    // mergekit 0.1.5 read the same .bin files itself (outputs/ties_bin).
    let ours = safetensors::SafeTensors::deserialize(&from_bin).expect("ours");
    let golden = std::fs::read(dir().join("outputs/ties_bin/model.safetensors")).expect("golden");
    let theirs = safetensors::SafeTensors::deserialize(&golden).expect("golden");
    let mut names = ours.names();
    names.sort();
    let mut golden_names = theirs.names();
    golden_names.sort();
    assert_eq!(names, golden_names);
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    for name in names {
        let (x, y) = (
            ours.tensor(name).expect("ours"),
            theirs.tensor(name).expect("theirs"),
        );
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.dtype(), safetensors::Dtype::F32, "{name}");
        for (i, (a, b)) in f32s(x.data()).iter().zip(f32s(y.data())).enumerate() {
            let tol = 1e-5 + 1e-4 * b.abs();
            assert!((a - b).abs() <= tol, "{name}[{i}]: smelt {a}, mergekit {b}");
        }
    }
}

#[test]
fn inspect_reads_a_bin_folder() {
    let o = smelt(&["inspect", "models/sharded"], &dir());
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("model.layers.1.mlp.down_proj.weight"), "{t}");
    let o = smelt(&["inspect", "models/bf16", "--json"], &dir());
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("BF16"), "{t}");
}

#[test]
fn a_folder_without_weights_names_every_file_looked_for() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = Model::open(tmp.path()).err().expect("refused").to_string();
    for f in [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ] {
        assert!(e.contains(f), "{f} missing from: {e}");
    }
}

const MARKER: &str = "/tmp/smelt-torchbin-pwned";

/// Open `bad/<file>`: refused as bad input (not the environment), the
/// message names the file and says `says`.
fn refused(file: &str, says: &str) -> String {
    let p = dir().join("bad").join(file);
    let e = match Model::open(&p) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e) => e,
    };
    assert!(!e.is_environment(), "{file}: {e}");
    assert!(
        matches!(
            e,
            ModelError::Format { .. }
                | ModelError::Tensor { .. }
                | ModelError::NotCheckpoint { .. }
        ),
        "{file}: {e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(file), "{file} not named: {msg}");
    assert!(msg.contains(says), "want `{says}` in: {msg}");
    msg
}

#[test]
fn hostile_pickles_are_refused_and_nothing_runs() {
    let _ = std::fs::remove_file(MARKER);
    refused("os_system.bin", "refused global `os.system`");
    refused("eval.bin", "refused global `builtins.eval`");
    refused("reduce_storage.bin", "refused REDUCE");
    refused("build.bin", "refused BUILD");
    refused("ext1.bin", "refused opcode EXT1");
    refused("inst.bin", "refused opcode INST");
    refused("newobj.bin", "refused opcode NEWOBJ");
    refused("not_tensor.bin", "`w` holds an int, not a tensor");
    assert!(!Path::new(MARKER).exists(), "something ran");
}

#[test]
fn what_cannot_be_read_in_place_is_refused_naming_it() {
    refused("legacy.bin", "legacy format");
    refused("deflated.bin", "is compressed");
    let m = refused("transposed.bin", "not contiguous");
    assert!(m.contains("tensor `w`"), "{m}");
    let m = refused("short_storage.bin", "has 32 bytes");
    assert!(m.contains("tensor `w`"), "{m}");
}

#[test]
fn the_cli_refuses_a_hostile_pickle_with_exit_2() {
    let o = smelt(&["inspect", "bad/os_system.bin"], &dir());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("os_system.bin") && t.contains("os.system"),
        "{t}"
    );
}

#[test]
fn inputs_are_not_modified() {
    // Reading maps the files read-only; check that the bytes stay.
    let p = dir().join("models/base/pytorch_model.bin");
    let before = std::fs::read(&p).expect("read");
    let m = open(&p);
    for t in m.tensors() {
        m.read_all_f32(&t.name).expect("read");
    }
    drop(m);
    assert!(std::fs::read(&p).expect("read") == before);
}

#[test]
fn safetensors_win_over_bin_in_one_folder_as_in_mergekit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = dir().join("models");
    std::fs::copy(
        models.join("a_st/model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .expect("copy");
    std::fs::copy(
        models.join("b/pytorch_model.bin"),
        tmp.path().join("pytorch_model.bin"),
    )
    .expect("copy");
    let both = open(tmp.path());
    assert_same(&both, &open(&models.join("a_st")));
    std::fs::remove_file(tmp.path().join("model.safetensors")).expect("rm");
    assert_same(&open(tmp.path()), &open(&models.join("b_st")));
}
