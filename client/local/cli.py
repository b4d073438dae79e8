"""The ``predictor`` command line: demo model, local serving, schema, predictions, and
``predictor endpoints validate|plan|apply|status|promote|bundle`` for serving_configs/, and
``predictor rollout`` (canary rollouts judged on monitoring evidence).

Imports stay lazy so that ``predictor --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

# --- argument types: a bad value is a usage error (one line, exit 2) before anything runs -------------


def _port(text: str) -> int:
    port = _int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return port


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _registered_model_uri(text: str) -> str:
    """A ``models:/name/version`` or ``models:/name@alias`` URI, checked as the SDK checks it."""
    from .._exceptions import ConfigurationError
    from .._schema.signatures import parse_model_uri

    try:
        parse_model_uri(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _servable_model_uri(text: str) -> str:
    """What ``serve`` takes: a registered model URI (checked), or a ``runs:/`` URI or a path."""
    return _registered_model_uri(text) if text.startswith("models:") else text


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import register_demo_agent, register_demo_model

    print(register_demo_model(args.registry_uri))
    print(register_demo_agent(args.registry_uri))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.model_uri, args.name, host=args.host, port=args.port, registry_uri=args.registry_uri,
          served_entity=args.served_entity, experiment=args.experiment)
    return 0


def _format_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_schema(args: argparse.Namespace) -> int:
    from .._exceptions import ConfigurationError
    from .._mlflow import mlflow_session
    from .._types import ColumnSpec, Signature

    with mlflow_session(args.registry_uri):
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
    from .._exceptions import ConfigurationError

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
    from .. import Predictor

    params = args.params
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


def _cmd_batch(args: argparse.Namespace) -> int:
    """Score a table on Spark (logic in client.spark), or print the equivalent ai_query SQL."""
    import time

    from .. import Predictor
    from .._exceptions import ConfigurationError

    if args.sql:
        if not (args.endpoint and args.table):
            raise ConfigurationError("--sql needs --endpoint NAME and --table catalog.schema.table")
        from ..spark import endpoint_ai_query_sql

        sql = endpoint_ai_query_sql(args.endpoint, args.table, model_uri=args.model_uri, registry_uri=args.registry_uri)
        print(sql)
        return 0
    if not (args.input and args.output) or not (args.endpoint or args.url or args.model_uri):
        raise ConfigurationError("batch needs INPUT OUTPUT and one of --endpoint, --url, --model-uri")
    from ..spark import run_batch

    if args.endpoint or args.url:
        p = Predictor.from_endpoint(
            args.endpoint, url=args.url, model_uri=args.model_uri, registry_uri=args.registry_uri
        )
    else:
        p = Predictor.from_model(args.model_uri, registry_uri=args.registry_uri)
    params = args.params
    started = time.perf_counter()
    rows, errors = run_batch(args.input, args.output, p, master=args.master, params=params, overwrite=args.overwrite,
                             progress=lambda done, total: print(f"  tasks {done}/{total}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - started
    print(f"wrote {rows} rows to {args.output} ({errors} with prediction_error) in {seconds:.1f}s")
    return 0


# --- `predictor endpoints ...` ------------------------------------------------------------------


class _ConfigProblems(Exception):
    """Invalid config files: each error's lines are printed as they are (file:line: field: message)."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors


def _load_configs(paths: Sequence[str]) -> list[Any]:
    from ..endpoints import ServingConfigError, load_config

    configs, problems = [], []
    for path in paths:
        try:
            configs.append(load_config(path))
        except ServingConfigError as exc:
            problems.append(exc)
    if problems:
        raise _ConfigProblems(problems)
    return configs


def _resolve_all(configs: list[Any], registry_uri: str | None) -> list[Any]:
    from ..endpoints import ServingConfigError, registry_resolver, resolve

    resolver = registry_resolver(registry_uri)
    desired, problems = [], []
    for cfg in configs:
        try:
            desired.append(resolve(cfg, resolver))
        except ServingConfigError as exc:
            problems.append(exc)
    if problems:
        raise _ConfigProblems(problems)
    return desired


