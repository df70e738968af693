//! Multi-document (mergekit-multi) recipes: the graph's rules and errors,
//! the run against mergekit-multi 0.1.5's output, the working folder, and
//! runs that stop early.

mod common;

use common::{smelt, text};
use smelt::engine::multi::{self, MultiEvent};
use smelt::engine::Options;
use smelt::model::Model;
use smelt::recipe::{MultiRecipe, Recipe, RecipeError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi")
}

/// The three-document fixture, with its documents in another order and the
/// model paths made absolute, written into `dir`.
fn reordered(dir: &Path, order: [usize; 3]) -> PathBuf {
    let text = std::fs::read_to_string(here().join("chain.yml")).unwrap();
    let models = here().join("../mergekit/models");
    let text = text.replace("../mergekit/models", models.to_str().unwrap());
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.len(), 3);
    let mut out = String::new();
    for (k, &i) in order.iter().enumerate() {
        if k > 0 {
            out.push_str("\n---\n");
        }
        out.push_str(docs[i]);
    }
    let p = dir.join("chain.yml");
    std::fs::write(&p, out).unwrap();
    p
}

/// Every tensor of `ours` equals mergekit's within float32 rounding.
fn assert_matches_golden(ours: &Path) {
    let ours = Model::open(ours).expect("our output opens");
    let theirs = Model::open(&here().join("outputs/chain")).expect("golden opens");
    let mut a: Vec<&str> = ours.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut b: Vec<&str> = theirs.tensors().iter().map(|t| t.name.as_str()).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "tensor names");
    for t in theirs.tensors() {
        let x = ours.read_all_f32(&t.name).unwrap();
        let y = theirs.read_all_f32(&t.name).unwrap();
        assert_eq!(x.len(), y.len(), "{}", t.name);
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            let tol = 1e-4 * f64::from(q.abs()) + 1e-6;
            assert!(
                f64::from((p - q).abs()) <= tol,
                "`{}` element {i}: smelt {p} vs mergekit-multi {q}",
                t.name
            );
        }
    }
}

fn run_lib(
    m: &MultiRecipe,
    out: &Path,
    on: &(dyn Fn(MultiEvent) + Sync),
    cancel: &AtomicBool,
) -> Result<smelt::engine::Summary, multi::MultiError> {
    let target = m.final_document(None).expect("one final document");
    let mut opts = Options::new(out);
    opts.threads = Some(2);
    opts.sync = false;
    multi::run(m, target, &multi::default_work(out), &opts, on, cancel)
}

fn load(p: &Path) -> MultiRecipe {
    MultiRecipe::load(p)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .expect("a multi-document file")
}

#[test]
fn chain_matches_mergekit_multi() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = smelt(
        &[
            "merge",
            here().join("chain.yml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-sync",
        ],
        dir.path(),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // One line per document, in dependency order (the file is written
    // final first).
    let a = t.find("[1/3] tied").expect(&t);
    let b = t.find("[2/3] mixed").expect(&t);
    let c = t.find("[3/3] final merge").expect(&t);
    assert!(a < b && b < c, "{t}");
    assert_matches_golden(&out);
    // The working folder and the intermediates in it are gone.
    assert!(!multi::default_work(&out).exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["out".to_string()], "only the output is left");
    // Its saved recipe reads the removed intermediates: it says so, and
    // carries the whole file (commented out), as the model card does.
    let saved = std::fs::read_to_string(out.join("smelt-recipe.toml")).unwrap();
    assert!(
        saved.starts_with("# Built by smelt from document `final merge`"),
        "{saved}"
    );
    assert!(saved.contains("documents `mixed`, built by"), "{saved}");
    assert!(saved.contains("run the whole file"), "{saved}");
    let file = std::fs::read_to_string(here().join("chain.yml")).unwrap();
    for l in file.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            saved.contains(&format!("#   {}\n", l.trim_end())),
            "{l}\n{saved}"
        );
    }
    let again = Recipe::load(&out.join("smelt-recipe.toml")).expect("the saved recipe loads");
    assert_eq!(again.method.name(), "slerp", "{saved}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("## Origin") && card.contains(&file), "{card}");
}

