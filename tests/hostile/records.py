"""Raw inputs of ``prep``: broken WFDB records, label files, dataset layouts, directories of other things."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np

from . import Case, noise

PREP = ["--fs", "100", "--seconds", "4", "--workers", "1"]


def _edit(path: Path, old: str, new: str, count: int = -1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


def _raw(mutate):
    """Copy the 12-record WFDB fixture to tmp/raw, then break it with ``mutate(raw, tmp)``."""

    def build(tmp: Path, fx) -> dict:
        raw = fx.copy("small_raw", tmp / "raw")
        extra = mutate(raw, tmp) or {}
        return {"raw": raw, **extra}

    return build


def prep_case(id, mutate, needle, *, extra=(), exit=1, xfail=None) -> Case:
    return Case(f"wfdb-{id}", _raw(mutate), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP, *extra], exit, needle, xfail)


def _truncate(raw, tmp):
    dat = raw / "R003.dat"
    dat.write_bytes(dat.read_bytes()[:100])


def _samples(raw, tmp):  # the header says twice as many samples as the file holds
    _edit(raw / "R003.hea", "R003 3 250 1000", "R003 3 250 2000")


def _longer_file(raw, tmp):  # the file holds more than the header says: trailing bytes
    dat = raw / "R003.dat"
    dat.write_bytes(dat.read_bytes() * 2)


def _format(raw, tmp):
    _edit(raw / "R003.hea", "R003.dat 16 ", "R003.dat 99 ")


def _missing_lead(raw, tmp):  # R003 has leads I and II only
    import wfdb

    for ext in ("hea", "dat"):
        (raw / f"R003.{ext}").unlink()
    t = np.arange(1000) / 250
    wfdb.wrsamp("R003", fs=250, units=["mV"] * 2, sig_name=["I", "II"], p_signal=np.stack([np.sin(t), np.cos(t)], 1),
                fmt=["16"] * 2, adc_gain=[1000] * 2, baseline=[0] * 2, write_dir=str(raw))


def _gain_text(raw, tmp):
    _edit(raw / "R003.hea", " 1000(0)/mV ", " abc/mV ")


def _fs_zero(raw, tmp):
    _edit(raw / "R003.hea", "R003 3 250 1000", "R003 3 0 1000")


def _fs_negative(raw, tmp):
    _edit(raw / "R003.hea", "R003 3 250 1000", "R003 3 -250 1000")


def _invalid_samples(raw, tmp):  # WFDB's invalid-sample value in every sample of lead I: NaN when read
    a = np.frombuffer((raw / "R003.dat").read_bytes(), "<i2").copy().reshape(-1, 3)
    a[:, 0] = -32768
    (raw / "R003.dat").write_bytes(a.tobytes())


def _inf(raw, tmp):  # a denormal gain: physical values overflow to ±inf
    _edit(raw / "R003.hea", " 1000(0)/mV ", " 1e-320/mV ")


def _zero_length(raw, tmp):
    _edit(raw / "R003.hea", "R003 3 250 1000", "R003 3 250 0")
    (raw / "R003.dat").write_bytes(b"")


def _duplicate(raw, tmp):
    (raw / "RECORDS").unlink()
    for d in ("a", "b"):
        (raw / d).mkdir()
        for ext in ("hea", "dat"):
            shutil.copy(raw / f"R000.{ext}", raw / d / f"R000.{ext}")
    for ext in ("hea", "dat"):
        (raw / f"R000.{ext}").unlink()


def _outside_relative(raw, tmp):
    shutil.copy(raw / "R003.dat", tmp / "secret.dat")
    _edit(raw / "R003.hea", "R003.dat ", "../secret.dat ")
    return {"secret": tmp / "secret.dat"}


def _outside_absolute(raw, tmp):
    shutil.copy(raw / "R003.dat", tmp / "secret.dat")
    _edit(raw / "R003.hea", "R003.dat ", f"{tmp / 'secret.dat'} ")


def _garbage_header(raw, tmp):
    (raw / "R003.hea").write_bytes(noise(300))


def _missing_dat(raw, tmp):
    (raw / "R003.dat").unlink()


def _listed_missing(raw, tmp):
    with open(raw / "RECORDS", "a") as f:
        f.write("R999\n")


def _labels_bom(raw, tmp):
    text = (raw / "labels.csv").read_text()
    (raw / "labels.csv").write_bytes("\ufeff".encode() + text.replace("R003,P1,B", "R003,P1,C").encode())
    (raw / "R003.hea").write_text("garbage\n")  # so that a run reading the BOM file right still fails, on R003


def _labels_latin1(raw, tmp):
    text = (raw / "labels.csv").read_text().replace("R003,P1,B", "R003,P1,Bé")
    (raw / "labels.csv").write_bytes(text.encode("latin-1"))


def _labels_columns(raw, tmp):
    (raw / "labels.csv").write_text("id,diagnosis\nR000,A\n")


def _labels_missing_record(raw, tmp):
    lines = (raw / "labels.csv").read_text().splitlines(keepends=True)
    (raw / "labels.csv").write_text("".join(line for line in lines if not line.startswith("R003,")))


def _labels_empty(raw, tmp):
    (raw / "labels.csv").write_bytes(b"")


def _labels_binary(raw, tmp):
    (raw / "labels.csv").write_bytes(noise(2000))


def _labels_nul(raw, tmp):
    (raw / "labels.csv").write_bytes((raw / "labels.csv").read_bytes().replace(b"R003,P1,B", b"R003,P1,B\x00"))


def _all_broken(raw, tmp):
    for p in raw.glob("*.hea"):
        p.write_text("garbage\n")


def _dir(files: dict):
    def build(tmp: Path, fx) -> dict:
        raw = tmp / "raw"
        raw.mkdir()
        for name, data in files.items():
            (raw / name).parent.mkdir(parents=True, exist_ok=True)
            (raw / name).write_bytes(data)
        return {"raw": raw}

    return build


def _dataset(make: str, archive: str | None = None):
    """A dataset fixture (``datasets_fixture.<make>``), its ``archive`` unpacked as fetch leaves it, then mutated."""
    def with_mutation(mutate):
        def build(tmp: Path, fx) -> dict:
            import datasets_fixture

            from ecgtool.data.download import extract_archive

            raw = getattr(datasets_fixture, make)(tmp / "raw")
            if archive:
                extract_archive(raw / archive, raw)
            mutate(raw)
            return {"raw": raw}

        return build

    return with_mutation


_cpsc = _dataset("make_cpsc2018_original", "TrainingSet1.zip")
_cinc2017 = _dataset("make_cinc2017", "training2017.zip")
_mitdb = _dataset("make_mitdb")
_ptbxl = _dataset("make_ptbxl")


def _mat_empty(raw):
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {})
    (raw / "TrainingSet1" / "A0002.mat").write_bytes(buf.getvalue())


def _mat_other_variable(raw):
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"val": np.zeros((12, 10))})
    (raw / "TrainingSet1" / "A0002.mat").write_bytes(buf.getvalue())


def _mat_garbage(raw):
    (raw / "TrainingSet1" / "A0002.mat").write_bytes(noise(5000))


def _reference_out_of_range(raw):
    _edit(raw / "REFERENCE.csv", "A0002,1,,", "A0002,12,,")


def _reference_bom(raw):
    data = (raw / "REFERENCE.csv").read_bytes()
    (raw / "REFERENCE.csv").write_bytes(b"\xef\xbb\xbf" + data.replace(b"A0002,1,,", b"A0002,x,,"))


def _unknown_code(raw):
    _edit(raw / "REFERENCE-v3.csv", "A00002,A", "A00002,X")


def _challenge_mat_truncated(raw):
    mat = raw / "training2017" / "A00002.mat"
    mat.write_bytes(mat.read_bytes()[:30])


def _atr_truncated(raw):
    atr = raw / "101.atr"
    atr.write_bytes(atr.read_bytes()[:7])


def _atr_garbage(seed):
    def mutate(raw):  # seed 0: wfdb fails on it; seed 1: wfdb reads 31 annotations of nonsense symbols
        (raw / "101.atr").write_bytes(noise(64, seed))

    return mutate


def _scp_codes(raw):
    _edit(raw / "ptbxl_database.csv", "{'NORM': 80.0, 'SBRAD': 0.0}", "{'NORM': 80.0, 'SBRAD")


def _ptbxl_missing_file(raw):
    (raw / "records100" / "00000" / "00003_lr.dat").unlink()


CASES = [
    prep_case("truncated-dat", _truncate, "R003"),
    prep_case("header-longer-than-data", _samples, "R003"),
    prep_case("data-longer-than-header", _longer_file, "R003"),
    prep_case("unknown-format", _format, "R003"),
    prep_case("missing-lead", _missing_lead, "R003"),
    prep_case("gain-not-a-number", _gain_text, "R003"),
    prep_case("fs-zero", _fs_zero, "R003"),
    prep_case("fs-negative", _fs_negative, "R003"),
    prep_case("invalid-samples-nan", _invalid_samples, "R003"),
    prep_case("denormal-gain-inf", _inf, "R003"),
    prep_case("zero-length", _zero_length, "R003"),
    prep_case("duplicate-record-names", _duplicate, "R000"),
    prep_case("header-path-outside-relative", _outside_relative, "R003"),
    prep_case("header-path-outside-absolute", _outside_absolute, "R003"),
    prep_case("garbage-header", _garbage_header, "R003"),
    prep_case("missing-dat", _missing_dat, "R003"),
    prep_case("records-lists-a-missing-record", _listed_missing, "R999"),
    prep_case("all-records-broken-skipped", _all_broken, "R000", extra=("--on-error", "skip")),
    prep_case("labels-bom", _labels_bom, "R003"),  # the BOM is read past: the run fails on R003, as made to
    prep_case("labels-latin1", _labels_latin1, "labels.csv"),
    prep_case("labels-wrong-columns", _labels_columns, "labels.csv"),
    prep_case("labels-missing-record", _labels_missing_record, "R003"),
    prep_case("labels-empty-file", _labels_empty, "labels.csv"),
    prep_case("labels-random-bytes", _labels_binary, "labels.csv"),
    prep_case("labels-nul-byte", _labels_nul, "labels.csv"),
    prep_case("labels-option-missing-file", lambda raw, tmp: None, "nosuch.csv", extra=("--labels", "{tmp}/nosuch.csv")),
    Case("dir-non-ecg-files", _dir({"notes.txt": b"hello\n", "img/scan.png": b"\x89PNG\r\n\x1a\n" + noise(100),
                                    "data.csv": b"a,b\n1,2\n"}),
         ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "{raw}"),
    Case("dir-empty", _dir({}), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "{raw}"),
    Case("dir-only-records-file", _dir({"RECORDS": b"R000\nR001\n"}), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "R000"),
    Case("raw-dir-is-a-file", _dir({"x.hea": b"x 1 100 10\n"}), ["prep", "{raw}/x.hea", "-o", "{tmp}/out.zarr", *PREP], 2, "RAW_DIR"),
    Case("cpsc-mat-without-variables", _cpsc(_mat_empty), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "A0002"),
    Case("cpsc-mat-other-variable", _cpsc(_mat_other_variable), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "A0002"),
    Case("cpsc-mat-random-bytes", _cpsc(_mat_garbage), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "A0002"),
    Case("cpsc-reference-code-out-of-range", _cpsc(_reference_out_of_range), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "A0002"),
    Case("cpsc-reference-bom-and-bad-code", _cpsc(_reference_bom), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "{raw}"),
    Case("cinc2017-unknown-label-code", _cinc2017(_unknown_code), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "REFERENCE-v3.csv"),
    Case("cinc2017-truncated-mat", _cinc2017(_challenge_mat_truncated), ["prep", "{raw}", "-o", "{tmp}/out.zarr", *PREP], 1, "A00002"),
    Case("mitdb-truncated-annotations", _mitdb(_atr_truncated), ["prep", "{raw}", "-o", "{tmp}/out.zarr", "--workers", "1"], 1, "101"),
    Case("mitdb-garbage-annotations-unreadable", _mitdb(_atr_garbage(0)), ["prep", "{raw}", "-o", "{tmp}/out.zarr", "--workers", "1"],
         1, "101"),
    Case("mitdb-garbage-annotations-readable", _mitdb(_atr_garbage(1)), ["prep", "{raw}", "-o", "{tmp}/out.zarr", "--workers", "1"],
         1, "101"),
    Case("ptbxl-malformed-scp-codes", _ptbxl(_scp_codes), ["prep", "{raw}", "-o", "{tmp}/out.zarr", "--workers", "1"], 1,
         "ptbxl_database.csv: row 3 (ecg_id 2), column scp_codes"),
    Case("ptbxl-missing-signal-file", _ptbxl(_ptbxl_missing_file), ["prep", "{raw}", "-o", "{tmp}/out.zarr", "--workers", "1"], 1, "00003_lr"),
]
