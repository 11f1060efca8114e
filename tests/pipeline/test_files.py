"""Files written whole or not at all (tfpipe.files): a reader finds the old content or the
new, never a part, and a failed write leaves nothing behind."""
import os

import pytest

from tfpipe.files import replacing, write_file


def test_write_file_replaces_whole_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "out.json"  # the folder is made
    assert write_file(str(p), '{"a": "é"}') == str(p)
    assert p.read_text(encoding="utf-8") == '{"a": "é"}'
    write_file(str(p), b"\x00\x01", durable=True)
    assert p.read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(p.parent)) == ["out.json"]


def test_a_failing_writer_keeps_the_old_content_and_removes_its_temporary(tmp_path):
    p = tmp_path / "report.html"
    p.write_text("old and complete")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(str(p)) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("disk full")
    assert p.read_text() == "old and complete"
    assert os.listdir(tmp_path) == ["report.html"]


def test_two_writers_of_one_target_never_share_a_temporary(tmp_path):
    p = str(tmp_path / "ready.json")
    with replacing(p) as a, replacing(p) as b:
        assert a != b and os.path.dirname(a) == str(tmp_path)
        assert os.path.basename(a).startswith(".")  # hidden: dataset readers skip it
        for t, text in ((a, "first"), (b, "second")):
            with open(t, "w") as f:
                f.write(text)
    assert open(p).read() == "first"  # the outer block ended last
    assert os.listdir(tmp_path) == ["ready.json"]


def test_a_symlink_is_swapped_in_place(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    link = str(tmp_path / "current")
    for v in ("1", "2"):
        with replacing(link) as tmp:
            os.symlink(v, tmp)
        assert os.readlink(link) == v
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "current"]
