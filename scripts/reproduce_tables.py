#!/usr/bin/env python3
"""Writes the results of scripts/reproduce_tables.sh: the three tables as Markdown, the plots'
data (drawn by scripts/plot_results.gp when gnuplot is there) and headline.json, from the runs the
shell script lists in its manifest. Standard library only; the one place these tables are
formatted.

The manifest (RUN_ROOT/manifest.tsv) has one tab-separated line per run or measurement:
table, row, seed ("-" when none), label, path (relative to the repository unless absolute), and
the command that produced it. Table "3-prep" lines are the steps table 3's rows share (pruning,
healing, the verify and bench commands).
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys

# Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", section 3 (MNIST,
# 10,000 test images): the 2 x 1200 teacher (dropout, jittered inputs), the 2 x 800 net on hard
# labels, and the same net distilled at T = 20.
HINTON_MNIST = {"teacher": 67, "scratch": 146, "distill-T20": 74}
TABLE_FILES = {"1": "table1_hinton_fmnist.md", "2": "table2_distill_kjv.md", "3": "table3_compression.md"}
CURVES_PNG = "table2_curves.png"
TRADEOFF_PNG = "table3_tradeoff.png"


def load_json(path):
    """The parsed JSON file at path, or None when it does not exist."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def spread(values):
    """Mean, sample standard deviation (0 for one value), min, max and the values themselves."""
    if not values:
        return None
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


