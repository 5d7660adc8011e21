"""The benchmark's JSON -> target verdicts and a markdown report."""

from __future__ import annotations


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def targets(result: dict) -> list[dict]:
    """Each target of the performance issue: the measured value and whether it is met."""
    out = []
    for size, row in result.get("training", {}).get("sizes", {}).items():
        value = row.get("ratios", {}).get("prompt_tuning / peft_prompt_tuning")
        out.append(
            {
                "target": f"prompt-tuning training throughput >= 1.5x PEFT + Seq2SeqTrainer @ {size}",
                "value": value,
                "threshold": 1.5,
                "met": value is not None and value >= 1.5,
            }
        )
    for size, row in result.get("evaluation", {}).get("sizes", {}).items():
        for arm in ("generate_recipe", "generate_label"):
            value = row.get("ratios", {}).get(f"rank speedup vs {arm}")
            tokens = row.get("arms", {}).get(arm, {}).get("max_new_tokens")
            out.append(
                {
                    "target": f"rank classification >= 3x faster than generation (max_new_tokens={tokens}) @ {size}",
                    "value": value,
                    "threshold": 3.0,
                    "met": value is not None and value >= 3.0,
                }
            )
    sizes = result.get("training", {}).get("sizes", {})
    if sizes:
        first = next(iter(sizes))
        for method in ("model_tuning", "prompt_tuning"):
            value = sizes[first].get("arms", {}).get(method, {}).get("mfu")
            out.append(
                {
                    "target": f"MFU of {method} training @ {first} >= 50% of measured matmul peak",
                    "value": value,
                    "threshold": 0.5,
                    "met": value is not None and value >= 0.5,
                }
            )
    memory = result.get("memory", {}).get("sizes", {})
    if memory:
        last = list(memory)[-1]
        for field, label in (
            ("vs_model_tuning", result["memory"]["key"].replace("_mb", "") + ", whole fit"),
            ("steady_vs_model_tuning", "above baseline, steady training"),
            ("process_vs_model_tuning", "total process RSS"),
        ):
            value = memory[last].get("prompt_tuning", {}).get(field)
            if value is not None:
                out.append(
                    {
                        "target": f"prompt-tuning peak memory <= 0.5x model tuning's @ {last} ({label})",
                        "value": value,
                        "threshold": 0.5,
                        "met": value <= 0.5,
                    }
                )
    return out


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# promptscale-bench ({meta['date']})",
        "",
        f"`{meta['command']}` on {meta['device_name']} ({meta['threads']} torch threads), torch "
        f"{meta['torch']}, transformers {meta['transformers']}, peft {meta['peft']}, lightning "
        f"{meta['lightning']}; random-weight T5 1.1 architectures, synthetic token ids; "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}. "
        "Medians of alternating repeats; ratios are medians of per-repeat pairs.",
        "",
    ]
    training = result.get("training")
    if training:
        lines += ["## Training throughput and utilisation", ""]
        rows, ratio_rows = [], []
        for size, block in training["sizes"].items():
            for arm, row in block.get("arms", {}).items():
                rows.append(
                    [
                        size,
                        arm,
                        row["runner"],
                        row.get("trainable_params"),
                        row.get("examples_per_s"),
                        row.get("tokens_per_s"),
                        (row.get("flop_per_s") or 0) / 1e9,
                        row.get("mfu"),
                    ]
                )
            for name, value in block.get("ratios", {}).items():
                ratio_rows.append([size, name, value])
            for name, why in block.get("skipped", {}).items():
                rows.append([size, name, f"skipped: {why}", None, None, None, None, None])
        first = next(iter(training["sizes"].values()))
        lines += [
            f"Batch {first.get('batch_size')}, inputs {first.get('input_range')} tokens (+ targets), "
            f"{first.get('precision')}, {first.get('warmup_steps')} warm-up + {first.get('timed_steps')} "
            f"timed steps x {first.get('repeats')} repeats. MFU = per-matmul FLOPs (padded shapes, "
            "trainable-aware backward) / the best bf16 matmul rate measured in this run "
            f"({fmt((training.get('matmul_peak_flop_per_s') or 0) / 1e9, 1)} GFLOP/s; per-size medians "
            + ", ".join(
                f"{s}: {fmt((b.get('matmul_peak', {}).get('flop_per_s') or 0) / 1e9, 1)}"
                for s, b in training["sizes"].items()
            )
            + ").",
            "",
        ]
        lines += table(["size", "arm", "runner", "trainable", "examples/s", "tokens/s", "GFLOP/s", "MFU"], rows)
        lines += [""] + table(["size", "ratio (examples/s)", "value"], ratio_rows) + [""]
    evaluation = result.get("evaluation")
    if evaluation:
        lines += ["## Evaluation: rank classification vs generation", ""]
        rows = []
        for size, block in evaluation["sizes"].items():
            for arm, row in block["arms"].items():
                speed = block["ratios"].get(f"rank speedup vs {arm}") if arm != "rank" else 1.0
                rows.append(
                    [
                        size,
                        arm,
                        row.get("examples_per_s"),
                        row.get("max_new_tokens"),
                        row.get("decoder_steps_per_batch"),
                        speed,
                    ]
                )
            lines += [
                f"{size}: {block['examples']} examples ({block['choices']} choices) of BoolQ, CB, COPA, "
                f"MultiRC, RTE, WiC in {block['batches']} batches; rank predictions agree with "
                f"the previous implementation {fmt(block['rank_agreement'].get('rank_previous'))}, "
                f"with re-encoding {fmt(block['rank_agreement'].get('rank_reencode'))}.",
                "",
            ]
        lines += table(
            ["size", "arm", "examples/s", "max_new_tokens", "decoder steps / batch", "rank speedup (x)"], rows
        )
        lines += [""]
    padding = result.get("padding")
    if padding:
        lines += [
            "## Padding: encoder tokens computed per epoch",
            "",
            f"Batch {padding['batch_size']}, SuperGLUE train sizes x {padding['scale']}, synthetic "
            f"SuperGLUE-like lengths; FLOPs = forward matmuls at {padding['flops_model']}.",
            "",
        ]
        rows = []
        for name, row in padding["settings"].items():
            rows.append(
                [
                    name,
                    row["real_tokens"],
                    row["tokens_static"],
                    row["tokens_dynamic"],
                    row["tokens_bucketed"],
                    row["efficiency_bucketed"],
                    row["ratio_static_vs_bucketed"],
                    row["ratio_dynamic_vs_bucketed"],
                    row["flops_ratio_dynamic_vs_bucketed"],
                    row["same_examples_drawn"],
                ]
            )
        lines += table(
            [
                "setting",
                "real",
                "static (512)",
                "dynamic",
                "bucketed",
                "real/bucketed",
                "static/bucketed",
                "dynamic/bucketed",
                "FLOPs dynamic/bucketed",
                "same examples",
            ],
            rows,
        )
        lines += [""]
    memory = result.get("memory")
    if memory:
        lines += ["## Peak memory (fresh subprocess per configuration)", ""]
        rows = []
        for size, block in memory["sizes"].items():
            for method, row in block.items():
                if "error" in row or "skipped" in row:
                    rows.append([size, method, row.get("error") or row.get("skipped")] + [None] * 5)
                    continue
                rows.append(
                    [
                        size,
                        method,
                        row.get("param_bytes_mb"),
                        row.get("process_peak_mb"),
                        row.get("train_peak_mb"),
                        row.get("steady_peak_mb"),
                        row.get("above_baseline_mb"),
                        row.get("steady_above_baseline_mb"),
                        row.get("cuda_max_allocated_mb"),
                        row.get("vs_model_tuning"),
                        row.get("steady_vs_model_tuning"),
                        row.get("process_vs_model_tuning"),
                    ]
                )
        lines += [
            f"RSS in MB; baseline = interpreter + libraries + data before the model ({memory.get('baseline_mb')}); "
            "fit = whole Lightning fit incl. setup; steady = training steps after the first. "
            "Ratios vs model tuning at the same size.",
            "",
        ]
        lines += table(
            [
                "size",
                "method",
                "params",
                "process peak",
                "fit peak",
                "steady peak",
                "fit above base",
                "steady above base",
                "CUDA max",
                "x MT (fit above base)",
                "x MT (steady above base)",
                "x MT (process peak)",
            ],
            rows,
        )
        growth = memory.get("growth", {})
        if growth:
            lines += [
                "",
                "Growth "
                + ", ".join(f"{m}: x{fmt(g['ratio'])}" for m, g in growth.items())
                + f" ({next(iter(growth.values()))['from']} -> {next(iter(growth.values()))['to']}).",
            ]
        lines += [""]
    lines += ["## Targets", ""]
    lines += table(["target", "value", "met"], [[t["target"], t["value"], t["met"]] for t in result["targets"]])
    return "\n".join(lines) + "\n"
