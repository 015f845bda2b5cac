"""Rerunning ``extract`` on a complete store skips it and names the CLI flag that redoes it."""

from __future__ import annotations

import logging

from analyze.cli import main


def test_rerun_names_the_overwrite_flag(avatar_cache, tmp_path, caplog, capsys):
    argv = ["extract", "--dataset", "avatars", "--root", str(avatar_cache), "--backbone", "smallcnn.scratch",
            "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "s.h5")]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().startswith("wrote ")
    before = (tmp_path / "s.h5").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="extract.extraction"):
        assert main(argv) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"kept {tmp_path / 's.h5'}: already a complete store") and "wrote" not in out
    skipped = [r.getMessage() for r in caplog.records if "already a complete store" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].endswith("skipping (pass --overwrite to redo it)"), skipped
    assert "overwrite=True" not in skipped[0]
    assert (tmp_path / "s.h5").stat().st_mtime_ns == before  # not rewritten
