//! Downloads from a mock hub served on 127.0.0.1 by the test itself
//! (`HF_ENDPOINT` points at it): only the files a merge reads, into the
//! cache the Python libraries use, resumed from a partial file,
//! `HF_TOKEN` sent, `HF_HUB_OFFLINE` honoured, and `smelt merge` fetching
//! a recipe's hub models before it plans.

mod hub;

use hub::{etag, out, smelt, tiny_config, tiny_model, tiny_model_part, Hub, Repo};
use std::collections::BTreeMap;
use std::path::Path;

const SHA: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";

fn repo(files: &[(&str, Vec<u8>)]) -> Repo {
    Repo {
        sha: SHA.into(),
        files: files
            .iter()
            .map(|(n, b)| (n.to_string(), b.clone()))
            .collect(),
        token: None,
        stall: false,
    }
}

fn one(name: &str, r: Repo) -> Hub {
    Hub::serve(BTreeMap::from([(name.to_string(), r)]))
}

fn vars<'a>(hub: &'a Hub, cache: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ]
}

/// A two-shard model with an index, beside files a merge does not read.
fn sharded_repo() -> Repo {
    let s1 = tiny_model_part(1, 0.0, |n| n != "model.norm.weight");
    let s2 = tiny_model_part(1, 0.0, |n| n == "model.norm.weight");
    let index = r#"{"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.mlp.down_proj.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors"}}"#;
    repo(&[
        ("config.json", tiny_config(1)),
        ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ("model-00001-of-00002.safetensors", s1),
        ("model-00002-of-00002.safetensors", s2),
        ("model-00003-of-00003.safetensors", b"stale".to_vec()),
        ("pytorch_model.bin", b"not wanted".to_vec()),
        ("flax_model.msgpack", b"not wanted".to_vec()),
        ("README.md", b"# card".to_vec()),
        ("tokenizer.json", b"{}".to_vec()),
        ("tokenizer_config.json", b"{}".to_vec()),
        (".gitattributes", b"*".to_vec()),
    ])
}

