"""A self-contained HTML report: inline SVG charts, no JavaScript, nothing fetched from a CDN."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from evals.compare import Comparison
from evals.results import CaseResult, RunReport

BAR_W = 360
ROW_H = 22
GOOD = "#2e7d32"
BAD = "#c62828"
NEUTRAL = "#1565c0"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px}h3{margin:4px 0;font-size:14px}
h2{margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.tile b{display:block;font-size:20px}.grid{display:flex;flex-wrap:wrap;gap:28px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}.pass{color:#2e7d32;font-weight:600}
.fail{color:#c62828;font-weight:600}details{border:1px solid #ddd;border-radius:6px;
margin:8px 0;padding:6px 10px}summary{cursor:pointer}pre{background:#f7f7f7;padding:6px;
white-space:pre-wrap;word-break:break-word;margin:4px 0}.msg{margin:4px 0;padding:4px 8px;
border-left:3px solid #999}.msg.human{border-color:#1565c0}.msg.ai{border-color:#2e7d32}
.msg.tool{border-color:#ef6c00}.small{color:#666;font-size:12px}
"""


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>'
    )


def bar_chart(rows: list[tuple[str, float, str]], title: str, *, maximum: float = 1.0) -> str:
    """Horizontal bars: (label, value, annotation) with values in [0, maximum]."""
    label_w = 150
    height = ROW_H * len(rows) + 10
    parts = []
    for i, (label, value, note) in enumerate(rows):
        y = i * ROW_H + 4
        width = 0 if maximum <= 0 else round(BAR_W * max(0.0, min(value, maximum)) / maximum)
        color = GOOD if value >= 0.999 * maximum else (NEUTRAL if value >= 0.5 * maximum else BAD)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{BAR_W}" height="{ROW_H - 6}" fill="#eee"/>'
            f'<rect x="{label_w}" y="{y}" width="{width}" height="{ROW_H - 6}" fill="{color}"/>'
            f'<text x="{label_w + BAR_W + 6}" y="{y + 14}" font-size="12">{escape(note)}</text>'
        )
    return _svg(label_w + BAR_W + 140, height, "".join(parts), title)


def stacked_chart(rows: list[tuple[str, int, int]], title: str) -> str:
    """Horizontal stacked bars of passed / failed counts per label."""
    label_w = 150
    most = max((p + f for _, p, f in rows), default=1) or 1
    parts = []
    for i, (label, passed, failed) in enumerate(rows):
        y = i * ROW_H + 4
        wp = round(BAR_W * passed / most)
        wf = round(BAR_W * failed / most)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{wp}" height="{ROW_H - 6}" fill="{GOOD}"/>'
            f'<rect x="{label_w + wp}" y="{y}" width="{wf}" height="{ROW_H - 6}" fill="{BAD}"/>'
            f'<text x="{label_w + wp + wf + 6}" y="{y + 14}" font-size="12">'
            f"{passed}/{passed + failed}</text>"
        )
    return _svg(label_w + BAR_W + 80, ROW_H * len(rows) + 10, "".join(parts), title)


def histogram(values: list[float], title: str, unit: str, *, bins: int = 12) -> str:
    """A histogram of `values` with axis labels (min and max) and counts over the bars."""
    width, height, pad = 460, 170, 28
    if not values:
        return _svg(width, 40, '<text x="4" y="20" font-size="12">no data</text>', title)
    low, high = min(values), max(values)
    span = high - low or (abs(high) or 1.0)
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / span * bins))] += 1
    top = max(counts)
    bar = (width - 2 * pad) / bins
    parts = [
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#999"/>'
    ]
    for i, count in enumerate(counts):
        h = 0 if top == 0 else (height - 2 * pad) * count / top
        x = pad + i * bar
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{height - pad - h:.1f}" width="{bar - 2:.1f}" '
            f'height="{h:.1f}" fill="{NEUTRAL}"><title>{count}</title></rect>'
        )
        if count:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - pad - h - 3:.1f}" '
                f'font-size="10" text-anchor="middle">{count}</text>'
            )
    parts.append(f'<text x="{pad}" y="{height - 8}" font-size="11">{_fmt(low)} {unit}</text>')
    parts.append(
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{_fmt(high)} {unit}</text>"
    )
    parts.append(
        f'<text x="{width / 2}" y="14" font-size="12" text-anchor="middle">{escape(title)}</text>'
    )
    return _svg(width, height, "".join(parts), title)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _tile(label: str, value: str) -> str:
    return f'<div class="tile"><b>{escape(value)}</b>{escape(label)}</div>'


