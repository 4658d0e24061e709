"""Self-supervised pretraining objectives for ``ecgtool pretrain`` (issue 13).

One module per method family (``cpc``, ``clocs``, ``st_mem``, ``jepa``), each an
:class:`~ecgtool.train.pretrain.base.PretrainObjective` around a registered model.
This package imports nothing itself: import the module of the method you need.
"""
