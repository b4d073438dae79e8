"""A framework-neutral description of an input form, built from a model's signature.

Both frontends (Streamlit and Gradio) render the same :class:`Field` list, and turn what
the user typed back into records with :func:`form_to_record` / :func:`parse_csv_rows`.
Conversion problems are reported as :class:`client.SchemaValidationError`, the same error
the Predictor raises, so a frontend has one thing to catch.

Example::

    fields = build_fields(signature, example={"x": 1.5})
    record = form_to_record(fields, {"x": "2.0", "s": "a"})
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from client import SchemaProblem, SchemaValidationError, Signature

__all__ = [
    "Field",
    "FieldKind",
    "build_fields",
    "convert_value",
    "csv_template",
    "form_to_record",
    "parse_csv_rows",
    "signature_rows",
]

FieldKind = Literal["float", "int", "bool", "datetime", "text", "choice"]

_KIND_BY_TYPE: dict[str, FieldKind] = {
    "double": "float",
    "float": "float",
    "integer": "int",
    "long": "int",
    "boolean": "bool",
    "datetime": "datetime",
    "string": "text",
    "binary": "text",
}

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


@dataclass(frozen=True)
class Field:
    """One input widget: a column of the signature."""

    name: str
    kind: FieldKind
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    #: ``True`` when ``choices`` are suggestions (from the input example): other values pass too.
    open_choices: bool = False
    #: The MLflow type the column declares (``"double"``, ``"long"``, ...).
    mlflow_type: str = "string"

    @property
    def label(self) -> str:
        """The widget label: the column name, so tests and screen readers find it by name."""
        return self.name

    @property
    def help(self) -> str:
        """Type and whether the column is required, shown next to the widget."""
        return f"{self.mlflow_type}, {'required' if self.required else 'optional'}"


def build_fields(
    signature: Signature | None,
    example: dict[str, Any] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    suggestions: Mapping[str, Sequence[str]] | None = None,
) -> list[Field]:
    """The form for a column signature; ``[]`` when there is none (tensor or no signature).

    ``example`` (one record, e.g. the model's input example) gives defaults; ``choices``
    turns a string column into a ``"choice"`` field limited to those values, ``suggestions``
    into one that offers them but accepts others too.
    """
    if signature is None or signature.is_tensor:
        return []
    example = example or {}
    choices = choices or {}
    suggestions = suggestions or {}
    fields: list[Field] = []
    for i, col in enumerate(signature.columns):
        name = col.name if col.name is not None else str(i)
        kind: FieldKind = _KIND_BY_TYPE.get(col.type, "text")
        options = tuple(str(c) for c in choices.get(name, ()))
        is_open = not options
        if is_open:
            options = tuple(str(c) for c in suggestions.get(name, ()))
        if kind != "text":
            options, is_open = (), False
        elif options:
            kind = "choice"
        default = example.get(name)
        if default is not None:
            try:
                default = convert_value(kind, default)
            except ValueError:
                default = None
        fields.append(
            Field(name=name, kind=kind, required=col.required, default=default, choices=options,
                  open_choices=is_open and bool(options), mlflow_type=col.type)
        )
    return fields


def convert_value(kind: FieldKind, value: Any) -> Any:
    """Convert one raw widget/CSV value to the field's Python type; ``None`` for blank.

    Raises ``ValueError`` with a short message when the value does not fit.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {_short(value)}") from None
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {_short(value)}") from None
        if not f.is_integer():
            raise ValueError(f"expected an integer, got {_short(value)}")
        return int(f)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {_short(value)}")
    if kind == "datetime":
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day).isoformat()
        if isinstance(value, (int, float)):  # Gradio's DateTime gives a timestamp
            return datetime.fromtimestamp(float(value)).isoformat()
        try:
            return datetime.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"expected a date/time like 2024-01-31T12:00:00, got {_short(value)}") from None
    return str(value)


def form_to_record(fields: list[Field], values: dict[str, Any]) -> dict[str, Any]:
    """One record from the form's values (keyed by field name).

    Blank optional fields are left out; every problem is collected into one
    :class:`SchemaValidationError`.
    """
    record: dict[str, Any] = {}
    problems: list[SchemaProblem] = []
    for field in fields:
        try:
            value = convert_value(field.kind, values.get(field.name))
        except ValueError as e:
            problems.append(SchemaProblem(str(e), column=field.name))
            continue
        if value is None:
            if field.required:
                problems.append(SchemaProblem("a value is required", column=field.name))
            continue
        if field.kind == "choice" and field.choices and not field.open_choices and value not in field.choices:
            problems.append(SchemaProblem(f"expected one of {list(field.choices)}", column=field.name))
            continue
        record[field.name] = value
    if problems:
        raise SchemaValidationError(problems)
    return record


def parse_csv_rows(text: str, signature: Signature | None) -> list[dict[str, Any]]:
    """Records from CSV text with a header row, values converted to the signature's types.

    Columns not in the signature are kept as text (the Predictor's validation reports them);
    blank cells are left out; a missing required column or a bad value is a problem of its
    own (rows numbered from 0, the first data row).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    # newline="": a bare \r ends a row, as the csv module expects of files it reads
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as e:
        raise SchemaValidationError([SchemaProblem(f"the header row is not valid CSV ({e})")]) from None
    if not header:
        raise SchemaValidationError([SchemaProblem("the CSV file has no header row")])
    fields = {f.name: f for f in build_fields(signature)}
    problems: list[SchemaProblem] = []
    for name, field in fields.items():
        if field.required and name not in header:
            problems.append(SchemaProblem("required column missing from the CSV header", column=name))
    records: list[dict[str, Any]] = []
    rows = enumerate(reader)
    while True:
        try:
            row_no, row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a field over the csv module's 131,072-character limit
            problems.append(SchemaProblem(f"the file is not valid CSV from here on ({e})", row=len(records)))
            break
        record: dict[str, Any] = {}
        for raw_key, raw in row.items():
            if raw_key is None:
                problems.append(SchemaProblem("more cells than header columns", row=row_no))
                continue
            key = raw_key.strip()
            spec = fields.get(key)
            try:
                value = convert_value(spec.kind if spec else "text", raw)
            except ValueError as e:
                problems.append(SchemaProblem(str(e), column=key, row=row_no))
                continue
            if value is None:
                if spec is not None and spec.required:
                    problems.append(SchemaProblem("a value is required", column=key, row=row_no))
                continue
            record[key] = value
        records.append(record)
    if not records and not problems:
        problems.append(SchemaProblem("the CSV file has no data rows"))
    if problems:
        raise SchemaValidationError(problems)
    return records


def csv_template(signature: Signature | None) -> str:
    """A CSV header row naming the signature's columns (a template for batch scoring)."""
    buf = io.StringIO()
    csv.writer(buf).writerow([f.name for f in build_fields(signature)])
    return buf.getvalue()


def signature_rows(signature: Signature | None) -> list[dict[str, Any]]:
    """The signature as table rows (for a model card)."""
    if signature is None:
        return []
    rows: list[dict[str, Any]] = []
    for c in signature.columns:
        rows.append({"input": c.name, "type": c.type, "required": c.required})
    for t in signature.tensors:
        rows.append({"input": t.name, "type": f"tensor {t.dtype} {list(t.shape)}", "required": True})
    for p in signature.params:
        rows.append({"input": f"param {p.name}", "type": p.type, "required": False})
    return rows


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
