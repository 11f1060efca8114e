"""``tfx.v1.utils.parse_pbtxt_file``: read a text-format protobuf file into a message."""
from __future__ import annotations

__all__ = ["parse_pbtxt_file", "PbtxtParseError"]


class PbtxtParseError(ValueError):
    """The file is not a text-format protobuf of the message's type (file, line, column named)."""


def parse_pbtxt_file(file_name: str, message):
    """Parse the text-format protobuf at ``file_name`` into ``message`` and return it (e.g.
    ``parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())``)."""
    from google.protobuf import text_format

    from .dsl.io import fileio
    with fileio.open(file_name, "r") as f:
        text = f.read()
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        where = f"line {e.GetLine()}, column {e.GetColumn()}" if e.GetLine() else "?"
        msg = str(e).split(" : ", 1)[-1]
        raise PbtxtParseError(f"{file_name}: {where}: not a text-format {message.DESCRIPTOR.full_name}: "
                              f"{msg}") from None
