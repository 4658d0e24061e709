"""TAB completion of registered model names, without importing torch.

The model registry (``ecgtool.models``) builds torch modules, and TAB must answer
at once; so the names are kept here as a plain tuple, and
``tests/test_cli_conventions.py`` fails as soon as it differs from
``ecgtool.models.list_models()`` (the failure prints the tuple to paste here).
"""

from __future__ import annotations

from click.shell_completion import CompletionItem

MODEL_NAMES = (
    "clocs_cnn", "cpc", "cpc_strided", "dprnn", "dual_branch_tokensel", "ecg_jepa_vit_b", "ecg_jepa_vit_s", "ecg_jepa_vit_xs",
    "ecgnet", "ecgnet_lstm", "im_ecg", "inception1d", "inceptionformer", "inceptionformer_2482", "inceptionformer_3stage",
    "inceptionformer_bra", "inceptionformer_ca", "inceptionformer_cls", "inceptionformer_convmod", "inceptionformer_crossstack",
    "inceptionformer_hilo", "inceptionformer_learnedpos", "inceptionformer_nopos", "inceptionformer_relpos",
    "inceptionformer_se", "inceptionformer_shunted", "inceptionformer_sparse", "inceptionformer_sra", "inceptionformer_swin",
    "inceptionformer_tiny", "inceptionformer_window", "light_transformer", "mamil", "mina", "mobilenet_v2", "mpgt",
    "msse_transformer", "multimodule_rcnn", "mvms_ecg", "mvms_single", "resnet18", "resnet34", "sandwichnet", "se_ecgnet",
    "st_mem_vit_base", "st_mem_vit_small", "two_stream", "xresnet1d101", "xresnet1d50",
)


def complete_model(ctx, param, incomplete: str) -> list[CompletionItem]:
    """TAB on a MODEL argument or option: the registered names that start with what is typed."""
    return [CompletionItem(name) for name in MODEL_NAMES if name.startswith(incomplete)]


def complete_model_or_file(ctx, param, incomplete: str) -> list[CompletionItem]:
    """TAB where a model name or a checkpoint file will do (``profile``): the names that match, else the shell's
    file completion (a shell cannot mix the two in one answer)."""
    return complete_model(ctx, param, incomplete) or [CompletionItem(incomplete, type="file")]
