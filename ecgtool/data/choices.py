"""The values the data library's string settings may take, each defined once.

The libraries validate against these tuples and the CLI offers them as its
choices. They live here, not beside the code that validates them, because that
code loads scipy, zarr or wfdb, and the CLI's option definitions (read for
``--help`` and TAB completion) must load nothing heavy.
"""

CROP_POLICIES = ("start", "center")  # PrepConfig.crop: which part of a longer record to keep
NORMALISATIONS = ("zscore", "dataset", "none")  # PrepConfig.normalisation
SIGNAL_DTYPES = ("int16", "float32", "float16")  # the store's signals (int16: with a per-record, per-lead scale)
ON_ERROR = ("fail", "skip")  # run_prep: what to do with a record that cannot be read
PTBXL_RATES = (100, 500)  # PTB-XL's two sets of files, in Hz
LOADER_MODES = ("auto", "memory", "stream")  # ChunkLoader: hold the store in memory, stream it, or choose by size
CSV_UNITS = ("mV", "uV")  # data.recordings: units of the values of a CSV recording (which names none)

# Bounds on sampling rates and lengths (PrepConfig, predict's CSV rate, transforms.resample). A value outside them is
# a typo or a wrong unit (a rate in kHz, a length in samples), never an ECG: they keep int(seconds x fs) a number and
# an allocation within memory (predict --fs 0.001 upsampled a 500-row CSV 100,000x and was killed at 18 GB).
FS_RANGE = (1.0, 100_000.0)  # Hz: wearables record at 25-50 Hz, high-resolution ECGs at up to 10-32 kHz
MAX_SAMPLES = 100_000_000  # per lead: more than a 24-hour Holter recording at 1 kHz (86.4 million)
MAX_RESAMPLE_FACTOR = 1000  # up or down: 10 kHz to a model's 100 Hz is 100x; 1000x is no rate mix-up between ECGs
