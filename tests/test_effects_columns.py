"""``biastransfer effects`` on a table without a ``target`` column: one sentence, for every model."""

from __future__ import annotations

import pytest

from analyze.cli import main
from analyze.effects.models import attach_salience
from extract.errors import UserError
from tests.test_effects_table import synthetic_results


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("effects_columns")
    results = synthetic_results(n_targets=4, seeds=2)
    results[["target", "salience"]].drop_duplicates().to_csv(folder / "salience.csv", index=False)
    results.drop(columns=["target"]).to_csv(folder / "no_target.csv", index=False)
    return folder


@pytest.mark.parametrize("model", ["general", "moderation", "paper"])
def test_cli_without_a_target_column(tables, tmp_path, capsys, model):
    argv = ["effects", str(tables / "no_target.csv"), "--salience", str(tables / "salience.csv"), "--model", model,
            "--out", str(tmp_path / model)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "KeyError" not in err, err
    assert err == ("biastransfer effects: error: the table has no 'target' column, which joining salience needs; "
                   "it is written by `biastransfer collect`.")
    assert not list(tmp_path.iterdir())


def test_attach_salience_names_the_missing_column_of_either_table(tables):
    results = synthetic_results(n_targets=4, seeds=2)
    salience = results[["target", "salience"]].drop_duplicates()
    with pytest.raises(UserError, match=r"the table has no 'target' column, which joining salience needs"):
        attach_salience(results.drop(columns=["target"]), salience)
    with pytest.raises(UserError, match=r"the salience table has no 'target' column"):
        attach_salience(results, salience.drop(columns=["target"]))
