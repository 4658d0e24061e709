"""Settings are checked once, where they live: the library's error names the parameter, the CLI's the flag (exit 2)."""

from __future__ import annotations

import pytest
from conftest import run_cli, write_wfdb_dir

from ecgtool.data.prep import run_prep
from ecgtool.data.readers import open_reader
from ecgtool.data.split import folds_for_ratios
from ecgtool.data.synthetic import SyntheticConfig
from ecgtool.data.transforms import PrepConfig
from ecgtool.errors import ConfigError, EcgtoolError


@pytest.mark.parametrize("kwargs, parameter, words", [
    ({"fs": 0}, "fs", "fs must be a sampling rate from 1 to 100,000 Hz"),
    ({"fs": 1e308}, "fs", "fs must be a sampling rate from 1 to 100,000 Hz"),
    ({"seconds": 1e308}, "seconds", "more than 100,000,000 samples per lead"),
    ({"seconds": -1.0}, "seconds", "seconds must be positive"),
    ({"crop": "middle"}, "crop", "crop must be one of start, center"),
    ({"normalisation": "minmax"}, "normalisation", "normalisation must be one of zscore, dataset, none"),
    ({"lowcut": 40.0, "highcut": 30.0}, "lowcut", "band-pass low cut-off 40 Hz must be below the high cut-off 30 Hz"),
    ({"fs": 100.0, "lowcut": 60.0, "highcut": None}, "lowcut", "Nyquist frequency 50 Hz"),
    ({"highcut": -5.0}, "highcut", "must not be negative"),
    ({"notch": -50.0}, "notch", "must not be negative"),
    ({"beat_window": (0.25,)}, "beat_window", "beat window must be two non-negative seconds"),
    ({"beat_window": (-0.1, 0.4)}, "beat_window", "beat window"),
    ({"beat_window": (0.0, 0.0)}, "beat_window", "beat window"),
])
def test_prep_config_names_the_parameter(kwargs, parameter, words):
    with pytest.raises(ConfigError, match=words) as e:
        PrepConfig(**kwargs)
    assert e.value.parameter == parameter and "--" not in str(e.value)
    assert isinstance(e.value, EcgtoolError) and isinstance(e.value, ValueError)


def test_prep_config_accepts_what_prep_uses():
    PrepConfig()
    PrepConfig(fs=360, seconds=None, lowcut=None, highcut=None, notch=50.0, normalisation="dataset", beat_window=(0.25, 0.4))
    PrepConfig(fs=100, lowcut=0.5, highcut=50.0)  # a high cut-off at Nyquist is ignored, not refused


def test_run_prep_names_its_parameters(tmp_path):
    reader = open_reader(write_wfdb_dir(tmp_path / "raw", n=4))
    cases = [
        (dict(on_error="ignore"), "on_error"),
        (dict(shard=(2, 2)), "shard"),
        (dict(shard=(0, 0)), "shard"),
    ]
    for kwargs, parameter in cases:
        with pytest.raises(ConfigError) as e:
            run_prep(reader, tmp_path / "s.zarr", PrepConfig(fs=100, seconds=2.0), **kwargs)
        assert e.value.parameter == parameter and "--" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        run_prep(reader, tmp_path / "s.zarr", PrepConfig(fs=100, seconds=None), shard=(0, 2))
    assert e.value.parameter == "shard" and "--" not in str(e.value)
    assert not (tmp_path / "s.zarr").exists()


def test_other_data_configs_name_their_parameters():
    with pytest.raises(ConfigError) as e:
        SyntheticConfig(leads=("I", "V7"))
    assert e.value.parameter == "leads"
    with pytest.raises(ConfigError) as e:
        folds_for_ratios([0.5, 0.1, 0.1])
    assert e.value.parameter == "ratios" and "--" not in str(e.value)


