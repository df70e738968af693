//! Hub names resolved from a Hugging Face cache the tests build (no
//! network): `refs/` and the `snapshots/` links into `blobs/`, revisions by
//! branch and by commit, the cache variables in their order, a local folder
//! of the same name winning, the error for a name not cached, and recipes
//! that keep hub names when written back.

mod hub;

use hub::{cache_repo, out, smelt, tiny_config, tiny_model};
use std::path::Path;

const MAIN: &str = "1111111111111111111111111111111111111111";
const DEV: &str = "2222222222222222222222222222222222222222";

/// `org/tiny`: `main` has 2 layers, `dev` 3.
fn tiny_cache(cache: &Path) {
    cache_repo(
        cache,
        "org/tiny",
        MAIN,
        &[
            ("config.json", tiny_config(2)),
            ("model.safetensors", tiny_model(2, 0.0)),
        ],
        &["main"],
    );
    cache_repo(
        cache,
        "org/tiny",
        DEV,
        &[
            ("config.json", tiny_config(3)),
            ("model.safetensors", tiny_model(3, 0.0)),
        ],
        &["dev"],
    );
}

/// `catalogue_layers` of `smelt inspect --json MODEL`.
fn layers(model: &str, cwd: &Path, home: &Path, vars: &[(&str, &str)]) -> usize {
    let o = smelt(&["inspect", "--json", model], cwd, home, vars);
    let (so, se) = out(&o);
    assert!(o.status.success(), "inspect {model}: {se}");
    let v: serde_json::Value = serde_json::from_str(&so).expect("json");
    v["catalogue_layers"].as_u64().expect("layers") as usize
}

#[test]
fn revisions_by_ref_branch_and_commit() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    tiny_cache(&cache);
    let vars = [
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    assert_eq!(layers("org/tiny", d.path(), d.path(), &vars), 2);
    assert_eq!(layers("org/tiny@main", d.path(), d.path(), &vars), 2);
    assert_eq!(layers("org/tiny@dev", d.path(), d.path(), &vars), 3);
    assert_eq!(
        layers(&format!("org/tiny@{DEV}"), d.path(), d.path(), &vars),
        3
    );
    // The report names the model as written.
    let o = smelt(
        &["inspect", "--json", "org/tiny@dev"],
        d.path(),
        d.path(),
        &vars,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["path"], "org/tiny@dev");
    // A revision the cache does not have is not cached.
    let o = smelt(&["inspect", "org/tiny@nope"], d.path(), d.path(), &vars);
    assert!(!o.status.success());
    assert!(out(&o).1.contains("org/tiny@nope"), "{}", out(&o).1);
}

