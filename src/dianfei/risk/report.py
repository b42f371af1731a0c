"""The model report (模型报告): one self-contained HTML page per trained model — held-out
ROC, calibration and lift, feature importance, drift of today's population against the training
one, and fairness: the model's error rates and the actions collections took, by region,
customer class and low-income flag. Charts are inline SVG (no CDN, no script): the page opens
on an intranet or from a file.
"""

from __future__ import annotations

import html
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dianfei.core.errors import ValidationError
from dianfei.risk.engine import MODEL_BANDS, latest_model, truncate
from dianfei.risk.features import NUMERIC, History, features, targets
from dianfei.risk.model import ArrearsModel, population_stability

if TYPE_CHECKING:
    from dianfei.db.engine import Database

W, H, PAD = 360, 260, 36


def _axes(title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
            f'aria-label="{html.escape(title)}">',
            f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{PAD}" y2="24" stroke="#333"/>']


def _xy(x: float, y: float, ymax: float = 1.0) -> tuple[float, float]:
    return (PAD + x * (W - 10 - PAD), H - PAD - (y / ymax) * (H - PAD - 24))


def line_chart(title: str, points: list[tuple[float, float]], *, diagonal: bool = True,
               xlabel: str = "", ylabel: str = "") -> str:
    parts = _axes(title)
    if diagonal:
        (x0, y0), (x1, y1) = _xy(0, 0), _xy(1, 1)
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#aaa" '
                     'stroke-dasharray="4"/>')
    if points:
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in (_xy(x, y) for x, y in points))
        parts.append(f'<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{path}"/>')
        if len(points) <= 12:
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="#c0392b"/>'
                      for a, b in (_xy(x, y) for x, y in points)]
    else:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">'
                     'undefined (one outcome only)</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{xlabel}</text>')
    parts.append(f'<text x="10" y="{H / 2}" font-size="11" '
                 f'transform="rotate(-90 10 {H / 2})">{ylabel}</text>')
    return "\n".join([*parts, "</svg>"])


def bar_chart(title: str, bars: list[tuple[str, float]], *, horizontal: bool = False) -> str:
    if not bars:
        return line_chart(title, [], diagonal=False)
    top = max(v for _, v in bars) or 1.0
    if horizontal:
        h = 24 + 18 * len(bars) + 10
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 120}" height="{h}" role="img">',
                 f'<text x="{(W + 120) / 2}" y="16" text-anchor="middle" font-size="13">'
                 f'{html.escape(title)}</text>']
        for i, (name, v) in enumerate(bars):
            y = 24 + 18 * i
            width = v / top * (W - 60)
            parts.append(f'<text x="150" y="{y + 12}" text-anchor="end" font-size="11">'
                         f'{html.escape(name)}</text>')
            parts.append(f'<rect x="155" y="{y}" width="{width:.1f}" height="14" fill="#2c7fb8"/>')
        return "\n".join([*parts, "</svg>"])
    parts = _axes(title)
    bw = (W - 10 - PAD) / len(bars)
    for i, (name, v) in enumerate(bars):
        x, top_y = PAD + i * bw + 2.0, _xy(0, v, top)[1]
        parts.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bw - 4:.1f}" '
                     f'height="{H - PAD - top_y:.1f}" fill="#2c7fb8"/>')
        parts.append(f'<text x="{x + bw / 2 - 2:.1f}" y="{H - PAD + 12}" text-anchor="middle" '
                     f'font-size="10">{html.escape(name)}</text>')
    return "\n".join([*parts, "</svg>"])


# -- fairness ------------------------------------------------------------------------------------


def held_out(history: History, model: ArrearsModel) -> pl.DataFrame:
    """The model's held-out rows again (its last validation month, outcomes judged before its
    cut-off), with the prediction: account_id, late, probability, flagged (high band) and the
    group columns."""
    meta = model.meta
    cutoff = date.fromisoformat(meta["cutoff"])
    shots = meta.get("valid_snapshots") or []
    if not shots:
        return pl.DataFrame()
    s = date.fromisoformat(shots[-1])
    until = min((s.replace(day=28) + timedelta(days=4)).replace(day=1), cutoff)
    past = truncate(history, cutoff)
    t = targets(past, s, until, known_before=cutoff).filter(pl.col("late_known"))
    f = features(past, s).join(t.select("account_id", "late"), on="account_id", how="inner")
    p = model.predict(f)
    return f.join(p, on="account_id").with_columns(
        (pl.col("probability") >= MODEL_BANDS.high_from).alias("flagged"))