def _progress() -> Any:
    """A progress display on stderr: one line whenever the endpoint's state changes."""
    last: list[Any] = [None]

    def show(ep: Any, elapsed: float) -> None:
        update = ep.state.config_update.value if ep.state and ep.state.config_update else "?"
        cfg = ep.pending_config or ep.config
        entities = [
            f"{e.name}: {e.state.deployment.value}"
            for e in (cfg.served_entities if cfg else None) or []
            if e.state and e.state.deployment
        ]
        key = (update, tuple(entities))
        if key != last[0]:
            last[0] = key
            detail = ("  " + ", ".join(entities)) if entities else ""
            print(f"  [{elapsed:5.1f}s] {ep.name}: {update}{detail}", file=sys.stderr, flush=True)

    return show


def _cmd_endpoints_validate(args: argparse.Namespace) -> int:
    configs = _load_configs(args.files)
    if not args.offline:
        desired = _resolve_all(configs, args.registry_uri)
        for d in desired:
            for model, alias, version in d.aliases.values():
                print(f"  {model}@{alias} -> version {version}")
    for path, cfg in zip(args.files, configs, strict=True):
        print(f"ok: {path} (endpoint {cfg.name}, {len(cfg.served_entities)} served entities)")
    return 0


def _cmd_endpoints_plan(args: argparse.Namespace) -> int:
    from ..endpoints import plan, workspace_client

    desired = _resolve_all(_load_configs(args.files), args.registry_uri)
    w = workspace_client(args.host, args.profile)
    for d in desired:
        print(plan(w, d).text())
    return 0


def _cmd_endpoints_apply(args: argparse.Namespace) -> int:
    from ..endpoints import apply, workspace_client

    desired = _resolve_all(_load_configs(args.files), args.registry_uri)
    w = workspace_client(args.host, args.profile)
    for d in desired:
        result = apply(w, d, poll_interval=args.poll_interval, timeout=args.timeout, progress=_progress())
        if not result.changed:
            print(f"= endpoint {d.name}: no changes (already matches its config)")
            continue
        print(result.plan.text(applied=True))
        state = result.endpoint.state if result.endpoint else None
        ready = state.ready.value if state and state.ready else "in an unknown state"
        print(f"endpoint {d.name} is {'ready' if ready == 'READY' else ready}")
    return 0


def _cmd_endpoints_status(args: argparse.Namespace) -> int:
    from ..endpoints import EndpointOperationError, get_endpoint, status_text, workspace_client

    ep = get_endpoint(workspace_client(args.host, args.profile), args.name)
    if ep is None:
        raise EndpointOperationError(f"endpoint {args.name} does not exist")
    print(status_text(ep))
    return 0


def _cmd_endpoints_promote(args: argparse.Namespace) -> int:
    from ..endpoints import promote, registry_alias_setter, registry_resolver, workspace_client

    done = promote(
        workspace_client(args.host, args.profile),
        args.name,
        alias=args.alias,
        version=str(args.version),
        canary=args.canary,
        hold=args.hold,
        model=args.model,
        served_entity=args.served_entity,
        resolver=registry_resolver(args.registry_uri),
        set_alias=registry_alias_setter(args.registry_uri),
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        progress=_progress(),
    )
    print("\n".join(done))
    return 0


def _cmd_endpoints_bundle(args: argparse.Namespace) -> int:
    import yaml

    from .._exceptions import ConfigurationError
    from ..endpoints import bundle_resources, check_bundle, monitor_resources, registry_resolver

    configs = _load_configs(args.files)
    if args.check:
        try:
            with open(args.check, encoding="utf-8") as fh:
                bundle = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read bundle {args.check!r}: {exc}") from exc
        problems = check_bundle(bundle, configs)
        for p in problems:
            print(f"{args.check}: {p}", file=sys.stderr)
        if not problems:
            print(f"{args.check}: model_serving_endpoints match {len(configs)} serving config(s)")
        return 1 if problems else 0
    resources, variables = bundle_resources(configs, registry_resolver(args.registry_uri))
    out = {"variables": variables, "resources": {"model_serving_endpoints": resources}}
    if monitors := monitor_resources(configs):
        out["resources"]["quality_monitors"] = monitors
    print(yaml.safe_dump(out, sort_keys=False, width=100), end="")
    return 0


