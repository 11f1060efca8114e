"""Run in a separate process by the InfraValidator: load a SavedModel, time the load,
send the requests, and report what came back as JSON on stdout's last line.

    python -m tfpipe.components._infra_probe MODEL_DIR REQUESTS.bin [SIGNATURE]

REQUESTS.bin: serialized tf.Examples, each preceded by its length (8 bytes, little endian).
"""
import json
import os
import struct
import sys
import time


def write_requests(path: str, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for r in records:
            f.write(struct.pack("<Q", len(r)) + r)


def read_requests(path: str) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        while header := f.read(8):
            (n,) = struct.unpack("<Q", header)
            out.append(f.read(n))
    return out


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    model_dir, requests = argv[0], argv[1]
    signature = argv[2] if len(argv) > 2 else "serving_default"
    t0 = time.monotonic()
    import tensorflow as tf
    import_s = time.monotonic() - t0
    t1 = time.monotonic()
    loaded = tf.saved_model.load(model_dir)
    load_s = time.monotonic() - t1
    report = {"import_s": import_s, "load_s": load_s, "signatures": sorted(loaded.signatures)}
    if signature not in loaded.signatures:
        report["error"] = f"the model has no {signature!r} signature; it has {sorted(loaded.signatures)}"
        print(json.dumps(report))
        return 0
    fn = loaded.signatures[signature]
    records = read_requests(requests)
    t2 = time.monotonic()
    out = fn(examples=tf.constant(records))
    report["predict_s"] = time.monotonic() - t2
    report["outputs"] = {k: {"shape": list(v.shape), "dtype": v.dtype.name,
                             "values": v.numpy().astype("float64").tolist() if v.dtype.is_floating else None}
                         for k, v in out.items()}
    report["requests"] = len(records)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
