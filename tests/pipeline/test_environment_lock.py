"""The environment lock every run records: each installed distribution with the version
importlib.metadata's full parse gives, read from the METADATA header alone."""
from importlib import metadata

from tfpipe.provenance import _name_and_version, environment_lock, normalize_name


def test_the_lock_lists_every_distribution_as_the_full_metadata_parse_does():
    want = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name and normalize_name(name) not in want:
            want[normalize_name(name)] = d.version
    want.pop("tfpipe", None)  # recorded apart, with how it is installed
    lock = environment_lock()
    assert len(want) > 50 and lock["packages"] == want
    assert lock["tfpipe"]


def test_a_header_without_a_version_falls_back_to_the_parser(tmp_path):
    info = tmp_path / "odd-1.0.dist-info"
    info.mkdir()
    # no Version in the header (a Name after it is the description's): the parser's answer
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: odd\nSummary: s\n\nName: not-the-header\n")
    d = metadata.PathDistribution(info)
    assert _name_and_version(d) == ("odd", None)
    (info / "METADATA").write_text("Name: odd\nVersion: 1.0\n\nVersion: 9.9\n")
    assert _name_and_version(d) == ("odd", "1.0")