def _config_problems(exc: _ConfigProblems) -> int:
    for err in exc.errors:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
    return 1


def _run_endpoints(args: argparse.Namespace) -> int:
    try:
        return int(args.endpoints_func(args))
    except _ConfigProblems as exc:
        return _config_problems(exc)


def _add_endpoints_group(sub: Any) -> None:
    ep = sub.add_parser("endpoints", help="Model Serving endpoints from serving_configs/*.yaml")
    ep.set_defaults(func=_run_endpoints)
    esub = ep.add_subparsers(dest="endpoints_command", required=True)

    def common(p: argparse.ArgumentParser, workspace: bool = True) -> None:
        p.add_argument("--registry-uri", default=None, help="MLflow registry (databricks-uc on a workspace)")
        if workspace:
            p.add_argument("--host", default=None, help="workspace URL (else DATABRICKS_HOST / profile)")
            p.add_argument("--profile", default=None, help="~/.databrickscfg profile")

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--poll-interval", type=_positive_float, default=5.0, help="seconds between state polls")
        p.add_argument("--timeout", type=_positive_float, default=1200.0,
                       help="give up waiting after this many seconds")

    p = esub.add_parser("validate", help="check config files (schema, and aliases/versions in the registry)")
    p.add_argument("files", nargs="+")
    p.add_argument("--offline", action="store_true", help="schema only: do not look models up in the registry")
    common(p, workspace=False)
    p.set_defaults(endpoints_func=_cmd_endpoints_validate)

    p = esub.add_parser("plan", help="show what apply would change on the workspace")
    p.add_argument("files", nargs="+")
    common(p)
    p.set_defaults(endpoints_func=_cmd_endpoints_plan)

    p = esub.add_parser("apply", help="create or update endpoints and wait until they are ready")
    p.add_argument("files", nargs="+")
    common(p)
    waiting(p)
    p.set_defaults(endpoints_func=_cmd_endpoints_apply)

    p = esub.add_parser("status", help="state, served entities, traffic and answering versions")
    p.add_argument("name")
    common(p)
    p.set_defaults(endpoints_func=_cmd_endpoints_status)

    p = esub.add_parser("promote", help="move an alias to a version and roll the endpoint (optionally canary)")
    p.add_argument("name", help="endpoint name")
    p.add_argument("--alias", required=True)
    p.add_argument("--version", required=True, type=int)
    p.add_argument("--canary", type=int, default=None, help="percent of the entity's traffic for the new version")
    p.add_argument("--hold", type=float, default=None, help="with --canary: wait this long, then cut over")
    p.add_argument("--model", default=None, help="registered model, when the endpoint serves several")
    p.add_argument("--served-entity", default=None, help="served entity to roll, when ambiguous")
    common(p)
    waiting(p)
    p.set_defaults(endpoints_func=_cmd_endpoints_promote)

    p = esub.add_parser("bundle", help="print databricks.yml's model_serving_endpoints, or --check it")
    p.add_argument("files", nargs="+")
    p.add_argument("--check", metavar="DATABRICKS_YML", default=None, help="exit 1 if the bundle is out of date")
    common(p, workspace=False)
    p.set_defaults(endpoints_func=_cmd_endpoints_bundle)


# --- `predictor rollout ...` ---------------------------------------------------------------------


def _steps(text: str) -> list[int]:
    """``10,25,50,100``, checked by the ``rollout:`` block's own rules."""
    from pydantic import ValidationError

    from ..endpoints import RolloutSpec

    try:
        return RolloutSpec(steps=[int(x) for x in text.split(",")]).steps
    except (ValueError, ValidationError) as exc:
        errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else None
        msg = str(errors[0]["msg"]).removeprefix("Value error, ") if errors else f"{text!r}: {exc}"
        raise argparse.ArgumentTypeError(msg) from None


def _duration(text: str) -> float:
    from ..endpoints import duration_seconds

    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rollout_policy(args: argparse.Namespace, spec: Any) -> Any:
    from ..endpoints import policy_of

    return policy_of(spec, steps=args.steps, interval=args.interval, deadline=args.deadline,
                     threshold=args.threshold, min_requests=args.min_requests)


