"""Where each public dataset lives: one declarative entry per dataset.

An entry names the host, the files (from the host's published SHA-256 list, or
listed here), the archives to unpack, the licence, the citation and how a user
gets access. ``ecgtool fetch NAME`` turns an entry into verified downloads;
adding a dataset is adding an entry. Facts and their sources are recorded in
docs/dataset-facts.md (what was verified against upstream documentation, and
what could not be verified offline).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from ecgtool.data.download import RemoteFile, fetch_text, parse_sha256sums
from ecgtool.errors import EcgtoolError

PHYSIONET = "https://physionet.org/files"
PHYSIONET_CITATION = (
    "Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):e215-e220 (2000)."
)


@dataclass(frozen=True)
class ListedFile:
    """A file the host publishes no checksum list for: its URL relative to the base, and its SHA-256 if pinned."""

    path: str
    url: str | None = None  # absolute URL when it differs from base + path
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    base_url: str
    licence: str
    citation: str
    size: str
    description: str
    reader: str
    checksums: str | None = "SHA256SUMS.txt"  # relative to base_url; None where the host publishes none
    include: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"all": ("*",)})  # variant -> patterns
    default_variant: str = "all"
    files: tuple[ListedFile, ...] = ()
    archives: tuple[str, ...] = ()  # downloaded archives to unpack into the output directory
    access: str = "open access: no account needed"

    def remote_files(self, variant: str | None = None, base_url: str | None = None) -> list[RemoteFile]:
        """The files to download, with their published SHA-256 where the host gives one."""
        variant = variant or self.default_variant
        if variant not in self.include:
            raise EcgtoolError(f"{self.name} has no variant {variant!r}; choose from {', '.join(self.include)}")
        base = (base_url or self.base_url).rstrip("/")
        if self.checksums is None:
            return [RemoteFile(f.url if (f.url and not base_url) else f"{base}/{f.path}", f.path, f.sha256) for f in self.files]
        url = f"{base}/{self.checksums}"
        sums = parse_sha256sums(fetch_text(url), url)
        patterns = self.include[variant]
        chosen = [p for p in sorted(sums) if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
        if not chosen:
            raise EcgtoolError(f"{base}/{self.checksums} lists no file matching {', '.join(patterns)}")
        return [RemoteFile(f"{base}/{p}", p, sums[p]) for p in chosen]


SOURCES: dict[str, Source] = {}


def register(src: Source) -> Source:
    SOURCES[src.name] = src
    return src


register(Source(
    name="ptbxl",
    title="PTB-XL, a large publicly available electrocardiography dataset, version 1.0.3",
    base_url=f"{PHYSIONET}/ptb-xl/1.0.3",
    licence="CC BY 4.0",
    citation=(
        "Wagner P, Strodthoff N, Bousseljot R, Samek W, Schaeffter T. PTB-XL, a large publicly available "
        "electrocardiography dataset (version 1.0.3). PhysioNet (2022). https://doi.org/10.13026/kfzx-aw45; "
        "Wagner P et al. Scientific Data 7:154 (2020). " + PHYSIONET_CITATION
    ),
    size="21,799 records; ≈1.7 GB for both rates (PhysioNet's project zip), the 100 Hz files a small part of it",
    description="21,799 10-s 12-lead ECGs of 18,869 patients, 71 SCP-ECG statements, 10 stratified folds",
    reader="ptbxl",
    include={
        "100": ("ptbxl_database.csv", "scp_statements.csv", "RECORDS", "LICENSE.txt", "records100/*"),
        "500": ("ptbxl_database.csv", "scp_statements.csv", "RECORDS", "LICENSE.txt", "records500/*"),
        "both": ("ptbxl_database.csv", "scp_statements.csv", "RECORDS", "LICENSE.txt", "records100/*", "records500/*"),
    },
    default_variant="100",
))

register(Source(
    name="cpsc2018",
    title="China Physiological Signal Challenge 2018 training set (original release)",
    base_url="http://hhbucket.oss-cn-hongkong.aliyuncs.com",
    licence="free for research use; cite the challenge paper (no licence text published)",
    citation=(
        "Liu F et al. An Open Access Database for Evaluating the Algorithms of Electrocardiogram Rhythm and "
        "Morphology Abnormality Detection. J Med Imaging Health Inform 8(7):1368-1373 (2018)."
    ),
    size="6,877 records (size not published)",
    description="6,877 12-lead ECGs, 500 Hz, 6-60 s, 9 classes (REFERENCE.csv); no patient ids",
    reader="cpsc2018",
    checksums=None,
    files=(
        ListedFile("TrainingSet1.zip"),
        ListedFile("TrainingSet2.zip"),
        ListedFile("TrainingSet3.zip"),
        ListedFile("REFERENCE.csv", url="http://2018.icbeb.org/file/REFERENCE.csv"),
    ),
    archives=("TrainingSet1.zip", "TrainingSet2.zip", "TrainingSet3.zip"),
    access="open access; the host publishes no checksums, so only sizes are checked (the PhysioNet/CinC copy, with SHA-256 sums: `fetch cinc2020 --variant cpsc_2018`)",
))

register(Source(
    name="chapman",
    title="Chapman University / Shaoxing People's Hospital 12-lead ECG database (figshare, original release)",
    base_url="https://figshare.com/ndownloader/files",
    licence="CC BY 4.0",
    citation=(
        "Zheng J, Zhang J, Danioko S, Yao H, Guo H, Rakovski C. A 12-lead electrocardiogram database for "
        "arrhythmia research covering more than 10,000 patients. Scientific Data 7:48 (2020). "
        "https://doi.org/10.6084/m9.figshare.c.4560497"
    ),
    size="10,646 records (size not published)",
    description="10,646 patients, one 10-s 12-lead ECG each at 500 Hz, 11 rhythms (4 merged classes)",
    reader="chapman",
    checksums=None,
    files=(
        ListedFile("ECGData.zip", url="https://figshare.com/ndownloader/files/15651326"),
        ListedFile("Diagnostics.xlsx", url="https://figshare.com/ndownloader/files/15653771"),
        ListedFile("RhythmNames.xlsx", url="https://figshare.com/ndownloader/files/15651296"),
        ListedFile("ConditionNames.xlsx", url="https://figshare.com/ndownloader/files/15651293"),
        ListedFile("AttributesDictionary.xlsx", url="https://figshare.com/ndownloader/files/15653762"),
    ),
    archives=("ECGData.zip",),
    access="open access; figshare publishes MD5 only, so SHA-256 is not checked",
))

register(Source(
    name="ecg-arrhythmia",
    title="A large scale 12-lead electrocardiogram database for arrhythmia study, version 1.0.0",
    base_url=f"{PHYSIONET}/ecg-arrhythmia/1.0.0",
    licence="CC BY 4.0",
    citation=(
        "Zheng J, Guo H, Chu H. A large scale 12-lead electrocardiogram database for arrhythmia study "
        "(version 1.0.0). PhysioNet (2022). https://doi.org/10.13026/wgex-er52. " + PHYSIONET_CITATION
    ),
    size="45,152 records (size: see the checksum list)",
    description="45,152 10-s 12-lead ECGs (Chapman-Shaoxing + Ningbo), 500 Hz, SNOMED CT #Dx labels",
    reader="wfdb",
))

register(Source(
    name="cinc2017",
    title="AF Classification from a Short Single Lead ECG Recording: PhysioNet/CinC Challenge 2017, version 1.0.0",
    base_url=f"{PHYSIONET}/challenge-2017/1.0.0",
    licence="ODC-By 1.0",
    citation=(
        "Clifford GD et al. AF Classification from a Short Single Lead ECG Recording: the PhysioNet/Computing in "
        "Cardiology Challenge 2017. Computing in Cardiology 44 (2017). https://doi.org/10.22489/CinC.2017.065-469. "
        + PHYSIONET_CITATION
    ),
    size="8,528 records (size: see the checksum list)",
    description="8,528 single-lead AliveCor ECGs, 300 Hz, 9-61 s: Normal, AF, Other, Noisy",
    reader="cinc2017",
    include={"all": ("training2017.zip", "REFERENCE-v3.csv")},
    archives=("training2017.zip",),
))

register(Source(
    name="cinc2021",
    title="Will Two Do? Varying Dimensions in Electrocardiography: PhysioNet/CinC Challenge 2021, version 1.0.3",
    base_url=f"{PHYSIONET}/challenge-2021/1.0.3",
    licence="CC BY 4.0",
    citation=(
        "Reyna MA et al. Will Two Do? Varying Dimensions in Electrocardiography: the PhysioNet/Computing in "
        "Cardiology Challenge 2021. Computing in Cardiology 48 (2021). https://doi.org/10.13026/34va-7q14. "
        + PHYSIONET_CITATION
    ),
    size="88,253 records (size: see the checksum list)",
    description="88,253 12-lead ECGs pooled from CPSC, CPSC-Extra, INCART, PTB, PTB-XL, Georgia, Chapman-Shaoxing, Ningbo",
    reader="wfdb",
    include={
        "all": ("training/*",),
        **{s: (f"training/{s}/*",) for s in (
            "cpsc_2018", "cpsc_2018_extra", "st_petersburg_incart", "ptb", "ptb-xl", "georgia", "chapman_shaoxing", "ningbo",
        )},
    },
))

register(Source(
    name="cinc2020",
    title="Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology Challenge 2020, version 1.0.2",
    base_url=f"{PHYSIONET}/challenge-2020/1.0.2",
    licence="CC BY 4.0",
    citation=(
        "Perez Alday EA et al. Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology Challenge 2020. "
        "Physiological Measurement 41(12):124003 (2020). https://doi.org/10.1088/1361-6579/abc960. " + PHYSIONET_CITATION
    ),
    size="43,101 records (size: see the checksum list)",
    description="43,101 12-lead ECGs pooled from CPSC, CPSC-Extra, INCART, PTB, PTB-XL, Georgia; the PhysioNet copy of CPSC2018 is its cpsc_2018 source",
    reader="cinc",
    include={
        "all": ("training/*",),
        **{s: (f"training/{s}/*",) for s in ("cpsc_2018", "cpsc_2018_extra", "st_petersburg_incart", "ptb", "ptb-xl", "georgia")},
    },
))

register(Source(
    name="mitdb",
    title="MIT-BIH Arrhythmia Database, version 1.0.0",
    base_url=f"{PHYSIONET}/mitdb/1.0.0",
    licence="ODC-By 1.0",
    citation=(
        "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Eng in Med and Biol 20(3):45-50 "
        "(2001). https://doi.org/10.13026/C2F305. " + PHYSIONET_CITATION
    ),
    size="48 records, ≈73 MB",
    description="48 half-hour two-lead ambulatory ECGs, 360 Hz, beat annotations (AAMI classes N/S/V/F/Q)",
    reader="mitdb",
))