class Context:
    def __init__(self, args):
        self.repo = args.repo
        self.mode = args.mode
        self.quick = args.mode == "quick"
        self.results = args.results
        self.plot_dir = os.path.join(os.path.dirname(args.manifest), "plots")
        self.tables = args.tables.split()
        self.eval_tokens = args.eval_tokens
        self.rounds = args.rounds
        self.threads = args.threads or os.cpu_count()
        self.report_only = args.report_only == 1
        # The wall time of the last invocation that ran the tables (a report-only one keeps it).
        timing_path = os.path.join(os.path.dirname(args.manifest), "timing.json")
        if not self.report_only:
            with open(timing_path, "w") as f:
                json.dump({"seconds": args.seconds, "tables": args.tables,
                           "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}, f)
        self.timing = load_json(timing_path)
        self.plots_wanted = args.plots == 1
        self.program = args.program
        self.lines = []
        with open(args.manifest) as f:
            for line in f:
                table, row, seed, label, path, command = line.rstrip("\n").split("\t")
                self.lines.append({"table": table, "row": row, "seed": seed, "label": label,
                                   "path": path if os.path.isabs(path) else os.path.join(self.repo, path),
                                   "rel": path, "command": command})
        self.cpu = "unknown CPU"
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                self.cpu = line.split(":", 1)[1].strip()
                break
        try:
            self.revision = subprocess.run(["git", "-C", self.repo, "rev-parse", "--short=12", "HEAD"],
                                           capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            self.revision = "unknown"
        self.missing = {}  # table ("1", "2", "3") -> the run paths it lacks

    def rows(self, table):
        """Manifest lines of a table, grouped by row in manifest order: [(row, label, [lines])]."""
        groups = {}
        for line in self.lines:
            if line["table"] == table:
                groups.setdefault(line["row"], (line["label"], []))[1].append(line)
        return [(row, label, lines) for row, (label, lines) in groups.items()]

    def one(self, table, row):
        return next((l for l in self.lines if l["table"] == table and l["row"] == row), None)

    def result(self, line):
        """A run's result.json, or None (and the run listed as missing)."""
        r = load_json(os.path.join(line["path"], "result.json"))
        if r is None:
            self.lacks(line)
        return r

    def lacks(self, line):
        self.missing.setdefault(line["table"][0], []).append(line["rel"])

    def header(self, title, script_note):
        cmd = "scripts/reproduce_tables.sh" + (" --quick" if self.quick else "")
        out = [f"# {title}\n"]
        if self.quick:
            out.append("> **Quick version** (`scripts/reproduce_tables.sh --quick`): fewer steps, seeds and "
                       "evaluation tokens than the recipes, to check the pipeline in about 15 minutes; "
                       "the numbers are not the results. What was reduced: " + script_note + "\n")
        took = ""
        if self.timing:
            seconds = self.timing["seconds"]
            ran = self.timing["tables"].split()
            took = (f" The last invocation that ran table{'s' if len(ran) > 1 else ''} {', '.join(ran)} took "
                    f"{seconds // 60} min {seconds % 60} s (runs it found finished were reused, not retrained).")
        out.append(f"Generated by `{cmd}` (do not edit by hand) with {self.program}, repository at git {self.revision}, "
                   f"{datetime.date.today().isoformat()}, on {self.cpu} with {os.cpu_count()} cores, "
                   f"{self.threads} threads.{took}\n")
        return out


def compact(command):
    """A command reduced to what distinguishes its row: the recipe and its --set overrides except
    the seed (its own column)."""
    words = shlex.split(command)
    recipe, sets = "", []
    for flag, value in zip(words, words[1:]):
        if flag == "--config":
            recipe = os.path.basename(value)
        elif flag == "--set" and not value.startswith("seed="):
            sets.append(f"--set {value}")
    return " ".join([recipe] + sets)


def run_info(path):
    """The git revision and thread count a run directory's run.json records."""
    info = load_json(os.path.join(path, "run.json"))
    if info is None or not os.path.exists(os.path.join(path, "result.json")):
        return "not run yet"
    return f"git {info.get('git_revision', '?')}, {info.get('threads', '?')} threads"


def how(command):
    """A command without its input and output paths: `quantize --method gptq --type q4_0`."""
    words, kept = shlex.split(command)[1:], []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--model", "--out"):
            skip = True
        elif word != "--no-eval":
            kept.append(word)
    return " ".join(kept)


def commands_section(ctx, table):
    out = ["\nCommands (each row's runs, with the revision that ran them):\n", "```sh"]
    for _, label, lines in ctx.rows(table):
        out.append(f"# {label}")
        for line in lines:
            out.append(f"{line['command']}   # seed {line['seed']}; {run_info(line['path'])}")
    out.append("```")
    return out


def fmt(value, digits=1):
    return "" if value is None else f"{value:,.{digits}f}"


# ---- Table 1 --------------------------------------------------------------------------------------
def table1(ctx, headline):
    rows = ctx.rows("1")
    seeds = list(dict.fromkeys(l["seed"] for _, _, lines in rows for l in lines))
    out = ctx.header("Table 1: the Hinton experiment on Fashion-MNIST",
                     f"seeds {', '.join(seeds)}; fewer steps, as the `--set train.steps` overrides say "
                     "(the recipes: teacher 6,000, students 3,000); no 2 x 30 student.")
    out.append("Test errors out of Fashion-MNIST's 10,000 test images. The teacher is an MLP 784-1200-1200-10 "
               "with dropout (`configs/recipes/teacher-fmnist.json`), the student 784-800-800-10 without "
               "regularisation, trained on hard labels (`student-fmnist-scratch.json`) or distilled from the "
               "teacher of its own seed with alpha T² KL + (1 - alpha) CE, alpha = 0.5 "
               "(`distill-fmnist.json`, T set per row). Every run of a seed shares `--set seed=N` (weight "
               "initialisation, data order, dropout). Mean, sample standard deviation (sd) and range "
               "(min-max) are over the seeds. For reference, Hinton et al. 2015 (section 3) on MNIST, a "
               "much easier task: teacher 2 x 1200 67 errors, 2 x 800 on hard labels 146, the same net "
               "distilled at T = 20 74.\n")
    out.append("| model | Hinton et al. 2015, MNIST | " + " | ".join(f"seed {s}" for s in seeds)
               + " | mean | sd | range | recipe and overrides |")
    out.append("|---|---:|" + "---:|" * len(seeds) + "---:|---:|---:|---|")
    summary = {}
    for row, label, lines in rows:
        by_seed = {}
        for line in lines:
            r = ctx.result(line)
            if r is not None:
                by_seed[line["seed"]] = int(r["test_errors"])
        s = spread([by_seed[k] for k in seeds if k in by_seed])
        summary[row] = s
        ref = HINTON_MNIST.get(row)
        ref_cell = "" if ref is None else (f"{ref} (T = 20)" if row == "distill-T20" else str(ref))
        cells = [str(by_seed.get(k, "not run")) for k in seeds]
        stat = [fmt(s["mean"]), fmt(s["sd"]), f"{s['min']}-{s['max']}"] if s else ["", "", ""]
        out.append(f"| {label} | {ref_cell} | " + " | ".join(cells) + " | " + " | ".join(stat)
                   + f" | `{compact(lines[0]['command'])}` |")
    distilled = {k: v for k, v in summary.items() if k.startswith("distill-T") and v}
    best = min(distilled, key=lambda k: distilled[k]["mean"]) if distilled else None
    teacher, scratch = summary.get("teacher"), summary.get("scratch")
    teacher_config = next((load_json(os.path.join(line["path"], "config.json"))
                           for row, _, lines in rows if row == "teacher" for line in lines), None)
    if teacher and scratch and teacher["mean"] >= scratch["mean"] and teacher_config:
        # Said from the numbers above, so that a reader does not take this table for Hinton's result.
        train, model = teacher_config["train"], teacher_config["model"]
        epochs = train["steps"] * train["batch_size"] / 60000
        out.append("")
        out.append(f"Unlike Hinton's MNIST teacher, this teacher makes more test errors ({fmt(teacher['mean'])}) "
                   f"than the student trained on hard labels ({fmt(scratch['mean'])}): it is trained for "
                   f"{epochs:g} epochs with dropout {model.get('dropout', 0):g} (input "
                   f"{model.get('input_dropout', 0):g}), far fewer than a dropout net of this size needs, so its "
                   "soft targets tell the student little beyond the labels" + (
                       f" (best distilled: {best[len('distill-'):].replace('T', 'T = ')}, "
                       f"{fmt(distilled[best]['mean'])} errors)." if best else "."))
    out += commands_section(ctx, "1")
    headline["fmnist"] = {"seeds": [int(s) for s in seeds], "test_errors_of": 10000, "rows": summary,
                          "best_temperature": float(best[len("distill-T"):]) if best else None,
                          "hinton2015_mnist": HINTON_MNIST}
    return out


# ---- Table 2 --------------------------------------------------------------------------------------
def table2(ctx, headline):
    rows = ctx.rows("2")
    out = ctx.header("Table 2: language-model distillation on KJV",
                     "fewer steps for the teacher and the students, evaluations more often on fewer "
                     "validation tokens, as the `--set` overrides say (the recipes: 300 steps, the whole "
                     "valid split); fewer seeds.")
    out.append("The teacher is teacher-s (6 blocks, dim 256, `configs/recipes/teacher-kjv.json`, seed 1234), "
               "the students student-xs (5 blocks, dim 192), every student trained for the same steps of "
               "16 sequences x 128 tokens with the same schedule. Seeds vary the students (initialisation, "
               "data order); every student distils from the one teacher. Valid ppl: mean ± sample "
               "standard deviation over the seeds, with the range (min-max); test ppl, KL and times are means. "
               "KL is KL(teacher ‖ student) per token on the valid split at T = 1. Train time is the "
               "run's `train_seconds` (wall clock of the training loop, its periodic evaluations and "
               "checkpoints included), s/step its `step_s` (training alone). Teacher "
               "TFLOP counts the teacher's forward passes during training as `model::forward_flops` "
               "computes them (`teacher_flops` in result.json); the query run asks the teacher for a "
               "quarter of the sequences. Runs reused from other benchmarks may have been trained by an "
               "earlier revision or with the machine busier; the commands list each run's revision.\n")
    out.append("| run | recipe and overrides | seeds | valid ppl | range | test ppl | KL(teacher ‖ student) "
               "| parameters | train time | s/step | teacher TFLOP |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    curves = []
    for row, label, lines in rows:
        results = [(l, ctx.result(l)) for l in lines]
        done = [(l, r) for l, r in results if r is not None]
        seeds = ", ".join(l["seed"] for l in lines)
        if not done:
            out.append(f"| {label} | `{compact(lines[0]['command'])}` | {seeds} | not run |  |  |  |  |  |  |  |")
            summary[row] = None
            continue
        mean = lambda key: statistics.mean(r[key] for _, r in done) if all(key in r for _, r in done) else None
        valid = spread([r["valid_ppl"] for _, r in done])
        model = load_json(os.path.join(done[0][0]["path"], "final", "model.json")) or {}
        params = model.get("parameters")
        tflop = mean("teacher_flops")
        if tflop is not None:
            tflop /= 1e12
        elif row == "scratch":
            tflop = 0.0
        kl = mean("valid_teacher_kl")
        minutes = mean("train_seconds") / 60
        not_run = [l["seed"] for l, r in results if r is None]
        seeds_cell = seeds + (f" (not run: {', '.join(not_run)})" if not_run else "")
        range_cell = f"{valid['min']:.2f}-{valid['max']:.2f}" if valid["n"] > 1 else ""
        valid_cell = f"{valid['mean']:.2f}" + (f" ± {valid['sd']:.2f}" if valid["n"] > 1 else "")
        out.append(f"| {label} | `{compact(lines[0]['command'])}` | {seeds_cell} | "
                   f"{valid_cell} | {range_cell} | {fmt(mean('test_ppl'), 2)} | "
                   f"{fmt(kl, 3)} | {params:,} | {minutes:.1f} min | {fmt(mean('step_s'), 3)} | "
                   f"{'—' if row == 'teacher' else fmt(tflop, 2)} |")
        summary[row] = {"label": label, "valid_ppl": valid, "test_ppl": mean("test_ppl"),
                        "valid_teacher_kl": kl, "parameters": params, "train_minutes": minutes,
                        "step_s": mean("step_s"), "teacher_tflop": None if row == "teacher" else tflop}
        curve = []
        metrics = os.path.join(done[0][0]["path"], "metrics.jsonl")
        if os.path.exists(metrics):
            for text in open(metrics):
                record = json.loads(text)
                if "valid_ppl" in record:
                    curve.append((record["step"], record["valid_ppl"]))
        if curve:
            curves.append((label if len(lines) == 1 else f"{label} (seed {done[0][0]['seed']})", curve))
    out += commands_section(ctx, "2")
    headline["kjv"] = {"rows": summary}
    return out, curves


# ---- Table 3 --------------------------------------------------------------------------------------
def median_round(path, key):
    """(median, min, max) of key over the bench rounds in path, or None."""
    values = []
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        if name.startswith("bench-round-") and name.endswith(".json"):
            values.append(load_json(os.path.join(path, name))[key])
    return (statistics.median(values), min(values), max(values), len(values)) if values else None


def table3(ctx, headline):
    rows = ctx.rows("3")
    teacher_line = ctx.one("2", "teacher")
    prune, heal = ctx.one("3-prep", "prune"), ctx.one("3-prep", "heal")
    verify, bench = ctx.one("3-prep", "verify"), ctx.one("3-prep", "bench")
    tokens = "the whole test split" if ctx.eval_tokens == 0 else f"the first {ctx.eval_tokens:,} tokens of the test split"
    out = ctx.header("Table 3: compressing the KJV teacher",
                     "the teacher is table 2's quick one, healing runs fewer steps (the recipe: 200; "
                     "see its command), "
                     f"accuracy is scored on {tokens} and speed measured in {ctx.rounds} round.")
    out.append(f"The model is the KJV teacher of table 2 (teacher-s, `{teacher_line['rel'] if teacher_line else '?'}`). "
               "Each row is a GGUF file scored in edgedistill's runtime against the float LibTorch teacher "
               f"on {tokens} in windows of 128 tokens: perplexity, its change against the float teacher's, "
               "mean KL(float teacher ‖ model) per token and top-1 agreement (`edgedistill verify`). "
               "Quantization uses `edgedistill quantize`'s defaults: 16,384 calibration tokens from the train "
               "split (seed 0), and token_embd and output kept at q8_0 for q4_0. The pruned row removes "
               "a quarter of the FFN channels and attention heads in whole GQA groups (so half of the "
               "heads), heals by distillation from the unpruned teacher (`configs/recipes/heal-kjv.json`) "
               "and is quantized with GPTQ; its KL and agreement are against the unpruned float teacher. "
               f"Speed is `edgedistill bench` (64-token prefill as one batch, 64 tokens decoded one at a time, "
               f"median of 5 runs) with {ctx.threads} threads, the models measured in turn for "
               f"{ctx.rounds} round{'s' if ctx.rounds != 1 else ''}: the median round, the rounds' range in "
               "brackets. MB = 10^6 bytes.\n")
    out.append("| model | how | parameters | GGUF MB | test ppl | vs float | KL to float | top-1 agreement "
               "| prefill tok/s | decode tok/s |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary, points = {}, []
    teacher_model = load_json(os.path.join(teacher_line["path"], "final", "model.json")) if teacher_line else None
    heal_model = load_json(os.path.join(heal["path"], "final", "model.json")) if heal else None
    for row, label, lines in rows:
        line = lines[0]
        v = load_json(os.path.join(line["path"], "verify.json"))
        if v is None:
            ctx.lacks(line)
            out.append(f"| {label} | `{how(line['command'])}` | | not run | | | | | | |")
            summary[row] = None
            continue
        m = v["metrics"]
        model = heal_model if row.startswith("pruned") else teacher_model
        params = model["parameters"] if model else None
        speed = {key: median_round(line["path"], f"{key}_tokens_per_s") for key in ("prefill", "decode")}
        cell = lambda s: "" if s is None else (f"{s[0]:,.0f}" + (f" ({s[1]:,.0f}-{s[2]:,.0f})" if s[3] > 1 else ""))
        out.append(f"| {label} | `{how(line['command'])}` | {'' if params is None else f'{params:,}'} | {m['file_mb']:.2f} | "
                   f"{m['perplexity']:.2f} | {m['ppl_increase_pct']:+.2f} % | {m['mean_kl']:.5f} | "
                   f"{100 * m['top1_agreement']:.1f} % | {cell(speed['prefill'])} | {cell(speed['decode'])} |")
        summary[row] = {"label": label, "parameters": params, "file_mb": m["file_mb"], "test_ppl": m["perplexity"],
                        "float_test_ppl": m["reference_perplexity"], "ppl_increase_pct": m["ppl_increase_pct"],
                        "mean_kl": m["mean_kl"], "top1_agreement": m["top1_agreement"],
                        "prefill_tok_s": speed["prefill"][0] if speed["prefill"] else None,
                        "decode_tok_s": speed["decode"][0] if speed["decode"] else None,
                        "eval_tokens": int(m["positions"])}
        if speed["decode"]:
            points.append((label, m["file_mb"], m["perplexity"], speed["decode"][0]))
    if prune:
        report = load_json(os.path.join(prune["path"], "prune.json"))
        if report:
            c, b = report["config"], report["config_before"]
            out.append(f"\nPruning: {b['n_heads']} -> {c['n_heads']} heads ({b['n_kv_heads']} -> {c['n_kv_heads']} "
                       f"GQA groups), FFN {b['ffn_dim']} -> {c['ffn_dim']}, {report['parameters']['before']:,} -> "
                       f"{report['parameters']['after']:,} parameters; valid perplexity "
                       f"{report['evaluation']['perplexity_before']:.2f} -> {report['evaluation']['perplexity_after']:.2f} "
                       "pruned" + (f" -> {r['valid_ppl']:.2f} healed ({r['step']} steps)."
                                   if heal and (r := ctx.result(heal)) else "."))
    out.append("\nCommands:\n")
    out.append("```sh")
    for step in (prune, heal):
        if step:
            extra = f"   # {run_info(step['path'])}" if step["row"] == "heal" else ""
            out.append(f"# {step['label']}\n{step['command']}{extra}")
    for row, label, lines in rows:
        out.append(f"# {label}\n{lines[0]['command']}")
    for step in (verify, bench):
        if step:
            out.append(f"# {step['label']}, each row's ROW/model.gguf\n{step['command']}")
    out.append("```")
    headline["compression"] = {"eval_tokens": ctx.eval_tokens or "whole test split", "speed_rounds": ctx.rounds,
                               "threads": ctx.threads, "rows": summary}
    return out, points


# ---- plots ----------------------------------------------------------------------------------------
def plot(ctx, curves, points):
    """Writes the plots' data under RUN_ROOT/plots and draws them with scripts/plot_results.gp;
    returns the PNG names drawn."""
    if not shutil.which("gnuplot"):
        print("reproduce_tables: warning: no gnuplot; the tables are written without plots", file=sys.stderr)
        return set()
    os.makedirs(ctx.plot_dir, exist_ok=True)
    quote = lambda s: '"' + s.replace('"', "'") + '"'
    # One block per series, its title first (plot_results.gp reads it with columnheader(1)).
    curves_dat = os.path.join(ctx.plot_dir, "curves.dat")
    with open(curves_dat, "w") as f:
        for label, curve in curves:
            f.write(f"{quote(label)} \"valid_ppl\"\n" + "".join(f"{s} {p}\n" for s, p in curve) + "\n\n")
    tradeoff_dat = os.path.join(ctx.plot_dir, "tradeoff.dat")
    with open(tradeoff_dat, "w") as f:
        for label, mb, ppl, decode in points:
            f.write(f"{quote(label)} \"file_mb\" \"test_ppl\" \"decode_tok_s\"\n- {mb} {ppl} {decode}\n\n\n")
    drawn = set()
    for png, data, ok in ((CURVES_PNG, curves_dat, bool(curves)), (TRADEOFF_PNG, tradeoff_dat, bool(points))):
        if not ok:
            continue
        target = os.path.join(ctx.results, png)
        variables = (f"data='{data}'; out='{target}'; chart='{png.split('_')[1].split('.')[0]}'; "
                     f"note='{'quick version' if ctx.quick else ''}'")
        result = subprocess.run(["gnuplot", "-e", variables, os.path.join(ctx.repo, "scripts", "plot_results.gp")],
                                capture_output=True, text=True)
        if result.returncode == 0 and os.path.exists(target):
            drawn.add(png)
        else:
            print(f"reproduce_tables: warning: gnuplot could not draw {png}: {result.stderr.strip()}", file=sys.stderr)
    return drawn


def key_numbers(headline):
    """The few numbers a summary quotes, flat, each null when its runs are missing: mean test
    errors (Fashion-MNIST), mean valid perplexities and the query run's teacher FLOPs against full
    distillation's (KJV), and the q4_0 files against the float one (compression)."""
    keys = {}
    fm = headline.get("fmnist", {}).get("rows", {})
    mean = lambda s: s["mean"] if s else None
    best = headline.get("fmnist", {}).get("best_temperature")
    keys["fmnist_teacher_errors"] = mean(fm.get("teacher"))
    keys["fmnist_scratch_errors"] = mean(fm.get("scratch"))
    keys["fmnist_best_temperature"] = best
    keys["fmnist_best_distilled_errors"] = mean(fm.get(f"distill-T{best:g}")) if best is not None else None
    kjv = headline.get("kjv", {}).get("rows", {})
    for row in ("teacher", "scratch", "forward-kl", "reverse-kl", "skew-kl", "hidden-contrastive", "layer-drop", "queries-25"):
        r = kjv.get(row)
        keys[f"kjv_{row.replace('-', '_')}_valid_ppl"] = r["valid_ppl"]["mean"] if r else None
    keys["kjv_teacher_parameters"] = kjv["teacher"]["parameters"] if kjv.get("teacher") else None
    student = next((r for name, r in kjv.items() if name != "teacher" and r), None)
    keys["kjv_student_parameters"] = student["parameters"] if student else None
    full, queries = kjv.get("forward-kl"), kjv.get("queries-25")
    keys["kjv_queries_25_teacher_flops_share"] = (queries["teacher_tflop"] / full["teacher_tflop"]
                                                  if full and queries and full["teacher_tflop"] else None)
    rows = headline.get("compression", {}).get("rows", {})
    fl = rows.get("float")
    for row in ("float", "q8_0", "q4_0-rtn", "q4_0-gptq", "q4_0-awq", "pruned-healed-q4_0-gptq"):
        r, name = rows.get(row), row.replace("-", "_").replace("+", "_")
        keys[f"{name}_file_mb"] = r["file_mb"] if r else None
        keys[f"{name}_test_ppl"] = r["test_ppl"] if r else None
        keys[f"{name}_ppl_increase_pct"] = r["ppl_increase_pct"] if r else None
        keys[f"{name}_decode_tok_s"] = r["decode_tok_s"] if r else None
        keys[f"{name}_decode_vs_float"] = (r["decode_tok_s"] / fl["decode_tok_s"]
                                           if r and fl and r["decode_tok_s"] and fl["decode_tok_s"] else None)
    return keys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--mode", choices=("quick", "full"), required=True)
    parser.add_argument("--tables", default="1 2 3")
    parser.add_argument("--plots", type=int, default=1)
    parser.add_argument("--eval-tokens", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--report-only", type=int, default=0)
    parser.add_argument("--program", default="edgedistill", help="the program's --version line")
    ctx = Context(parser.parse_args())
    os.makedirs(ctx.results, exist_ok=True)
    headline = {"format": "edgedistill-headline", "version": 1, "mode": ctx.mode,
                "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "git_revision": ctx.revision, "program": ctx.program, "cpu": ctx.cpu, "cores": os.cpu_count(), "threads": ctx.threads,
                "wall_seconds": ctx.timing["seconds"] if ctx.timing else None,
                "wall_seconds_tables": ctx.timing["tables"] if ctx.timing else None, "tables": {}}
    texts, curves, points = {}, [], []
    if "1" in ctx.tables:
        texts["1"] = table1(ctx, headline)
    if "2" in ctx.tables:
        texts["2"], curves = table2(ctx, headline)
    if "3" in ctx.tables:
        texts["3"], points = table3(ctx, headline)
    drawn = plot(ctx, curves, points) if ctx.plots_wanted else set()
    if CURVES_PNG in drawn:
        texts["2"] += ["\nValidation perplexity during training (each run's first seed; `metrics.jsonl`):\n",
                       f"![validation perplexity against step]({CURVES_PNG})"]
    if TRADEOFF_PNG in drawn:
        texts["3"] += ["\nPerplexity against file size and against decode speed:\n",
                       f"![perplexity against size and decode speed]({TRADEOFF_PNG})"]
    for table, lines in texts.items():
        path = os.path.join(ctx.results, TABLE_FILES[table])
        missing = sorted(set(ctx.missing.get(table, [])))
        if missing:
            lines.insert(1, f"> **Incomplete**: {len(missing)} run(s) missing: "
                            + ", ".join(f"`{m}`" for m in missing) + "\n")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        headline["tables"][table] = os.path.relpath(path, ctx.repo)
        print(f"wrote {os.path.relpath(path, ctx.repo)}")
    headline["plots"] = sorted(drawn)
    headline["missing_runs"] = sorted({m for runs in ctx.missing.values() for m in runs})
    path = os.path.join(ctx.results, "headline.json")
    # The tables not run this time keep their numbers from the last headline in the same place.
    previous = load_json(path) or {}
    for key, table in (("fmnist", "1"), ("kjv", "2"), ("compression", "3")):
        if table not in ctx.tables and key in previous and previous.get("mode") == ctx.mode:
            headline[key] = previous[key]
            headline["tables"].setdefault(table, previous.get("tables", {}).get(table))
    headline["key_numbers"] = key_numbers(headline)
    with open(path, "w") as f:
        json.dump(headline, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ctx.repo)}")


if __name__ == "__main__":
    main()