def _cmd_rollout(args: argparse.Namespace) -> int:
    import signal

    from ..endpoints import (
        abort_rollout,
        get_endpoint,
        plan_rollout,
        registry_alias_setter,
        resolve,
        rollout,
        rollout_status,
        workspace_client,
    )

    what = args.what
    if what[0] in ("status", "abort"):
        if len(what) != 2:
            _usage(f"rollout {what[0]} takes one endpoint name")
        w = workspace_client(args.host, args.profile)
        if what[0] == "status":
            state = rollout_status(w, what[1])
            print(state.text() if state is not None else f"endpoint {what[1]}: no rollout recorded")
            return 0
        abort_rollout(w, what[1], poll_interval=args.poll_interval, timeout=args.timeout)
        return 0
    if len(what) != 1:
        _usage("rollout takes one config file (or: status ENDPOINT, abort ENDPOINT)")
    if not args.challenger:
        _usage("rollout CONFIG needs --challenger NAME (the served entity to roll out)")
    try:
        [cfg] = _load_configs(what)
        desired = resolve(cfg, None) if args.offline else _resolve_all([cfg], args.registry_uri)[0]
    except _ConfigProblems as exc:
        return _config_problems(exc)
    if args.endpoint:  # the same file, deployed under a target's name (e.g. iris-ab-staging)
        from dataclasses import replace

        desired = replace(desired, name=args.endpoint)
    policy = _rollout_policy(args, cfg.rollout)
    champion = cfg.rollout.champion if cfg.rollout else None
    if args.dry_run:
        active = None
        if not args.offline:
            w = workspace_client(args.host, args.profile)
            active = rollout_status(w, desired.name) if get_endpoint(w, desired.name) else None
        print("\n".join(plan_rollout(desired, args.challenger, policy, champion=champion, active=active)))
        return 0
    from ..endpoints import monitoring_evidence

    challenger = desired.entities.get(args.challenger)
    evidence = monitoring_evidence(model=challenger.entity_name if challenger else None,
                                   experiments=args.experiment or None, registry_uri=args.registry_uri)
    # CI cancels a job with SIGTERM: stop as on Ctrl-C (the state on the tags says where it stood).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        state = rollout(workspace_client(args.host, args.profile), desired, args.challenger, policy, evidence,
                        set_alias=registry_alias_setter(args.registry_uri), champion=champion, resume=args.resume,
                        out=lambda line: print(line, flush=True), poll_interval=args.poll_interval,
                        timeout=args.timeout, progress=_progress())
    finally:
        signal.signal(signal.SIGTERM, previous)
    if state.phase != "promoted":
        print(f"error: rollout of {state.challenger} {state.phase.replace('_', ' ')} ({state.reason})",
              file=sys.stderr)
        return RUNTIME
    return 0


def _usage(message: str) -> NoReturn:
    raise SystemExit(_UsageError(message))


class _UsageError(str):
    pass


