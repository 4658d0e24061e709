"""Every command's options with values they cannot take: a usage error (exit 2) naming the option.

Click's own types refuse most values before the command runs; the library's checks
(``ConfigError``) refuse the rest after reading the inputs, and ``LibraryCommand``
reports them as usage errors of the flag too. A few refusals are failures (exit 1)
that name the option in their sentence. Outputs inside an input are here as well.
"""

from __future__ import annotations

from pathlib import Path

from . import Case
from .stores import TRAIN

# command → (argv before the option under test, shared inputs it names)
BASE = {
    "fetch-synthetic": ["fetch", "synthetic", "-o", "{tmp}/syn", "--num-records", "4", "--fs", "100"],
    "fetch-ptbxl": ["fetch", "ptbxl", "-o", "{tmp}/ptbxl", "--mirror", "http://127.0.0.1:9"],
    "prep": ["prep", "{small_raw}", "-o", "{tmp}/out.zarr", "--fs", "100", "--seconds", "4", "--jobs", "1"],
    "split": ["split", "{small_store}", "-o", "{tmp}/splits"],
    "train": ["train", "resnet18", "{small_store}", "-o", "{tmp}/m.ckpt", *TRAIN],
    "eval": ["eval", "{ckpt}", "{store}", "--bootstrap", "0", "--device", "cpu"],
    "explain": ["explain", "{ckpt}", "{store}", "-o", "{tmp}/cams", "--no-charts", "--device", "cpu"],
    "profile": ["profile", "resnet18", "--repeats", "1", "--batch-size", "1", "--num-samples", "100", "--device", "cpu"],
    "pretrain": ["pretrain", "cpc", "{small_store}", "-o", "{tmp}/e.ckpt", *TRAIN[:-4], "--workers", "1"],
    "distill": ["distill", "{ckpt}", "{small_store}", "--student", "resnet18", "-o", "{tmp}/s.ckpt", *TRAIN],
    "predict": ["predict", "{ckpt}", "{tmp}/r.csv"],
    "export": ["export", "{ckpt}", "-o", "{tmp}/m.pt"],
    "info": ["info"],
}
SHARED = ("small_raw", "small_store", "ckpt", "store", "train_store", "val_store")


def _build(argv, files):
    shared = [n for n in SHARED if any(f"{{{n}}}" in a for a in argv)]

    def build(tmp: Path, fx) -> dict:
        names = {n: getattr(fx, n) for n in shared}
        for name, data in files.items():
            if callable(data):
                data(tmp / name, fx)
            else:
                (tmp / name).write_bytes(data)
        return names

    return build


def opt(command: str, args: list, needle: str, exit: int = 2, xfail=None, files=None, slow=False, id=None, env=None) -> Case:
    argv = BASE[command] + list(args)
    label = id or "_".join(a.lstrip("-") for a in args if not a.startswith("{"))[:40]
    return Case(f"cli-{command}-{label}", _build(argv, files or {}), argv, exit, needle, xfail, slow, env=env)


def _copies(names: list[str]):
    """Copies of shared inputs under tmp, under the same names."""

    def build(tmp: Path, fx) -> dict:
        return {n: fx.copy(n, tmp / f"{n}{getattr(fx, n).suffix}") for n in names}

    return build


def _npy(bad: str):
    def make(path: Path, fx):
        import numpy as np

        from ecgtool.data.store import open_store

        n = len(open_store(fx.store))
        with open(path, "wb") as f:
            if bad == "shape":
                np.save(f, np.zeros((5, n - 1), np.int32))
            elif bad == "range":
                np.save(f, np.full((5, n), n + 10, np.int32))
            else:
                f.write(b"not numpy at all")

    return make


def _csv(rows: int = 500, bad: str | None = None):
    """A 12-lead CSV recording (``bad``: one sample of it)."""

    def make(path: Path, fx):
        import numpy as np

        x = np.random.default_rng(0).normal(size=(rows, 12)).round(4).astype(object)
        if bad is not None:
            x[3, 2] = bad
        header = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
        path.write_text("\n".join([header, *(",".join(map(str, row)) for row in x)]) + "\n")

    return make


