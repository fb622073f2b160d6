"""Results folders on the command line (docs/files.md#results-folders): a folder of another configuration is
refused naming the differing keys, --overwrite replaces only the earlier run's files, --resume says what it reused,
default folders differ between configurations, and a run that fails before writing leaves no folder behind."""

from __future__ import annotations

import json
import os

import numpy as np

from deepntk.cli.main import main

SIMULATE = ["simulate", "--points", "8", "--backend", "numpy", "--quiet"]


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def simulate(out, depths, seeds, capsys, *extra):
    return run(SIMULATE + ["--depths", depths, "--seeds", str(seeds)] + (["-o", out] if out else []) + list(extra),
               capsys)


def test_a_rerun_with_other_settings_is_refused_naming_the_keys_and_keeps_the_results(tmp_path, capsys):
    out = str(tmp_path / "big")
    assert simulate(out, "20,40", 2, capsys)[0] == 0
    with open(os.path.join(out, "results.json"), "rb") as handle:
        before = handle.read()
    for extra in ([], ["--resume"]):
        code, stdout, err = simulate(out, "20", 1, capsys, *extra)
        assert code == 2 and stdout == "", (extra, stdout, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "different configuration" in lines[0], err
        assert "depths" in lines[0] and "seeds" in lines[0] and "--overwrite" in lines[0], err
        assert "points" not in lines[0], err  # only the keys that differ
    with open(os.path.join(out, "results.json"), "rb") as handle:
        assert handle.read() == before
    assert sorted(f for f in os.listdir(out) if f.startswith("depth-")) == ["depth-20.npz", "depth-40.npz"]


def test_overwrite_replaces_the_earlier_runs_files_and_nothing_else(tmp_path, capsys):
    out = str(tmp_path / "big")
    assert simulate(out, "20,40", 2, capsys)[0] == 0
    with open(os.path.join(out, "notes.txt"), "w") as handle:  # the user's own file, not the run's
        handle.write("keep me")
    code, stdout, err = simulate(out, "20", 1, capsys, "--overwrite")
    assert code == 0, err
    assert not os.path.exists(os.path.join(out, "depth-40.npz"))  # no stale depth beside the new results
    results = json.load(open(os.path.join(out, "results.json")))
    assert [d["depth"] for d in results["depths"]] == [20] and results["config"]["seeds"] == 1
    assert open(os.path.join(out, "notes.txt")).read() == "keep me"
    record = json.load(open(os.path.join(out, "run.json")))
    assert record["config"]["seeds"] == 1 and "depth-40.npz" not in record["files"]
    assert "depth-20.npz" in record["files"] and "notes.txt" not in record["files"]


def test_resume_continues_the_same_settings_and_says_what_it_reused(tmp_path, capsys):
    out = str(tmp_path / "sim")
    assert simulate(out, "20,40,80", 2, capsys)[0] == 0
    os.unlink(os.path.join(out, "depth-80.npz"))  # as if the run had been killed before its last depth
    stamp = os.path.getmtime(os.path.join(out, "depth-20.npz"))
    code, stdout, err = simulate(out, "20,40,80", 2, capsys)
    assert code == 2 and "already holds the results of this configuration" in err and "--resume" in err, err
    code, stdout, err = simulate(out, "20,40,80", 2, capsys, "--resume")
    assert code == 0, err
    assert "2 depths reused, 1 computed" in stdout.splitlines()
    assert os.path.getmtime(os.path.join(out, "depth-20.npz")) == stamp
    assert os.path.exists(os.path.join(out, "depth-80.npz"))


def test_default_folders_differ_between_settings_and_subcommands(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for seeds in (1, 2):
        assert simulate(None, "20", seeds, capsys)[0] == 0
    spectrum = ["compare", "spectrum", "--depths", "20", "--points", "6", "--backend", "numpy"]
    for seed in ("0", "1"):
        assert run(spectrum + ["--seed", seed], capsys)[0] == 0
    assert run(["compare", "trained", "--depths", "20", "--steps", "2", "--train-points", "4", "--backend", "numpy"],
               capsys)[0] == 0
    folders = sorted(os.listdir("deepntk-results"))
    assert len(folders) == 5, folders
    seeds = sorted(json.load(open(os.path.join("deepntk-results", f, "results.json")))["config"]["seeds"]
                   for f in folders if f.startswith("simulate"))
    assert seeds == [1, 2]
    assert sum(os.path.exists(os.path.join("deepntk-results", f, "compare-spectrum.json")) for f in folders) == 2
    assert sum(os.path.exists(os.path.join("deepntk-results", f, "compare-trained.json")) for f in folders) == 1
    first = next(f for f in folders if f.startswith("simulate") and
                 json.load(open(os.path.join("deepntk-results", f, "results.json")))["config"]["seeds"] == 2)
    code, out, _ = simulate(None, "20", 2, capsys, "--resume")  # --resume finds the settings' own folder
    assert code == 0 and "1 depth reused, 0 computed" in out and f"{first}\n" in out, out


def test_a_plain_rerun_into_the_default_folder_is_refused_as_into_a_named_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = simulate(None, "20", 1, capsys)
    assert code == 0
    folder = out.strip().splitlines()[-1].removeprefix("results in ")
    stamp = os.path.getmtime(os.path.join(folder, "depth-20.npz"))
    code, out, err = simulate(None, "20", 1, capsys)  # the same settings: the same folder, the rule of -o
    assert (code, out) == (2, ""), (code, out, err)
    assert err.strip().splitlines() == [
        f"Error: results folder {folder!r} already holds the results of this configuration; pass --resume to reuse "
        f"them, --overwrite to compute them again, or choose another folder"]
    named = simulate(folder, "20", 1, capsys)
    assert named[0] == 2 and named[2] == err  # an explicit -o of that folder: the same line
    assert os.listdir("deepntk-results") == [os.path.basename(folder)]  # no "-2" beside it
    code, out, err = simulate(None, "20", 1, capsys, "--overwrite")
    assert code == 0 and f"results in {folder}\n" in out, err
    assert os.path.getmtime(os.path.join(folder, "depth-20.npz")) > stamp


def test_a_default_folder_whose_record_names_another_configuration_is_passed_by(tmp_path, capsys, monkeypatch):
    """As where two configurations' hashes collide: the rerun neither refuses nor touches the other's folder."""
    monkeypatch.chdir(tmp_path)
    assert simulate(None, "20", 1, capsys)[0] == 0
    (folder,) = os.listdir("deepntk-results")
    folder = os.path.join("deepntk-results", folder)
    record = json.load(open(os.path.join(folder, "run.json")))
    record["config"]["seeds"] = 7  # the record of another configuration under this configuration's hash
    json.dump(record, open(os.path.join(folder, "run.json"), "w"))
    code, out, err = simulate(None, "20", 1, capsys)
    assert code == 0 and f"results in {folder}-2\n" in out, (out, err)
    code, out, err = simulate(None, "20", 1, capsys)  # and the rerun finds that one
    assert code == 2 and f"{folder}-2" in err and "already holds the results of this configuration" in err, err
    assert json.load(open(os.path.join(folder, "run.json")))["config"]["seeds"] == 7


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path, capsys):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                 "train-labels-idx1-ubyte"):
        (mnist / name).write_bytes(b"not an IDX file")  # damaged files: refused without any download
    out = tmp_path / "runs" / "R"
    code, stdout, err = run(["reproduce", "fig4", "-o", str(out), "--data-dir", str(mnist), "--no-plot"], capsys)
    assert code == 2 and "not an IDX file" in err, err
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "runs")


