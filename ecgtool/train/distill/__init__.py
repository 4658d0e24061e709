"""Knowledge distillation for ``ecgtool distill`` (issue 14): a frozen teacher checkpoint into a student.

``losses`` holds the methods' loss terms (classic KD, MVMS-ECG, MVKT-ECG's MLKD and CLT); ``loop`` the
training loop, a :class:`~ecgtool.train.loop.Trainer` whose batches also feed the teacher. Facts from the
official code: docs/distill-methods.md. This package imports nothing itself.
"""
