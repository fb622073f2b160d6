"""Hostile input walked through every command and the public API: each case is one line `Error: …` on stderr,
exit status 2, nothing on stdout (checked before any output), never a traceback; the API raises deepntk's
own errors or a TypeError that says what it expected."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import deepntk
from deepntk.cli.main import main
from deepntk.base.errors import DeepNTKError, FileFormatError, MemoryBudgetError, ParamsFileError


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder of good and damaged inputs, as the current directory."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--depth", "20", "--C-L", "5", "-o", "p.npz"]) == 0
    rng = np.random.default_rng(0)
    np.save("x.npy", rng.uniform(0.1, 1, (5, 2)))
    np.save("y.npy", np.ones(5))
    np.save("y_nan.npy", np.array([1, np.nan, 1, 1, 1.0]))
    np.save("x_0d.npy", np.array(3.0))
    np.save("x_empty.npy", np.zeros((0, 2)))
    np.save("x_text.npy", np.array(["a", "b"]))
    np.save("images.npy", np.ones((2, 1, 4, 4)))
    payload = open("p.npz", "rb").read()
    open("truncated.npz", "wb").write(payload[: len(payload) // 2])
    flipped = bytearray(payload)
    flipped[len(payload) // 3] ^= 0xFF
    open("flipped.npz", "wb").write(bytes(flipped))
    open("empty.npz", "wb").close()
    np.save("plain.npy", np.ones(3))
    open("plain.npz", "wb").write(open("plain.npy", "rb").read())
    np.savez("no_meta.npz", W1=np.ones((4, 2)))
    arrays = dict(np.load("p.npz"))
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps(meta).replace(json.dumps(meta["C_L"]), "1" + "0" * 400))
    np.savez("huge_C_L.npz", **arrays)
    arrays["meta"] = np.array("{not json")
    np.savez("bad_json.npz", **arrays)
    arrays["meta"] = np.array("[1, 2]")
    np.savez("meta_list.npz", **arrays)
    open("a_file", "w").close()
    return tmp_path


CASES = [
    (["init", "--depth", "10000000000", "--C-L", "5", "-o", "q.npz"], "TiB of memory"),
    (["init", "--depth", "20", "--C-L", "nan", "-o", "q.npz"], "C_L must be a finite number > 0"),
    (["init", "--depth", "20", "--C-L", "1e400", "-o", "q.npz"], "C_L must be a finite number > 0"),
    (["init", "--depth", "20", "--C-L", "5", "-o", "a_file/q.npz"], "is a file"),
    (["init", "--depth", "20", "--C-L", "5", "-o", "no_folder/q.npz"], "does not exist"),
    (["ntk", "truncated.npz", "--x1", "x.npy", "-o", "K.npy"], "'truncated.npz'"),
    (["ntk", "flipped.npz", "--x1", "x.npy", "-o", "K.npy"], "'flipped.npz'"),
    (["ntk", "empty.npz", "--x1", "x.npy", "-o", "K.npy"], "empty (0 bytes)"),
    (["ntk", "plain.npz", "--x1", "x.npy", "-o", "K.npy"], "not an .npz archive"),
    (["ntk", "no_meta.npz", "--x1", "x.npy", "-o", "K.npy"], "no 'meta' entry"),
    (["ntk", "huge_C_L.npz", "--x1", "x.npy", "-o", "K.npy"], "C_L must be a finite number > 0"),
    (["ntk", "bad_json.npz", "--x1", "x.npy", "-o", "K.npy"], "'meta' is not valid JSON"),
    (["ntk", "meta_list.npz", "--x1", "x.npy", "-o", "K.npy"], "'meta' must be a JSON object"),
    (["ntk", "missing.npz", "--x1", "x.npy", "-o", "K.npy"], "does not exist"),
    (["ntk", "p.npz", "--x1", "x_0d.npy", "-o", "K.npy"], "holds no points"),
    (["ntk", "p.npz", "--x1", "x_empty.npy", "-o", "K.npy"], "holds no points"),
    (["ntk", "p.npz", "--x1", "x_text.npy", "-o", "K.npy"], "numeric"),
    (["ntk", "p.npz", "--x1", "p.npz", "-o", "K.npy"], "not a .npy file"),
    (["ntk", "p.npz", "--x1", "images.npy", "-o", "K.npy"], "expects (N, 2)"),
    (["ntk", "p.npz", "--x1", "x.npy", "--backend", "tpu", "-o", "K.npy"], "unknown backend 'tpu'"),
    (["ntk", "p.npz", "--x1", "x.npy", "-o", "a_file/K.npy"], "is a file"),
    (["limit", "--d-in", "3", "--x1", "x.npy", "-o", "L.npy"], "d_in is 3 but --x1 has 2"),
    (["limit", "--arch", "mlp", "--x1", "images.npy", "-o", "L.npy"], "--x1 must have shape (N, d_in)"),
    (["limit", "--x1", "x.npy"], "give --x1 and -o"),
    (["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--times", "1,foo"],
     "comma-separated list of flow times"),
    (["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--times", "-1"], ">= 0"),
    (["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--times", "nan"], ">= 0"),
    (["predict", "--x-train", "x.npy", "--y-train", "y_nan.npy", "--x-test", "x.npy"], "Y_train contains NaN"),
    (["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--y-test", "y_nan.npy"],
     "Y_test contains NaN"),
    (["predict", "--x-train", "x_0d.npy", "--y-train", "y.npy", "--x-test", "x.npy"], "holds no points"),
    (["predict", "--x-train", "x_empty.npy", "--y-train", "y.npy", "--x-test", "x.npy"], "holds no points"),
    (["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--kernel", "empirical",
      "--params", "flipped.npz"], "'flipped.npz'"),
    (["train", "p.npz", "--x", "x.npy", "--y", "y_nan.npy", "--steps", "2", "--eta", "0.1", "-o", "t.npz"],
     "contains NaN"),
    (["train", "truncated.npz", "--x", "x.npy", "--y", "y.npy", "--steps", "2", "--eta", "0.1", "-o", "t.npz"],
     "'truncated.npz'"),
    (["train", "p.npz", "--x", "x_0d.npy", "--y", "y.npy", "--steps", "2", "--eta", "0.1", "-o", "t.npz"],
     "holds no points"),
    (["train", "p.npz", "--x", "x.npy", "--y", "y.npy", "--steps", "2", "--eta", "0.1", "-o", "t.npz",
      "--checkpoint-dir", "ck", "--resume"], "no checkpoint"),
    (["train", "p.npz", "--x", "x.npy", "--y", "y.npy", "--steps", "2", "-o", "t.npz"], "exactly one of --eta"),
    (["simulate", "--depths", ""], "is empty"),
    (["simulate", "--points", "1000000000"], "GiB of memory"),
    (["simulate", "--depths", "1,10"], "every depth must be >= 2"),
    (["simulate", "--C-L", "L^x"], "cannot read C_L rule"),
    (["simulate", "--depths", "10,20", "--C-L", "5,6,7"], "3 C_L values for 2 depths"),
    (["simulate", "--d-in", "3"], "Fig. 3 network"),
    (["simulate", "--depths", "10,20", "-o", "a_file"], "is a file"),
    (["bench", "--quick", "-o", "a_file/x.json"], "is a file"),
    (["reproduce", "fig9"], "Invalid value for 'EXPERIMENT': 'fig9' is not one of 'fig3', 'fig4', 'fig5', 'table1'"),
    (["reproduce", "table1", "--predict", "100", "--networks", "mlp,resnet"], "unknown resnet"),
    (["reproduce", "table1", "--predict", "100", "--max-iterations", "0"], "--max-iterations"),
    (["reproduce", "table1", "--predict", "100", "--nystrom-rank", "-3"], "--nystrom-rank"),
    (["reproduce", "table1", "--max-steps", "1"], "--max-steps"),
    (["reproduce", "table1", "--networks", "cnn,lenet"], "unknown lenet"),
    (["reproduce", "fig3", "--max-steps", "5"], "--max-steps goes with table1"),
    (["reproduce", "table1", "--predict", "100", "--max-steps", "5"], "--predict trains nothing"),
    (["gram", "--store", "K.zarr"], "give --x1"),
    (["gram", "--x1", "x.npy", "--kernel", "ntk", "--store", "K.zarr"], "--kernel ntk needs --params"),
    (["gram", "--x1", "x.npy", "--kernel", "expected", "--store", "K.zarr"], "needs --depth and --C-L"),
    (["gram", "--x1", "x.npy", "--store", "K.zarr", "--cluster", "kubernetes"], "unknown cluster"),
    (["gram", "--x1", "x.npy", "--store", "K.zarr", "--cluster", "tcp://host"], "malformed scheduler address"),
    (["gram", "--x1", "x.npy", "--store", "K.zarr", "--dry-run"], "job script of a slurm or pbs cluster"),
    (["gram", "--x1", "x.npy", "--store", "K.zarr", "--cluster", "slurm", "--dry-run"], "needs --cluster-config"),
    (["gram", "--x1", "x_empty.npy", "--store", "K.zarr"], "holds no points"),
    (["gram", "--x1", "x.npy", "--d-in", "3", "--store", "K.zarr"], "d_in is 3 but --x1 has 2"),
    (["compare", "depth", "--depths", "abc"], "comma-separated list of depths"),
    (["compare", "depth", "--C-L", "L^2,zz"], "cannot read C_L rule"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(argv)[:60] for argv, _ in CASES])
def test_every_command_refuses_hostile_input_in_one_line(files, capsys, argv, message):
    started = time.perf_counter()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "", (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], err
    assert "Traceback" not in err and time.perf_counter() - started < 30


def test_a_damaged_checkpoint_is_a_one_line_error(files, capsys):
    argv = ["train", "p.npz", "--x", "x.npy", "--y", "y.npy", "--steps", "2", "--eta", "0.1", "-o", "t.npz",
            "--checkpoint-dir", "ck", "--checkpoint-every", "1", "--quiet"]
    assert main(argv) == 0
    payload = open("ck/checkpoint.npz", "rb").read()
    open("ck/checkpoint.npz", "wb").write(payload[:-40])
    capsys.readouterr()
    resumed = [("t2.npz" if arg == "t.npz" else arg) for arg in argv]  # t.npz exists: refused unless --overwrite
    assert main(resumed + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0] and "checkpoint.npz" in err[0]


def test_a_damaged_depth_file_is_a_one_line_error_on_resume(files, capsys):
    argv = ["simulate", "--depths", "10,20", "--seeds", "1", "--points", "4", "-o", "sim", "--quiet"]
    assert main(argv) == 0
    open("sim/depth-10.npz", "wb").write(b"PK\x03\x04 broken")
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "depth-10.npz" in err[0]


@pytest.mark.parametrize("call,error,message", [
    (lambda: deepntk.load_params("truncated.npz"), ParamsFileError, "truncated.npz"),
    (lambda: deepntk.load_params("huge_C_L.npz"), ParamsFileError, "C_L"),
    (lambda: deepntk.forward({"W1": 1}, np.ones((1, 2))), TypeError, "deepntk.Params"),
    (lambda: deepntk.forward(deepntk.load_params("p.npz"), np.ones((1, 2)), backend=123), TypeError, "backend"),
    (lambda: deepntk.init_params("mlp"), TypeError, "architecture spec"),
    (lambda: deepntk.init_params(deepntk.MLP(2, 1, 10**12, 5.0)), MemoryBudgetError, "memory"),
    (lambda: deepntk.analytic.mlp_expected_kernel(np.ones((2, 2)), depth=2.5, C_L=3.0), ValueError, "depth"),
    (lambda: deepntk.analytic.arccos_kernel(np.nan, 1.0, 1.0), ValueError, "NaN"),
    (lambda: deepntk.analytic.kernel_regression(np.eye(2), [np.nan, 1.0], np.ones((1, 2))), ValueError, "NaN"),
    (lambda: deepntk.analytic.kernel_regression(np.full((2, 2, 1, 1), np.nan), [1.0, 1.0], np.ones((1, 2))),
     ValueError, "NaN"),
    (lambda: deepntk.analytic.kernel_flow(np.eye(2), [1.0, 1.0], float("nan")), ValueError, "t must be"),
])
def test_the_api_raises_clear_errors(files, call, error, message):
    import deepntk.analytic  # noqa: F401 - the lambdas use it

    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, (DeepNTKError, TypeError, ValueError))


def test_the_api_accepts_numpy_scalars():
    spec = deepntk.MLP(np.int64(2), np.int32(1), np.int64(5), np.float32(5.0), rho=np.float64(1.0))
    assert spec == deepntk.MLP(2, 1, 5, 5.0) and type(spec.depth) is int and type(spec.C_L) is float
    params = deepntk.init_params(spec, seed=np.int64(3))
    assert deepntk.forward(params, np.ones((1, 2)), backend="numpy").shape == (1, 1)
    assert issubclass(FileFormatError, ValueError) and issubclass(ParamsFileError, FileFormatError)


def test_non_positive_inputs_warn_in_every_command_that_reads_them(files, capsys):
    np.save("x_zero.npy", np.array([[0.0, 0.5], [0.3, 0.2]]))
    np.save("y2.npy", np.ones(2))
    for argv in (["ntk", "p.npz", "--x1", "x_zero.npy", "-o", "K.npy"],
                 ["limit", "--x1", "x_zero.npy", "-o", "L.npy"],
                 ["predict", "--x-train", "x_zero.npy", "--y-train", "y2.npy", "--x-test", "x_zero.npy"],
                 ["train", "p.npz", "--x", "x_zero.npy", "--y", "y2.npy", "--steps", "1", "--eta", "0.1", "-o",
                  "t.npz", "--quiet"]):
        assert main(argv) == 0, argv
        err = capsys.readouterr().err
        assert "Warning:" in err and "x > 0" in err, argv


def test_float32_that_cannot_resolve_the_output_warns_at_init(files, capsys):
    assert main(["init", "--depth", "5", "--C-L", "5e4", "--dtype", "float32", "-o", "f.npz"]) == 0
    err = capsys.readouterr().err
    assert "Warning: float32 resolves the output only to 3.9e-03" in err