def test_train_resume_says_where_it_resumed_and_checkpoint_folders_keep_their_configuration(tmp_path, capsys):
    p = str(tmp_path / "p.npz")
    assert run(["init", "--depth", "20", "--C-L", "400", "-o", p], capsys)[0] == 0
    X = np.random.default_rng(0).uniform(0.1, 1, size=(12, 2))
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", X[:, :1] * X[:, 1:])
    ck = str(tmp_path / "ck")
    base = ["train", p, "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "--batch-size", "4",
            "--checkpoint-every", "3", "--quiet"]
    code, _, err = run(base + ["--eta", "0.5", "--steps", "9", "--checkpoint-dir", str(tmp_path / "none"),
                               "--resume", "-o", str(tmp_path / "none.npz")], capsys)
    assert code == 2 and "--resume: no checkpoint" in err and "resume=True" not in err, err
    assert not os.path.exists(tmp_path / "none")  # refused: no folder left behind
    # Each run writes its own -o file (an existing one is refused unless --overwrite).
    assert run(base + ["--eta", "0.5", "--steps", "6", "--checkpoint-dir", ck, "-o", str(tmp_path / "t6.npz")],
               capsys)[0] == 0
    code, _, err = run(base + ["--eta", "0.25", "--steps", "9", "--checkpoint-dir", ck, "-o", str(tmp_path / "a.npz")],
                       capsys)
    assert code == 2 and "different configuration" in err and "settings.eta" in err, err
    code, _, err = run(base + ["--eta", "0.5", "--steps", "9", "--checkpoint-dir", ck, "-o", str(tmp_path / "b.npz")],
                       capsys)
    assert code == 2 and "already holds" in err and "--resume" in err, err
    code, stdout, err = run(base + ["--eta", "0.5", "--steps", "9", "--checkpoint-dir", ck, "--resume", "-o",
                                    str(tmp_path / "t9.npz")], capsys)
    assert code == 0, err
    assert "resumed from step 6 of 9" in stdout.splitlines()


def test_resume_where_nothing_was_kept_says_it_starts_afresh(tmp_path, capsys, monkeypatch):
    """One line for every command with --resume (through `hold_output_folder`; reproduce's:
    tests/experiments/test_experiment_registry.py): a named folder and a default one."""
    monkeypatch.chdir(tmp_path)
    code, out, err = simulate("fresh", "20", 1, capsys, "--resume")
    assert code == 0, err
    assert out.splitlines()[0] == "nothing to resume in fresh: starting afresh", out
    code, out, err = simulate(None, "20", 1, capsys, "--resume")
    (folder,) = os.listdir("deepntk-results")
    assert code == 0 and out.splitlines()[0] == (f"nothing to resume in {os.path.join('deepntk-results', folder)}: "
                                                  f"starting afresh"), out
    code, out, err = simulate("fresh", "20", 1, capsys, "--resume")  # now there is something: no such line
    assert code == 0 and "nothing to resume" not in out and "1 depth reused, 0 computed" in out, out