CASES = [
    # fetch
    opt("fetch-synthetic", ["--num-records", "0"], "--num-records"),
    opt("fetch-synthetic", ["--fs", "10"], "--fs"),
    opt("fetch-synthetic", ["--seconds", "1"], "--seconds"),
    opt("fetch-synthetic", ["--powerline", "55"], "--powerline"),
    opt("fetch-synthetic", ["--seed", "-1"], "--seed"),
    opt("fetch-synthetic", ["--snr", "loud"], "--snr"),
    opt("fetch-synthetic", ["--leads", ","], "--leads"),
    opt("fetch-synthetic", ["--leads", "I,Q7"], "--leads"),
    opt("fetch-ptbxl", ["--connections", "0"], "--connections"),
    opt("fetch-ptbxl", ["--retries", "-1"], "--retries"),
    opt("fetch-ptbxl", ["--variant", "250"], "--variant"),
    # prep
    opt("prep", ["--fs", "0"], "--fs"),
    opt("prep", ["--fs", "fast"], "--fs"),
    opt("prep", ["--seconds", "-1"], "--seconds"),
    opt("prep", ["--crop-mode", "middle-ish"], "--crop-mode"),
    opt("prep", ["--normalise", "minmax"], "--normalise"),
    opt("prep", ["--lowcut", "-1"], "--lowcut"),
    opt("prep", ["--lowcut", "40", "--highcut", "10"], "--lowcut"),
    opt("prep", ["--notch", "-50"], "--notch"),
    opt("prep", ["--dtype", "float64"], "--dtype"),
    opt("prep", ["--jobs", "0"], "--jobs"),
    opt("prep", ["--workers", "0"], "--jobs", id="workers-is-jobs"),  # the old spelling, named by the new
    opt("prep", ["--on-error", "ignore"], "--on-error"),
    opt("prep", ["--limit", "0"], "--limit"),
    opt("prep", ["--shard", "3/2"], "--shard"),
    opt("prep", ["--shard", "first"], "--shard"),
    opt("prep", ["--shard", "0/2", "--seconds", "0"], "--shard"),
    opt("prep", ["--beat-window", "a,b"], "--beat-window"),
    opt("prep", ["--beat-window", "0.5"], "--beat-window"),
    opt("prep", ["--rate", "250"], "--rate"),
    opt("prep", ["--min-likelihood", "101"], "--min-likelihood"),
    opt("prep", ["--leads", "I,Q7"], "--leads"),
    opt("prep", ["--reader", "nosuchreader"], "--reader"),
    opt("prep", ["--labels", "{tmp}"], "--labels"),
    # split
    opt("split", ["--ratios", "0.5,0.5"], "--ratios"),
    opt("split", ["--ratios", "0.9,0.2,0.2"], "--ratios"),
    opt("split", ["--ratios", "a,b,c"], "--ratios"),
    opt("split", ["--num-folds", "2"], "--num-folds"),
    opt("split", ["--train-folds", "1-x", "--val-folds", "9", "--test-folds", "10"], "--train-folds"),
    opt("split", ["--train-folds", "1-3"], "--val-folds"),
    opt("split", ["--seed", "-1"], "--seed"),
    # train
    Case("cli-train-unknown-model", _build(["{small_store}"], {}),
         ["train", "nosuchnet", "{small_store}", "-o", "{tmp}/m.ckpt", *TRAIN], 2, "MODEL"),
    opt("train", ["--epochs", "0"], "--epochs"),
    opt("train", ["--batch-size", "0"], "--batch-size"),
    opt("train", ["--lr", "0"], "--lr"),
    opt("train", ["--weight-decay", "-1"], "--weight-decay"),
    opt("train", ["--schedule", "sawtooth"], "--schedule"),
    opt("train", ["--gamma", "2"], "--gamma"),
    opt("train", ["--warmup-epochs", "-1"], "--warmup-epochs"),
    opt("train", ["--model-arg", "noequals"], "--model-arg"),
    opt("train", ["--model-arg", "no_such_argument=1"], "--model-arg"),
    opt("train", ["--device", "tpu:7"], "--device"),
    opt("train", ["--device", "cuda:9"], "--device", exit=1),
    opt("train", ["--precision", "fp8"], "--precision"),
    opt("train", ["--loader", "telepathy"], "--loader"),
    opt("train", ["--crop", "100000"], "--crop"),
    opt("train", ["--workers", "0"], "--workers"),
    opt("train", ["--val", "{tmp}/nosuch.zarr"], "--val"),
    opt("train", ["--label-fraction", "0"], "--label-fraction"),
    opt("train", ["--label-fraction", "1.5"], "--label-fraction"),
    opt("train", ["--augment", "nosuch"], "--augment"),
    opt("train", ["--augment", "noise:std=-1"], "--augment"),
    opt("train", ["--augment", "noise:loudness=3"], "--augment"),
    opt("train", ["--encoder-lr", "0"], "--encoder-lr"),
    opt("train", ["--init", "random", "--encoder-lr", "1e-4", "--freeze-encoder"], "--encoder-lr"),
    opt("train", ["--init", "{tmp}/nosuch.ckpt"], "--init", id="init-missing"),
    opt("train", ["--init", "{ckpt}"], "--init", id="init-other-input"),  # another input: leads, samples, base_width
    opt("train", ["--init", "{tmp}/junk.ckpt"], "junk.ckpt", exit=1, files={"junk.ckpt": b"not a checkpoint"},
        id="init-not-a-checkpoint"),
    # absurd sizes: refused by their bounds, not an OverflowError, a MemoryError or an OOM kill far from the cause
    opt("train", ["--warmup-epochs", "1e308"], "--warmup-epochs"),
    opt("train", ["--threads", "100000"], "--threads"),
    opt("train", ["--workers", "100000"], "--workers"),
    opt("pretrain", ["--warmup-epochs", "1e308"], "--warmup-epochs"),
    opt("pretrain", ["--threads", "100000"], "--threads"),
    opt("distill", ["--warmup-epochs", "1e308"], "--warmup-epochs"),
    opt("distill", ["--temperature", "1e-320"], "--temperature"),
    opt("distill", ["--temperature", "1e308"], "--temperature"),
    opt("distill", ["--method", "mvkt", "--clt-arg", "nce_temperature=1e-320"], "--clt-arg"),
    opt("predict", ["--fs", "0.001"], "--fs", files={"r.csv": _csv()}),
    opt("predict", ["--fs", "1e308"], "--fs", files={"r.csv": _csv()}),
    opt("predict", ["--fs", "100", "--jobs", "100000"], "--jobs", files={"r.csv": _csv()}),
    opt("predict", ["--fs", "100"], "1 non-finite (NaN or infinite) sample(s) in lead(s) III", exit=1,
        files={"r.csv": _csv(bad="inf")}, id="csv-inf"),  # was "1 invalid (NaN) sample(s)"
    opt("prep", ["--fs", "1e308"], "--fs"),
    opt("prep", ["--seconds", "1e308"], "--seconds"),
    opt("prep", ["--jobs", "100000"], "--jobs"),
    opt("profile", ["--threads", "100000"], "--threads"),
    # an option that only means something with another, given without it: refused, never ignored in silence
    opt("train", ["--freeze-encoder"], "Error: --freeze-encoder needs --init", id="freeze-encoder-without-init"),
    opt("distill", ["--freeze-encoder"], "Error: --freeze-encoder needs --init", id="freeze-encoder-without-init"),
    opt("train", ["--gamma", "0.5"], "'--gamma': gamma applies to the step schedule, not cosine"),
    opt("train", ["--schedule", "constant", "--step-size", "3"], "'--step-size': step_size applies to the step schedule"),
    opt("distill", ["--beta", "0.5"], "'--beta': beta applies to --method mvkt, not kd"),
    opt("distill", ["--method", "mvms", "--hard-weight", "0.5"], "'--hard-weight': hard_weight applies to --method mvkt"),
    opt("eval", ["--ci", "0.9"], "'--ci': the interval level 0.9 applies to bootstrap intervals"),
    # KEY=VALUE settings of the wrong kind: named with the kind expected, not a Python TypeError
    opt("pretrain", ["--method-arg", "negatives=abc"], "'--method-arg': cpc negatives takes a whole number (default 128), not 'abc'"),
    opt("pretrain", ["--backbone", "resnet18", "--model-arg", "zero_init_residual=3"],
        "'--model-arg': resnet18 zero_init_residual takes true or false"),
    opt("train", ["--model-arg", "zero_init_residual=\"no\""], "'--model-arg': resnet18 zero_init_residual takes true or false"),
    opt("distill", ["--method", "mvkt", "--clt-arg", "negatives=abc"], "'--clt-arg': CLT negatives must be a whole number"),
    opt("train", ["--augment", "noise:std=abc"], "'--augment': 'noise:std=abc': std must be a number"),
    # eval
    opt("eval", ["--bootstrap", "-1"], "--bootstrap"),
    opt("eval", ["--ci", "1.5"], "--ci"),
    opt("eval", ["--threshold-objective", "luck"], "--threshold-objective"),
    opt("eval", ["--threshold-scope", "galaxy"], "--threshold-scope"),
    opt("eval", ["--window-stride", "0"], "--window-stride"),
    opt("eval", ["--aggregate", "median"], "--aggregate"),
    opt("eval", ["--batch-size", "0"], "--batch-size"),
    opt("eval", ["--resamples", "{tmp}/ids.npy"], "--resamples", files={"ids.npy": _npy("shape")}, id="resamples-shape"),
    opt("eval", ["--resamples", "{tmp}/ids.npy"], "--resamples", files={"ids.npy": _npy("range")}, id="resamples-range"),
    opt("eval", ["--resamples", "{tmp}/ids.npy"], "--resamples", files={"ids.npy": _npy("bytes")}, id="resamples-bytes"),
    opt("eval", ["--save-resamples", "{tmp}/ids.npy"], "--save-resamples"),
    opt("eval", ["--predictions", "{store}"], "--predictions", id="predictions-is-the-store"),
    opt("eval", ["--val", "{store}"], "--val", id="val-is-the-store"),
    opt("eval", ["--compare", "{tmp}"], "--compare", id="compare-is-a-directory"),
    opt("eval", ["--device", "tpu:7"], "--device"),
    # explain
    opt("explain", [], "--records", id="neither-records-nor-limit"),
    opt("explain", ["--limit", "0"], "--limit"),
    opt("explain", ["--limit", "1", "--records", "X"], "--records", id="both-records-and-limit"),
    opt("explain", ["--limit", "1", "--method", "magic"], "--method"),
    opt("explain", ["--limit", "1", "--layer", "no.such.layer"], "--layer"),
    opt("explain", ["--limit", "1", "--class", "NOSUCH"], "--class"),
    opt("explain", ["--limit", "1", "--steps", "1"], "--steps"),
    opt("explain", ["--limit", "1", "--dpi", "10"], "--dpi"),
    opt("explain", ["--limit", "1", "--sanity", "maybe"], "--sanity"),
    opt("explain", ["--records", "NOSUCH-RECORD"], "NOSUCH-RECORD", exit=1, id="records-unknown-id"),
    # profile, info, the group
    opt("profile", ["--num-samples", "8"], "--num-samples"),
    opt("profile", ["--num-leads", "0"], "--num-leads"),
    opt("profile", ["--batch-size", "0"], "--batch-size"),
    opt("profile", ["--repeats", "0"], "--repeats"),
    # export
    opt("export", ["--batch-size", "1"], "--batch-size"),
    opt("export", ["--batch-size", "100000"], "--batch-size"),  # OOM-killed before it had a bound
    opt("export", ["--batch", "100000"], "--batch-size", id="batch-is-batch-size"),  # the old spelling, named by the new
    Case("cli-profile-unknown-model", _build([], {}), ["profile", "nosuchnet"], 2, "MODEL|CHECKPOINT"),
    Case("cli-profile-no-target", _build([], {}), ["profile"], 2, "MODEL"),
    opt("info", ["{tmp}/nosuch.zarr"], "PATH", id="missing-path"),
    Case("cli-unknown-command", _build([], {}), ["frobnicate"], 2, "frobnicate"),
    # the same values from the environment (how Slurm scripts set defaults): the error still names the flag
    opt("train", [], "--gamma", env={"ECGTOOL_TRAIN_GAMMA": "2"}, id="env-gamma-2"),
    opt("prep", [], "--crop-mode", env={"ECGTOOL_PREP_CROP_MODE": "middle"}, id="env-crop-mode-middle"),
    opt("eval", [], "--batch-size", env={"ECGTOOL_EVAL_BATCH_SIZE": "0"}, id="env-batch-size-0"),
    opt("split", [], "--ratios", env={"ECGTOOL_SPLIT_RATIOS": "0.9,0.2,0.2"}, id="env-ratios-sum"),
    # an output equal to or inside an input
    Case("cli-prep-output-is-the-input", _build(["{small_raw}"], {}),
         ["prep", "{small_raw}", "-o", "{small_raw}", "--jobs", "1"], 1, "{small_raw}"),
    # (on copies: a regression would write into its input, which must not be a fixture other tests share)
    Case("cli-prep-output-inside-the-input", _copies(["small_raw"]),
         ["prep", "{small_raw}", "-o", "{small_raw}/out.zarr", "--fs", "100", "--seconds", "4", "--jobs", "1"], 1, "{small_raw}"),
    Case("cli-split-output-inside-the-input", _copies(["small_store"]),
         ["split", "{small_store}", "-o", "{small_store}", "--ratios", "0.5,0.25,0.25"], 1, "{small_store}"),
    Case("cli-train-output-inside-the-input", _copies(["small_store"]),
         ["train", "resnet18", "{small_store}", "-o", "{small_store}/m.ckpt", *TRAIN], 1, "{small_store}"),
    Case("cli-train-output-is-the-init-overwrite", _copies(["small_store", "encoder"]),
         ["train", "resnet18", "{small_store}", "-o", "{encoder}", "--init", "{encoder}", "--overwrite", *TRAIN], 1, "{encoder}"),
    Case("cli-explain-output-inside-the-input", _copies(["ckpt", "store"]),
         ["explain", "{ckpt}", "{store}", "-o", "{store}/cams", "--limit", "1", "--no-charts", "--device", "cpu"], 1, "{store}"),
    Case("cli-eval-predictions-inside-the-input", _copies(["ckpt", "store"]),
         ["eval", "{ckpt}", "{store}", "--bootstrap", "0", "--device", "cpu", "--predictions", "{store}/p.zarr"], 1, "{store}"),
    Case("cli-eval-plots-inside-the-input", _copies(["ckpt", "store"]),
         ["eval", "{ckpt}", "{store}", "--bootstrap", "0", "--device", "cpu", "--plots", "{store}/plots"], 1, "{store}"),
]