def _json(value: Any) -> str:
    return escape(json.dumps(value, indent=1, ensure_ascii=False, default=str))


def _trace(case: CaseResult) -> str:
    parts = [f"<p><b>input</b></p><pre>{escape(case.input[:2000])}</pre>"]
    rows = "".join(
        f'<tr><td>{escape(s.name)}</td><td class="{"pass" if s.passed else "fail"}">'
        f"{'' if s.score is None else f'{s.score:.2f}'}</td><td>{escape(s.comment)}</td></tr>"
        for s in case.scores.values()
        if s.passed is not None
    )
    parts.append(f"<table><tr><th>evaluator</th><th>score</th><th>why</th></tr>{rows}</table>")
    if case.error:
        parts.append(f"<p class='fail'>error: {escape(case.error)}</p>")
    trace = case.trace
    if trace is None:
        return "".join(parts)
    if trace.response is not None:
        parts.append(f"<p><b>response</b></p><pre>{_json(trace.response)}</pre>")
    if trace.tool_calls:
        parts.append(f"<p><b>tool calls</b></p><pre>{_json(trace.tool_calls)}</pre>")
    if trace.approvals_requested:
        parts.append(
            f"<p><b>approvals requested</b></p><pre>{_json(trace.approvals_requested)}"
            f"</pre><p><b>decisions given</b></p><pre>{_json(trace.decisions)}</pre>"
        )
    if trace.refunds:
        parts.append(f"<p><b>refund rows</b></p><pre>{_json(trace.refunds)}</pre>")
    parts.append(
        f"<p class='small'>nodes: {escape(' → '.join(trace.nodes))}<br>"
        f"retrieved: {escape(', '.join(trace.retrieved))}<br>thread: "
        f"{escape(trace.thread_id)}</p><p><b>messages</b></p>"
    )
    for message in trace.messages:
        kind = escape(str(message.get("type")))
        extra = {
            k: v
            for k, v in message.items()
            if k in ("tool_calls", "invalid_tool_calls", "status", "usage")
        }
        label = kind + (f" · {escape(str(message['name']))}" if message.get("name") else "")
        details = f"<pre class='small'>{_json(extra)}</pre>" if extra else ""
        parts.append(
            f'<div class="msg {kind}"><b>{label}</b>'
            f"<pre>{escape(str(message.get('content')))}</pre>{details}</div>"
        )
    return "".join(parts)


def _comparison(comparison: Comparison, name: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(r.metric)}</td><td>{r.baseline:.4g}</td><td>{r.current:.4g}</td>"
        f"<td>{r.delta:+.4g}</td><td>{escape(r.limit)}</td>"
        f'<td class="{"fail" if r.status == "regression" else "pass"}">{r.status}</td></tr>'
        for r in comparison.rows
    )
    failing = "".join(
        f"<li>{escape(c.case_id)}: {escape(', '.join(c.failed_evaluators))}</li>"
        for c in comparison.newly_failing
    )
    verdict = (
        '<p class="fail">REGRESSION</p>'
        if comparison.regressed
        else '<p class="pass">no regression</p>'
    )
    return (
        f"<h2>Compared with {escape(name)}</h2>{verdict}<table><tr><th>metric</th>"
        f"<th>baseline</th><th>now</th><th>delta</th><th>limit</th><th></th></tr>{rows}"
        f"</table>"
        + (f"<p>Cases that passed and now fail:</p><ul>{failing}</ul>" if failing else "")
    )


