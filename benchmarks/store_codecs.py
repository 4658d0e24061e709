"""Which dtype, codec, shuffle and chunk size keep a store no larger than the raw WFDB data, and how fast each decodes.

    python benchmarks/store_codecs.py [--record PATH ...] [--records 48] [--stride 1] [--repeats 3]

Issue 16 asks for a default store no larger than the raw WFDB data it came from, chosen by
measurement. This script is that measurement. Rows come from ``--record`` (WFDB records; the
12 standard leads picked by name, case-insensitive, or every lead when a record lacks them), cut
into 10 s windows shifted by ``--stride`` seconds, or without it from ecgtool's synthetic
generator (500 Hz, 10 s; synthetic signals compress differently from real ones — smoother, less
noise — so only real records settle the choice). Each row goes through ecgtool's own prep
(``preprocess`` with a ``PrepConfig``) in five cases: 100 Hz and 500 Hz, z-scored (prep's default)
and ``--normalise none`` (mV), and a padded case — 6 s recordings padded with zeros to 10 s at
500 Hz, z-scored, as CPSC2018's variable-length records are — whose raw data is the 6 s recorded.

Candidates: dtype float32, float16, or int16 with a per-record, per-lead scale
(``ecgtool.data.quantise``), each without compression (Zarr's bytes codec only) or with Blosc lz4 or
blosclz (level 5) or zstd (levels 1, 3, 5), byte shuffle or bitshuffle. Blosc encodes with the
dtype's item size as its type size, as Zarr's BloscCodec does (a bare ``bytes`` buffer would get type
size 1, which makes shuffling a no-op).

Measured per candidate and case:

* **size/raw**: the compressed signals (plus int16's scale array, 4 bytes per lead and record) over
  the raw WFDB data of the same rows at the same rate: a format-16 ``.dat`` (2 bytes × leads ×
  recorded samples) and a ``.hea`` of the size ``wfdb.wrsamp`` writes for such a record (no comment
  lines). Blosc compresses each block (≤ 256 KB here) on its own, so the size does not depend on the
  chunk size beyond a 16-byte header per chunk; it is measured on the distinct rows.
* **decode 1T / 2T**: GB/s of decoded (stored-dtype) bytes: a copy of the chunk's bytes (reading
  its file from the page cache) and one Blosc call (numcodecs without Blosc's internal threads;
  nothing more for "none"), on one thread (its CPU time, which other processes barely disturb) and
  over chunks in two threads as ecgtool's loader does (wall clock, as noisy as the machine is busy).
* **→f32**: GB/s of float32 written by the conversion a reader does after decoding
  (``dequantise`` for int16, ``astype`` for float16, nothing for float32).
* **rows 1T / 2T**: decode then convert, GB/s of float32 rows delivered: what the loader's epoch
  costs, comparable across dtypes. Speeds are the best of ``--repeats`` passes over 2 chunks of
  the candidate's chunk size (the distinct rows repeated to fill a chunk: each Blosc block holds
  distinct rows as long as the rows span more than one block, which the script checks). Smaller
  chunks decode faster partly because a chunk then stays in the CPU's caches (as in the loader).
* **max err / err/peak**: the largest absolute difference from the float32 rows (z units or mV), and
  the largest difference relative to its lead's peak |x| in that row.

Chunk sizes: every candidate at ecgtool's ``CHUNK_BYTES`` (4 MB of stored bytes per chunk, whole
records, ``chunk_records_for``); the three no larger than raw in the most cases and fastest also at
1 MB and 16 MB. The script ends with the candidate and chunk size no larger than raw in every case
with the fastest ``rows 1T`` (geometric mean over the cases; one thread's CPU time, because it
is what a busy machine does not disturb). About a minute on 2 CPU cores.

Windows of one record shifted by less than 10 s share samples, which a compressor would exploit as it
never could in a store of distinct records (on MIT-BIH record 100, 1 s shifts made int16 + lz4 9 %
smaller than distinct windows). Sizes are therefore measured on runs of windows that share none
(0, 10, 20 s | 1, 11, 21 s | …), each compressed on its own: a run is smaller than a Blosc block, which
understates the context a block of distinct records gives, while windows of one patient resemble each
other more than distinct patients' records do. Pass several records (and --stride 10) for more.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecgtool.data import store as store_module  # noqa: E402
from ecgtool.data.quantise import dequantise, quantise  # noqa: E402
from ecgtool.data.readers.wfdb_dir import STANDARD_LEADS, canonical_lead  # noqa: E402
from ecgtool.data.transforms import PrepConfig, preprocess  # noqa: E402

SECONDS = 10.0  # a store row
PADDED_SECONDS = 6.0  # what a padded row recorded
DTYPES = ("float32", "float16", "int16")
MB = 1 << 20
CHUNK_SIZES = (1 * MB, 4 * MB, 16 * MB)
DEFAULT_CHUNK = store_module.CHUNK_BYTES
TIMED_CHUNKS = 2  # chunks decoded per timed pass: one for each of the two threads
SWEEP = 3  # candidates per case (the fastest no larger than raw) also timed at the other chunk sizes
MAX_BLOCK = 256 << 10  # Blosc's largest automatic block size for these codecs and levels


@dataclass(frozen=True)
class Case:
    name: str
    fs: float
    normalisation: str
    recorded: float  # seconds recorded of the SECONDS in a row (the rest zero padding)


CASES = (
    Case("100 Hz, z-score", 100, "zscore", SECONDS),
    Case("500 Hz, z-score", 500, "zscore", SECONDS),
    Case("100 Hz, none (mV)", 100, "none", SECONDS),
    Case("500 Hz, none (mV)", 500, "none", SECONDS),
    Case("500 Hz, z-score, 6 s padded to 10 s", 500, "zscore", PADDED_SECONDS),
)


@dataclass(frozen=True)
class Codec:
    cname: str  # "none": Zarr's bytes codec only
    clevel: int = 0
    shuffle: int = 0  # numcodecs' Blosc.SHUFFLE (1) or BITSHUFFLE (2)

    @property
    def label(self) -> str:
        if self.cname == "none":
            return "none"
        return f"{self.cname}-{self.clevel} {'bitshuffle' if self.shuffle == 2 else 'shuffle'}"

    def blosc(self):
        from numcodecs import Blosc

        return Blosc(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle)


def codecs() -> list[Codec]:
    out = [Codec("none")]
    for cname, levels in (("lz4", (5,)), ("blosclz", (5,)), ("zstd", (1, 3, 5))):
        out += [Codec(cname, level, shuffle) for level in levels for shuffle in (1, 2)]
    return out


# -- inputs --------------------------------------------------------------------------------------------


@dataclass
class Source:
    """Recordings in mV, ``[n, leads, samples]`` at ``fs``, each ``SECONDS`` long."""

    description: str
    windows: np.ndarray
    fs: float
    leads: list[str]
    synthetic: bool
    groups: list[int]  # consecutive runs of windows that share no samples: sizes are measured one run at a time


def pick_leads(names: list[str]) -> list[int]:
    """Indices of the 12 standard leads in ``names`` (case-insensitive), or all of them if any is missing."""
    canonical = [canonical_lead(n) for n in names]
    if all(lead in canonical for lead in STANDARD_LEADS):
        return [canonical.index(lead) for lead in STANDARD_LEADS]
    return list(range(len(names)))


def window_starts(n_samples: int, fs: float, seconds: float, stride: float) -> list[int]:
    """Start samples of the ``seconds``-long windows, ``stride`` seconds apart, that fit in ``n_samples``."""
    width, step = int(round(seconds * fs)), max(1, int(round(stride * fs)))
    return list(range(0, n_samples - width + 1, step))


def spread_order(n: int, period: int) -> tuple[np.ndarray, list[int]]:
    """An order of ``n`` windows in runs of windows ``period`` positions apart (0, 10, 20 | 1, 11, 21 | …),
    and the runs' lengths. Windows less than ``period`` apart overlap; their samples are nearly the same,
    which a compressor would exploit as it never could in a store of distinct records, so sizes are
    measured run by run, none of which holds two overlapping windows."""
    period = max(1, min(period, n))
    order = np.array(sorted(range(n), key=lambda i: (i % period, i)), dtype=np.int64)
    return order, [len(range(k, n, period)) for k in range(period)]


def read_records(paths: list[str], stride: float) -> Source:
    import wfdb

    windows, groups, fs, leads, parts = [], [], None, None, []
    for path in paths:
        rec = wfdb.rdrecord(path)
        idx = pick_leads(rec.sig_name)
        names = [canonical_lead(rec.sig_name[i]) for i in idx]
        if fs is not None and (rec.fs != fs or names != leads):
            sys.exit(f"{path}: {rec.fs:g} Hz, leads {', '.join(names)}; the first record has {fs:g} Hz, {', '.join(leads)}")
        fs, leads = rec.fs, names
        x = np.asarray(rec.p_signal[:, idx].T, dtype=np.float64)
        starts = window_starts(x.shape[1], fs, SECONDS, stride)
        if not starts:
            sys.exit(f"{path}: {x.shape[1] / fs:.1f} s, shorter than one {SECONDS:g} s window")
        width = int(round(SECONDS * fs))
        w = np.stack([x[:, s : s + width] for s in starts])
        order, runs = spread_order(len(w), int(math.ceil(SECONDS / stride)))
        windows.append(w[order])
        groups += runs
        formats = sorted({str(rec.fmt[i]) for i in idx})
        parts.append(f"{Path(path).name} ({x.shape[1] / fs:.1f} s, format {'/'.join(formats)}, {len(w)} windows)")
    description = (f"real: {'; '.join(parts)}; {len(leads)} leads ({', '.join(leads)}) at {fs:g} Hz, "
                   f"{SECONDS:g} s windows shifted by {stride:g} s; sizes measured on runs of windows that share no samples "
                   f"({min(groups)}-{max(groups)} windows), which understates what a Blosc block of distinct records "
                   "gains from its wider context and overstates what windows of one patient share")
    return Source(description, np.concatenate(windows), float(fs), leads, synthetic=False, groups=groups)


def synthetic_records(n: int) -> Source:
    from ecgtool.data.synthetic import LEADS_12, SyntheticConfig, generate_record, sample_patients_and_labels

    cfg = SyntheticConfig(n_records=n, fs=500, duration=SECONDS, seed=0)
    windows = np.stack([generate_record(spec, cfg)[0].T for spec in sample_patients_and_labels(cfg)])
    description = (f"SYNTHETIC: {n} records of ecgtool's generator (seed 0), 12 leads at 500 Hz, {SECONDS:g} s. "
                   "Synthetic signals compress differently from real ones (smooth Gaussian waves, modelled noise): "
                   "run with --record to decide")
    return Source(description, windows, 500.0, list(LEADS_12), synthetic=True, groups=[len(windows)])


def prep_rows(source: Source, case: Case) -> np.ndarray:
    """The float32 rows prep writes for ``case`` (a padded case keeps the first ``case.recorded`` seconds of each window)."""
    cfg = PrepConfig(fs=case.fs, seconds=SECONDS, normalisation=case.normalisation)
    keep = int(round(case.recorded * source.fs))
    return np.stack([preprocess(w[:, :keep], source.fs, cfg, cfg.samples)[0] for w in source.windows])


def header_bytes(leads: list[str], fs: float, n_samples: int) -> int:
    """The size of the ``.hea`` that ``wfdb.wrsamp`` writes for a format-16 record of these leads (no comments)."""
    import wfdb

    with tempfile.TemporaryDirectory(prefix="ecgtool-hea-") as tmp:
        d = np.zeros((n_samples, len(leads)), dtype=np.int16)
        d[0] = -1234  # a first value and a checksum of typical width
        wfdb.wrsamp("r0000001", fs=fs, units=["mV"] * len(leads), sig_name=list(leads), d_signal=d,
                    fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
                    write_dir=tmp)
        return (Path(tmp) / "r0000001.hea").stat().st_size


def raw_bytes(n_rows: int, n_leads: int, recorded_samples: int, hea: int) -> int:
    """WFDB format 16: two bytes per lead and sample in the .dat, plus one header per record."""
    return n_rows * (2 * n_leads * recorded_samples + hea)


# -- candidates ------------------------------------------------------------------------------------------


def stored(rows: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows as a store of ``dtype`` holds them: the array and int16's per-record, per-lead scale."""
    if dtype == "int16":
        return quantise(rows)
    return rows.astype(dtype), None


