"""Training with checkpoints: plain (mini-batch) SGD as in the paper, on any backend.

The steps run through `Backend.descend` (the one training loop, docs/training.md) in runs of index plans
that end at the next epoch, evaluation, probe or checkpoint; a GPU backend keeps its weights on the device
for a whole run. Everything that decides the trajectory is in the checkpoint (weights, the current epoch's
permutation, the shuffling RNG's state, the step counter), so a resumed run is bit-identical to an
uninterrupted one with the same seed. Checkpoints are written atomically (temporary file, then rename), by a
background thread while the next steps run (`CheckpointWriter`); a run returns or raises only after its last
checkpoint is on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..backends.registry import get_backend
from ..base.errors import FileFormatError, InputError, TrainingDiverged, option
from .files import json_entry, read_npz
from ..base.losses import check_loss, loss_value
from .packed import pack, pad_inputs
from .results import run_folder, write_npz
from .training import raw_learning_rate, warn_if_loss_grew
from ..base.validate import check_input_sets, check_targets, warn_if_unresolved, warns_once_per_cause

CHECKPOINT = "checkpoint.npz"


@dataclass
class TrainSettings:
    """How to train. Give `steps` (SGD updates) or `epochs`; `batch_size` None means full batch.

    Step size: exactly one of `eta` (scaled: raw lr = η/(L·C_L²)) or `lr` (raw). Loss "paper" (½-mean) or
    "mse" (PyTorch's MSELoss), averaged over the mini-batch. `eval_points`: evaluate the training loss and
    accuracy on the first that many training points (and the test ones on the first that many test points)
    instead of all of them: at the paper's sizes one evaluation of all 70,000 MNIST images takes minutes.
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    eta: float | None = None
    lr: float | None = None
    loss: str = "paper"
    seed: int = 0
    eval_every: int = 0
    eval_points: int | None = None
    probe_every: int = 0
    checkpoint_every: int = 0

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise InputError("give exactly one of steps or epochs")
        for name in ("steps", "epochs", "batch_size", "eval_points"):
            value = getattr(self, name)
            positive = name in ("batch_size", "eval_points")
            if value is not None and (not isinstance(value, (int, np.integer)) or value < (1 if positive else 0)):
                raise InputError(f"{name} must be a {'positive' if positive else 'non-negative'} integer, "
                                 f"got {value!r}")
        check_loss(self.loss)


@dataclass
class TrainResult:
    params: object
    history: dict
    steps: int
    seconds: float
    resumed_from: int = 0


@dataclass
class _State:
    W: np.ndarray
    b: np.ndarray
    step: int
    order: np.ndarray
    rng_state: dict
    history: dict = field(default_factory=dict)


def classification_kind(Y: np.ndarray) -> str | None:
    """'onehot', 'binary' (k = 1 with 0/1 targets), or None for regression targets."""
    if not np.all(np.isin(Y, (0.0, 1.0))):
        return None
    if Y.shape[1] == 1:
        return "binary"
    return "onehot" if np.all(Y.sum(axis=1) == 1) else None


def accuracy(outputs: np.ndarray, Y: np.ndarray, kind: str | None) -> float:
    """argmax accuracy for one-hot targets; round(output) == label for the binary task
    (docs/experiments.md#mnist)."""
    if kind == "onehot":
        return float(np.mean(np.argmax(outputs, axis=1) == np.argmax(Y, axis=1)))
    if kind == "binary":
        return float(np.mean(np.round(outputs[:, 0]) == Y[:, 0]))
    return float("nan")


def fingerprint(*arrays) -> str:
    digest = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(str(a.shape).encode() + str(a.dtype).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def run_key(params, settings: TrainSettings, X, Y) -> dict:
    """What a checkpoint must match to be resumed: architecture, initial weights, data and settings (run length
    excluded, so a finished run can be extended)."""
    key = {k: v for k, v in asdict(settings).items() if k not in ("steps", "epochs", "eval_every", "eval_points",
                                                                   "probe_every", "checkpoint_every")}
    return {"spec": params.spec.to_meta(), "dtype": str(params.dtype), "settings": key,
            "initial_weights": fingerprint(*params.weights, *params.biases), "data": fingerprint(X, Y)}


class CheckpointWriter:
    """Writes the trainer's checkpoints on a background thread, at most one at a time, so that the steps after a
    checkpoint run while it is written: at Table 1's sizes a checkpoint holds up to 10 GB of weights (the MLP of
    784 inputs at L = 4000, float32), seconds of writing that a GPU would otherwise spend idle.

    `save` takes the state as it is now: the weight arrays themselves (every backend's `descend` returns new
    arrays and never changes them afterwards, so nothing is copied), a copy of the permutation, and the history
    and RNG state serialized at once. It first waits for the previous write, so an error in that write (a full
    disk) is raised by the next `save` or by `close`, never lost. `close` waits for the last write. As a context
    manager it closes on the way out; when the run raised, a write's error is dropped for the run's own (a
    divergence, an interrupt): a failed write leaves the previous checkpoint in place, since writes are atomic."""

    def __init__(self, folder: str, key: dict):
        self.path = os.path.join(folder, CHECKPOINT)
        self.key = key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepntk-checkpoint")
        self._pending = None

    def save(self, state: _State) -> None:
        self.wait()
        meta = np.array(json.dumps({"key": self.key, "step": state.step, "rng_state": state.rng_state,
                                    "history": state.history}))
        self._pending = self._pool.submit(write_npz, self.path, W=state.W, b=state.b, order=state.order.copy(),
                                          meta=meta)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(Exception):
                self.close()


def checkpoint_step(folder: str) -> int | None:
    """The step of the checkpoint in `folder`, None where there is none (or it cannot be read)."""
    path = os.path.join(folder, CHECKPOINT)
    if not os.path.exists(path):
        return None
    try:
        step = json_entry(read_npz(path, "checkpoint"), "meta", path, "checkpoint")["step"]
    except (FileFormatError, OSError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def _load(folder, key: dict) -> _State:
    path = os.path.join(folder, CHECKPOINT)
    if not os.path.exists(path):
        raise InputError(f"{option('resume')}: no checkpoint in {folder!r}")
    data = read_npz(path, "checkpoint")
    meta = json_entry(data, "meta", path, "checkpoint")
    missing = [name for name in ("W", "b", "order") if name not in data] + \
              [name for name in ("key", "step", "rng_state", "history") if name not in meta]
    if missing:
        raise FileFormatError(f"checkpoint {path!r} is missing {', '.join(missing)}")
    if meta["key"] != key:
        changed = [k for k in key if not isinstance(meta["key"], dict) or meta["key"].get(k) != key[k]]
        raise InputError(f"{option('resume')}: the checkpoint in {folder!r} belongs to a different configuration "
                         f"(differs in: {', '.join(changed)})")
    W, b, order = data["W"], data["b"], data["order"]
    step = meta["step"]
    if not isinstance(step, int) or step < 0 or W.dtype.kind != "f" or b.dtype.kind != "f" or order.dtype.kind not in "iu":
        raise FileFormatError(f"checkpoint {path!r} is damaged (step {step!r}, arrays {W.dtype}/{b.dtype}/{order.dtype})")
    return _State(W.copy(), b.copy(), step, order.copy(), meta["rng_state"], meta["history"])


@warns_once_per_cause
def train(params, X, Y, settings: TrainSettings, *, backend=None, X_test=None, Y_test=None, probe=None,
          checkpoint_dir: str | None = None, resume: bool = False, overwrite: bool = False,
          on_step=None) -> TrainResult:
    """Train `params` on (X, Y) with plain SGD; returns the trained params and the history.

    History lists (all JSON-friendly): "step", "batch_loss" every step; at every `eval_every` steps and at the
    end "eval_step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"; at every `probe_every`
    steps "probe_step" and "kernel_change" = ‖Θ̃_t − Θ̃_0‖/‖Θ̃_0‖ on the probe inputs (Theorem 2's invariance).

    `checkpoint_dir` is a run folder (docs/files.md#results-folders): `resume` continues the checkpoint a run of
    the same configuration left there, `overwrite` replaces whatever run left one.

    Raises:
        TrainingDiverged (a FloatingPointError): the loss became NaN or infinite; the last good state is
            checkpointed first.
        FolderConfigError: `checkpoint_dir` holds another configuration's checkpoint (the differing keys named),
            or this one's without `resume` or `overwrite`.
    """
    with contextlib.ExitStack() as exits:  # holds the checkpoint folder and writer, once the inputs are checked
        run = _TrainingRun.start(params, X, Y, settings, backend, X_test, Y_test, probe, checkpoint_dir, resume,
                                 overwrite, exits)
        return run.steps(on_step)


@dataclass
class _TrainingRun:
    """One call of `train` once its inputs are checked: the network and its packed inputs, the settings and
    what they fix (step size, batch, steps per epoch, total), the state with its RNG, the history, the probe's
    initial kernel and the checkpoint writer. `steps` runs it to the end."""

    params: object
    settings: TrainSettings
    engine: object
    net: object
    Xp: np.ndarray
    targets: np.ndarray
    test: tuple | None  # (packed X_test, Y_test)
    kind: str | None
    rate: float
    batch: int
    per_epoch: int
    total: int
    rng: np.random.Generator
    state: _State
    probe: np.ndarray | None
    probe_K0: np.ndarray | None
    checkpoint_dir: str | None
    writer: CheckpointWriter | None

    @classmethod
    def start(cls, params, X, Y, settings, backend, X_test, Y_test, probe, checkpoint_dir, resume, overwrite,
              exits) -> "_TrainingRun":
        """Check the inputs, hold the checkpoint folder (in `exits`) and load its checkpoint when resuming."""
        from .api import check_params, scaled_ntk

        spec = check_params(params, ensembles=False).spec
        if not isinstance(settings, TrainSettings):
            raise TypeError(f"settings must be a TrainSettings, got {type(settings).__name__}")
        rate = raw_learning_rate(spec, eta=settings.eta, lr=settings.lr)
        engine = get_backend(backend)
        warn_if_unresolved(spec.carrier_scale, params.dtype)
        net = pack(params)
        Xp, Xt = (None if array is None else pad_inputs(net, array)
                  for array in check_input_sets({"X": X, "X_test": X_test}, spec))
        targets = check_targets(Y, len(Xp), spec.outputs)
        test = None
        if X_test is not None:
            test = (Xt, check_targets(Y_test, len(Xt), spec.outputs, "Y_test"))
        N = len(Xp)
        batch = min(settings.batch_size or N, N)
        per_epoch = -(-N // batch)
        total = settings.steps if settings.steps is not None else settings.epochs * per_epoch
        key = run_key(params, settings, X, Y)
        if resume and not checkpoint_dir:
            raise InputError(f"{option('resume')} needs {option('checkpoint_dir', None)}, the folder of the run to "
                             f"resume")
        if checkpoint_dir:  # a run folder (docs/files.md#results-folders): another run's checkpoint is never replaced
            exits.enter_context(run_folder(checkpoint_dir, "train", key, resume=resume, overwrite=overwrite,
                                           what="checkpoint folder"))
        writer = exits.enter_context(CheckpointWriter(checkpoint_dir, key)) if checkpoint_dir else None
        rng = np.random.default_rng(settings.seed)
        if resume:
            state = _load(checkpoint_dir, key)
            try:
                rng.bit_generator.state = state.rng_state
            except (TypeError, ValueError, KeyError) as exc:
                raise FileFormatError(f"checkpoint in {checkpoint_dir!r}: damaged RNG state ({exc})") from None
        else:
            state = _State(net.W.copy(), net.b.copy(), 0, np.arange(N), rng.bit_generator.state, {})
        for name in ("step", "batch_loss", "eval_step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                     "probe_step", "kernel_change"):
            state.history.setdefault(name, [])
        probe_K0 = None if probe is None else scaled_ntk(params, probe, backend=engine)
        return cls(params, settings, engine, net, Xp, targets, test, classification_kind(targets), rate, batch,
                   per_epoch, total, rng, state, probe, probe_K0, checkpoint_dir, writer)

    @property
    def history(self) -> dict:
        return self.state.history

    def current(self):
        """The packed network at the current weights."""
        return replace(self.net, W=self.state.W, b=self.state.b)

    def evaluate(self, step: int) -> None:
        """Loss and accuracy on the (first `eval_points`) training and test points, at `step`."""
        shown, loss, history = slice(self.settings.eval_points), self.settings.loss, self.history
        outputs = self.engine.forward(self.current(), self.Xp[shown])
        history["eval_step"].append(step)
        history["train_loss"].append(loss_value(outputs, self.targets[shown], loss))
        history["train_accuracy"].append(accuracy(outputs, self.targets[shown], self.kind))
        if self.test is not None:
            Xt, Yt = self.test
            out_t = self.engine.forward(self.current(), Xt[shown])
            history["test_loss"].append(loss_value(out_t, Yt[shown], loss))
            history["test_accuracy"].append(accuracy(out_t, Yt[shown], self.kind))

    def probe_change(self, step: int) -> None:
        """‖Θ̃_t − Θ̃_0‖/‖Θ̃_0‖ on the probe inputs, at `step`."""
        from .api import scaled_ntk

        K = scaled_ntk(self.params.with_packed(self.state.W, self.state.b), self.probe, backend=self.engine)
        self.history["probe_step"].append(step)
        self.history["kernel_change"].append(float(np.linalg.norm(K - self.probe_K0) / np.linalg.norm(self.probe_K0)))

    def every(self, name: str) -> int:
        """How often (in steps) to evaluate, probe or checkpoint; 0: never (no probe inputs, no folder)."""
        if name == "probe" and self.probe is None or name == "checkpoint" and not self.checkpoint_dir:
            return 0
        return getattr(self.settings, f"{name}_every")

    def next_stop(self, step: int) -> int:
        """The first step after `step` at which the loop must leave `descend`: an epoch start, an evaluation,
        a probe, a checkpoint, or the end."""
        stops = [self.total, (step // self.per_epoch + 1) * self.per_epoch]
        for every in (self.every("eval"), self.every("probe"), self.every("checkpoint")):
            if every:
                stops.append((step // every + 1) * every)
        return min(stops)

    def plan(self, first: int, stop: int) -> list:
        """Index plans of steps first … stop−1 (one epoch): None where a step uses every point."""
        if self.batch >= len(self.Xp):
            return [None] * (stop - first)
        batch, per_epoch = self.batch, self.per_epoch
        return [self.state.order[(s % per_epoch) * batch:(s % per_epoch + 1) * batch] for s in range(first, stop)]

    def descend(self, step: int, stop: int, on_step) -> list:
        """Steps step … stop−1 through the backend; their batch losses. A divergence checkpoints the last good
        state and is raised again naming it."""
        state, history = self.state, self.history
        report = (lambda i, value: on_step(step + i + 1, self.total, value)) if on_step else None
        try:
            state.W, state.b, losses = self.engine.descend(self.current(), self.Xp, self.targets, self.settings.loss,
                                                           self.rate, self.plan(step, stop), report)
        except TrainingDiverged as exc:
            history["step"].extend(range(step, step + len(exc.losses)))
            history["batch_loss"].extend(float(v) for v in exc.losses)
            state.W, state.b, state.step = exc.W, exc.b, step + exc.step
            if self.writer is not None:
                self.writer.save(state)
                self.writer.wait()
            where = (f"; the last good state (step {state.step}) is saved in {self.checkpoint_dir}"
                     if self.checkpoint_dir else "")
            raise TrainingDiverged(f"loss became {exc.value} at step {state.step}{where}; try a smaller learning rate",
                                   state.step, exc.W, exc.b, history["batch_loss"], exc.value) from None
        return losses

    def steps(self, on_step) -> TrainResult:
        """Run from the state's step to the total, evaluating, probing and checkpointing on schedule."""
        state, history, settings = self.state, self.history, self.settings
        start_step = state.step
        started = time.perf_counter()
        if start_step == 0 and self.every("probe"):
            self.probe_change(0)
        step, N = start_step, len(self.Xp)
        grew = False  # the loss-growth warning is given once per run
        while step < self.total:
            if step % self.per_epoch == 0:
                state.order = self.rng.permutation(N) if self.batch < N else np.arange(N)
                state.rng_state = self.rng.bit_generator.state
            stop = self.next_stop(step)
            losses = self.descend(step, stop, on_step)
            history["step"].extend(range(step, stop))
            history["batch_loss"].extend(float(v) for v in losses)
            grew = grew or warn_if_loss_grew(losses, history["batch_loss"][0], step)
            step = state.step = stop
            for name, action in (("eval", self.evaluate), ("probe", self.probe_change)):
                if self.every(name) and step % self.every(name) == 0:
                    action(step)
            if self.writer is not None and settings.checkpoint_every and step % settings.checkpoint_every == 0:
                self.writer.save(state)
        if not history["eval_step"] or history["eval_step"][-1] != state.step:
            self.evaluate(state.step)
        if self.writer is not None:
            self.writer.save(state)  # waited for as the writer closes, before the result returns
        return TrainResult(self.params.with_packed(state.W, state.b), history, state.step,
                           time.perf_counter() - started, start_step)
