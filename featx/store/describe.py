"""How a store describes itself to a person: `featx info`'s table and the extract summary line,
from the details FeatureStore.info() gives."""
from __future__ import annotations

from typing import Any

from featx.store.states import KEPT


def format_info(details: dict[str, Any]) -> str:
    """`featx info`'s table, from `FeatureStore.info()`."""
    config, hardware, timings = details["config"], details["hardware"], details["timings"]
    rows = [
        ("store", details["path"]),
        ("rows", f"{details['rows_done']:,} of {details['rows']:,}"
                 + ("" if details["complete"] else "  (INCOMPLETE)")),
        ("features", f"{', '.join(details['poolings'])}  dim {details['dim']}  {details['store_dtype']}"),
        ("model", config["model"]),
        ("layers", ",".join(map(str, config["layers"])) + ("  normalized" if config["normalize"] else "")),
        *([("max length", str(config["max_length"]) + _truncation_note(details))] if "max_length" in config else
          [("images", f"preprocess {config.get('preprocess')}"
                      + (f"  ({details['skipped_rows']:,} unreadable, skipped)" if details.get("skipped_rows") else
                         ""))]),
        *([(KEPT[details["states"]["kind"]], _states_note(details["states"]))] if details.get("states") else []),
        ("compute dtype", details["dtype"] + _fidelity_note(config, hardware.get("int8_fidelity"))),
        ("labels", _labels_line(details)),
        ("fingerprint", details["fingerprint"][:16]),
        ("input sha256", details["input_sha256"][:16]),
        ("created", details["created_at"]),
        ("device", f"{hardware.get('device')}  ({hardware.get('gpu') or hardware.get('cpu')})"),
    ]
    if timings.get("rows_per_s"):
        rows.append(("speed", f"{timings['rows_per_s']:,.1f} rows/s, {timings['total_s']:.1f} s in all"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _fidelity_note(config: dict[str, Any], fidelity: dict[str, Any] | None) -> str:
    """An int8 store's calibration, and its model's measured cosine to fp32 (featx.backbones.int8)."""
    if "calibration_rows" not in config:
        return ""
    note = f"  (calibrated on the input's first {config['calibration_rows']:,} rows"
    if fidelity:
        note += (f"; mean cosine {fidelity['mean_cosine']:.4f} to fp32 on them, worst {fidelity['min_cosine']:.4f}, "
                 f"floor {fidelity['floor']}")
    return note + ")"


def _states_note(states: dict[str, Any]) -> str:
    where, what = (f"layer {states['layer']}, ", "tokens") if states["kind"] == "states" else ("", "windows")
    return (f"{where}{states['tokens']:,} {what} ({states['tokens_per_row']:g} per row) x "
            f"{states['hidden']} {states['dtype']}: {states['bytes'] / 1e9:.2f} GB")


def _truncation_note(details: dict[str, Any]) -> str:
    config = details["config"]
    if config.get("long") == "chunk":
        return (f"  (longer rows embedded whole: windows sharing {config['long_stride']} tokens, "
                f"{config['long_pooling']}-pooled)")
    cut = details.get("truncated_rows")
    if cut is None:
        return "  (rows cut: not recorded by the featx that wrote this store)"
    done = details["rows_done"]
    return f"  ({cut:,} of {done:,} rows cut to it, {100 * cut / max(done, 1):.1f} %)"


def summary_line(details: dict[str, Any]) -> str:
    """One line after an extraction: rows, shape, dtype, speed, cache hits."""
    timings = details["timings"]
    rate = f", {timings['rows_per_s']:,.0f} rows/s" if timings.get("rows_per_s") else ""
    if "cache_hits" in timings:
        rate += f", {timings['cache_hits']:,} rows from the cache"
    if timings.get("cache_rejected"):
        rate += f" ({timings['cache_rejected']:,} cached rows failed their check and were embedded again)"
    cut = details.get("truncated_rows")
    if cut:
        rate += f", {cut:,} rows cut to {details['config']['max_length']} tokens"
    if details.get("skipped_rows"):
        rate += f", {details['skipped_rows']:,} unreadable rows skipped (NaN vectors, left out by heads)"
    states = details.get("states")
    if states:
        kept = f"token states of layer {states['layer']}" if states["kind"] == "states" else "window vectors"
        rate += f", {kept} kept ({states['bytes'] / 1e9:.2f} GB)"
    return (f"{details['path']}: {details['rows']:,} rows x {details['dim']} ({', '.join(details['poolings'])}), "
            f"dtype {details['dtype']}{rate}")


def _labels_line(details: dict[str, Any]) -> str:
    """Class counts; rows holding each label (multi-label); each target's mean and spread (regression)."""
    counts, task = details["label_counts"], details.get("task")
    if not counts:
        return "none"
    if task == "regression":
        return "regression: " + ", ".join(f"{name} mean {c['mean']:.3g} sd {c['std']:.3g} ({c['min']:.3g}..{c['max']:.3g})"
                                          for name, c in counts.items())
    line = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return f"multi-label (rows holding each): {line}" if task == "multi" else line
