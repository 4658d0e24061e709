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
