"""The benchmark's JSON -> target verdicts (issue 12's targets) and a markdown report."""

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
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def section(title: str, text: str, header: list[str] | None = None, rows: list[list] | None = None) -> list[str]:
    """A report section: its heading, one paragraph, and optionally a table."""
    return [f"## {title}", "", text, "", *(table(header, rows) + [""] if header else [])]


def target(name: str, value, threshold: float, at_most: bool = False) -> dict:
    met = value is not None and (value <= threshold if at_most else value >= threshold)
    return {"target": name, "value": value, "threshold": threshold, "met": met}


def targets(result: dict) -> list[dict]:
    """Each target of the performance issue: the measured value and whether it is met."""
    out = []
    sizes = result.get("training", {}).get("sizes", {})
    for size, row in sizes.items():
        ratios = row.get("ratios", {})
        out.append(target(f"prompt-tuning training throughput >= 1.5x PEFT + Seq2SeqTrainer @ {size}",
                          ratios.get("prompt_tuning / peft_prompt_tuning"), 1.5))  # fmt: skip
        if "lora" in row.get("arms", {}):
            out.append(target(f"LoRA training throughput >= 1.3x PEFT + Seq2SeqTrainer @ {size}",
                              ratios.get("lora / peft_lora"), 1.3))  # fmt: skip
    if sizes:
        first = next(iter(sizes))
        for method, threshold in (("model_tuning", 0.35), ("prompt_tuning", 0.45)):
            value = sizes[first].get("arms", {}).get(method, {}).get("mfu")
            out.append(target(f"MFU of {method} training @ {first} >= {threshold}", value, threshold))
    for size, row in result.get("evaluation", {}).get("sizes", {}).items():
        for pair, how in (
            ("both_protocols time / generate_stopped time", "generating 62 tokens"),
            ("both_protocols_label time / generate_stopped_label time", "stopping after the label"),
        ):
            name = f"evaluation, both protocols <= 1.2x the time of generation alone ({how}) @ {size}"
            out.append(target(name, row.get("ratios", {}).get(pair), 1.2, True))  # fmt: skip
    for shape, rows in result.get("memory", {}).get("shapes", {}).items():
        for method in ("prompt_tuning", "prompt_tuning+checkpoint"):
            value = rows.get(method, {}).get("steady_vs_model_tuning")
            if value is not None:
                name = f"{method} peak memory <= 0.5x model tuning's @ {shape} (steady training, above baseline)"
                out.append(target(name, value, 0.5, True))
    return out


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# promptscale-bench ({meta['date']})",
        "",
        f"`{meta['command']}` on {meta['device_name']} ({meta['threads']} torch threads), torch "
        f"{meta['torch']}, transformers {meta['transformers']}, peft {meta['peft']}, lightning "
        f"{meta['lightning']}; random-weight T5 1.1 architectures, synthetic token ids; {meta['precision']}; "
        f"load average (1, 5, 15 min) at start {meta['load_start']}, at end {meta['load_end']}; "
        f"{fmt(meta.get('seconds', 0) / 60, 1)} min.",
        "",
    ]
    for name, render in SECTIONS:
        if result.get(name):
            lines += render(result[name])
    lines += ["## Targets", ""]
    lines += table(["target", "value", "met"], [[t["target"], t["value"], t["met"]] for t in result["targets"]])
    return "\n".join(lines) + "\n"


