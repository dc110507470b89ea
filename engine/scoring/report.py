"""The leaderboard as plain text (stdout of `opsconsole score`)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:+.3f}, {value[1]:+.3f}]"


def format_table(summary: dict[str, Any]) -> str:
    head = ("variant", "config", "n", "brier", "log_loss", "BSS", "BSS 95% CI", "paired", "latest n", "tok/fc", "$/fc")
    rows = [head]
    for v in summary["variants"]:
        name = v["experiment"] + (" (ref)" if v.get("reference") else "")
        rows.append((name, v["config_hash"][:10], str(v["n"]), _f(v["brier"]), _f(v["log_loss"]),
                     _f(v["bss_vs_baseline"], 3), _ci(v["bss_ci95"]), str(v["paired_n"]),
                     str(v["latest_before_close"]["n"]), _f(v["tokens_per_forecast"], 0),
                     _f(v["cost_per_forecast"], 5)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not summary["variants"]:
        lines.append("(no resolved forecasts yet)")
    boot = summary["bootstrap"]
    lines.append("")
    lines.append(f"BSS = 1 - Brier/Brier(baseline) on markets both forecast (latest forecast before close); "
                 f"95% paired bootstrap, {boot['resamples']} resamples, seed {boot['seed']}")
    missing = summary["missing"]
    lines.append(f"scored {summary['scored']}, void {summary['void']}, pending {summary['pending']}, "
                 f"missing markets {missing['count']}, invalid {len(summary['invalid'])}, "
                 f"unchecked {summary['unchecked']}; {summary['changed_rows']} row(s) written; status {summary['status']}")
    if missing["count"]:
        ids = missing["market_ids"]
        lines.append("missing from " + summary["source"] + ": " + ", ".join(ids[:20]) + (" …" if len(ids) > 20 else ""))
    for bad in summary["invalid"][:20]:
        lines.append(f"invalid: {bad['experiment']} {bad['event_key']} market {bad['market_id']}: {bad['reason']}")
    return "\n".join(lines)
