//! The mergekit fixture models open and are catalogued as Llama.

use smelt::model::{inspect::Report, Group, Model};
use std::path::Path;

fn base() -> Model {
    Model::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models/base"))
        .unwrap()
}

#[test]
fn fixture_is_llama_with_four_layers() {
    let m = base();
    assert_eq!(m.name(), "base");
    assert_eq!(m.shard_paths().len(), 1);
    assert_eq!(m.architecture(), Some("LlamaForCausalLM"));
    assert_eq!(m.num_layers(), 4);
    assert_eq!(m.catalogue_layers(), 4);
    assert_eq!(m.metadata().get("format").map(String::as_str), Some("pt"));
    // 4 layers x 9 tensors (q k v o gate up down + 2 norms), embed, norm, head.
    assert_eq!(m.tensors().len(), 39);
    for l in 0..4 {
        let n = m
            .tensors()
            .iter()
            .filter(|t| t.place.group == Group::Layer(l))
            .count();
        assert_eq!(n, 9, "layer {l}");
    }
    // Stable order: pre first, post last, layers in between in order.
    let groups: Vec<Group> = m.tensors().iter().map(|t| t.place.group).collect();
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(groups, sorted);
    assert_eq!(groups[0], Group::Pre);
    assert_eq!(groups[groups.len() - 1], Group::Post);
    let embed = m.tensor("model.embed_tokens.weight").unwrap();
    assert_eq!(embed.shape, [96, 64]);
    assert_eq!(embed.place.group, Group::Pre);
    let q = m.tensor("model.layers.2.self_attn.q_proj.weight").unwrap();
    assert_eq!(q.place.prefix, "model.layers.2.");
    assert_eq!(q.place.block, "self_attn.q_proj.weight");
}

#[test]
fn fixture_values_match_raw_bytes() {
    let m = base();
    let t = m.tensor("model.layers.0.mlp.up_proj.weight").unwrap();
    let all = m.read_all_f32(&t.name).unwrap();
    assert_eq!(all.len(), 128 * 64);
    let raw = m.raw(t);
    for (i, v) in all.iter().enumerate().step_by(97) {
        let b: [u8; 4] = raw[i * 4..i * 4 + 4].try_into().unwrap();
        assert_eq!(v.to_bits(), f32::from_le_bytes(b).to_bits());
    }
    // A window read equals the same slice of a full read.
    let mut part = vec![0f32; 100];
    m.read_f32(t, 1000, &mut part).unwrap();
    assert_eq!(&part[..], &all[1000..1100]);
    assert!(m.read_f32(t, all.len() - 10, &mut part).is_err());
    assert!(all.iter().any(|v| *v != 0.0));
}

#[test]
fn fixture_report_counts_and_json() {
    let m = base();
    let r = Report::new(&m);
    assert_eq!(r.num_params, m.num_params());
    assert_eq!(r.num_hidden_layers, Some(4));
    assert_eq!(r.groups.len(), 6);
    assert_eq!(r.tensors.len(), 39);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["architecture"], "LlamaForCausalLM");
    assert_eq!(json["tensors"].as_array().unwrap().len(), 39);
}

#[test]
fn fixture_file_path_keeps_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models/ft1");
    let m = Model::open(&dir.join("model.safetensors")).unwrap();
    assert_eq!(m.name(), "ft1");
    assert_eq!(m.architecture(), Some("LlamaForCausalLM"));
    let folder = Model::open(&dir).unwrap();
    let t = "model.layers.3.mlp.down_proj.weight";
    assert_eq!(m.read_all_f32(t).unwrap(), folder.read_all_f32(t).unwrap());
}

/// Every fixture checkpoint (inputs and mergekit's outputs) opens, and the
/// merged outputs of non-slicing recipes have exactly the base's tensors.
#[test]
fn all_fixture_models_open() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit");
    let base = base();
    let mut opened = 0;
    for sub in ["models", "outputs"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let dir = e.unwrap().path();
            let m = Model::open(&dir).unwrap();
            assert!(m.num_params() > 0, "{}", dir.display());
            assert!(m.catalogue_layers() > 0, "{}", dir.display());
            if m.catalogue_layers() == 4 {
                let names: Vec<&str> = m.tensors().iter().map(|t| t.name.as_str()).collect();
                let want: Vec<&str> = base.tensors().iter().map(|t| t.name.as_str()).collect();
                assert_eq!(names, want, "{}", dir.display());
            }
            opened += 1;
        }
    }
    assert!(opened >= 8);
}
