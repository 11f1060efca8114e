"""``tfpipe.v1``: TFX's ``tfx.v1`` names that module files use, importable as
``from tfpipe import v1 as tfx``; the same classes tfpipe's components hand to ``run_fn``;
file operations that behave as TFX's fileio (a missing path is ``NotFoundError``)."""
import os
import subprocess
import sys

import pytest

from tfpipe import v1 as tfx
from tfpipe.components import fn_args
from tfpipe.v1.dsl.io import fileio


def test_module_files_get_the_classes_the_components_use():
    assert tfx.components.FnArgs is fn_args.FnArgs
    assert tfx.components.DataAccessor is fn_args.DataAccessor
    assert tfx.components.TunerFnResult is fn_args.TunerFnResult
    res = tfx.components.TunerFnResult(tuner="t", fit_kwargs={"x": 1})
    assert res.tuner == "t" and res.fit_kwargs == {"x": 1}  # a NamedTuple, as TFX's
    assert tfx.dsl.io.fileio is fileio


def test_what_module_files_do_not_use_is_not_pretended():
    """The pipeline-building names of tfx.v1 are tfpipe's own API, not mirrored here."""
    for name in ("Trainer", "Transform", "CsvExampleGen", "Evaluator"):
        assert not hasattr(tfx.components, name)
    assert tfx.utils.__all__ == ["parse_pbtxt_file", "PbtxtParseError"]
    assert not hasattr(tfx, "proto") and not hasattr(tfx, "orchestration") and not hasattr(tfx.dsl, "Pipeline")


def test_importing_it_loads_no_tensorflow():
    code = ("import sys\nfrom tfpipe import v1 as tfx\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_fileio_round_trip_on_local_files(tmp_path):
    d = str(tmp_path / "a" / "b")
    fileio.makedirs(d)
    assert fileio.isdir(d) and fileio.exists(d)
    f = os.path.join(d, "x.txt")
    with fileio.open(f, "w") as out:
        out.write("hello")
    with fileio.open(f) as inp:
        assert inp.read() == "hello"
    assert fileio.listdir(d) == ["x.txt"]
    assert fileio.glob(os.path.join(d, "*.txt")) == [f]
    assert fileio.stat(f).length == 5
    fileio.copy(f, os.path.join(d, "y.txt"))
    with pytest.raises(Exception, match="exists"):
        fileio.copy(f, os.path.join(d, "y.txt"))  # overwrite=False, as in TFX
    fileio.copy(f, os.path.join(d, "y.txt"), overwrite=True)
    fileio.rename(os.path.join(d, "y.txt"), os.path.join(d, "z.txt"))
    fileio.mkdir(os.path.join(d, "sub"))
    walked = [(top, sorted(dirs), sorted(files)) for top, dirs, files in fileio.walk(str(tmp_path / "a"))]
    assert walked[0] == (str(tmp_path / "a"), ["b"], [])
    assert (d, ["sub"], ["x.txt", "z.txt"]) in walked
    fileio.remove(os.path.join(d, "z.txt"))
    fileio.rmtree(str(tmp_path / "a"))
    assert not fileio.exists(str(tmp_path / "a"))


def test_a_missing_path_raises_not_found_error(tmp_path):
    missing = str(tmp_path / "missing.txt")
    for op in (lambda: fileio.remove(missing), lambda: fileio.listdir(missing), lambda: fileio.stat(missing),
               lambda: fileio.rename(missing, missing + ".2"), lambda: fileio.copy(missing, missing + ".2")):
        with pytest.raises(fileio.NotFoundError) as e:
            op()
        assert isinstance(e.value, FileNotFoundError) and "missing.txt" in str(e.value)


def test_parse_pbtxt_file_reads_a_schema(tmp_path):
    from tensorflow_metadata.proto.v0 import schema_pb2
    p = tmp_path / "schema.pbtxt"
    p.write_text('feature { name: "species" type: INT }\nfeature { name: "body_mass_g" type: FLOAT }\n')
    schema = tfx.utils.parse_pbtxt_file(str(p), schema_pb2.Schema())
    assert [(f.name, schema_pb2.FeatureType.Name(f.type)) for f in schema.feature] == [
        ("species", "INT"), ("body_mass_g", "FLOAT")]
    p.write_text("feature { nme: 'x' }\n")
    with pytest.raises(tfx.utils.PbtxtParseError) as e:
        tfx.utils.parse_pbtxt_file(str(p), schema_pb2.Schema())
    assert str(e.value) == (f"{p}: line 1, column 11: not a text-format tensorflow.metadata.v0.Schema: Message "
                            f"type \"tensorflow.metadata.v0.Feature\" has no field named \"nme\".")
