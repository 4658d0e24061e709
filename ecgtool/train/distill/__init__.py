"""Knowledge distillation for ``ecgtool distill`` (issue 14).

``losses`` holds the methods' loss terms (classic KD, MVMS-ECG, MVKT-ECG's MLKD and CLT).
This package imports nothing itself: import the module you need.
"""
