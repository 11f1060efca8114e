"""The penguin table in the form TFX's penguin example reads: an integer label ``species``
(Adelie 0, Chinstrap 1, Gentoo 2) and four measurements in raw units, ``culmen_*`` for
``bill_*``; rows missing a measurement are dropped (342 of 344). Made from the raw table of
examples/penguin/data with the standard library only, so a TFX virtualenv can run it too:

    python examples/penguin_tfx/data.py OUT.csv
"""
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = os.path.join(os.path.dirname(HERE), "penguin", "data", "penguins.csv")
CSV = os.path.join(HERE, "data", "penguins.csv")
SPECIES = {"Adelie": 0, "Chinstrap": 1, "Gentoo": 2}
COLUMNS = {"culmen_length_mm": "bill_length_mm", "culmen_depth_mm": "bill_depth_mm",
           "flipper_length_mm": "flipper_length_mm", "body_mass_g": "body_mass_g"}


def rows(raw: str = RAW) -> list:
    out = []
    with open(raw, newline="") as f:
        for r in csv.DictReader(f):
            values = [r[src] for src in COLUMNS.values()]
            if any(v in ("", "NA") for v in values) or r["species"] not in SPECIES:
                continue
            out.append([SPECIES[r["species"]], *(float(v) for v in values)])
    return out


def write(path: str, raw: str = RAW) -> str:
    """Write the table to ``path`` (through a temporary file and a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["species", *COLUMNS])
        w.writerows(rows(raw))
    os.replace(path + ".tmp", path)
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else CSV))
