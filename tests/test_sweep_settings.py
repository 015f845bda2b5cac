"""Records know what made them: a sweep reuses a record only when its settings digest matches.

A changed C grid or learning-rate grid refits the changed cells and says how many and why;
records written before the digest existed are refitted with the reason "no settings digest";
`collect` refuses a cell recorded with two settings unless told which record to keep.
"""

import json
import shutil

import pytest

import analyze.cli
from analyze.results.collect import collect
from analyze.results.records import read_record
from analyze.sweep.grid import build_grid
from analyze.sweep.run import refit_lines, sweep
from analyze.sweep.settings import changed_keys, settings_digest, stale_reason
from extract.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = 1 * 3 * 2  # targets x levels x seeds


def _probe_grid(store, **probe):
    return build_grid({
        "grid": {"name": "settings", "targets": ["hat"], "sensitive": "dark_skin", "runners": ["probe"]},
        "backbones": [{"name": "biased", "base_kind": "biased", "store": str(store)}],
        "subsets": [{"kind": "correlation", "levels": [0.0, 0.5, 1.0], "n": [40], "seeds": [0, 1]}],
        "probe": {"Cs": [0.1, 1.0], **probe},
    })


@pytest.fixture(scope="module")
def swept(avatar_store, tmp_path_factory):
    """A folder with the records of one probe sweep (Cs = 0.1, 1)."""
    folder = tmp_path_factory.mktemp("swept")
    assert set(sweep(_probe_grid(avatar_store.path), out=folder, progress=False)["status"]) == {"written"}
    return folder


@pytest.fixture
def results(swept, tmp_path):
    """A private copy of the swept folder."""
    return shutil.copytree(swept, tmp_path / "results")


def test_records_carry_their_settings_and_digest(swept, avatar_store):
    record = read_record(next(swept.glob("*.json")))
    settings = record["settings"]
    assert record["settings_digest"] == settings_digest(settings)
    assert settings["probe"]["Cs"] == [0.1, 1.0] and settings["probe"]["select"] == "val_loss"
    assert settings["probe"]["policy"] == "top_p" and settings["probe"]["tol"] == 1e-6  # defaults filled in
    assert settings["dataset"]["manifest_hash"] == avatar_store.provenance["manifest_hash"]
    assert settings["store"]["weights_sha256"] == avatar_store.provenance["weights_sha256"]
    assert settings["spec"] == record["spec"]
    assert "device" not in settings["probe"]  # where a cell runs does not decide its numbers


def test_an_unchanged_grid_skips_every_cell(results, avatar_store):
    summary = sweep(_probe_grid(avatar_store.path), out=results, progress=False)
    assert set(summary["status"]) == {"skipped"} and summary["reason"].isna().all()
    assert refit_lines(summary) == []


def test_a_changed_c_grid_refits_and_says_why(results, avatar_store):
    grid = _probe_grid(avatar_store.path, Cs=[10.0, 100.0, 1000.0])
    planned = sweep(grid, out=results, progress=False, dry_run=True)
    assert set(planned["status"]) == {"to refit"}
    assert refit_lines(planned) == [f"{CELLS} cells to refit: probe.Cs changed"]
    summary = sweep(grid, out=results, progress=False)
    assert set(summary["status"]) == {"refit"} and set(summary["reason"]) == {"probe.Cs changed"}
    assert refit_lines(summary) == [f"{CELLS} cells refit: probe.Cs changed"]
    table = collect(results)
    assert set(table["C"]) <= {10.0, 100.0, 1000.0}  # the records hold the new grid's numbers
    assert all(read_record(p)["hyperparameters"]["Cs"] == [10.0, 100.0, 1000.0] for p in results.glob("*.json"))
    again = sweep(grid, out=results, progress=False)
    assert set(again["status"]) == {"skipped"}


def test_other_runner_settings_name_their_key(results, avatar_store):
    summary = sweep(_probe_grid(avatar_store.path, select="auc", policy="fixed"), out=results, progress=False,
                    dry_run=True)
    assert refit_lines(summary) == [f"{CELLS} cells to refit: probe.policy, probe.select changed"]
    # the device is left out of the digest: the same records serve
    assert set(sweep(_probe_grid(avatar_store.path, device="cpu"), out=results, progress=False,
                     dry_run=True)["status"]) == {"skipped"}