def to_float32(q: np.ndarray, scale: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    return dequantise(q, scale, out=out)


def precision(rows: np.ndarray, back: np.ndarray) -> tuple[float, float]:
    """``(max |error|, max |error| / the lead's peak |x| in its row)``; an all-zero lead counts as exact."""
    err = np.abs(back.astype(np.float64) - rows)
    peak = np.abs(rows).max(axis=-1)
    lead_err = err.max(axis=-1)
    rel = np.divide(lead_err, peak, out=np.zeros_like(lead_err), where=peak > 0)
    return float(err.max()), float(rel.max())


def chunk_records(n_leads: int, n_samples: int, itemsize: int, chunk_bytes: int) -> int:
    """Records per chunk as the store chooses them (``chunk_records_for``), for a target of ``chunk_bytes``."""
    with mock.patch.object(store_module, "CHUNK_BYTES", chunk_bytes):
        return store_module.chunk_records_for(n_leads, n_samples, itemsize)


def encode(codec: Codec, a: np.ndarray) -> bytes:
    """One chunk's stored bytes (Blosc's type size is the dtype's item size, as in Zarr's BloscCodec)."""
    a = np.ascontiguousarray(a)
    return a.tobytes() if codec.cname == "none" else codec.blosc().encode(a)


def stored_size(codec: Codec, q: np.ndarray, scale: np.ndarray | None, per_chunk: int, groups: list[int]) -> int:
    """Bytes of the chunks of ``per_chunk`` rows, each run of ``groups`` chunked on its own, plus int16's scales."""
    size, start = 0, 0
    for length in groups:
        stop = start + length
        size += sum(len(encode(codec, q[s : min(s + per_chunk, stop)])) for s in range(start, stop, per_chunk))
        start = stop
    return size + (0 if scale is None else scale.nbytes)


def best_rate(fn, nbytes: int, repeats: int, clock=time.perf_counter) -> float:
    """GB/s of the fastest of ``repeats`` calls of ``fn`` that each handle ``nbytes``, timed by ``clock``."""
    best = math.inf
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return nbytes / max(best, 1e-9) / 1e9


@dataclass
class Speed:
    decode1: float
    decode2: float
    convert: float
    rows1: float
    rows2: float


def measure_speed(codec: Codec, q: np.ndarray, scale: np.ndarray | None, per_chunk: int, repeats: int,
                  pool: ThreadPoolExecutor) -> Speed:
    """Decode and convert ``TIMED_CHUNKS`` chunks of ``per_chunk`` rows (the rows repeated to fill them)."""
    take = np.arange(per_chunk) % len(q)
    chunk_q = np.ascontiguousarray(q[take])
    chunk_scale = None if scale is None else scale[take]
    frame = encode(codec, chunk_q)
    decoder = None if codec.cname == "none" else codec.blosc()
    shape, dtype = chunk_q.shape, chunk_q.dtype
    outs = [np.empty(shape, np.float32) for _ in range(TIMED_CHUNKS)]

    def decode(_=None) -> np.ndarray:
        raw = bytearray(frame)  # the read: a copy of the file's bytes, as read_chunk's read_bytes makes
        if decoder is not None:
            raw = decoder.decode(raw)
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def decode_convert(i: int) -> None:
        rows = decode()
        if scale is None and dtype == np.float32:
            outs[i] = rows  # a float32 store hands its decoded rows on as they are
        else:
            to_float32(rows, chunk_scale, outs[i])

    decoded = decode()
    assert np.array_equal(decoded, chunk_q), f"{codec.label}: decoding does not give the rows back"
    stored_bytes, f32_bytes = TIMED_CHUNKS * chunk_q.nbytes, TIMED_CHUNKS * chunk_q.size * 4
    # One thread: the thread's CPU time, which other processes on the machine barely disturb. Two threads:
    # wall-clock time, the only measure of what a second thread gains, and as noisy as the machine is busy.
    cpu = time.thread_time
    if scale is None and dtype == np.float32:
        convert = math.inf
    else:
        convert = best_rate(lambda: [to_float32(decoded, chunk_scale, o) for o in outs], f32_bytes, repeats, cpu)
    return Speed(
        decode1=best_rate(lambda: [decode() for _ in range(TIMED_CHUNKS)], stored_bytes, repeats, cpu),
        decode2=best_rate(lambda: list(pool.map(decode, range(TIMED_CHUNKS))), stored_bytes, repeats),
        convert=convert,
        rows1=best_rate(lambda: [decode_convert(i) for i in range(TIMED_CHUNKS)], f32_bytes, repeats, cpu),
        rows2=best_rate(lambda: list(pool.map(decode_convert, range(TIMED_CHUNKS))), f32_bytes, repeats),
    )


@dataclass
class Result:
    dtype: str
    codec: Codec
    ratio: float
    max_err: float
    rel_err: float
    speeds: dict  # chunk bytes -> (records per chunk, Speed)

    @property
    def key(self) -> tuple[str, str]:
        return self.dtype, self.codec.label


# -- output ------------------------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return "—" if math.isinf(x) else f"{x:.2f}"


def fmt_err(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


def mb(nbytes: int) -> str:
    return f"{nbytes / MB:g} MB"


def case_table(results: list[Result]) -> list[str]:
    lines = ["| dtype | codec | size/raw | decode 1T | decode 2T | →f32 | rows 1T | rows 2T | max err | err/peak |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        n, s = r.speeds[DEFAULT_CHUNK]
        lines.append(f"| {r.dtype} | {r.codec.label} | {r.ratio:.3f} | {fmt_rate(s.decode1)} | {fmt_rate(s.decode2)} | "
                     f"{fmt_rate(s.convert)} | {s.rows1:.2f} | {s.rows2:.2f} | {fmt_err(r.max_err)} | {fmt_err(r.rel_err)} |")
    return lines


def chunk_table(swept: list[tuple[str, Result]]) -> list[str]:
    head = " | ".join(f"rows 1T / 2T, {mb(c)}" for c in CHUNK_SIZES)
    lines = [f"| case | dtype | codec | size/raw | {head} |", "|---|---|---|---:|" + "---:|" * len(CHUNK_SIZES)]
    for case, r in swept:
        cells = " | ".join(f"{r.speeds[c][1].rows1:.2f} / {r.speeds[c][1].rows2:.2f} ({r.speeds[c][0]} rec)"
                           for c in CHUNK_SIZES)
        lines.append(f"| {case} | {r.dtype} | {r.codec.label} | {r.ratio:.3f} | {cells} |")
    return lines


def fastest_within_raw(results: list[Result]) -> Result | None:
    """The candidate no larger than raw with the highest ``rows 1T`` at the default chunk size."""
    within = [r for r in results if r.ratio <= 1]
    return max(within, key=lambda r: r.speeds[DEFAULT_CHUNK][1].rows1) if within else None


def gmean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def ranked(per_case: dict[str, list[Result]]) -> list[tuple[str, str]]:
    """Candidates by the number of cases in which they are no larger than raw, then by the geometric mean
    of ``rows 1T`` (default chunk size) over the cases."""
    by_key = {}
    for results in per_case.values():
        for r in results:
            by_key.setdefault(r.key, []).append(r)
    score = {k: (sum(r.ratio <= 1 for r in rs), gmean(r.speeds[DEFAULT_CHUNK][1].rows1 for r in rs)) for k, rs in by_key.items()}
    return sorted(score, key=lambda k: score[k], reverse=True)


def choose(per_case: dict[str, list[Result]]) -> str:
    """The final line: the candidate (dtype, codec, chunk size) no larger than raw in every case whose
    geometric-mean ``rows 1T`` over the cases is highest."""
    keys = {}
    for results in per_case.values():
        for r in results:
            for c in r.speeds:
                keys.setdefault((r.key, c), []).append((r.ratio, r.speeds[c][1].rows1))
    n_cases = len(per_case)
    complete = {k: v for k, v in keys.items() if len(v) == n_cases}
    passing = {k: v for k, v in complete.items() if all(ratio <= 1 for ratio, _ in v)}
    if not passing:
        fewest = min(complete.items(), key=lambda kv: max(ratio for ratio, _ in kv[1]))
        (dtype, label), c = fewest[0]
        return (f"CHOICE: none of the candidates is no larger than raw in all {n_cases} cases; the smallest at worst is "
                f"{dtype} + {label} ({mb(c)} chunks), {max(r for r, _ in fewest[1]):.3f}x raw")
    speed = {k: gmean(s for _, s in v) for k, v in passing.items()}
    order = sorted(speed, key=lambda k: -speed[k])
    (dtype, label), c = order[0]
    worst = max(ratio for ratio, _ in passing[order[0]])
    others = "; ".join(f"{d} + {lab}, {mb(cc)}: {speed[((d, lab), cc)]:.2f}" for (d, lab), cc in order[1:4])
    return (f"CHOICE: {dtype} + {label}, {mb(c)} chunks — no larger than raw in all {n_cases} cases (at most {worst:.3f}x) "
            f"and the fastest such: rows 1T {speed[order[0]]:.2f} GB/s of float32 (geometric mean over the cases; "
            f"next: {others})")


# -- main ----------------------------------------------------------------------------------------------------


def run_case(source: Source, case: Case, repeats: int, pool: ThreadPoolExecutor) -> tuple[list[str], list[Result], np.ndarray]:
    """The case's table at the default chunk size, its results and its float32 rows."""
    rows = prep_rows(source, case)
    n, n_leads, n_samples = rows.shape
    recorded = int(round(case.recorded * case.fs))
    hea = header_bytes(source.leads, case.fs, recorded)
    raw = raw_bytes(n, n_leads, recorded, hea)
    lines = [f"### {case.name}", "",
             f"{n} rows of {n_leads} × {n_samples} (float32 {rows.nbytes / MB:.1f} MB); raw WFDB at {case.fs:g} Hz: "
             f"{raw / MB:.2f} MB = {n} × (format-16 .dat of {case.recorded:g} s, {2 * n_leads * recorded} B, "
             f"+ .hea of {hea} B as wfdb.wrsamp writes it); speeds in GB/s at {mb(DEFAULT_CHUNK)} chunks", ""]
    results = []
    for dtype in DTYPES:
        q, scale = stored(rows, dtype)
        max_err, rel_err = precision(rows, dequantise(q, scale))
        per_chunk = chunk_records(n_leads, n_samples, q.itemsize, DEFAULT_CHUNK)
        if q.nbytes <= MAX_BLOCK:
            print(f"warning: {case.name}: the {dtype} rows ({q.nbytes} B) fit in one Blosc block; repeated to fill a "
                  "chunk they may compress better than distinct rows would", file=sys.stderr)
        for codec in codecs():
            ratio = stored_size(codec, q, scale, per_chunk, source.groups) / raw
            speeds = {DEFAULT_CHUNK: (per_chunk, measure_speed(codec, q, scale, per_chunk, repeats, pool))}
            results.append(Result(dtype, codec, ratio, max_err, rel_err, speeds))
    lines += case_table(results)
    best = fastest_within_raw(results)
    lines.append("")
    if best is None:
        lines.append(f"{case.name}: no candidate is no larger than raw (smallest: {min(r.ratio for r in results):.3f}x)")
    else:
        s = best.speeds[DEFAULT_CHUNK][1]
        lines.append(f"{case.name}: fastest no larger than raw at {mb(DEFAULT_CHUNK)}: {best.dtype} + {best.codec.label} "
                     f"({best.ratio:.3f}x raw, rows 1T {s.rows1:.2f} GB/s, 2T {s.rows2:.2f})")
    return lines, results, rows


def sweep_chunks(per_case: dict[str, list[Result]], rows: dict[str, np.ndarray], repeats: int,
                 pool: ThreadPoolExecutor) -> list[str]:
    """Times the ``SWEEP`` best candidates (``ranked``) at every chunk size, in every case; their table."""
    top = set(ranked(per_case)[:SWEEP])
    swept = []
    for case, results in per_case.items():
        n_leads, n_samples = rows[case].shape[1:]
        for r in results:
            if r.key not in top:
                continue
            q, scale = stored(rows[case], r.dtype)
            for c in CHUNK_SIZES:
                if c not in r.speeds:
                    per_chunk = chunk_records(n_leads, n_samples, q.itemsize, c)
                    r.speeds[c] = (per_chunk, measure_speed(r.codec, q, scale, per_chunk, repeats, pool))
            swept.append((case, r))
    return [f"### Chunk size: the {len(top)} candidates no larger than raw in the most cases, fastest first "
            "(rows GB/s 1T / 2T, records per chunk)", ""] + chunk_table(swept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="append", default=[], metavar="PATH",
                        help="a WFDB record (path without extension); repeatable. Default: synthetic records")
    parser.add_argument("--records", type=int, default=48, help="synthetic records without --record")
    parser.add_argument("--stride", type=float, default=1.0, help="seconds between the starts of a record's 10 s windows")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement (the best is kept)")
    args = parser.parse_args(argv)
    import numcodecs
    from numcodecs import blosc

    blosc.use_threads = False  # one thread per Blosc call, the threads being ours (as in ecgtool's loader)
    started = time.perf_counter()
    source = read_records(args.record, args.stride) if args.record else synthetic_records(args.records)
    print(f"# store_codecs.py — {source.description}")
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}, "
          f"numpy {np.__version__}, numcodecs {numcodecs.__version__} (c-blosc {blosc.VERSION_STRING}). "
          f"GB/s, best of {args.repeats}: 1T on one thread (its CPU time), 2T over chunks in two threads (wall "
          "clock, as noisy as the machine is busy). rows = decode + conversion to float32, in GB/s of float32.")
    per_case, rows = {}, {}
    with ThreadPoolExecutor(2) as pool:
        for case in CASES:
            lines, per_case[case.name], rows[case.name] = run_case(source, case, args.repeats, pool)
            print("\n" + "\n".join(lines), flush=True)
        print("\n" + "\n".join(sweep_chunks(per_case, rows, args.repeats, pool)))
    print(f"\n{choose(per_case)}")
    if source.synthetic:
        print("(synthetic records: run with --record to decide on real ECG)")
    print(f"({time.perf_counter() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
