"""``ecgtool explain``: attribution maps for a checkpoint's decisions, and their sanity check.

Modules:

* ``methods``  — Grad-CAM, integrated gradients and gradient saliency, each a map
  ``(records, leads, samples)`` on the model's input grid;
* ``attention`` — attention maps captured from the models that have attention over
  time (msse_transformer, mina, mamil), per head/level and rolled out;
* ``timeaxis`` — where a value computed at a model's internal positions lies on the
  input's time axis (interpolation, windows, beats);
* ``sanity``   — model-parameter randomisation test (Adebayo et al. 2018);
* ``chart``    — the clinical 12-lead chart with the map as an overlay;
* ``run``      — the command: records → maps → saliency store + charts.

Nothing here is imported by ``ecgtool --help``; torch and matplotlib load lazily.
"""