def fairness(rows: pl.DataFrame, group: str, actions: pl.DataFrame | None) -> pl.DataFrame:
    """Per group: accounts, observed late rate, mean predicted, flagged (high band) rate, false
    positive rate (flagged but paid on time), false negative rate (late but not flagged), and
    collections' notices, dunning steps, visits and stops per 100 accounts."""
    g = rows.with_columns(pl.col(group).cast(pl.String).fill_null("(none)").alias("group"))
    out = g.group_by("group").agg(
        pl.len().alias("accounts"),
        pl.col("late").cast(pl.Float64).mean().alias("late_rate"),
        pl.col("probability").mean().alias("mean_predicted"),
        pl.col("flagged").cast(pl.Float64).mean().alias("flagged_rate"),
        (pl.col("flagged") & ~pl.col("late")).sum().cast(pl.Float64).alias("_fp"),
        (~pl.col("late")).sum().cast(pl.Float64).alias("_neg"),
        (~pl.col("flagged") & pl.col("late")).sum().cast(pl.Float64).alias("_fn"),
        pl.col("late").sum().cast(pl.Float64).alias("_pos"),
    ).with_columns(
        pl.when(pl.col("_neg") > 0).then(pl.col("_fp") / pl.col("_neg")).alias("false_positive_rate"),
        pl.when(pl.col("_pos") > 0).then(pl.col("_fn") / pl.col("_pos")).alias("false_negative_rate"),
    ).drop("_fp", "_neg", "_fn", "_pos")
    if actions is not None and actions.height:
        a = g.select("account_id", "group").join(actions, on="account_id", how="left").group_by(
            "group").agg([(pl.col(c).fill_null(0).sum() * 100.0 / pl.len()).alias(f"{c}_per_100")
                          for c in ("notices", "dunning_steps", "visits", "stops")
                          if c in actions.columns])
        out = out.join(a, on="group", how="left")
    return out.sort("group")


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"<td>{v:.3f}</td>" if np.isfinite(v) else "<td>–</td>")
            else:
                cells.append(f"<td>{html.escape('–' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def segments_section(check: dict[str, Any] | None) -> str:
    """The segments checked against this model (``segment_check.check_segments``) as HTML: a
    row per segment and the accounts whose rule and model disagree most."""
    if check is None:
        return "<p>No open account to check.</p>"

    def num(v: Any, fmt: str = "{:.3f}") -> str:
        return "–" if v is None else fmt.format(v)

    head = ("<tr><th>segment</th><th>accounts</th><th>mean score</th><th>sd</th><th>p10</th>"
            "<th>p90</th><th>next bill known</th><th>observed late rate</th>"
            "<th>predicted (same accounts)</th><th>top decile</th><th>bottom decile</th>"
            "<th>verdict</th><th>notes</th></tr>")
    body = []
    for s in check["segments"]:
        p, o = s["predicted"], s["outcomes"]
        body.append(
            f"<tr><td>{html.escape(s['label'])}</td><td>{s['accounts']}</td>"
            f"<td>{num(p['mean'])}</td><td>{num(p['sd'])}</td><td>{num(p['p10'])}</td>"
            f"<td>{num(p['p90'])}</td><td>{o['known']}</td><td>{num(o['rate'])}</td>"
            f"<td>{num(o['predicted_mean'])}</td><td>{s['top_decile']}</td>"
            f"<td>{s['bottom_decile']}</td><td>{html.escape(s['verdict'])}</td>"
            f"<td>{html.escape('; '.join(s['notes']))}</td></tr>")
    order = check["order"]
    d = check["disagreements"]
    listed = "".join(
        f"<tr><td>{html.escape(r['account'])}</td><td>{html.escape(r['segment'])}</td>"
        f"<td>{html.escape(r['rule'])}</td><td>{num(r['score'])}</td>"
        f"<td>{html.escape(r['decile'])}</td>"
        f"<td>{html.escape(r['model_reasons_zh'] or '–')}<br>"
        f"{html.escape(r['model_reasons_en'] or '–')}</td>"
        f"<td>{'–' if r['next_bill_late'] is None else ('late' if r['next_bill_late'] else 'paid on time')}"
        f"</td></tr>" for r in d["listed"])
    words = {True: "yes", False: "<b>no</b>", None: "unknown"}
    return (f"<p>As of {check['as_of']}: each open account's segment by the rules, its score by "
            f"this model on the history cut at that day, and its next bill (issued within "
            f"{check['next_bill']['window_days']} days) paid in full by the due date or not, "
            f"where that is known (through {check['next_bill']['outcomes_known_through']}). "
            f"Ordered on_time &lt; occasionally_late &lt; chronic by the mean score: "
            f"{words[order['predicted_ordered']]}; by the observed rate: "
            f"{words[order['observed_ordered']]}.</p>"
            + (f"<p><b>{html.escape(check['warning'])}</b></p>" if check.get("warning") else "")
            + f"<table>{head}{''.join(body)}</table>"
            f"<p>Rule and model disagree strongly (on_time in the model's top decile, chronic in "
            f"its bottom decile) on {d['total']} accounts"
            + (":" if d["listed"] else ".") + "</p>"
            + (f"<table><tr><th>account</th><th>segment</th><th>rule</th><th>score</th>"
               f"<th>decile</th><th>model's reasons</th><th>next bill</th></tr>{listed}</table>"
               if d["listed"] else ""))


def render(model: ArrearsModel, version: str, rows: pl.DataFrame, current: pl.DataFrame,
           actions: pl.DataFrame | None, as_of: date,
           segment_check: dict[str, Any] | None = None) -> str:
    meta = model.meta
    m = meta["metrics"]["late"]
    curves = meta.get("curves", {})
    roc = line_chart("ROC (held-out)", [tuple(p) for p in curves.get("roc", [])],
                     xlabel="false positive rate", ylabel="true positive rate")
    cal = line_chart("Calibration (held-out)", [(p[0], p[1]) for p in curves.get("calibration", [])],
                     xlabel="predicted", ylabel="observed")
    lift = bar_chart("Lift by decile (held-out)", [(str(d), v) for d, v in curves.get("lift", [])])
    imp = bar_chart("Feature importance (gain)", [(n, v) for n, v in meta["importance"][:15]],
                    horizontal=True)
    drift = pl.DataFrame({
        "feature": [c for c in NUMERIC if c in meta.get("reference", {})],
        "psi": [population_stability(meta["reference"][c], current[c]) if current.height else None
                for c in NUMERIC if c in meta.get("reference", {})]},
        schema={"feature": pl.String, "psi": pl.Float64}).sort("psi", descending=True, nulls_last=True)
    moved = drift.filter(pl.col("psi") >= 0.25)["feature"].to_list()
    sections = []
    for group, title in (("region_id", "region 区域"), ("customer_class", "customer class 用户类别"),
                         ("low_income", "low-income flag 低保")):
        if rows.height:
            sections.append(f"<h3>By {title}</h3>" + _table(fairness(rows, group, actions)))
    fair = "".join(sections) or "<p>No held-out rows to judge.</p>"
    metrics = _table(pl.DataFrame([{"target": k, **{x: v.get(x) for x in
                                                     ("n", "positives", "auc", "pr_auc",
                                                      "top_decile_lift", "brier_calibrated")}}
                                   for k, v in meta["metrics"].items()]))
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>欠费风险模型报告 {html.escape(version)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
.charts{{display:flex;flex-wrap:wrap;gap:16px}}</style></head><body>
<h1>欠费风险模型报告 · Arrears-risk model report</h1>
<p>Model <b>{html.escape(version)}</b>, trained on what was known before {meta['cutoff']}
(snapshots {', '.join(meta['train_snapshots'])};
held out by time: {', '.join(meta['valid_snapshots'])}).
Target: the next bill not paid in full by its due date (and by +30 days). {meta['n_train']} training
rows, {meta['n_valid']} held-out rows. Every figure below is on the held-out months, never on
training data.</p>
<h2>Held-out metrics</h2>{metrics}
<p>Held-out AUC {m.get('auc')}, PR-AUC {m.get('pr_auc')}, top-decile lift {m.get('top_decile_lift')}.</p>
<div class="charts">{roc}{cal}{lift}</div>
<h2>Feature importance</h2>{imp}
<p>Never features, whatever the data: {', '.join(meta.get('excluded', []))} — neither can ever be a
reason to escalate.</p>
<h2>Drift (population as of {as_of} against the training population)</h2>
<p>Population stability index per feature; ≥ 0.25 means the population moved: retrain.
{('Moved: ' + ', '.join(moved)) if moved else 'No feature moved that far.'}</p>
{_table(drift)}
<h2>Fairness · 公平性</h2>
<p>On the held-out month: the observed late rate, the mean predicted probability, the share put in
the high band ("flagged", probability ≥ {MODEL_BANDS.high_from}), the false positive rate (flagged
but paid on time) and false negative rate (late but not flagged); and the actions collections
took in the last year per 100 accounts (notices sent, dunning steps, collector visits, stops ordered).
Low-income status is not a model feature: a difference here comes from payment history, and
is shown so a supervisor can see it.</p>
{fair}
<h2>Segments checked against the model · 客户分类校验</h2>
{segments_section(segment_check)}
</body></html>
"""


def write_report(db: Database, as_of: date, out: Path | None, *, history: History,
                 actions: pl.DataFrame | None = None) -> Path:
    found = latest_model(db)
    if found is None:
        raise ValidationError("no trained model yet: run `dianfei risk train` first (until then the "
                              "points score is in charge and has no model to report)")
    row, model = found
    rows = held_out(history, model)
    current = features(truncate(history, as_of), as_of)
    from dianfei.risk.segment_check import LIST_TOP, Scorer, check_segments

    seg = check_segments(db, as_of, history=history,
                         scorer=Scorer("lightgbm", None, row, model), top=LIST_TOP // 2)
    text = render(model, row["version"], rows, current, actions, as_of, seg)
    path = out or Path(db.settings.data_dir) / "reports" / f"{row['version']}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


