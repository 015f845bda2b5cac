"""The shared option groups validate themselves and copy with changes."""

import pytest

from analyze.config import EvalConfig, RunContext
from analyze.metrics.diagnosis import DEFAULT_AUC_FLOOR
from analyze.metrics.threshold import POLICIES
from extract.errors import UserError


def test_constants_match_the_metrics_package():
    assert EvalConfig().auc_floor == DEFAULT_AUC_FLOOR
    from analyze.config import THRESHOLD_POLICIES
    assert THRESHOLD_POLICIES == POLICIES


@pytest.mark.parametrize("changes, word", [({"policy": "median"}, "`policy`"), ({"auc_floor": 1.5}, "`auc_floor`"),
                                           ({"auc_floor": True}, "`auc_floor`"), ({"sensitive": ""}, "`sensitive`")])
def test_eval_config_names_the_bad_field(changes, word):
    with pytest.raises(UserError, match=word):
        EvalConfig(**changes)


def test_run_context_paths_and_copies(tmp_path):
    ctx = RunContext(out=str(tmp_path))
    assert ctx.out == tmp_path and ctx.with_(progress=False).progress is False and ctx.progress is True
    with pytest.raises(UserError, match="`overwrite`"):
        RunContext(overwrite="yes")


def test_probe_config_validates_and_parses_a_grid_section():
    from analyze.probe import DEFAULT_CS, ProbeConfig

    assert ProbeConfig().Cs == DEFAULT_CS and ProbeConfig(Cs=[1, 0.1]).Cs == (1.0, 0.1)
    for changes, word in [({"Cs": []}, "`Cs`"), ({"select": "f1"}, "`select`"), ({"tol": -1}, "`tol`"),
                          ({"max_iter": 0}, "`max_iter`"), ({"n_jobs": 0}, "`n_jobs`"), ({"share_rows": "yes"}, "`share_rows`")]:
        with pytest.raises(UserError, match=word):
            ProbeConfig(**changes)
    parsed = ProbeConfig.from_mapping({"Cs": [0.1, 1.0], "select": "auc"}, where="grid.toml [probe]")
    assert parsed == ProbeConfig(Cs=(0.1, 1.0), select="auc")
    with pytest.raises(UserError, match=r"^grid.toml \[probe\]: `Cs` must be"):
        ProbeConfig.from_mapping({"Cs": [0.0]}, where="grid.toml [probe]")
    with pytest.raises(UserError, match=r"^grid.toml \[probe\]: unknown key `lr`"):
        ProbeConfig.from_mapping({"lr": 0.1}, where="grid.toml [probe]")


def test_probe_options_split_a_grid_section():
    from analyze.probe import ProbeConfig
    from analyze.probe.cells import probe_options

    config, evaluation, resample = probe_options({"Cs": [1.0], "policy": "fixed", "test_resample": True,
                                                  "device": "cpu"}, "grid.toml [probe]")
    assert config == ProbeConfig(Cs=(1.0,)) and evaluation == EvalConfig(policy="fixed") and resample is True
    with pytest.raises(UserError, match=r"^grid.toml \[probe\]: .*`policy`"):
        probe_options({"policy": "median"}, "grid.toml [probe]")
    with pytest.raises(UserError, match=r"grid.toml \[probe\]: unknown key `epochs`"):
        probe_options({"epochs": 3}, "grid.toml [probe]")



def test_the_probe_runner_checks_its_grid_section_with_the_same_parser():
    """The runner's shippable dict and the unit's config objects come from one check of the section."""
    from analyze.runners.probe import probe_options as runner_options

    assert runner_options({"Cs": 1, "select": "auc"}) == {"Cs": [1.0], "select": "auc"}
    for section, problem in (({"Cs": [True]}, "`Cs` must be"), ({"select": "x"}, "`select` must be one of"),
                             ({"epochs": 3}, "unknown key `epochs`"),
                             ({"policy": "val_top_p"}, "`policy` must be one of .* for probes")):
        with pytest.raises(UserError, match=r"^grid.toml \[probe\]: " + problem):
            runner_options(section)

def test_pretrain_configs_parse_a_recipe_section():
    from extract.pretrain.config import PretrainConfig, PretrainModel

    assert PretrainConfig.from_mapping({"epochs": 2, "factors": ["eyes"]}) == PretrainConfig(epochs=2, factors=("eyes",))
    with pytest.raises(UserError, match=r"^recipe.toml \[train\]: `epochs` must be an integer > 0"):
        PretrainConfig.from_mapping({"epochs": 0}, where="recipe.toml [train]")
    with pytest.raises(UserError, match=r"^recipe.toml \[model\]: unknown architecture 'vgg'"):
        PretrainModel.from_mapping({"arch": "vgg"}, where="recipe.toml [model]")


def test_extract_options_validate_on_construction():
    from extract.extraction import ExtractOptions
    from extract.sharded import ShardOptions

    assert ExtractOptions.from_mapping({"batch_size": 64}).with_(overwrite=True) == ExtractOptions(batch_size=64,
                                                                                                  overwrite=True)
    for changes, word in [({"batch_size": 0}, "`batch_size`"), ({"num_workers": -1}, "`num_workers`"),
                          ({"decode": "gpu"}, "`decode`"), ({"resume": 1}, "`resume`")]:
        with pytest.raises(UserError, match=word):
            ExtractOptions(**changes)
    with pytest.raises(UserError, match="`join`"):
        ShardOptions(join="merge")


def test_the_command_line_names_config_fields_by_their_flags():
    import argparse

    from extract.cli import shard
    from extract.cli.parser import flag_table
    from extract.extraction import ExtractOptions

    parser = argparse.ArgumentParser()
    shard.add_arguments(parser)
    with pytest.raises(UserError) as caught:
        ExtractOptions(num_workers=-1)
    assert caught.value.with_flags(flag_table(parser)).startswith("--workers -1 is invalid")