@pytest.mark.parametrize("args, flag, words", [
    (["--lowcut", "40", "--highcut", "30"], "--lowcut", "band-pass low cut-off 40 Hz must be below the high cut-off 30 Hz"),
    (["--lowcut", "60", "--highcut", "0"], "--lowcut", "Nyquist frequency 50 Hz"),
    (["--beat-window", "0.25"], "--beat-window", "beat window must be two non-negative seconds"),
    (["--beat-window", "a,b"], "--beat-window", "is not PRE,POST seconds"),
    (["--shard", "3/3", "--workers", "1"], "--shard", "numbered from 0 to 2"),
    (["--leads", "I,aVR", "--workers", "1"], "--leads", "aVR not among the dataset's leads"),
])
def test_cli_names_the_flag_with_exit_2(tmp_path, args, flag, words):
    raw = write_wfdb_dir(tmp_path / "raw", n=4)
    r = run_cli("prep", raw, "-o", tmp_path / "s.zarr", "--fs", 100, "--seconds", 2, *args, expect=2)
    assert f"Invalid value for '{flag}'" in r.stderr and words in r.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_cli_names_the_flag_of_other_commands(tmp_path):
    r = run_cli("fetch", "synthetic", "-o", tmp_path / "syn", "--records", 2, "--leads", "I,V7", expect=2)
    assert "Invalid value for '--leads'" in r.stderr and "V7" in r.stderr and not (tmp_path / "syn").exists()


def test_train_names_the_flag_of_a_training_parameter(synthetic_splits, tmp_path):
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--crop", 100_000, expect=2)
    assert "Invalid value for '--crop'" in r.stderr and "crop 100000 is longer than" in r.stderr
    assert not (tmp_path / "m.ckpt").exists()


@pytest.mark.parametrize("kwargs, parameter, words", [
    ({"threshold_objective": "auc", "val": "v.zarr"}, "threshold_objective", "threshold_objective 'auc' is not one of f1, youden"),
    ({"threshold_scope": "lead", "val": "v.zarr"}, "threshold_scope", "is not one of class, global"),
    ({"threshold_scope": "global"}, "threshold_objective", "give a validation store"),
    ({"val": "v.zarr", "tune_on_eval_store": True}, "tune_on_eval_store", "give one"),
    ({"aggregate": "median"}, "aggregate", "is not one of max, mean"),
    ({"bootstrap": -1}, "bootstrap", "bootstrap must be 0"),
    ({"level": 1.0}, "level", r"must be in \[0.5, 1\)"),
    ({"window_stride": 0}, "window_stride", "at least 1 sample"),
    ({"batch_size": 0}, "batch_size", "at least 1"),
])
def test_eval_options_name_the_parameter(kwargs, parameter, words):
    from ecgtool.eval.options import EvalOptions

    with pytest.raises(ConfigError, match=words) as e:
        EvalOptions(**kwargs)
    assert e.value.parameter == parameter and "--" not in str(e.value)


@pytest.mark.parametrize("kwargs, parameter, words", [
    ({"method": "lime"}, "method", "unknown method 'lime'"),
    ({"method": "ig", "layer": "layer4"}, "layer", "a layer applies to the gradcam method, not ig"),
    ({"sanity": "half"}, "sanity", "is not one of cascade, full"),
    ({"steps": 1}, "steps", "at least 2 steps"),
    ({"dpi": 20}, "dpi", "between 50 and 1200"),
])
def test_explain_options_name_the_parameter(kwargs, parameter, words):
    from ecgtool.explain.options import ExplainOptions

    with pytest.raises(ConfigError, match=words) as e:
        ExplainOptions(**kwargs)
    assert e.value.parameter == parameter and "--" not in str(e.value)



def test_another_parameter_is_named_in_the_library_s_words_and_the_cli_s():
    """The library names a parameter that would allow what it refuses by its name; the CLI by its flag
    (LibraryCommand), so that neither speaks the other's words."""
    import click

    from ecgtool.cli.options import LibraryCommand

    e = ConfigError("the store is the one evaluated ({alternative} does it anyway)", "val", alternative="tune_on_eval_store")
    assert str(e) == "the store is the one evaluated (tune_on_eval_store does it anyway)" and e.parameter == "val"

    def refuse(val, tune_on_eval_store):
        raise e

    command = LibraryCommand("eval", callback=refuse, params=[click.Option(["--val"]), click.Option(["--tune-on-eval-store"], is_flag=True)])
    with pytest.raises(click.BadParameter) as bad:
        command.main(["--val", "x"], standalone_mode=False)
    assert bad.value.format_message() == ("Invalid value for '--val': the store is the one evaluated "
                                          "(--tune-on-eval-store does it anyway)")