def test_records_without_a_digest_are_refitted(results, avatar_store):
    old = sorted(results.glob("*.json"))[:2]
    for path in old:  # as written before records carried their settings
        record = json.loads(path.read_text())
        del record["settings"], record["settings_digest"]
        path.write_text(json.dumps(record))
    summary = sweep(_probe_grid(avatar_store.path), out=results, progress=False)
    refit = summary[summary["status"] == "refit"]
    assert sorted(refit["cell_id"]) == sorted(p.stem for p in old)
    assert refit_lines(summary) == ["2 cells refit: no settings digest"]
    assert all("settings_digest" in read_record(p) for p in old)


def test_the_cli_prints_the_refit_count(results, avatar_store, tmp_path, capsys):
    grid = tmp_path / "settings.toml"
    grid.write_text(f"""
[grid]
name = "settings"
targets = ["hat"]
sensitive = "dark_skin"
runners = ["probe"]

[[backbones]]
name = "biased"
base_kind = "biased"
store = "{avatar_store.path}"

[[subsets]]
kind = "correlation"
levels = [0.0, 0.5, 1.0]
n = [40]
seeds = [0, 1]

[probe]
Cs = [0.1, 1.0]
""")
    main = analyze.cli.main
    assert main(["sweep", str(grid), "--out", str(results), "--no-progress"]) == 0
    assert f"{CELLS} cells ({CELLS} skipped)" in capsys.readouterr().out
    assert main(["sweep", str(grid), "--out", str(results), "--no-progress", "--set", "probe.Cs=0.01,0.1"]) == 0
    out = capsys.readouterr().out
    assert f"{CELLS} cells ({CELLS} refit)" in out and f"{CELLS} cells refit: probe.Cs changed" in out


def test_a_changed_store_is_named(results, avatar_store, tmp_path):
    for path in results.glob("*.json"):  # as if the store had been extracted with other weights
        record = json.loads(path.read_text())
        record["settings"]["store"]["weights_sha256"] = "0" * 64
        record["settings_digest"] = settings_digest(record["settings"])
        path.write_text(json.dumps(record))
    summary = sweep(_probe_grid(avatar_store.path), out=results, progress=False, dry_run=True)
    assert refit_lines(summary) == [f"{CELLS} cells to refit: store.weights_sha256 changed"]


def test_stale_reason_and_changed_keys():
    new = {"probe": {"Cs": [1.0], "select": "auc"}, "spec": {"n": 40}}
    assert stale_reason({"settings": new, "settings_digest": settings_digest(new)}, new, settings_digest(new)) is None
    assert stale_reason({}, new, settings_digest(new)) == "no settings digest"
    old = {"probe": {"Cs": [0.5], "select": "auc"}, "spec": {"n": 40}}
    assert stale_reason({"settings": old, "settings_digest": settings_digest(old)}, new,
                        settings_digest(new)) == "probe.Cs changed"
    assert changed_keys({"a": 1}, {"a": 1, "b": 2}) == ["b"]
    assert settings_digest({"a": 1, "b": [1, 2]}) == settings_digest({"b": (1, 2), "a": 1})


# -- finetunes -------------------------------------------------------------------------------


def _finetune_grid(cache, **finetune):
    return build_grid({
        "grid": {"name": "ft", "targets": ["hat"], "sensitive": "dark_skin", "runners": ["finetune"]},
        "data": {"dataset": "avatars", "root": str(cache)},
        "backbones": [{"name": "scratch", "base_kind": "scratch", "base": "smallcnn.scratch"}],
        "subsets": [{"kind": "correlation", "levels": [1.0], "n": [40], "seeds": [0, 1]}],
        "finetune": {"lrs": [0.05], "weight_decays": [0.0001], "epochs": 1, "batch_size": 32, **finetune},
    })


