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
