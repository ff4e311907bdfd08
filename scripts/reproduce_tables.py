#!/usr/bin/env python3
"""Runs and writes the results tables of scripts/reproduce_tables.sh (which installs what is
missing and calls this): plans every run the tables need, runs them (resuming finished and
interrupted runs; several at once with --jobs), then writes the tables as Markdown with computed
findings, their figures (gnuplot) and docs/results/headline.json. Standard library only.

  table 1  Hinton's experiment on Fashion-MNIST
  table 2  language-model distillation on KJV: each loss and temperature
  table 3  progressive layer dropping: time to quality
  table 4  teacher queries: policies and budgets against random
  table 5  quantizing the converged KJV teacher: RTN, GPTQ and AWQ

Usage: reproduce_tables.py --repo DIR --edgedistill BIN --mode quick|full [--jobs N]
                           [--tables "1 2 3 4 5"] [--report-only] [--plots 0|1]
"""
import argparse
import datetime
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

# Student's t quantiles t(0.975, df) for 95 % two-sided intervals (any statistics table).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}
# Hinton, Vinyals & Dean 2015, section 3 (MNIST, 10,000 test images): the 2 x 1200 teacher
# (dropout, jittered inputs), the 2 x 800 net on hard labels, and that net distilled at T = 20.
HINTON_MNIST = {"teacher": 67, "scratch": 146, "distill-T20": 74}
# Where scripts/llama_cpp_build.sh puts llama.cpp's tools.
LLAMA_CPP_BIN = os.path.join(os.environ.get("EDGEDISTILL_LLAMA_CPP_BUILD_DIR")
                             or os.path.expanduser("~/.cache/edgedistill/llama.cpp-build"), "bin")
TABLE_FILES = {"1": "table1_hinton_fmnist.md", "2": "table2_distill_kjv.md", "3": "table3_layer_dropping.md",
               "4": "table4_teacher_queries.md", "5": "table5_quantization.md"}


# ---- statistics ---------------------------------------------------------------------------------
def t975(df):
    if df in T975:
        return T975[df]
    below = max(k for k in T975 if k <= df)
    return T975[below]


def interval(values):
    """Mean and 95 % t-interval of values (None for no values; the interval is None for one)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    mean = statistics.mean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "n": 1, "values": values}
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(values), "values": values}


def show(stat, digits=2, pct=False):
    """'12.34 ± 0.56' (mean ± half the interval), or '12.34' for one value, '' for none."""
    if stat is None:
        return ""
    scale = 100 if pct else 1
    text = f"{stat['mean'] * scale:,.{digits}f}"
    if stat["ci95"]:
        text += f" ± {(stat['ci95'][1] - stat['ci95'][0]) / 2 * scale:,.{digits}f}"
    return text + (" %" if pct else "")


def excludes(stat, value):
    """True when the 95 % interval lies wholly above or below value."""
    return bool(stat and stat["ci95"] and (stat["ci95"][0] > value or stat["ci95"][1] < value))


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_metrics(run_dir):
    """metrics.jsonl's records, [] when absent."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


# ---- the plan -----------------------------------------------------------------------------------
class Job:
    """One command. A training job (train/distill) runs with --run-dir DIR --resume and is done
    when DIR/result.json exists; any other job is done when its `done` file exists. `after` are
    commands run when the job itself is done (out-of-domain evaluations), each skipped when its
    output exists."""

    def __init__(self, key, table, row, seed, label, argv, out, deps=(), exclusive=False, training=True,
                 done=None, after=()):
        self.key, self.table, self.row, self.seed, self.label = key, table, row, seed, label
        self.argv, self.out, self.deps, self.exclusive = list(argv), out, list(deps), exclusive
        self.training = training
        self.done_file = os.path.join(out, "result.json") if training else done
        self.after = list(after)  # (output file, argv)

    def command(self):
        return self.argv + (["--run-dir", self.out, "--resume"] if self.training else [])

    def finished(self):
        return os.path.exists(self.done_file) and all(os.path.exists(o) for o, _ in self.after)


