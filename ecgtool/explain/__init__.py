"""``ecgtool explain``: attribution maps for a checkpoint's decisions, and their sanity check.

Modules:

* ``methods``  — Grad-CAM, integrated gradients and gradient saliency, each a map
  ``(records, leads, samples)`` on the model's input grid;
* ``attention`` — attention maps of the models that declare attention over time
  (``models/explainable.py``; e.g. msse_transformer, mina, mamil and the hybrids), rolled out or
  spread over the record;
* ``options``  — the run's options and their choices (import-light, for the CLI);
* ``explanation`` — the ``Explanation`` every method returns, and a map's share per lead;
* ``timeaxis`` — where a value computed at a model's internal positions lies on the
  input's time axis (interpolation, windows, beats), and the maps of a crop-trained
  model's sliding windows stitched over the record;
* ``sanity``   — model-parameter randomisation test (Adebayo et al. 2018);
* ``chart``    — the clinical 12-lead chart in mV with the map as an overlay (signed maps on a
  diverging scale), or the per-lead view with the leads ranked;
* ``run``      — the command: records (or a crop-trained model's windows of them) → maps →
  saliency store + charts.

Nothing here is imported by ``ecgtool --help``; torch and matplotlib load lazily.
"""
