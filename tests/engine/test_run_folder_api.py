"""Run folders from the Python API (docs/files.md#results-folders): refusals name the differing keys and speak the
API's words (resume=True, overwrite=True), never the command line's flags, and a failed run leaves no folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

import deepntk
from deepntk.base.errors import FolderConfigError, InputError
from deepntk.engine.experiments.convergence import ConvergenceConfig, run_convergence
from deepntk.engine.gram import GramKernel, GramStoreError, create_store
from deepntk.engine.params import init_params
from deepntk.engine.results import run_folder, write_json
from deepntk.engine.trainer import TrainSettings, train


def config(**changes):
    return ConvergenceConfig(**{"depths": (20, 40), "seeds": 2, "points": 6, "backend": "numpy", **changes})


def test_run_convergence_refusals_name_the_keys_in_api_words(tmp_path):
    folder = str(tmp_path / "sim")
    run_convergence(config(), folder)
    with pytest.raises(FolderConfigError) as refused:
        run_convergence(config(depths=(20,), seeds=1), folder)
    message = str(refused.value)
    assert "differs in: depths, seeds" in message and "overwrite=True" in message and "--" not in message
    with pytest.raises(FolderConfigError) as refused:
        run_convergence(config(), folder)
    message = str(refused.value)
    assert "resume=True" in message and "overwrite=True" in message and "--" not in message
    results, _ = run_convergence(config(), folder, resume=True)
    assert [r.reused for r in results] == [True, True]
    results, _ = run_convergence(config(depths=(20,), seeds=1), folder, overwrite=True)
    assert [r.reused for r in results] == [False]
    assert not os.path.exists(os.path.join(folder, "depth-40.npz"))


def test_the_gram_store_asks_for_resume_in_api_words(tmp_path):
    kernel = GramKernel.for_spec("limit", deepntk.MLP(d_in=2, d_out=1, depth=10, C_L=5.0))
    X = np.random.default_rng(0).uniform(0.1, 1, size=(4, 2))
    create_store(tmp_path / "K.zarr", kernel, X, None, 2, resume=False)
    with pytest.raises(GramStoreError) as refused:
        create_store(tmp_path / "K.zarr", kernel, X, None, 2, resume=False)
    assert "pass resume=True" in str(refused.value) and "--resume" not in str(refused.value)


def test_train_resume_errors_speak_the_api_and_leave_no_folder(tmp_path):
    params = init_params(deepntk.MLP(d_in=2, d_out=1, depth=10, C_L=5.0), "paper", 0)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(6, 2))
    settings = TrainSettings(steps=2, eta=0.5)
    with pytest.raises(InputError) as refused:
        train(params, X, X[:, :1], settings, backend="numpy", checkpoint_dir=str(tmp_path / "ck"), resume=True)
    assert str(refused.value).startswith("resume=True: no checkpoint") and "--resume" not in str(refused.value)
    assert not os.path.exists(tmp_path / "ck")
    with pytest.raises(InputError) as refused:
        train(params, X, X[:, :1], settings, backend="numpy", resume=True)
    assert "resume=True needs checkpoint_dir" in str(refused.value)


def test_a_failed_run_removes_only_the_folders_it_created(tmp_path):
    made = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with run_folder(made, "test", {"n": 1}):
            raise RuntimeError("the run failed before writing")
    assert not os.path.exists(tmp_path / "a")
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError):
        with run_folder(kept, "test", {"n": 1}):
            raise RuntimeError("the run failed before writing")
    assert os.path.isdir(kept) and os.listdir(kept) == []
    with pytest.raises(RuntimeError):
        with run_folder(made, "test", {"n": 1}):
            write_json(os.path.join(made, "partial.json"), {"rows": 1})
            raise RuntimeError("the run failed after writing")
    assert os.path.exists(made / "partial.json")  # what a failed run wrote is kept, and recorded
    with pytest.raises(FolderConfigError, match="differs in: n"):
        with run_folder(made, "test", {"n": 2}):
            pass


def test_a_folder_of_unrecorded_files_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(FolderConfigError, match="no deepntk run recorded .thesis.tex.*overwrite=True"):
        with run_folder(tmp_path, "test", {"n": 1}):
            pass
    with run_folder(tmp_path, "test", {"n": 1}, overwrite=True):
        write_json(os.path.join(tmp_path, "out.json"), {})
    assert (tmp_path / "thesis.tex").read_text() == "mine"


def test_differences_are_named_by_dotted_keys_with_their_short_values():
    """A key one side lacks says so; a value longer than SHORT_VALUE as JSON (a digest) is named without values."""
    from deepntk.engine.results import SHORT_VALUE, describe_differences

    digest = "f" * (SHORT_VALUE + 1)
    stored = {"kernel": {"kind": "wide-ntk", "spec": {"depth": 3, "sigma_w2": 2.0}}, "tile": 64, "x1": "a" + digest}
    wanted = {"kernel": {"kind": "wide-ntk", "spec": {"depth": 5, "rho": 1.0}}, "tile": 64, "x1": "b" + digest}
    assert describe_differences(stored, wanted) == (
        'kernel.spec.depth (stored 3, requested 5), kernel.spec.rho (not stored, requested 1.0), '
        'kernel.spec.sigma_w2 (stored 2.0, not requested), x1')
    assert describe_differences(stored, stored) == ""