def render_html(
    report: RunReport, comparison: Comparison | None = None, baseline_name: str = ""
) -> str:
    """Render the run as one HTML page."""
    run, summary = report.run, report.summary
    evaluator_rows = [
        (name, s.mean, f"{s.mean:.2f}  ({s.passed}/{s.n} pass)")
        for name, s in summary.evaluators.items()
    ]
    category_rows = [
        (cat, v["passed"], v["cases"] - v["passed"]) for cat, v in summary.by_category.items()
    ]
    costs = [c.cost_usd for c in report.cases if c.cost_usd is not None]
    tiles = "".join(
        [
            _tile("cases", str(summary.cases)),
            _tile("passed", f"{summary.passed} ({summary.pass_rate:.0%})"),
            _tile("errors", str(summary.errors)),
            _tile("wall time", f"{run.wall_s:.1f} s"),
            _tile(
                "latency p50 / p95", f"{summary.latency_s.p50:.2f} / {summary.latency_s.p95:.2f} s"
            ),
            _tile("cost per case", f"${summary.cost_usd.mean:.6f}"),
            _tile("total cost", f"${summary.cost_usd.total:.4f}"),
            _tile("tokens in / out", f"{summary.input_tokens:,} / {summary.output_tokens:,}"),
        ]
    )
    case_rows = "".join(
        f"<tr><td>{escape(c.case_id)}</td><td>{escape(c.category)}</td>"
        f'<td class="{"pass" if c.passed else "fail"}">{"pass" if c.passed else "FAIL"}</td>'
        f"<td>{escape(', '.join(c.failed_evaluators) or (c.error or ''))}</td>"
        f"<td>{c.latency_s:.2f}</td><td>{'' if c.cost_usd is None else f'{c.cost_usd:.6f}'}"
        f"</td></tr>"
        for c in report.cases
    )
    failures = "".join(
        f"<details><summary><b>{escape(c.case_id)}</b> ({escape(c.category)}): "
        f"{escape(', '.join(c.failed_evaluators) or c.error or '')}</summary>{_trace(c)}"
        f"</details>"
        for c in report.cases
        if not c.passed
    )
    charts = (
        f"<div><h3>Mean score per evaluator</h3>"
        f"{bar_chart(evaluator_rows, 'Mean score per evaluator')}</div>"
        f"<div><h3>Passed / failed per category</h3>"
        f"{stacked_chart(category_rows, 'Pass / fail per category')}</div>"
        f"<div>{histogram([c.latency_s for c in report.cases], 'Latency per case', 's')}</div>"
        f"<div>{histogram(costs, 'Cost per case', 'USD')}</div>"
    )
    compared = _comparison(comparison, baseline_name) if comparison is not None else ""
    title = f"Steward eval {run.run_id}"
    meta = (
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC · provider {run.provider} · model "
        f"{run.model} · datasets {', '.join(run.datasets)} · concurrency {run.concurrency}"
        f" · judge {'on' if run.judge else 'off'}"
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
        f"<p class='meta'>{escape(meta)}</p><div class='tiles'>{tiles}</div>{compared}"
        f"<h2>Charts</h2><div class='grid'>{charts}</div>"
        f"<h2>Failures ({summary.failed})</h2>{failures or '<p>none</p>'}"
        f"<h2>All cases</h2><table><tr><th>case</th><th>category</th><th></th>"
        f"<th>failed evaluators</th><th>latency s</th><th>cost USD</th></tr>{case_rows}</table>"
        f"<p class='small'>config: {escape(json.dumps(run.config))}</p></body></html>"
    )


__all__ = ["bar_chart", "histogram", "render_html", "stacked_chart"]