#[test]
fn downloads_only_the_files_a_merge_reads() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let hub = one("org/sharded", sharded_repo());
    let o = smelt(
        &["download", "org/sharded"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (so, se) = out(&o);
    assert!(o.status.success(), "{se}");
    let snap = cache.join("models--org--sharded/snapshots").join(SHA);
    assert_eq!(so.trim(), snap.to_str().unwrap());
    let mut got: Vec<String> = hub.downloads().into_iter().map(|(f, _)| f).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    );
    // The Python layout: links into blobs, refs/main holding the commit.
    let link = std::fs::read_link(snap.join("config.json")).unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    assert_eq!(
        std::fs::read_to_string(cache.join("models--org--sharded/refs/main")).unwrap(),
        SHA
    );
    // Progress went to stderr, one line per file off a terminal.
    assert!(se.contains("downloading org/sharded: config.json"), "{se}");

    // Cached now: a second download and an offline inspect ask nothing.
    let before = hub.requests().len();
    let o = smelt(
        &["download", "org/sharded"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    assert!(o.status.success(), "{}", out(&o).1);
    let mut offline = vars(&hub, &cache);
    offline.push(("HF_HUB_OFFLINE", "1"));
    let o = smelt(&["inspect", "org/sharded"], d.path(), d.path(), &offline);
    assert!(o.status.success(), "{}", out(&o).1);
    assert!(out(&o).0.contains("model.norm.weight"));
    assert_eq!(hub.requests().len(), before);
}

#[test]
fn a_partial_download_is_resumed_not_restarted() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let weights = tiny_model(3, 0.5);
    let hub = one(
        "org/big",
        repo(&[
            ("config.json", tiny_config(3)),
            ("model.safetensors", weights.clone()),
        ]),
    );
    // An interrupted download: hf-hub keeps it as blobs/<etag>.part.
    let blobs = cache.join("models--org--big/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = weights.len() / 2;
    std::fs::write(
        blobs.join(format!("{}.part", etag(&weights))),
        &weights[..half],
    )
    .unwrap();
    let o = smelt(
        &["download", "org/big"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    assert!(o.status.success(), "{}", out(&o).1);
    let ranges: Vec<Option<String>> = hub
        .downloads()
        .into_iter()
        .filter(|(f, _)| f == "model.safetensors")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={half}-"))]);
    let snap = cache.join("models--org--big/snapshots").join(SHA);
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(!blobs.join(format!("{}.part", etag(&weights))).exists());
}

#[test]
fn hf_token_is_sent_and_a_refusal_explained() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let mut r = repo(&[
        ("config.json", tiny_config(1)),
        ("model.safetensors", tiny_model(1, 0.0)),
    ]);
    r.token = Some("hf_secret".into());
    let hub = one("org/gated", r);
    let o = smelt(
        &["download", "org/gated"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("org/gated") && err.contains("HF_TOKEN"),
        "{err}"
    );
    assert!(err.contains("401"), "{err}");

    let mut with = vars(&hub, &cache);
    with.push(("HF_TOKEN", "hf_secret"));
    let o = smelt(&["download", "org/gated"], d.path(), d.path(), &with);
    assert!(o.status.success(), "{}", out(&o).1);
    let reqs = hub.requests();
    let authed: Vec<_> = reqs
        .iter()
        .filter(|r| r.auth.as_deref() == Some("Bearer hf_secret"))
        .collect();
    // The repository API, then a probe and a download for each file.
    assert_eq!(authed.len(), 5, "{reqs:?}");
}

#[test]
fn offline_and_not_cached_is_refused_without_a_request() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let hub = one("org/x", repo(&[("model.safetensors", tiny_model(1, 0.0))]));
    let mut v = vars(&hub, &cache);
    v.push(("HF_HUB_OFFLINE", "1"));
    for args in [&["download", "org/x"][..], &["inspect", "org/x"]] {
        let o = smelt(args, d.path(), d.path(), &v);
        let (_, err) = out(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("org/x"), "{err}");
        assert!(
            err.contains(cache.join("models--org--x").to_str().unwrap()),
            "{err}"
        );
    }
    assert!(hub.requests().is_empty());
}

#[test]
fn unknown_repository_and_bad_names() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let hub = one("org/x", repo(&[("model.safetensors", tiny_model(1, 0.0))]));
    let o = smelt(
        &["download", "org/nope"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("org/nope") && err.contains("404"), "{err}");
    let o = smelt(
        &["download", "not a name"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    assert_eq!(o.status.code(), Some(2));
    // A repository without weights smelt reads: said so, nothing fetched.
    let hub = one("org/empty", repo(&[("README.md", b"#".to_vec())]));
    let o = smelt(
        &["download", "org/empty"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(hub.downloads().is_empty());
}

/// `smelt merge` of a mergekit recipe naming hub models: `recipe check`
/// before says they are not cached (and fetches nothing); the merge
/// downloads them, then merges.
#[test]
fn merge_fetches_hub_models_first() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let hub = Hub::serve(BTreeMap::from([
        (
            "org/a".to_string(),
            repo(&[
                ("config.json", tiny_config(2)),
                ("model.safetensors", tiny_model(2, 0.0)),
                ("tokenizer.json", b"{\"tok\": 1}".to_vec()),
            ]),
        ),
        (
            "org/b".to_string(),
            repo(&[
                ("config.json", tiny_config(2)),
                ("model.safetensors", tiny_model(2, 1.0)),
            ]),
        ),
    ]));
    std::fs::write(
        d.path().join("r.yml"),
        "merge_method: linear\nmodels:\n  - model: org/a\n    parameters:\n      \
         weight: 0.5\n  - model: org/b\n    parameters:\n      weight: 0.5\ndtype: float32\n",
    )
    .unwrap();
    let o = smelt(
        &["recipe", "check", "r.yml"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
    assert!(hub.requests().is_empty());

    let o = smelt(
        &["merge", "r.yml", "--out", "merged"],
        d.path(),
        d.path(),
        &vars(&hub, &cache),
    );
    let (so, se) = out(&o);
    assert!(o.status.success(), "{se}");
    assert!(so.contains("merged"), "{so}");
    let merged = d.path().join("merged");
    assert!(merged.join("model.safetensors").is_file());
    // The first model's tokenizer came along from its snapshot.
    assert_eq!(
        std::fs::read(merged.join("tokenizer.json")).unwrap(),
        b"{\"tok\": 1}"
    );
    let saved = std::fs::read_to_string(merged.join("smelt-recipe.toml")).unwrap();
    assert!(
        saved.contains("\"org/a\"") && saved.contains("\"org/b\""),
        "{saved}"
    );
    // Each file once.
    let mut got: Vec<String> = hub.downloads().into_iter().map(|(f, _)| f).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "config.json",
            "config.json",
            "model.safetensors",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
}

/// A hub that takes the request and never answers: after the stall time
/// (`SMELT_HUB_TIMEOUT`, 1 s here) the download is given up with an
/// error that says so and how to resume, exit 1 (the network's fault), and
/// nothing is left in the snapshot.
#[test]
fn a_stalled_hub_is_given_up_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let mut r = repo(&[
        ("config.json", tiny_config(1)),
        ("model.safetensors", tiny_model(1, 0.0)),
    ]);
    r.stall = true;
    let hub = one("org/slow", r);
    let mut v = vars(&hub, &cache);
    v.push(("SMELT_HUB_TIMEOUT", "1"));
    let o = smelt(&["download", "org/slow"], d.path(), d.path(), &v);
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("org/slow") && err.contains("stalled") && err.contains("SMELT_HUB_TIMEOUT"),
        "{err}"
    );
    assert!(!cache.join("models--org--slow/snapshots").exists());
}