def training_md(training: dict) -> list[str]:
    lines = ["## Training throughput on the recipe workload", ""]
    rows, ratio_rows, fit_rows = [], [], []
    for size, block in training["sizes"].items():
        for arm, row in block.get("arms", {}).items():
            rows.append([size, arm, row["runner"], row.get("trainable_params"), row.get("examples_per_s"),
                         row.get("cpu_examples_per_s"), row.get("tokens_per_s"), row.get("padded_input_per_step"),
                         row.get("padding_share"), (row.get("flop_per_s") or 0) / 1e9, row.get("mfu")])  # fmt: skip
        for name, value in block.get("ratios", {}).items():
            detail = block.get("ratio_details", {}).get(name, {})
            ratio_rows.append([size, name, value, detail.get("cpu_time"), detail.get("per_repeat")])
        for name, why in block.get("skipped", {}).items():
            rows.append([size, name, f"skipped: {why}"] + [None] * 8)
        if not fit_rows:
            for task, fit in block.get("lengths", {}).items():
                dev, got = fit["dev"], fit["sampled"]
                fit_rows.append([task, f"{dev['median']} / {dev['p95']} / {dev['max']}",
                                 f"{got['median']} / {got['p95']} / {got['max']}", got["cut_at_512"]])  # fmt: skip
    first = next(iter(training["sizes"].values()))
    peaks = ", ".join(
        f"{s}: {fmt((b.get('matmul_peak', {}).get('flop_per_s') or 0) / 1e9, 1)}" for s, b in training["sizes"].items()
    )
    lines += [
        f"Batch {first.get('batch_size')} (every arm), {first.get('precision')}, one step per task of "
        f"{', '.join(t for s in first.get('schedule', []) for t in s)} per pass, split over the repeats "
        f"({first.get('schedule')}), plus an untimed warm-up step per repeat; ours: the job's data module "
        f"(bucket_by_length={first.get('data_bucket_by_length')}); theirs: random examples per batch, "
        "dynamic padding. Throughput = all timed examples / all timed seconds; 'CPU' = per process CPU "
        "second (robust to other load). MFU = matmul FLOPs of the padded shapes (trainable-aware "
        "backward) / the best bf16 matmul rate measured in this run "
        f"({fmt((training.get('matmul_peak_flop_per_s') or 0) / 1e9, 1)} GFLOP/s; per-size medians {peaks}).",
        "",
    ]
    header = ["size", "arm", "runner", "trainable", "examples/s", "examples/CPU s", "tokens/s", "padded input/step",
              "padding share", "GFLOP/s", "MFU"]  # fmt: skip
    lines += table(header, rows) + [""]
    lines += table(["size", "ratio (examples/s)", "wall", "CPU time", "per repeat (wall)"], ratio_rows) + [""]
    lines += ["Input lengths, dev set (REFERENCE) vs sampled (median / 95th percentile / max tokens):", ""]
    lines += table(["task", "dev", "sampled", "share cut at 512"], fit_rows) + [""]
    return lines


def evaluation_md(evaluation: dict) -> list[str]:
    paragraphs, rows = [], []
    for size, block in evaluation["sizes"].items():
        for arm, row in block["arms"].items():
            speed = block["ratios"].get(f"rank speedup vs {arm}") if arm != "rank" else 1.0
            rows.append([size, arm, row.get("examples_per_s"), row.get("max_new_tokens"),
                         row.get("decoder_steps_per_batch"), speed])  # fmt: skip
        both = block["ratios"].get("both_protocols time / generate_stopped time")
        label = block["ratios"].get("both_protocols_label time / generate_stopped_label time")
        paragraphs.append(
            f"{size}: {block['examples']} examples ({block['choices']} choices) of BoolQ, CB, COPA, MultiRC, RTE, "
            f"WiC in {block['batches']} batches; both protocols take {fmt(both)}x the time of generation alone "
            f"when generation runs to 62 tokens, {fmt(label)}x when it stops after the label; "
            f"rank predictions agree with the combined pass {fmt(block['rank_agreement'].get('both_protocols'))} "
            f"and with re-encoding {fmt(block['rank_agreement'].get('rank_reencode'))}."
        )
    header = ["size", "arm", "examples/s", "max_new_tokens", "decoder steps / batch", "rank speedup (x)"]
    text = "\n\n".join(paragraphs)  # one paragraph per size
    return section("Evaluation: both protocols vs generation alone", text, header, rows)