#[test]
fn cache_found_through_hf_home_and_the_default_folder() {
    let d = tempfile::tempdir().unwrap();
    // HF_HOME/hub.
    let hf_home = d.path().join("hfhome");
    tiny_cache(&hf_home.join("hub"));
    let home_var = [
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    assert_eq!(layers("org/tiny", d.path(), d.path(), &home_var), 2);
    // HF_HUB_CACHE wins over HF_HOME.
    let other = d.path().join("other");
    cache_repo(
        &other,
        "org/tiny",
        MAIN,
        &[("model.safetensors", tiny_model(5, 0.0))],
        &["main"],
    );
    let both = [
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("HF_HUB_CACHE", other.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    assert_eq!(layers("org/tiny", d.path(), d.path(), &both), 5);
    // Neither: ~/.cache/huggingface/hub.
    let home = d.path().join("home");
    tiny_cache(&home.join(".cache/huggingface/hub"));
    assert_eq!(
        layers("org/tiny", d.path(), &home, &[("HF_HUB_OFFLINE", "1")]),
        2
    );
}

#[test]
fn a_local_folder_of_the_same_name_wins() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    tiny_cache(&cache);
    let local = d.path().join("org/tiny");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("model.safetensors"), tiny_model(4, 0.0)).unwrap();
    let vars = [("HF_HUB_CACHE", cache.to_str().unwrap())];
    assert_eq!(layers("org/tiny", d.path(), d.path(), &vars), 4);
}

#[test]
fn not_cached_names_the_model_and_the_folder_looked_in() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    tiny_cache(&cache);
    // A snapshot whose link has no blob is not complete.
    let snap = cache_repo(
        &cache,
        "org/broken",
        MAIN,
        &[("model.safetensors", tiny_model(1, 0.0))],
        &["main"],
    );
    let blob = std::fs::read_link(snap.join("model.safetensors")).unwrap();
    std::fs::remove_file(snap.join(blob)).unwrap();
    for name in ["org/missing", "org/broken"] {
        let o = smelt(
            &["inspect", name],
            d.path(),
            d.path(),
            &[
                ("HF_HUB_CACHE", cache.to_str().unwrap()),
                ("HF_HUB_OFFLINE", "1"),
            ],
        );
        let (_, err) = out(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(name), "{err}");
        let folder = cache.join(format!("models--{}", name.replace('/', "--")));
        assert!(err.contains(folder.to_str().unwrap()), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A recipe naming hub models: checked from the cache, and exported (to
/// mergekit YAML and TOML, and back) with the names as written.
#[test]
fn recipes_keep_hub_names() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    for (repo, shift) in [("org/a", 0.0), ("org/b", 1.0)] {
        cache_repo(
            &cache,
            repo,
            MAIN,
            &[
                ("config.json", tiny_config(2)),
                ("model.safetensors", tiny_model(2, shift)),
            ],
            &["main"],
        );
    }
    let recipes = d.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::write(
        recipes.join("r.yml"),
        "merge_method: linear\nmodels:\n  - model: org/a\n    parameters:\n      weight: 0.5\n  \
         - model: org/b@main\n    parameters:\n      weight: 0.5\ndtype: float32\n",
    )
    .unwrap();
    let vars = [
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let o = smelt(
        &["recipe", "check", "recipes/r.yml"],
        d.path(),
        d.path(),
        &vars,
    );
    assert!(o.status.success(), "{}", out(&o).1);

    let o = smelt(
        &["recipe", "export", "recipes/r.yml"],
        d.path(),
        d.path(),
        &vars,
    );
    let (yaml, err) = out(&o);
    assert!(o.status.success(), "{err}");
    assert!(yaml.contains("model: org/a\n"), "{yaml}");
    assert!(yaml.contains("model: org/b@main\n"), "{yaml}");

    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = smelt(
        &[
            "recipe",
            "export",
            "recipes/r.yml",
            "--format",
            "toml",
            "--out",
            "elsewhere/r.toml",
        ],
        d.path(),
        d.path(),
        &vars,
    );
    assert!(o.status.success(), "{}", out(&o).1);
    let toml = std::fs::read_to_string(elsewhere.join("r.toml")).unwrap();
    assert!(toml.contains("\"org/a\""), "{toml}");
    assert!(toml.contains("\"org/b@main\""), "{toml}");
    assert!(!toml.contains("elsewhere"), "{toml}");
    // And back to YAML from there: the same names.
    let o = smelt(
        &["recipe", "export", "elsewhere/r.toml"],
        d.path(),
        d.path(),
        &vars,
    );
    let (again, err) = out(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(again, yaml);

    // Not cached: `recipe check` says so and does not download (there is
    // no hub to reach here, and it is not offline).
    std::fs::write(
        recipes.join("missing.yml"),
        "merge_method: linear\nmodels:\n  - model: org/a\n    parameters:\n      weight: 0.5\n  \
         - model: org/nothere\n    parameters:\n      weight: 0.5\n",
    )
    .unwrap();
    let o = smelt(
        &["recipe", "check", "recipes/missing.yml"],
        d.path(),
        d.path(),
        &[
            ("HF_HUB_CACHE", cache.to_str().unwrap()),
            ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("org/nothere"), "{err}");
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
    assert!(err.contains("smelt download org/nothere"), "{err}");
}

/// A missing model inside a local folder (`models/gone` where `models/`
/// exists) is a missing path, not a hub name: the error says so, and no
/// download is tried (there is no hub here, and it is not offline).
#[test]
fn a_missing_model_in_a_local_folder_is_not_a_hub_name() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("models/base")).unwrap();
    std::fs::write(
        d.path().join("models/base/model.safetensors"),
        tiny_model(1, 0.0),
    )
    .unwrap();
    std::fs::write(
        d.path().join("r.yml"),
        "merge_method: linear\nmodels:\n  - model: models/base\n    parameters:\n      \
         weight: 0.5\n  - model: models/gone\n    parameters:\n      weight: 0.5\n",
    )
    .unwrap();
    let vars = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    for args in [
        &["recipe", "check", "r.yml"][..],
        &["merge", "r.yml", "--out", "o"],
    ] {
        let o = smelt(args, d.path(), d.path(), &vars);
        let (_, err) = out(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("models/gone: No such file"), "{err}");
        assert!(
            !err.contains("Hugging Face") && !err.contains("127.0.0.1"),
            "{err}"
        );
    }
}

/// The workbench's add-model prompt completes `org/name` from the cache
/// listing, like folders.
#[cfg(feature = "tui")]
#[test]
fn add_model_completes_cached_names() {
    use smelt::tui::input::complete_path_or_hub;
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    for repo in ["zorg/a", "zorg/abc", "zorg/b", "zother/c"] {
        cache_repo(
            &cache,
            repo,
            MAIN,
            &[("model.safetensors", tiny_model(1, 0.0))],
            &["main"],
        );
    }
    // An empty repository folder (no snapshot) is not listed.
    std::fs::create_dir_all(cache.join("models--zorg--empty")).unwrap();
    let names = smelt::model::source::cached_names(&cache);
    assert_eq!(names, ["zorg/a", "zorg/abc", "zorg/b", "zother/c"]);
    // (No entry of the crate's folder, where tests run, starts with `zo`.)
    assert_eq!(
        complete_path_or_hub("zo", &names),
        (
            "zo".to_string(),
            vec!["zorg/".to_string(), "zother/".to_string()]
        )
    );
    assert_eq!(
        complete_path_or_hub("zor", &names),
        ("zorg/".to_string(), vec![])
    );
    assert_eq!(
        complete_path_or_hub("zorg/", &names),
        (
            "zorg/".to_string(),
            vec!["a".to_string(), "abc".to_string(), "b".to_string()]
        )
    );
    assert_eq!(
        complete_path_or_hub("zorg/b", &names),
        ("zorg/b".to_string(), vec![])
    );
    assert_eq!(
        complete_path_or_hub("zother/", &names),
        ("zother/c".to_string(), vec![])
    );
    // Paths that are not plain names are not completed from the hub.
    assert_eq!(complete_path_or_hub("./zo", &names).1, Vec::<String>::new());
}