def _add_rollout_group(sub: Any) -> None:
    p = sub.add_parser("rollout", help="canary rollout of a served entity, judged on monitoring evidence",
                       description="predictor rollout CONFIG.yaml --challenger NAME [--dry-run|--resume]; "
                                   "predictor rollout status ENDPOINT; predictor rollout abort ENDPOINT")
    p.add_argument("what", nargs="+", metavar="CONFIG | status ENDPOINT | abort ENDPOINT")
    p.add_argument("--challenger", default=None, help="the served entity (in CONFIG) to roll out")
    p.add_argument("--endpoint", default=None, help="endpoint name, when not the file's (a bundle target's name)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--offline", action="store_true", help="with --dry-run: do not read the endpoint")
    p.add_argument("--resume", action="store_true", help="carry on the rollout in progress (after a crash or Ctrl-C)")
    p.add_argument("--steps", type=_steps, default=None, help="challenger percentages, e.g. 10,25,50,100")
    p.add_argument("--interval", type=_duration, default=None, help="judge each step after this long (30s, 5m)")
    p.add_argument("--deadline", type=_duration, default=None, help="longest a step waits for enough samples")
    p.add_argument("--threshold", type=_positive_int, default=None, help="failed judgments that roll back")
    p.add_argument("--min-requests", type=_positive_int, default=None, help="requests each side needs per window")
    p.add_argument("--experiment", action="append", default=[],
                   help="MLflow experiment the traces are in (repeatable; default: the apps')")
    p.add_argument("--registry-uri", default=None, help="MLflow registry (databricks-uc on a workspace)")
    p.add_argument("--host", default=None, help="workspace URL (else DATABRICKS_HOST / profile)")
    p.add_argument("--profile", default=None, help="~/.databrickscfg profile")
    p.add_argument("--poll-interval", type=_positive_float, default=5.0, help="seconds between state polls")
    p.add_argument("--timeout", type=_positive_float, default=1200.0, help="longest wait for one endpoint update")
    p.set_defaults(func=_cmd_rollout)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="predictor", description="Predictions from MLflow / Model Serving models.",
                     epilog="--debug / -v anywhere: show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="register the demo models: main.default.iris and main.default.assistant")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="serve a model locally like a Model Serving endpoint")
    p.add_argument("model_uri", type=_servable_model_uri)
    p.add_argument("--name", required=True, help="endpoint name: /serving-endpoints/NAME/invocations")
    p.add_argument("--served-entity", default=None,
                   help="served-model-name header of each answer (default: <model>-<version>, as a workspace)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=5000)
    p.add_argument("--registry-uri", default=None)
    p.add_argument("--experiment", default=None,
                   help="MLflow experiment (name or id) a chat model's traces go to (default: "
                        "MLFLOW_EXPERIMENT_NAME, else the store's Default); point the app's "
                        "PREDICTOR_TRACE_EXPERIMENT at it for the Feedback page")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("schema", help="print a model's signature")
    p.add_argument("model_uri", type=_servable_model_uri)
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("predict", help="score inputs and print the result as JSON")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="Model Serving endpoint name")
    target.add_argument("--url", help="full invocations URL")
    target.add_argument("--model", type=_registered_model_uri, help="models:/ URI, scored in-process (direct mode)")
    p.add_argument("--model-uri", type=_registered_model_uri, default=None,
                   help="endpoint mode: models:/ URI to fetch the signature from")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--json", help="records (list of objects), one object, or a Model Serving payload")
    data.add_argument("--csv", help="CSV file with a header row")
    p.add_argument("--params", type=_json_object, default=None, help="inference params as a JSON object")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("batch", help="score a Parquet/CSV table on Spark into Parquet, or print ai_query SQL")
    p.add_argument("input", nargs="?", help="Parquet or CSV (with a header row)")
    p.add_argument("output", nargs="?", help="Parquet directory to write")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--endpoint", help="Model Serving endpoint name")
    target.add_argument("--url", help="full invocations URL")
    p.add_argument("--model-uri", type=_registered_model_uri, default=None,
                   help="models:/ URI: the signature, or alone: score in the executors")
    p.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    p.add_argument("--params", type=_json_object, default=None, help="inference params as a JSON object")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--sql", action="store_true", help="print the Databricks SQL ai_query statement instead")
    p.add_argument("--table", default=None, help="with --sql: the table to score")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_batch)

    _add_endpoints_group(sub)
    _add_rollout_group(sub)

    fb = sub.add_parser("feedback", help="user feedback on traced predictions").add_subparsers(
        dest="feedback_command", required=True)
    p = fb.add_parser("summary", help="per model version: predictions, share with feedback, thumbs-up rate")
    p.add_argument("--model", required=True, type=_registered_model_uri,
                   help="models:/ URI naming the registered model")
    p.add_argument("--experiment", default=None, help="MLflow experiment name or id (default: the apps')")
    p.add_argument("--max-traces", type=_positive_int, default=10_000, help="read at most this many latest traces")
    p.add_argument("--days", type=_positive_float, default=30.0, help="only traces of the last DAYS days")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_feedback_summary)

    p = sub.add_parser("monitor", help="health, drift and data quality per model version, from traces "
                                       "(exit 3 when a rule is broken)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=_registered_model_uri, help="models:/ URI naming the registered model")
    target.add_argument("--endpoint", help="endpoint name (its traces, every served entity)")
    p.add_argument("--experiment", action="append", default=None,
                   help="MLflow experiment name or id, repeatable (default: the apps')")
    p.add_argument("--days", type=_positive_float, default=7.0, help="the last DAYS days (default 7)")
    p.add_argument("--since", type=_utc_time, default=None, help="start (ISO 8601, UTC unless said)")
    p.add_argument("--until", type=_utc_time, default=None, help="end (ISO 8601; default now)")
    p.add_argument("--window", type=_window, default="1h", help="window length: 15min, 1h, 1D (default 1h)")
    p.add_argument("--by", choices=("model_version", "served_entity"), default="model_version")
    p.add_argument("--baseline", default="auto",
                   help="auto (training data, else consecutive windows), training, consecutive, a CSV/Parquet "
                        "file, or a table catalog.schema.table (read through Spark, sampled to 100,000 rows)")
    p.add_argument("--max-traces", type=_positive_int, default=10_000, help="read at most this many latest traces")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--registry-uri", default=None)
    p.set_defaults(func=_cmd_monitor)

    return parser


def _utc_time(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (2026-12-01T10:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _window(text: str) -> str:
    import pandas as pd

    try:
        pd.tseries.frequencies.to_offset(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window length such as 15min, 1h or 1D") from None
    return text


#: ``predictor monitor``'s exit status when the report breaks a rule (1 is a failure to report).
RULE_BROKEN = 3


def _cmd_monitor(args: argparse.Namespace) -> int:
    import os
    from datetime import UTC, datetime, timedelta

    from .._exceptions import ConfigurationError

    if (missing := _missing_local_store(args.registry_uri)) is not None:
        raise ConfigurationError(f"no MLflow store at {missing}: nothing traced yet")
    for key, value in _SUMMARY_HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    from ..monitoring import format_report, monitor

    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(days=args.days)
    if since >= until:
        raise ConfigurationError(f"--since {since:%Y-%m-%d %H:%M} is not before --until {until:%Y-%m-%d %H:%M}")
    baseline = None if args.baseline == "consecutive" else args.baseline
    report = monitor(args.model, endpoint=args.endpoint, experiments=args.experiment, since=since, until=until,
                     window=args.window, baseline=baseline, by=args.by, max_traces=args.max_traces,
                     registry_uri=args.registry_uri)
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    return 0 if report.ok else RULE_BROKEN


#: MLflow's HTTP client retries a dead tracking server for minutes by default; a read-only
#: command gives up sooner (a caller's own MLFLOW_HTTP_REQUEST_* settings win).
_SUMMARY_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _missing_local_store(registry_uri: str | None) -> str | None:
    """The embedded store's file when the summary would read one that does not exist (and so
    create it): a read-only command writes nothing."""
    import os
    from pathlib import Path

    from .._mlflow import resolve_registry_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or resolve_registry_uri(registry_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return None if path.exists() else str(path)
    return None


def _cmd_feedback_summary(args: argparse.Namespace) -> int:
    import os

    if (missing := _missing_local_store(args.registry_uri)) is not None:
        print(f"No MLflow store at {missing}: nothing traced yet.")
        return 0
    for key, value in _SUMMARY_HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    from ..feedback import summary_text

    print(summary_text(args.model, args.experiment, registry_uri=args.registry_uri, max_traces=args.max_traces,
                       window_days=args.days))
    return 0


#: Flags that turn one-line errors into full tracebacks, anywhere on the command line.
DEBUG_FLAGS = ("--debug", "-v", "--verbose")
USAGE, RUNTIME = 2, 1
_MAX_MESSAGE = 500


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``predictor ARGS``. A bad argument is one line and exit status 2 (usage), any failure
    while running one line and 1; ``--debug`` (or ``-v``) shows the traceback instead.

    Example::

        main(["predict", "--model", "models:/main.default.iris@champion", "--json", '[{"x": 1}]'])
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = any(a in DEBUG_FLAGS for a in argv)
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a not in DEBUG_FLAGS])
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, _UsageError):  # a usage error found after parsing: one line, exit 2
            parser.exit(USAGE, f"{parser.prog}: error: {exc.code} (see {parser.prog} --help)\n")
        raise
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        message = " ".join(str(exc).split())
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        print(f"error: {type(exc).__name__}: {message}", file=sys.stderr)
        return RUNTIME


if __name__ == "__main__":
    sys.exit(main())
