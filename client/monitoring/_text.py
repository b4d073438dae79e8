"""A report as terminal text (``predictor monitor``), pure."""

from __future__ import annotations

from collections.abc import Sequence

from ._models import FeatureDrift, MonitorReport, VersionReport

__all__ = ["format_report"]


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    line = [indent + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    return line + [indent + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _verdict(d: FeatureDrift) -> str:
    return "n/a (few rows)" if d.drifted is None else ("DRIFTED" if d.drifted else "ok")


def _group(g: VersionReport) -> list[str]:
    who = f"version {g.model_version or '?'}" + (f" (served entity {g.served_entity})" if g.served_entity else "")
    lines = [f"{who}: {g.requests} requests, error rate {_pct(g.error_rate)}, latency p50/p95/p99 "
             f"{_num(g.latency_p50_ms, '.0f')}/{_num(g.latency_p95_ms, '.0f')}/{_num(g.latency_p99_ms, '.0f')} ms"]
    quality = {q.column_name: q for q in g.data_quality}
    rows = []
    for d in [*g.drift, *([g.prediction_drift] if g.prediction_drift else [])]:
        q = quality.get(d.column_name)
        rows.append((d.column_name, d.statistic or "-", _num(d.value), _num(d.threshold, "g"), _verdict(d),
                     _pct(q.null_share) if q else "-", _pct(q.out_of_range_share) if q else "-"))
    for name, q in quality.items():
        if not any(r[0] == name for r in rows):
            rows.append((name, "-", "-", "-", "no baseline", _pct(q.null_share), _pct(q.out_of_range_share)))
    if rows:
        lines += _table(("feature", "statistic", "value", "threshold", "drift", "nulls", "out of range"), rows)
    lab = g.labels
    parts = []
    if lab.labelled:
        parts.append(f"accuracy {_pct(lab.accuracy)}, F1 {_num(lab.f1_macro, '.2f')}" if lab.accuracy is not None
                     else f"RMSE {_num(lab.rmse)}, MAE {_num(lab.mae)}")
        parts[-1] += f" on {lab.labelled} labelled"
    if lab.votes:
        parts.append(f"thumbs-up rate {_pct(lab.thumbs_up_rate)} of {lab.votes} votes")
    if parts:
        lines.append("  quality: " + "; ".join(parts))
    lines += [f"  BROKEN {b.kind}{' ' + repr(b.column) if b.column else ''}: {b.message}" for b in g.broken]
    return lines


def format_report(r: MonitorReport) -> str:
    """The report as a text table per version, problems last; what it is based on first.

    Example::

        print(format_report(monitor("models:/main.default.iris@champion")))
    """
    m = r.meta
    lines = [
        f"{r.model or 'traces'}: {r.since:%Y-%m-%d %H:%M} to {r.until:%Y-%m-%d %H:%M} UTC in {r.window} windows, "
        f"per {r.by.replace('_', ' ')}",
        f"drift: {r.drift_type}" + (f" against {r.baseline_source} ({r.baseline_rows} rows)" if r.baseline_source
                                     else " (each group's last window against the one before)"),
        f"based on {m.predictions} predictions in {m.traces} traces; {m.dropped_traces} traces dropped, "
        f"{m.untraced_rows} rows not traced, {m.unreadable_traces} unreadable"
        + ("; older traces not read (--max-traces)" if m.truncated else ""),
    ]
    for g in r.groups:
        lines += ["", *_group(g)]
    broken = r.broken()
    lines += ["", f"{len(broken)} rule(s) broken" if broken else "no rule broken"]
    return "\n".join(lines)
