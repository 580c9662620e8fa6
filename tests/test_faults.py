"""Faults and their recovery: a torn generations file, a kill during a checkpoint save or a stage-02 write, Ctrl-C,
a truncated table, file permissions, a full or read-only disk. Each recovery must leave what the next run needs, not a
new problem."""

from __future__ import annotations

import errno
import io
import json
import os
import stat

import pytest

from mllm_safety.core import files
from mllm_safety.core.cli import run_cli
from mllm_safety.core.files import BOM, DataFormatError, write_json
from mllm_safety.core.generation import read_generations
from mllm_safety.core.preset import Preset


def test_a_torn_last_line_is_cut_off_so_appending_continues_cleanly(tmp_path):
    path = tmp_path / "g.jsonl"
    whole = json.dumps({"id": "a", "response": "x"}) + "\n"
    path.write_text(whole + '{"id": "b", "resp', encoding="utf-8")  # a crash in the middle of a write
    assert [r["id"] for r in read_generations(path)] == ["a"]
    assert path.read_text(encoding="utf-8") == whole  # the fragment is gone from the file itself
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "b", "response": "y"}) + "\n")
    assert [r["id"] for r in read_generations(path)] == ["a", "b"]  # the next run reads everything


def test_a_bad_line_before_the_end_is_an_error_not_a_silent_loss(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"g.jsonl: line 2 is not JSON"):
        read_generations(path)


def test_ctrl_c_exits_130_and_says_how_to_resume(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    err = capsys.readouterr().err
    assert "resume with the same command" in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback():
    def buggy():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_cli(buggy)


def test_outputs_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_figures_refuse_a_table_cut_mid_row(tmp_path):
    from mllm_safety.core.tables import read_table

    path = tmp_path / "results.csv"
    path.write_text(
        "model,adapter,benchmark,mode,category,judge,metric,value,ci_low,ci_high,n\n"
        "base,,xstest,,all,paper_strmatch,asr,0.5,0.1,0.9,10\nbase,,figstep,,all,paper_str",
        encoding="utf-8",
    )
    with pytest.raises(DataFormatError, match=r"results.csv: line 3 is incomplete"):
        read_table(path)


def test_a_torn_line_after_a_byte_order_mark_is_cut_at_the_right_byte(tmp_path):
    path = tmp_path / "g.jsonl"
    whole = (BOM + json.dumps({"id": "a", "response": "x"}) + "\n").encode("utf-8")
    path.write_bytes(whole + b'{"id": "b", "resp')
    assert [r["id"] for r in read_generations(path)] == ["a"]
    assert path.read_bytes() == whole  # the mark is kept, the fragment is gone


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a real write(): no path in the error


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files.os, "fdopen", lambda fd, *a, **k: os.close(fd) or _FullDisk())
    assert run_cli(lambda: write_json(tmp_path / "m.json", {"a": 1})) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'm.json'}: No space left on device. Fix: free space on that disk" + (
        " (or point runs_root elsewhere), then resume with the same command\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    def read_only(dir, **_):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    assert run_cli(lambda: write_json(tmp_path / "m.json", {"a": 1})) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}: Read-only file system. Fix: the disk is read-only")
    assert len(err.splitlines()) == 1


def test_another_os_error_keeps_its_traceback():
    def reset():
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        run_cli(reset)


def test_a_killed_stage_02_leaves_no_partial_file_for_the_rerun(tmp_path, world_data):
    from mllm_safety import mix_rejection_data

    preset = Preset.load("smoke", data_root=str(world_data), runs_root=str(tmp_path), export_format="llava")
    mix_rejection_data.run(preset)
    stage = preset.mix.stage_dir
    (stage / "metrics.json").unlink()  # killed before the end ...
    leftover = stage / ".frac_10pct.json.k1ll3d.tmp"  # ... in the middle of a write
    leftover.write_text('[{"id": "m1", "conv', encoding="utf-8")
    mix_rejection_data.run(preset)
    assert not list(stage.glob(".*.tmp")) and (stage / "metrics.json").is_file()
