"""The ``predictor`` command line: demo model, local serving, schema and predictions.

Imports stay lazy so that ``predictor --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import register_demo_model

    print(register_demo_model(args.registry_uri))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._serve import serve

    serve(args.model_uri, args.name, host=args.host, port=args.port, registry_uri=args.registry_uri)
    return 0


def _format_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_schema(args: argparse.Namespace) -> int:
    from ._exceptions import ConfigurationError
    from ._registry import activate, resolve_registry_uri
    from ._types import ColumnSpec, Signature

    activate(resolve_registry_uri(args.registry_uri))
    import mlflow.models

    try:
        info = mlflow.models.get_model_info(args.model_uri)
    except Exception as exc:  # MlflowException, OSError: not found / unreadable
        raise ConfigurationError(f"cannot read model {args.model_uri!r}: {exc}") from exc
    if info.signature is None:
        print(f"{args.model_uri}: no signature")
        return 0
    sig = Signature.from_mlflow(info.signature.to_dict())
    print(f"Model: {args.model_uri}")
    if sig.columns:
        rows = [(c.name or "", c.type, "yes" if c.required else "no") for c in sig.columns]
        print("\nInputs:")
        print(_format_table(rows, ("column", "type", "required")))
    if sig.tensors:
        rows = [(t.name or "", t.dtype, str(list(t.shape))) for t in sig.tensors]
        print("\nInputs (tensors):")
        print(_format_table(rows, ("name", "dtype", "shape")))
    if sig.outputs:
        rows = [
            (o.name or "", o.type, "") if isinstance(o, ColumnSpec) else (o.name or "", o.dtype, str(list(o.shape)))
            for o in sig.outputs
        ]
        print("\nOutputs:")
        print(_format_table(rows, ("name", "type", "shape")))
    if sig.params:
        rows = [(p.name, p.type, json.dumps(p.default)) for p in sig.params]
        print("\nParams:")
        print(_format_table(rows, ("name", "type", "default")))
    return 0


def _load_inputs(args: argparse.Namespace) -> Any:
    from ._exceptions import ConfigurationError

    if args.json is not None:
        try:
            return json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"--json is not valid JSON: {exc}") from exc
    import pandas as pd

    try:
        return pd.read_csv(args.csv)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read CSV {args.csv!r}: {exc}") from exc


def _cmd_predict(args: argparse.Namespace) -> int:
    from . import Predictor
    from ._exceptions import ConfigurationError

    params = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"--params is not valid JSON: {exc}") from exc
    inputs = _load_inputs(args)
    if args.model:
        predictor = Predictor.from_model(args.model, registry_uri=args.registry_uri)
    else:
        predictor = Predictor.from_endpoint(
            args.endpoint, url=args.url, model_uri=args.model_uri, registry_uri=args.registry_uri
        )
    try:
        result = predictor.predict(inputs, params=params)
    finally:
        close = getattr(predictor, "close", None)
        if callable(close):
            close()
    print(result.model_dump_json(indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predictor", description="Predictions from MLflow / Model Serving models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="register the iris demo model (main.default.iris@champion)")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="serve a model locally like a Model Serving endpoint")
    p.add_argument("model_uri")
    p.add_argument("--name", required=True, help="endpoint name: /serving-endpoints/NAME/invocations")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("schema", help="print a model's signature")
    p.add_argument("model_uri")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("predict", help="score inputs and print the result as JSON")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="Model Serving endpoint name")
    target.add_argument("--url", help="full invocations URL")
    target.add_argument("--model", help="models:/ URI, scored in-process (direct mode)")
    p.add_argument("--model-uri", default=None, help="endpoint mode: models:/ URI to fetch the signature from")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--json", help="records (list of objects), one object, or a Model Serving payload")
    data.add_argument("--csv", help="CSV file with a header row")
    p.add_argument("--params", default=None, help="inference params as a JSON object")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_predict)

    # --- later: `predictor endpoints ...` subcommand group goes here -------------------
    # e.g. _add_endpoints_group(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ._exceptions import PredictorError

    try:
        return int(args.func(args) or 0)
    except PredictorError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
