"""A module file's functions reach Beam's SDK workers as code, and so do the neighbours it
imports by bare name (TFX's penguin modules: ``from penguin_common import ...``), which a
worker process, without the module file's folder on its path, could not import."""
import subprocess
import sys
import textwrap


def test_module_file_and_its_neighbour_unpickle_where_the_folder_is_not_on_the_path(tmp_path):
    from apache_beam.internal.cloudpickle import cloudpickle

    from tfpipe.loader import load_module_from_file
    from tfpipe.runtime import _pickle_user_modules_by_value
    d = tmp_path / "mods"
    d.mkdir()
    (d / "scale_neighbour_common.py").write_text("FACTOR = 7\n\ndef times(x):\n    return x * FACTOR\n")
    (d / "scale_user_module.py").write_text(textwrap.dedent("""
        from scale_neighbour_common import times

        def preprocessing_fn(x):
            return times(x) + 1
    """))
    mod = load_module_from_file(str(d / "scale_user_module.py"))
    try:
        _pickle_user_modules_by_value()
        blob = cloudpickle.dumps(mod.preprocessing_fn)
    finally:
        for name in ("scale_neighbour_common",):
            cloudpickle.unregister_pickle_by_value(sys.modules[name])
        cloudpickle.unregister_pickle_by_value(mod)
        sys.modules.pop("scale_neighbour_common", None)
        sys.path.remove(str(d))
    (tmp_path / "fn.pkl").write_bytes(blob)
    # a fresh process in another folder, as an SDK worker: the module folder is not on its path
    code = ("import pickle, sys; from apache_beam.internal.cloudpickle import cloudpickle; "
            f"print(pickle.loads(open({str(tmp_path / 'fn.pkl')!r}, 'rb').read())(5))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "36"