#[test]
fn order_of_documents_does_not_matter() {
    let mut outputs = Vec::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (d, order) in dirs.iter().zip([[2, 1, 0], [1, 0, 2]]) {
        let p = reordered(d.path(), order);
        let m = load(&p);
        let target = m.final_document(None).unwrap();
        assert_eq!(m.label(target), "final merge");
        let names: Vec<&str> = m.order_for(target).iter().map(|&i| m.label(i)).collect();
        assert_eq!(names, ["tied", "mixed", "final merge"], "{order:?}");
        let out = d.path().join("out");
        run_lib(&m, &out, &|_| {}, &AtomicBool::new(false)).unwrap();
        outputs.push(std::fs::read(out.join("model.safetensors")).unwrap());
    }
    assert!(outputs[0] == outputs[1], "same bytes whatever the order");
    assert_matches_golden(&dirs[0].path().join("out"));
}

/// Parse `text` as a multi-document file in the fixture folder; the errors.
fn errors(text: &str) -> Vec<(usize, String)> {
    match MultiRecipe::parse(text, &here().join("x.yml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(es) => es
            .into_iter()
            .map(|e| match e {
                RecipeError::At { line, msg, .. } => (line, msg),
                other => panic!("{other}"),
            })
            .collect(),
    }
}

const A: &str = "name: a\nmerge_method: linear\nmodels:\n  - {model: ../mergekit/models/ft0, parameters: {weight: 1}}\n  - {model: REF, parameters: {weight: 1}}\n";

fn doc(name: &str, reads: &str) -> String {
    A.replace("name: a", &format!("name: {name}"))
        .replace("REF", reads)
}

#[test]
fn a_cycle_is_an_error_at_the_reference_closing_it() {
    let t = format!("{}---\n{}", doc("a", "b"), doc("b", "a"));
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].1.contains("cycle") && e[0].1.contains("`a` -> `b` -> `a`"),
        "{e:?}"
    );
    assert_eq!(e[0].0, 11, "the `model: a` line of document b: {e:?}");
    // A document reading itself.
    let e = errors(&format!("{}---\n{}", doc("a", "a"), doc("b", "a")));
    assert!(
        e.iter()
            .any(|(l, m)| *l == 5 && m.contains("reads its own output")),
        "{e:?}"
    );
}

#[test]
fn a_repeated_name_is_an_error_at_its_line() {
    let t = format!(
        "{}---\n{}",
        doc("a", "../mergekit/models/ft1"),
        doc("a", "../mergekit/models/ft2")
    );
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 7);
    assert!(e[0].1.contains("`a` is used already (line 1)"), "{e:?}");
}

#[test]
fn an_unknown_name_is_an_error_naming_the_documents() {
    let t = format!(
        "{}---\n{}",
        doc("a", "../mergekit/models/ft1"),
        doc("b", "c")
    );
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 11);
    assert!(
        e[0].1
            .contains("models[1].model: `c` is neither a document"),
        "{e:?}"
    );
    assert!(e[0].1.contains("`a`, `b`"), "{e:?}");
}