class Plan:
    def __init__(self, args):
        self.repo, self.mode, self.quick = args.repo, args.mode, args.mode == "quick"
        self.root = args.run_root
        self.jobs_n = args.jobs
        self.threads = args.threads or os.cpu_count()
        # Jobs that share the machine get an equal share of its cores; exclusive ones (whose time
        # is a result) run alone with all of them.
        self.shared_threads = max(1, self.threads // self.jobs_n)
        self.jobs = []
        self.recipes = os.path.join(self.repo, "configs", "recipes")
        q = self.quick
        self.fmnist_seeds = [1, 2] if q else [1, 2, 3]
        self.temps = [1, 4, 20]
        self.kjv_seeds = [1, 2] if q else [1, 2, 3]
        self.student_steps = 20 if q else 200
        self.eval_tokens = 4096 if q else 32768
        self.timed_eval_every = 10 if q else 25
        self.ood_tokens = 4096 if q else 16384
        self.budgets = [0.25] if q else [0.1, 0.25, 0.5]  # quick: one budget keeps it under 20 min
        self.policies = ["random", "entropy", "margin", "dropout_disagreement", "learned"]
        self.pld = [(0.5, 0.01), (0.5, 0.02), (0.75, 0.02)]
        self.quant_eval_tokens = 8192 if q else 32768
        self.teacher_dir, self.llama_perplexity = None, None  # set by quantization()
        self.calib_seeds = [0, 1] if q else [0, 1, 2]
        self.speed_rounds = 1 if q else 3
        self.fmnist_teacher_sets = ["--set", "train.steps=1000", "--set", "train.eval_every=250"] if q else []
        self.fmnist_student_sets = ["--set", "train.steps=500"] if q else []
        self.kjv_teacher_sets = (["--set", "train.steps=100", "--set", "train.eval_every=50",
                                  "--set", "train.checkpoint_every=50", "--set", "train.eval_tokens=16384"]
                                 if q else [])

    def rel(self, path):
        return os.path.relpath(path, self.repo) if path.startswith(self.repo + "/") else path

    def add(self, *args, **kwargs):
        job = Job(*args, **kwargs)
        self.jobs.append(job)
        return job

    def build(self, tables):
        r, root = self.recipes, self.root
        if "1" in tables:
            for s in self.fmnist_seeds:
                fm = os.path.join(root, "fmnist")
                teacher = self.add(f"fmnist/teacher-s{s}", "1", "teacher", s, "teacher 2 x 1200, dropout",
                                   ["train", "--config", f"{r}/teacher-fmnist-long.json", "--set", f"seed={s}"]
                                   + self.fmnist_teacher_sets, f"{fm}/teacher-s{s}")
                self.add(f"fmnist/scratch-s{s}", "1", "scratch", s, "student 2 x 800, hard labels",
                         ["train", "--config", f"{r}/student-fmnist-scratch.json", "--set", f"seed={s}"]
                         + self.fmnist_student_sets, f"{fm}/scratch-s{s}")
                for t in self.temps:
                    self.add(f"fmnist/distill-T{t}-s{s}", "1", f"distill-T{t}", s,
                             f"student 2 x 800, distilled at T = {t}",
                             ["distill", "--config", f"{r}/distill-fmnist.json", "--set", f"seed={s}",
                              "--set", f"distill.losses[0].temperature={t}"] + self.fmnist_student_sets
                             + ["--teacher", teacher.out], f"{fm}/distill-T{t}-s{s}", deps=[teacher.key])
        kjv_tables = {"2", "3", "4", "5"} & set(tables)
        if not kjv_tables:
            return
        kjv = os.path.join(root, "kjv")
        teacher = self.add("kjv/teacher", "2", "teacher", 1234, "teacher (teacher-s, early stopping)",
                           ["train", "--config", f"{r}/teacher-kjv-long.json"] + self.kjv_teacher_sets,
                           f"{kjv}/teacher")
        self.teacher = teacher
        ood = os.path.join(root, "ood")
        self.ood_sets = {"wordnet": f"{self.repo}/configs/data/wordnet.json",
                         "licenses": f"{self.repo}/configs/data/licenses.json"}
        for name, config in self.ood_sets.items():
            self.add(f"ood/{name}", "2", f"ood-{name}", "-", f"out-of-domain text: {name}",
                     ["data", "--config", config, "--tokenizer", teacher.out, "--out", f"{ood}/{name}"],
                     f"{ood}/{name}", deps=[teacher.key], training=False, done=f"{ood}/{name}/data.json")
        # The teacher's out-of-domain evaluations need the prepared sets, which need the teacher:
        # they run as a job of their own.
        self.add("kjv/teacher-ood", "2", "teacher-ood", "-", "teacher out-of-domain", ["--version"],
                 teacher.out, deps=[f"ood/{n}" for n in self.ood_sets], training=False,
                 done=f"{teacher.out}/result.json", after=self.ood_evals(teacher.out))
        students = {"2", "3", "4"} & set(tables)
        for s in self.kjv_seeds if students else []:
            self.kjv_students(s, kjv, teacher, tables)
        if "5" in tables:
            self.quantization(teacher)

    def ood_evals(self, run_dir):
        return [(f"{run_dir}/ood-{name}.json",
                 ["eval", "--model", run_dir, "--data", f"{self.root}/ood/{name}", "--split", "test",
                  "--max-tokens", str(self.ood_tokens), "--report", f"{run_dir}/ood-{name}.json"])
                for name in self.ood_sets]

    def student(self, table, row, seed, label, verb, recipe, sets, teacher, kjv, timed=False):
        # Untimed rows evaluate half-way (table 2's curves) and at the end; the quick ones only at the end.
        every = self.timed_eval_every if timed else self.student_steps if self.quick else self.student_steps // 2
        argv = [verb, "--config", f"{self.recipes}/{recipe}.json", "--set", f"seed={seed}",
                "--set", f"train.steps={self.student_steps}", "--set", f"train.eval_every={every}",
                "--set", f"train.eval_tokens={self.eval_tokens}", "--set", "train.checkpoint_every=100"] + sets
        if verb == "distill":
            argv += ["--teacher", teacher.out]
        out = f"{kjv}/{row}-s{seed}"
        deps = [teacher.key, "kjv/teacher-ood"]
        return self.add(f"kjv/{row}-s{seed}", table, row, seed, label, argv, out, deps=deps, exclusive=timed,
                        after=self.ood_evals(out))

    def kjv_students(self, s, kjv, teacher, tables):
        add = lambda *a, **k: self.student(*a, teacher=teacher, kjv=kjv, **k)
        add("2", "scratch", s, "student from scratch (hard labels)", "train", "student-kjv-scratch", [])
        # The forward-KL row is also table 3's baseline, so it is timed (run alone).
        add("2", "forward-kl", s, "forward KL + CE, T = 1", "distill", "distill-kjv", [], timed="3" in tables)
        if "2" in tables:
            add("2", "forward-kl-T2", s, "forward KL + CE, T = 2", "distill", "distill-kjv",
                ["--set", "distill.losses[0].temperature=2"])
            add("2", "reverse-kl", s, "reverse KL + CE", "distill", "distill-kjv-reverse-kl", [])
            add("2", "skew-kl", s, "skew KL + CE (lambda 0.1)", "distill", "distill-kjv-skew-kl", [])
            add("2", "jsd", s, "JSD (beta 0.5) + CE", "distill", "distill-kjv-jsd", [])
            add("2", "hidden", s, "forward KL + CE + hidden MSE", "distill", "distill-kjv-hidden", [])
            add("2", "attention", s, "forward KL + CE + attention relation", "distill", "distill-kjv-attention", [])
            add("2", "contrastive", s, "forward KL + CE + contrastive", "distill", "distill-kjv-contrastive", [])
        if "3" in tables:
            for theta, gamma in self.pld:
                add("3", f"pld-{theta:g}-{gamma:g}", s, f"layer dropping, theta_bar {theta:g}, gamma {gamma:g}",
                    "distill", "distill-kjv-pld",
                    ["--set", f"distill.layer_drop.theta_bar={theta}", "--set", f"distill.layer_drop.gamma={gamma}"],
                    timed=True)
        if "4" in tables:
            for budget in self.budgets:
                for policy in self.policies:
                    add("4", f"q-{policy}-{budget:g}", s, f"{policy}, {budget:.0%}", "distill", "distill-kjv-queries",
                        ["--set", f"distill.queries.policy={policy}", "--set", f"distill.queries.budget={budget}"]
                        # The probe of the gain from asking (table 4's second part) runs for the learned policy.
                        + ([] if policy == "learned" else ["--set", "distill.queries.probe_items=0"]))

    def quantization(self, teacher):
        comp = os.path.join(self.root, "quant")
        self.teacher_dir = teacher.out
        # llama.cpp's perplexity tool judges the same files on the same test text when it was built
        # here (scripts/llama_cpp_build.sh); LLAMA_TEST_TXT is the teacher's data's test split text.
        llama_perplexity = os.path.join(LLAMA_CPP_BIN, "llama-perplexity")
        self.llama_perplexity = llama_perplexity if os.access(llama_perplexity, os.X_OK) else None
        llama = lambda out: ([(f"{out}/llama-perplexity.txt",
                               [llama_perplexity, "-m", f"{out}/model.gguf", "-f", "LLAMA_TEST_TXT", "-c", "128",
                                "-b", "128", "--chunks", str(self.quant_eval_tokens // 128), "-t", "THREADS"])]
                             if self.llama_perplexity else [])
        verify = lambda out: ["verify", "--reference", teacher.out, "--model", f"{out}/model.gguf", "--split", "test",
                              "--max-tokens", str(self.quant_eval_tokens), "--no-bench",
                              "--report", f"{out}/verify.json"]
        rows = [("float", "-", "float32 (GGUF f32)", ["export", "--type", "f32", "--model", teacher.out])]
        for qtype in ("q8_0", "q4_1", "q4_0"):
            for method in ("rtn", "gptq", "awq"):
                seeds = [0] if method == "rtn" or qtype != "q4_0" else self.calib_seeds
                for seed in seeds:
                    rows.append((f"{qtype}-{method}", seed, f"{qtype} {method.upper() if method != 'rtn' else 'round-to-nearest'}",
                                 ["quantize", "--method", method, "--type", qtype, "--seed", str(seed), "--no-eval",
                                  "--model", teacher.out]))
        for row, seed, label, argv in rows:
            out = f"{comp}/{row}" + ("" if seed in ("-", 0) else f"-seed{seed}")
            threads = [] if argv[0] == "export" else ["--threads", "THREADS"]
            self.add(f"quant/{os.path.basename(out)}", "5", row, seed, label,
                     argv + ["--out", f"{out}/model.gguf"] + threads, out, deps=[teacher.key], training=False,
                     done=f"{out}/model.gguf", after=[(f"{out}/verify.json", verify(out))] + llama(out))
        # Speed: one file per type, measured alone, in turn, round after round.
        self.speed_rows = ["float", "q8_0-rtn", "q4_1-rtn", "q4_0-rtn"]
        for rnd in range(1, self.speed_rounds + 1):
            for row in self.speed_rows:
                out = f"{comp}/{row}"
                self.add(f"speed/{row}-r{rnd}", "5", f"speed-{row}", rnd, "speed",
                         ["bench", "-p", "64", "-n", "64", "-r", "5", "--json", "--model", f"{out}/model.gguf",
                          "--threads", str(self.threads)],
                         out, deps=[f"quant/{row}"] + ([f"speed/{self.speed_rows[-1]}-r{rnd - 1}"] if rnd > 1 else []),
                         exclusive=True, training=False, done=f"{out}/bench-round-{rnd}.json")


def llama_perplexity_of(path):
    """llama-perplexity's final estimate in its output file, or None."""
    if not os.path.exists(path):
        return None
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", open(path, errors="replace").read())
    return float(m.group(1)) if m else None


# ---- the runner ---------------------------------------------------------------------------------
class Runner:
    def __init__(self, plan, edgedistill, only=()):
        self.plan, self.bin, self.only = plan, edgedistill, only
        self.lock = threading.Condition()
        self.running, self.failed = {}, None
        self.timings_path = os.path.join(plan.root, "timings.json")
        self.timings = load_json(self.timings_path) or {}

    def argv(self, job, argv):
        threads = str(self.plan.threads if job.exclusive else self.plan.shared_threads)
        argv = [a.replace("THREADS", threads) for a in argv]
        if "LLAMA_TEST_TXT" in argv:
            data_dir = load_json(os.path.join(self.plan.teacher_dir, "run.json"))["data_dir"]
            argv = [os.path.join(data_dir, "corpus", "test.txt") if a == "LLAMA_TEST_TXT" else a for a in argv]
        if os.path.isabs(argv[0]):  # another program (llama.cpp's)
            return argv
        if argv[0] in ("train", "distill", "quantize", "eval", "verify") and "--threads" not in argv:
            argv += ["--threads", threads]
        return [self.bin] + argv

    def execute(self, job):
        log = os.path.join(self.plan.root, "logs", job.key.replace("/", "_") + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        started = time.time()
        steps = [] if os.path.exists(job.done_file) else [(None, job.command())]
        steps += [(out, argv) for out, argv in job.after if not os.path.exists(out)]
        status = 0
        with open(log, "a") as f:
            for out, argv in steps:
                full = self.argv(job, argv)
                f.write("$ " + " ".join(shlex.quote(a) for a in full) + "\n")
                f.flush()
                if out is None and argv[0] == "bench":  # its JSON on stdout is the done file
                    with open(job.done_file + ".partial", "w") as o:
                        status = subprocess.run(full, stdout=o, stderr=f).returncode
                    if status == 0:
                        os.replace(job.done_file + ".partial", job.done_file)
                elif out is not None and out.endswith("llama-perplexity.txt"):
                    # Its output is the file. Its asynchronous logger sometimes loses the last line
                    # (the final estimate) at exit: up to three tries.
                    for _ in range(3):
                        with open(out + ".partial", "w") as o:
                            status = subprocess.run(full, stdout=o, stderr=subprocess.STDOUT).returncode
                        if status == 0 and "Final estimate" in open(out + ".partial").read():
                            os.replace(out + ".partial", out)
                            break
                        status = status or 1
                else:
                    status = subprocess.run(full, stdout=f, stderr=subprocess.STDOUT).returncode
                if status != 0:
                    break
        seconds = time.time() - started
        with self.lock:
            del self.running[job.key]
            if status != 0:
                self.failed = (job, status, log)
            else:
                self.done.add(job.key)
                self.timings[job.key] = {"seconds": round(seconds, 1), "threads": int(
                    self.plan.threads if job.exclusive else self.plan.shared_threads),
                    "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                tmp = self.timings_path + ".partial"
                with open(tmp, "w") as f:
                    json.dump(self.timings, f, indent=1)
                os.replace(tmp, self.timings_path)
            print(f"== {'FAILED' if status else 'done'} {job.key} ({seconds:.0f} s)"
                  + (f"; log: {log}" if status else ""), flush=True)
            self.lock.notify_all()

    def run(self):
        pending = [j for j in self.plan.jobs if not j.finished()
                   and (not self.only or any(j.key.startswith(o) for o in self.only))]
        self.done = done = {j.key for j in self.plan.jobs if j.finished()}
        keys = {j.key for j in pending}
        for job in pending:
            for dep in job.deps:
                if dep not in done and dep not in keys:
                    sys.exit(f"reproduce_tables: {job.key} needs {dep}, which is neither finished nor selected by ONLY")
        total = len(pending)
        print(f"== {len(done)} of {len(self.plan.jobs)} jobs already done; running {total} "
              f"({self.plan.jobs_n} at a time, {self.plan.shared_threads} thread(s) each; timed ones alone)", flush=True)
        with self.lock:
            while (pending or self.running) and not self.failed:
                ready = next((j for j in pending if all(d in done for d in j.deps)
                              and (not j.exclusive or not self.running)
                              and not any(r.exclusive for r in self.running.values())
                              and len(self.running) < self.plan.jobs_n), None)
                if ready is None:
                    self.lock.wait(timeout=5)
                    continue
                pending.remove(ready)
                self.running[ready.key] = ready
                n = total - len(pending)
                print(f"== [{n}/{total}] {ready.key}: {self.plan.rel(' '.join(ready.command()[:3]))} ...", flush=True)
                threading.Thread(target=self.execute, args=(ready,), daemon=True).start()
            while self.running:
                self.lock.wait(timeout=5)
        if self.failed:
            job, status, log = self.failed
            sys.stderr.write(open(log).read()[-3000:])
            print(f"reproduce_tables: {job.key} failed with exit {status} (log: {log})", file=sys.stderr)
            sys.exit(status)


# ---- the tables ---------------------------------------------------------------------------------
class Report:
    def __init__(self, plan, args):
        self.plan, self.args = plan, args
        self.results = args.results
        self.by_key = {j.key: j for j in plan.jobs}
        self.missing = {}
        self.timings = load_json(os.path.join(plan.root, "timings.json")) or {}
        self.cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                        "unknown CPU")
        try:
            self.revision = subprocess.run(["git", "-C", plan.repo, "rev-parse", "--short=12", "HEAD"],
                                           capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            self.revision = "unknown"
        self.figures = {}  # table -> [(png, caption)]
        self.all_seconds = sum(t["seconds"] for t in self.timings.values())

    def jobs(self, table, row=None):
        return [j for j in self.plan.jobs if j.table == table and (row is None or j.row == row)]

    def result(self, job):
        r = load_json(job.done_file) if job.training else None
        if r is None:
            self.missing.setdefault(job.table, []).append(self.plan.rel(job.out))
        return r

    def per_seed(self, table, row, fn):
        """{seed: fn(job, result)} over the row's finished runs."""
        out = {}
        for job in self.jobs(table, row):
            r = self.result(job)
            if r is not None:
                out[job.seed] = fn(job, r)
        return out

    def header(self, table, title, reduced):
        out = [f"# {title}\n"]
        if self.plan.quick:
            out.append("> **Quick version** (`scripts/reproduce_tables.sh --quick`): " + reduced +
                       " It checks the pipeline; its numbers are not the results.\n")
        seconds = sum(t["seconds"] for k, t in self.timings.items() if self.by_key.get(k) and
                      self.by_key[k].table == table)
        out.append(f"Generated by `scripts/reproduce_tables.sh{' --quick' if self.plan.quick else ''}` (do not edit by "
                   f"hand) with {self.args.program}, repository at git {self.revision}, "
                   f"{datetime.date.today().isoformat()}, on {self.cpu} with {os.cpu_count()} cores. This table's "
                   f"runs took {seconds / 60:.1f} min in all (the sum of each run's wall time, `timings.json`); "
                   f"every run of the five tables, {self.all_seconds / 3600:.2f} h.\n")
        return out

    def commands(self, table):
        out = ["\nCommands (`--run-dir RUN --resume` and `--threads` added to training runs; RUN is "
               f"`{self.plan.rel(self.plan.root)}/...`):\n", "```sh"]
        seen = set()
        for job in self.jobs(table):
            if job.argv == ["--version"]:  # the teacher's out-of-domain evaluations, listed below
                continue
            argv = list(job.argv)
            if "THREADS" in argv:  # the runner's placeholder for the job's share of threads
                i = argv.index("THREADS")
                del argv[i - 1:i + 1]
            text = " ".join(shlex.quote(self.plan.rel(a)) for a in argv)
            if (job.row, text) in seen:
                continue
            seen.add((job.row, text))
            out.append(f"edgedistill {text}")
        if table == "2":
            out.append("# and after each KJV run, for each out-of-domain set NAME:")
            out.append(f"edgedistill eval --model RUN --data {self.plan.rel(self.plan.root)}/ood/NAME --split test "
                       f"--max-tokens {self.plan.ood_tokens} --report RUN/ood-NAME.json")
        if table == "5":
            root = self.plan.rel(self.plan.root)
            out.append("# and for each file RUN/model.gguf:")
            out.append(f"edgedistill verify --reference {root}/kjv/teacher --model RUN/model.gguf --split test "
                       f"--max-tokens {self.plan.quant_eval_tokens} --no-bench --report RUN/verify.json")
            if self.plan.llama_perplexity:
                out.append(f"llama-perplexity -m RUN/model.gguf -f DATA/corpus/test.txt -c 128 -b 128 --chunks "
                           f"{self.plan.quant_eval_tokens // 128}  # DATA: the teacher's prepared data (its run.json)")
        out.append("```")
        return out

    def figure(self, table, png, caption, script):
        """Draws png with gnuplot from `script` (a gnuplot program writing to OUT)."""
        if not self.args.plots or not shutil.which("gnuplot"):
            return
        target = os.path.join(self.results, png)
        prog = ("set terminal pngcairo noenhanced size 1100,650 font 'DejaVu Sans,11'\n"
                f"set output '{target}'\nset grid lc rgb '#dddddd'\n" + script)
        r = subprocess.run(["gnuplot"], input=prog, capture_output=True, text=True)
        if r.returncode == 0 and os.path.exists(target):
            self.figures.setdefault(table, []).append((png, caption))
        else:
            print(f"reproduce_tables: warning: gnuplot could not draw {png}: {r.stderr.strip()[:300]}", file=sys.stderr)

    @staticmethod
    def inline(rows):
        """gnuplot inline data: rows of values, terminated by 'e'."""
        return "".join(" ".join(str(v) for v in row) + "\n" for row in rows) + "e\n"

    def bars(self, table, png, title, ylabel, items, note=""):
        """A bar chart of (label, interval) items with 95 % error bars."""
        items = [(l, s) for l, s in items if s]
        if not items:
            return
        data = [(i, s["mean"], s["ci95"][0] if s["ci95"] else s["mean"], s["ci95"][1] if s["ci95"] else s["mean"])
                for i, (_, s) in enumerate(items)]
        tics = ", ".join(f'"{l}" {i}' for i, (l, _) in enumerate(items))
        self.figure(table, png, title, f"set title '{title}{note}'\nset ylabel '{ylabel}'\nset xtics ({tics}) rotate by -30\n"
                    "set style fill solid 0.5\nset boxwidth 0.6\nset bmargin 9\nunset key\nset offsets 0.5, 0.5, 0, 0\n"
                    "plot '-' using 1:2 with boxes lc rgb '#4477aa', '-' using 1:2:3:4 with yerrorbars pt 0 lc rgb 'black' lw 1.5\n"
                    + self.inline(data) + self.inline(data))

    def curves(self, table, png, title, xlabel, ylabel, series, logy=True, note=""):
        """Line plots of (label, [(x, y)]) series."""
        series = [(l, pts) for l, pts in series if pts]
        if not series:
            return
        plots = ", ".join(f"'-' using 1:2 with linespoints pointsize 0.6 lw 1.5 title '{l}'" for l, _ in series)
        self.figure(table, png, title, f"set title '{title}{note}'\nset xlabel '{xlabel}'\nset ylabel '{ylabel}'\n"
                    + ("set logscale y\n" if logy else "") + "set key below\n"
                    f"plot {plots}\n" + "".join(self.inline(pts) for _, pts in series))

    def students_note(self):
        p = self.plan
        return f"students {p.student_steps} steps, seeds {', '.join(map(str, p.kjv_seeds))}."

    def note(self):
        return " (quick version)" if self.plan.quick else ""

    # -- table 1 -----------------------------------------------------------------------------------
    def table1(self, h):
        p = self.plan
        out = self.header("1", "Table 1: the Hinton experiment on Fashion-MNIST",
                          f"seeds {', '.join(map(str, p.fmnist_seeds))}, teacher and students fewer steps "
                          "(the `--set train.steps` overrides below).")
        tc = next((load_json(f"{j.out}/config.json") for j in self.jobs("1", "teacher")
                   if os.path.exists(f"{j.out}/config.json")), None)
        how = ""
        if tc:
            t, m = tc["train"], tc["model"]
            how = (f": {t['steps']:,} steps of {t['batch_size']} images ({t['steps'] * t['batch_size'] / 55000:.0f} "
                   f"epochs) with a cosine schedule, dropout {m.get('dropout', 0):g} on hidden units and "
                   f"{m.get('input_dropout', 0):g} on inputs"
                   + (f", inputs jittered by up to {t['jitter']} pixels" if t.get("jitter") else "")
                   + (f", early stopping after {t['early_stop_patience']} evaluations without a lower valid loss"
                      if t.get("early_stop_patience") else ""))
        out.append("Test errors out of Fashion-MNIST's 10,000 test images, mean ± 95 % t-interval over seeds. The "
                   f"teacher is an MLP 784-1200-1200-10 (`teacher-fmnist-long.json`{how}); "
                   "the student 784-800-800-10 without regularisation, trained on hard labels "
                   "(`student-fmnist-scratch.json`) or distilled from the teacher of its own seed with "
                   "alpha T² KL + (1 - alpha) CE, alpha = 0.5 (`distill-fmnist.json`). Hinton et al. 2015 on "
                   "MNIST, a much easier task, for reference: teacher 67, 2 x 800 on hard labels 146, distilled at "
                   "T = 20 74.\n")
        seeds = p.fmnist_seeds
        out.append("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± 95 % CI | Hinton, MNIST | epochs |")
        out.append("|---|" + "---:|" * len(seeds) + "---:|---:|---:|")
        rows = {}
        for row in ["teacher", "scratch"] + [f"distill-T{t}" for t in p.temps]:
            jobs = self.jobs("1", row)
            if not jobs:
                continue
            errors = self.per_seed("1", row, lambda j, r: int(r["test_errors"]))
            epochs = self.per_seed("1", row, lambda j, r: r.get("best_step", r["step"]) * 100 / 55000)
            stat = interval(list(errors.values()))
            rows[row] = stat
            ep = statistics.mean(epochs.values()) if epochs else None
            out.append(f"| {jobs[0].label} | " + " | ".join(str(errors.get(s, "not run")) for s in seeds)
                       + f" | {show(stat, 0)} | {HINTON_MNIST.get(row, '')} | {f'{ep:.1f}' if ep else ''} |")
        t, sc = rows.get("teacher"), rows.get("scratch")
        kd = {k: v for k, v in rows.items() if k.startswith("distill") and v}
        best = min(kd, key=lambda k: kd[k]["mean"]) if kd else None
        findings = []
        if t and sc:
            diff = interval([a - b for a, b in zip(t["values"], sc["values"])])
            verdict = ("The teacher makes clearly fewer test errors than the hard-label student"
                       if excludes(diff, 0) and diff["mean"] < 0 else
                       "The teacher makes more test errors than the hard-label student" if excludes(diff, 0) else
                       "The teacher's lead over the hard-label student is not clear at 95 %")
            findings.append(f"{verdict} ({t['mean']:.0f} against {sc['mean']:.0f} errors; paired difference "
                            f"{show(diff, 0)}).")
            if kd:
                beaten = all(t["mean"] < v["mean"] for v in kd.values())
                findings.append("It makes fewer errors than every distilled student." if beaten else
                                "Some distilled student makes fewer errors than the teacher.")
        if best and sc:
            diff = interval([a - b for a, b in zip(kd[best]["values"], sc["values"])])
            helps = excludes(diff, 0) and diff["mean"] < 0
            findings.append(f"Distillation at {best[8:].replace('T', 'T = ')} is the best student ({kd[best]['mean']:.0f} "
                            f"errors); against hard labels it {'removes' if helps else 'changes'} "
                            f"{-diff['mean']:.0f} errors ({show(diff, 0)} per paired seed), "
                            f"{'a real effect at 95 %' if helps else 'not distinguishable from no effect at 95 %'}.")
        out += ["", "**Findings** (computed from the numbers above): " + " ".join(findings)]
        # Figures: bars with intervals, and the teachers' validation curves.
        self.bars("1", "table1_errors.png", "Fashion-MNIST test errors (mean, 95 % CI)", "test errors",
                  [(self.jobs("1", k)[0].label.replace("student ", ""), v) for k, v in rows.items()], self.note())
        curves = []
        for job in self.jobs("1", "teacher"):
            pts = [(m["step"], m["valid_errors"]) for m in read_metrics(job.out) if "valid_errors" in m and "model_step" not in m]
            curves.append((f"teacher seed {job.seed}", pts))
        self.curves("1", "table1_teacher_curve.png", "Fashion-MNIST teachers: validation errors during training",
                    "step", "validation errors (of 5,000)", curves, logy=False, note=self.note())
        out += self.commands("1")
        h["fmnist"] = {"seeds": seeds, "test_errors_of": 10000, "rows": rows, "hinton2015_mnist": HINTON_MNIST,
                       "best_kd_row": best}
        h["findings"]["fmnist"] = {"teacher_errors": t["mean"] if t else None, "scratch_errors": sc["mean"] if sc else None,
                                   "best_kd_errors": kd[best]["mean"] if best else None}
        return out, findings

    # -- KJV helpers -------------------------------------------------------------------------------
    def kjv_row(self, table, row):
        """Per-seed valid loss, valid/test ppl, OOD ppl of a KJV row."""
        def get(job, r):
            ood = {}
            for name in self.plan.ood_sets:
                rep = load_json(f"{job.out}/ood-{name}.json")
                ood[name] = rep["perplexity"] if rep else None
            return {"valid_loss": r["valid_loss"], "valid_ppl": r["valid_ppl"], "test_ppl": r.get("test_ppl"),
                    "step_s": r.get("step_s"), "train_seconds": r.get("train_seconds"),
                    "teacher_flops": r.get("teacher_flops"), "ood": ood, "result": r}
        return self.per_seed(table, row, get)

    def teacher_info(self):
        job = self.plan.teacher
        r = load_json(job.done_file)
        if r is None:
            self.missing.setdefault("2", []).append(self.plan.rel(job.out))
            return None
        ood = {n: (load_json(f"{job.out}/ood-{n}.json") or {}).get("perplexity") for n in self.plan.ood_sets}
        model = load_json(f"{job.out}/final/model.json") or {}
        return {"valid_loss": r["valid_loss"], "valid_ppl": r["valid_ppl"], "test_ppl": r.get("test_ppl"),
                "best_step": r.get("best_step"), "steps": r["step"], "stopped_early": r.get("stopped_early"),
                "ood": ood, "parameters": model.get("parameters"), "train_seconds": r.get("train_seconds")}

    def ood_cells(self, runs):
        return [show(interval([v["ood"][n] for v in runs.values() if v["ood"].get(n)]), 1) for n in self.plan.ood_sets]

    # -- table 2 -----------------------------------------------------------------------------------
    def table2(self, h):
        p = self.plan
        out = self.header("2", "Table 2: language-model distillation on KJV",
                          f"teacher 100 steps, students {p.student_steps} steps, seeds "
                          f"{', '.join(map(str, p.kjv_seeds))}, {p.eval_tokens:,} evaluation tokens.")
        teacher = self.teacher_info()
        tr = load_json(f"{p.root}/kjv/teacher/config.json") or {}
        tt = tr.get("train", {})
        out.append(f"The teacher is teacher-s (6 blocks, dim 256; `teacher-kjv-long.json`) trained up to {tt.get('steps')} steps "
                   f"of 16 x 128 tokens with early stopping on validation loss (evaluated every {tt.get('eval_every')} "
                   f"steps, patience {tt.get('early_stop_patience')} evaluations), keeping its best weights. Every student is student-xs (5 blocks, dim 192) trained for the same "
                   f"{p.student_steps} steps with the same schedule, so rows compare at equal steps; seeds vary the "
                   "students (initialisation, data order). Valid and test perplexity use the first "
                   f"{p.eval_tokens:,} tokens of each split; out-of-domain perplexity is `edgedistill eval` on "
                   f"the first {p.ood_tokens:,} test tokens of WordNet glosses (`configs/data/wordnet.json`) and "
                   "of the GNU and Apache licence texts in /usr/share/common-licenses (`configs/data/licenses.json`), "
                   "both encoded with the KJV tokenizer. Gap closed = (L_scratch - L_row) / (L_scratch - L_teacher) "
                   "on valid loss (nats), per seed against the scratch student of the same seed. "
                   "Every interval is a 95 % t-interval over seeds. Threads: the runs shared the machine, each "
                   "with its share of the threads, except the timed forward-KL baseline of table 3 (alone, all "
                   "threads), so s/step compares rows of equal threads only.\n")
        if teacher:
            out.append(f"Teacher: {teacher['parameters']:,} parameters, valid ppl {teacher['valid_ppl']:.2f}, test ppl "
                       f"{teacher['test_ppl']:.2f}, weights of step {teacher['best_step']} of {teacher['steps']} "
                       f"({'stopped early' if teacher['stopped_early'] else 'ran every step'}); out of domain: "
                       + ", ".join(f"{n} {v:.1f}" for n, v in teacher["ood"].items() if v) + ".\n")
        ood_names = list(p.ood_sets)
        out.append("| student | valid ppl | test ppl | gap closed | " + " | ".join(f"{n} ppl" for n in ood_names)
                   + " | s/step | threads |")
        out.append("|---|---:|---:|---:|" + "---:|" * len(ood_names) + "---:|---:|")
        rows, gaps = {}, {}
        scratch = self.kjv_row("2", "scratch")
        order = ["scratch", "forward-kl", "forward-kl-T2", "reverse-kl", "skew-kl", "jsd", "hidden", "attention", "contrastive"]
        for row in order:
            jobs = self.jobs("2", row)
            if not jobs:
                continue
            runs = self.kjv_row("2", row)
            valid = interval([v["valid_ppl"] for v in runs.values()])
            gap = None
            if teacher and row != "scratch":
                gap = interval([(scratch[s]["valid_loss"] - v["valid_loss"]) / (scratch[s]["valid_loss"] - teacher["valid_loss"])
                                for s, v in runs.items() if s in scratch])
                gaps[row] = gap
            rows[row] = {"label": jobs[0].label, "valid_ppl": valid, "test_ppl": interval([v["test_ppl"] for v in runs.values()]),
                         "gap_closed": gap, "ood_ppl": {n: interval([v["ood"][n] for v in runs.values() if v["ood"].get(n)])
                                                        for n in ood_names},
                         "step_s": interval([v["step_s"] for v in runs.values()])}
            out.append(f"| {jobs[0].label} | {show(valid)} | {show(rows[row]['test_ppl'])} | "
                       f"{show(gap, 0, pct=True) if gap else ('—' if row == 'scratch' else '')} | "
                       + " | ".join(self.ood_cells(runs)) + f" | {show(rows[row]['step_s'], 3)} | "
                       + ", ".join(sorted({str(self.timings[j.key]['threads']) for j in jobs if j.key in self.timings}))
                       + " |")
        findings = []
        best_student = min((r["valid_ppl"]["mean"] for r in rows.values() if r["valid_ppl"]), default=None)
        if teacher and best_student is not None:
            findings.append(f"The teacher ({teacher['valid_ppl']:.2f}) {'beats' if teacher['valid_ppl'] < best_student else 'does NOT beat'} "
                            f"every student (best {best_student:.2f}).")
        if gaps:
            best = max(gaps, key=lambda k: gaps[k]["mean"] if gaps[k] else -1e9)
            g = gaps[best]
            if g:
                findings.append(f"The most gap is closed by {rows[best]['label']} ({show(g, 0, pct=True)}), "
                                + ("more than zero at 95 %." if excludes(g, 0) and g["mean"] > 0 else "not distinguishable from zero at 95 %."))
            fkl = gaps.get("forward-kl")
            if fkl:
                beaten = [r for r, gg in gaps.items() if gg and fkl["ci95"] and gg["ci95"] and gg["ci95"][0] > fkl["ci95"][1]]
                findings.append("No loss closes clearly more of the gap than forward KL (overlapping intervals)."
                                if not beaten else "Clearly above forward KL: " + ", ".join(rows[b]["label"] for b in beaten) + ".")
        self.bars("2", "table2_gap_closed.png", "KJV: share of the scratch-to-teacher gap closed (mean, 95 % CI)",
                  "gap closed (valid loss)", [(rows[k]["label"], v) for k, v in gaps.items()], self.note())
        tcurve = [(m["step"], m["valid_ppl"]) for m in read_metrics(p.teacher.out) if "valid_ppl" in m and "model_step" not in m]
        series = [("teacher", tcurve)]
        for row in ("scratch", "forward-kl"):
            jobs = self.jobs("2", row)
            if jobs:
                series.append((f"{jobs[0].label} (seed {jobs[0].seed})",
                               [(m["step"], m["valid_ppl"]) for m in read_metrics(jobs[0].out) if "valid_ppl" in m]))
        self.curves("2", "table2_curves.png", "KJV: validation perplexity during training", "step",
                    "validation perplexity (log scale)", series, note=self.note())
        out += ["", "**Findings** (computed from the numbers above): " + " ".join(findings)]
        out += self.commands("2")
        h["kjv"] = {"teacher": teacher, "rows": rows, "student_steps": p.student_steps, "seeds": p.kjv_seeds}
        fk = gaps.get("forward-kl")
        h["findings"]["kjv"] = {"teacher_valid_ppl": teacher["valid_ppl"] if teacher else None,
                                "kd_gap_closed": {"mean": fk["mean"], "ci95": fk["ci95"]} if fk else None}
        self.student_ppls = [r["valid_ppl"]["mean"] for r in rows.values() if r["valid_ppl"]]
        return out, findings

    # -- table 3 -----------------------------------------------------------------------------------
    @staticmethod
    def time_curve(run_dir):
        """[(training seconds, valid ppl)]: evaluations placed on the training loop's own clock (the
        sum of step_s over the log windows before them, evaluation and checkpoint time left out)."""
        clock, last_step, pts = 0.0, 0, []
        for m in read_metrics(run_dir):
            if "loss" in m and "step_s" in m:
                clock += m["step_s"] * (m["step"] - last_step)
                last_step = m["step"]
            elif "valid_ppl" in m and "model_step" not in m:
                pts.append((clock, m["valid_ppl"]))
        return pts

    @staticmethod
    def time_to(pts, target):
        """Training seconds at which valid ppl first reaches target (log-linear between evaluations)."""
        prev = None
        for t, ppl in pts:
            if ppl <= target:
                if prev is None:
                    return t
                (t0, p0) = prev
                a = (math.log(p0) - math.log(target)) / (math.log(p0) - math.log(ppl))
                return t0 + a * (t - t0)
            prev = (t, ppl)
        return None

    @staticmethod
    def ppl_at(pts, seconds):
        prev = None
        for t, ppl in pts:
            if t >= seconds:
                if prev is None:
                    return ppl
                t0, p0 = prev
                a = (seconds - t0) / (t - t0) if t > t0 else 1
                return math.exp(math.log(p0) + a * (math.log(ppl) - math.log(p0)))
            prev = (t, ppl)
        return None

    def table3(self, h):
        p = self.plan
        out = self.header("3", "Table 3: progressive layer dropping, time to quality",
                          self.students_note())
        out.append("Progressive layer dropping (Zhang & He 2020) claims the same quality in less time. Every row "
                   "distils the student of table 2 from its teacher with forward KL + CE for the same steps; the "
                   "baseline is table 2's forward-KL row. These runs are timed: each ran alone on the machine with "
                   f"all {p.threads} threads, evaluating on {p.eval_tokens:,} valid tokens every "
                   f"{p.timed_eval_every} steps; time is the training loop's own clock (evaluations left out). "
                   "Target perplexity: 1.05 x the baseline's final valid perplexity (mean over seeds). "
                   "Ratios are per seed against the baseline of the same seed, mean ± 95 % t-interval.\n")
        base = self.kjv_row("2", "forward-kl")
        base_curves = {s: self.time_curve(j.out) for s, j in ((j.seed, j) for j in self.jobs("2", "forward-kl"))}
        base_final = interval([v["valid_ppl"] for v in base.values()])
        target = 1.05 * base_final["mean"] if base_final else None
        out.append("| run | valid ppl (end) | s/step | blocks run | train s | time to target / baseline's | "
                   "valid ppl at the run's end time: run / baseline |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        rows, series = {}, []
        for row in ["forward-kl"] + [f"pld-{t:g}-{g:g}" for t, g in p.pld]:
            table = "2" if row == "forward-kl" else "3"
            jobs = self.jobs(table, row)
            if not jobs:
                continue
            runs = self.kjv_row(table, row)
            curves = {j.seed: self.time_curve(j.out) for j in jobs}
            ratios, equal = [], []
            for s, v in runs.items():
                if s not in base_curves or not curves.get(s):
                    continue
                mine, theirs = self.time_to(curves[s], target), self.time_to(base_curves[s], target)
                if mine is not None and theirs:
                    ratios.append(mine / theirs)
                end = curves[s][-1][0]
                other = self.ppl_at(base_curves[s], end)
                if other:
                    equal.append(curves[s][-1][1] / other)
            share = interval([v["result"].get("pld_blocks_run_share", 1.0) for v in runs.values()])
            rows[row] = {"label": jobs[0].label, "valid_ppl": interval([v["valid_ppl"] for v in runs.values()]),
                         "step_s": interval([v["step_s"] for v in runs.values()]), "blocks_run_share": share,
                         "train_seconds": interval([v["train_seconds"] for v in runs.values()]),
                         "time_to_target_ratio": interval(ratios), "ppl_ratio_equal_time": interval(equal),
                         "reached_target": len(ratios), "runs": len(runs)}
            r = rows[row]
            reached = "" if r["reached_target"] == r["runs"] else f" ({r['runs'] - r['reached_target']} run(s) never reached it)"
            out.append(f"| {r['label']} | {show(r['valid_ppl'])} | {show(r['step_s'], 3)} | {show(share, 0, pct=True)} | "
                       f"{show(r['train_seconds'], 0)} | {show(r['time_to_target_ratio']) if row != 'forward-kl' else '1'}{reached} | "
                       f"{show(r['ppl_ratio_equal_time'], 3) if row != 'forward-kl' else '1'} |")
            if jobs and curves.get(jobs[0].seed):
                series.append((f"{r['label']} (seed {jobs[0].seed})", curves[jobs[0].seed]))
        findings = []
        if target:
            out.insert(len(out) - len(rows) - 2, f"Target: valid ppl {target:.2f}.\n")
        pld = {k: v for k, v in rows.items() if k != "forward-kl"}
        # Only a setting that reached the target in every seed can be said to reach it sooner.
        complete = {k: v for k, v in pld.items() if v["time_to_target_ratio"] and v["reached_target"] == v["runs"]}
        best = min(complete, key=lambda k: complete[k]["time_to_target_ratio"]["mean"]) if complete else None
        if pld and not complete:
            findings.append("No layer-dropping setting reached the target perplexity in every seed within the "
                            "baseline's steps, so none reaches that quality sooner: the claim does not reproduce here.")
        b = rows.get("forward-kl")
        if best and pld[best]["time_to_target_ratio"]:
            r = pld[best]["time_to_target_ratio"]
            wins = excludes(r, 1) and r["mean"] < 1
            findings.append(f"The best setting ({pld[best]['label']}) reaches the target in {show(r)} of the baseline's time: "
                            + ("layer dropping wins on time to quality here." if wins else
                               "not faster than the baseline at 95 %, so the claim does not reproduce here."))
        if b and pld:
            for k, v in pld.items():
                if v["step_s"] and b["step_s"] and v["blocks_run_share"]:
                    skipped = 1 - v["blocks_run_share"]["mean"]
                    saved = 1 - v["step_s"]["mean"] / b["step_s"]["mean"]
                    findings.append(f"{v['label']}: {skipped:.0%} of block passes skipped save {saved:.0%} of step time "
                                    f"and end at {v['valid_ppl']['mean']:.2f} ppl against {b['valid_ppl']['mean']:.2f}.")
                    break
        self.curves("3", "table3_time_to_quality.png", "KJV: validation perplexity against training time",
                    "training seconds", "validation perplexity (log scale)", series, note=self.note())
        out += ["", "**Findings** (computed from the numbers above): " + " ".join(findings)]
        out += self.commands("3")
        self.student_ppls += [r["valid_ppl"]["mean"] for k, r in rows.items() if k != "forward-kl" and r["valid_ppl"]]
        h["pld"] = {"target_ppl": target, "rows": rows}
        h["findings"]["pld"] = {"time_to_target_ratio": pld[best]["time_to_target_ratio"]["mean"]
                                if best and pld[best]["time_to_target_ratio"] else None, "best_setting": best}
        return out, findings

    # -- table 4 -----------------------------------------------------------------------------------
    def table4(self, h):
        p = self.plan
        out = self.header("4", "Table 4: teacher queries, policies and budgets",
                          self.students_note())
        out.append("Each run distils the student with forward KL + CE on the sequences its policy sends to the teacher "
                   "(a share of every batch = the budget) and hard-label CE on the rest (`distill-kjv-queries.json`). "
                   "Ratio: the run's valid ppl over random's at the same budget and seed (below 1: better than "
                   "random), mean ± 95 % t-interval. The claim that comes with querying on ambiguous inputs is "
                   "robustness out of distribution, so the out-of-domain perplexities stand beside.\n")
        ood_names = list(p.ood_sets)
        out.append("| budget | policy | valid ppl | vs random | " + " | ".join(f"{n} ppl" for n in ood_names)
                   + " | " + " | ".join(f"{n} vs random" for n in ood_names) + " |")
        out.append("|---:|---|---:|---:|" + "---:|" * (2 * len(ood_names)))
        rows, series = {}, {}
        for budget in p.budgets:
            rand = self.kjv_row("4", f"q-random-{budget:g}")
            for policy in p.policies:
                row = f"q-{policy}-{budget:g}"
                runs = self.kjv_row("4", row)
                ratio = interval([v["valid_ppl"] / rand[s]["valid_ppl"] for s, v in runs.items() if s in rand])
                ood_ratio = {n: interval([v["ood"][n] / rand[s]["ood"][n] for s, v in runs.items()
                                          if s in rand and v["ood"].get(n) and rand[s]["ood"].get(n)]) for n in ood_names}
                valid = interval([v["valid_ppl"] for v in runs.values()])
                rows[row] = {"policy": policy, "budget": budget, "valid_ppl": valid, "vs_random": ratio,
                             "ood_ppl": {n: interval([v["ood"][n] for v in runs.values() if v["ood"].get(n)]) for n in ood_names},
                             "ood_vs_random": ood_ratio}
                out.append(f"| {budget:.0%} | {policy} | {show(valid)} | {'1' if policy == 'random' else show(ratio, 3)} | "
                           + " | ".join(self.ood_cells(runs)) + " | "
                           + " | ".join('1' if policy == 'random' else show(ood_ratio[n], 3) for n in ood_names) + " |")
                if valid:
                    series.setdefault(policy, []).append((budget * 100, valid["mean"]))
        findings = []
        winners = [(k, v) for k, v in rows.items() if v["policy"] != "random" and v["vs_random"]
                   and excludes(v["vs_random"], 1) and v["vs_random"]["mean"] < 1]
        findings.append("No policy beats random at any budget (every interval of the ratio reaches 1)." if not winners else
                        "Better than random at 95 %: " + ", ".join(f"{v['policy']} at {v['budget']:.0%} ({show(v['vs_random'], 3)})"
                                                                   for k, v in winners) + ".")
        ood_winners = [(k, v) for k, v in rows.items() if v["policy"] != "random" and any(
            r and excludes(r, 1) and r["mean"] < 1 for r in v["ood_vs_random"].values())]
        findings.append("Out of domain, no policy is more robust than random: the claim does not hold here." if not ood_winners else
                        "More robust out of domain than random at 95 %: " + ", ".join(
                            f"{v['policy']} at {v['budget']:.0%}" for k, v in ood_winners) + ".")
        at25 = {k: v for k, v in rows.items() if v["budget"] == 0.25 and v["policy"] != "random" and v["vs_random"]}
        best25 = min(at25, key=lambda k: at25[k]["vs_random"]["mean"]) if at25 else None
        self.curves("4", "table4_budgets.png", "KJV: valid perplexity against teacher budget", "budget (% of sequences)",
                    "valid perplexity", list(series.items()), logy=False, note=self.note())
        out += self.query_gain_section(rows, findings)
        out += ["", "**Findings** (computed from the numbers above): " + " ".join(findings)]
        out += self.commands("4")
        h["queries"] = {"rows": rows}
        h["findings"]["queries"] = {"best_policy_vs_random_ppl_ratio": at25[best25]["vs_random"]["mean"] if best25 else None,
                                    "best_policy_at_25": rows[best25]["policy"] if best25 else None}
        self.student_ppls += [r["valid_ppl"]["mean"] for r in rows.values() if r["valid_ppl"]]
        return out, findings

    ARMS = ["entropy/top", "margin/top", "random/top", "entropy/middle", "margin/middle"]

    def query_gain_section(self, rows, findings):
        """Does a policy's selection score pick the sequences where asking the teacher helps?"""
        p = self.plan
        out = ["", "### Selection score against the gain from asking",
               "",
               "At its final evaluation each learned-policy run measures, on 64 training sequences spread over the train split, "
               "the gain from asking the teacher: the first-order decrease of the held-out loss (the learned "
               "policy's reward tokens) from a gradient step on the sequence's distillation loss instead of its "
               "hard labels, grad L_held-out . grad (L_asked - L_skipped) (`distill.queries.probe_items`). "
               "ρ is Spearman's rank correlation of that gain with the policy's selection strength (that of the "
               "arm it used most: the score for a top arm, closeness to the median for a middle arm), and with "
               "the student's entropy and margin scores; mean ± 95 % t-interval over seeds. ρ > 0: the score prefers the sequences where asking "
               "helps most. Positive: the share of sequences whose gain is above 0.\n",
               "| budget | policy | ρ(selection, gain) | ρ(entropy, gain) | ρ(margin, gain) | positive | arm used most |",
               "|---:|---|---:|---:|---:|---:|---|"]
        learned = []
        for key, row in rows.items():
            if row["policy"] != "learned":
                continue
            runs = self.per_seed("4", key, lambda job, r: r)
            def stat(name):
                return interval([r[name] for r in runs.values() if name in r])
            arms = [self.ARMS[int(r["valid_query_probe_arm"])] for r in runs.values() if "valid_query_probe_arm" in r]
            arm = max(set(arms), key=arms.count) + f" ({arms.count(max(set(arms), key=arms.count))} of {len(arms)})" if arms else ""
            corr = stat("valid_query_gain_corr")
            row["gain_corr"] = corr
            out.append(f"| {row['budget']:.0%} | {row['policy']} | {show(corr, 2)} | {show(stat('valid_query_gain_corr_entropy'), 2)} | "
                       f"{show(stat('valid_query_gain_corr_margin'), 2)} | {show(stat('valid_query_gain_positive'), 0, pct=True)} | {arm} |")
            if row["policy"] == "learned" and corr:
                learned.append((row["budget"], corr))
        if learned:
            findings.append("The learned policy's selection strength against the gain from asking: " + "; ".join(
                f"ρ = {show(c, 2)} at {b:.0%} ({'positive' if excludes(c, 0) and c['mean'] > 0 else 'negative' if excludes(c, 0) else 'not distinguishable from 0'})"
                for b, c in learned) + ".")
        return out

    # -- table 5 -----------------------------------------------------------------------------------
    def table5(self, h):
        p = self.plan
        out = self.header("5", "Table 5: quantizing the converged KJV teacher",
                          f"{p.quant_eval_tokens:,} test tokens, calibration seeds {p.calib_seeds}, {p.speed_rounds} speed round.")
        out.append(f"Each GGUF file of table 2's teacher is scored in edgedistill's runtime against the float teacher on "
                   f"the first {p.quant_eval_tokens:,} test tokens (`edgedistill verify`, windows of 128): perplexity "
                   "change against the float model, KL(float ‖ quantized) per token and top-1 agreement. GPTQ and AWQ "
                   f"calibrate on 16,384 train tokens; at q4_0 they run with calibration seeds {p.calib_seeds} "
                   "(mean ± 95 % t-interval), elsewhere seed 0. 4-bit types keep token_embd and output at q8_0 "
                   "(quantize's default plan). "
                   + ("llama.cpp's `llama-perplexity` (built here by scripts/llama_cpp_build.sh) scores the same "
                      f"files on the same test split's text in the same 128-token windows ({p.quant_eval_tokens // 128} of "
                      "them). " if p.llama_perplexity else
                      "llama.cpp's perplexity tool is not run here: build it with scripts/llama_cpp_build.sh "
                      "SRC_DIR and rerun. ")
                   + "Speed: `edgedistill bench` "
                   f"(64-token prefill, 64 decoded; median of 5) with {p.threads} threads, each type measured alone, "
                   f"in turn, for {p.speed_rounds} round(s), the median round shown.\n")
        out.append("| type | method | GGUF MB | test ppl | vs float | KL to float | top-1 agreement | "
                   "llama-perplexity ppl | vs float (llama.cpp) | prefill tok/s | decode tok/s |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows, points = {}, []
        for row in ["float"] + [f"{t}-{m}" for t in ("q8_0", "q4_1", "q4_0") for m in ("rtn", "gptq", "awq")]:
            jobs = self.jobs("5", row)
            reps = [load_json(f"{j.out}/verify.json") for j in jobs]
            for j, rep in zip(jobs, reps):
                if rep is None:
                    self.missing.setdefault("5", []).append(self.plan.rel(j.out))
            ms = [r["metrics"] for r in reps if r]
            if not ms:
                continue
            speed = {}
            for key in ("prefill", "decode"):
                vals = [load_json(f"{jobs[0].out}/bench-round-{i}.json") for i in range(1, p.speed_rounds + 1)]
                vals = [v[f"{key}_tokens_per_s"] for v in vals if v]
                speed[key] = statistics.median(vals) if vals else None
            st = lambda k: interval([m[k] for m in ms])
            llama_ppls = [llama_perplexity_of(f"{j.out}/llama-perplexity.txt") for j in jobs]
            llama_ppls = [v for v in llama_ppls if v is not None]
            rows[row] = {"file_mb": ms[0]["file_mb"], "test_ppl": st("perplexity"), "ppl_increase_pct": st("ppl_increase_pct"),
                         "mean_kl": st("mean_kl"), "top1_agreement": st("top1_agreement"),
                         "prefill_tok_s": speed["prefill"], "decode_tok_s": speed["decode"], "seeds": len(ms),
                         "llama_ppl": interval(llama_ppls) if llama_ppls else None}
            r = rows[row]
            float_llama = rows.get("float", {}).get("llama_ppl")
            r["llama_ppl_increase_pct"] = (interval([100 * (v / float_llama["mean"] - 1) for v in llama_ppls])
                                           if llama_ppls and float_llama else None)
            llama_cells = [show(r["llama_ppl"]) if r["llama_ppl"] else "",
                           f"{show(r['llama_ppl_increase_pct'], 2)} %" if r["llama_ppl_increase_pct"] else ""]
            t, m = (row, "") if row == "float" else row.split("-")
            method = {"": "", "rtn": "round-to-nearest"}.get(m, m.upper())
            speeds = ["" if r[k] is None else f"{r[k]:,.0f}" for k in ("prefill_tok_s", "decode_tok_s")]
            out.append(f"| {t} | {method} | {r['file_mb']:.2f} | {show(r['test_ppl'])} | "
                       f"{show(r['ppl_increase_pct'], 2)} % | {show(r['mean_kl'], 5)} | "
                       f"{show(r['top1_agreement'], 1, pct=True)} | {llama_cells[0]} | {llama_cells[1]} | "
                       f"{speeds[0]} | {speeds[1]} |")
        findings = []
        rtn, gptq, awq = rows.get("q4_0-rtn"), rows.get("q4_0-gptq"), rows.get("q4_0-awq")
        ratio = None
        if rtn and gptq and rtn["ppl_increase_pct"]["mean"] > 0:
            ratio = gptq["ppl_increase_pct"]["mean"] / rtn["ppl_increase_pct"]["mean"]
            findings.append(f"At q4_0, GPTQ's perplexity increase is {ratio:.2f} x round-to-nearest's "
                            f"({gptq['ppl_increase_pct']['mean']:+.2f} % against {rtn['ppl_increase_pct']['mean']:+.2f} %)"
                            + (f", AWQ's {awq['ppl_increase_pct']['mean'] / rtn['ppl_increase_pct']['mean']:.2f} x." if awq else "."))
        llama_ratio = None
        if rtn and gptq and rtn.get("llama_ppl_increase_pct") and gptq.get("llama_ppl_increase_pct") \
                and rtn["llama_ppl_increase_pct"]["mean"] > 0:
            llama_ratio = gptq["llama_ppl_increase_pct"]["mean"] / rtn["llama_ppl_increase_pct"]["mean"]
            findings.append(f"Judged by llama-perplexity, GPTQ's increase is {llama_ratio:.2f} x round-to-nearest's "
                            f"({gptq['llama_ppl_increase_pct']['mean']:+.2f} % against "
                            f"{rtn['llama_ppl_increase_pct']['mean']:+.2f} %).")
        if rtn:
            findings.append(f"q4_0 costs {rtn['ppl_increase_pct']['mean']:+.2f} % perplexity on this teacher "
                            + ("(measurable: the methods can be told apart)." if abs(rtn["ppl_increase_pct"]["mean"]) > 0.5
                               else "(small: the methods are hard to tell apart on a model this size)."))
        self.bars("5", "table5_ppl_increase.png", "Quantized teacher: perplexity increase over float (mean, 95 % CI)",
                  "perplexity increase (%)", [(k, v["ppl_increase_pct"]) for k, v in rows.items() if k != "float"], self.note())
        out += ["", "**Findings** (computed from the numbers above): " + " ".join(findings)]
        out += self.commands("5")
        h["quantization"] = {"eval_tokens": p.quant_eval_tokens, "rows": rows}
        h["findings"]["quant"] = {"gptq_vs_rtn_ppl_increase_ratio": ratio,
                                  "gptq_vs_rtn_llama_ppl_increase_ratio": llama_ratio}
        return out, findings

    def write(self):
        p = self.plan
        os.makedirs(self.results, exist_ok=True)
        h = {"format": "edgedistill-headline", "version": 2, "mode": p.mode,
             "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "git_revision": self.revision, "program": self.args.program, "cpu": self.cpu, "cores": os.cpu_count(),
             "threads": p.threads, "jobs": p.jobs_n, "tables": {}, "findings": {}}
        self.student_ppls = []
        texts = {}
        for table in self.args.tables.split():
            texts[table] = getattr(self, f"table{table}")(h)[0]
        if "kjv" in h["findings"]:
            h["findings"]["kjv"]["best_student_valid_ppl"] = min(self.student_ppls) if self.student_ppls else None
        inv = load_json(os.path.join(p.root, "invocations.json")) or []
        h["wall_seconds_all_invocations"] = sum(i["seconds"] for i in inv)
        h["run_seconds"] = sum(t["seconds"] for t in self.timings.values())
        for table, lines in texts.items():
            for png, caption in self.figures.get(table, []):
                lines += ["", f"![{caption}]({png})"]
            missing = sorted(set(self.missing.get(table, [])))
            if missing:
                lines.insert(1, f"> **Incomplete**: {len(missing)} run(s) missing: " + ", ".join(f"`{m}`" for m in missing[:20])
                             + (" ..." if len(missing) > 20 else "") + "\n")
            path = os.path.join(self.results, TABLE_FILES[table])
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            h["tables"][table] = os.path.relpath(path, p.repo)
            print(f"wrote {os.path.relpath(path, p.repo)}")
        h["missing_runs"] = sorted({m for runs in self.missing.values() for m in runs})
        path = os.path.join(self.results, "headline.json")
        previous = load_json(path) or {}
        if previous.get("mode") == p.mode and previous.get("version") == 2:
            for key in ("fmnist", "kjv", "pld", "queries", "quantization"):
                if key not in h and key in previous:
                    h[key] = previous[key]
            for key, value in previous.get("findings", {}).items():
                h["findings"].setdefault(key, value)
            for key, value in previous.get("tables", {}).items():
                h["tables"].setdefault(key, value)
        with open(path + ".partial", "w") as f:
            json.dump(h, f, indent=2)
            f.write("\n")
        os.replace(path + ".partial", path)
        print(f"wrote {os.path.relpath(path, p.repo)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--edgedistill", required=True)
    ap.add_argument("--mode", choices=("quick", "full"), required=True)
    ap.add_argument("--run-root", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--tables", default="1 2 3 4 5")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--plots", type=int, default=1)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the planned commands and exit")
    ap.add_argument("--only", default="", help="run only the jobs whose keys start with one of these (comma-separated)")
    ap.add_argument("--program", default="edgedistill")
    args = ap.parse_args()
    plan = Plan(args)
    plan.build(set(args.tables.split()))
    if args.list:
        for job in plan.jobs:
            print(f"{job.key}: edgedistill {' '.join(plan.rel(a) for a in job.command())}")
        return
    if not args.report_only:
        os.makedirs(plan.root, exist_ok=True)
        started = time.time()
        try:
            Runner(plan, args.edgedistill, [o for o in args.only.split(",") if o]).run()
        finally:
            path = os.path.join(plan.root, "invocations.json")
            inv = load_json(path) or []
            inv.append({"started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
                        "seconds": round(time.time() - started), "tables": args.tables, "only": args.only})
            with open(path, "w") as f:
                json.dump(inv, f, indent=1)
    if not args.only:
        Report(plan, args).write()


if __name__ == "__main__":
    main()