def test_changed_learning_rates_refit_the_finetunes(avatar_cache, tmp_path):
    assert set(sweep(_finetune_grid(avatar_cache), out=tmp_path, progress=False)["status"]) == {"written"}
    record = read_record(next(tmp_path.glob("*.json")))
    assert record["settings"]["finetune"]["lrs"] == [0.05] and record["settings"]["finetune"]["epochs"] == 1
    assert record["settings"]["base"]["name"] == "smallcnn.scratch"
    same = sweep(_finetune_grid(avatar_cache, device="cpu", conditions_per_task=1), out=tmp_path, progress=False)
    assert set(same["status"]) == {"skipped"}  # neither decides the numbers
    summary = sweep(_finetune_grid(avatar_cache, lrs=[0.01, 0.2]), out=tmp_path, progress=False)
    assert set(summary["status"]) == {"refit"}
    assert refit_lines(summary) == ["2 cells refit: finetune.lrs changed"]
    assert set(collect(tmp_path)["lr"]) <= {0.01, 0.2}
    planned = sweep(_finetune_grid(avatar_cache, lrs=[0.01, 0.2], epochs=2), out=tmp_path, progress=False,
                    dry_run=True)
    assert refit_lines(planned) == ["2 cells to refit: finetune.epochs changed"]


# -- collect -----------------------------------------------------------------------------------


def _stamp(folder, created: str, digest: str | None = None):
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        record["created"] = created
        if digest is not None:
            record["settings_digest"] = digest
        path.write_text(json.dumps(record))


def test_collect_refuses_a_cell_recorded_with_two_settings(swept, tmp_path):
    old, new = shutil.copytree(swept, tmp_path / "old"), shutil.copytree(swept, tmp_path / "new")
    _stamp(old, "2024-01-01T00:00:00Z", digest="aaaaaaaaaaaaaaaa")
    _stamp(new, "2025-01-01T00:00:00Z")
    with pytest.raises(UserError) as info:
        collect([old, new])
    message = str(info.value)
    assert "is recorded with different settings (digest " in message and "aaaaaaaaaaaaaaaa in" in message
    assert "keep='newest'" in message and "\n" not in message and message.endswith(".")
    newest = collect([old, new], keep="newest")
    assert len(newest) == CELLS and set(newest["created"]) == {"2025-01-01T00:00:00Z"}
    assert "aaaaaaaaaaaaaaaa" not in set(newest["settings_digest"])
    oldest = collect([new, old], keep="oldest")
    assert set(oldest["settings_digest"]) == {"aaaaaaaaaaaaaaaa"}
    with pytest.raises(UserError, match="recorded twice"):  # same settings twice: still one folder too many
        collect([new, shutil.copytree(new, tmp_path / "copy")])
    with pytest.raises(UserError, match="keep must be one of"):
        collect(new, keep="latest")


def test_collect_keep_on_the_command_line(swept, tmp_path, capsys):
    old, new = shutil.copytree(swept, tmp_path / "old"), shutil.copytree(swept, tmp_path / "new")
    _stamp(old, "2024-01-01T00:00:00Z", digest="aaaaaaaaaaaaaaaa")
    main = analyze.cli.main
    table = tmp_path / "t.csv"
    assert main(["collect", str(old), str(new), "--out", str(table)]) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "pass --keep newest or --keep oldest" in err and not table.exists()
    assert main(["collect", str(old), str(new), "--out", str(table), "--keep", "newest"]) == 0
    assert f"{CELLS} cells" in capsys.readouterr().out and table.is_file()


def test_collect_refuses_a_grid_swept_with_two_c_grids(results, avatar_store):
    shrunk = build_grid({"grid": {"name": "settings", "targets": ["hat"], "sensitive": "dark_skin"},
                         "backbones": [{"name": "biased", "base_kind": "biased", "store": str(avatar_store.path)}],
                         "subsets": [{"kind": "correlation", "levels": [0.0], "n": [40], "seeds": [0, 1]}],
                         "probe": {"Cs": [10.0, 100.0]}})
    summary = sweep(shrunk, out=results, progress=False)  # level 0 refitted; levels 0.5 and 1 keep the old C grid
    assert refit_lines(summary) == ["2 cells refit: probe.Cs changed"]
    with pytest.raises(UserError) as info:
        collect(results)
    message = str(info.value)
    assert message.startswith("the probe records of grid 'settings' were made with 2 different settings (probe.Cs "
                              "differ: 4 record(s) like ")
    assert "keep='newest'" in message and "\n" not in message
    newest = collect(results, keep="newest")
    assert len(newest) == 2 and set(newest["level"]) == {0.0} and set(newest["C"]) <= {10.0, 100.0}
    assert len(collect(results, keep="oldest")) == 4