#[test]
fn only_one_document_may_go_without_a_name() {
    let unnamed = |r: &str| doc("x", r).replace("name: x\n", "");
    let t = format!(
        "{}---\n{}---\n{}",
        doc("a", "../mergekit/models/ft1"),
        unnamed("a"),
        unnamed("a")
    );
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 12, "{e:?}");
    assert!(e[0].1.contains("has no `name`"), "{e:?}");
    // Names that cannot be folder names.
    let two = |name: &str| {
        format!(
            "{}---\n{}",
            doc(name, "../mergekit/models/ft1"),
            doc("b", "../mergekit/models/ft2")
        )
    };
    assert!(MultiRecipe::parse(&two("'1.5'"), &here().join("x.yml")).is_ok());
    for (bad, why) in [
        ("../up", "separator"),
        ("1.5", "in quotes"),
        ("a+b", "adapter"),
    ] {
        let e = errors(&two(bad));
        assert!(
            e.iter().any(|(l, m)| *l == 1 && m.contains(why)),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn problems_in_a_document_are_at_their_file_line() {
    let t = format!(
        "{}---\n{}",
        doc("a", "../mergekit/models/ft1"),
        doc("b", "a").replace("merge_method: linear", "merge_method: lineer")
    );
    let e = errors(&t);
    assert!(
        e.iter().any(|(l, m)| *l == 8 && m.contains("lineer")),
        "{e:?}"
    );
}

#[test]
fn several_final_documents_need_a_choice() {
    let t = format!(
        "{}---\n{}---\n{}",
        doc("a", "../mergekit/models/ft1"),
        doc("b", "a"),
        doc("c", "a")
    );
    let m = MultiRecipe::parse(&t, &here().join("x.yml"))
        .unwrap()
        .unwrap();
    let e = m.final_document(None).unwrap_err().to_string();
    assert!(
        e.contains("`b` (line 7), `c` (line 13)") && e.contains("--doc"),
        "{e}"
    );
    let c = m.final_document(Some("c")).unwrap();
    assert_eq!(m.order_for(c), vec![0, 2]);
    assert!(m
        .final_document(Some("d"))
        .unwrap_err()
        .to_string()
        .contains("no document is named `d`"));
}

#[test]
fn single_documents_and_other_readers() {
    // One document, even with a `name` and a leading `---`: not multi.
    let one = "---\nname: x\nmerge_method: linear\nmodels: []\n";
    assert!(MultiRecipe::parse(one, &here().join("x.yml"))
        .unwrap()
        .is_none());
    // Recipe::load on a multi-document file says what it is.
    let e = Recipe::load(&here().join("chain.yml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chain.yml:15") && e.contains("multi-document"),
        "{e}"
    );
}

#[test]
fn replacing_a_document_keeps_the_others() {
    let m = load(&here().join("chain.yml"));
    let i = m.find("mixed").unwrap();
    let new = m.replace_document(i, "name: mixed\nmerge_method: linear\nmodels:\n  - {model: tied, parameters: {weight: 1}}\n  - {model: ../mergekit/models/ft1, parameters: {weight: 1}}\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chain.yml");
    std::fs::write(&p, &new).unwrap();
    assert!(new.starts_with(&m.text[..m.text.find("name: mixed").unwrap()]));
    assert!(new.ends_with(&m.text[m.text.find("name: tied").unwrap() - 4..]));
    let _ = p;
    let again = MultiRecipe::parse(&new, &here().join("chain.yml"))
        .unwrap()
        .unwrap();
    assert_eq!(again.documents.len(), 3);
    assert_eq!(again.documents[i].recipe.method.name(), "linear");
}

#[test]
fn a_failing_document_leaves_no_output_and_no_intermediates() {
    let dir = tempfile::tempdir().unwrap();
    let p = reordered(dir.path(), [2, 1, 0]);
    // The final document names a model that is not there.
    let recipe = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, recipe.replacen("models/ft2", "models/nope", 1)).unwrap();
    let out = dir.path().join("out");
    let o = smelt(
        &["merge", "chain.yml", "--out", "out", "--no-sync"],
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("[2/3] mixed"), "the intermediates ran: {t}");
    assert!(
        t.contains("document `final merge`") && t.contains("nope"),
        "{t}"
    );
    assert!(!out.exists());
    assert!(!multi::default_work(&out).exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the recipe is left");
}

#[test]
fn a_cancelled_run_leaves_no_output_and_no_intermediates() {
    let dir = tempfile::tempdir().unwrap();
    let p = reordered(dir.path(), [0, 1, 2]);
    let m = load(&p);
    let out = dir.path().join("out");
    let cancel = AtomicBool::new(false);
    let second_done = AtomicBool::new(false);
    // Stop when the last document starts: the two intermediates exist then.
    let on = |e: MultiEvent| {
        if let MultiEvent::Document { pos: 3, .. } = e {
            second_done.store(
                multi::default_work(&out)
                    .join("mixed/model.safetensors")
                    .exists(),
                Ordering::SeqCst,
            );
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let e = run_lib(&m, &out, &on, &cancel).unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    assert!(
        second_done.load(Ordering::SeqCst),
        "the intermediates were written"
    );
    assert!(!out.exists());
    assert!(!multi::default_work(&out).exists());
}

#[test]
fn recipe_check_and_export_on_a_multi_document_file() {
    let o = smelt(&["recipe", "check", "chain.yml"], &here());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("3 documents; order: tied -> mixed -> final merge"),
        "{t}"
    );
    assert!(
        t.contains("`tied`: ties, 291 output tensors") || t.contains("`tied`: ties,"),
        "{t}"
    );
    assert!(t.contains("`mixed`: task_arithmetic, reads `tied`"), "{t}");
    let o = smelt(&["recipe", "export", "chain.yml"], &here());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("3 documents"), "{}", text(&o));
    // A bad document: check names it with its line.
    let dir = tempfile::tempdir().unwrap();
    let p = reordered(dir.path(), [0, 1, 2]);
    let bad = std::fs::read_to_string(&p)
        .unwrap()
        .replace("name: tied", "name: mixed");
    std::fs::write(&p, bad).unwrap();
    let o = smelt(&["recipe", "check", "chain.yml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is used already"), "{}", text(&o));
}

/// Writing a document anew keeps the comments heading it (what it is
/// for); the YAML under them is written afresh.
#[test]
fn a_rewritten_document_keeps_its_heading_comments() {
    let dir = tempfile::tempdir().unwrap();
    let p = reordered(dir.path(), [0, 1, 2]);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("name: tied", "# tied: the trimmed merge\nname: tied");
    std::fs::write(&p, &text).unwrap();
    let m = load(&p);
    let work = dir.path().join("chain.smelt-work");
    let i = m.find("tied").unwrap();
    let mut r = m.recipe_for(i, &work);
    r.models.reverse();
    let out = m.with_documents(&[(i, r)], &work).expect("written");
    assert_eq!(
        out.matches("# tied: the trimmed merge\nname: tied").count(),
        1,
        "{out}"
    );
    let again = MultiRecipe::parse(&out, &p).unwrap().unwrap();
    assert_eq!(again.documents.len(), 3);
    assert_ne!(
        again.documents[i].recipe, m.documents[i].recipe,
        "rewritten"
    );
}

/// A file named from its own folder (`smelt tui chain.yml`) has its
/// working folder at `./chain.smelt-work`: a document's recipe naming
/// another's build and an absolute path, saved with its own build (paths
/// relative to it) and read back, names the same files (the two once
/// compared unequal, and the workbench rebuilt such a document forever).
#[test]
fn a_build_read_back_is_the_recipe_it_was_built_from() {
    let text = "name: a\nmerge_method: linear\nmodels:\n  \
                - {model: /m/x, parameters: {weight: 1}}\n  \
                - {model: /m/y, parameters: {weight: 1}}\n---\n\
                name: b\nmerge_method: linear\nmodels:\n  \
                - {model: a, parameters: {weight: 1}}\n  \
                - {model: /m/z, parameters: {weight: 1}}\n---\n\
                merge_method: linear\nmodels:\n  \
                - {model: b, parameters: {weight: 1}}\n  \
                - {model: /m/z, parameters: {weight: 1}}\n";
    let file = Path::new("chain.yml");
    let m = MultiRecipe::parse(text, file)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .expect("three documents");
    let work = smelt::engine::multi::file_work(file);
    let b = m.find("b").unwrap();
    let run = m.recipe_for(b, &work);
    let out = m.work_path(b, &work);
    let saved = run.to_toml(&out);
    let back = Recipe::parse_all(&saved, &out.join("smelt-recipe.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        back.with_absolute_paths(),
        run.with_absolute_paths(),
        "{saved}"
    );
}