def padding_md(padding: dict) -> list[str]:
    text = (
        f"Batch {padding['batch_size']}, workload lengths; mixture = training sizes x {padding['scale']}, "
        f"single tasks up to {padding.get('per_task_cap')} examples; FLOPs = forward matmuls at "
        f"{padding['flops_model']}. Per-task jobs (equal steps per task): dynamic / bucketed tokens "
        f"{fmt(padding.get('per_task_jobs', {}).get('ratio_dynamic_vs_bucketed'))}, FLOPs "
        f"{fmt(padding.get('per_task_jobs', {}).get('flops_ratio_dynamic_vs_bucketed'))}."
    )
    rows = [[name, row["real_tokens"], row["tokens_static"], row["tokens_dynamic"], row["tokens_bucketed"],
             row["efficiency_bucketed"], row["ratio_static_vs_bucketed"], row["ratio_dynamic_vs_bucketed"],
             row["flops_ratio_dynamic_vs_bucketed"], row["same_examples_drawn"]]
            for name, row in padding["settings"].items()]  # fmt: skip
    header = ["setting", "real", "static (512)", "dynamic", "bucketed", "real/bucketed", "static/bucketed",
              "dynamic/bucketed", "FLOPs dynamic/bucketed", "same examples"]  # fmt: skip
    return section("Padding: encoder tokens computed per epoch", text, header, rows)


def memory_md(memory: dict) -> list[str]:
    rows = []
    for shape, block in memory["shapes"].items():
        for method, row in block.items():
            if "error" in row or "skipped" in row:
                rows.append([shape, method, row.get("error") or row.get("skipped")] + [None] * 8)
                continue
            rows.append([shape, method, row.get("padded_input_per_step"), row.get("param_bytes_mb"),
                         row.get("process_peak_mb"), row.get("steady_peak_mb"), row.get("steady_above_baseline_mb"),
                         row.get("cuda_max_allocated_mb"), row.get("steady_vs_model_tuning"),
                         row.get("vs_model_tuning")])  # fmt: skip
    text = (
        f"RSS in MB at batch {memory['batch_size']}; baseline = interpreter + libraries + data before the model "
        f"({memory.get('baseline_mb')}); steady = the training steps after the first. Ratios vs model tuning "
        "at the same shape."
    )
    header = ["size @ task", "method", "padded input", "params", "process peak", "steady peak", "steady above base",
              "CUDA max", "x MT (steady above base)", "x MT (fit above base)"]  # fmt: skip
    return section("Peak memory (fresh subprocess per configuration)", text, header, rows)


def adafactor_md(block: dict) -> list[str]:
    seconds = block.get("seconds_per_step", {})
    return section(
        "Adafactor step",
        f"One optimizer step over all {block.get('parameters')} parameters ({block.get('tensors')} tensors) of "
        f"{block.get('size')}, {block.get('threads')} thread(s), median of {block.get('repeats')} alternating "
        "repeats: " + ", ".join(f"{k} {fmt(v, 3)} s" for k, v in seconds.items()) + f"; HF / ours "
        f"{fmt(block.get('ratio_hf_over_ours'))}x, torch (configured) / ours "
        f"{fmt(block.get('ratio_torch_over_ours'))}x.",
    )


def compile_md(block: dict) -> list[str]:
    return section(
        "torch.compile (speed.compile)",
        f"Prompt tuning @ {block.get('size')} on {block.get('tasks')}: compiling cost "
        f"{fmt(block.get('compile_seconds'), 0)} s; steady throughput compiled / eager "
        f"{fmt(block.get('steady_ratio_compiled_vs_eager'))} ({block.get('repeats')} repeats, the first compiles).",
    )


def levers_md(block: dict) -> list[str]:
    text = (
        f"{block.get('method')} @ {block.get('size')}, {block.get('precision')} defaults, steps of "
        f"{block.get('schedule')} (one per task per repeat, alternating arms). 'defaults / arm' > 1: the "
        "default is faster than the arm that switches the lever."
    )
    rows = [[name, row.get("default_instead") or "-", row.get("examples_per_s"), row.get("defaults_over_arm"),
             "; ".join(row.get("errors", [])) or "-"] for name, row in block.get("arms", {}).items()]  # fmt: skip
    return section(
        "Speed levers, one at a time", text, ["arm", "default instead", "examples/s", "defaults / arm", "errors"], rows
    )


SECTIONS = (("training", training_md), ("evaluation", evaluation_md), ("padding", padding_md),
            ("memory", memory_md), ("adafactor", adafactor_md), ("levers", levers_md),
            ("compile", compile_md))  # fmt: skip
