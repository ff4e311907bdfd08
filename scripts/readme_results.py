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


def ci(stat, digits=1, pct=False):
    """'12.3 (95 % CI 11.9-12.7)' from a headline interval, or 'not run'."""
    if not stat:
        return "not run"
    k = 100 if pct else 1
    text = f"{stat['mean'] * k:,.{digits}f}"
    if stat.get("ci95"):
        lo, hi = stat["ci95"]
        text += f" ({lo * k:,.{digits}f} to {hi * k:,.{digits}f})"
    return text + (" %" if pct else "")


def block(h, readme_dir):
    def rel(path):  # headline.json's paths are relative to the repository, like the README
        return os.path.relpath(path, readme_dir) if os.path.isabs(path) else path
    lines = [BEGIN, ""]
    mode = "the quick version (`scripts/reproduce_tables.sh --quick`: fewer steps and seeds)" \
        if h["mode"] == "quick" else "`scripts/reproduce_tables.sh`"  # its "`," marks a full block
    lines.append(f"From {mode}, {h['generated'][:10]}, git {h['git_revision']}, {h['cpu']} "
                 f"({h['cores']} cores); mean (95 % t-interval) over seeds:")
    lines.append("")
    tables, f = h.get("tables", {}), h.get("fmnist")
    if f and "1" in tables:
        rows = f["rows"]
        distilled = ", ".join(f"T = {k[9:]}: {ci(v, 0)}" for k, v in rows.items() if k.startswith("distill-T"))
        lines.append(f"- [Table 1]({rel(tables['1'])}), Hinton's experiment on Fashion-MNIST (test errors of "
                     f"10,000): teacher {ci(rows.get('teacher'), 0)}, student from scratch "
                     f"{ci(rows.get('scratch'), 0)}, distilled {distilled}.")
    k = h.get("kjv")
    if k and "2" in tables:
        t = k.get("teacher") or {}
        parts = [f"{r['label']} {ci(r['valid_ppl'])}" + (f", gap closed {ci(r['gap_closed'], 0, pct=True)}"
                                                           if r.get("gap_closed") else "")
                 for r in k["rows"].values() if r.get("valid_ppl")]
        lines.append(f"- [Table 2]({rel(tables['2'])}), distillation on KJV (validation perplexity; teacher "
                     f"{t.get('valid_ppl', float('nan')):.2f}): " + "; ".join(parts) + ".")
    p = h.get("pld")
    if p and "3" in tables:
        parts = [f"{r['label']} {ci(r['time_to_target_ratio'], 2)}" for key, r in p["rows"].items()
                 if key != "forward-kl" and r.get("time_to_target_ratio")]
        lines.append(f"- [Table 3]({rel(tables['3'])}), progressive layer dropping (time to reach valid ppl "
                     f"{p['target_ppl'] or float('nan'):.2f}, over forward KL's): " + ("; ".join(parts) or "target not reached") + ".")
    q = h.get("queries")
    if q and "4" in tables:
        parts = [f"{r['policy']} {r['budget']:.0%} {ci(r['vs_random'], 3)}" for r in q["rows"].values()
                 if r["policy"] != "random" and r.get("vs_random")]
        lines.append(f"- [Table 4]({rel(tables['4'])}), teacher queries (valid ppl over random's at the same "
                     "budget): " + "; ".join(parts) + ".")
    c = h.get("quantization")
    if c and "5" in tables:
        parts = [f"{key} {row['file_mb']:.2f} MB, {ci(row['ppl_increase_pct'], 2)} % ppl"
                 for key, row in c["rows"].items() if key != "float"]
        lines.append(f"- [Table 5]({rel(tables['5'])}), quantizing the KJV teacher (runtime): " + "; ".join(parts) + ".")
    lines += ["", END]
    return "\n".join(lines)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    headline, readme = sys.argv[1], sys.argv[2]
    h = json.load(open(headline))
    if h.get("version", 1) < 2:
        print(f"readme_results: {headline} is from the old three-table script; the README block is left as it is")
        return
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
