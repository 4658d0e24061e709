"""Several stores read as one: the corpus of ``pretrain``.

A pretraining corpus is a union of datasets prepared at one sampling rate and
length. :class:`PooledStore` numbers their records store after store and offers
:class:`~ecgtool.data.loader.ChunkLoader` the few members it reads (``len``,
``n_samples``, ``signals.shape``, ``labels``, ``chunk_bounds``, ``read_chunk``),
so the loader's modes, shuffling and rank slicing apply unchanged. Labels are
never read by pretraining: the stores may have different classes or none.

Normalisation: with ``--normalise dataset`` each store is standardised by its
own statistics (each dataset on its own scale, which is what pooling datasets
wants), not by the first store's that the spec records. The loader applies
one reader to every decoded block and does not say which store a block came
from, so :meth:`PooledStore.read_chunk` itself returns rows in the spec's leads
(found by name in each store) normalised by their own store; the reader that
:meth:`InputSpec.reader` gives a pooled store applies only the spec's view.
A chunk never spans two stores, so each block has one store's normalisation.

:func:`patient_codes` numbers the patients of a store or a pooled store,
qualified by dataset so that patient "17" of two datasets are two patients.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ecgtool.data.inputs import InputSpec, StoreReader
from ecgtool.data.store import EcgStore, qualified_ids
from ecgtool.errors import EcgtoolError


class PooledStore:
    """``stores`` read as one store of the leads of ``spec``, rows numbered store after store."""

    def __init__(self, stores: list[EcgStore], spec: InputSpec):
        if not stores:
            raise EcgtoolError("no pretraining store to pool")
        for store in stores:
            spec.check(store, "pretraining store", windows=True)
        first = stores[0]
        for store in stores[1:]:
            if store.n_samples != first.n_samples:
                raise EcgtoolError(f"pretraining store {store.path} has {store.n_samples} samples per record, "
                                   f"{first.path} {first.n_samples}; pooled stores need one length: rerun prep with "
                                   "the same --seconds")
        self.stores, self.spec = list(stores), spec
        self.offsets = np.cumsum([0] + [len(s) for s in stores])
        self.path = " + ".join(str(s.path) for s in stores)
        self.fs, self.leads, self.n_samples = spec.fs, list(spec.leads), first.n_samples
        self.signals = SimpleNamespace(shape=(int(self.offsets[-1]), len(self.leads), self.n_samples))
        self.labels = np.zeros((len(self), 0), np.uint8)
        self._readers = [StoreReader(_own_input(spec, s), s) for s in stores]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def chunk_bounds(self) -> list[tuple[int, int]]:
        """Every store's chunks in global rows: a chunk never spans two stores."""
        return [(start + int(o), stop + int(o)) for s, o in zip(self.stores, self.offsets) for start, stop in s.chunk_bounds()]

    def read_chunk(self, start: int, stop: int) -> np.ndarray:
        """float32 rows ``[start, stop)`` of one chunk: the spec's leads, normalised by their own store.
        (The loader selects its rows after this: a partly selected chunk is normalised whole, as pretraining
        on whole stores seldom selects part of one.)"""
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1  # "right": an empty store is skipped
        offset = int(self.offsets[i])
        if stop > self.offsets[i + 1]:
            raise ValueError(f"rows {start}-{stop - 1} span two pooled stores; read one chunk of chunk_bounds()")
        return self._readers[i](self.stores[i].read_chunk(start - offset, stop - offset))


def _own_input(spec: InputSpec, store: EcgStore) -> InputSpec:
    """``spec``'s leads of ``store`` under the store's own normalisation, without a view. Dataset statistics
    are reordered to the spec's leads here: StoreReader cannot tell a store's lead order from the spec's
    when the two have as many leads."""
    norm = dict(store.attrs["normalisation"])
    if norm.get("method") == "dataset":
        index = [store.leads.index(lead) for lead in spec.leads]
        norm = {**norm, "mean": [norm["mean"][j] for j in index], "std": [norm["std"][j] for j in index]}
    return InputSpec(fs=spec.fs, leads=spec.leads, samples=store.n_samples, normalisation=norm)


def patient_codes(store: EcgStore | PooledStore) -> np.ndarray:
    """int64 ``[N]``, equal for the records of one patient (over a pooled store's rows in global order).
    Patient ids are qualified by dataset and per-record source (``store.qualified_ids``): the same id in two
    datasets is two patients, and the same dataset in two stores (its train and val splits) one. A record
    without a patient id is a patient of its own."""
    stores = store.stores if isinstance(store, PooledStore) else [store]
    ids = np.concatenate([np.asarray(s.patient_id, dtype=str) for s in stores])
    keys = np.concatenate([qualified_ids(s, s.patient_id) for s in stores])
    known = ids != ""
    codes = np.empty(len(ids), np.int64)
    distinct, codes[known] = np.unique(keys[known], return_inverse=True)
    codes[~known] = len(distinct) + np.arange(int((~known).sum()))
    return codes
