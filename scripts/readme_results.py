#!/usr/bin/env python3
"""Writes the README's results block (between the `results:begin` and `results:end` markers) from
the headline.json that scripts/reproduce_tables.sh writes, so the README's numbers are the
script's output, never typed by hand.

Usage: scripts/readme_results.py HEADLINE_JSON README_MD
"""
import json
import os
import sys

BEGIN = "<!-- results:begin (scripts/readme_results.py writes this block) -->"
END = "<!-- results:end -->"


def spread(row):
    if not row:
        return "not run"
    if row.get("n", 1) < 2:
        return f"{row['mean']:.0f}"
    return f"{row['mean']:.0f} ({row['min']:.0f}-{row['max']:.0f})"


def block(h, readme_dir):
    def rel(path):  # headline.json's paths are relative to the repository, like the README
        return os.path.relpath(path, readme_dir) if os.path.isabs(path) else path
    lines = [BEGIN, ""]
    mode = "the quick version (`scripts/reproduce_tables.sh --quick`: fewer steps and seeds)" \
        if h["mode"] == "quick" else "`scripts/reproduce_tables.sh`"  # its "`," marks a full block
    lines.append(f"From {mode}, {h['generated'][:10]}, git {h['git_revision']}, {h['cpu']} "
                 f"({h['cores']} cores, {h['threads']} threads):")
    lines.append("")
    f = h.get("fmnist")
    if f:
        rows = f["rows"]
        temps = sorted((k for k in rows if k.startswith("distill-T")), key=lambda k: float(k[9:]))
        distilled = ", ".join(f"T = {k[9:]}: {spread(rows.get(k))}" for k in temps)
        hinton = f["hinton2015_mnist"]
        lines.append(f"- [Table 1]({rel(h['tables']['1'])}), Hinton's experiment on Fashion-MNIST "
                     f"(test errors of {f['test_errors_of']:,}, mean (range) over seeds "
                     f"{', '.join(map(str, f['seeds']))}): teacher {spread(rows['teacher'])}, "
                     f"student from scratch {spread(rows['scratch'])}, distilled {distilled} "
                     f"(Hinton et al. 2015 on MNIST: {hinton['teacher']} / {hinton['scratch']} / "
                     f"{hinton['distill-T20']}).")
    k = h.get("kjv")
    if k:
        rows = k["rows"]
        parts = []
        for key in ("teacher", "scratch", "forward-kl", "reverse-kl", "skew-kl",
                    "hidden-contrastive", "layer-drop", "queries-25"):
            if rows.get(key) and rows[key].get("valid_ppl"):
                parts.append(f"{rows[key]['label']} {rows[key]['valid_ppl']['mean']:.1f}")
        lines.append(f"- [Table 2]({rel(h['tables']['2'])}), distillation on KJV (validation "
                     f"perplexity): " + "; ".join(parts) + ".")
    c = h.get("compression")
    if c:
        rows = c["rows"]
        parts = []
        for key, row in rows.items():
            if not row:
                parts.append(f"{key} not run")
                continue
            parts.append(f"{row['label']} {row['file_mb']:.2f} MB, ppl {row['test_ppl']:.2f} "
                         f"({row['ppl_increase_pct']:+.2f} %), top-1 {100 * row['top1_agreement']:.1f} %, "
                         f"decode {row['decode_tok_s']:,.0f} tok/s")
        lines.append(f"- [Table 3]({rel(h['tables']['3'])}), compressing the KJV teacher "
                     f"(runtime, {c['threads']} threads): " + "; ".join(parts) + ".")
    lines += ["", END]
    return "\n".join(lines)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    headline, readme = sys.argv[1], sys.argv[2]
    h = json.load(open(headline))
    text = open(readme).read()
    if BEGIN not in text or END not in text:
        sys.exit(f"readme_results: {readme} has no results block; add the lines\n{BEGIN}\n{END}")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    current = text[start:end]
    if h["mode"] == "quick" and "reproduce_tables.sh`," in current:
        print(f"readme_results: {readme} shows the full tables' numbers; the quick ones are not "
              "written over them")
        return
    new = text[:start] + block(h, os.path.dirname(os.path.abspath(readme))) + text[end:]
    tmp = readme + ".tmp"
    with open(tmp, "w") as out:
        out.write(new)
    os.replace(tmp, readme)
    print(f"readme_results: wrote the results block of {readme} from {headline}")


if __name__ == "__main__":
    main()
